//! Publishing's decisions, pure: which AMI each SSM parameter and launch template of a region
//! should name, and whether to change what it names now.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{render_parameter, Policy, PolicyDocument};
use crate::domain::tags;
use crate::domain::trigger::PublishRequest;

/// Where an AMI is published.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// An SSM parameter, by its name.
    Parameter(String),
    /// A launch template, by id or name; `set_default` makes each new version the default.
    Template { template: String, set_default: bool },
}

/// How a report names a launch template destination: this, then its id or name.
pub const TEMPLATE_LABEL: &str = "launch-template:";

impl Destination {
    /// `ssm:<name>` or `launch-template:<id or name>`, as reports name it.
    pub fn label(&self) -> String {
        match self {
            Destination::Parameter(name) => format!("ssm:{name}"),
            Destination::Template { template, .. } => format!("{TEMPLATE_LABEL}{template}"),
        }
    }
}

/// One destination with the AMI it should name.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub policy: &'a Policy,
    pub family: String,
    pub destination: Destination,
    /// The AMI to publish.
    pub image: &'a Image,
    /// A rollback's pin: published even if older than what the destination names.
    pub pinned: bool,
}

/// What to do with one destination, given what it names now.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// It names the AMI already.
    Unchanged,
    /// It keeps what it names, and why.
    Keep(String),
    /// It keeps what it names until a person acts, and why: a failure, so the errors alarm
    /// says so.
    Frozen(String),
    /// Make it name the AMI; `previous` is what it named.
    Publish { previous: Option<String> },
}

/// The action of a rollback's line in a region where the family has no AMI at all.
pub const ABSENT: &str = "absent";

/// The action of a line whose launch template is not in its region.
pub const NO_TEMPLATE: &str = "no_template";

/// A launch template found in none of the regions of the run is misconfigured (a misspelled
/// name, a deleted template): its lines are refused, so the run fails and the alarm says so.
/// Concluded only when the run looked for it in **every** region of `regions` (each has its
/// `no_template` line) and could read them all: a region where the family had nothing to
/// publish (a copy on its way, a test under way) may hold it, and a template lives in one
/// region, so one without it while another has it is only skipped. Callers pass every region
/// the deployment publishes in, never one event's region.
pub fn missing_templates(lines: &mut [PublishResult], regions: &[Region]) {
    // A region whose publishing could not even read its AMIs may hold the template.
    if regions.is_empty()
        || lines
            .iter()
            .any(|l| l.stage == Stage::Publish && l.image_id.is_empty())
    {
        return;
    }
    let key = |l: &PublishResult| (l.policy.clone(), l.target.clone());
    let mut missing_in: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.action == NO_TEMPLATE) {
        missing_in
            .entry(key(l))
            .or_default()
            .push(l.region.to_string());
    }
    for l in lines.iter_mut().filter(|l| l.action == NO_TEMPLATE) {
        let Some(searched) = missing_in.get(&key(l)) else {
            continue;
        };
        if !regions
            .iter()
            .all(|r| searched.iter().any(|s| s == r.as_str()))
        {
            continue;
        }
        l.outcome = PublishOutcome::Refused;
        l.reason = Some(format!(
            "no launch template `{}` in any region ({}): check `publish.launch_templates[].template` of policy `{}` (its id, or its name, in the region it is in)",
            l.target.as_deref().and_then(|t| t.strip_prefix(TEMPLATE_LABEL)).unwrap_or_default(),
            searched.join(", "),
            l.policy
        ));
    }
}

/// Whether an AMI may be published by a sweep: available, through the promotion gate, not
/// deprecated.
pub fn promotable(image: &Image, policy: &Policy, now: DateTime<Utc>) -> Result<(), String> {
    pinnable(image, policy)?;
    if image.deprecation_time.is_some_and(|t| t <= now) {
        return Err(format!("{} is deprecated: it is on its way out", image.id));
    }
    Ok(())
}

/// Whether a rollback may pin an AMI: available and through the promotion gate. A deprecated
/// AMI may be pinned: age-out deprecates the previous AMI soon after a new one is published, and
/// that is the AMI an incident rolls back to.
pub fn pinnable(image: &Image, policy: &Policy) -> Result<(), String> {
    if image.state != ImageState::Available {
        return Err(format!(
            "{} is {}: only available AMIs are published",
            image.id, image.state
        ));
    }
    if let Some(why) = image.held_by_gate(policy) {
        return Err(format!("{}: {why}", image.id));
    }
    Ok(())
}

/// When a rollback pinned the AMI, if it did.
pub fn pinned_at(image: &Image) -> Option<DateTime<Utc>> {
    image
        .tags
        .get(tags::PINNED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t.split(' ').next().unwrap_or(t)).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A sweep's AMI for one family: the newest promotable one, unless a rollback pinned one and
/// no promotable AMI was created after the pin (then the pinned one, `true`: a destination the
/// rollback could not reach, or a sweep that raced it, still ends on the pin).
pub fn sweep_choice<'a>(
    members: &[&'a Image],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<(&'a Image, bool)> {
    let ready: Vec<&'a Image> = members
        .iter()
        .copied()
        .filter(|i| promotable(i, policy, now).is_ok())
        .collect();
    let newest = ready
        .iter()
        .copied()
        .max_by(|a, b| (a.made(), &a.id).cmp(&(b.made(), &b.id)));
    // A pinned AMI stays pinned once deprecated (age-out deprecates what a newer AMI replaced).
    let pin = members
        .iter()
        .filter(|i| pinnable(i, policy).is_ok())
        .filter_map(|i| pinned_at(i).map(|t| (t, *i)))
        .max_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    match (newest, pin) {
        (Some(newest), Some((at, _))) if newest.made().is_some_and(|c| c > at) => {
            Some((newest, false))
        }
        // The pin holds, also when nothing else can be published (the AMI rolled back from
        // deregistered or failed).
        (_, Some((_, pinned))) => Some((pinned, true)),
        (Some(newest), None) => Some((newest, false)),
        (None, None) => None,
    }
}

/// The destinations of every publishing policy in a region, each with the AMI it should name,
/// and a line for each that cannot get one.
///
/// The AMI is a sweep's choice ([`sweep_choice`]); with `pin` (a rollback) it is the pinned
/// AMI, or its copy in this region, for that policy and family only. A destination two
/// families (of one policy or of two) would both write is refused for all of them: an AMI of
/// one must never land where the other's consumers look.
pub fn targets<'a>(
    images: &'a [Image],
    document: &'a PolicyDocument,
    region: &Region,
    policies: Option<&[String]>,
    pin: Option<&PublishRequest>,
    now: DateTime<Utc>,
) -> (Vec<Target<'a>>, Vec<PublishResult>) {
    let mut lines = Vec::new();
    let line = |policy: &str, image: &str, family: Option<&str>| {
        let mut l = PublishResult::new(Stage::Publish, image, region, policy);
        l.family = family.map(str::to_string);
        l.action = "keep";
        l
    };
    // Each publishing policy's families and the AMI each should name.
    let mut chosen: Vec<(&'a Policy, String, &'a Image, bool)> = Vec::new();
    for policy in &document.policies {
        if policy.publish.is_none()
            || policies.is_some_and(|ps| !ps.contains(&policy.name))
            || pin.is_some_and(|p| p.policy != policy.name)
        {
            continue;
        }
        let mut families: BTreeMap<String, Vec<&'a Image>> = BTreeMap::new();
        for image in images
            .iter()
            .filter(|i| i.policy_in(document).is_some_and(|p| p.name == policy.name))
        {
            families
                .entry(image.family(&policy.family_by))
                .or_default()
                .push(image);
        }
        if let Some(pin) = pin {
            // A rollback that cannot be carried out in a region is refused there, loudly: the
            // destinations there keep naming what the rollback was sent to replace.
            let Some(members) = families.get(&pin.family) else {
                let mut absent = line(&policy.name, &pin.image_id, Some(&pin.family));
                absent.action = ABSENT;
                lines.push(absent.with(
                    PublishOutcome::Refused,
                    format!(
                        "policy `{}` has no AMI of family `{}` in {region}",
                        policy.name, pin.family
                    ),
                ));
                continue;
            };
            let found = members.iter().find(|i| {
                i.id == pin.image_id || i.tags.get(tags::SOURCE_IMAGE) == Some(&pin.image_id)
            });
            match found.map(|i| (*i, pinnable(i, policy))) {
                Some((image, Ok(()))) => chosen.push((policy, pin.family.clone(), image, true)),
                Some((image, Err(why))) => lines.push(
                    line(&policy.name, &image.id, Some(&pin.family))
                        .with(PublishOutcome::Refused, format!("cannot pin it: {why}")),
                ),
                None => lines.push(line(&policy.name, &pin.image_id, Some(&pin.family)).with(
                    PublishOutcome::Refused,
                    format!(
                        "neither {} nor a copy of it is an AMI of family `{}` in {region}",
                        pin.image_id, pin.family
                    ),
                )),
            }
            continue;
        }
        for (family, members) in &families {
            if let Some((image, pinned)) = sweep_choice(members, policy, now) {
                chosen.push((policy, family.clone(), image, pinned));
            }
        }
    }
    let mut out = Vec::new();
    // Who owns each destination is decided over every publishing policy and every family with
    // an AMI in the region, whatever this run's filter, pin or promotable AMIs: a destination
    // that two families could write is refused even while only one of them has an AMI to
    // publish (a sweep must not flip between publishing and refusing it, and a rollback or a
    // filtered run must not write what another family's consumers read).
    let mut all_families: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for image in images {
        if let Some(policy) = image.policy_in(document).filter(|p| p.publish.is_some()) {
            all_families
                .entry(policy.name.as_str())
                .or_default()
                .insert(image.family(&policy.family_by));
        }
    }
    let mut owners: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
    for policy in document.policies.iter().filter(|p| p.publish.is_some()) {
        for family in all_families.get(policy.name.as_str()).into_iter().flatten() {
            for template in policy.publish.iter().flat_map(|p| &p.ssm_parameters) {
                owners
                    .entry(render_parameter(
                        template,
                        &policy.name,
                        family,
                        region.as_str(),
                    ))
                    .or_default()
                    .push((policy.name.as_str(), family.as_str()));
            }
        }
    }
    for (policy, family, image, pinned) in &chosen {
        for template in policy.publish.iter().flat_map(|p| &p.ssm_parameters) {
            let name = render_parameter(template, &policy.name, family, region.as_str());
            let who = owners.get(&name).map(Vec::as_slice).unwrap_or_default();
            if who.len() > 1 {
                let mut l = line(&policy.name, &image.id, Some(family));
                l.target = Some(Destination::Parameter(name.clone()).label());
                let names: Vec<String> = who
                    .iter()
                    .map(|(p, f)| format!("`{f}` of policy `{p}`"))
                    .collect();
                lines.push(l.with(
                    PublishOutcome::Refused,
                    format!(
                        "families {} would all write this parameter: put {{family}} (and {{policy}}) in its name",
                        names.join(", ")
                    ),
                ));
                continue;
            }
            out.push(Target {
                policy,
                family: family.clone(),
                destination: Destination::Parameter(name),
                image,
                pinned: *pinned,
            });
        }
    }
    // Launch templates: the family the entry names, or the policy's only family in the region.
    for policy in &document.policies {
        let mine: Vec<&(&'a Policy, String, &'a Image, bool)> = chosen
            .iter()
            .filter(|c| std::ptr::eq(c.0, policy))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let families: Vec<&String> = all_families
            .get(policy.name.as_str())
            .into_iter()
            .flatten()
            .collect();
        for entry in policy.publish.iter().flat_map(|p| &p.launch_templates) {
            let bound = match &entry.family {
                Some(f) => Some(f.as_str()),
                None if families.len() == 1 => families.first().map(|f| f.as_str()),
                None => {
                    let mut l = line(&policy.name, "", None);
                    l.target = Some(format!("launch-template:{}", entry.template));
                    let names: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
                    lines.push(l.with(
                        PublishOutcome::Refused,
                        format!(
                            "policy `{}` has {} families in {region} ({}): name the family this template gets",
                            policy.name,
                            names.len(),
                            names.join(", ")
                        ),
                    ));
                    None
                }
            };
            if let Some((policy, family, image, pinned)) =
                bound.and_then(|f| mine.iter().find(|c| c.1 == f)).copied()
            {
                out.push(Target {
                    policy,
                    family: family.clone(),
                    destination: Destination::Template {
                        template: entry.template.clone(),
                        set_default: entry.set_default,
                    },
                    image,
                    pinned: *pinned,
                });
            }
        }
    }
    (out, lines)
}

/// Whether to change a destination that names `current` now (none: nothing yet).
///
/// Without a pin, the destination never moves to an AMI older than the one it names, nor away
/// from a rollback's pin to an AMI created before the pin.
pub fn choose(target: &Target, current: Option<&str>, images: &[Image]) -> Choice {
    let image = target.image;
    if current == Some(image.id.as_str()) {
        return Choice::Unchanged;
    }
    let previous = current.map(str::to_string);
    if target.pinned {
        return Choice::Publish { previous };
    }
    if let Some(named) = current.and_then(|c| images.iter().find(|i| i.id == c)) {
        if named.made() > image.made() {
            return Choice::Keep(format!(
                "it names {}, newer than {}: never published backwards (a rollback pins an older AMI)",
                named.id, image.id
            ));
        }
        if named.tags.get(tags::PINNED_AT).map(String::as_str) == Some(tags::UNPROVEN) {
            return Choice::Frozen(format!(
                "{} carries a rollback pin ({}) no seal of this stack proves (set before seals, by hand, or not checkable now): what names it is kept until a person decides; remove the tag from {} to publish {} again, or roll back to an AMI whose verdict is sealed",
                named.id,
                tags::PINNED_AT,
                named.id,
                image.id
            ));
        }
        if let Some(pinned_at) = pinned_at(named) {
            if image.made().is_none_or(|c| c <= pinned_at) {
                return Choice::Keep(format!(
                    "a rollback pinned {} at {}: only an AMI created after the pin replaces it",
                    named.id,
                    pinned_at.to_rfc3339()
                ));
            }
        }
    }
    Choice::Publish { previous }
}

/// CreateLaunchTemplateVersion's client token (at most 128 ASCII characters): the template,
/// the version it derives from and the AMI. A re-delivered event finds the same `$Latest` and
/// makes no second version; publishing an AMI again later (a rollback) derives from a newer
/// `$Latest`, so EC2 never answers it with the old version.
pub fn template_token(template_id: &str, from_version: i64, image_id: &str) -> String {
    format!("{template_id}-{from_version}-{image_id}")
}
