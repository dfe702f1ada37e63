//! A region as scanned: its AMIs and snapshots, and the evidence gathered so far; the share
//! states read oldest first while the rounds retire.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use futures::StreamExt;

use super::{deepest, gap, plan, Plan, PlanInput, RegionRun};
use crate::domain::deadline::Deadline;
use crate::domain::model::{Image, Usage};
use crate::domain::policy::TemplateDepth;
use crate::error::{Error, Result};
use crate::ports::{
    ConsumerUsage, ImageInventory, RecoveryRules, IMAGE_REFERENCES_MAX_IDS, USAGE_REPORT_MAX_IDS,
};

/// A region as scanned, with the evidence gathered so far: what each round plans over.
pub(super) struct Scanned<'a> {
    pub(super) run: &'a RegionRun<'a>,
    pub(super) depth: TemplateDepth,
    pub(super) account_id: String,
    pub(super) images: Vec<Image>,
    pub(super) snapshots: Vec<crate::domain::model::Snapshot>,
    pub(super) usage: Usage,
    pub(super) recycle_bin: Option<crate::domain::recycle_bin::RecycleBin>,
    /// The pure planner's own time, every pass summed (the calls between passes excluded): its
    /// CPU time, since it neither waits nor yields.
    pub(super) planning: std::time::Duration,
}

impl<'a> Scanned<'a> {
    /// Images, snapshots, instances, launch templates and the Recycle Bin rules, once each.
    pub(super) async fn scan<E: ImageInventory + Sync, B: RecoveryRules + Sync>(
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
    pub(super) fn plan(&mut self) -> Plan {
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
    pub(super) fn apply(&mut self, answers: Vec<Answer>) -> Tally {
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
    pub(super) async fn read_consumer_reports<E: ConsumerUsage + Sync>(
        &mut self,
        ec2: &E,
        ids: Vec<String>,
    ) {
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
    pub(super) async fn read_references<E: ImageInventory + Sync>(
        &mut self,
        ec2: &E,
        ids: Vec<String>,
    ) {
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
pub(super) type Answer = (usize, String, Option<Result<bool>>);

/// Share-state answers, counted.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) answers: usize,
    /// Of AMIs found not shared: those the run will act on.
    pub(super) not_shared: usize,
}

impl Tally {
    pub(super) fn add(&mut self, other: Tally) {
        self.answers += other.answers;
        self.not_shared += other.not_shared;
    }
}

/// Share-state reads started at once; each chunk's answers go to the rounds as one message.
pub(super) const READ_CHUNK: usize = 100;

/// Reads share states oldest first, in chunks, until `budget` AMIs are found not shared, the
/// queue is empty or the deadline has passed, and sends each chunk's answers. Dropping the
/// sender tells the rounds the reads are over.
pub(super) async fn read_share_states<E: ImageInventory + Sync>(
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

/// The images whose share state a plan waits on, with their positions in `images`, oldest
/// first (the most overdue first; ties by id).
pub(super) fn oldest_first(needed: Vec<String>, images: &[Image]) -> Vec<(usize, String)> {
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

/// The account that owns what `Owners=self` returned; refuses to go on if that is ambiguous.
pub(super) fn account_of(
    images: &[Image],
    snapshots: &[crate::domain::model::Snapshot],
) -> Result<String> {
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
