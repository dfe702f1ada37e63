//! The one handler of every function: the prologue (deadline, parse, trigger kind, run-request
//! checks, `dry_run` default, default regions) is written once here; then the function's job
//! runs, its events are published and the report answers the invocation.
//!
//! Each function is a [`Job`] type, and `serve` is generic over it, so each binary links only
//! its own job's code.

use std::future::Future;
use std::time::Instant;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

use super::app::App;
use super::metrics;
use super::report::{answer, Run};
use crate::domain::function::Function;
use crate::domain::ids::Region;
use crate::domain::payload::Payload;
use crate::domain::seal;
use crate::domain::trigger::{ContinuedDetail, RunRequest, Trigger, TriggerKind};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::jobs::{ageout, build, copy, publish, share, Context, Line};
use crate::ports::{Cloud, Seal, ValidateImages};

/// One function's job behind the common prologue.
pub trait Job: Copy + Send + Sync + 'static {
    /// Which function it is.
    const FUNCTION: Function;

    /// Runs the job for an invocation the prologue has checked, and answers it.
    fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> impl Future<Output = std::result::Result<serde_json::Value, Diagnostic>> + 'a;
}

/// An invocation after the prologue: what triggered it, the run's context and its report head.
pub struct Checked<'a> {
    /// The parsed trigger.
    pub trigger: Trigger,
    /// The ports, the policy document, the limits and the deadline.
    pub ctx: Context<'a, App>,
    /// The report's head (function, trigger kind, dry run, start).
    pub run: Run,
    /// Whether nothing is changed.
    pub dry_run: bool,
    /// The invocation's request id.
    pub request_id: String,
}

/// Runs a function under the Lambda runtime: loads the configuration once (an invalid one
/// fails the cold start, naming the field), then answers invocations until the runtime stops.
pub async fn serve<J: Job>(job: J) -> std::result::Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env(J::FUNCTION.name()).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Payload>| async move {
        handle(app, job, event).await
    }))
    .await
}

/// Answers one invocation of `job`.
pub async fn handle<J: Job>(
    app: &App,
    job: J,
    invocation: LambdaEvent<Payload>,
) -> std::result::Result<serde_json::Value, Diagnostic> {
    let function = J::FUNCTION;
    let started = Instant::now();
    let deadline = app.deadline(invocation.context.deadline);
    let trigger = Trigger::parse(invocation.payload)?;
    let kind = trigger.kind();
    let trigger = match trigger {
        Trigger::Continued { detail, .. } => {
            match accept_continuation(app, function, *detail).await? {
                Decision::Act(request) => Trigger::Run(request),
                Decision::Ignore(why) => {
                    tracing::warn!(reason = %why, "continuation stopped");
                    return Ok(serde_json::json!({
                        "function": function.name(),
                        "trigger": kind.as_str(),
                        "dry_run": true,
                        "ignored": why,
                    }));
                }
            }
        }
        other => other,
    };
    if let Trigger::Run(request) = &trigger {
        if request.register.is_some() && function != Function::Build {
            return Err(Error::event(
                "$.register",
                format!(
                    "{} does not register AMIs: send it to ami-build",
                    function.name()
                ),
            )
            .into());
        }
        if request.restore.is_some() && function != Function::AgeOut {
            return Err(Error::event(
                "$.restore",
                format!(
                    "{} does not restore AMIs: send it to ami-age-out",
                    function.name()
                ),
            )
            .into());
        }
        if let Some(pin) = request
            .publish
            .as_ref()
            .filter(|_| function == Function::Publish)
        {
            check_rollback_policy(app, &pin.policy)?;
        }
        if request.publish.is_some() && function != Function::Publish {
            return Err(Error::event(
                "$.publish",
                format!(
                    "{} does not publish AMIs: send the rollback to ami-publish",
                    function.name()
                ),
            )
            .into());
        }
        app.check_policies(request.policies.as_deref())?;
    }
    // Build creates only, never destroys: it runs for real unless a request says otherwise.
    // The others default to the document's `dry_run`.
    let dry_run = match &trigger {
        Trigger::Run(request) => request.dry_run,
        _ => None,
    }
    .unwrap_or(function != Function::Build && app.document.dry_run);
    if let Trigger::Run(request) = &trigger {
        check_clock(request, dry_run, chrono::Utc::now())?;
    }
    let checked = Checked {
        trigger,
        ctx: Context {
            cloud: app,
            document: &app.document,
            limits: app.limits(),
            deadline,
        },
        run: Run {
            function: function.name(),
            trigger: kind,
            dry_run,
            window: None,
            ignored: None,
            started,
        },
        dry_run,
        request_id: invocation.context.request_id.clone(),
    };
    job.run(app, checked).await
}

/// Whether a `Policy Run Continued` is run: only by age-out, only when its seal proves the stack
/// made it (checked before anything else happens), and only while the deployment's dry-run
/// switches say real ([`App::kill_switch`]). A refusal changes nothing, is an error naming the
/// reason, and counts in the `RefusedMessages` metric, which the template alarms on.
async fn accept_continuation(
    app: &App,
    function: Function,
    detail: ContinuedDetail,
) -> Result<Decision<RunRequest>> {
    if function != Function::AgeOut || detail.function != ageout::FUNCTION {
        return Err(Error::event(
            "$.detail.function",
            format!(
                "`{}`: only ami-age-out continues its runs, and {} runs no continuation",
                detail.function,
                function.name()
            ),
        ));
    }
    if let Some(why) = authenticate(app, &detail).await? {
        tracing::warn!(reason = %why, run_id = %detail.run_id, "continuation refused");
        metrics::emit(&[metrics::line(
            chrono::Utc::now().timestamp_millis(),
            &[("Function", function.name().to_string())],
            &[("RefusedMessages", "Count", 1.0)],
        )]);
        return Err(Error::Refused(format!(
            "`Policy Run Continued` refused, nothing was done: {why}"
        )));
    }
    if let Some(why) = app.kill_switch() {
        return Ok(Decision::Ignore(format!(
            "the chain stops here: {why}; nothing was done"
        )));
    }
    Ok(Decision::Act(detail.request))
}

/// Why a continuation is not the stack's own, if it is not: expired, no key to check it with,
/// or a seal that does not verify. A seal KMS could not check (throttled, unavailable) is an
/// error of its own: nothing is run, Lambda delivers the event again, and it is not counted as
/// a forgery.
async fn authenticate(app: &App, detail: &ContinuedDetail) -> Result<Option<String>> {
    if let Some(why) = seal::expired(detail.expires, chrono::Utc::now()) {
        return Ok(Some(why));
    }
    let Some(mac) = app.sealer() else {
        return Ok(Some(
            "this deployment has no signing key (AMI_SIGNING_KEY_ARN), so no continuation can be proven"
                .into(),
        ));
    };
    let message = seal::continuation(&detail.function, &detail.request, detail.expires);
    if mac.verify(message, &detail.seal).await? {
        return Ok(None);
    }
    Ok(Some(
        "its seal does not verify: the stack did not make it, or it was altered".into(),
    ))
}

/// A rollback names a policy of the document that publishes; anything else is refused before
/// any call, naming the field (a rollback that silently did nothing would be believed done).
fn check_rollback_policy(app: &App, name: &str) -> Result<()> {
    let publishing: Vec<&str> = app
        .document
        .policies
        .iter()
        .filter(|p| p.publish.is_some())
        .map(|p| p.name.as_str())
        .collect();
    match app.document.policy(name) {
        Some(p) if p.publish.is_some() => Ok(()),
        found => Err(Error::event(
            "$.publish.policy",
            format!(
                "{}: a rollback names a policy with `publish`, one of: {}",
                if found.is_some() {
                    format!("policy `{name}` publishes nothing")
                } else {
                    format!("no policy named `{name}`")
                },
                if publishing.is_empty() {
                    "none in this document".to_string()
                } else {
                    publishing.join(", ")
                }
            ),
        )),
    }
}

/// A real run never takes a clock ahead of the wall clock: with `as_of` in the future every AMI
/// would look older than it is, so such a request is answered only as a dry run.
fn check_clock(
    request: &RunRequest,
    dry_run: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    match request.as_of {
        Some(as_of) if as_of > now && !dry_run => Err(Error::event(
            "$.as_of",
            format!(
                "{} is later than now ({}): a real run never takes a clock ahead of the wall clock; send it with \"dry_run\": true to see what would happen then, or leave `as_of` out",
                as_of.to_rfc3339(),
                now.to_rfc3339()
            ),
        )),
        _ => Ok(()),
    }
}

/// The regions a request names, or the function's home region.
fn regions_of(app: &App, request: &RunRequest) -> Vec<Region> {
    request
        .regions
        .clone()
        .unwrap_or_else(|| vec![app.settings.home_region.clone()])
}

/// Starts the next run of an age-out run that stopped with work left, when
/// [`ageout::continuation::next`] allows it: announces `Policy Run Continued` carrying the next
/// request, which the template's rule delivers back to age-out.
async fn continue_run(
    app: &App,
    report: &ageout::Report,
    request: &RunRequest,
    run_id: &str,
) -> ageout::continuation::Continued {
    use ageout::continuation::{self, Continued};
    let count = match continuation::next(report, request, app.settings.max_continuations) {
        Decision::Act(count) => count,
        Decision::Ignore(why) => {
            return Continued {
                next: None,
                why_not: Some(why),
            }
        }
    };
    let stop = |why: String| Continued {
        next: None,
        why_not: Some(why),
    };
    if let Some(why) = app.kill_switch() {
        return stop(format!(
            "{why}: a chain continues for real only while the deployment's dry-run switches are off"
        ));
    }
    let Some(mac) = app.sealer() else {
        return stop(
            "no signing key (AMI_SIGNING_KEY_ARN) to seal a continuation with: the next scheduled run goes on"
                .into(),
        );
    };
    let next = continuation::request_for(request, count, run_id);
    let expires = chrono::Utc::now() + seal::CONTINUATION_LIFETIME;
    let sealed = match mac
        .seal(seal::continuation(ageout::FUNCTION, &next, expires))
        .await
    {
        Ok(sealed) => sealed,
        Err(e) => {
            return stop(format!(
                "the continuation could not be sealed ({e}): the next scheduled run goes on"
            ))
        }
    };
    let sealed = continuation::Sealed {
        key: app.settings.signing_key.clone().unwrap_or_default(),
        expires,
        seal: sealed,
    };
    let published = app
        .events()
        .publish_now(vec![continuation::event(report, &next, &sealed)])
        .await;
    if published.published == 1 {
        tracing::info!(
            continuation = count,
            remaining = report.remaining,
            "age-out continues"
        );
        Continued {
            next: Some(count),
            why_not: None,
        }
    } else {
        Continued {
            next: None,
            why_not: Some(format!(
                "`Policy Run Continued` could not be published ({}): the next scheduled run goes on",
                published.failed.join("; ")
            )),
        }
    }
}

/// The answer to an event that needs no work: an empty report that says why.
async fn ignored<R: Line>(
    app: &App,
    mut run: Run,
    why: String,
) -> std::result::Result<serde_json::Value, Diagnostic> {
    run.ignored = Some(why);
    run.finish::<R>(app, Vec::new(), Vec::new()).await
}

/// `ami-age-out`.
#[derive(Debug, Clone, Copy)]
pub struct AgeOutJob;

impl Job for AgeOutJob {
    const FUNCTION: Function = Function::AgeOut;

    async fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> std::result::Result<serde_json::Value, Diagnostic> {
        let Checked {
            trigger,
            ctx,
            run,
            dry_run,
            request_id: run_id,
        } = invocation;
        let sweep = matches!(trigger, Trigger::Scheduled { .. });
        let request = match trigger {
            Trigger::Run(request) => request,
            Trigger::Scheduled { region, .. } => RunRequest {
                regions: region.map(|r| vec![r]),
                ..RunRequest::default()
            },
            other => {
                return Err(Error::event(
                    "$.detail-type",
                    format!(
                        "{} runs on a schedule or a run request, not on `{}`",
                        ageout::FUNCTION,
                        other.kind()
                    ),
                )
                .into())
            }
        };
        let regions = regions_of(app, &request);
        if let Some(restore) = &request.restore {
            let results = ageout::restore::run(&ctx, &restore.image_ids, &regions, dry_run).await;
            let events = ageout::restore::events(&results);
            return run.finish(app, results, events).await;
        }
        let mut report = ageout::run(&ctx, &request, &regions, dry_run, app.events()).await;
        if !report.complete {
            report.continued = Some(continue_run(app, &report, &request, &run_id).await);
        }
        tracing::info!(
            function = report.function,
            dry_run = report.dry_run,
            complete = report.complete,
            planned = report.plan.len(),
            failed = report.failed.len(),
            remaining = report.remaining,
            events = report.events.published,
            elapsed_ms = report.elapsed_ms as u64,
            counts = %serde_json::to_string(&report.counts).unwrap_or_default(),
            "age-out run finished"
        );
        metrics::emit(&metrics::age_out(
            &report,
            sweep,
            chrono::Utc::now().timestamp_millis(),
        ));
        let partial = ageout::partial_failure(&report);
        answer(&mut report, partial)
    }
}

/// `ami-build`.
#[derive(Debug, Clone, Copy)]
pub struct BuildJob;

impl Job for BuildJob {
    const FUNCTION: Function = Function::Build;

    async fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> std::result::Result<serde_json::Value, Diagnostic> {
        let Checked {
            trigger,
            ctx,
            mut run,
            dry_run,
            ..
        } = invocation;
        let work = build::work(
            trigger,
            &app.settings.home_region,
            app.settings.build_window_minutes,
            &app.document,
        )?;
        let ran = match work {
            Decision::Act(work) => build::run(&ctx, work, dry_run).await?,
            Decision::Ignore(why) => build::Ran {
                ignored: Some(why),
                ..build::Ran::default()
            },
        };
        run.window = ran.window;
        run.ignored = ran.ignored;
        run.finish(app, ran.results, ran.events).await
    }
}

/// `ami-share`.
#[derive(Debug, Clone, Copy)]
pub struct ShareJob;

impl Job for ShareJob {
    const FUNCTION: Function = Function::Share;

    async fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> std::result::Result<serde_json::Value, Diagnostic> {
        let Checked {
            trigger,
            ctx,
            run,
            dry_run,
            ..
        } = invocation;
        let request = match ami_request(trigger, Function::Share)? {
            Decision::Act(request) => request,
            Decision::Ignore(why) => return ignored::<share::ShareResult>(app, run, why).await,
        };
        let regions = regions_of(app, &request);
        let results = share::run(&ctx, &request, &regions, dry_run).await;
        let events = share::events(&results);
        run.finish(app, results, events).await
    }
}

/// `ami-copy`.
#[derive(Debug, Clone, Copy)]
pub struct CopyJob;

impl Job for CopyJob {
    const FUNCTION: Function = Function::Copy;

    async fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> std::result::Result<serde_json::Value, Diagnostic> {
        let Checked {
            trigger,
            ctx,
            mut run,
            dry_run,
            ..
        } = invocation;
        let event_driven = trigger.kind() == TriggerKind::AmiStateChange;
        let request = match ami_request(trigger, Function::Copy)? {
            Decision::Act(request) => request,
            Decision::Ignore(why) => return ignored::<copy::CopyResult>(app, run, why).await,
        };
        let regions = regions_of(app, &request);
        let (results, ignored) = copy::run(&ctx, &request, &regions, dry_run, event_driven).await;
        run.ignored = ignored;
        let events = copy::events(&results);
        run.finish(app, results, events).await
    }
}

/// `ami-publish`.
#[derive(Debug, Clone, Copy)]
pub struct PublishJob;

impl Job for PublishJob {
    const FUNCTION: Function = Function::Publish;

    async fn run<'a>(
        self,
        app: &'a App,
        invocation: Checked<'a>,
    ) -> std::result::Result<serde_json::Value, Diagnostic> {
        let Checked {
            trigger,
            ctx,
            run,
            dry_run,
            ..
        } = invocation;
        // Every trigger is a sweep of its region: the state of each launch test is in tags, so
        // an event only says when to look again. The schedule sweeps every region publishing
        // reaches (the copies' regions too).
        let request = match trigger {
            Trigger::Run(request) => request,
            Trigger::Scheduled { .. } => RunRequest::default(),
            Trigger::AmiState { region, .. } => RunRequest {
                regions: region.map(|r| vec![r]),
                ..RunRequest::default()
            },
            // Every instance of the account changes state through this rule (EventBridge
            // cannot match tags): only a test instance's change is worth a sweep.
            Trigger::InstanceState { region, detail, .. } => {
                let region = region.unwrap_or_else(|| app.settings.home_region.clone());
                let tagged = app.ec2(&region).test_instances().await?;
                let sealer = app.sealer();
                let ours = crate::jobs::proof::own_instances(sealer.as_ref(), &region, tagged)
                    .await
                    .ours
                    .iter()
                    .any(|i| i.instance_id == detail.instance_id);
                if !ours {
                    return ignored::<publish::PublishResult>(
                        app,
                        run,
                        format!(
                            "instance {} is not a test instance of ami-publish",
                            detail.instance_id
                        ),
                    )
                    .await;
                }
                RunRequest {
                    regions: Some(vec![region]),
                    ..RunRequest::default()
                }
            }
            other => {
                return Err(Error::event(
                    "$.detail-type",
                    format!(
                        "{} runs on a schedule, a run request, `EC2 AMI State Change` or `EC2 Instance State-change Notification`, not on `{}`",
                        publish::FUNCTION,
                        other.kind()
                    ),
                )
                .into())
            }
        };
        let now = request.as_of.unwrap_or_else(chrono::Utc::now);
        let results = match &request.publish {
            Some(pin) => {
                let regions = publish_regions(app, &request, Some(&pin.policy));
                publish::rollback(&ctx, pin, &regions, dry_run, now).await
            }
            None => {
                let regions = publish_regions(app, &request, None);
                publish::run(&ctx, &request, &regions, dry_run, now).await
            }
        };
        let events = publish::events(&results);
        run.finish(app, results, events).await
    }
}

/// The regions publishing looks at: those a request names, or the home region and every region
/// the publishing policies (or the one named) copy into, where their copies are published.
fn publish_regions(app: &App, request: &RunRequest, only: Option<&str>) -> Vec<Region> {
    if let Some(regions) = &request.regions {
        if only.is_none() {
            return regions.clone();
        }
    }
    let first = request
        .regions
        .as_ref()
        .and_then(|r| r.first())
        .unwrap_or(&app.settings.home_region)
        .clone();
    let mut out = vec![first];
    for policy in app
        .document
        .policies
        .iter()
        .filter(|p| p.publish.is_some() && only.is_none_or(|name| p.name == name))
    {
        for region in policy.copy.iter().flat_map(|c| c.regions.keys()) {
            if !out.contains(region) {
                out.push(region.clone());
            }
        }
    }
    out
}

/// For the functions that act on available AMIs (share, copy): the run request a trigger asks
/// for, or why the event needs no work. A schedule sweeps its region; an `EC2 AMI State
/// Change` to `available` names one image.
pub fn ami_request(trigger: Trigger, function: Function) -> Result<Decision<RunRequest>> {
    let name = function.name();
    match trigger {
        Trigger::Run(r) => Ok(Decision::Act(r)),
        Trigger::Scheduled { region, .. } => Ok(Decision::Act(RunRequest {
            regions: region.map(|r| vec![r]),
            ..RunRequest::default()
        })),
        Trigger::AmiState { region, detail } if detail.state == "available" => {
            Ok(Decision::Act(RunRequest {
                regions: region.map(|r| vec![r]),
                image_ids: Some(vec![detail.image_id]),
                ..RunRequest::default()
            }))
        }
        Trigger::Validated { region, detail } => Ok(Decision::Act(RunRequest {
            regions: region.map(|r| vec![r]),
            image_ids: Some(vec![detail.image_id]),
            ..RunRequest::default()
        })),
        // The AMI's own region, not the bus's: a restore may be in any region.
        Trigger::Restored { region, detail } => Ok(Decision::Act(RunRequest {
            regions: detail.region.or(region).map(|r| vec![r]),
            image_ids: Some(vec![detail.image_id]),
            ..RunRequest::default()
        })),
        Trigger::AmiState { detail, .. } => Ok(Decision::Ignore(format!(
            "image {} is {}: {name} acts only on `available` AMIs",
            detail.image_id, detail.state
        ))),
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{name} runs on a schedule, a run request, `EC2 AMI State Change`, `AMI Validated` or `AMI Restored`, not on `{}`",
                other.kind()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn a_restored_ami_is_shared_in_the_region_it_was_restored_in_not_the_buss() {
        let event = serde_json::json!({"version": "0", "id": "x", "detail-type": "AMI Restored",
            "source": "ami.automation", "account": "123456789012", "time": "2026-12-05T09:15:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"image_id": "ami-0123456789abcdef0", "region": "eu-west-1", "outcome": "restored"}});
        let trigger = Trigger::parse(event).expect("AMI Restored");
        let Ok(Decision::Act(request)) = ami_request(trigger, Function::Share) else {
            panic!("share acts on AMI Restored");
        };
        let regions: Vec<String> = request
            .regions
            .unwrap_or_default()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(regions, vec!["eu-west-1".to_string()]);
        assert_eq!(
            request.image_ids,
            Some(vec!["ami-0123456789abcdef0".to_string()])
        );
    }

    #[test]
    fn a_real_run_with_a_clock_ahead_of_the_wall_clock_is_refused_and_a_dry_run_is_answered() {
        let now = at("2026-12-04T12:00:00Z");
        let ahead = RunRequest {
            as_of: Some(at("2026-12-04T12:00:01Z")),
            ..RunRequest::default()
        };
        let err = check_clock(&ahead, false, now).unwrap_err().to_string();
        assert!(
            err.contains("$.as_of") && err.contains("later than now") && err.contains("dry_run"),
            "{err}"
        );
        assert!(check_clock(&ahead, true, now).is_ok());
        let behind = RunRequest {
            as_of: Some(at("2026-12-04T11:59:59Z")),
            ..RunRequest::default()
        };
        assert!(check_clock(&behind, false, now).is_ok());
        assert!(check_clock(&RunRequest::default(), false, now).is_ok());
    }
}
