//! The retention planner: a pure function from the account's state to a plan, with every
//! decision and its reason. No SDK types, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::model::{Image, Snapshot, Usage};
use crate::domain::policy::{Policy, PolicyDocument};
use crate::domain::recycle_bin::{Recovery, RecycleBin};

mod images;
mod recovery;
mod shared;
mod snapshots;

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
    /// What is done (the report's `action`).
    #[serde(rename = "action")]
    pub kind: ActionKind,
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
    let scope = Scope::of(input);

    // Images: each family newest first, each image decided with its rank.
    let mut stages = Stages::default();
    for ((index, family), members) in images::families(input, &scope, &mut out) {
        let policy = &input.document.policies[index];
        images::decide_family(
            input,
            &scope,
            (policy, &family),
            members,
            &mut stages,
            &mut out,
        );
    }

    // Recoverability: a deregistration that cannot be undone, under `require_recoverable`,
    // becomes a kept AMI.
    let by_id: HashMap<&str, &Image> = input.images.iter().map(|i| (i.id.as_str(), i)).collect();
    let owned: HashMap<&str, &Snapshot> = input
        .live_snapshots()
        .filter(|s| s.owner_id == input.account_id)
        .map(|s| (s.id.as_str(), s))
        .collect();
    recovery::recoverability(
        input,
        (&by_id, &owned),
        &mut stages.actions,
        &mut stages.deregistered,
        &mut out.kept,
    );

    // Snapshots: those of the deregistered AMIs no remaining AMI uses, then orphans.
    let mut snapshots = snapshots::of_deregistered(input, (&by_id, &owned), &stages, &mut out);
    if input.image_ids.is_none() {
        snapshots::orphans(input, &scope, &mut snapshots, &mut out);
    }

    out.actions = stages.actions;
    out.actions.extend(snapshots.actions);
    out
}

/// What a run asks about: some policies, some images, or all.
struct Scope<'a> {
    policies: Option<&'a [String]>,
    image_ids: Option<&'a [String]>,
}

impl<'a> Scope<'a> {
    fn of(input: PlanInput<'a>) -> Self {
        Scope {
            policies: input.policies,
            image_ids: input.image_ids,
        }
    }

    fn wants_policy(&self, name: &str) -> bool {
        self.policies.is_none_or(|ps| ps.iter().any(|p| p == name))
    }

    fn wants_image(&self, id: &str) -> bool {
        self.image_ids.is_none_or(|ids| ids.iter().any(|i| i == id))
    }
}

/// The image stages planned so far, and the AMIs they deregister.
#[derive(Default)]
struct Stages<'a> {
    actions: Vec<Action>,
    deregistered: HashSet<&'a str>,
}

/// One image's decision before it enters the plan: keep it (why, with details), or act.
enum Decision {
    Keep(KeepReason, String),
    Act(ActionKind, String),
}

/// The snapshot deletions planned so far, each snapshot once.
#[derive(Default)]
struct SnapshotDeletions {
    actions: Vec<Action>,
    planned: BTreeSet<String>,
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
                    a.kind,
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
