//! Snapshots: those of the AMIs deregistered, and orphans (made for an AMI no AMI uses).

use std::collections::{HashMap, HashSet};

use super::{
    older_than, Action, ActionKind, Orphan, Plan, PlanInput, Scope, SnapshotDeletions,
    SnapshotKept, Stages,
};
use crate::domain::model::Image;
use crate::domain::model::Snapshot;
use crate::domain::policy::Policy;

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

/// Deletes a deregistered AMI's snapshot only when the account owns it and no remaining AMI
/// uses it; says why each other snapshot stays.
pub(super) fn of_deregistered(
    input: PlanInput<'_>,
    (by_id, owned): (&HashMap<&str, &Image>, &HashMap<&str, &Snapshot>),
    stages: &Stages<'_>,
    out: &mut Plan,
) -> SnapshotDeletions {
    let mut used_by_remaining: HashMap<&str, &str> = HashMap::new();
    for image in input.live_images() {
        if stages.deregistered.contains(image.id.as_str()) {
            continue;
        }
        for snap in &image.snapshot_ids {
            used_by_remaining
                .entry(snap.as_str())
                .or_insert(image.id.as_str());
        }
    }

    let mut deletions = SnapshotDeletions::default();
    for action in stages
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Deregister)
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
                None if deletions.planned.insert(snap.clone()) => {
                    let size = owned.get(snap.as_str()).and_then(|s| s.size.bytes());
                    deletions.actions.push(Action {
                        kind: ActionKind::DeleteSnapshot,
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
    deletions
}

/// Orphans: CreateImage/CopyImage snapshots that no AMI uses, older than the policy's max age
/// (deleted under `retain.delete_orphan_snapshots`, reported either way).
pub(super) fn orphans(
    input: PlanInput<'_>,
    scope: &Scope<'_>,
    deletions: &mut SnapshotDeletions,
    out: &mut Plan,
) {
    let used_at_all: HashSet<&str> = input
        .live_images()
        .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
        .collect();
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
            .filter(|_| scope.wants_policy(&policy.name))
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
        if retain.delete_orphan_snapshots && deletions.planned.insert(snap.id.clone()) {
            deletions.actions.push(Action {
                kind: ActionKind::DeleteSnapshot,
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
