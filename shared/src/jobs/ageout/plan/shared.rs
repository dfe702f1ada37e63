//! Shared and public AMIs: who was told, when, and what evidence lets one retire (deprecated
//! first, as notice; retired on a usage report made long enough after the notice).

use chrono::{DateTime, Duration, Utc};

use super::images::{deferred, Needs};
use super::{ActionKind, Decision, KeepReason, PlanInput};
use crate::domain::model::{
    Image, ImageState, ReportState, UsageReport, REPORT_TEMPLATE_LAG_HOURS,
};
use crate::domain::policy::Retain;
use crate::domain::tags;

/// For an AMI shared with other accounts (or public), what the accounts that may use it allow:
/// `None` when nothing keeps the AMI (not shared, or a usage report made long enough after the
/// notice shows no other account uses it), else the decision (a deprecation first, as notice, or
/// keep) and what it waits on.
pub(super) fn consumers(
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
pub(super) fn notice_from(
    image: &Image,
    deprecated: DateTime<Utc>,
    as_of: DateTime<Utc>,
) -> DateTime<Utc> {
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
