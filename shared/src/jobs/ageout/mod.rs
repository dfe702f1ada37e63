//! Age-out: plan retention per region, then execute the plan (or only report it, in a dry run).

pub mod continuation;
mod execute;
pub mod plan;
pub mod restore;
pub mod savings;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

pub use execute::{execute, ActionReport, Outcome};
pub use plan::{plan, Action, ActionKind, KeepReason, Kept, Plan, PlanInput};

use crate::domain::deadline::Deadline;
use crate::domain::event::detail_type;
use crate::domain::event::{event, Event, Published};
use crate::domain::ids::Region;
use crate::domain::model::{EvidenceGap, Image, Usage, PENDING_REPORTS_QUOTA};
use crate::domain::policy::{PolicyDocument, TemplateDepth};
use crate::domain::trigger::RunRequest;
use crate::error::{Error, Result};
use crate::jobs::{label, Context};
use crate::ports::{
    Cloud, ConsumerUsage, EventSink, ImageInventory, Pace, RecoveryRules, RetireImages,
    IMAGE_REFERENCES_MAX_IDS, USAGE_REPORT_MAX_IDS,
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
    let evidence_gaps = gaps_summary(&regions);
    events.push(event(
        detail_type::POLICY_RUN_COMPLETED,
        Vec::new(),
        serde_json::json!({
            "function": FUNCTION, "dry_run": dry_run, "complete": complete, "as_of": as_of,
            "regions": regions.iter().map(|r| r.region.to_string()).collect::<Vec<_>>(),
            "policies": request.policies, "counts": counts, "failed": failed.len(), "remaining": remaining,
            "evidence_gaps": evidence_gaps.0, "evidence_gaps_total": evidence_gaps.1, "saved": saved,
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
    let detail_type = match a.action.action {
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
fn gaps_summary(regions: &[RegionReport]) -> (Vec<serde_json::Value>, usize) {
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
    let rounds = Rounds {
        ec2,
        pacer,
        report_pacer,
        report_room: ReportRoom::Uncounted,
        run,
        scanned: &mut scanned,
        asked: Asked::default(),
        done: HashSet::new(),
        orphans: HashSet::new(),
        undone: HashSet::new(),
        out: &mut report,
    };
    let ((), last) = futures::join!(reader, rounds.go(rx));
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

/// What is left of EC2's quota of usage reports in progress in a region (counted before the
/// first request of a run, then spent by each request).
enum ReportRoom {
    Uncounted,
    Left(usize),
    /// The pending reports could not be counted (not by throttling): nothing is asked.
    Unknown(String),
}

impl ReportRoom {
    /// Counts the pending reports, once (again in a later round after throttling). A failed
    /// count is an evidence gap over the AMIs whose reports wait on it: it never goes unseen.
    async fn count<E: ConsumerUsage + Sync>(
        &mut self,
        ec2: &E,
        images: &[String],
        gaps: &mut Vec<EvidenceGap>,
    ) -> Option<String> {
        if !matches!(self, ReportRoom::Uncounted) {
            return None;
        }
        match ec2.pending_usage_reports().await {
            Ok(n) => {
                *self = ReportRoom::Left(PENDING_REPORTS_QUOTA.saturating_sub(n));
                None
            }
            Err(e) => {
                let why = format!("usage reports in progress not counted: {e}");
                gaps.push(gap(
                    e.operation().unwrap_or("DescribeImageUsageReports"),
                    &e,
                    Some(images.iter().cloned().collect()),
                ));
                if !e.is_transient() {
                    *self = ReportRoom::Unknown(why.clone());
                }
                Some(why)
            }
        }
    }

    /// Why no report can be asked now, if none can.
    fn full(&self) -> Option<String> {
        match self {
            ReportRoom::Left(0) => Some(format!(
                "EC2's quota of {PENDING_REPORTS_QUOTA} usage reports in progress is reached"
            )),
            ReportRoom::Unknown(why) => Some(why.clone()),
            _ => None,
        }
    }

    fn spend(&mut self) {
        if let ReportRoom::Left(n) = self {
            *n = n.saturating_sub(1);
        }
    }
}

/// Asks EC2 for a usage report of each shared AMI that no fresh report covers (CreateImageUsageReport,
/// paced on its own, within what is left of the quota of reports in progress). The client
/// token is the image and the hour of the wall clock, so a re-delivered run in the same hour
/// gets the same report, never a second one.
async fn request_reports<E: ConsumerUsage + Sync, P: Pace + Sync>(
    ec2: &E,
    pacer: &P,
    run: &RegionRun<'_>,
    depth: TemplateDepth,
    images: &[String],
    room: &mut ReportRoom,
    gaps: &mut Vec<EvidenceGap>,
) -> Vec<ReportRequest> {
    let mut out = Vec::new();
    let uncounted = if images.is_empty() {
        None
    } else {
        room.count(ec2, images, gaps).await
    };
    for image_id in images {
        let line = |outcome, report_id, error| ReportRequest {
            image_id: image_id.clone(),
            outcome,
            report_id,
            error,
        };
        if let Some(why) = uncounted.clone().or_else(|| room.full()) {
            out.push(line("deferred", None, Some(why)));
            continue;
        }
        if run.dry_run {
            room.spend();
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
            Ok(id) => {
                room.spend();
                out.push(line("requested", Some(id), None))
            }
            Err(e) if e.is_transient() => out.push(line("deferred", None, Some(e.to_string()))),
            Err(e) => {
                gaps.push(gap(
                    "CreateImageUsageReport",
                    &e,
                    Some(BTreeSet::from([image_id.clone()])),
                ));
                out.push(line("failed", None, Some(e.to_string())));
            }
        }
    }
    out
}

/// A region as scanned, with the evidence gathered so far: what each round plans over.
struct Scanned<'a> {
    run: &'a RegionRun<'a>,
    depth: TemplateDepth,
    account_id: String,
    images: Vec<Image>,
    snapshots: Vec<crate::domain::model::Snapshot>,
    usage: Usage,
    recycle_bin: Option<crate::domain::recycle_bin::RecycleBin>,
    /// The pure planner's own time, every pass summed (the calls between passes excluded): its
    /// CPU time, since it neither waits nor yields.
    planning: std::time::Duration,
}

impl<'a> Scanned<'a> {
    /// Images, snapshots, instances, launch templates and the Recycle Bin rules, once each.
    async fn scan<E: ImageInventory + Sync, B: RecoveryRules + Sync>(
        ec2: &E,
        bin: &B,
        run: &'a RegionRun<'a>,
        warnings: &mut Vec<String>,
    ) -> Result<Scanned<'a>> {
        let depth = deepest(run.document);
        let (scanned, instances, templates, rules) = futures::join!(
            futures::future::try_join(ec2.images(None), ec2.snapshots()),
            ec2.instance_usage(),
            ec2.template_usage(depth),
            bin.recycle_bin()
        );
        // Without the rules, no deregistration can say whether it can be undone: those of a
        // policy with `require_recoverable` are kept, the others say nothing about recovery.
        let recycle_bin = match rules {
            Ok(rules) => Some(rules),
            Err(e) => {
                tracing::warn!(error = %e, "the Recycle Bin rules could not be read");
                warnings.push(format!("the Recycle Bin rules could not be read: {e}"));
                None
            }
        };
        let (mut images, mut snapshots) = scanned?;
        // The scans grew their lists by doubling: give back the slack (up to half of each)
        // before planning, the run's peak.
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
        if let Some(ids) = &run.request.image_ids {
            for id in ids {
                if !images.iter().any(|i| &i.id == id) {
                    warnings.push(format!(
                        "{id}: no AMI of the account has this id in the region"
                    ));
                }
            }
        }
        Ok(Scanned {
            run,
            depth,
            account_id,
            images,
            snapshots,
            usage,
            recycle_bin,
            planning: std::time::Duration::ZERO,
        })
    }

    /// Plans over what is known now.
    fn plan(&mut self) -> Plan {
        let started = Instant::now();
        let planned = plan(PlanInput {
            account_id: &self.account_id,
            images: &self.images,
            snapshots: &self.snapshots,
            usage: &self.usage,
            document: self.run.document,
            policies: self.run.request.policies.as_deref(),
            image_ids: self.run.request.image_ids.as_deref(),
            as_of: self.run.as_of,
            recycle_bin: self.recycle_bin.as_ref(),
        });
        self.planning += started.elapsed();
        planned
    }

    /// Applies share-state answers, and counts them.
    fn apply(&mut self, answers: Vec<Answer>) -> Tally {
        let mut not_shared = 0;
        let count = answers.len();
        for (n, id, answer) in answers {
            match answer {
                Some(Ok(shared)) => {
                    not_shared += usize::from(!shared);
                    self.images[n].shared = Some(shared);
                    self.usage.deferred.remove(&id);
                }
                Some(Err(e)) => {
                    self.usage.deferred.remove(&id);
                    self.usage.gaps.push(gap(
                        "DescribeImageAttribute",
                        &e,
                        Some(BTreeSet::from([id])),
                    ));
                }
                // Not read: the deadline came first. It stays deferred.
                None => {}
            }
        }
        Tally {
            answers: count,
            not_shared,
        }
    }

    /// Other accounts: the usage reports of shared images, at most 200 images per call; a
    /// failed call leaves its images unchecked (kept).
    async fn read_consumer_reports<E: ConsumerUsage + Sync>(&mut self, ec2: &E, ids: Vec<String>) {
        for ids in ids.chunks(USAGE_REPORT_MAX_IDS) {
            match ec2.usage_reports(ids).await {
                Ok(found) => self.usage.consumer_reports.extend(found),
                Err(e) => self.usage.gaps.push(gap(
                    e.operation().unwrap_or("DescribeImageUsageReports"),
                    &e,
                    Some(ids.iter().cloned().collect()),
                )),
            }
        }
    }

    /// References (SSM parameters, Image Builder recipes, ...), at most 10 images per
    /// DescribeImageReferences call; a failed call leaves its images unchecked (kept).
    async fn read_references<E: ImageInventory + Sync>(&mut self, ec2: &E, ids: Vec<String>) {
        let depth = self.depth;
        let chunks: Vec<Vec<String>> = ids
            .chunks(IMAGE_REFERENCES_MAX_IDS)
            .map(<[String]>::to_vec)
            .collect();
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
                Ok(refs) => self.usage.references.extend(refs),
                Err(e) => self.usage.gaps.push(gap(
                    "DescribeImageReferences",
                    &e,
                    Some(ids.into_iter().collect()),
                )),
            }
        }
    }
}

/// One share-state answer: the image's position in the scan, its id, and the answer (`None`:
/// not read, the deadline came first).
type Answer = (usize, String, Option<Result<bool>>);

/// Share-state answers, counted.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answers: usize,
    /// Of AMIs found not shared: those the run will act on.
    not_shared: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.answers += other.answers;
        self.not_shared += other.not_shared;
    }
}

/// Share-state reads started at once; each chunk's answers go to the rounds as one message.
const READ_CHUNK: usize = 100;

/// Reads share states oldest first, in chunks, until `budget` AMIs are found not shared, the
/// queue is empty or the deadline has passed, and sends each chunk's answers. Dropping the
/// sender tells the rounds the reads are over.
async fn read_share_states<E: ImageInventory + Sync>(
    ec2: &E,
    queue: Vec<(usize, String)>,
    budget: Option<usize>,
    deadline: Deadline,
    answers: futures::channel::mpsc::UnboundedSender<Vec<Answer>>,
) {
    let mut queue = queue.into_iter();
    let mut not_shared = 0usize;
    while !deadline.passed() {
        let room = budget.map_or(usize::MAX, |b| b.saturating_sub(not_shared));
        let chunk: Vec<(usize, String)> = queue.by_ref().take(room.min(READ_CHUNK)).collect();
        if chunk.is_empty() {
            break;
        }
        let got: Vec<Answer> = futures::stream::iter(chunk)
            .map(|(n, id)| async move {
                if deadline.passed() {
                    return (n, id, None);
                }
                let shared = ec2.is_shared(&id).await;
                (n, id, Some(shared))
            })
            .buffer_unordered(4)
            .collect()
            .await;
        not_shared += got
            .iter()
            .filter(|(_, _, a)| matches!(a, Some(Ok(false))))
            .count();
        if answers.unbounded_send(got).is_err() {
            break;
        }
        // Let the rounds act on what was read.
        tokio::task::yield_now().await;
    }
}

/// The evidence calls already made, so that no round asks twice.
#[derive(Default)]
struct Asked {
    consumer_reports: HashSet<String>,
    references: HashSet<String>,
    new_reports: HashSet<String>,
}

/// The ids of `wanted` not in `asked`, which now holds them.
fn not_asked(wanted: &[String], asked: &mut HashSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|id| asked.insert((*id).clone()))
        .cloned()
        .collect()
}

/// An action's identity across rounds: its kind and the image or snapshot it changes.
fn action_key(a: &Action) -> (ActionKind, String) {
    let id = match a.action {
        ActionKind::DeleteSnapshot => &a.snapshot_id,
        _ => &a.image_id,
    };
    (a.action, id.clone().unwrap_or_default())
}

/// The rounds of a region's run.
struct Rounds<'r, 's, E, P> {
    ec2: &'r E,
    pacer: &'r P,
    /// Paces the usage reports asked, apart from the retirements.
    report_pacer: &'r P,
    /// What is left of EC2's quota of usage reports in progress.
    report_room: ReportRoom,
    run: &'r RegionRun<'r>,
    scanned: &'r mut Scanned<'s>,
    asked: Asked,
    /// Every action a round reported (done, failed, deferred ...): never started again.
    done: HashSet<(ActionKind, String)>,
    /// The orphaned snapshots reported.
    orphans: HashSet<String>,
    /// AMIs whose deregistration a round reported and did not do (deferred or failed).
    undone: HashSet<String>,
    out: &'r mut RegionReport,
}

impl<E: ImageInventory + ConsumerUsage + RetireImages + Sync, P: Pace + Sync> Rounds<'_, '_, E, P> {
    /// Runs rounds until the reads are over and everything read is planned (or the deadline
    /// has passed); returns the last plan, whose kept images are the run's (the kept snapshots
    /// and orphans are gathered round by round).
    async fn go(
        mut self,
        mut answers: futures::channel::mpsc::UnboundedReceiver<Vec<Answer>>,
    ) -> Plan {
        let pipelined = !self.run.dry_run;
        let (mut reads_over, mut fresh) = (false, true);
        // Answers planned by a round, and read since the last one.
        let (mut planned, mut waiting) = (Tally::default(), Tally::default());
        let mut last = Plan::default();
        let mut rounds = 0usize;
        loop {
            // Past the deadline a real run starts no round (it would only read evidence for
            // actions it must defer), once it has planned.
            let closed = pipelined && rounds > 0 && self.run.deadline.passed();
            if fresh && !closed && (reads_over || pipelined) {
                rounds += 1;
                last = self.round().await;
                planned.add(waiting);
                (waiting, fresh) = (Tally::default(), false);
            }
            // A dry run plans once, after every read.
            if reads_over || (pipelined && self.run.deadline.passed()) {
                return last;
            }
            // The next round waits for as many AMIs found not shared as the rounds before had
            // (up to a chunk's worth), or for as many answers in all as the rounds before had:
            // a run whose candidates are mostly shared plans a few times, not once per chunk.
            let ready = |w: &Tally| {
                pipelined
                    && (w.not_shared >= planned.not_shared.clamp(1, READ_CHUNK)
                        || w.answers >= planned.answers.max(READ_CHUNK))
            };
            while !ready(&waiting) && !reads_over {
                match answers.next().await {
                    Some(got) => {
                        waiting.add(self.scanned.apply(got));
                        fresh = true;
                    }
                    None => reads_over = true,
                }
            }
            // And whatever else is ready.
            while !reads_over {
                match answers.try_recv() {
                    Ok(got) => {
                        waiting.add(self.scanned.apply(got));
                        fresh = true;
                    }
                    Err(e) if e.is_closed() => reads_over = true,
                    Err(_) => break,
                }
            }
        }
    }

    /// Plans over what is known, gathers the evidence the new decisions need, and executes
    /// what no earlier round did.
    async fn round(&mut self) -> Plan {
        let planned = self.settle().await;
        // Orphans found, each once. A snapshot whose deletion an earlier round reported
        // (deferred or failed) looks orphaned once its AMI is gone: it is that AMI's snapshot,
        // reported with it, not an orphan.
        for orphan in &planned.orphans {
            let reported = self
                .done
                .contains(&(ActionKind::DeleteSnapshot, orphan.snapshot_id.clone()));
            if !reported && self.orphans.insert(orphan.snapshot_id.clone()) {
                self.out.orphans.push(orphan.clone());
            }
        }
        let new: Vec<Action> = planned
            .actions
            .iter()
            .filter(|a| self.done.insert(action_key(a)))
            .cloned()
            .collect();
        let to_request = not_asked(
            &planned.usage_reports_to_request,
            &mut self.asked.new_reports,
        );
        let requested = request_reports(
            self.ec2,
            self.report_pacer,
            self.run,
            self.scanned.depth,
            &to_request,
            &mut self.report_room,
            &mut self.scanned.usage.gaps,
        )
        .await;
        self.out.usage_reports.extend(requested);
        // The snapshots kept of the AMIs this round deregisters (a later round plans without
        // those AMIs, so it would not say).
        let deregistering: HashSet<&str> = new
            .iter()
            .filter(|a| a.action == ActionKind::Deregister)
            .filter_map(|a| a.image_id.as_deref())
            .collect();
        self.out.snapshots_kept.extend(
            planned
                .snapshots_kept
                .iter()
                .filter(|k| deregistering.contains(k.image_id.as_str()))
                .cloned(),
        );
        drop(deregistering);
        if new.is_empty() {
            return planned;
        }
        tracing::info!(region = %self.run.region, actions = new.len(), kept = planned.kept.len(),
            dry_run = self.run.dry_run, "age-out round planned");
        // An AMI whose deregistration an earlier round left undone (deferred or failed) is
        // still registered, and still uses its snapshots: none of them is deleted in this run
        // (the planner counts it as deregistered, since it plans that).
        let (held, new) = self.hold_snapshots_of_undone(new);
        let mut round = Plan {
            actions: new,
            ..Plan::default()
        };
        let mut reports = execute(
            &mut round,
            self.ec2,
            self.run.region,
            self.run.dry_run,
            self.run.as_of,
            self.run.deadline,
            self.run.concurrency,
            self.pacer,
            &Utc::now,
        )
        .await;
        reports.extend(held);
        // What is gone from the account: later rounds plan without it; what was not done.
        let gone = &mut self.scanned.usage.gone;
        for r in &reports {
            if r.action.action == ActionKind::Deregister
                && matches!(
                    r.outcome,
                    Outcome::Deferred | Outcome::Failed | Outcome::Skipped
                )
            {
                self.undone.extend(r.action.image_id.clone());
            }
            let removed = match r.action.action {
                ActionKind::Deregister => matches!(r.outcome, Outcome::Done | Outcome::AlreadyDone)
                    .then_some(&r.action.image_id),
                ActionKind::DeleteSnapshot => matches!(
                    r.outcome,
                    Outcome::Done | Outcome::AlreadyDone | Outcome::DeletedWithImage
                )
                .then_some(&r.action.snapshot_id),
                _ => None,
            };
            if let Some(Some(id)) = removed {
                gone.insert(id.clone());
            }
        }
        self.out.plan.extend(reports);
        planned
    }

    /// Splits off the snapshot deletions of `actions` that an AMI whose deregistration an
    /// earlier round left undone still needs, reported as deferred (the next run plans again).
    fn hold_snapshots_of_undone(&self, actions: Vec<Action>) -> (Vec<ActionReport>, Vec<Action>) {
        if self.undone.is_empty() {
            return (Vec::new(), actions);
        }
        let needed: HashSet<&str> = self
            .scanned
            .images
            .iter()
            .filter(|i| self.undone.contains(&i.id))
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str))
            .collect();
        let (held, go): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| {
            a.action == ActionKind::DeleteSnapshot
                && a.snapshot_id.as_deref().is_some_and(|s| needed.contains(s))
        });
        let held = held
            .into_iter()
            .map(|action| ActionReport {
                action,
                region: self.run.region.clone(),
                outcome: Outcome::Deferred,
                error_code: None,
                error: Some(
                    "an AMI whose deregistration this run left undone still uses it".into(),
                ),
            })
            .collect();
        (held, go)
    }

    /// Plans, then reads the evidence that the decisions wait on and that no round asked for
    /// yet (the usage reports of shared images it would change, then the references of every
    /// image it would change), and plans again, until a plan waits on nothing new.
    async fn settle(&mut self) -> Plan {
        loop {
            let planned = self.scanned.plan();
            let reports = not_asked(
                &planned.consumer_reports_needed,
                &mut self.asked.consumer_reports,
            );
            let references = not_asked(&planned.acted_images(), &mut self.asked.references);
            if reports.is_empty() && references.is_empty() {
                return planned;
            }
            // Each pass's plan is dropped before the next is made: a large plan is never held
            // twice.
            drop(planned);
            if !reports.is_empty() {
                self.scanned.read_consumer_reports(self.ec2, reports).await;
            }
            if !references.is_empty() {
                self.scanned.read_references(self.ec2, references).await;
            }
        }
    }
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
