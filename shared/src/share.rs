//! Share: makes every managed AMI's launch permissions (and, when asked, its snapshots'
//! createVolumePermission) equal to its policy, and no wider. Reconcile, not append: one
//! ModifyImageAttribute with exactly the additions and removals, none when nothing differs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Instant;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;

use crate::app::App;
use crate::ec2::{Ec2, ImageInventory};
use crate::error::Result;
use crate::ids::Region;
use crate::model::{Image, ImageState};
use crate::policy::{Policy, PolicyDocument, Share};
use crate::publish::event;
use crate::trigger::{RunRequest, Trigger};

/// The function's name in reports and events.
pub const FUNCTION: &str = "ami-share";

/// One launch (or create-volume) permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    /// An account id.
    Account(String),
    /// An organization ARN.
    Organization(String),
    /// An organizational unit ARN.
    OrganizationalUnit(String),
    /// Everyone (`group: all`).
    Public,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Account(a) => write!(f, "account:{a}"),
            Grant::Organization(o) => write!(f, "organization:{o}"),
            Grant::OrganizationalUnit(o) => write!(f, "ou:{o}"),
            Grant::Public => f.write_str("public"),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The launch permissions a policy asks for. Public only when the deployment allows it too.
pub fn desired(share: &Share, allow_public: bool) -> BTreeSet<Grant> {
    let mut out: BTreeSet<Grant> = share
        .accounts
        .iter()
        .map(|a| Grant::Account(a.to_string()))
        .collect();
    out.extend(
        share
            .organizations
            .iter()
            .map(|o| Grant::Organization(o.to_string())),
    );
    out.extend(
        share
            .organizational_units
            .iter()
            .map(|o| Grant::OrganizationalUnit(o.to_string())),
    );
    if share.public && allow_public {
        out.insert(Grant::Public);
    }
    out
}

/// The additions and removals that make `current` equal to `wanted`.
pub fn diff(current: &BTreeSet<Grant>, wanted: &BTreeSet<Grant>) -> (Vec<Grant>, Vec<Grant>) {
    (
        wanted.difference(current).cloned().collect(),
        current.difference(wanted).cloned().collect(),
    )
}

/// What happened to one AMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareOutcome {
    /// Dry run: these changes would be made.
    Planned,
    /// Permissions were changed.
    Changed,
    /// Already as the policy says: no call was made.
    Unchanged,
    /// Not shared, with the reason (disabled, not available).
    Skipped,
    /// Left for the next run (the deadline came, or EC2 throttled or failed transiently).
    Deferred,
    /// Cannot be shared as asked (AWS managed key, not the account's AMI).
    Refused,
    /// EC2 failed a call.
    Failed,
}

/// One line of the share report.
#[derive(Debug, Clone, Serialize)]
pub struct ShareResult {
    /// The AMI.
    pub image_id: String,
    /// The region.
    pub region: Region,
    /// The policy that manages it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// Launch permissions added.
    pub add: Vec<Grant>,
    /// Launch permissions removed.
    pub remove: Vec<Grant>,
    /// Snapshot id → createVolumePermission added.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_add: BTreeMap<String, Vec<Grant>>,
    /// Snapshot id → createVolumePermission removed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_remove: BTreeMap<String, Vec<Grant>>,
    /// What happened.
    pub outcome: ShareOutcome,
    /// Why (skips, refusals, failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Findings: permissions found wider than the policy allows (for example a public AMI).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Why the policy's `public` was not applied (the other grants were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_refused: Option<String>,
}

/// The Lambda handler of `ami-share`.
pub async fn handle(
    app: &App,
    invocation: LambdaEvent<crate::payload::Payload>,
) -> Result<serde_json::Value, Diagnostic> {
    let started = Instant::now();
    let deadline = crate::app::Deadline::from_lambda(invocation.context.deadline, &app.settings);
    let trigger = Trigger::parse(invocation.payload)?;
    let kind = trigger.kind();
    let mut ignored = None;
    let request = match crate::respond::ami_request(app, trigger, FUNCTION)? {
        Ok(r) => Some(r),
        Err(why) => {
            ignored = Some(why);
            None
        }
    };
    let dry_run = request
        .as_ref()
        .and_then(|r| r.dry_run)
        .unwrap_or(app.document.dry_run);
    let mut results = Vec::new();
    if let Some(request) = &request {
        let regions = request
            .regions
            .clone()
            .unwrap_or_else(|| vec![app.settings.home_region.clone()]);
        let runs = regions
            .iter()
            .map(|region| reconcile_region(app, region, request, dry_run, deadline));
        for r in futures::future::join_all(runs).await {
            results.extend(r);
        }
    }
    let mut events = Vec::new();
    if !dry_run {
        for r in results
            .iter()
            .filter(|r| r.outcome == ShareOutcome::Changed)
        {
            let detail = serde_json::to_value(r).unwrap_or_default();
            if !r.add.is_empty() || !r.snapshot_add.is_empty() {
                events.push(event(
                    "AMI Shared",
                    vec![r.region.image_arn(&r.image_id)],
                    detail.clone(),
                ));
            }
            if !r.remove.is_empty() || !r.snapshot_remove.is_empty() {
                events.push(event(
                    "AMI Unshared",
                    vec![r.region.image_arn(&r.image_id)],
                    detail,
                ));
            }
        }
    }
    let run = crate::respond::Run {
        function: FUNCTION,
        trigger: kind,
        dry_run,
        window: None,
        ignored,
        started,
    };
    run.finish(app, results, events).await
}

/// The policy that shares an image: the first that manages it, if it has `share`.
fn sharing_policy<'a>(document: &'a PolicyDocument, image: &Image) -> Option<&'a Policy> {
    image.policy_in(document).filter(|p| p.share.is_some())
}

fn blank(image_id: &str, region: &Region, policy: &str) -> ShareResult {
    ShareResult {
        image_id: image_id.to_string(),
        region: region.clone(),
        policy: policy.to_string(),
        add: Vec::new(),
        remove: Vec::new(),
        snapshot_add: BTreeMap::new(),
        snapshot_remove: BTreeMap::new(),
        outcome: ShareOutcome::Unchanged,
        reason: None,
        findings: Vec::new(),
        public_refused: None,
    }
}

async fn reconcile_region(
    app: &App,
    region: &Region,
    request: &RunRequest,
    dry_run: bool,
    deadline: crate::app::Deadline,
) -> Vec<ShareResult> {
    let ec2 = app.ec2(region);
    let images = match ec2.images(None).await {
        Ok(images) => images,
        Err(e) => {
            let mut r = blank("", region, "");
            r.outcome = ShareOutcome::Failed;
            r.reason = Some(e.to_string());
            return vec![r];
        }
    };
    let mut results = Vec::new();
    let mut work = Vec::new();
    if let Some(ids) = &request.image_ids {
        for id in ids {
            match images.iter().find(|i| &i.id == id) {
                Some(image) => match sharing_policy(&app.document, image) {
                    Some(p) => work.push((image, p)),
                    None => {
                        let mut r = blank(id, region, "");
                        r.outcome = ShareOutcome::Skipped;
                        r.reason = Some("no policy with `share` manages this AMI".into());
                        results.push(r);
                    }
                },
                None => {
                    let mut r = blank(id, region, "");
                    r.outcome = ShareOutcome::Refused;
                    r.reason = Some(format!("{id} is not an AMI of the account in {region} (unknown, or owned by another account)"));
                    results.push(r);
                }
            }
        }
    } else {
        work.extend(
            images
                .iter()
                .filter_map(|i| sharing_policy(&app.document, i).map(|p| (i, p))),
        );
    }
    let wanted = |p: &Policy| {
        request
            .policies
            .as_ref()
            .is_none_or(|ps| ps.contains(&p.name))
    };
    let work: Vec<_> = work.into_iter().filter(|(_, p)| wanted(p)).collect();
    let allow_public = app.settings.deployment.allow_public_sharing;
    let done: Vec<ShareResult> = futures::stream::iter(work)
        .map(|(image, policy)| {
            let ec2 = &ec2;
            async move {
                if deadline.passed() {
                    let mut r = blank(&image.id, ec2.region(), &policy.name);
                    r.outcome = ShareOutcome::Deferred;
                    r.reason =
                        Some("the run reached its deadline; the next sweep continues".into());
                    return r;
                }
                reconcile(app, ec2, image, policy, allow_public, dry_run).await
            }
        })
        .buffer_unordered(app.settings.concurrency)
        .collect()
        .await;
    results.extend(done);
    results.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    results
}

async fn reconcile(
    app: &App,
    ec2: &Ec2,
    image: &Image,
    policy: &Policy,
    allow_public: bool,
    dry_run: bool,
) -> ShareResult {
    let mut r = blank(&image.id, ec2.region(), &policy.name);
    match reconcile_inner(app, ec2, image, policy, allow_public, dry_run, &mut r).await {
        Ok(()) => r,
        Err(e) => {
            r.outcome = if e.is_transient() {
                ShareOutcome::Deferred
            } else {
                ShareOutcome::Failed
            };
            r.reason = Some(e.to_string());
            r
        }
    }
}

async fn reconcile_inner(
    app: &App,
    ec2: &Ec2,
    image: &Image,
    policy: &Policy,
    allow_public: bool,
    dry_run: bool,
    r: &mut ShareResult,
) -> Result<()> {
    let Some(share) = &policy.share else {
        return Ok(());
    };
    match image.state {
        ImageState::Available => {}
        ImageState::Disabled => {
            r.outcome = ShareOutcome::Skipped;
            r.reason = Some("disabled: a disabled AMI cannot be shared (enable it first)".into());
            return Ok(());
        }
        ref other => {
            r.outcome = ShareOutcome::Skipped;
            r.reason = Some(format!("{other}: only available AMIs are shared"));
            return Ok(());
        }
    }
    let wanted = desired(share, allow_public);
    let current = ec2.launch_permissions(&image.id).await?;
    let (add, remove) = diff(&current, &wanted);
    if remove.contains(&Grant::Public) {
        r.findings.push(format!(
            "{} is public but its policy `{}` does not allow it{}: made private",
            image.id,
            policy.name,
            if share.public {
                " (the deployment does not allow public sharing)"
            } else {
                ""
            }
        ));
    }
    if image.encrypted && !add.is_empty() {
        let keys = ec2.snapshot_kms_keys(&image.snapshot_ids).await?;
        for key in keys {
            if app.is_aws_managed_key(ec2.region(), &key).await? {
                r.outcome = ShareOutcome::Refused;
                r.reason = Some(format!(
                    "{} is encrypted with the AWS managed key {key}, which cannot be shared: copy the AMI with a customer managed key granted to the target accounts (CopyImage with KmsKeyId) and share the copy",
                    image.id
                ));
                return Ok(());
            }
        }
    }
    r.remove = remove.clone();

    let mut snapshot_changes = Vec::new();
    if share.snapshots {
        // createVolumePermission: accounts only (never public), needed to copy into those accounts.
        let accounts: BTreeSet<Grant> = wanted
            .iter()
            .filter(|g| matches!(g, Grant::Account(_)))
            .cloned()
            .collect();
        for snap in &image.snapshot_ids {
            let current = ec2.volume_permissions(snap).await?;
            let (add, remove) = diff(&current, &accounts);
            if remove.contains(&Grant::Public) {
                r.findings
                    .push(format!("snapshot {snap} was public: made private"));
            }
            if !add.is_empty() {
                r.snapshot_add.insert(snap.clone(), add.clone());
            }
            if !remove.is_empty() {
                r.snapshot_remove.insert(snap.clone(), remove.clone());
            }
            if !add.is_empty() || !remove.is_empty() {
                snapshot_changes.push((snap.clone(), add, remove));
            }
        }
    }
    // Public goes in a call of its own (ModifyImageAttribute is all or nothing): EC2 refuses
    // it for encrypted AMIs, AMIs with product codes, and while block public access for AMIs is
    // on in the region; such a refusal must not cost the account, organization and OU grants.
    let mut add = add;
    let public = add.contains(&Grant::Public);
    add.retain(|g| *g != Grant::Public);
    let mut make_public = false;
    if public {
        let why_not = if image.encrypted {
            Some(
                "it is encrypted (EC2 never makes an AMI with encrypted snapshots public)"
                    .to_string(),
            )
        } else if image.has_product_codes {
            Some("it has product codes (EC2 never makes such an AMI public)".to_string())
        } else if ec2.image_block_public_access().await? {
            Some(format!(
                "block public access for AMIs is on in {} (GetImageBlockPublicAccessState): turn it off there to share publicly",
                ec2.region()
            ))
        } else {
            None
        };
        match why_not {
            Some(why) => r.public_refused = Some(format!("not made public: {why}")),
            None => make_public = true,
        }
    }
    r.add = add.clone();
    if make_public {
        r.add.push(Grant::Public);
    }
    if add.is_empty() && remove.is_empty() && snapshot_changes.is_empty() && !make_public {
        r.outcome = if r.public_refused.is_some() {
            ShareOutcome::Refused
        } else {
            ShareOutcome::Unchanged
        };
        r.reason = r.public_refused.clone();
        return Ok(());
    }
    if dry_run {
        r.outcome = ShareOutcome::Planned;
        return Ok(());
    }
    if !add.is_empty() || !remove.is_empty() {
        ec2.modify_launch_permissions(&image.id, &add, &remove)
            .await?;
    }
    for (snap, add, remove) in &snapshot_changes {
        ec2.modify_volume_permissions(snap, add, remove).await?;
    }
    r.outcome = ShareOutcome::Changed;
    if make_public {
        if let Err(e) = ec2
            .modify_launch_permissions(&image.id, &[Grant::Public], &[])
            .await
        {
            if e.is_transient() {
                return Err(e);
            }
            r.add.retain(|g| *g != Grant::Public);
            r.public_refused = Some(format!("not made public: EC2 refused it: {e}"));
        }
    }
    r.reason = r.public_refused.clone();
    Ok(())
}

impl crate::respond::Line for ShareResult {
    type Outcome = ShareOutcome;
    fn outcome(&self) -> &ShareOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, ShareOutcome::Refused | ShareOutcome::Failed)
            || self.public_refused.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Deployment;

    fn share(json: &str, allow_public: bool) -> Share {
        let doc = format!(r#"{{"policies": [{{"name": "p", "share": {json}}}]}}"#);
        let d = PolicyDocument::parse(
            &doc,
            Deployment {
                allow_public_sharing: allow_public,
                ..Deployment::default()
            },
        )
        .expect("policy");
        d.policies[0].share.clone().expect("share")
    }

    #[test]
    fn reconcile_adds_what_is_missing_and_removes_what_the_policy_no_longer_lists() {
        let s = share(r#"{"accounts": ["111122223333", "444455556666"]}"#, false);
        let current = BTreeSet::from([
            Grant::Account("111122223333".into()),
            Grant::Account("999988887777".into()),
            Grant::Public,
        ]);
        let (add, remove) = diff(&current, &desired(&s, false));
        assert_eq!(add, vec![Grant::Account("444455556666".into())]);
        assert_eq!(
            remove,
            vec![Grant::Account("999988887777".into()), Grant::Public]
        );
    }

    #[test]
    fn nothing_to_change_means_no_change() {
        let s = share(
            r#"{"accounts": ["111122223333"], "organizations": ["arn:aws:organizations::111122223333:organization/o-abcde12345"]}"#,
            false,
        );
        let wanted = desired(&s, false);
        assert_eq!(diff(&wanted, &wanted), (vec![], vec![]));
    }

    #[test]
    fn public_is_desired_only_when_the_policy_and_the_deployment_both_allow_it() {
        let s = share(r#"{"public": true}"#, true);
        assert!(desired(&s, true).contains(&Grant::Public));
        assert!(!desired(&s, false).contains(&Grant::Public));
    }
}
