//! Makes the copies through the ports, grouped by destination (each has its own quota of copies
//! in flight and its own client), with bounded concurrency and the deadline respected.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::plan::{self, Job, Step};
use super::{client_token, CopyKey, CopyOutcome, CopyResult, FailedCopy};
use crate::domain::ids::Region;
use crate::domain::trigger::RunRequest;
use crate::jobs::Context;
use crate::ports::{Cloud, CopyImages, RetireImages};

/// Copies the request's AMIs from every region, one region after the other; one line per
/// (source, destination), and why an event needed no work when it did not.
pub async fn run<C: Cloud>(
    ctx: &Context<'_, C>,
    request: &RunRequest,
    regions: &[Region],
    dry_run: bool,
    event_driven: bool,
) -> (Vec<CopyResult>, Option<String>) {
    let mut results = Vec::new();
    let mut ignored = None;
    for region in regions {
        let (lines, why) = copy_from(ctx, region, request, dry_run, event_driven).await;
        results.extend(lines);
        ignored = why.or(ignored);
    }
    (results, ignored)
}

async fn copy_from<C: Cloud>(
    ctx: &Context<'_, C>,
    region: &Region,
    request: &RunRequest,
    dry_run: bool,
    event_driven: bool,
) -> (Vec<CopyResult>, Option<String>) {
    let images = match crate::jobs::proof::scan(ctx.cloud, ctx.document, region).await {
        Ok(i) => i,
        Err(e) => {
            return (
                vec![CopyResult::new("", region, "").with(CopyOutcome::Failed, e.to_string())],
                None,
            )
        }
    };
    let selection = plan::select(
        &images,
        request.image_ids.as_deref(),
        request.policies.as_deref(),
        ctx.document,
        region,
        event_driven,
    );
    let mut results = selection.lines;
    let mut by_destination: BTreeMap<Region, Vec<Job>> = BTreeMap::new();
    for job in selection.jobs {
        by_destination
            .entry(job.destination.clone())
            .or_default()
            .push(job);
    }
    for (destination, jobs) in by_destination {
        let dest = ctx.cloud.ec2(&destination);
        let in_flight = if dry_run {
            Ok(0)
        } else {
            dest.pending_images().await
        };
        let room = match in_flight {
            Ok(n) => plan::room(n),
            Err(e) => {
                let why = plan::explain_destination_error(&e, &destination);
                results.extend(jobs.iter().map(|job| {
                    let mut r = CopyResult::new(&job.image.id, region, &job.policy.name);
                    r.destination = Some(destination.clone());
                    r.with(CopyOutcome::Failed, why.clone())
                }));
                continue;
            }
        };
        let mut started = Vec::new();
        for job in jobs {
            let mut r = CopyResult::new(&job.image.id, region, &job.policy.name);
            r.destination = Some(destination.clone());
            if ctx.deadline.passed() {
                results.push(r.with(
                    CopyOutcome::Deferred,
                    crate::jobs::PAST_DEADLINE.to_string(),
                ));
            } else if started.len() >= room {
                results.push(r.with(CopyOutcome::Deferred, plan::no_room(&destination)));
            } else {
                started.push((job, r));
            }
        }
        let done: Vec<CopyResult> = futures::stream::iter(started)
            .map(|(job, r)| copy_one(&dest, job, region, dry_run, r))
            .buffer_unordered(ctx.limits.concurrency)
            .collect()
            .await;
        results.extend(done);
    }
    results.sort_by(|a, b| {
        (&a.source_image_id, &a.destination).cmp(&(&b.source_image_id, &b.destination))
    });
    (results, selection.ignored)
}

/// One copy into `dest`: found, made again after a failure, or made.
pub async fn copy_one<E: CopyImages + RetireImages>(
    dest: &E,
    job: Job<'_>,
    source_region: &Region,
    dry_run: bool,
    mut r: CopyResult,
) -> CopyResult {
    let image = job.image;
    let (attempt, failed_copies) = match dest.copies_of(&image.id).await {
        Ok(found) => match plan::step(found) {
            Step::Exists(id) => {
                r.copy_image_id = Some(id);
                return r.with(CopyOutcome::Exists, None);
            }
            Step::Copy { attempt, failed } => (attempt, failed),
        },
        Err(e) => {
            let why = plan::explain_destination_error(&e, dest.region());
            return r.with(e.disposition().into(), why);
        }
    };
    if dry_run {
        let why = failed_copies.first().map(|failed| {
            format!(
                "the copy {} failed ({}): it would be deregistered and copied again",
                failed.image_id,
                failed.state_reason.as_deref().unwrap_or("no reason given")
            )
        });
        return r.with(CopyOutcome::Planned, why);
    }
    for failed in &failed_copies {
        r.failed_copies.push(FailedCopy {
            image_id: failed.image_id.clone(),
            state_reason: failed.state_reason.clone(),
        });
        // The failed copy holds the name: deregister it (and its snapshots) before copying again.
        if let Err(e) = dest.deregister(&failed.image_id).await {
            if !e.is_not_found() {
                let why = format!(
                    "the failed copy {} could not be deregistered: {e}",
                    failed.image_id
                );
                return r.with(e.disposition().into(), why);
            }
        }
    }
    let tags = plan::copy_tags(job.policy, image, source_region, attempt);
    let token = client_token(&CopyKey {
        source: &image.id,
        source_region,
        destination: dest.region(),
        name: &image.name,
        how: &job.how,
        attempt,
    });
    match dest
        .copy_image(
            &image.id,
            source_region,
            &image.name,
            &job.how,
            &token,
            &tags,
        )
        .await
    {
        Ok(id) => {
            r.copy_image_id = Some(id);
            r.with(CopyOutcome::Started, None)
        }
        Err(e) => {
            let (outcome, why) = plan::copy_refused(&e, image, &job.how, dest.region());
            r.with(outcome, why)
        }
    }
}
