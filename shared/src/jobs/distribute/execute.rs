//! The distribution through the ports: a sweep queues sealed units; a unit assumes the target
//! role and serves one account in one region (copies, then parameters, then retirement).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::plan::{self, Want};
use super::{checks, launch_templates};
use super::{Action, DistributeLine, Outcome, Unit};
use crate::domain::ids::{AccountId, Region};
use crate::domain::model::ImageState;
use crate::domain::policy::{PolicyDocument, TemplateDepth};
use crate::domain::{seal, tags};

pub use super::sweep::sweep;
use crate::jobs::copies::{client_token, step, CopyKey, Step};
use crate::jobs::Context;
use crate::ports::{
    Accounts, Cloud, CopyImages, ImageInventory, Parameters, RetireImages, Seal, TargetAccount,
    IMAGE_REFERENCES_MAX_IDS, PARAMETER_VALIDATING,
};

/// Copies into an account made again after EC2 failed them, before a person must look.
const MAX_ATTEMPTS: u32 = 3;

/// Why a queued unit is not acted on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Never: its seal does not hold, or it expired (deleted from the queue).
    Refuse(String),
    /// Not yet: KMS could not check its seal (delivered again).
    Retry(String),
}

/// Why a queued unit is not acted on, if it is not: its seal does not hold (or cannot be
/// checked now), or it expired.
pub async fn check<C: Cloud>(cloud: &C, unit: &Unit, now: DateTime<Utc>) -> Option<Rejection> {
    check_seal(cloud, unit, now).await.map(|r| match r {
        Err(why) => Rejection::Retry(why),
        Ok(why) => Rejection::Refuse(why),
    })
}

async fn check_seal<C: Cloud>(
    cloud: &C,
    unit: &Unit,
    now: DateTime<Utc>,
) -> Option<std::result::Result<String, String>> {
    if unit.expires <= now {
        return Some(Ok(format!(
            "the unit expired at {}: the next sweep queues it again",
            unit.expires.to_rfc3339()
        )));
    }
    if unit.expires > now + seal::UNIT_LIFETIME + chrono::Duration::minutes(5) {
        return Some(Ok(
            "the unit claims a lifetime no unit of the stack has".into()
        ));
    }
    let Some(sealer) = cloud.sealer() else {
        return Some(Ok(
            "the deployment names no signing key: no unit is accepted".into(),
        ));
    };
    let message = seal::unit(
        unit.account.as_str(),
        unit.region.as_str(),
        unit.organizational_unit.as_deref().unwrap_or_default(),
        unit.dry_run,
        unit.expires,
    );
    match sealer.verify(message, &unit.seal).await {
        Ok(true) => None,
        Ok(false) => Some(Ok(
            "its seal does not verify: the stack did not queue it".into()
        )),
        Err(e) => Some(Err(format!("its seal could not be checked now: {e}"))),
    }
}

/// Serves one account in one region: its copies, then its parameters, then the copies whose
/// source left circulation.
pub async fn unit<C: Cloud + Accounts>(
    ctx: &Context<'_, C>,
    unit: &Unit,
    now: DateTime<Utc>,
) -> Vec<DistributeLine> {
    let (account, region, dry_run) = (&unit.account, &unit.region, unit.dry_run);
    let mut head = DistributeLine::new(account, region, Action::Unit);
    head.organizational_unit = unit.organizational_unit.clone();
    let mut lines = Vec::new();
    let ou = checks::still_in(ctx.cloud, unit, &mut lines).await;
    let sources = match crate::jobs::proof::scan(ctx.cloud, ctx.document, region).await {
        Ok(images) => images,
        Err(e) => {
            let why = format!("the source AMIs could not be read: {e}");
            lines.push(head.with(Outcome::Failed, why));
            return lines;
        }
    };
    let target = match ctx.cloud.assume(account).await {
        Ok(t) => t,
        Err(e) => {
            let why = format!("the target role could not be assumed: {e}");
            lines.push(head.with(Outcome::Failed, why));
            return lines;
        }
    };

    let ec2 = target.ec2(region);
    let owned = match ec2.images(None).await {
        Ok(images) => images,
        Err(e) => {
            let why = format!("the account's AMIs could not be read: {e}");
            lines.push(head.with(Outcome::Failed, why));
            return lines;
        }
    };

    let wants = plan::wanted(ctx.document, &sources, (account, ou), now);
    let on = On {
        account,
        region,
        dry_run,
        now,
    };
    let params = target.parameters(region);
    let mut named = Vec::new();
    for want in &wants {
        let id = match &want.target.copy {
            Some(_) => {
                let seal = copy_seal(ctx.cloud, &on, &want.image.id).await;
                own_copy(&ec2, &owned, (want, seal.as_deref()), &on, &mut lines).await
            }
            None => Some(want.image.id.clone()),
        };
        publish(&params, want, &on, id.clone(), &mut lines).await;
        named.push(id);
    }
    launch_templates::publish(&ec2, (&wants, &named), &on, &mut lines).await;

    let keep: BTreeSet<String> = wants.iter().map(|w| w.image.id.clone()).collect();
    let orphans = plan::orphaned(&owned, &sources, &keep, region, now);
    let orphans = checks::restorable(ctx.cloud, orphans, &on, &mut lines).await;
    let orphans = proven(ctx.cloud, orphans, &on, &mut lines).await;
    retire(&ec2, (ctx.document, orphans), &on, &mut lines).await;
    lines
}

/// The seal a copy made now carries, when the deployment has a key.
async fn copy_seal<C: Cloud>(cloud: &C, on: &On<'_>, source: &str) -> Option<String> {
    let sealer = cloud.sealer()?;
    let message = seal::distributed(on.account.as_str(), on.region.as_str(), source);
    sealer.seal(message).await.ok()
}

/// The orphans whose seal proves the stack made them; a line (kept) for each other one.
async fn proven<'a, C: Cloud>(
    cloud: &C,
    orphans: Vec<plan::Orphan<'a>>,
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) -> Vec<plan::Orphan<'a>> {
    let sealer = cloud.sealer();
    let mut out = Vec::new();
    for (copy, how, why) in orphans {
        let source = copy
            .tags
            .get(tags::SOURCE_IMAGE)
            .cloned()
            .unwrap_or_default();
        let message = seal::distributed(on.account.as_str(), on.region.as_str(), &source);
        let verified = match (sealer.as_ref(), copy.tags.get(tags::DISTRIBUTED_SEAL)) {
            (Some(s), Some(tag)) => s.verify(message, tag).await.unwrap_or(false),
            _ => false,
        };
        if verified {
            out.push((copy, how, why));
            continue;
        }
        let mut line = DistributeLine::new(on.account, on.region, Action::Retire);
        line.image_id = Some(copy.id.clone());
        line.source_image_id = Some(source);
        let kept = format!("{why}, but no seal of the stack proves it made this copy (its tags alone prove nothing): kept");
        lines.push(line.with(Outcome::Kept, kept));
    }
    out
}

/// Where a unit acts.
pub(super) struct On<'a> {
    pub(super) account: &'a AccountId,
    pub(super) region: &'a Region,
    pub(super) dry_run: bool,
    pub(super) now: DateTime<Utc>,
}

impl On<'_> {
    pub(super) fn line(&self, want: &Want<'_>, action: Action) -> DistributeLine {
        let mut line = DistributeLine::new(self.account, self.region, action);
        line.policy = want.policy.name.clone();
        line.family = want.family.clone();
        line.source_image_id = Some(want.image.id.clone());
        line
    }
}

/// The target's copy of the want's AMI, found or made; its id once it is available (what the
/// parameters name), else none.
async fn own_copy<E: CopyImages + RetireImages>(
    ec2: &E,
    owned: &[crate::domain::model::Image],
    (want, seal): (&Want<'_>, Option<&str>),
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) -> Option<String> {
    let base = on.line(want, Action::Copy);
    let found = plan::copies_of(owned, &want.image.id, on.region);
    if let Some(off) = found.iter().find(|c| c.state == ImageState::Disabled) {
        let why = format!(
            "the account disabled its copy {}: enable it, or deregister it for a new copy",
            off.image_id
        );
        lines.push(base.with(Outcome::Refused, why));
        return None;
    }
    let available = found
        .iter()
        .find(|c| c.state == ImageState::Available)
        .map(|c| c.image_id.clone());
    let (attempt, failed) = match step(found) {
        Step::Exists(id) => {
            let mut l = base.with(Outcome::Unchanged, None);
            l.image_id = Some(id);
            lines.push(l);
            return available;
        }
        Step::Copy { attempt, failed } => (attempt, failed),
    };
    if attempt > MAX_ATTEMPTS {
        let why = format!("EC2 failed {} copies in the account: see the failed copies' StateReason (a KMS key the account cannot use?); deregister them to try again", attempt - 1);
        lines.push(base.with(Outcome::Refused, why));
        return None;
    }
    if on.dry_run {
        lines.push(base.with(
            Outcome::Planned,
            "it would be copied into the account".to_string(),
        ));
        return None;
    }

    lines.push(make_copy(ec2, (want, seal), on, attempt, &failed, base).await);
    None
}

/// Deregisters the failed copies (they hold the name), then CopyImage into the account.
async fn make_copy<E: CopyImages + RetireImages>(
    ec2: &E,
    (want, seal): (&Want<'_>, Option<&str>),
    on: &On<'_>,
    attempt: u32,
    failed: &[crate::domain::model::CopyFound],
    base: DistributeLine,
) -> DistributeLine {
    for f in failed {
        if let Err(e) = ec2.deregister(&f.image_id).await {
            if !e.is_not_found() {
                let why = format!(
                    "the failed copy {} could not be deregistered: {e}",
                    f.image_id
                );
                return base.with(Outcome::Failed, why);
            }
        }
    }

    let how = plan::copy_how(want.target);
    let token = client_token(&CopyKey {
        source: &want.image.id,
        source_region: on.region,
        destination: on.region,
        name: &want.image.name,
        how: &how,
        attempt,
    });
    let tags = plan::copy_tags(want, on.region, attempt, seal);
    let made = ec2
        .copy_image(
            &want.image.id,
            on.region,
            &want.image.name,
            &how,
            &token,
            &tags,
        )
        .await;
    match made {
        Ok(id) => {
            let mut l = base.with(Outcome::Started, None);
            l.image_id = Some(id);
            l
        }
        Err(e) => base.with(
            Outcome::Failed,
            format!("CopyImage in the account failed: {e}"),
        ),
    }
}

/// The want's SSM parameters in the target name `named` (its copy, or the shared AMI); none
/// yet while the copy is pending.
async fn publish<P: Parameters>(
    params: &P,
    want: &Want<'_>,
    on: &On<'_>,
    named: Option<String>,
    lines: &mut Vec<DistributeLine>,
) {
    for name in plan::parameters(want, on.region) {
        let mut base = on.line(want, Action::Publish);
        base.parameter = Some(name.clone());
        base.image_id = named.clone();
        let Some(image_id) = &named else {
            let why = "its copy is not available yet: the next sweep publishes it".to_string();
            lines.push(base.with(Outcome::Waiting, why));
            continue;
        };
        let line = match params.parameter(&name).await {
            Err(e) => base.with(Outcome::Failed, format!("GetParameter failed: {e}")),
            Ok(Some(p)) if p.value == *image_id => base.with(Outcome::Unchanged, None),
            Ok(Some(p)) if !p.holds_images() => base.with(
                Outcome::Refused,
                format!("it is a {} of data type {}: publishing writes only a String of data type aws:ec2:image (SSM never changes a parameter's type)", p.kind, p.data_type),
            ),
            Ok(_) if on.dry_run => base.with(Outcome::Planned, None),
            Ok(_) => match params.put_image_parameter(&name, image_id).await {
                Ok(_) => base.with(Outcome::Published, None),
                Err(e) if e.code() == Some(PARAMETER_VALIDATING) => base.with(
                    Outcome::Waiting,
                    "SSM is still validating the parameter's previous update: the next sweep writes it".to_string(),
                ),
                Err(e) => base.with(Outcome::Failed, format!("PutParameter failed: {e}")),
            },
        };
        lines.push(line);
    }
}

/// Retires the target's copies whose source left circulation (deregistered with their
/// snapshots, or deprecated for a recall), once nothing in the account uses them: neither
/// DescribeImageReferences (instances, launch template versions as deep as
/// [`plan::in_use_depth`], SSM parameters, recipes) nor, below every version, a template's
/// `$Default`, which DescribeImageReferences' depth (counted from the newest) may not reach;
/// kept when something does or when it cannot tell.
async fn retire<E: ImageInventory + RetireImages>(
    ec2: &E,
    (document, orphans): (&PolicyDocument, Vec<plan::Orphan<'_>>),
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) {
    let depth = plan::in_use_depth(document);
    let templates = match depth {
        _ if orphans.is_empty() => Ok(HashMap::new()),
        TemplateDepth::All => Ok(HashMap::new()),
        _ => ec2.template_usage(depth).await,
    };
    for chunk in orphans.chunks(IMAGE_REFERENCES_MAX_IDS) {
        retire_chunk(ec2, (chunk, depth, &templates), on, lines).await;
    }
}

/// One DescribeImageReferences call's worth of copies (at most 10).
async fn retire_chunk<E: ImageInventory + RetireImages>(
    ec2: &E,
    (chunk, depth, templates): (
        &[plan::Orphan<'_>],
        TemplateDepth,
        &crate::error::Result<TemplateUses>,
    ),
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) {
    let ids: Vec<String> = chunk.iter().map(|(i, ..)| i.id.clone()).collect();
    let references = ec2.image_references(&ids, depth).await;
    for (copy, how, why) in chunk {
        let mut line = DistributeLine::new(on.account, on.region, Action::Retire);
        line.image_id = Some(copy.id.clone());
        line.source_image_id = copy.tags.get(tags::SOURCE_IMAGE).cloned();
        line.policy = copy
            .tags
            .get(tags::SOURCE_POLICY)
            .cloned()
            .unwrap_or_default();
        let used = users(&copy.id, &references, templates).map(|found| match found {
            Err(e) => format!("{why}, but what uses it in the account is unknown ({e}): kept"),
            Ok(users) => format!(
                "{why}, but it is in use in the account: {}",
                users.join(", ")
            ),
        });
        lines.push(match used {
            Some(kept) => line.with(Outcome::Kept, kept),
            None if on.dry_run => line.with(
                Outcome::Planned,
                format!(
                    "{why}: {} (dry run)",
                    verb(*how).replace(" is ", " would be ")
                ),
            ),
            None => act(ec2, copy, *how, on).await.map_or_else(
                |e| {
                    line.clone()
                        .with(Outcome::Failed, format!("{} failed: {e}", verb(*how)))
                },
                |()| {
                    line.clone()
                        .with(Outcome::Retired, format!("{why}: {}", verb(*how)))
                },
            ),
        });
    }
}

/// Image id → the launch template versions that name it.
type TemplateUses = HashMap<String, Vec<crate::domain::model::TemplateUse>>;

/// What uses `id` in the account (none: nothing), or why that is unknown.
fn users(
    id: &str,
    references: &crate::error::Result<HashMap<String, BTreeSet<String>>>,
    templates: &crate::error::Result<TemplateUses>,
) -> Option<std::result::Result<Vec<String>, String>> {
    let (references, templates) = match (references, templates) {
        (Err(e), _) | (_, Err(e)) => return Some(Err(e.to_string())),
        (Ok(r), Ok(t)) => (r, t),
    };
    let mut found: Vec<String> = references.get(id).into_iter().flatten().cloned().collect();
    for used in templates.get(id).into_iter().flatten() {
        let name = used.to_string();
        if !found.contains(&name) {
            found.push(name);
        }
    }
    (!found.is_empty()).then_some(Ok(found))
}

fn verb(how: plan::Retirement) -> &'static str {
    match how {
        plan::Retirement::Deregister => "the copy is deregistered with its snapshots",
        plan::Retirement::Deprecate => "the copy is deprecated",
    }
}

/// Deregisters (an image already gone is retired) or deprecates at the next minute.
async fn act<E: RetireImages>(
    ec2: &E,
    copy: &crate::domain::model::Image,
    how: plan::Retirement,
    on: &On<'_>,
) -> crate::error::Result<()> {
    match how {
        plan::Retirement::Deregister => match ec2.deregister(&copy.id).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        },
        plan::Retirement::Deprecate => {
            ec2.deprecate(&copy.id, on.now + chrono::Duration::minutes(1))
                .await
        }
    }
}
