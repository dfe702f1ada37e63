//! Usage reports asked of EC2 for shared AMIs, within its quota of reports in progress.

use std::collections::BTreeSet;

use chrono::Utc;

use super::{gap, RegionRun, ReportRequest};
use crate::domain::model::{EvidenceGap, PENDING_REPORTS_QUOTA};
use crate::domain::policy::TemplateDepth;
use crate::ports::{ConsumerUsage, Pace};

/// What is left of EC2's quota of usage reports in progress in a region (counted before the
/// first request of a run, then spent by each request).
pub(super) enum ReportRoom {
    Uncounted,
    Left(usize),
    /// The pending reports could not be counted (not by throttling): nothing is asked.
    Unknown(String),
}

impl ReportRoom {
    /// Counts the pending reports, once (again in a later round after throttling). A failed
    /// count is an evidence gap over the AMIs whose reports wait on it: it never goes unseen.
    pub(super) async fn count<E: ConsumerUsage + Sync>(
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
    pub(super) fn full(&self) -> Option<String> {
        match self {
            ReportRoom::Left(0) => Some(format!(
                "EC2's quota of {PENDING_REPORTS_QUOTA} usage reports in progress is reached"
            )),
            ReportRoom::Unknown(why) => Some(why.clone()),
            _ => None,
        }
    }

    pub(super) fn spend(&mut self) {
        if let ReportRoom::Left(n) = self {
            *n = n.saturating_sub(1);
        }
    }
}

/// Asks EC2 for a usage report of each shared AMI that no fresh report covers (CreateImageUsageReport,
/// paced on its own, within what is left of the quota of reports in progress). The client
/// token is the image and the hour of the wall clock, so a re-delivered run in the same hour
/// gets the same report, never a second one.
pub(super) async fn request_reports<E: ConsumerUsage + Sync, P: Pace + Sync>(
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
