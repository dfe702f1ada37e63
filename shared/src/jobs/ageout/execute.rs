//! Executes a plan through the EC2 port with bounded concurrency, recording every outcome. A dry
//! run goes through the same code and calls nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::plan::{Action, ActionKind, Plan};
use super::RegionRun;
use crate::domain::ids::Region;
use crate::error::{Disposition, Error};
use crate::ports::{Pace, RetireImages};

/// What happened to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dry run: it would be done.
    Planned,
    /// Done by this run.
    Done,
    /// Already done (the image or snapshot was already gone).
    AlreadyDone,
    /// The snapshot was deleted by DeregisterImage's DeleteAssociatedSnapshots.
    DeletedWithImage,
    /// Not attempted because the action it depends on did not happen.
    Skipped,
    /// Left for the next run: the deadline came, or EC2 throttled the call.
    Deferred,
    /// EC2 refused or failed the call; see `error`.
    Failed,
}

impl Outcome {
    /// Whether the account changed.
    pub fn changed_account(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::DeletedWithImage)
    }
}

/// An action with its region and outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    /// The planned action.
    #[serde(flatten)]
    pub action: Action,
    pub region: Region,
    pub outcome: Outcome,
    /// The EC2 error code, when it failed or was deferred by EC2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn report(
    action: &Action,
    region: &Region,
    outcome: Outcome,
    error: Option<&Error>,
) -> ActionReport {
    ActionReport {
        action: action.clone(),
        region: region.clone(),
        outcome,
        error_code: error.and_then(|e| e.code()).map(str::to_string),
        error: error.map(|e| e.to_string()),
    }
}

fn from_error(action: &Action, region: &Region, err: &Error) -> ActionReport {
    let outcome = match err.disposition() {
        _ if err.is_not_found() => Outcome::AlreadyDone,
        Disposition::Deferred => Outcome::Deferred,
        Disposition::Failed => Outcome::Failed,
    };
    if outcome == Outcome::Failed {
        tracing::warn!(region = %region, action = ?action.kind, image_id = ?action.image_id,
            snapshot_id = ?action.snapshot_id, error = %err, "action failed");
    }
    report(action, region, outcome, Some(err))
}

/// When to deprecate, for a call made at `now`: EnableImageDeprecation refuses a time in the
/// past and rounds seconds to the minute, so the next whole minute (or the planner's clock
/// when that is later). Computed per call: a paced run crosses minute boundaries.
pub fn deprecate_at(now: DateTime<Utc>, as_of: DateTime<Utc>) -> DateTime<Utc> {
    (now + Duration::minutes(1))
        .duration_trunc(Duration::minutes(1))
        .unwrap_or(now + Duration::minutes(1))
        .max(as_of)
}

/// Runs a plan for the region run it belongs to. Image stages first (concurrently, at most
/// the run's `concurrency` in flight), then the snapshots, skipping those DeregisterImage
/// already deleted. Stops starting new calls once the deadline has passed and reports the rest
/// as deferred. A dry run calls nothing and reports every action as planned.
pub async fn execute<W: RetireImages + Sync>(
    plan: &mut Plan,
    run: &RegionRun<'_>,
    (ec2, pacer): (&W, &(impl Pace + Sync)),
    clock: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> Vec<ActionReport> {
    let region = run.region;
    if run.dry_run {
        // The actions move into their reports: a large plan is never held twice.
        return std::mem::take(&mut plan.actions)
            .into_iter()
            .map(|action| ActionReport {
                action,
                region: region.clone(),
                outcome: Outcome::Planned,
                error_code: None,
                error: None,
            })
            .collect();
    }

    let (stages, snapshots): (Vec<&Action>, Vec<&Action>) = plan
        .actions
        .iter()
        .partition(|a| a.kind != ActionKind::DeleteSnapshot);
    let results = run_stages(stages, run, (ec2, pacer), clock).await;
    let order: HashMap<(&Option<String>, ActionKind), usize> = plan
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| ((&a.image_id, a.kind), i))
        .collect();
    let mut results = results;
    results.sort_by_key(|(r, _)| {
        order
            .get(&(&r.action.image_id, r.action.kind))
            .copied()
            .unwrap_or(usize::MAX)
    });

    let (mut snapshot_reports, to_delete) = triage_snapshots(snapshots, &results, region);
    snapshot_reports.extend(delete_snapshots(to_delete, run, (ec2, pacer)).await);
    let snap_order: HashMap<&Option<String>, usize> = plan
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| (&a.snapshot_id, i))
        .collect();
    snapshot_reports.sort_by_key(|r| {
        snap_order
            .get(&r.action.snapshot_id)
            .copied()
            .unwrap_or(usize::MAX)
    });

    let mut out: Vec<ActionReport> = Vec::with_capacity(plan.actions.len());
    out.extend(results.into_iter().map(|(r, _)| r));
    out.extend(snapshot_reports);
    out
}

/// Runs the image stages, each with the snapshots DeregisterImage deleted with it.
async fn run_stages<W: RetireImages + Sync>(
    stages: Vec<&Action>,
    run: &RegionRun<'_>,
    (ec2, pacer): (&W, &(impl Pace + Sync)),
    clock: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> Vec<(ActionReport, Vec<String>)> {
    let (region, deadline) = (run.region, run.deadline);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = stages.len();
    futures::stream::iter(stages)
        .map(|action| {
            let done = &done;
            async move {
                // Past the deadline an action is deferred at once, not after waiting its turn.
                if deadline.passed() {
                    return (report(action, region, Outcome::Deferred, None), Vec::new());
                }
                pacer.take().await;
                if deadline.passed() {
                    return (report(action, region, Outcome::Deferred, None), Vec::new());
                }
                let result = stage(action, ec2, deprecate_at(clock(), run.as_of)).await;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % 100 == 0 {
                    tracing::info!(region = %region, done = n, total, "age-out progress");
                }
                match result {
                    Ok(deleted) => (report(action, region, Outcome::Done, None), deleted),
                    Err(e) => (from_error(action, region, &e), Vec::new()),
                }
            }
        })
        .buffer_unordered(run.concurrency.max(1))
        .collect()
        .await
}

/// One image stage through EC2; a deregistration answers the snapshots it deleted.
async fn stage<W: RetireImages + Sync>(
    action: &Action,
    ec2: &W,
    deprecate_at: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let id = action.image_id.as_deref().unwrap_or_default();
    match action.kind {
        ActionKind::Deprecate => ec2.deprecate(id, deprecate_at).await.map(|_| Vec::new()),
        ActionKind::Disable => ec2.disable(id).await.map(|_| Vec::new()),
        ActionKind::Deregister => ec2.deregister(id).await,
        ActionKind::Protect => ec2.protect(id).await.map(|_| Vec::new()),
        ActionKind::Unprotect => ec2.unprotect(id).await.map(|_| Vec::new()),
        ActionKind::DeleteSnapshot => Ok(Vec::new()),
    }
}

/// The snapshot deletions already settled by the stages (deleted with their AMI, deferred or
/// skipped with it), reported; and those still to delete.
fn triage_snapshots<'a>(
    snapshots: Vec<&'a Action>,
    results: &[(ActionReport, Vec<String>)],
    region: &Region,
) -> (Vec<ActionReport>, Vec<&'a Action>) {
    let deleted_with_image: HashSet<&str> = results
        .iter()
        .flat_map(|(_, d)| d.iter().map(String::as_str))
        .collect();
    let deregistered: HashSet<&str> = results
        .iter()
        .filter(|(r, _)| {
            r.action.kind == ActionKind::Deregister
                && matches!(r.outcome, Outcome::Done | Outcome::AlreadyDone)
        })
        .filter_map(|(r, _)| r.action.image_id.as_deref())
        .collect();
    let deferred: HashSet<&str> = results
        .iter()
        .filter(|(r, _)| r.outcome == Outcome::Deferred)
        .filter_map(|(r, _)| r.action.image_id.as_deref())
        .collect();

    let mut reports = Vec::new();
    let mut to_delete = Vec::new();
    for action in snapshots {
        let snap = action.snapshot_id.as_deref().unwrap_or_default();
        let image = action.image_id.as_deref();
        if deleted_with_image.contains(snap) {
            reports.push(report(action, region, Outcome::DeletedWithImage, None));
        } else if image.is_some_and(|i| deferred.contains(i)) {
            reports.push(report(action, region, Outcome::Deferred, None));
        } else if image.is_some_and(|i| !deregistered.contains(i)) {
            reports.push(report(action, region, Outcome::Skipped, None));
        } else {
            to_delete.push(action);
        }
    }
    (reports, to_delete)
}

/// Deletes the snapshots, paced, until the deadline.
async fn delete_snapshots<W: RetireImages + Sync>(
    to_delete: Vec<&Action>,
    run: &RegionRun<'_>,
    (ec2, pacer): (&W, &(impl Pace + Sync)),
) -> Vec<ActionReport> {
    let (region, deadline) = (run.region, run.deadline);
    futures::stream::iter(to_delete)
        .map(|action| async move {
            if deadline.passed() {
                return report(action, region, Outcome::Deferred, None);
            }
            pacer.take().await;
            if deadline.passed() {
                return report(action, region, Outcome::Deferred, None);
            }
            match ec2
                .delete_snapshot(action.snapshot_id.as_deref().unwrap_or_default())
                .await
            {
                Ok(()) => report(action, region, Outcome::Done, None),
                // InvalidSnapshot.InUse: EC2 knows a user we did not see. Reported, not retried.
                Err(e) => from_error(action, region, &e),
            }
        })
        .buffer_unordered(run.concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::error::Result;

    /// EC2's retire calls in memory. EnableImageDeprecation refuses a time before the current
    /// minute of the fake's clock, as EC2 refuses a `DeprecateAt` in the past.
    struct FakeEc2 {
        clock: Mutex<DateTime<Utc>>,
        deprecated: Mutex<Vec<(String, DateTime<Utc>)>>,
    }

    impl FakeEc2 {
        fn now(&self) -> DateTime<Utc> {
            *self.clock.lock().expect("clock")
        }
    }

    impl RetireImages for FakeEc2 {
        async fn deprecate(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
            // Each call takes 40 s of the fake's clock: a paced run crossing minute boundaries.
            let now = {
                let mut clock = self.clock.lock().expect("clock");
                *clock += Duration::seconds(40);
                *clock
            };
            let minute = now.duration_trunc(Duration::minutes(1)).expect("minute");
            if at < minute {
                return Err(Error::Refused(format!(
                    "DeprecateAt {at} is in the past at {now}"
                )));
            }
            self.deprecated
                .lock()
                .expect("log")
                .push((image_id.to_string(), at));
            Ok(())
        }
        async fn disable(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn deregister(&self, _: &str) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        async fn protect(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn unprotect(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn delete_snapshot(&self, _: &str) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_deprecation_gets_a_time_in_the_future_of_its_own_call() {
        let start = Utc
            .with_ymd_and_hms(2026, 11, 26, 10, 0, 50)
            .single()
            .expect("time");
        let ec2 = FakeEc2 {
            clock: Mutex::new(start),
            deprecated: Mutex::new(Vec::new()),
        };
        let mut plan = Plan {
            actions: (0..6)
                .map(|n| Action {
                    kind: ActionKind::Deprecate,
                    image_id: Some(format!("ami-{n}")),
                    snapshot_id: None,
                    policy: "web".into(),
                    family: Some("web".into()),
                    reason: "old".into(),
                    retirement: None,
                    recovery: None,
                    bytes: None,
                    bytes_estimated: false,
                })
                .collect(),
            ..Plan::default()
        };
        let region: Region = "us-east-1".parse().expect("region");
        let pacer = crate::tests::fakes::NoPace;
        let clock = || ec2.now();
        // An as_of in the past (a run without as_of: the clock at its start).
        let document = crate::domain::policy::PolicyDocument::parse(
            r#"{"policies": [{"name": "web", "retain": {"deprecate_after_days": 1}}]}"#,
            Default::default(),
        )
        .expect("document");
        let request = crate::domain::trigger::RunRequest::default();
        let run = RegionRun {
            region: &region,
            document: &document,
            request: &request,
            as_of: start,
            dry_run: false,
            deadline: crate::domain::deadline::Deadline::none(),
            concurrency: 1,
        };
        let reports = execute(&mut plan, &run, (&ec2, &pacer), &clock).await;
        assert!(
            reports.iter().all(|r| r.outcome == Outcome::Done),
            "{reports:?}"
        );
        let deprecated = ec2.deprecated.lock().expect("log");
        assert_eq!(deprecated.len(), 6);
        assert!(
            deprecated.last().map(|(_, at)| *at) > Some(start + Duration::minutes(3)),
            "later calls get later times: {deprecated:?}"
        );
    }

    #[test]
    fn the_deprecation_time_is_the_next_minute_or_the_planners_clock() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 26, 10, 0, 59)
            .single()
            .expect("time");
        let next = Utc
            .with_ymd_and_hms(2026, 11, 26, 10, 1, 0)
            .single()
            .expect("time");
        assert_eq!(deprecate_at(now, now - Duration::days(1)), next);
        let later = now + Duration::days(3);
        assert_eq!(deprecate_at(now, later), later);
    }
}
