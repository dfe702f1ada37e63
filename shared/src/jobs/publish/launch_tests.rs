//! The launch tests of a region: reads the account, decides ([`super::validate`]) and acts:
//! launches a test instance, writes the sealed verdict, re-arms and disarms the dead-man switch.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::execute::region_failure;
use super::validate::{self, Planned, Step};
use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::RunRequest;
use crate::domain::{seal, tags};
use crate::error::Result;
use crate::jobs::Context;
use crate::ports::{Cloud, DeadMan, Regional, Seal, ValidateImages};

/// The region's launch tests; also answers the images it scanned.
pub(super) async fn validate_region<C: Cloud>(
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

/// One planned step of a launch test, carried out (or, in a dry run, reported): its line.
async fn validation_step<C: Cloud>(
    ctx: &Context<'_, C>,
    ec2: &C::Ec2,
    planned: Planned<'_>,
    dry_run: bool,
) -> PublishResult {
    let mut line = step_line(&planned, ec2.region());
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

    let done = act(ctx, ec2, &planned, &mut line).await;
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

/// The line of a step: its AMI, policy, family, action and test instance.
fn step_line(planned: &Planned<'_>, region: &Region) -> PublishResult {
    let policy = planned.policy.map_or("", |p| p.name.as_str());
    let mut line = PublishResult::new(Stage::Validate, &planned.image_id, region, policy);
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
    line
}

/// Carries out a step that acts: launches, writes a verdict (a pass sealed), or terminates.
async fn act<C: Cloud>(
    ctx: &Context<'_, C>,
    ec2: &C::Ec2,
    planned: &Planned<'_>,
    line: &mut PublishResult,
) -> Result<PublishOutcome> {
    match &planned.step {
        Step::Launch(spec) => launch(ctx, ec2, spec).await.map(|id| {
            line.instance_id = Some(id);
            PublishOutcome::Launched
        }),
        Step::Pass { instance_id } => {
            let sealer = ctx.cloud.sealer();
            let given = Verdict {
                image_id: &planned.image_id,
                policy: policy_name(planned),
                value: tags::PASSED,
                instance_id: instance_id.into(),
            };
            verdict(ec2, sealer.as_ref(), given).await
        }
        Step::Fail { instance_id, .. } => {
            let given = Verdict {
                image_id: &planned.image_id,
                policy: policy_name(planned),
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
    }
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
