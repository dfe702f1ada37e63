//! Runs the launch tests and the publishing of each region through the ports: reads the
//! account, decides (see [`super::validate`] and [`super::targets`]) and acts, one line per
//! AMI, instance or destination.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::targets::{self, Choice, Destination, Target};
use super::validate::{self, Planned, Step};
use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::{PublishRequest, RunRequest};
use crate::domain::{seal, tags};
use crate::error::Result;
use crate::jobs::Context;
use crate::ports::{
    Cloud, DeadMan, LaunchTemplates, Parameters, Regional, Seal, StoredParameter, ValidateImages,
};

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

fn region_failure(stage: Stage, region: &Region, e: crate::error::Error) -> PublishResult {
    PublishResult::new(stage, "", region, "").with(e.disposition().into(), e.to_string())
}

/// The region's launch tests; also answers the images it scanned.
async fn validate_region<C: Cloud>(
    ctx: &Context<'_, C>,
    region: &Region,
    request: &RunRequest,
    dry_run: bool,
    now: DateTime<Utc>,
) -> (Vec<PublishResult>, Option<Vec<Image>>) {
    if !ctx.document.policies.iter().any(|p| p.validate.is_some()) {
        return (Vec::new(), None);
    }
    let ec2 = ctx.cloud.ec2(region);
    let scan = crate::jobs::proof::scan(ctx.cloud, ctx.document, region);
    let (images, tagged) = match futures::try_join!(scan, ec2.test_instances()) {
        Ok(found) => found,
        Err(e) => return (vec![region_failure(Stage::Validate, region, e)], None),
    };
    let sealer = ctx.cloud.sealer();
    let found = crate::jobs::proof::own_instances(sealer.as_ref(), region, tagged).await;
    let instances = found.ours;
    rearm(ctx, region, &instances).await;
    // The console is read only where it decides: both checks passed and the policy asks. One
    // that cannot be read holds that instance's verdict, not the region's other tests.
    let mut consoles = HashMap::new();
    let mut unreadable: HashMap<String, String> = HashMap::new();
    for instance in &instances {
        let validate = images
            .iter()
            .find(|i| i.id == instance.image_id)
            .and_then(|i| i.policy_in(ctx.document))
            .and_then(|p| p.validate.as_ref());
        if validate.is_some_and(|v| validate::needs_console(instance, v)) {
            match ec2.console_output(&instance.instance_id).await {
                Ok(text) => {
                    consoles.insert(instance.instance_id.clone(), text);
                }
                Err(e) => {
                    unreadable.insert(instance.instance_id.clone(), e.to_string());
                }
            }
        }
    }
    let steps = validate::plan(
        &images,
        &instances,
        &consoles,
        ctx.document,
        request.policies.as_deref(),
        request.image_ids.as_deref(),
        now,
    );
    let steps = validate::launches_oldest_first(steps, &images);
    let steps = validate::hold_unread(steps, &unreadable);
    let steps = refuse_mismatched(&ec2, steps, &images).await;
    let mut lines = Vec::new();
    let unsealed = unsealed_steps(found.unsealed, ctx.document, now);
    // At most `max_test_instances` up at once: a slot is taken by a launch that happened only
    // (one EC2 refuses takes none, so it cannot starve the others).
    let max = ctx.limits.max_test_instances;
    let mut room = max.saturating_sub(validate::up(&instances));
    for planned in steps.into_iter().chain(unsealed) {
        if matches!(planned.step, Step::Launch(_)) && room == 0 {
            lines.push(
                validation_step(ctx, &ec2, validate::wait_for_slot(planned, max), dry_run).await,
            );
            continue;
        }
        let line = validation_step(ctx, &ec2, planned, dry_run).await;
        if matches!(
            line.outcome,
            PublishOutcome::Launched | PublishOutcome::Planned
        ) && line.action == "launch"
        {
            room = room.saturating_sub(1);
        }
        lines.push(line);
    }
    (lines, Some(images))
}

async fn validation_step<C: Cloud>(
    ctx: &Context<'_, C>,
    ec2: &C::Ec2,
    planned: Planned<'_>,
    dry_run: bool,
) -> PublishResult {
    let policy = planned.policy.map_or("", |p| p.name.as_str());
    let mut line = PublishResult::new(Stage::Validate, &planned.image_id, ec2.region(), policy);
    line.family = planned.family.clone();
    let (action, instance) = match &planned.step {
        Step::Launch(_) => ("launch", None),
        Step::Wait { instance_id, .. } => ("wait", Some(instance_id)),
        Step::Pass { instance_id } => ("pass", Some(instance_id)),
        Step::Fail { instance_id, .. } => ("fail", instance_id.as_ref()),
        Step::Terminate { instance_id, .. } => ("terminate", Some(instance_id)),
        Step::Skip(_) => ("skip", None),
        Step::Refuse(_) => ("launch", None),
    };
    line.action = action;
    line.instance_id = instance.cloned();
    let acts = !matches!(
        planned.step,
        Step::Wait { .. } | Step::Skip(_) | Step::Refuse(_)
    );
    if acts && ctx.deadline.passed() {
        return line.with(
            PublishOutcome::Deferred,
            crate::jobs::PAST_DEADLINE.to_string(),
        );
    }
    let reason = match &planned.step {
        Step::Wait { why, .. } => return line.with(PublishOutcome::Waiting, why.clone()),
        Step::Skip(why) => return line.with(PublishOutcome::Skipped, why.clone()),
        Step::Refuse(why) => return line.with(PublishOutcome::Refused, why.clone()),
        Step::Fail { reason, .. } | Step::Terminate { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    if dry_run {
        return line.with(PublishOutcome::Planned, reason);
    }
    let done = match &planned.step {
        Step::Launch(spec) => launch(ctx, ec2, spec).await.map(|id| {
            line.instance_id = Some(id);
            PublishOutcome::Launched
        }),
        Step::Pass { instance_id } => {
            let sealer = ctx.cloud.sealer();
            let given = Verdict {
                image_id: &planned.image_id,
                policy: policy_name(&planned),
                value: tags::PASSED,
                instance_id: instance_id.into(),
            };
            verdict(ec2, sealer.as_ref(), given).await
        }
        Step::Fail { instance_id, .. } => {
            let given = Verdict {
                image_id: &planned.image_id,
                policy: policy_name(&planned),
                value: tags::FAILED,
                instance_id: instance_id.as_ref(),
            };
            verdict(ec2, None::<&C::Sealer>, given).await
        }
        Step::Terminate { instance_id, .. } => ec2
            .terminate(instance_id)
            .await
            .map(|()| PublishOutcome::Terminated),
        Step::Wait { .. } | Step::Skip(_) | Step::Refuse(_) => Ok(PublishOutcome::Waiting),
    };
    let ended = matches!(
        done,
        Ok(PublishOutcome::Passed | PublishOutcome::ValidationFailed | PublishOutcome::Terminated)
    );
    if let (true, Some(instance_id)) = (ended, line.instance_id.as_deref()) {
        disarm(ctx, ec2.region(), instance_id).await;
    }
    match done {
        Ok(outcome) => line.with(outcome, reason),
        Err(e) => line.with(e.disposition().into(), e.to_string()),
    }
}

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

/// RunInstances with the stack's seal as its `ClientToken`: the same instance however often it
/// is asked, and the proof that the stack launched it. Only into security groups that let
/// nothing in: the test boots a copy of a server (its cron jobs, its agents), which must not be
/// reachable; the groups are read at each launch, as they may have changed since the start.
async fn launch<C: Cloud>(
    ctx: &Context<'_, C>,
    ec2: &C::Ec2,
    spec: &crate::ports::LaunchSpec,
) -> Result<String> {
    let open = ec2.inbound_rules(&spec.security_group_ids).await?;
    if !open.is_empty() {
        return Err(crate::error::Error::Refused(format!(
            "not launched: its security groups let traffic in ({}); a launch test boots a copy of a server, which nothing may reach: give validate.security_group_ids groups without inbound rules",
            open.join("; ")
        )));
    }
    let sealer = ctx.cloud.sealer();
    let token = crate::jobs::proof::launch_token(
        sealer.as_ref(),
        &spec.image_id,
        ec2.region(),
        spec.attempt,
    )
    .await?;
    let Some(dead_man) = ctx.cloud.dead_man(ec2.region()) else {
        return Err(crate::error::Error::Refused(
            "not launched: no dead-man role (AMI_DEADMAN_ROLE_ARN) to bound the instance's life when the function does not run".into(),
        ));
    };
    let spec = crate::ports::LaunchSpec {
        client_token: token,
        ..spec.clone()
    };
    let instance_id = ec2.launch(&spec).await?;
    let deadline = Utc::now() + chrono::Duration::minutes(i64::from(spec.lifetime_minutes));
    if let Err(e) = dead_man.arm(&instance_id, deadline).await {
        // The test goes on (terminating it would fail its AMI); every sweep arms the schedule
        // of each live test instance again until it holds.
        return Err(crate::error::Error::Refused(format!(
            "instance {instance_id} was launched, and its dead-man schedule could not be created ({e}): the next sweep creates it"
        )));
    }
    Ok(instance_id)
}

/// Fails, without a launch, the AMIs whose architecture their instance type does not run
/// ([`validate::refuse_mismatched`]). When the instance types cannot be described, the launches
/// go ahead: EC2 then refuses a mismatch itself, and the sweep reports it.
async fn refuse_mismatched<'a, E: ValidateImages>(
    ec2: &E,
    steps: Vec<Planned<'a>>,
    images: &[Image],
) -> Vec<Planned<'a>> {
    let types = validate::launch_types(&steps);
    if types.is_empty() {
        return steps;
    }
    match ec2.architectures(&types).await {
        Ok(supported) => validate::refuse_mismatched(steps, images, &supported),
        Err(e) => {
            tracing::warn!(error = %e, "instance types not described: launches are not checked against their AMIs' architecture");
            steps
        }
    }
}

/// Arms the dead-man schedule of every live test instance (armed already: nothing changes), so
/// an instance whose schedule could not be created at launch, or whose launching invocation
/// died before it, gets one at the next sweep: launch time plus its policy's timeout plus the
/// grace (an instance of no validating policy here: the abandonment bound).
async fn rearm<C: Cloud>(
    ctx: &Context<'_, C>,
    region: &Region,
    instances: &[crate::ports::TestInstance],
) {
    let Some(dead_man) = ctx.cloud.dead_man(region) else {
        return;
    };
    for i in instances
        .iter()
        .filter(|i| !matches!(i.state.as_str(), "shutting-down" | "terminated"))
    {
        let minutes = i
            .policy
            .as_deref()
            .and_then(|p| ctx.document.policy(p))
            .and_then(|p| p.validate.as_ref())
            .map_or(validate::ABANDONED_AFTER_MINUTES, |v| {
                i64::from(v.timeout_minutes + validate::DEAD_MAN_GRACE_MINUTES)
            });
        let Some(launched) = i.launched else {
            continue;
        };
        let deadline = (launched + chrono::Duration::minutes(minutes)).max(Utc::now());
        if let Err(e) = dead_man.arm(&i.instance_id, deadline).await {
            tracing::warn!(instance = %i.instance_id, error = %e, "its dead-man schedule could not be created: the next sweep tries again");
        }
    }
}

/// Removes a test instance's dead-man schedule once its test is over (a failure is only
/// logged: the schedule then terminates an instance already gone, and deletes itself).
async fn disarm<C: Cloud>(ctx: &Context<'_, C>, region: &Region, instance_id: &str) {
    let Some(dead_man) = ctx.cloud.dead_man(region) else {
        return;
    };
    if let Err(e) = dead_man.disarm(instance_id).await {
        tracing::warn!(instance = %instance_id, error = %e, "its dead-man schedule stays until it fires");
    }
}

/// Test instances launched before tokens were sealed are terminated and judge nothing: their
/// AMIs are tested again on instances the stack can prove it launched.
/// Only those of this document's validating policies, or abandoned (a second deployment in the
/// account, still on the earlier release, runs its own).
fn unsealed_steps<'a>(
    instances: Vec<crate::ports::TestInstance>,
    document: &PolicyDocument,
    now: DateTime<Utc>,
) -> Vec<Planned<'a>> {
    let abandoned_after = chrono::Duration::minutes(validate::ABANDONED_AFTER_MINUTES);
    instances
        .into_iter()
        .filter(|i| !matches!(i.state.as_str(), "terminated" | "shutting-down"))
        .filter(|i| {
            let ours = i
                .policy
                .as_deref()
                .and_then(|p| document.policy(p))
                .is_some_and(|p| p.validate.is_some());
            ours || i.launched.is_some_and(|t| now - t > abandoned_after)
        })
        .map(|i| Planned {
            image_id: i.image_id.clone(),
            policy: None,
            family: None,
            step: Step::Terminate {
                instance_id: i.instance_id,
                reason: "launched before launch tests' client tokens were sealed: it judges nothing, and its AMI is tested again".into(),
            },
        })
        .collect()
}

/// The policy a planned step is for (empty for a test instance of no policy of this document).
fn policy_name<'a>(planned: &Planned<'a>) -> &'a str {
    planned.policy.map_or("", |p| p.name.as_str())
}

/// A launch test's verdict on an AMI, and the instance that tested it.
struct Verdict<'a> {
    image_id: &'a str,
    /// The policy it was tested for (the AMI's `ami-automation:policy`).
    policy: &'a str,
    /// [`tags::PASSED`] or [`tags::FAILED`].
    value: &'a str,
    instance_id: Option<&'a String>,
}

/// Tags the AMI with the verdict, then terminates its test instance. The tag comes first: an
/// instance whose termination fails is found by the next sweep (its AMI has a verdict), while
/// a verdict lost after the termination would launch the test again. A `passed` is written with
/// its seal ([`crate::domain::seal::verdict`]) or not at all: the gate accepts no other.
async fn verdict<E: ValidateImages + Regional, S: Seal>(
    ec2: &E,
    sealer: Option<&S>,
    given: Verdict<'_>,
) -> Result<PublishOutcome> {
    let Verdict {
        image_id,
        policy,
        value,
        instance_id,
    } = given;
    let mut tag = BTreeMap::from([(tags::VALIDATION.to_string(), value.to_string())]);
    if value == tags::PASSED {
        let Some(sealer) = sealer else {
            return Err(crate::error::Error::Refused(
                "no signing key (AMI_SIGNING_KEY_ARN) to seal the verdict with: nothing is written, and the test is judged again by the next sweep"
                    .into(),
            ));
        };
        let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let message = seal::verdict(image_id, ec2.region().as_str(), policy, value, &at);
        let sealed = sealer.seal(message).await?;
        tag.insert(
            tags::VALIDATION_SEAL.to_string(),
            seal::sealed_tag(&at, &sealed),
        );
    }
    ec2.tag_image(image_id, &tag).await?;
    if let Some(id) = instance_id {
        if let Err(e) = ec2.terminate(id).await {
            tracing::warn!(instance = %id, error = %e, "the test instance is terminated by the next sweep");
        }
    }
    Ok(if value == tags::PASSED {
        PublishOutcome::Passed
    } else {
        PublishOutcome::ValidationFailed
    })
}

async fn publish_region<C: Cloud>(
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
        Err(e) if e.code() == Some(VALIDATING) => {
            line.reason = Some(format!(
                "SSM is still validating an update of `{name}` (an `aws:ec2:image` value is validated asynchronously): the next sweep reads it again"
            ));
            Ok(PublishOutcome::Deferred)
        }
        Err(e) => Err(e),
    }
}

/// SSM's refusal of an update while it validates the one before (PutParameter, `TooManyUpdates`:
/// "There are concurrent updates for a resource that supports one update at a time").
const VALIDATING: &str = "TooManyUpdates";

/// How a launch template is updated.
struct TemplateUpdate {
    set_default: bool,
    dry_run: bool,
}

/// The action of a template line whose default a consumer chose ([`tags::DEFAULT_VERSION`]).
pub const HELD: &str = "held_by_consumer";

async fn publish_template<E: LaunchTemplates>(
    ec2: &E,
    template: &str,
    how: TemplateUpdate,
    target: &Target<'_>,
    images: &[Image],
    line: &mut PublishResult,
) -> Result<PublishOutcome> {
    let TemplateUpdate {
        set_default,
        dry_run,
    } = how;
    let Some(state) = ec2.launch_template(template).await? else {
        line.action = targets::NO_TEMPLATE;
        line.reason = Some(format!(
            "no launch template `{template}` in {}",
            ec2.region()
        ));
        return Ok(PublishOutcome::Skipped);
    };
    // A default someone moved back to an older version than the one the tool set last (a
    // consumer's own rollback) is theirs until they hand it back. A newer default (their own
    // new configuration, or the tool's whose tag was not written) is what consumers run: the
    // tool derives from it.
    if let Some(recorded) = state
        .recorded_default
        .filter(|r| set_default && state.default_version < *r)
    {
        line.action = HELD;
        line.reason = Some(format!(
            "its default is version {}, older than version {recorded} the tool set last (a rollback by hand): left as it is, and no version is made, until the default is {recorded} or newer again, or the tag {} is removed",
            state.default_version,
            tags::DEFAULT_VERSION
        ));
        return Ok(PublishOutcome::Kept);
    }
    // What consumers launch: the default when the tool sets it, else `$Latest`; a new version
    // derives from it, so a consumer's staged `$Latest` is never promoted.
    let (source, current) = if set_default {
        (state.default_version, state.default_image.as_deref())
    } else {
        (state.latest_version, state.latest_image.as_deref())
    };
    if let Some(alias) = current.filter(|i| i.starts_with("resolve:ssm:")) {
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
    // The tool's own version for this AMI, made by a run that stopped before it set the
    // default: the default is completed, no second version made.
    if set_default
        && state.latest_made_by_tool
        && state.latest_version != state.default_version
        && state.latest_image.as_deref() == Some(target.image.id.as_str())
    {
        line.action = "set_default_version";
        line.version = Some(state.latest_version);
        if dry_run {
            return Ok(PublishOutcome::Planned);
        }
        ec2.set_default_version(&state.template_id, state.latest_version)
            .await?;
        return Ok(PublishOutcome::Published);
    }
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
    let version = ec2
        .new_template_version(
            &state.template_id,
            source,
            &target.image.id,
            &description.chars().take(255).collect::<String>(),
            &targets::template_token(&state.template_id, source, &target.image.id),
        )
        .await?;
    line.version = Some(version);
    if set_default {
        ec2.set_default_version(&state.template_id, version).await?;
    }
    Ok(PublishOutcome::Published)
}
