//! What age-out announces: each change, the notice after a deprecation, and the evidence gaps
//! `Policy Run Completed` names.

use super::{ActionKind, ActionReport, RegionReport};
use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::model::EvidenceGap;

/// The events of one action that changed the account: what was done, and for a deprecation
/// the notice of what comes next (`AMI Retirement Scheduled`, for the AMI's consumers).
pub(super) fn action_events(a: &ActionReport) -> Vec<Event> {
    let mut out = vec![action_event(a)];
    if let (Some(retirement), Some(image)) = (&a.action.retirement, &a.action.image_id) {
        out.push(event(
            detail_type::AMI_RETIREMENT_SCHEDULED,
            vec![a.region.image_arn(image)],
            serde_json::json!({
                "image_id": image, "region": a.region, "policy": a.action.policy,
                "family": a.action.family, "deprecated": true,
                "disable_on": retirement.disable_on, "deregister_on": retirement.deregister_on,
                "consumer_accounts": retirement.consumers,
            }),
        ));
    }
    out
}

fn action_event(a: &ActionReport) -> Event {
    let detail_type = match a.action.kind {
        ActionKind::Deprecate => detail_type::AMI_DEPRECATED,
        ActionKind::Disable => detail_type::AMI_DISABLED,
        ActionKind::Deregister => detail_type::AMI_DEREGISTERED,
        ActionKind::DeleteSnapshot => detail_type::AMI_SNAPSHOT_DELETED,
        ActionKind::Protect => detail_type::AMI_DEREGISTRATION_PROTECTION_ENABLED,
        ActionKind::Unprotect => detail_type::AMI_DEREGISTRATION_PROTECTION_DISABLED,
    };
    // PutEvents' Resources are ARNs, so rules that match on ARNs work.
    let resources = match (&a.action.snapshot_id, &a.action.image_id) {
        (Some(snap), Some(image)) => vec![a.region.snapshot_arn(snap), a.region.image_arn(image)],
        (Some(snap), None) => vec![a.region.snapshot_arn(snap)],
        (None, Some(image)) => vec![a.region.image_arn(image)],
        (None, None) => Vec::new(),
    };
    event(
        detail_type,
        resources,
        serde_json::to_value(a).unwrap_or_default(),
    )
}

/// Scans one region, plans, and executes, in rounds.
///
/// The share state is one call per AMI (DescribeImageAttribute: EC2 has no batch form, and
/// DescribeImages says only whether an AMI is public). It is read oldest first, for no more
/// AMIs found not shared than the run can retire before its deadline (an AMI found shared does
/// not count: it is usually kept, so shared AMIs never use up every run's reads), and none
/// after the deadline. The AMIs not read are kept as `deferred`, left for the next run.
///
/// How many evidence gaps `Policy Run Completed` names, and how many AMI ids of each: the
/// event stays far under PutEvents' 256 KB an entry however many calls failed (the run's answer
/// has them all).
const EVENT_GAPS: usize = 20;

const EVENT_GAP_IMAGES: usize = 10;

/// The evidence gaps as `Policy Run Completed` carries them (the first [`EVENT_GAPS`], each with
/// its count of AMIs and the first ids), and how many there are.
pub(super) fn gaps_summary(regions: &[RegionReport]) -> (Vec<serde_json::Value>, usize) {
    let all: Vec<(&RegionReport, &EvidenceGap)> = regions
        .iter()
        .flat_map(|r| r.evidence_gaps.iter().map(move |g| (r, g)))
        .collect();
    let named = all
        .iter()
        .take(EVENT_GAPS)
        .map(|(r, g)| {
            let first: Option<Vec<&String>> = g
                .images
                .as_ref()
                .map(|ids| ids.iter().take(EVENT_GAP_IMAGES).collect());
            serde_json::json!({"region": r.region, "call": g.call, "code": g.code,
                "transient": g.transient, "images": g.images.as_ref().map(|ids| ids.len()),
                "first_images": first})
        })
        .collect();
    (named, all.len())
}
