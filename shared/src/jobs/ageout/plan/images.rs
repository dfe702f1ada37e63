//! Each image's decision: the stage its age calls for, protection, share state and evidence.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use super::shared::consumers;
use super::{
    kept, older_than, Action, ActionKind, Decision, KeepReason, Plan, PlanInput, Retirement, Scope,
    Stages,
};
use crate::domain::model::{Image, ImageState, ReportState, UsageReport};
use crate::domain::policy::{Policy, Retain};
use crate::domain::tags;

/// Deregistration protection for `retain.protect_latest`: on for the newest N launchable AMIs,
/// off for one age-out protected (its tag) that is no longer among them. A protection someone
/// else set is never turned off.
pub(super) fn protection(
    image: &Image,
    rank: Option<usize>,
    retain: &Retain,
) -> Option<(ActionKind, String)> {
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
pub(super) struct Needs {
    /// The image's share state (DescribeImageAttribute).
    pub(super) share_state: bool,
    /// The image's usage reports (DescribeImageUsageReports and their entries).
    pub(super) consumer_reports: bool,
    /// A new usage report (CreateImageUsageReport).
    pub(super) new_report: bool,
}

/// Decides one image, and says what the decision waits on.
pub(super) fn decide(
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
pub(super) fn deferred(kind: ActionKind) -> Decision {
    Decision::Keep(
        KeepReason::Deferred,
        format!(
            "not {} in this run: its share state is left for the next run",
            kind.past()
        ),
    )
}

/// The stage an image's age calls for, or why it is kept, before share state and evidence.
fn stage(image: &Image, rank: Option<usize>, retain: &Retain, input: PlanInput<'_>) -> Decision {
    kept_before_age(image, rank, retain, input).unwrap_or_else(|| by_age(image, retain, input))
}

/// What keeps an image whatever its age: what uses it, its protections, a recent launch, its
/// rank among the newest, a state not settled.
fn kept_before_age(
    image: &Image,
    rank: Option<usize>,
    retain: &Retain,
    input: PlanInput<'_>,
) -> Option<Decision> {
    use KeepReason::*;
    let usage = input.usage;
    let list = |set: Option<&BTreeSet<String>>| {
        set.map(|s| s.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    if let Some(users) = usage.instances.get(&image.id).filter(|s| !s.is_empty()) {
        return Some(Decision::Keep(InUseByInstance, list(Some(users))));
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
        return Some(Decision::Keep(InUseByLaunchTemplate, templates.join(", ")));
    }
    if let Some(refs) = usage.references.get(&image.id).filter(|s| !s.is_empty()) {
        return Some(Decision::Keep(Referenced, list(Some(refs))));
    }
    if let Some((k, v)) = retain
        .protect_tags
        .iter()
        .find_map(|(k, p)| image.tags.get(k).filter(|v| p.matches(v)).map(|v| (k, v)))
    {
        return Some(Decision::Keep(ProtectTag, format!("{k}={v}")));
    }
    if image.deregistration_protection {
        return Some(Decision::Keep(DeregistrationProtection, String::new()));
    }
    if retain.exclude_launched_within_days > 0 {
        if let Some(at) = image.last_launched {
            if !older_than(Some(at), input.as_of, retain.exclude_launched_within_days) {
                return Some(Decision::Keep(
                    RecentlyLaunched,
                    format!("last launched {}", at.to_rfc3339()),
                ));
            }
        }
    }
    if let Some(rank) = rank.filter(|r| *r < retain.keep_latest as usize) {
        return Some(Decision::Keep(
            KeepLatest,
            format!("newest {} of {}", rank + 1, retain.keep_latest),
        ));
    }
    if matches!(
        image.state,
        ImageState::Pending | ImageState::Failed | ImageState::Other(_)
    ) {
        return Some(Decision::Keep(NotSettled, image.state.to_string()));
    }
    None
}

/// The stage the image's age calls for (deregister, disable, deprecate), or within retention.
fn by_age(image: &Image, retain: &Retain, input: PlanInput<'_>) -> Decision {
    use KeepReason::*;
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
pub(super) fn retirement(image: &Image, retain: &Retain, input: PlanInput<'_>) -> Retirement {
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

/// The images of each (policy, family): each image belongs to the first policy (in document
/// order) that manages it. An image another account owns is kept, and said so.
pub(super) fn families<'a>(
    input: PlanInput<'a>,
    scope: &Scope<'_>,
    out: &mut Plan,
) -> BTreeMap<(usize, String), Vec<&'a Image>> {
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
        if policy.retain.is_none() || !scope.wants_policy(&policy.name) {
            continue;
        }
        if image.owner_id != input.account_id {
            if scope.wants_image(&image.id) {
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
    families
}

/// Decides each image of one family, newest first (ties broken by id, so the plan is
/// deterministic).
pub(super) fn decide_family<'a>(
    input: PlanInput<'_>,
    scope: &Scope<'_>,
    (policy, family): (&Policy, &str),
    mut members: Vec<&'a Image>,
    stages: &mut Stages<'a>,
    out: &mut Plan,
) {
    let Some(retain) = &policy.retain else {
        return;
    };
    members.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    // `keep_latest` ranks only AMIs that can be launched: a pending, failed or disabled
    // newer AMI never pushes the last good one out of the newest N, nor does one whose
    // launch test failed (`ami-automation:validation=failed`) or that a recall took out of
    // circulation (`ami-automation:recalled`).
    let mut launchable = 0usize;
    for image in members {
        let counts = image.state == ImageState::Available
            && image.verdict() != Some(tags::FAILED)
            && !image.tags.contains_key(tags::RECALLED);
        let rank = counts.then(|| {
            launchable += 1;
            launchable - 1
        });
        if scope.wants_image(&image.id) {
            decide_image(input, (policy, retain, family), (image, rank), stages, out);
        }
    }
}

/// One image's protection change and decision, into the plan.
fn decide_image<'a>(
    input: PlanInput<'_>,
    (policy, retain, family): (&Policy, &Retain, &str),
    (image, rank): (&'a Image, Option<usize>),
    stages: &mut Stages<'a>,
    out: &mut Plan,
) {
    let image_action = |kind, reason, retirement| Action {
        kind,
        image_id: Some(image.id.clone()),
        snapshot_id: None,
        policy: policy.name.clone(),
        family: Some(family.to_string()),
        reason,
        retirement,
        recovery: None,
        bytes: None,
        bytes_estimated: false,
    };
    if let Some((kind, reason)) = protection(image, rank, retain) {
        stages.actions.push(image_action(kind, reason, None));
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
                .push(kept(image, policy, family.to_string(), reason, detail))
        }
        Decision::Act(kind, reason) => {
            if kind == ActionKind::Deregister {
                stages.deregistered.insert(image.id.as_str());
            }
            let retirement =
                (kind == ActionKind::Deprecate).then(|| retirement(image, retain, input));
            stages.actions.push(image_action(kind, reason, retirement));
        }
    }
}
