//! Age-out: plan retention per region, then execute the plan (or only report it, in a dry run).

pub mod continuation;
mod execute;
pub mod plan;
pub mod restore;
pub mod savings;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

pub use execute::{execute, ActionReport, Outcome};
pub use plan::{plan, Action, ActionKind, KeepReason, Kept, Plan, PlanInput};

use crate::domain::deadline::Deadline;
use crate::domain::event::{event, Event, Published};
use crate::domain::ids::Region;
use crate::domain::model::{EvidenceGap, Image, Usage};
use crate::domain::policy::{PolicyDocument, TemplateDepth};
use crate::domain::trigger::RunRequest;
use crate::error::{Error, Result};
use crate::jobs::{label, Context};
use crate::ports::{
    Cloud, ConsumerUsage, EventSink, ImageInventory, Pace, RecoveryRules, RetireImages,
    IMAGE_REFERENCES_MAX_IDS, USAGE_REPORT_MAX_IDS,
};

/// The function's name in reports and events.
pub const FUNCTION: &str = "ami-age-out";

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
    /// `requested`, `would_request` (dry run), `deferred` (deadline or throttling: the next
    /// run asks again) or `failed`.
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

/// Whether the run is a partial failure: an action failed, a region could not plan, or an
/// evidence call failed other than by throttling (the AMIs it covers were kept; a throttled
/// one only leaves the run incomplete, like any throttled action).
pub fn partial_failure(report: &Report) -> bool {
    !report.failed.is_empty()
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
    let runs = regions.iter().map(|region| {
        let ec2 = ctx.cloud.ec2(region);
        let bin = ctx.cloud.recycle_bin(region);
        // EC2's request buckets are per region: one pacer per region's run.
        let pacer = ctx.cloud.pacer();
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
            run_region(&ec2, &bin, &pacer, &run).await
        }
    });
    let mut regions: Vec<RegionReport> = futures::future::join_all(runs).await;

    let plan: Vec<ActionReport> = regions
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.plan))
        .collect();
    let failed: Vec<ActionReport> = plan
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed))
        .cloned()
        .collect();
    let mut counts = BTreeMap::new();
    for a in &plan {
        *counts.entry(label(&a.action.action)).or_insert(0) += 1;
        *counts
            .entry(format!("outcome_{}", label(&a.outcome)))
            .or_insert(0) += 1;
    }
    let mut kept_by_reason = BTreeMap::new();
    for k in regions.iter().flat_map(|r| &r.kept) {
        *kept_by_reason.entry(k.reason).or_insert(0) += 1;
    }
    // Left for the next run: the actions not started, and the AMIs whose share state was not
    // read (each one a decision the next run makes).
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

    let saved = savings::savings(&plan, dry_run, ctx.limits.snapshot_price);
    let mut events: Vec<_> = if dry_run {
        Vec::new()
    } else {
        plan.iter()
            .filter(|a| a.outcome.changed_account())
            .flat_map(action_events)
            .collect()
    };
    let complete = remaining == 0
        && regions
            .iter()
            .all(|r| r.error.is_none() && r.evidence_gaps.is_empty());
    let evidence_gaps: Vec<serde_json::Value> = regions
        .iter()
        .flat_map(|r| {
            r.evidence_gaps.iter().map(|g| {
                serde_json::json!({"region": r.region, "call": g.call, "code": g.code,
                    "transient": g.transient, "images": g.images})
            })
        })
        .collect();
    events.push(event(
        "Policy Run Completed",
        Vec::new(),
        serde_json::json!({
            "function": FUNCTION, "dry_run": dry_run, "complete": complete, "as_of": as_of,
            "regions": regions.iter().map(|r| r.region.to_string()).collect::<Vec<_>>(),
            "policies": request.policies, "counts": counts, "failed": failed.len(), "remaining": remaining,
            "evidence_gaps": evidence_gaps, "saved": saved,
        }),
    ));
    let published = sink.publish(events).await;

    Report {
        function: FUNCTION,
        dry_run,
        complete,
        as_of,
        counts,
        kept_by_reason,
        plan,
        failed,
        remaining,
        saved,
        continued: None,
        regions,
        events: published,
        elapsed_ms: started.elapsed().as_millis(),
    }
}

/// The events of one action that changed the account: what was done, and for a deprecation
/// the notice of what comes next (`AMI Retirement Scheduled`, for the AMI's consumers).
fn action_events(a: &ActionReport) -> Vec<Event> {
    let mut out = vec![action_event(a)];
    if let (Some(retirement), Some(image)) = (&a.action.retirement, &a.action.image_id) {
        out.push(event(
            "AMI Retirement Scheduled",
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
    let detail_type = match a.action.action {
        ActionKind::Deprecate => "AMI Deprecated",
        ActionKind::Disable => "AMI Disabled",
        ActionKind::Deregister => "AMI Deregistered",
        ActionKind::DeleteSnapshot => "AMI Snapshot Deleted",
        ActionKind::Protect => "AMI Deregistration Protection Enabled",
        ActionKind::Unprotect => "AMI Deregistration Protection Disabled",
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

/// The deepest launch template depth any of the policies asks for.
fn deepest(document: &PolicyDocument) -> TemplateDepth {
    document
        .policies
        .iter()
        .filter_map(|p| p.retain.as_ref())
        .map(|r| r.in_use.launch_template_versions)
        .fold(TemplateDepth::DefaultAndLatest, |acc, d| match (acc, d) {
            (TemplateDepth::All, _) | (_, TemplateDepth::All) => TemplateDepth::All,
            (TemplateDepth::Newest(a), TemplateDepth::Newest(b)) => TemplateDepth::Newest(a.max(b)),
            (TemplateDepth::Newest(a), _) | (_, TemplateDepth::Newest(a)) => {
                TemplateDepth::Newest(a)
            }
            _ => TemplateDepth::DefaultAndLatest,
        })
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

/// Scans one region, plans, and executes.
pub async fn run_region<
    E: ImageInventory + ConsumerUsage + RetireImages + Sync,
    B: RecoveryRules + Sync,
    P: Pace + Sync,
>(
    ec2: &E,
    bin: &B,
    pacer: &P,
    run: &RegionRun<'_>,
) -> RegionReport {
    let RegionRun {
        region,
        document,
        request,
        as_of,
        dry_run,
        deadline,
        concurrency,
    } = *run;
    let mut report = RegionReport {
        region: region.clone(),
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
    // EC2 has no batch form of the share-state read: a run reads it for no more AMIs than it
    // can retire before its deadline, the reads' own time included (worked out as it reads).
    let room = |counted: usize, read: usize| {
        deadline
            .left()
            .and_then(|left| affordable(pacer, left, counted, read))
    };
    let reads = Reads {
        room: &room,
        deadline,
    };
    let planned = plan_region(
        ec2,
        bin,
        document,
        request,
        as_of,
        reads,
        &mut report.warnings,
    )
    .await;
    let mut plan = match planned {
        Ok((plan, gaps, planning)) => {
            report.evidence_gaps = gaps;
            report.planning_ms = planning.as_millis() as u64;
            plan
        }
        Err(e) => {
            tracing::error!(region = %region, error = %e, "age-out could not plan the region");
            report.error = Some(e.to_string());
            return report;
        }
    };
    tracing::info!(region = %region, actions = plan.actions.len(), kept = plan.kept.len(), dry_run, "age-out plan ready");
    report.usage_reports = request_reports(ec2, pacer, run, &plan.usage_reports_to_request).await;
    report.plan = execute(
        &mut plan,
        ec2,
        region,
        dry_run,
        as_of,
        deadline,
        concurrency,
        pacer,
        &Utc::now,
    )
    .await;
    report.kept = plan.kept;
    report.snapshots_kept = plan.snapshots_kept;
    report.orphans = plan.orphans;
    report
}

/// Asks EC2 for a usage report of each shared AMI that no fresh report covers (CreateImageUsageReport,
/// paced like the other calls that change the account). The client token is the image and the
/// hour of the wall clock, so a re-delivered run in the same hour gets the same report, never a
/// second one.
async fn request_reports<E: ConsumerUsage + Sync, P: Pace + Sync>(
    ec2: &E,
    pacer: &P,
    run: &RegionRun<'_>,
    images: &[String],
) -> Vec<ReportRequest> {
    let depth = deepest(run.document);
    let mut out = Vec::new();
    for image_id in images {
        let line = |outcome, report_id, error| ReportRequest {
            image_id: image_id.clone(),
            outcome,
            report_id,
            error,
        };
        if run.dry_run {
            out.push(line("would_request", None, None));
            continue;
        }
        if run.deadline.passed() {
            out.push(line("deferred", None, Some("the run's deadline".into())));
            continue;
        }
        pacer.take().await;
        // The wall clock, not the planner's: a request with a fixed `as_of` must not reuse one
        // token for ever.
        let token = format!("{image_id}-{}", Utc::now().format("%Y%m%d%H"));
        match ec2.request_usage_report(image_id, &token, depth).await {
            Ok(id) => out.push(line("requested", Some(id), None)),
            Err(e) if e.is_transient() => out.push(line("deferred", None, Some(e.to_string()))),
            Err(e) => {
                tracing::warn!(image_id, error = %e, "usage report not requested: the AMI stays kept");
                out.push(line("failed", None, Some(e.to_string())));
            }
        }
    }
    out
}

/// EC2's bucket for one non-mutating API, DescribeImageAttribute's (EC2 API throttling:
/// 100 tokens, refilled at 20 per second, per account and region).
const READ_BURST: usize = 100;
const READS_PER_SECOND: f64 = 20.0;

/// How many more AMIs a run with `left` to go can read the share state of and still retire:
/// the largest n such that `counted + n` retirements fit in what the reads leave, where `counted`
/// AMIs read so far will be acted on and `read` were read in all. Reading K takes (K - 100) / 20
/// seconds once the read bucket's burst is spent. Reading more would be wasted: the run would
/// stop before acting on them, and the next run reads them again. `None`: the pacer sets no
/// bound.
pub fn affordable<P: Pace>(
    pacer: &P,
    left: std::time::Duration,
    counted: usize,
    read: usize,
) -> Option<usize> {
    let reading = |k: usize| {
        std::time::Duration::from_secs_f64(k.saturating_sub(READ_BURST) as f64 / READS_PER_SECOND)
    };
    let fits = |n: usize| {
        pacer
            .capacity(left.saturating_sub(reading(read + n)))
            .is_some_and(|c| counted + n <= c)
    };
    let (mut lo, mut hi) = (0, pacer.capacity(left)?.saturating_sub(counted));
    // The largest n that fits: n grows, the time left to act shrinks.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Share-state reads started at once, between two checks of how many more the run can afford.
const READ_CHUNK: usize = 100;

/// How much of the per-AMI evidence (the share state) a region's run reads.
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    /// Given how many AMIs read so far the run will act on (not shared) and how many it read in
    /// all, how many more it may read (`None`: no bound). The AMIs not read are kept as
    /// `deferred`, left for the next run.
    pub room: &'a (dyn Fn(usize, usize) -> Option<usize> + Sync),
    /// None is started after it.
    pub deadline: Deadline,
}

/// Scans the region and plans: images, snapshots and usage once each, then the share state,
/// the references and the other accounts' usage of only the images the plan would change.
///
/// The share state is one call per AMI (EC2 has no batch form, and DescribeImages says only
/// whether an AMI is public), so it is read oldest first, for as many AMIs as the run can still
/// retire (`reads.room`; an AMI found shared does not count, as it is usually kept, so shared
/// AMIs never use up every run's reads), and none after the deadline: a run over a large
/// backlog spends its time retiring, not reading what it could not act on before it stops.
///
/// Safety checks fail closed: a failed scan of the images or snapshots fails the region (it
/// plans nothing); a failed evidence call (instances, launch templates, references, share
/// state) is recorded as a gap, and the planner keeps every image it covers from being
/// disabled or deregistered (`usage_unknown`).
pub async fn plan_region<E: ImageInventory + ConsumerUsage + Sync, B: RecoveryRules + Sync>(
    ec2: &E,
    bin: &B,
    document: &PolicyDocument,
    request: &RunRequest,
    as_of: DateTime<Utc>,
    reads: Reads<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Plan, Vec<EvidenceGap>, std::time::Duration)> {
    let depth = deepest(document);
    let (scanned, instances, templates, rules) = futures::join!(
        futures::future::try_join(ec2.images(None), ec2.snapshots()),
        ec2.instance_usage(),
        ec2.template_usage(depth),
        bin.recycle_bin()
    );
    // Without the rules, no deregistration can say whether it can be undone: those of a policy
    // with `require_recoverable` are kept, the others say nothing about recovery.
    let recycle_bin = match rules {
        Ok(rules) => Some(rules),
        Err(e) => {
            tracing::warn!(error = %e, "the Recycle Bin rules could not be read");
            warnings.push(format!("the Recycle Bin rules could not be read: {e}"));
            None
        }
    };
    let (mut images, mut snapshots) = scanned?;
    // The scans grew their lists by doubling: give back the slack (up to half of each) before
    // planning, the run's peak.
    images.shrink_to_fit();
    snapshots.shrink_to_fit();
    let mut usage = Usage::default();
    match instances {
        Ok(found) => usage.instances = found,
        Err(e) => usage.gaps.push(gap("DescribeInstances", &e, None)),
    }
    match templates {
        Ok(found) => usage.launch_templates = found,
        Err(e) => usage.gaps.push(gap(
            e.operation().unwrap_or("DescribeLaunchTemplates"),
            &e,
            None,
        )),
    }
    let account_id = account_of(&images, &snapshots)?;
    if let Some(ids) = &request.image_ids {
        for id in ids {
            if !images.iter().any(|i| &i.id == id) {
                warnings.push(format!(
                    "{id}: no AMI of the account has this id in the region"
                ));
            }
        }
    }
    // The pure planning's own time, every pass summed (the calls between passes excluded).
    let planning = std::cell::Cell::new(std::time::Duration::ZERO);
    let input = |images: &'_ [Image], usage: &'_ Usage| -> Plan {
        let started = Instant::now();
        let planned = plan(PlanInput {
            account_id: &account_id,
            images,
            snapshots: &snapshots,
            usage,
            document,
            policies: request.policies.as_deref(),
            image_ids: request.image_ids.as_deref(),
            as_of,
            recycle_bin: recycle_bin.as_ref(),
        });
        planning.set(planning.get() + started.elapsed());
        planned
    };
    let mut planned = input(&images, &usage);

    // Share state: only for the images whose decision waits on it. Each pass's plan is
    // dropped before the next is made: a large plan is never held twice.
    if !planned.share_state_needed.is_empty() {
        let needed = std::mem::take(&mut planned.share_state_needed);
        drop(planned);
        // Each id with its position in `images`, so the answers are applied without a search.
        let mut queue = oldest_first(needed, &images).into_iter();
        type Answer = (usize, String, Option<Result<bool>>);
        let mut answers: Vec<Answer> = Vec::new();
        // Not shared: these the run will act on. In all: what the reads have cost.
        let (mut counted, mut read) = (0usize, 0usize);
        while !reads.deadline.passed() {
            let room = (reads.room)(counted, read).unwrap_or(usize::MAX);
            let chunk: Vec<(usize, String)> = queue.by_ref().take(room.min(READ_CHUNK)).collect();
            if chunk.is_empty() {
                break;
            }
            read += chunk.len();
            let got: Vec<Answer> = futures::stream::iter(chunk)
                .map(|(n, id)| async move {
                    if reads.deadline.passed() {
                        return (n, id, None);
                    }
                    let shared = ec2.is_shared(&id).await;
                    (n, id, Some(shared))
                })
                .buffer_unordered(4)
                .collect()
                .await;
            counted += got
                .iter()
                .filter(|(_, _, a)| matches!(a, Some(Ok(false))))
                .count();
            answers.extend(got);
        }
        usage.deferred = queue.map(|(_, id)| id).collect();
        for (n, id, answer) in answers {
            match answer {
                Some(Ok(shared)) => images[n].shared = Some(shared),
                Some(Err(e)) => usage.gaps.push(gap(
                    "DescribeImageAttribute",
                    &e,
                    Some(BTreeSet::from([id])),
                )),
                None => {
                    usage.deferred.insert(id);
                }
            }
        }
        if !usage.deferred.is_empty() {
            tracing::info!(
                deferred = usage.deferred.len(),
                read,
                "share state left for the next run: more candidates than the run can retire"
            );
        }
        planned = input(&images, &usage);
    }

    // Other accounts: the usage reports of the shared images the plan would disable or
    // deregister, at most 200 images per call; a failed call leaves its images unchecked.
    // Before the references: an image these reports clear is then checked like any other.
    if !planned.consumer_reports_needed.is_empty() {
        let chunks: Vec<Vec<String>> = planned
            .consumer_reports_needed
            .chunks(USAGE_REPORT_MAX_IDS)
            .map(<[String]>::to_vec)
            .collect();
        drop(planned);
        for ids in chunks {
            match ec2.usage_reports(&ids).await {
                Ok(found) => usage.consumer_reports.extend(found),
                Err(e) => usage.gaps.push(gap(
                    e.operation().unwrap_or("DescribeImageUsageReports"),
                    &e,
                    Some(ids.into_iter().collect()),
                )),
            }
        }
        planned = input(&images, &usage);
    }

    // References (SSM parameters, Image Builder recipes, ...) of the images the plan changes,
    // at most 10 per DescribeImageReferences call; a failed call leaves its images unchecked.
    let acted = planned.acted_images();
    if !acted.is_empty() {
        let chunks: Vec<Vec<String>> = acted
            .chunks(IMAGE_REFERENCES_MAX_IDS)
            .map(<[String]>::to_vec)
            .collect();
        drop(planned);
        let answers: Vec<Vec<(Vec<String>, Result<_>)>> = futures::stream::iter(chunks)
            .map(|ids| async move {
                match ec2.image_references(&ids, depth).await {
                    // One id of the batch is gone (another run deregistered it since the scan):
                    // ask for each image alone, so that the others still get their answer.
                    Err(e) if e.is_not_found() && ids.len() > 1 => {
                        let mut each = Vec::new();
                        for id in ids {
                            let found =
                                ec2.image_references(std::slice::from_ref(&id), depth).await;
                            each.push((vec![id], found));
                        }
                        each
                    }
                    found => vec![(ids, found)],
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        for (ids, found) in answers.into_iter().flatten() {
            match found {
                Ok(refs) => usage.references.extend(refs),
                Err(e) => usage.gaps.push(gap(
                    "DescribeImageReferences",
                    &e,
                    Some(ids.into_iter().collect()),
                )),
            }
        }
        planned = input(&images, &usage);
    }

    tracing::info!(
        planning_ms = planning.get().as_millis() as u64,
        images = images.len(),
        "age-out planning time"
    );
    Ok((planned, usage.gaps, planning.get()))
}

/// The images whose share state a plan waits on, with their positions in `images`, oldest
/// first (the most overdue first; ties by id).
fn oldest_first(needed: Vec<String>, images: &[Image]) -> Vec<(usize, String)> {
    let index: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(n, i)| (i.id.as_str(), n))
        .collect();
    let mut queue: Vec<(usize, String)> = needed
        .into_iter()
        .filter_map(|id| Some((*index.get(id.as_str())?, id)))
        .collect();
    queue.sort_by(|(a, x), (b, y)| {
        images[*a]
            .created
            .cmp(&images[*b].created)
            .then_with(|| x.cmp(y))
    });
    queue
}

fn gap(call: &str, error: &Error, images: Option<BTreeSet<String>>) -> EvidenceGap {
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

/// The account that owns what `Owners=self` returned; refuses to go on if that is ambiguous.
fn account_of(images: &[Image], snapshots: &[crate::domain::model::Snapshot]) -> Result<String> {
    let mut owners = images
        .iter()
        .map(|i| &i.owner_id)
        .chain(snapshots.iter().map(|s| &s.owner_id));
    let Some(first) = owners.next() else {
        return Ok(String::new());
    };
    if let Some(other) = owners.find(|o| *o != first) {
        return Err(Error::Refused(format!(
            "the scan for the account's own AMIs and snapshots returned two owners ({first}, {other}): refusing to act"
        )));
    }
    Ok(first.clone())
}
