//! Whether each deregistration can be undone from the Recycle Bin.

use std::collections::{HashMap, HashSet};

use super::{Action, ActionKind, KeepReason, Kept, PlanInput};
use crate::domain::model::{Image, Snapshot};
use crate::domain::recycle_bin::Recovery;

/// Whether each deregistration can be undone from the Recycle Bin: its `recovery` in the plan.
/// Under `require_recoverable`, a deregistration that cannot (or whose rules could not be read)
/// becomes a kept AMI (`not_recoverable`).
pub(super) fn recoverability<'a>(
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
        .filter(|a| a.kind == ActionKind::Deregister)
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
            !(a.kind == ActionKind::Deregister
                && a.image_id.as_ref().is_some_and(|id| refused.contains(id)))
        });
        deregistered.retain(|id| !refused.contains(*id));
    }
}
