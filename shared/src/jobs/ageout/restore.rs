//! Undo: give back the AMIs age-out retired. A run request `{"restore": {"image_ids": [...]}}`
//! restores an AMI in the Recycle Bin (its snapshots first, then the AMI, as EC2 requires),
//! re-enables a disabled one (EnableImage) and cancels a deprecation (DisableImageDeprecation).
//! The plan is pure; the executor acts through [`RestoreImages`] and honours `dry_run`.

use serde::Serialize;

use crate::domain::deadline::Deadline;
use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::recycle_bin::{BinImage, BinSnapshot};
use crate::error::Disposition;
use crate::jobs::Line;
use crate::ports::{Pace, RestoreImages};

/// One step of giving an AMI back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", content = "id", rename_all = "snake_case")]
pub enum Step {
    /// RestoreSnapshotFromRecycleBin of one of its snapshots.
    RestoreSnapshot(String),
    /// RestoreImageFromRecycleBin.
    RestoreImage(String),
    /// EnableImage.
    Enable(String),
    /// DisableImageDeprecation.
    CancelDeprecation(String),
}

/// What became of one AMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// Every step was done.
    Restored,
    /// The AMI is back, and some of its snapshots are not (deleted for good, or in no bin): it
    /// cannot launch; `missing` says which.
    Partial,
    /// Dry run: the steps it would take.
    WouldRestore,
    /// Registered, enabled and not deprecated: nothing to undo.
    NothingToUndo,
    /// Neither registered nor in the Recycle Bin (deleted for good, or another region).
    NotFound,
    /// Throttled or out of time: the same request finishes it.
    Deferred,
    /// EC2 refused a step; see `error`.
    Failed,
}

/// The restore of one AMI, with its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    pub image_id: String,
    /// Where it was found (absent when nowhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    pub outcome: RestoreOutcome,
    /// EC2's error, when a step failed or was deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The AMI's snapshots the account does not have (`partial`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl Line for Restored {
    type Outcome = RestoreOutcome;
    fn outcome(&self) -> &RestoreOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(
            self.outcome,
            RestoreOutcome::Failed | RestoreOutcome::Partial
        )
    }
}

/// The steps that give `image_id` back: from the Recycle Bin (its snapshots there first), or
/// re-enabled and undeprecated where it is registered. `None`: it is in neither place.
pub fn steps(
    image_id: &str,
    registered: Option<&Image>,
    in_bin: Option<&BinImage>,
    bin_snapshots: &[BinSnapshot],
) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    match (registered, in_bin) {
        (Some(image), _) => {
            if image.state == ImageState::Disabled {
                out.push(Step::Enable(image_id.to_string()));
            }
            if image.deprecation_time.is_some() {
                out.push(Step::CancelDeprecation(image_id.to_string()));
            }
        }
        (None, Some(_)) => {
            out.extend(
                bin_snapshots
                    .iter()
                    .filter(|s| s.made_for(image_id))
                    .map(|s| Step::RestoreSnapshot(s.snapshot_id.clone())),
            );
            out.push(Step::RestoreImage(image_id.to_string()));
        }
        (None, None) => return None,
    }
    Some(out)
}

/// Restores the AMIs of one region that are there (registered or in the Recycle Bin); the
/// others are left out (another region may hold them).
pub async fn restore_region<E: RestoreImages + Sync, P: Pace + Sync>(
    ec2: &E,
    pacer: &P,
    region: &Region,
    ids: &[String],
    dry_run: bool,
    deadline: Deadline,
) -> Vec<Restored> {
    let line = |image_id: &str, steps, outcome, error| Restored {
        image_id: image_id.to_string(),
        region: Some(region.clone()),
        steps,
        outcome,
        error,
        missing: Vec::new(),
    };
    // What the region holds; a look-up that fails leaves every AMI of the request unanswered.
    let found = match read_region(ec2, ids).await {
        Ok(found) => found,
        Err(e) => {
            return ids
                .iter()
                .map(|id| line(id, Vec::new(), outcome_of(&e), Some(e.to_string())))
                .collect()
        }
    };

    let mut out = Vec::new();
    for (id, registered) in ids.iter().zip(&found.registered) {
        let binned = found.in_bin.iter().find(|b| &b.image_id == id);
        let Some(steps) = steps(id, registered.as_ref(), binned, &found.bin_snapshots) else {
            continue;
        };
        if steps.is_empty() {
            // Registered and in use: its snapshots are still checked (a restore finished by an
            // earlier request, or one whose snapshots went since).
            // A read: a dry run says what a real run would.
            let undone = line(id, steps, RestoreOutcome::NothingToUndo, None);
            out.push(match registered {
                Some(image) => with_snapshots(ec2, image, undone).await,
                None => undone,
            });
            continue;
        }
        if dry_run {
            out.push(line(id, steps, RestoreOutcome::WouldRestore, None));
            continue;
        }

        let done = carry_out((ec2, pacer), id, steps, registered.clone(), deadline).await;
        out.push(match (done.failure, done.restored) {
            (None, Some(back)) => {
                with_snapshots(
                    ec2,
                    &back,
                    line(id, done.steps, RestoreOutcome::Restored, None),
                )
                .await
            }
            (None, None) => line(id, done.steps, RestoreOutcome::Restored, None),
            (Some((outcome, error)), _) => line(id, done.steps, outcome, Some(error)),
        });
    }
    out
}

/// What a region holds of the request's AMIs: each registered one (or none), those in the
/// Recycle Bin, and the bin's snapshots (read only when an AMI is there).
struct Found {
    registered: Vec<Option<Image>>,
    in_bin: Vec<BinImage>,
    bin_snapshots: Vec<BinSnapshot>,
}

async fn read_region<E: RestoreImages>(ec2: &E, ids: &[String]) -> crate::error::Result<Found> {
    let mut registered = Vec::new();
    for id in ids {
        registered.push(ec2.registered(id).await?);
    }
    let in_bin = ec2.images_in_bin(ids).await?;
    let bin_snapshots = if in_bin.is_empty() {
        Vec::new()
    } else {
        ec2.snapshots_in_bin().await?
    };
    Ok(Found {
        registered,
        in_bin,
        bin_snapshots,
    })
}

/// The steps carried out (with those a restored AMI added), why they stopped if they did, and
/// the AMI as it is now.
struct Done {
    steps: Vec<Step>,
    failure: Option<(RestoreOutcome, String)>,
    restored: Option<Image>,
}

/// Carries out one AMI's steps in order, until one fails or the deadline comes.
async fn carry_out<E: RestoreImages, P: Pace>(
    (ec2, pacer): (&E, &P),
    id: &str,
    mut steps: Vec<Step>,
    registered: Option<Image>,
    deadline: Deadline,
) -> Done {
    let mut failure = None;
    let mut restored = registered;
    let mut snapshots_pending = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let step = steps[i].clone();
        i += 1;
        if deadline.passed() {
            failure = Some((RestoreOutcome::Deferred, "the run's deadline".to_string()));
            break;
        }
        // EC2 restores an AMI only once its snapshots are available again.
        if matches!(step, Step::RestoreImage(_)) && !snapshots_pending.is_empty() {
            let why = format!(
                "its snapshots ({}) are back but not yet available: send the same request again to restore the AMI",
                snapshots_pending.join(", ")
            );
            failure = Some((RestoreOutcome::Deferred, why));
            break;
        }

        pacer.take().await;
        if let Err(e) = take_step(ec2, &step, &mut snapshots_pending).await {
            tracing::warn!(image_id = %id, ?step, error = %e, "restore step failed");
            failure = Some((outcome_of(&e), e.to_string()));
            break;
        }
        // Back from the bin as it went in: a disabled or deprecated AMI is undone too.
        if let Step::RestoreImage(image) = &step {
            match seen_back(ec2, image).await {
                Ok(back) => {
                    steps.extend(self::steps(image, Some(&back), None, &[]).unwrap_or_default());
                    restored = Some(back);
                }
                Err(why) => {
                    failure = Some(why);
                    break;
                }
            }
        }
    }
    Done {
        steps,
        failure,
        restored,
    }
}

/// One step through EC2; a snapshot still being restored is noted in `pending`.
async fn take_step<E: RestoreImages>(
    ec2: &E,
    step: &Step,
    pending: &mut Vec<String>,
) -> crate::error::Result<()> {
    match step {
        Step::RestoreSnapshot(s) => ec2.restore_snapshot(s).await.map(|state| {
            if state != "completed" {
                pending.push(s.clone());
            }
        }),
        Step::RestoreImage(image) => ec2.restore_image(image).await,
        Step::Enable(image) => ec2.enable(image).await,
        Step::CancelDeprecation(image) => ec2.cancel_deprecation(image).await,
    }
}

/// The AMI as EC2 lists it after its restore. EC2's reads may lag its writes: "restored" only
/// once it is seen.
async fn seen_back<E: RestoreImages>(
    ec2: &E,
    image: &str,
) -> std::result::Result<Image, (RestoreOutcome, String)> {
    match ec2.registered(image).await {
        Ok(Some(back)) => Ok(back),
        Ok(None) => Err((
            RestoreOutcome::Deferred,
            format!("{image} was restored and EC2 does not list it yet: send the same request again to finish"),
        )),
        Err(e) => Err((outcome_of(&e), e.to_string())),
    }
}

/// The line of a registered AMI whose steps are done, once its snapshots are checked:
/// `partial` when the account lacks some of them (it cannot launch), the check's error when
/// they could not be read.
async fn with_snapshots<E: RestoreImages>(ec2: &E, image: &Image, line: Restored) -> Restored {
    match ec2.missing_snapshots(&image.snapshot_ids).await {
        Ok(missing) if missing.is_empty() => line,
        Ok(missing) => Restored {
            outcome: RestoreOutcome::Partial,
            error: Some(format!(
                "the AMI is back, and {} of its snapshots are not ({}): it cannot launch until they are (restore them from the Recycle Bin if it still holds them)",
                missing.len(),
                missing.join(", ")
            )),
            missing,
            ..line
        },
        Err(e) => Restored {
            outcome: outcome_of(&e),
            error: Some(format!("its snapshots could not be checked: {e}")),
            ..line
        },
    }
}

fn outcome_of(e: &crate::error::Error) -> RestoreOutcome {
    match e.disposition() {
        Disposition::Deferred => RestoreOutcome::Deferred,
        Disposition::Failed => RestoreOutcome::Failed,
    }
}

/// Merges the regions' answers: each AMI once, `not_found` for an AMI no region holds.
pub fn merge(ids: &[String], by_region: Vec<Vec<Restored>>) -> Vec<Restored> {
    let all: Vec<Restored> = by_region.into_iter().flatten().collect();
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|r| &r.image_id == id)
                .cloned()
                .unwrap_or(Restored {
                    image_id: id.clone(),
                    region: None,
                    steps: Vec::new(),
                    outcome: RestoreOutcome::NotFound,
                    error: None,
                    missing: Vec::new(),
                })
        })
        .collect()
}

/// `AMI Restored`, for each AMI given back.
pub fn events(results: &[Restored]) -> Vec<Event> {
    results
        .iter()
        .filter(|r| r.outcome == RestoreOutcome::Restored)
        .map(|r| {
            let resources = r
                .region
                .as_ref()
                .map(|region| vec![region.image_arn(&r.image_id)])
                .unwrap_or_default();
            event(
                detail_type::AMI_RESTORED,
                resources,
                serde_json::to_value(r).unwrap_or_default(),
            )
        })
        .collect()
}

/// Restores `ids` in every region of the request, concurrently.
pub async fn run<C: crate::ports::Cloud>(
    ctx: &crate::jobs::Context<'_, C>,
    ids: &[String],
    regions: &[Region],
    dry_run: bool,
) -> Vec<Restored> {
    let runs = regions.iter().map(|region| {
        let ec2 = ctx.cloud.ec2(region);
        let pacer = ctx.cloud.pacer();
        async move { restore_region(&ec2, &pacer, region, ids, dry_run, ctx.deadline).await }
    });
    merge(ids, futures::future::join_all(runs).await)
}
