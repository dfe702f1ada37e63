//! Age-out: plan retention per region, then execute the plan (or only report it, in a dry run).

pub mod continuation;
mod events;
mod execute;
pub mod plan;
mod reports;
pub mod restore;
mod rounds;
pub mod savings;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use execute::{execute, ActionReport, Outcome};
pub use plan::{plan, Action, ActionKind, KeepReason, Kept, Plan, PlanInput};

use events::{action_events, gaps_summary};
#[cfg(test)]
use rounds::action_key;
use rounds::Rounds;
use scan::{oldest_first, read_share_states, Scanned};

use crate::domain::deadline::Deadline;
use crate::domain::event::detail_type;
use crate::domain::event::{event, Published};
use crate::domain::ids::Region;
use crate::domain::model::EvidenceGap;
use crate::domain::policy::{PolicyDocument, TemplateDepth};
use crate::domain::trigger::{RunRequest, Trigger};
use crate::error::Error;
use crate::jobs::{label, Context};
use crate::ports::{
    Cloud, ConsumerUsage, EventSink, ImageInventory, Pace, RecoveryRules, RetireImages,
};

/// The function's name in reports and events.
pub const FUNCTION: &str = crate::domain::function::Function::AgeOut.name();

/// What one region's run did.
#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    pub region: Region,
    /// Every planned action with its outcome, until [`run`] moves them into [`Report::plan`]
    /// (each action names its region): the report holds each action once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<ActionReport>,
    /// Images kept, with the reason.
    pub kept: Vec<Kept>,
    /// Snapshots of deregistered images that stay, with the reason.
    pub snapshots_kept: Vec<plan::SnapshotKept>,
    /// Orphaned snapshots found.
    pub orphans: Vec<plan::Orphan>,
    /// Things the run could not check.
    pub warnings: Vec<String>,
    /// Evidence calls that failed: the images they cover were kept (`usage_unknown`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence_gaps: Vec<EvidenceGap>,
    /// Usage reports asked of EC2 for shared AMIs that no fresh report covers (a dry run
    /// only lists them): a later run reads who uses those AMIs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usage_reports: Vec<ReportRequest>,
    /// An error that stopped the region's run before it planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The time the pure planner took, every pass summed (the scans and evidence calls not
    /// included): its CPU time, since it neither waits nor yields.
    pub planning_ms: u64,
}

/// A usage report asked for one shared AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRequest {
    /// The shared AMI.
    pub image_id: String,
    /// `requested`, `would_request` (dry run), `deferred` (deadline, throttling or EC2's quota
    /// of reports in progress: the next run asks again) or `failed`.
    pub outcome: &'static str,
    /// The report EC2 is building.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// Why it was not requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The response of an age-out invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ami-age-out`.
    pub function: &'static str,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Every planned action ran (false: stopped at the deadline; the next run continues).
    pub complete: bool,
    /// The planner's clock.
    pub as_of: DateTime<Utc>,
    /// Counts: planned actions by kind, outcomes, kept.
    pub counts: BTreeMap<String, usize>,
    /// Kept images by reason.
    pub kept_by_reason: BTreeMap<KeepReason, usize>,
    /// Every action, all regions.
    pub plan: Vec<ActionReport>,
    /// Actions that failed.
    pub failed: Vec<ActionReport>,
    /// Left for the next run: actions not started before the deadline, and AMIs whose share
    /// state the run did not read (kept as `deferred`).
    pub remaining: usize,
    /// The snapshot storage the run freed (a dry run: would free), with the monthly saving.
    pub saved: savings::Savings,
    /// For a run that did not finish: the run it started to go on, or why it started none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued: Option<continuation::Continued>,
    /// Per region: kept images, kept snapshots, orphans, warnings.
    pub regions: Vec<RegionReport>,
    pub events: Published,
    /// Wall time of the run.
    pub elapsed_ms: u128,
}

/// The run request a trigger asks of age-out: a run request as it is, a schedule sweeps its
/// region; any other event is refused, naming it. The flag says whether it is a scheduled sweep.
pub fn request(trigger: Trigger) -> crate::error::Result<(RunRequest, bool)> {
    match trigger {
        Trigger::Run(request) => Ok((request, false)),
        Trigger::Scheduled { region, .. } => Ok((
            RunRequest {
                regions: region.map(|r| vec![r]),
                ..RunRequest::default()
            },
            true,
        )),
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{} runs on a schedule or a run request, not on `{}`",
                FUNCTION,
                other.kind()
            ),
        )),
    }
}

/// Whether the run is a partial failure: an action failed, a region could not plan, or an
/// evidence call failed other than by throttling (the AMIs it covers were kept; a throttled
/// one only leaves the run incomplete, like any throttled action).
pub fn partial_failure(report: &Report) -> bool {
    // A notice EventBridge did not take (`AMI Retirement Scheduled` among them) is lost to its
    // readers: the invocation says so, so the errors alarm does too.
    !report.failed.is_empty()
        || !report.events.failed.is_empty()
        || report
            .regions
            .iter()
            .any(|r| r.error.is_some() || r.evidence_gaps.iter().any(|g| !g.transient))
}

/// Runs age-out for a request: every region concurrently.
pub async fn run<C: Cloud, S: EventSink + Sync>(
    ctx: &Context<'_, C>,
    request: &RunRequest,
    regions: &[Region],
    dry_run: bool,
    sink: &S,
) -> Report {
    let started = Instant::now();
    let as_of = request.as_of.unwrap_or_else(Utc::now);
    let mut regions = run_regions(ctx, request, regions, as_of, dry_run).await;

    let plan: Vec<ActionReport> = regions
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.plan))
        .collect();
    let failed: Vec<ActionReport> = plan
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed))
        .cloned()
        .collect();
    let totals = Totals::of(&plan, &regions);
    let complete = totals.remaining == 0
        && regions
            .iter()
            .all(|r| r.error.is_none() && r.evidence_gaps.is_empty());
    let saved = savings::savings(&plan, dry_run, ctx.limits.snapshot_price);

    let mut events: Vec<_> = if dry_run {
        Vec::new()
    } else {
        plan.iter()
            .filter(|a| a.outcome.changed_account())
            .flat_map(action_events)
            .collect()
    };
    let evidence_gaps = gaps_summary(&regions);
    events.push(event(
        detail_type::POLICY_RUN_COMPLETED,
        Vec::new(),
        serde_json::json!({
            "function": FUNCTION, "dry_run": dry_run, "complete": complete, "as_of": as_of,
            "regions": regions.iter().map(|r| r.region.to_string()).collect::<Vec<_>>(),
            "policies": request.policies, "counts": totals.counts, "failed": failed.len(),
            "remaining": totals.remaining, "evidence_gaps": evidence_gaps.0,
            "evidence_gaps_total": evidence_gaps.1, "saved": saved,
        }),
    ));
    let published = sink.publish(events).await;

    Report {
        function: FUNCTION,
        dry_run,
        complete,
        as_of,
        counts: totals.counts,
        kept_by_reason: totals.kept_by_reason,
        plan,
        failed,
        remaining: totals.remaining,
        saved,
        continued: None,
        regions,
        events: published,
        elapsed_ms: started.elapsed().as_millis(),
    }
}

/// Each region's run, concurrently.
async fn run_regions<C: Cloud>(
    ctx: &Context<'_, C>,
    request: &RunRequest,
    regions: &[Region],
    as_of: DateTime<Utc>,
    dry_run: bool,
) -> Vec<RegionReport> {
    let runs = regions.iter().map(|region| {
        let ec2 = ctx.cloud.ec2(region);
        let bin = ctx.cloud.recycle_bin(region);
        // EC2's request buckets are per region: one pacer per region's run, and one for the
        // usage reports it asks, which never spend the retirements' tokens.
        let pacer = ctx.cloud.pacer();
        let report_pacer = ctx.cloud.pacer();
        async move {
            let run = RegionRun {
                region,
                document: ctx.document,
                request,
                as_of,
                dry_run,
                deadline: ctx.deadline,
                concurrency: ctx.limits.concurrency,
            };
            run_region(&ec2, &bin, (&pacer, &report_pacer), &run).await
        }
    });
    futures::future::join_all(runs).await
}

/// A run's counts: actions by kind and outcome, kept AMIs by reason, and what is left.
struct Totals {
    counts: BTreeMap<String, usize>,
    kept_by_reason: BTreeMap<KeepReason, usize>,
    /// Left for the next run: the actions not started, and the AMIs whose share state was not
    /// read (each one a decision the next run makes).
    remaining: usize,
}

impl Totals {
    fn of(plan: &[ActionReport], regions: &[RegionReport]) -> Self {
        let mut counts = BTreeMap::new();
        for a in plan {
            *counts.entry(label(&a.action.kind)).or_insert(0) += 1;
            *counts
                .entry(format!("outcome_{}", label(&a.outcome)))
                .or_insert(0) += 1;
        }
        let mut kept_by_reason = BTreeMap::new();
        for k in regions.iter().flat_map(|r| &r.kept) {
            *kept_by_reason.entry(k.reason).or_insert(0) += 1;
        }
        let remaining = plan
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Deferred))
            .count()
            + kept_by_reason
                .get(&KeepReason::Deferred)
                .copied()
                .unwrap_or(0);
        counts.insert("planned".into(), plan.len());
        counts.insert("kept".into(), kept_by_reason.values().sum());
        counts.insert(
            "orphans".into(),
            regions.iter().map(|r| r.orphans.len()).sum(),
        );
        Totals {
            counts,
            kept_by_reason,
            remaining,
        }
    }
}

/// The deepest launch template depth any of the policies asks for.
pub(super) fn deepest(document: &PolicyDocument) -> TemplateDepth {
    document
        .policies
        .iter()
        .filter_map(|p| p.retain.as_ref())
        .map(|r| r.in_use.launch_template_versions)
        .fold(TemplateDepth::DefaultAndLatest, TemplateDepth::deeper)
}

/// One region's run: what it plans for and how it executes.
#[derive(Debug, Clone, Copy)]
pub struct RegionRun<'a> {
    pub region: &'a Region,
    /// The policy document.
    pub document: &'a PolicyDocument,
    /// The request (policies, image ids).
    pub request: &'a RunRequest,
    /// The planner's clock.
    pub as_of: DateTime<Utc>,
    /// Report only.
    pub dry_run: bool,
    /// When to stop starting calls.
    pub deadline: Deadline,
    /// Mutating calls in flight at once.
    pub concurrency: usize,
}

/// A real run acts while it reads: each round plans over everything read so far and without
/// what earlier rounds deregistered or deleted (gone from the account), gathers the evidence for
/// the images the round would change, and executes only what earlier rounds did not, while the
/// reads go on. EC2's buckets are per API, so reading and retiring run at the same time instead
/// of one after the other. A dry run reads everything first and plans once: the same decisions,
/// as each image's decision rests on its own evidence.
///
/// Safety checks fail closed: a failed scan of the images or snapshots fails the region (it
/// plans nothing); a failed evidence call (instances, launch templates, references, share
/// state) is recorded as a gap, and the planner keeps every image it covers from being
/// disabled or deregistered (`usage_unknown`).
pub async fn run_region<
    E: ImageInventory + ConsumerUsage + RetireImages + Sync,
    B: RecoveryRules + Sync,
    P: Pace + Sync,
>(
    ec2: &E,
    bin: &B,
    (pacer, report_pacer): (&P, &P),
    run: &RegionRun<'_>,
) -> RegionReport {
    let mut report = RegionReport {
        region: run.region.clone(),
        plan: Vec::new(),
        kept: Vec::new(),
        snapshots_kept: Vec::new(),
        orphans: Vec::new(),
        warnings: Vec::new(),
        evidence_gaps: Vec::new(),
        usage_reports: Vec::new(),
        error: None,
        planning_ms: 0,
    };
    let mut scanned = match Scanned::scan(ec2, bin, run, &mut report.warnings).await {
        Ok(scanned) => scanned,
        Err(e) => {
            tracing::error!(region = %run.region, error = %e, "age-out could not plan the region");
            report.error = Some(e.to_string());
            return report;
        }
    };
    // The images whose decision waits on their share state, oldest first (the most overdue
    // first), each with its position in the scan. Until read, each is deferred.
    let needed = std::mem::take(&mut scanned.plan().share_state_needed);
    let queue = oldest_first(needed, &scanned.images);
    scanned.usage.deferred = queue.iter().map(|(_, id)| id.clone()).collect();
    // As many AMIs found not shared as the run can retire in the time it has (the reads go on
    // while it retires, at EC2's separate rate for reads).
    let budget = run.deadline.left().and_then(|left| pacer.capacity(left));
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let reader = read_share_states(ec2, queue, budget, run.deadline, tx);
    let rounds = Rounds::new(ec2, (pacer, report_pacer), run, &mut scanned, &mut report);
    let ((), last) = futures::join!(reader, rounds.until_all_read(rx));
    report.evidence_gaps = std::mem::take(&mut scanned.usage.gaps);
    report.planning_ms = scanned.planning.as_millis() as u64;
    if !scanned.usage.deferred.is_empty() {
        tracing::info!(
            region = %run.region,
            deferred = scanned.usage.deferred.len(),
            "share state left for the next run: more candidates than the run can retire"
        );
    }
    tracing::info!(
        region = %run.region,
        planning_ms = report.planning_ms,
        images = scanned.images.len(),
        actions = report.plan.len(),
        dry_run = run.dry_run,
        "age-out region done"
    );
    report.kept = last.kept;
    // A snapshot kept by one round and deleted by a later one (the AMI that still used it was
    // deregistered then) is not kept.
    let gone = &scanned.usage.gone;
    report
        .snapshots_kept
        .retain(|k| !gone.contains(&k.snapshot_id));
    report
}

pub(super) fn gap(call: &str, error: &Error, images: Option<BTreeSet<String>>) -> EvidenceGap {
    tracing::error!(call, error = %error, images = ?images, "evidence call failed: the AMIs it covers are kept");
    EvidenceGap {
        call: call.to_string(),
        code: error.code().map(str::to_string),
        error: error.to_string(),
        // An image no longer found may be gone (another run) or not visible yet: the next run
        // sees it either way, so this leaves the run incomplete without failing it.
        transient: error.is_transient() || error.is_not_found(),
        images,
    }
}
