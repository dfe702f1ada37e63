//! The retention planner: a pure function from the account's state to a plan, with every
//! decision and its reason. No SDK types, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::model::{Image, ImageState, Snapshot, Usage};
use crate::domain::policy::{Policy, PolicyDocument, Retain};

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
}

impl ActionKind {
    /// The action as a past participle: `deprecated`, `disabled`, ...
    pub fn past(&self) -> &'static str {
        match self {
            ActionKind::Deprecate => "deprecated",
            ActionKind::Disable => "disabled",
            ActionKind::Deregister => "deregistered",
            ActionKind::DeleteSnapshot => "deleted",
        }
    }
}

/// One planned change, with the reason for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// What to do.
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
    /// Why.
    pub reason: String,
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
}

/// An image the plan keeps, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    /// The image.
    pub image_id: String,
    /// The policy that manages it.
    pub policy: String,
    /// Its family.
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
    /// The snapshot.
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
}

/// A snapshot of a deregistered image that is not deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotKept {
    /// The snapshot.
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
    for image in input.images {
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
        // newer AMI never pushes the last good one out of the newest N.
        let mut launchable = 0usize;
        for image in members {
            let rank = (image.state == ImageState::Available).then(|| {
                launchable += 1;
                launchable - 1
            });
            if !wanted_image(&image.id) {
                continue;
            }
            let (decision, needs_share_state) = decide(image, rank, retain, policy, input);
            if needs_share_state {
                out.share_state_needed.push(image.id.clone());
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
                    stage_actions.push(Action {
                        action: kind,
                        image_id: Some(image.id.clone()),
                        snapshot_id: None,
                        policy: policy.name.clone(),
                        family: Some(family.clone()),
                        reason,
                    });
                }
            }
        }
    }

    // Snapshots: delete one only when the account owns it and no remaining AMI uses it.
    let owned: HashMap<&str, &Snapshot> = input
        .snapshots
        .iter()
        .filter(|s| s.owner_id == input.account_id)
        .map(|s| (s.id.as_str(), s))
        .collect();
    let mut used_by_remaining: HashMap<&str, &str> = HashMap::new();
    let mut used_at_all: HashSet<&str> = HashSet::new();
    for image in input.images {
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
        let Some(image) = input
            .images
            .iter()
            .find(|i| Some(&i.id) == action.image_id.as_ref())
        else {
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
                None if planned_snapshots.insert(snap.clone()) => snapshot_actions.push(Action {
                    action: ActionKind::DeleteSnapshot,
                    image_id: Some(image.id.clone()),
                    snapshot_id: Some(snap.clone()),
                    policy: action.policy.clone(),
                    family: action.family.clone(),
                    reason: format!("snapshot of {} and no remaining AMI uses it", image.id),
                }),
                None => {}
            }
        }
    }

    // Orphans: CreateImage/CopyImage snapshots that no AMI uses, older than the policy's max age.
    if input.image_ids.is_none() {
        for snap in input.snapshots {
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

/// Decides one image. The boolean says that the decision waits on the image's share state
/// (DescribeImageAttribute), which the caller looks up for exactly these images and plans again.
fn decide(
    image: &Image,
    rank: Option<usize>,
    retain: &Retain,
    policy: &Policy,
    input: PlanInput<'_>,
) -> (Decision, bool) {
    use KeepReason::*;
    let decision = stage(image, rank, retain, input);
    let Decision::Act(kind, _) = &decision else {
        return (decision, false);
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
            (true, _) => return (Decision::Keep(Shared, format!("public; {why}")), false),
            (false, Some(true)) => return (Decision::Keep(Shared, why.into()), false),
            (false, None) => {
                // Unknown share state keeps the image (fail closed) until it is looked up.
                let detail = format!("share state not known; {why}");
                return (Decision::Keep(Shared, detail), true);
            }
            (false, Some(false)) => {}
        }
    }
    // Fail closed: without complete evidence that the AMI is unused, nothing that stops a
    // launch happens to it. Deprecation stops no launch, so it still goes ahead.
    if matches!(kind, ActionKind::Disable | ActionKind::Deregister) {
        if let Some(gap) = input.usage.gap_for(&image.id) {
            let code = gap.code.as_deref().unwrap_or(&gap.error);
            let detail = format!("not {}: {} failed ({code})", kind.past(), gap.call);
            return (Decision::Keep(UsageUnknown, detail), false);
        }
    }
    (decision, false)
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
            .filter(|a| a.action != ActionKind::DeleteSnapshot)
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
