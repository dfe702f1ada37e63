//! The retention planner: a pure function from the account's state to a plan, with every
//! decision and its reason. No SDK types, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::model::{
    Image, ImageState, ReportState, Snapshot, Usage, UsageReport, REPORT_TEMPLATE_LAG_HOURS,
};
use crate::domain::policy::{Policy, PolicyDocument, Retain};
use crate::domain::recycle_bin::{Recovery, RecycleBin};
use crate::domain::tags;

/// What the planner decides over, for one region.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The account that runs the tool: only its AMIs and snapshots are ever touched.
    pub account_id: &'a str,
    /// Every AMI of the account in the region (disabled and deprecated included).
    pub images: &'a [Image],
    /// Every snapshot of the account in the region.
    pub snapshots: &'a [Snapshot],
    /// What uses the AMIs.
    pub usage: &'a Usage,
    /// The policy document.
    pub document: &'a PolicyDocument,
    /// Only these policies (default all).
    pub policies: Option<&'a [String]>,
    /// Only these images (default all).
    pub image_ids: Option<&'a [String]>,
    /// The planner's clock.
    pub as_of: DateTime<Utc>,
    /// The region's Recycle Bin rules; `None` when they could not be read.
    pub recycle_bin: Option<&'a RecycleBin>,
}

impl<'a> PlanInput<'a> {
    /// The AMIs the account still has: those this run already deregistered are gone.
    fn live_images(&self) -> impl Iterator<Item = &'a Image> + 'a {
        let gone = &self.usage.gone;
        self.images.iter().filter(move |i| !gone.contains(&i.id))
    }

    /// The snapshots the account still has: those this run already deleted are gone.
    fn live_snapshots(&self) -> impl Iterator<Item = &'a Snapshot> + 'a {
        let gone = &self.usage.gone;
        self.snapshots.iter().filter(move |s| !gone.contains(&s.id))
    }
}

/// A change to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// EnableImageDeprecation.
    Deprecate,
    /// DisableImage.
    Disable,
    /// DeregisterImage, deleting the snapshots no other AMI uses.
    Deregister,
    /// DeleteSnapshot (or done by DeregisterImage's DeleteAssociatedSnapshots).
    DeleteSnapshot,
    /// EnableImageDeregistrationProtection with cooldown (`retain.protect_latest`).
    Protect,
    /// DisableImageDeregistrationProtection of a protection age-out turned on: the AMI fell out
    /// of the newest N (EC2 keeps refusing its deregistration for the 24-hour cooldown).
    Unprotect,
}

impl ActionKind {
    /// The action as a past participle: `deprecated`, `disabled`, ...
    pub fn past(&self) -> &'static str {
        match self {
            ActionKind::Deprecate => "deprecated",
            ActionKind::Disable => "disabled",
            ActionKind::Deregister => "deregistered",
            ActionKind::DeleteSnapshot => "deleted",
            ActionKind::Protect => "protected",
            ActionKind::Unprotect => "unprotected",
        }
    }
}

/// One planned change, with the reason for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub action: ActionKind,
    /// The image acted on (for a snapshot: the image it belonged to, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The snapshot acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The policy that decided it.
    pub policy: String,
    /// The image's family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub reason: String,
    /// For a deprecation: when the policy will disable and deregister the AMI, and the
    /// accounts known to use it (announced as `AMI Retirement Scheduled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retirement: Option<Retirement>,
    /// For a deregistration: whether the Recycle Bin keeps the AMI and its snapshots, and until
    /// when (absent when the rules could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// For a snapshot: its size in bytes, and whether that is the volume's size (EC2 gave no
    /// `FullSnapshotSizeInBytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `bytes` is the size of the volume, an upper bound of the snapshot's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bytes_estimated: bool,
}

/// What a deprecation announces: the dates on which the policy retires the AMI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retirement {
    /// When it is disabled (`disable_after_days`), if the policy disables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_on: Option<DateTime<Utc>>,
    /// When it is deregistered (`max_age_days`), if the policy deregisters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregister_on: Option<DateTime<Utc>>,
    /// Other accounts that use it, from an available usage report, when one was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
}

/// Why an image is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// Owned by another account.
    NotOwned,
    /// A non-terminated instance runs it.
    InUseByInstance,
    /// A launch template version names it.
    InUseByLaunchTemplate,
    /// DescribeImageReferences found a reference to it.
    Referenced,
    /// It carries a protect tag.
    ProtectTag,
    /// Deregistration protection is enabled.
    DeregistrationProtection,
    /// Shared with other accounts while the policy excludes shared AMIs.
    Shared,
    /// Launched within the policy's exclusion window.
    RecentlyLaunched,
    /// One of the newest `keep_latest` of its family.
    KeepLatest,
    /// Not old enough for any stage, or already in the stage its age calls for.
    WithinRetention,
    /// Pending or failed: not settled yet.
    NotSettled,
    /// The evidence that it is unused is incomplete (an evidence call failed): it may be
    /// deprecated, never disabled or deregistered.
    UsageUnknown,
    /// Shared, and EC2's usage report says another account uses it (an instance or a launch
    /// template there).
    InUseByAccount,
    /// Shared, and no usage report fresh enough says whether another account uses it: it may
    /// be deprecated, never disabled or deregistered, until a report answers.
    ConsumerUsageUnknown,
    /// Past its age, but `require_recoverable` is set and the Recycle Bin would not keep it (or
    /// a snapshot deleted with it) long enough to undo the deregistration.
    NotRecoverable,
    /// Past its age, but its share state is not read in this run: the run reads it (one call
    /// per AMI, EC2 has no batch form) for at most as many AMIs as it can retire before its
    /// deadline, oldest first. Left for the next run, which a run that made progress starts at
    /// once (a continuation).
    Deferred,
}

/// An image the plan keeps, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub image_id: String,
    /// The policy that manages it.
    pub policy: String,
    pub family: String,
    /// Why it is kept.
    pub reason: KeepReason,
    /// Details (the instance, template version or tag that keeps it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A snapshot left behind by an earlier deregistration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub snapshot_id: String,
    /// The policy it belongs to (by its tags).
    pub policy: String,
    /// Whether the plan deletes it (`retain.delete_orphan_snapshots`).
    pub deleted: bool,
}

/// The plan for one region.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Changes, in execution order: image stages first, then snapshots.
    pub actions: Vec<Action>,
    /// Images kept, with the reason.
    pub kept: Vec<Kept>,
    /// Snapshots of deregistered images that are kept, and why.
    pub snapshots_kept: Vec<SnapshotKept>,
    /// Orphaned snapshots found.
    pub orphans: Vec<Orphan>,
    /// Images kept only because their share state is not known yet: look it up, plan again.
    #[serde(skip)]
    pub share_state_needed: Vec<String>,
    /// Shared images kept only because their usage reports are not read yet: read them, plan
    /// again.
    #[serde(skip)]
    pub consumer_reports_needed: Vec<String>,
    /// Shared images that have no usage report fresh enough and none in progress: ask EC2 for
    /// one (CreateImageUsageReport), so that a later run knows who uses them.
    pub usage_reports_to_request: Vec<String>,
}

/// A snapshot of a deregistered image that is not deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotKept {
    pub snapshot_id: String,
    /// The image being deregistered.
    pub image_id: String,
    /// Why it stays.
    pub reason: String,
}

/// Plans retention for one region.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut out = Plan::default();
    let wanted_policy = |name: &str| input.policies.is_none_or(|ps| ps.iter().any(|p| p == name));
    let wanted_image = |id: &str| {
        input
            .image_ids
            .is_none_or(|ids| ids.iter().any(|i| i == id))
    };

    // Each image belongs to the first policy (in document order) that manages it.
    let mut families: BTreeMap<(usize, String), Vec<&Image>> = BTreeMap::new();
    for image in input.live_images() {
        let Some((index, policy)) = input
            .document
            .policies
            .iter()
            .enumerate()
            .find(|(_, p)| image.managed_by(p))
        else {
            continue;
        };
        if policy.retain.is_none() || !wanted_policy(&policy.name) {
            continue;
        }
        if image.owner_id != input.account_id {
            if wanted_image(&image.id) {
                out.kept.push(kept(
                    image,
                    policy,
                    String::new(),
                    KeepReason::NotOwned,
                    format!("owner {}", image.owner_id),
                ));
            }
            continue;
        }
        families
            .entry((index, image.family(&policy.family_by)))
            .or_default()
            .push(image);
    }

    let mut deregistered: HashSet<&str> = HashSet::new();
    let mut stage_actions = Vec::new();
    for ((index, family), mut members) in families {
        let policy = &input.document.policies[index];
        let Some(retain) = &policy.retain else {
            continue;
        };
        // Newest first; ties broken by id so the plan is deterministic.
        members.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        // `keep_latest` ranks only AMIs that can be launched: a pending, failed or disabled
        // newer AMI never pushes the last good one out of the newest N, nor does one whose
        // launch test failed (`ami-automation:validation=failed`).
        let mut launchable = 0usize;
        for image in members {
            let counts =
                image.state == ImageState::Available && image.verdict() != Some(tags::FAILED);
            let rank = counts.then(|| {
                launchable += 1;
                launchable - 1
            });
            if !wanted_image(&image.id) {
                continue;
            }
            let image_action = |action, reason, retirement| Action {
                action,
                image_id: Some(image.id.clone()),
                snapshot_id: None,
                policy: policy.name.clone(),
                family: Some(family.clone()),
                reason,
                retirement,
                recovery: None,
                bytes: None,
                bytes_estimated: false,
            };
            if let Some((kind, reason)) = protection(image, rank, retain) {
                stage_actions.push(image_action(kind, reason, None));
            }
            let (decision, needs) = decide(image, rank, retain, policy, input);
            if needs.share_state {
                out.share_state_needed.push(image.id.clone());
            }
            if needs.consumer_reports {
                out.consumer_reports_needed.push(image.id.clone());
            }
            if needs.new_report {
                out.usage_reports_to_request.push(image.id.clone());
            }
            match decision {
                Decision::Keep(reason, detail) => {
                    out.kept
                        .push(kept(image, policy, family.clone(), reason, detail))
                }
                Decision::Act(kind, reason) => {
                    if kind == ActionKind::Deregister {
                        deregistered.insert(image.id.as_str());
                    }
                    let retirement =
                        (kind == ActionKind::Deprecate).then(|| retirement(image, retain, input));
                    stage_actions.push(image_action(kind, reason, retirement));
                }
            }
        }
    }

    // The account's images and snapshots by id, once for what follows.
    let by_id: HashMap<&str, &Image> = input.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let owned: HashMap<&str, &Snapshot> = input
        .live_snapshots()
        .filter(|s| s.owner_id == input.account_id)
        .map(|s| (s.id.as_str(), s))
        .collect();
    recoverability(
        input,
        (&by_id, &owned),
        &mut stage_actions,
        &mut deregistered,
        &mut out.kept,
    );

    // Snapshots: delete one only when the account owns it and no remaining AMI uses it.
    let mut used_by_remaining: HashMap<&str, &str> = HashMap::new();
    let mut used_at_all: HashSet<&str> = HashSet::new();
    for image in input.live_images() {
        for snap in &image.snapshot_ids {
            used_at_all.insert(snap.as_str());
            if !deregistered.contains(image.id.as_str()) {
                used_by_remaining
                    .entry(snap.as_str())
                    .or_insert(image.id.as_str());
            }
        }
    }
    let mut snapshot_actions = Vec::new();
    let mut planned_snapshots = BTreeSet::new();
    for action in stage_actions
        .iter()
        .filter(|a| a.action == ActionKind::Deregister)
    {
        let Some(image) = action.image_id.as_deref().and_then(|id| by_id.get(id)) else {
            continue;
        };
        for snap in &image.snapshot_ids {
            let why_not = if let Some(user) = used_by_remaining.get(snap.as_str()) {
                Some(format!("still used by {user}"))
            } else if !owned.contains_key(snap.as_str()) {
                Some("not owned by the account (or already gone)".to_string())
            } else {
                None
            };
            match why_not {
                Some(reason) => out.snapshots_kept.push(SnapshotKept {
                    snapshot_id: snap.clone(),
                    image_id: image.id.clone(),
                    reason,
                }),
                None if planned_snapshots.insert(snap.clone()) => {
                    let size = owned.get(snap.as_str()).and_then(|s| s.size.bytes());
                    snapshot_actions.push(Action {
                        action: ActionKind::DeleteSnapshot,
                        image_id: Some(image.id.clone()),
                        snapshot_id: Some(snap.clone()),
                        policy: action.policy.clone(),
                        family: action.family.clone(),
                        reason: format!("snapshot of {} and no remaining AMI uses it", image.id),
                        retirement: None,
                        recovery: None,
                        bytes: size.map(|(b, _)| b),
                        bytes_estimated: size.is_some_and(|(_, measured)| !measured),
                    })
                }
                None => {}
            }
        }
    }

    // Orphans: CreateImage/CopyImage snapshots that no AMI uses, older than the policy's max age.
    if input.image_ids.is_none() {
        for snap in input.live_snapshots() {
            if snap.owner_id != input.account_id
                || used_at_all.contains(snap.id.as_str())
                || !snap.made_for_an_image()
            {
                continue;
            }
            let Some(policy) = input
                .document
                .policies
                .iter()
                .find(|p| snapshot_managed_by(snap, p))
            else {
                continue;
            };
            let Some(retain) = policy
                .retain
                .as_ref()
                .filter(|_| wanted_policy(&policy.name))
            else {
                continue;
            };
            let Some(max_age) = retain.max_age_days else {
                continue;
            };
            if !older_than(snap.started, input.as_of, max_age) {
                continue;
            }
            out.orphans.push(Orphan {
                snapshot_id: snap.id.clone(),
                policy: policy.name.clone(),
                deleted: retain.delete_orphan_snapshots,
            });
            if retain.delete_orphan_snapshots && planned_snapshots.insert(snap.id.clone()) {
                snapshot_actions.push(Action {
                    action: ActionKind::DeleteSnapshot,
                    image_id: None,
                    snapshot_id: Some(snap.id.clone()),
                    policy: policy.name.clone(),
                    family: None,
                    reason: format!(
                        "orphan: made for an AMI, no AMI uses it, older than {max_age} days"
                    ),
                    retirement: None,
                    recovery: None,
                    bytes: snap.size.bytes().map(|(b, _)| b),
                    bytes_estimated: snap.size.bytes().is_some_and(|(_, measured)| !measured),
                });
            }
        }
    }

    out.actions = stage_actions;
    out.actions.extend(snapshot_actions);
    out
}

/// A snapshot belongs to a policy by the policy tag, or by the policy's select tags.
fn snapshot_managed_by(snap: &Snapshot, policy: &Policy) -> bool {
    if let Some(tagged) = snap.tags.get(crate::domain::tags::POLICY) {
        return tagged == &policy.name;
    }
    !policy.select.tags.is_empty()
        && policy
            .select
            .tags
            .iter()
            .all(|(k, p)| snap.tags.get(k).is_some_and(|v| p.matches(v)))
}

enum Decision {
    Keep(KeepReason, String),
    Act(ActionKind, String),
}

/// Whether each deregistration can be undone from the Recycle Bin: its `recovery` in the plan.
/// Under `require_recoverable`, a deregistration that cannot (or whose rules could not be read)
/// becomes a kept AMI (`not_recoverable`).
fn recoverability<'a>(
    input: PlanInput<'a>,
    (by_id, snapshots): (&HashMap<&str, &Image>, &HashMap<&str, &Snapshot>),
    stage_actions: &mut Vec<Action>,
    deregistered: &mut HashSet<&'a str>,
    kept_out: &mut Vec<Kept>,
) {
    let mut used_by_remaining: HashSet<&str> = HashSet::new();
    for image in input
        .live_images()
        .filter(|i| !deregistered.contains(i.id.as_str()))
    {
        used_by_remaining.extend(image.snapshot_ids.iter().map(String::as_str));
    }
    let mut refused: HashSet<String> = HashSet::new();
    for action in stage_actions
        .iter_mut()
        .filter(|a| a.action == ActionKind::Deregister)
    {
        let Some(image) = action.image_id.as_deref().and_then(|id| by_id.get(id)) else {
            continue;
        };
        let deleted = image
            .snapshot_ids
            .iter()
            .filter(|s| !used_by_remaining.contains(s.as_str()))
            .filter_map(|s| snapshots.get(s.as_str()))
            .map(|s| &s.tags);
        // The Recycle Bin keeps EBS-backed AMIs only (EC2 User Guide, "Recycle Bin":
        // instance store-backed AMIs are not supported).
        let instance_store = image.root_device_type.as_deref() == Some("instance-store");
        action.recovery = input.recycle_bin.map(|bin| {
            if instance_store {
                Recovery::never("the Recycle Bin keeps only EBS-backed AMIs: an instance-store AMI is gone once deregistered")
            } else {
                bin.recovery(&image.tags, deleted, input.as_of)
            }
        });
        let required = input
            .document
            .policy(&action.policy)
            .and_then(|p| p.retain.as_ref())
            .is_some_and(|r| r.require_recoverable);
        if !required {
            continue;
        }
        let why = match &action.recovery {
            Some(r) if r.recoverable => continue,
            Some(r) => r.why_not.clone().unwrap_or_default(),
            None => "the Recycle Bin rules could not be read".to_string(),
        };
        refused.insert(image.id.clone());
        kept_out.push(Kept {
            image_id: image.id.clone(),
            policy: action.policy.clone(),
            family: action.family.clone().unwrap_or_default(),
            reason: KeepReason::NotRecoverable,
            detail: format!("not deregistered: {why} (require_recoverable)"),
        });
    }
    if !refused.is_empty() {
        stage_actions.retain(|a| {
            !(a.action == ActionKind::Deregister
                && a.image_id.as_ref().is_some_and(|id| refused.contains(id)))
        });
        deregistered.retain(|id| !refused.contains(*id));
    }
}

/// Deregistration protection for `retain.protect_latest`: on for the newest N launchable AMIs,
/// off for one age-out protected (its tag) that is no longer among them. A protection someone
/// else set is never turned off.
fn protection(image: &Image, rank: Option<usize>, retain: &Retain) -> Option<(ActionKind, String)> {
    let n = retain.protect_latest as usize;
    let newest = rank.filter(|r| *r < n);
    let ours = image
        .tags
        .get(crate::domain::tags::PROTECTED_BY)
        .is_some_and(|v| v == crate::domain::tags::PROTECTED_BY_AGE_OUT);
    match newest {
        Some(r) if !image.deregistration_protection => Some((
            ActionKind::Protect,
            format!("newest {} of {n} (protect_latest)", r + 1),
        )),
        None if ours && image.deregistration_protection => Some((
            ActionKind::Unprotect,
            format!(
                "no longer among the newest {n} (protect_latest); EC2's 24-hour cooldown follows"
            ),
        )),
        _ => None,
    }
}

/// What a decision waits on: the caller looks it up for exactly these images and plans again.
#[derive(Debug, Default)]
struct Needs {
    /// The image's share state (DescribeImageAttribute).
    share_state: bool,
    /// The image's usage reports (DescribeImageUsageReports and their entries).
    consumer_reports: bool,
    /// A new usage report (CreateImageUsageReport).
    new_report: bool,
}

/// Decides one image, and says what the decision waits on.
fn decide(
    image: &Image,
    rank: Option<usize>,
    retain: &Retain,
    policy: &Policy,
    input: PlanInput<'_>,
) -> (Decision, Needs) {
    use KeepReason::*;
    let decision = stage(image, rank, retain, input);
    let Decision::Act(kind, _) = &decision else {
        return (decision, Needs::default());
    };
    let kind = *kind;
    // DisableImage removes every launch permission (EC2 API reference, DisableImage):
    // consumers of a policy that shares would lose the AMI without notice.
    let disable_unshares =
        kind == ActionKind::Disable && policy.share.is_some() && !retain.disable_shared_images;
    if retain.exclude_shared || disable_unshares {
        let why = if retain.exclude_shared {
            "shared, and the policy excludes shared AMIs"
        } else {
            "shared: DisableImage would remove its launch permissions (retain.disable_shared_images allows it)"
        };
        match (image.public, image.shared) {
            (true, _) => {
                return (
                    Decision::Keep(Shared, format!("public; {why}")),
                    Needs::default(),
                )
            }
            (false, Some(true)) => return (Decision::Keep(Shared, why.into()), Needs::default()),
            (false, None) if input.usage.deferred.contains(&image.id) => {
                return (deferred(kind), Needs::default())
            }
            (false, None) => {
                // Unknown share state keeps the image (fail closed) until it is looked up.
                let detail = format!("share state not known; {why}");
                let needs = Needs {
                    share_state: true,
                    ..Needs::default()
                };
                return (Decision::Keep(Shared, detail), needs);
            }
            (false, Some(false)) => {}
        }
    }
    // Deprecation stops no launch: it goes ahead whatever uses the AMI elsewhere.
    if kind == ActionKind::Deprecate {
        return (decision, Needs::default());
    }
    // Fail closed: without complete evidence that the AMI is unused, nothing that stops a
    // launch happens to it.
    if let Some(gap) = input.usage.gap_for(&image.id) {
        let code = gap.code.as_deref().unwrap_or(&gap.error);
        let detail = format!("not {}: {} failed ({code})", kind.past(), gap.call);
        return (Decision::Keep(UsageUnknown, detail), Needs::default());
    }
    consumers(image, kind, retain, input).map_or((decision, Needs::default()), |kept| kept)
}

/// An image left for the next run: its share state is beyond what this run reads.
fn deferred(kind: ActionKind) -> Decision {
    Decision::Keep(
        KeepReason::Deferred,
        format!(
            "not {} in this run: its share state is left for the next run",
            kind.past()
        ),
    )
}

/// For an AMI shared with other accounts (or public), what the accounts that may use it allow:
/// `None` when nothing keeps the AMI (not shared, or a usage report made long enough after the
/// notice shows no other account uses it), else the decision (a deprecation first, as notice, or
/// keep) and what it waits on.
fn consumers(
    image: &Image,
    kind: ActionKind,
    retain: &Retain,
    input: PlanInput<'_>,
) -> Option<(Decision, Needs)> {
    use KeepReason::*;
    match (image.public, image.shared) {
        (false, Some(false)) => return None,
        (false, None) if input.usage.deferred.contains(&image.id) => {
            return Some((deferred(kind), Needs::default()))
        }
        (false, None) => {
            let detail = format!("not {}: share state not known yet", kind.past());
            let needs = Needs {
                share_state: true,
                ..Needs::default()
            };
            return Some((Decision::Keep(ConsumerUsageUnknown, detail), needs));
        }
        _ => {}
    }
    let notice = match notice(image, kind, input) {
        Ok(at) => at,
        Err(decision) => return Some((decision, Needs::default())),
    };

    let Some(reports) = input.usage.consumer_reports.get(&image.id) else {
        let detail = format!("not {}: usage reports not read yet", kind.past());
        let needs = Needs {
            consumer_reports: true,
            ..Needs::default()
        };
        return Some((Decision::Keep(ConsumerUsageUnknown, detail), needs));
    };
    let max_age = Duration::hours(i64::from(retain.consumer_report_max_age_hours));
    let newest = |proves: &dyn Fn(&UsageReport) -> bool| {
        reports
            .iter()
            .filter(|r| r.state == ReportState::Available && input.as_of - r.created <= max_age)
            .filter(|r| proves(r))
            .max_by_key(|r| r.created)
    };
    // Use any fresh report shows keeps the AMI, whatever else the report covers.
    if let Some(report) = newest(&|r| !r.consumers(input.account_id).is_empty()) {
        let users = report.consumers(input.account_id);
        let detail = format!("{} (usage report {})", users.join("; "), report.report_id);
        return Some((Decision::Keep(InUseByAccount, detail), Needs::default()));
    }
    // A report misses recent use: only one that covers every account and resource type, made
    // long enough after the notice and the last launch, proves that nobody else uses it.
    let depth = retain
        .in_use
        .launch_template_versions
        .consumer_report_depth();
    let proves_from = UsageReport::proves_from(image, notice);
    if newest(&|r| r.covers(depth) && r.created >= proves_from).is_some() {
        return None;
    }
    let (detail, new_report) =
        awaited_report(image, kind, retain, input, reports, (notice, proves_from));
    let needs = Needs {
        new_report,
        ..Needs::default()
    };
    Some((Decision::Keep(ConsumerUsageUnknown, detail), needs))
}

/// When the accounts that use a shared AMI were told that it retires: its deprecation. Not
/// deprecated yet: the decision is to deprecate it first (or, when it cannot be, to keep it).
fn notice(
    image: &Image,
    kind: ActionKind,
    input: PlanInput<'_>,
) -> Result<DateTime<Utc>, Decision> {
    use KeepReason::ConsumerUsageUnknown;
    // A deprecation an earlier run set a minute ahead comes in a minute; one further ahead (EC2
    // deprecates public AMIs two years after creation by default; anyone may set one years
    // ahead) is brought forward to now, as the notice.
    let soon = input.as_of + Duration::minutes(NOTICE_SLACK_MINUTES);
    match image.deprecation_time {
        Some(at) if at <= input.as_of => Ok(notice_from(image, at, input.as_of)),
        Some(at) if at <= soon => Err(Decision::Keep(
            ConsumerUsageUnknown,
            format!(
                "not {}: shared, and its deprecation at {} (the notice to the accounts that use it) has not come",
                kind.past(),
                at.to_rfc3339()
            ),
        )),
        Some(at) if image.state == ImageState::Available => Err(Decision::Act(
            ActionKind::Deprecate,
            format!(
                "shared, and due to be {0}: its deprecation, set for {1}, is brought forward to now as notice to the accounts that use it ({0} once a usage report made {2} days later shows none)",
                kind.past(),
                at.to_rfc3339(),
                REPORT_TEMPLATE_LAG_HOURS / 24
            ),
        )),
        None if image.state == ImageState::Available => Err(Decision::Act(
            ActionKind::Deprecate,
            format!(
                "shared, and due to be {0}: deprecated first, as notice to the accounts that use it ({0} once a usage report made {1} days later shows none)",
                kind.past(),
                REPORT_TEMPLATE_LAG_HOURS / 24
            ),
        )),
        _ => Err(Decision::Keep(
            ConsumerUsageUnknown,
            format!(
                "not {}: shared, not deprecated by now, and {} AMIs cannot be deprecated",
                kind.past(),
                image.state
            ),
        )),
    }
}

/// The notice, once the AMI is deprecated: the deprecation, or the last time ami-share gave the
/// AMI to a new target when that came later (a new consumer was told nothing by the deprecation).
/// ami-share writes the time it shares; one after the run's clock was written by hand and is
/// ignored (else a tag could keep a shared AMI for ever, which no policy could turn off).
fn notice_from(image: &Image, deprecated: DateTime<Utc>, as_of: DateTime<Utc>) -> DateTime<Utc> {
    image
        .tags
        .get(tags::SHARED_AT)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|at| *at > deprecated && *at <= as_of)
        .unwrap_or(deprecated)
}

/// How far ahead a deprecation may be and still count as the notice an earlier run gave (it
/// deprecates a minute ahead: EC2 refuses a time in the past).
const NOTICE_SLACK_MINUTES: i64 = 5;

/// Why a shared AMI waits for a usage report, and whether one is to be asked now: one in
/// progress is waited for (EC2 allows one per AMI); a new one is asked once it can prove
/// something.
fn awaited_report(
    image: &Image,
    kind: ActionKind,
    retain: &Retain,
    input: PlanInput<'_>,
    reports: &[UsageReport],
    (notice, proves_from): (DateTime<Utc>, DateTime<Utc>),
) -> (String, bool) {
    if let Some(p) = reports.iter().find(|r| r.state == ReportState::Pending) {
        let detail = format!(
            "not {}: usage report {} in progress since {}",
            kind.past(),
            p.report_id,
            p.created.to_rfc3339()
        );
        return (detail, false);
    }
    if input.as_of < proves_from {
        let launched = image
            .last_launched
            .map(|at| format!(", last launched {}", at.to_rfc3339()))
            .unwrap_or_default();
        let detail = format!(
            "not {}: shared; a usage report misses the launch templates of the {} days before it and the instances of the day before it, so only one made from {} (notice {}{launched}) can prove that no other account uses it",
            kind.past(),
            REPORT_TEMPLATE_LAG_HOURS / 24,
            proves_from.to_rfc3339(),
            notice.to_rfc3339(),
        );
        return (detail, false);
    }
    let detail = format!(
        "not {}: shared, and no usage report made since {} and newer than {} hours, over every account's instances, launch templates and Image Builder recipes, says who uses it: one is requested",
        kind.past(),
        proves_from.to_rfc3339(),
        retain.consumer_report_max_age_hours
    );
    (detail, true)
}

/// The stage an image's age calls for, or why it is kept, before share state and evidence.
fn stage(image: &Image, rank: Option<usize>, retain: &Retain, input: PlanInput<'_>) -> Decision {
    use KeepReason::*;
    let usage = input.usage;
    let list = |set: Option<&BTreeSet<String>>| {
        set.map(|s| s.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    if let Some(users) = usage.instances.get(&image.id).filter(|s| !s.is_empty()) {
        return Decision::Keep(InUseByInstance, list(Some(users)));
    }
    let templates: Vec<String> = usage
        .launch_templates
        .get(&image.id)
        .into_iter()
        .flatten()
        .filter(|t| t.counts_at(retain.in_use.launch_template_versions))
        .map(|t| t.to_string())
        .collect();
    if !templates.is_empty() {
        return Decision::Keep(InUseByLaunchTemplate, templates.join(", "));
    }
    if let Some(refs) = usage.references.get(&image.id).filter(|s| !s.is_empty()) {
        return Decision::Keep(Referenced, list(Some(refs)));
    }
    if let Some((k, v)) = retain
        .protect_tags
        .iter()
        .find_map(|(k, p)| image.tags.get(k).filter(|v| p.matches(v)).map(|v| (k, v)))
    {
        return Decision::Keep(ProtectTag, format!("{k}={v}"));
    }
    if image.deregistration_protection {
        return Decision::Keep(DeregistrationProtection, String::new());
    }
    if retain.exclude_launched_within_days > 0 {
        if let Some(at) = image.last_launched {
            if !older_than(Some(at), input.as_of, retain.exclude_launched_within_days) {
                return Decision::Keep(
                    RecentlyLaunched,
                    format!("last launched {}", at.to_rfc3339()),
                );
            }
        }
    }
    if let Some(rank) = rank.filter(|r| *r < retain.keep_latest as usize) {
        return Decision::Keep(
            KeepLatest,
            format!("newest {} of {}", rank + 1, retain.keep_latest),
        );
    }
    if matches!(
        image.state,
        ImageState::Pending | ImageState::Failed | ImageState::Other(_)
    ) {
        return Decision::Keep(NotSettled, image.state.to_string());
    }
    let age_days = image
        .created
        .map(|c| (input.as_of - c).num_days())
        .unwrap_or(0);
    if let Some(max) = retain
        .max_age_days
        .filter(|d| older_than(image.created, input.as_of, *d))
    {
        return Decision::Act(
            ActionKind::Deregister,
            format!("{age_days} days old, older than max_age_days {max}"),
        );
    }
    let disabled = image.state == ImageState::Disabled;
    if let Some(days) = retain
        .disable_after_days
        .filter(|d| older_than(image.created, input.as_of, *d))
    {
        if !disabled {
            return Decision::Act(
                ActionKind::Disable,
                format!("{age_days} days old, older than disable_after_days {days}"),
            );
        }
        return Decision::Keep(WithinRetention, "already disabled".into());
    }
    if let Some(days) = retain
        .deprecate_after_days
        .filter(|d| older_than(image.created, input.as_of, *d))
    {
        // A deprecation already set (even one scheduled a minute ahead by an earlier run) is
        // a deprecation: a re-delivered schedule plans it again never.
        let deprecated = image.deprecation_time.is_some();
        if !deprecated && !disabled {
            return Decision::Act(
                ActionKind::Deprecate,
                format!("{age_days} days old, older than deprecate_after_days {days}"),
            );
        }
        return Decision::Keep(WithinRetention, "already deprecated".into());
    }
    Decision::Keep(WithinRetention, format!("{age_days} days old"))
}

/// The dates on which the policy disables and deregisters an AMI it deprecates, and the other
/// accounts known to use it.
fn retirement(image: &Image, retain: &Retain, input: PlanInput<'_>) -> Retirement {
    // A shared AMI is disabled or deregistered no sooner than a report made long enough after
    // this notice can prove nobody uses it.
    let shared = image.public || image.shared == Some(true);
    let earliest = shared.then(|| UsageReport::proves_from(image, input.as_of));
    let on = |days: Option<u32>| {
        let created = image.created?;
        let due = created + Duration::days(i64::from(days?));
        Some(earliest.map_or(due, |e| due.max(e)))
    };
    let consumers = input
        .usage
        .consumer_reports
        .get(&image.id)
        .and_then(|rs| rs.iter().find(|r| r.state == ReportState::Available))
        .map(|r| r.consumers(input.account_id))
        .unwrap_or_default();
    Retirement {
        disable_on: on(retain.disable_after_days),
        deregister_on: on(retain.max_age_days),
        consumers,
    }
}

/// Whether `at` is more than `days` days before `as_of`. Unknown times are never old.
fn older_than(at: Option<DateTime<Utc>>, as_of: DateTime<Utc>, days: u32) -> bool {
    at.is_some_and(|t| as_of - t > Duration::days(i64::from(days)))
}

fn kept(
    image: &Image,
    policy: &Policy,
    family: String,
    reason: KeepReason,
    detail: String,
) -> Kept {
    Kept {
        image_id: image.id.clone(),
        policy: policy.name.clone(),
        family,
        reason,
        detail,
    }
}

impl Plan {
    /// Image ids the plan changes (deprecates, disables or deregisters).
    pub fn acted_images(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter(|a| {
                matches!(
                    a.action,
                    ActionKind::Deprecate | ActionKind::Disable | ActionKind::Deregister
                )
            })
            .filter_map(|a| a.image_id.clone())
            .collect()
    }

    /// Counts of kept images by reason.
    pub fn kept_by_reason(&self) -> BTreeMap<KeepReason, usize> {
        let mut counts = BTreeMap::new();
        for k in &self.kept {
            *counts.entry(k.reason).or_insert(0) += 1;
        }
        counts
    }
}
