//! What the types alone cannot check: unique names, contradictions, ranges, public sharing.
//! Every error names the JSON path of the bad field and the fix.

use std::collections::BTreeSet;

use super::*;
use crate::error::{Error, Result};

impl PolicyDocument {
    /// Checks what the types alone cannot: unique names, contradictions, public sharing.
    pub(super) fn validate(&self, deployment: Deployment) -> Result<()> {
        if self.policies.is_empty() {
            return Err(Error::config(
                "$.policies",
                "the policy list is empty: add at least one policy",
            ));
        }

        let mut names = BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = |field: &str| format!("$.policies[{i}].{field}");
            check_name(p, &mut names, &at)?;
            check_tag_keys(p, &at)?;
            check_does_something(p, i)?;
            check_sections(p, deployment, &at)?;
        }
        Ok(())
    }
}

fn check_name<'a>(
    p: &'a Policy,
    names: &mut BTreeSet<&'a str>,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    let valid_name = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(Error::config(
            at("name"),
            format!(
                "`{}`: a policy name has 1 to 64 letters, digits, `-` or `_`",
                p.name
            ),
        ));
    }

    if !names.insert(p.name.as_str()) {
        return Err(Error::config(
            at("name"),
            format!("`{}` names two policies: names are unique", p.name),
        ));
    }
    Ok(())
}

fn check_tag_keys(p: &Policy, at: &dyn Fn(&str) -> String) -> Result<()> {
    if let Some(key) = p
        .select
        .tags
        .keys()
        .chain(p.retain.iter().flat_map(|r| r.protect_tags.keys()))
        .find(|k| k.contains('*') || k.is_empty())
    {
        return Err(Error::config(
            at("select.tags"),
            format!("`{key}`: a tag key is literal: no `*`, not empty"),
        ));
    }
    Ok(())
}

fn check_does_something(p: &Policy, i: usize) -> Result<()> {
    if p.build.is_none()
        && p.share.is_none()
        && p.copy.is_none()
        && p.retain.is_none()
        && p.validate.is_none()
        && p.publish.is_none()
        && p.distribute.is_none()
    {
        return Err(Error::config(
            format!("$.policies[{i}]"),
            "the policy does nothing: add at least one of build, share, copy, retain, validate, publish, distribute",
        ));
    }
    Ok(())
}

/// Each section of the policy, in the order the errors have always been reported.
fn check_sections(p: &Policy, deployment: Deployment, at: &dyn Fn(&str) -> String) -> Result<()> {
    if let Some(v) = &p.validate {
        check_launch_test(v, at)?;
    }
    if let Some(publish) = &p.publish {
        check_publish(publish, &p.name, at)?;
    }
    if let Some(build) = &p.build {
        check_build(build, &p.name, at)?;
    }
    if let Some(share) = &p.share {
        check_share(share, deployment, at)?;
    }
    if let Some(copy) = &p.copy {
        check_copy(copy, p.share.is_some(), deployment, at)?;
    }
    if let Some(r) = &p.retain {
        check_retain(r, at)?;
    }
    if let Some(d) = &p.distribute {
        check_distribute(d, p, at)?;
    }
    Ok(())
}

/// Every target account is shared with (it launches or copies the shared AMI), a copy has the
/// snapshots' read permission it needs, each account is listed once, and a target gets
/// something beyond the share.
fn check_distribute(d: &Distribute, p: &Policy, at: &dyn Fn(&str) -> String) -> Result<()> {
    if d.targets.is_empty() {
        return Err(Error::config(
            at("distribute.targets"),
            "no targets: list at least one group of accounts (or remove distribute)",
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, t) in d.targets.iter().enumerate() {
        let here = |field: &str| at(&format!("distribute.targets[{j}].{field}"));
        check_target_accounts(t, p, &mut seen, &here)?;
        if t.copy.is_none() && t.ssm_parameters.is_empty() && t.launch_templates.is_empty() {
            return Err(Error::config(
                here("copy"),
                "the target gets nothing the share does not give: add `copy` (its own copy), `ssm_parameters` or `launch_templates` (published in the target), or list the accounts in share.accounts only",
            ));
        }
        check_launch_templates(
            &t.launch_templates,
            &format!("distribute.targets[{j}].launch_templates"),
            at,
        )?;
        if let Some(key) = t.copy.as_ref().and_then(|c| c.kms_key_id.as_deref()) {
            if key.trim().is_empty() {
                return Err(Error::config(
                    here("copy.kms_key_id"),
                    "empty: name the target account's KMS key (id, ARN or alias), or leave it out for the target's default EBS key",
                ));
            }
        }
        if t.copy.is_some() && !p.share.as_ref().is_some_and(|s| s.snapshots) {
            return Err(Error::config(
                here("copy"),
                "a target account copies the AMI only with read permission on its snapshots: set share.snapshots to true",
            ));
        }
        for (k, template) in t.ssm_parameters.iter().enumerate() {
            let sample = render_parameter(template, &p.name, &"f".repeat(128), "ap-southeast-5");
            if let Some(why) = parameter_name_problem(&sample) {
                return Err(Error::config(
                    here(&format!("ssm_parameters[{k}]")),
                    format!("`{template}`: {why}"),
                ));
            }
        }
    }
    Ok(())
}

fn check_target_accounts<'a>(
    t: &'a DistributionTarget,
    p: &Policy,
    seen: &mut BTreeSet<&'a crate::domain::ids::AccountId>,
    here: &dyn Fn(&str) -> String,
) -> Result<()> {
    if t.accounts.is_empty() && t.organizational_units.is_empty() {
        return Err(Error::config(
            here("accounts"),
            "no accounts: list the 12-digit ids of the target accounts, or their organizational_units",
        ));
    }
    let shared_units = p.share.as_ref().map(|s| &s.organizational_units);
    for ou in &t.organizational_units {
        if !shared_units.is_some_and(|s| s.contains(ou)) {
            return Err(Error::config(
                here("organizational_units"),
                format!("{ou} is not in share.organizational_units: its accounts launch the AMI shared with the OU; add it there"),
            ));
        }
    }
    if !t.organizational_units.is_empty() && t.copy.is_some() {
        return Err(Error::config(
            here("organizational_units"),
            "an OU's accounts cannot copy the AMI: EC2 shares snapshots with accounts only (ModifySnapshotAttribute takes user ids), so list the accounts that get a copy in `accounts`",
        ));
    }
    let shared = p.share.as_ref().map(|s| &s.accounts);
    for account in &t.accounts {
        if !shared.is_some_and(|s| s.contains(account)) {
            return Err(Error::config(
                here("accounts"),
                format!("{account} is not in share.accounts: a target account launches or copies the AMI shared with it; add it there"),
            ));
        }
        if !seen.insert(account) {
            return Err(Error::config(
                here("accounts"),
                format!("{account} is listed in two targets: list each account once"),
            ));
        }
    }
    Ok(())
}

fn check_build(build: &Build, policy: &str, at: &dyn Fn(&str) -> String) -> Result<()> {
    let longest = "i-0123456789abcdef0";
    let sample = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    crate::domain::naming::render_name(&build.name_template, policy, longest, sample)
        .map_err(|m| Error::config(at("build.name_template"), m))?;

    if let Some(key) = build
        .tags
        .keys()
        .find(|k| k.starts_with(crate::domain::tags::RESERVED_PREFIX))
    {
        return Err(Error::config(
            at(&format!("build.tags.{key}")),
            format!(
                "`{key}`: keys beginning with `{}` are the tool's own state (verdicts, lineage, pins) and cannot be set by a policy: choose another key",
                crate::domain::tags::RESERVED_PREFIX
            ),
        ));
    }

    if build.instance_tags.is_empty() {
        return Err(Error::config(
            at("build.instance_tags"),
            "empty: name at least one tag, so that only the instances meant to be imaged are",
        ));
    }
    for (key, pattern) in &build.instance_tags {
        if key.is_empty() || key.contains('*') {
            return Err(Error::config(
                at("build.instance_tags"),
                format!("`{key}`: a tag key is literal (no `*`, not empty): a wildcard key would image every instance of the account"),
            ));
        }
        if *pattern == TagPattern::Exact(String::new()) {
            return Err(Error::config(
                at(&format!("build.instance_tags.{key}")),
                "an empty value: give the value (or `*` for any value of this tag)",
            ));
        }
    }
    Ok(())
}

fn check_share(share: &Share, deployment: Deployment, at: &dyn Fn(&str) -> String) -> Result<()> {
    if share.public && !deployment.allow_public_sharing {
        return Err(Error::config(
            at("share.public"),
            "public sharing is not allowed by this deployment: set public to false, or deploy with AllowPublicSharing=true (ALLOW_PUBLIC_SHARING=true)",
        ));
    }
    Ok(())
}

fn check_copy(
    copy: &CopyPolicy,
    shares: bool,
    deployment: Deployment,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    let home = deployment.partition.unwrap_or("aws");
    for (region, how) in &copy.regions {
        let here = |field: &str| at(&format!("copy.regions.{region}{field}"));
        if region.partition() != home {
            return Err(Error::config(
                here(""),
                format!(
                    "`{region}` is in the {} partition and this deployment in {home}: CopyImage does not cross partitions (use CreateStoreImageTask, or deploy the stack in that partition)",
                    region.partition()
                ),
            ));
        }
        if how.kms_key_id.is_some() && !how.encrypted {
            return Err(Error::config(
                here(".kms_key_id"),
                "a KMS key with encrypted false: set encrypted to true, or remove kms_key_id",
            ));
        }
        if how.encrypted && how.kms_key_id.is_none() && shares {
            return Err(Error::config(
                here(".kms_key_id"),
                "missing: the policy shares its AMIs, and a copy encrypted with the AWS managed key (the default) cannot be shared; set a customer managed key of that region",
            ));
        }
    }
    Ok(())
}

fn check_launch_test(v: &Validate, at: &dyn Fn(&str) -> String) -> Result<()> {
    let family_size = v.instance_type.split_once('.');
    let well_formed = family_size.is_some_and(|(f, s)| {
        !f.is_empty()
            && !s.is_empty()
            && v.instance_type.len() <= 64
            && v.instance_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    if !well_formed {
        return Err(Error::config(
            at("validate.instance_type"),
            format!(
                "`{}` is not an instance type: give family and size, as `t3.micro` or `m7g.large`",
                v.instance_type
            ),
        ));
    }
    crate::domain::ids::check_resource_id("subnet", &v.subnet_id)
        .map_err(|m| Error::config(at("validate.subnet_id"), m))?;
    if v.security_group_ids.is_empty() || v.security_group_ids.len() > 5 {
        return Err(Error::config(
            at("validate.security_group_ids"),
            format!(
                "{} entries: give 1 to 5 security groups (`sg-...`) of the subnet's VPC",
                v.security_group_ids.len()
            ),
        ));
    }
    for (j, sg) in v.security_group_ids.iter().enumerate() {
        crate::domain::ids::check_resource_id("sg", sg)
            .map_err(|m| Error::config(at(&format!("validate.security_group_ids[{j}]")), m))?;
    }
    if let Some(profile) = &v.instance_profile {
        let name = profile.rsplit('/').next().unwrap_or(profile);
        let arn_ok = !profile.starts_with("arn:")
            || (profile.contains(":iam::") && profile.contains(":instance-profile/"));
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b));
        if !arn_ok || !name_ok {
            return Err(Error::config(
                at("validate.instance_profile"),
                format!("`{profile}`: give an instance profile name (1 to 128 of letters, digits and +=,.@-_) or its ARN (arn:aws:iam::<account>:instance-profile/<name>)"),
            ));
        }
    }
    if !(1..=240).contains(&v.timeout_minutes) {
        return Err(Error::config(
            at("validate.timeout_minutes"),
            format!(
                "{} is out of range: set 1 to 240 minutes (status checks take a few minutes after boot)",
                v.timeout_minutes
            ),
        ));
    }
    if let Some(text) = &v.console_contains {
        if text.is_empty() || text.len() > 1024 {
            return Err(Error::config(
                at("validate.console_contains"),
                "give 1 to 1024 characters that the boot console output must contain, or leave it out",
            ));
        }
    }
    Ok(())
}

fn check_publish(p: &Publish, policy: &str, at: &dyn Fn(&str) -> String) -> Result<()> {
    if p.ssm_parameters.is_empty() && p.launch_templates.is_empty() {
        return Err(Error::config(
            at("publish"),
            "publishes nowhere: list ssm_parameters or launch_templates (or remove publish)",
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, template) in p.ssm_parameters.iter().enumerate() {
        let here = at(&format!("publish.ssm_parameters[{j}]"));
        if let Some(bad) = template
            .match_indices('{')
            .map(|(k, _)| &template[k..])
            .find(|rest| {
                !["{policy}", "{family}", "{region}"]
                    .iter()
                    .any(|v| rest.starts_with(v))
            })
        {
            return Err(Error::config(
                here,
                format!(
                    "`{}`: only {{policy}}, {{family}} and {{region}} are replaced",
                    bad.split('}').next().unwrap_or(bad)
                ),
            ));
        }
        // The longest family and region a name can get must still make a valid name.
        let sample = render_parameter(template, policy, &"f".repeat(128), "ap-southeast-5");
        if let Some(problem) = parameter_name_problem(&sample) {
            return Err(Error::config(here, format!("`{template}`: {problem}")));
        }
        if !seen.insert(template) {
            return Err(Error::config(
                here,
                format!("`{template}` is listed twice: list each parameter once"),
            ));
        }
    }
    check_launch_templates(&p.launch_templates, "publish.launch_templates", at)
}

/// Each launch template entry names an id or a valid name, once per family.
fn check_launch_templates(
    list: &[LaunchTemplateTarget],
    field: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (j, target) in list.iter().enumerate() {
        let here = at(&format!("{field}[{j}].template"));
        let t = &target.template;
        let name_ok = t.len() >= 3
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"()./_-".contains(&b));
        if t.starts_with("lt-") && !target.is_id() || !name_ok {
            return Err(Error::config(
                here,
                format!("`{t}`: give a launch template id (`lt-` and 17 hex digits) or name (3 to 128 of letters, digits and ()./_-)"),
            ));
        }
        if !seen.insert((t, target.family.as_deref())) {
            return Err(Error::config(
                here,
                format!("`{t}` is listed twice for the same family: list it once"),
            ));
        }
        if target.family.as_ref().is_some_and(|f| f.is_empty()) {
            return Err(Error::config(
                at(&format!("{field}[{j}].family")),
                "empty: name the family, or leave it out when the policy has one family",
            ));
        }
    }
    Ok(())
}

fn check_retain(r: &Retain, at: &dyn Fn(&str) -> String) -> Result<()> {
    if r.keep_latest == 0 && !r.allow_empty_family {
        return Err(Error::config(
            at("retain.keep_latest"),
            "0 lets a family lose its last AMI: set keep_latest to 1 or more, or set \"allow_empty_family\": true if that is what you want",
        ));
    }
    if r.keep_latest == 0
        && r.max_age_days.is_none()
        && r.deprecate_after_days.is_none()
        && r.disable_after_days.is_none()
    {
        return Err(Error::config(
            at("retain"),
            "keep_latest is 0 and no age is set: set keep_latest to 1 or more, or one of max_age_days, deprecate_after_days, disable_after_days",
        ));
    }
    for (field, days) in [
        ("deprecate_after_days", r.deprecate_after_days),
        ("disable_after_days", r.disable_after_days),
        ("max_age_days", r.max_age_days),
    ] {
        if days == Some(0) {
            return Err(Error::config(
                at(&format!("retain.{field}")),
                "0 days would retire every AMI on the first run: set 1 or more, or leave the field out",
            ));
        }
    }
    if r.protect_latest > r.keep_latest {
        return Err(Error::config(
            at("retain.protect_latest"),
            format!(
                "{} is more than keep_latest ({}): an AMI would be protected and retired at once; set protect_latest to keep_latest or less",
                r.protect_latest, r.keep_latest
            ),
        ));
    }
    if r.protect_latest > 100 {
        return Err(Error::config(
            at("retain.protect_latest"),
            format!(
                "{} is more than 100: protect the newest few AMIs of a family (0 turns it off)",
                r.protect_latest
            ),
        ));
    }
    if !(1..=720).contains(&r.consumer_report_max_age_hours) {
        return Err(Error::config(
            at("retain.consumer_report_max_age_hours"),
            format!(
                "{} is out of range: set 1 to 720 hours (EC2 deletes usage reports after 30 days)",
                r.consumer_report_max_age_hours
            ),
        ));
    }
    let stages = [
        ("deprecate_after_days", r.deprecate_after_days),
        ("disable_after_days", r.disable_after_days),
        ("max_age_days", r.max_age_days),
    ];
    for (i, (early, a)) in stages.iter().enumerate() {
        for (late, b) in &stages[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if a > b {
                    return Err(Error::config(
                        at(&format!("retain.{early}")),
                        format!("{early} ({a}) is greater than {late} ({b}): the stages run deprecate, then disable, then deregister"),
                    ));
                }
            }
        }
    }
    Ok(())
}
