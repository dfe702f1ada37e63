//! Publishing in a region: reads what each destination names, decides ([`super::targets`]) and
//! writes SSM parameters and launch template versions; a rollback's pin is sealed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::execute::region_failure;
use super::targets::{self, Choice, Destination, Target};
use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::trigger::PublishRequest;
use crate::domain::{seal, tags};
use crate::error::Result;
use crate::jobs::{templates, Context};
use crate::ports::{
    Cloud, LaunchTemplateState, LaunchTemplates, Parameters, Regional, Seal, StoredParameter,
    ValidateImages,
};

/// A rollback's pin on `image_id`, sealed ([`seal::pin`]): the sweep keeps no other pin.
async fn pin_tag<S: Seal>(
    sealer: Option<&S>,
    image_id: &str,
    region: &Region,
    at: &str,
) -> Result<BTreeMap<String, String>> {
    let Some(sealer) = sealer else {
        return Err(crate::error::Error::Refused(
            "no signing key (AMI_SIGNING_KEY_ARN) to seal the pin with".into(),
        ));
    };
    let sealed = sealer
        .seal(seal::pin(image_id, region.as_str(), at))
        .await?;
    Ok(BTreeMap::from([(
        tags::PINNED_AT.to_string(),
        seal::sealed_tag(at, &sealed),
    )]))
}

pub(super) async fn publish_region<C: Cloud>(
    ctx: &Context<'_, C>,
    region: &Region,
    policies: Option<&[String]>,
    pin: Option<&PublishRequest>,
    dry_run: bool,
    now: DateTime<Utc>,
    scanned: Option<Vec<Image>>,
) -> Vec<PublishResult> {
    if !ctx.document.policies.iter().any(|p| p.publish.is_some()) {
        return Vec::new();
    }
    let ec2 = ctx.cloud.ec2(region);
    let params = ctx.cloud.parameters(region);
    let images = match scanned {
        Some(images) => images,
        None => match crate::jobs::proof::scan(ctx.cloud, ctx.document, region).await {
            Ok(images) => images,
            Err(e) => return vec![region_failure(Stage::Publish, region, e)],
        },
    };
    let (work, mut lines) = targets::targets(&images, ctx.document, region, policies, pin, now);
    // A rollback records its pin on the AMI before any destination names it: a pin lost after
    // publishing would let the next sweep publish the newer AMI again.
    if pin.is_some() && !dry_run {
        let mut pinned: Vec<&str> = work.iter().map(|t| t.image.id.as_str()).collect();
        pinned.sort_unstable();
        pinned.dedup();
        // The wall clock, not the request's `as_of`: a pin in the future would hold the family
        // against every new AMI until then.
        let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let sealer = ctx.cloud.sealer();
        for id in pinned {
            let sealed = pin_tag(sealer.as_ref(), id, region, &at).await;
            let written = match sealed {
                Ok(tag) => ec2.tag_image(id, &tag).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                let line = PublishResult::new(
                    Stage::Publish,
                    id,
                    region,
                    &pin.map(|p| p.policy.clone()).unwrap_or_default(),
                );
                lines.push(line.with(
                    e.disposition().into(),
                    format!("the pin could not be recorded, so nothing was published: {e}"),
                ));
                return lines;
            }
        }
    }
    for target in &work {
        lines.push(publish_one(ctx, &ec2, &params, target, &images, dry_run).await);
    }
    lines
}

async fn publish_one<C: Cloud>(
    ctx: &Context<'_, C>,
    ec2: &C::Ec2,
    params: &C::Params,
    target: &Target<'_>,
    images: &[Image],
    dry_run: bool,
) -> PublishResult {
    let mut line = PublishResult::new(
        Stage::Publish,
        &target.image.id,
        ec2.region(),
        &target.policy.name,
    );
    line.family = Some(target.family.clone());
    line.target = Some(target.destination.label());
    line.pinned = target.pinned;
    if ctx.deadline.passed() {
        return line.with(
            PublishOutcome::Deferred,
            crate::jobs::PAST_DEADLINE.to_string(),
        );
    }
    let result = match &target.destination {
        Destination::Parameter(name) => {
            publish_parameter(params, name, target, images, dry_run, &mut line).await
        }
        Destination::Template {
            template,
            set_default,
        } => {
            let how = TemplateUpdate {
                set_default: *set_default,
                dry_run,
            };
            publish_template(ec2, template, how, target, images, &mut line).await
        }
    };
    match result {
        Ok(outcome) => {
            line.outcome = outcome;
            line
        }
        Err(e) => line.with(e.disposition().into(), e.to_string()),
    }
}

fn apply(choice: &Choice, line: &mut PublishResult) -> Option<PublishOutcome> {
    match choice {
        Choice::Unchanged => {
            line.action = "keep";
            Some(PublishOutcome::Unchanged)
        }
        Choice::Keep(why) => {
            line.action = "keep";
            line.reason = Some(why.clone());
            Some(PublishOutcome::Kept)
        }
        Choice::Frozen(why) => {
            line.action = "keep";
            line.reason = Some(why.clone());
            Some(PublishOutcome::Refused)
        }
        Choice::Publish { previous } => {
            line.previous_image_id = previous.clone();
            None
        }
    }
}

async fn publish_parameter<P: Parameters>(
    params: &P,
    name: &str,
    target: &Target<'_>,
    images: &[Image],
    dry_run: bool,
    line: &mut PublishResult,
) -> Result<PublishOutcome> {
    let current = params.parameter(name).await?;
    line.action = "put_parameter";
    if let Some(other) = current.as_ref().filter(|p| !p.holds_images()) {
        line.reason = Some(format!(
            "`{name}` is a {} parameter of data type `{}`, and SSM never changes a parameter to or from data type `{}`: delete it (the next sweep creates it), or publish to another name in `publish.ssm_parameters`",
            other.kind,
            other.data_type,
            StoredParameter::IMAGE_DATA_TYPE
        ));
        return Ok(PublishOutcome::Refused);
    }
    let choice = targets::choose(target, current.as_ref().map(|p| p.value.as_str()), images);
    if let Some(outcome) = apply(&choice, line) {
        return Ok(outcome);
    }
    if dry_run {
        return Ok(PublishOutcome::Planned);
    }
    match params.put_image_parameter(name, &target.image.id).await {
        Ok(version) => {
            line.version = Some(version);
            Ok(PublishOutcome::Published)
        }
        // SSM validates an `aws:ec2:image` update for up to a few minutes, reads answer the
        // version before it meanwhile, and a second update is refused: most often the
        // previous sweep's own write, seen by the sweep its launch test's end started.
        Err(e) if e.code() == Some(crate::ports::PARAMETER_VALIDATING) => {
            line.reason = Some(format!(
                "SSM is still validating an update of `{name}` (an `aws:ec2:image` value is validated asynchronously): the next sweep reads it again"
            ));
            Ok(PublishOutcome::Deferred)
        }
        Err(e) => Err(e),
    }
}

/// How a launch template is updated.
#[derive(Debug, Clone, Copy)]
struct TemplateUpdate {
    set_default: bool,
    dry_run: bool,
}

/// The action of a template line whose default a consumer chose ([`tags::DEFAULT_VERSION`]).
pub const HELD: &str = "held_by_consumer";

/// Makes the launch template's default (or `$Latest`) name the target's AMI: a new version
/// derived from what consumers launch, unless a consumer holds the default, the template names
/// its AMI through SSM, or the choice keeps what it names.
async fn publish_template<E: LaunchTemplates>(
    ec2: &E,
    template: &str,
    how: TemplateUpdate,
    target: &Target<'_>,
    images: &[Image],
    line: &mut PublishResult,
) -> Result<PublishOutcome> {
    let Some(state) = ec2.launch_template(template).await? else {
        line.action = targets::NO_TEMPLATE;
        line.reason = Some(format!(
            "no launch template `{template}` in {}",
            ec2.region()
        ));
        return Ok(PublishOutcome::Skipped);
    };
    if let Some(why) = templates::held_by_consumer(&state, how.set_default) {
        line.action = HELD;
        line.reason = Some(why);
        return Ok(PublishOutcome::Kept);
    }

    let current = templates::current(&state, how.set_default);
    if let Some(alias) = templates::through_parameter(current) {
        line.action = "keep";
        line.reason = Some(format!(
            "`{template}` names its AMI through an SSM parameter ({alias}): publish to that parameter instead"
        ));
        return Ok(PublishOutcome::Skipped);
    }

    let choice = targets::choose(target, current, images);
    line.action = "new_template_version";
    if let Some(outcome) = apply(&choice, line) {
        return Ok(outcome);
    }
    write_version(ec2, &state, how, target, line).await
}

/// Writes the version that names the target's AMI (and makes it the default when asked). A run
/// that stopped before it set the default made the version with the same client token: EC2
/// answers it again, and the default is set, no second version made.
async fn write_version<E: LaunchTemplates>(
    ec2: &E,
    state: &LaunchTemplateState,
    how: TemplateUpdate,
    target: &Target<'_>,
    line: &mut PublishResult,
) -> Result<PublishOutcome> {
    let TemplateUpdate {
        set_default,
        dry_run,
    } = how;
    if dry_run {
        return Ok(PublishOutcome::Planned);
    }

    let description = format!(
        "{} {} of {}/{}{}",
        crate::domain::naming::TEMPLATE_VERSION_PREFIX,
        target.image.id,
        target.policy.name,
        target.family,
        if target.pinned { " (rollback)" } else { "" }
    );
    let version =
        templates::write_version(ec2, state, set_default, &target.image.id, &description).await?;
    line.version = Some(version);
    Ok(PublishOutcome::Published)
}
