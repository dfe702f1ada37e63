//! Carrying out a recall: read every region's images, find the tree, read what uses each of
//! its images, then take each image's steps (or, for a dry run, say them).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use super::affected::{affected, key, Affected};
use super::plan::{self, Step, SET_DEPRECATION, SET_DISABLE};
use super::tree::{tree, Descent, Located, Member};
use super::{RecallLine, RecallOutcome};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::trigger::RecallRequest;
use crate::domain::{seal, tags};
use crate::error::{Disposition, Error, Result};
use crate::jobs::{Context, PAST_DEADLINE};
use crate::ports::{Cloud, Pace, RestoreImages, RetireImages, Seal, ValidateImages};

/// Recalls (or undoes the recall of) the tree under `recall.image_id` in `regions`. An AMI no
/// region holds is refused, naming the field; a region that cannot be read is a failed line.
pub async fn run<C: Cloud>(
    ctx: &Context<'_, C>,
    recall: &RecallRequest,
    regions: &[Region],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Vec<RecallLine>> {
    let (images, mut lines) = read_regions(ctx, recall, regions).await;
    let Some(root) = images
        .iter()
        .find(|(_, i)| i.id == recall.image_id)
        .map(|(r, _)| r.clone())
    else {
        if lines.is_empty() {
            return Err(not_found(recall, regions));
        }
        return Ok(lines);
    };

    let members = tree((&recall.image_id, &root), &images);
    let affected = affected(ctx, &members, !dry_run && !recall.undo, now).await;
    let sealer = ctx.cloud.sealer();
    if !dry_run && !recall.undo && sealer.is_none() {
        return Err(Error::Refused(
            "no signing key (AMI_SIGNING_KEY_ARN): a recall's marks must carry the stack's seal, so nothing is recalled"
                .into(),
        ));
    }

    for member in members {
        let image = image_of(&images, &member);
        let mut found = affected.get(&key(&member)).cloned().unwrap_or_default();
        found
            .other_accounts
            .retain(|a| !a.starts_with(&format!("{}:", image.owner_id)));
        let line = plan_line(recall, member, image, found, now);
        let line = match (dry_run, line.steps.is_empty()) {
            (true, _) | (_, true) => line,
            (false, false) if ctx.deadline.passed() => deferred(line, PAST_DEADLINE.into()),
            (false, false) => carry_out(ctx, sealer.as_ref(), recall, image, line, now).await,
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
            "{} is not an AMI of this account in {}: nothing recalled (name one of the account's AMIs, and its region in `regions`)",
            recall.image_id,
            regions.join(", ")
        ),
    )
}

fn image_of<'a>(images: &'a [Located], member: &Member) -> &'a Image {
    images
        .iter()
        .find(|(r, i)| i.id == member.image_id && *r == member.region)
        .map(|(_, i)| i)
        .expect("a member of the tree is one of the images it was found among")
}

/// The line of one image: its steps and what a dry run says of them. A disable waits while a
/// launch template or SSM parameter names the image (or that could not be read).
fn plan_line(
    recall: &RecallRequest,
    member: Member,
    image: &Image,
    found: Affected,
    now: DateTime<Utc>,
) -> RecallLine {
    let Affected {
        used_by,
        unread,
        other_accounts,
        report,
    } = found;
    let mut steps = if recall.undo {
        plan::undo_steps(image, &recall.image_id)
    } else {
        plan::recall_steps(image, recall.disable, now)
    };
    let mut note =
        unread.then(|| "what uses it could not be read (DescribeImageReferences)".to_string());
    let named: Vec<&String> = used_by
        .iter()
        .filter(|r| plan::names_it_for_launches(r))
        .collect();
    if steps.contains(&Step::Disable) && (unread || !named.is_empty()) {
        steps.retain(|s| *s != Step::Disable);
        note = Some(format!(
            "not disabled yet: {} still name it; send the same request again once ami-publish has rolled them back",
            if unread { "consumers that could not be read may".to_string() } else { format!("{named:?}") }
        ));
    }
    let outcome = match (recall.undo, steps.is_empty()) {
        (false, true) => RecallOutcome::AlreadyRecalled,
        (false, false) => RecallOutcome::WouldRecall,
        (true, true) => RecallOutcome::NothingToUndo,
        (true, false) => RecallOutcome::WouldUndo,
    };
    RecallLine {
        member,
        steps,
        outcome,
        used_by,
        other_accounts,
        usage_report: report,
        note,
        error: None,
    }
}

fn deferred(mut line: RecallLine, why: String) -> RecallLine {
    line.outcome = RecallOutcome::Deferred;
    line.error = Some(why);
    line
}

/// Takes the line's steps in order; the first that fails ends it (the same request, sent
/// again, takes what is left).
async fn carry_out<C: Cloud>(
    ctx: &Context<'_, C>,
    sealer: Option<&C::Sealer>,
    recall: &RecallRequest,
    image: &Image,
    mut line: RecallLine,
    now: DateTime<Utc>,
) -> RecallLine {
    let ec2 = ctx.cloud.ec2(&line.member.region);
    let pacer = ctx.cloud.pacer();
    for step in line.steps.clone() {
        pacer.take().await;
        let done = match step {
            Step::Mark => mark(&ec2, sealer, recall, image, &line, now).await,
            Step::Deprecate => ec2.deprecate(&image.id, plan::deprecate_at(now)).await,
            Step::Disable => disable(&ec2, image, line.steps.contains(&Step::Mark)).await,
            Step::Enable => ec2.enable(&image.id).await,
            Step::CancelDeprecation => ec2.cancel_deprecation(&image.id).await,
            Step::Unmark => ec2.untag_image(&image.id, &tags::RECALL_TAGS).await,
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
    line.outcome = if recall.undo {
        RecallOutcome::Undone
    } else {
        RecallOutcome::Recalled
    };
    line
}

/// The recall's marks: sealed, with the recalled AMI, the reason and what this recall sets.
async fn mark<E: ValidateImages>(
    ec2: &E,
    sealer: Option<&impl Seal>,
    recall: &RecallRequest,
    image: &Image,
    line: &RecallLine,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(sealer) = sealer else {
        return Err(Error::Refused(
            "no signing key: a recall's mark must be sealed".into(),
        ));
    };
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let region = line.member.region.as_str();
    let mac = sealer
        .seal(seal::recall(&image.id, region, &recall.image_id, &at))
        .await?;
    let mut set = plan::recall_set(image);
    for (step, what) in [
        (Step::Deprecate, SET_DEPRECATION),
        (Step::Disable, SET_DISABLE),
    ] {
        if line.steps.contains(&step) && !set.contains(&what) {
            set.push(what);
        }
    }
    let marks = BTreeMap::from([
        (tags::RECALLED.to_string(), seal::sealed_tag(&at, &mac)),
        (tags::RECALL_OF.to_string(), recall.image_id.clone()),
        (
            tags::RECALL_REASON.to_string(),
            recall.reason.clone().unwrap_or_default(),
        ),
        (tags::RECALL_SET.to_string(), set.join(",")),
    ]);
    ec2.tag_image(&image.id, &marks).await
}

/// DisableImage, after recording that the recall disabled it (so its undo re-enables it): the
/// mark just written says so already (`marked`); an earlier mark gets it added.
async fn disable<E: ValidateImages + RetireImages>(
    ec2: &E,
    image: &Image,
    marked: bool,
) -> Result<()> {
    let mut set = plan::recall_set(image);
    if !marked && !set.contains(&SET_DISABLE) {
        set.push(SET_DISABLE);
        let record = BTreeMap::from([(tags::RECALL_SET.to_string(), set.join(","))]);
        ec2.tag_image(&image.id, &record).await?;
    }
    ec2.disable(&image.id).await
}
