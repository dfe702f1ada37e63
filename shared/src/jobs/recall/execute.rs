//! Carrying out a recall: read every region's images, find the tree, read what uses each of
//! its images, then take each image's steps (or, for a dry run, say them).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};

use super::affected::{affected, key, Affected};
use super::plan::{self, Step};
use super::tree::{tree, Descent, Located, Member};
use super::{RecallLine, RecallOutcome};
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::trigger::RecallRequest;
use crate::domain::{seal, tags};
use crate::error::{Disposition, Error, Result};
use crate::jobs::{Context, PAST_DEADLINE};
use crate::ports::{Cloud, Pace, RestoreImages, RetireImages, Seal, ValidateImages};

/// Recalls (or undoes the recall of) the tree under `recall.image_id` in `regions`. A recall
/// whose tree is empty is refused, naming the field; a region that cannot be read is a line
/// of its own. Without the stack's key nothing is recalled, dry run or not (a dry run says
/// what the real run does).
pub async fn run<C: Cloud>(
    ctx: &Context<'_, C>,
    recall: &RecallRequest,
    regions: &[Region],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Vec<RecallLine>> {
    let sealer = ctx.cloud.sealer();
    if sealer.is_none() {
        return Err(Error::Refused(
            "no signing key (AMI_SIGNING_KEY_ARN): a recall's marks must carry the stack's seal, and its undo believes only sealed marks, so nothing is done"
                .into(),
        ));
    }
    let (images, mut lines) = read_regions(ctx, recall, regions).await;
    let members = tree(&recall.image_id, &images);
    if members.is_empty() {
        if lines.is_empty() {
            return Err(not_found(recall, regions));
        }
        return Ok(lines);
    }

    let affected = affected(ctx, &members, !dry_run && !recall.undo, now).await;
    let images_by_key = by_key(&images);
    for member in members {
        // Every member was found among `images`; one that is not is no image to act on.
        let Some(image) = images_by_key.get(&key(&member)).copied() else {
            continue;
        };
        let mut found = affected.get(&key(&member)).cloned().unwrap_or_default();
        let own = format!("{}:", image.owner_id);
        found.other_accounts.retain(|a| !a.starts_with(&own));
        let (line, set) = plan_line(recall, member, image, found, now);
        let line = match (dry_run, line.steps.is_empty()) {
            (true, _) | (_, true) => line,
            (false, false) if ctx.deadline.passed() => deferred(line, PAST_DEADLINE.into()),
            (false, false) => {
                let doing = Doing { recall, image, set };
                carry_out(ctx, sealer.as_ref(), doing, line).await
            }
        };
        lines.push(line);
    }
    Ok(lines)
}

/// Every region's images, the stack's marks proven; a line for each region that could not
/// be read (its part of the tree is unknown: the same request, run again, finds it).
async fn read_regions<C: Cloud>(
    ctx: &Context<'_, C>,
    recall: &RecallRequest,
    regions: &[Region],
) -> (Vec<Located>, Vec<RecallLine>) {
    let reads = regions.iter().map(|region| async move {
        let found = crate::jobs::proof::scan(ctx.cloud, ctx.document, region).await;
        (region.clone(), found)
    });
    let mut images = Vec::new();
    let mut lines = Vec::new();
    for (region, found) in futures::future::join_all(reads).await {
        match found {
            Ok(found) => images.extend(found.into_iter().map(|i| (region.clone(), i))),
            Err(e) => lines.push(unread_region(recall, region, &e)),
        }
    }
    (images, lines)
}

fn unread_region(recall: &RecallRequest, region: Region, e: &Error) -> RecallLine {
    let member = Member {
        image_id: recall.image_id.clone(),
        region,
        name: String::new(),
        depth: 0,
        descent: Descent::Recalled,
        parent: None,
        by_tags: false,
    };
    let line = RecallLine {
        member,
        steps: Vec::new(),
        outcome: RecallOutcome::Failed,
        used_by: Vec::new(),
        other_accounts: Vec::new(),
        usage_report: None,
        note: Some("the region's images could not be listed: its part of the tree is unknown; send the same request again".into()),
        error: Some(e.to_string()),
    };
    match e.disposition() {
        Disposition::Deferred => deferred(line, e.to_string()),
        Disposition::Failed => line,
    }
}

fn not_found(recall: &RecallRequest, regions: &[Region]) -> Error {
    let regions: Vec<&str> = regions.iter().map(Region::as_str).collect();
    Error::event(
        "$.recall.image_id",
        format!(
            "neither {} nor an image made from it is an AMI of this account in {}: nothing recalled (name the bad AMI, and the regions to look in with `regions`)",
            recall.image_id,
            regions.join(", ")
        ),
    )
}

/// The tree's images by `(id, region)`, read once.
fn by_key(images: &[Located]) -> HashMap<(String, String), &Image> {
    images
        .iter()
        .map(|(r, i)| ((i.id.clone(), r.to_string()), i))
        .collect()
}

/// The line of one image, its steps and what a dry run says of them, and the set of changes
/// its mark records. A disable waits while something launches the image (or that could not be
/// read).
fn plan_line(
    recall: &RecallRequest,
    member: Member,
    image: &Image,
    found: Affected,
    now: DateTime<Utc>,
) -> (RecallLine, Vec<String>) {
    if let Some((outcome, why)) = not_acted_on(&member, image) {
        let line = RecallLine {
            member,
            steps: Vec::new(),
            outcome,
            used_by: found.used_by,
            other_accounts: found.other_accounts,
            usage_report: found.report,
            note: Some(why),
            error: None,
        };
        return (line, Vec::new());
    }
    let waits = found.unread || !found.launched_by.is_empty();
    let (steps, set) = if recall.undo {
        (plan::undo_steps(image, &recall.image_id, now), Vec::new())
    } else {
        plan::recall_steps(image, recall.disable && !waits, now)
    };
    let mut note = found
        .unread
        .then(|| "what uses it could not be read (DescribeImageReferences)".to_string());
    let other_recall = image
        .tags
        .get(tags::RECALL_OF)
        .filter(|of| image.recall_proven() && **of != recall.image_id);
    if let (Some(of), false) = (other_recall, recall.undo) {
        note = Some(format!(
            "out of circulation already by the recall of {of}: undoing that recall gives it back too"
        ));
    }
    if recall.disable && !recall.undo && waits && image.state != ImageState::Disabled {
        note = Some(format!(
            "not disabled yet: {} launch it; send the same request again once ami-publish has rolled them back",
            if found.unread { "consumers that could not be read may".to_string() } else { found.launched_by.join(", ") }
        ));
    }
    let outcome = match (recall.undo, steps.is_empty()) {
        (false, true) => RecallOutcome::AlreadyRecalled,
        (false, false) => RecallOutcome::WouldRecall,
        (true, true) => RecallOutcome::NothingToUndo,
        (true, false) => RecallOutcome::WouldUndo,
    };
    let line = RecallLine {
        member,
        steps,
        outcome,
        used_by: found.used_by,
        other_accounts: found.other_accounts,
        usage_report: found.report,
        note,
        error: None,
    };
    (line, set)
}

/// Why a member of the tree is listed and not acted on: a link to the recalled AMI only its
/// tags claim (anyone who may tag can write them), or a mark whose seal KMS could not check.
fn not_acted_on(member: &Member, image: &Image) -> Option<(RecallOutcome, String)> {
    if member.by_tags {
        return Some((
            RecallOutcome::Unconfirmed,
            "it descends from the recalled AMI only by lineage tags (EC2 records no source): confirm, and recall it by its own id".into(),
        ));
    }
    if image.tags.get(tags::RECALLED).map(String::as_str) == Some(tags::UNCHECKED) {
        return Some((
            RecallOutcome::Deferred,
            "the seal of its recall mark could not be checked (KMS did not answer): send the same request again".into(),
        ));
    }
    None
}

fn deferred(mut line: RecallLine, why: String) -> RecallLine {
    line.outcome = RecallOutcome::Deferred;
    line.error = Some(why);
    line
}

/// What one image's steps act on: the request, the image as read, and the set of changes its
/// mark records.
struct Doing<'a> {
    recall: &'a RecallRequest,
    image: &'a Image,
    set: Vec<String>,
}

/// Takes the line's steps in order; the first that fails ends it (the same request, sent
/// again, takes what is left). Times are the wall clock when each call is made.
async fn carry_out<C: Cloud>(
    ctx: &Context<'_, C>,
    sealer: Option<&C::Sealer>,
    doing: Doing<'_>,
    mut line: RecallLine,
) -> RecallLine {
    let ec2 = ctx.cloud.ec2(&line.member.region);
    let pacer = ctx.cloud.pacer();
    let id = &doing.image.id;
    for step in line.steps.clone() {
        pacer.take().await;
        let done = match step {
            Step::Mark => mark(&ec2, sealer, &doing, line.member.region.as_str()).await,
            Step::Deprecate => ec2.deprecate(id, plan::deprecate_at(Utc::now())).await,
            Step::Disable => ec2.disable(id).await,
            Step::Enable => ec2.enable(id).await,
            Step::CancelDeprecation => ec2.cancel_deprecation(id).await,
            Step::RestoreDeprecation => match plan::deprecation_was(doing.image) {
                Some(at) => ec2.deprecate(id, at).await,
                None => Ok(()),
            },
            Step::Unmark => ec2.untag_image(id, &tags::RECALL_TAGS).await,
        };
        if let Err(e) = done {
            line.outcome = match e.disposition() {
                Disposition::Deferred => RecallOutcome::Deferred,
                Disposition::Failed => RecallOutcome::Failed,
            };
            line.error = Some(format!("{step:?}: {e}"));
            return line;
        }
    }
    line.outcome = if doing.recall.undo {
        RecallOutcome::Undone
    } else {
        RecallOutcome::Recalled
    };
    line
}

/// The recall's marks: the recalled AMI, the reason, what this recall changes, and the seal
/// over them (an earlier mark of the stack keeps its `recall-of` and reason).
async fn mark<E: ValidateImages>(
    ec2: &E,
    sealer: Option<&impl Seal>,
    doing: &Doing<'_>,
    region: &str,
) -> Result<()> {
    let Some(sealer) = sealer else {
        return Err(Error::Refused(
            "no signing key: a recall's mark must be sealed".into(),
        ));
    };
    let image = doing.image;
    let earlier = image.recall_proven();
    let recall_of = match image.tags.get(tags::RECALL_OF) {
        Some(of) if earlier => of.clone(),
        _ => doing.recall.image_id.clone(),
    };
    let reason = match image.tags.get(tags::RECALL_REASON) {
        Some(reason) if earlier => reason.clone(),
        _ => doing.recall.reason.clone().unwrap_or_default(),
    };
    let set = doing.set.join(",");
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mac = sealer
        .seal(seal::recall(&image.id, region, &recall_of, &set, &at))
        .await?;
    let marks = BTreeMap::from([
        (tags::RECALLED.to_string(), seal::sealed_tag(&at, &mac)),
        (tags::RECALL_OF.to_string(), recall_of),
        (tags::RECALL_REASON.to_string(), reason),
        (tags::RECALL_SET.to_string(), set),
    ]);
    ec2.tag_image(&image.id, &marks).await
}
