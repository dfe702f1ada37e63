//! Runs the launch tests ([`super::launch_tests`]) and the publishing
//! ([`super::destinations`]) of each region through the ports, one line per AMI, instance or
//! destination.

use chrono::{DateTime, Utc};

use super::destinations::publish_region;
use super::launch_tests::validate_region;
use super::targets::{self};
use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::trigger::{PublishRequest, RunRequest};
use crate::jobs::Context;
use crate::ports::Cloud;

/// The launch tests, then the publishing, of every region (concurrently).
pub async fn run<C: Cloud>(
    ctx: &Context<'_, C>,
    request: &RunRequest,
    regions: &[Region],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<PublishResult> {
    let runs = regions.iter().map(|region| async move {
        let (mut lines, scanned) = validate_region(ctx, region, request, dry_run, now).await;
        // The launch tests' scan serves publishing too, unless a verdict was written since.
        let verdicts = lines.iter().any(|l| {
            matches!(
                l.outcome,
                PublishOutcome::Passed | PublishOutcome::ValidationFailed
            )
        });
        let scanned = scanned.filter(|_| !verdicts);
        lines.extend(
            publish_region(
                ctx,
                region,
                request.policies.as_deref(),
                None,
                dry_run,
                now,
                scanned,
            )
            .await,
        );
        lines
    });
    let mut lines: Vec<PublishResult> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Only a sweep of every region can say a template is nowhere.
    if request.regions.is_none() && request.image_ids.is_none() {
        targets::missing_templates(&mut lines, regions);
    }
    lines
}

/// A rollback: publishes the pinned AMI (and its copy in each other region) to its policy's
/// destinations for that family, even if older than what they name, and tags it pinned so
/// that the sweeps keep it until a newer AMI is made.
pub async fn rollback<C: Cloud>(
    ctx: &Context<'_, C>,
    pin: &PublishRequest,
    regions: &[Region],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<PublishResult> {
    let runs = regions
        .iter()
        .map(|region| publish_region(ctx, region, None, Some(pin), dry_run, now, None));
    let mut lines: Vec<PublishResult> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    // The AMI's own region must have it; another region where the family has no AMI at all has
    // nothing published to roll back (a region the policy copies to only lately): said, not
    // refused. Where the family is there but the AMI's copy is not, the refusal stands.
    for line in lines.iter_mut() {
        let elsewhere = regions.first().is_some_and(|home| *home != line.region);
        if elsewhere && line.action == targets::ABSENT {
            line.outcome = PublishOutcome::Skipped;
        }
    }
    targets::missing_templates(&mut lines, regions);
    lines
}

pub(super) fn region_failure(
    stage: Stage,
    region: &Region,
    e: crate::error::Error,
) -> PublishResult {
    PublishResult::new(stage, "", region, "").with(e.disposition().into(), e.to_string())
}
