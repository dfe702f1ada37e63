//! The one handler of every function: the prologue (deadline, parse, trigger kind, run-request
//! checks, `dry_run` default, default regions) is written once here; then the function's job
//! runs, its events are published and the report answers the invocation.

use std::time::Instant;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

use super::app::App;
use super::report::{answer, Run};
use crate::domain::payload::Payload;
use crate::domain::trigger::{RunRequest, Trigger, TriggerKind};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::jobs::{ageout, build, copy, share, Context};

/// The four functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `ami-age-out`: deprecate, disable, deregister, delete.
    AgeOut,
    /// `ami-build`: CreateImage, RegisterImage.
    Build,
    /// `ami-share`: launch and snapshot permissions.
    Share,
    /// `ami-copy`: copies into other regions.
    Copy,
}

impl Function {
    /// Its name in reports, events and tags.
    pub fn name(&self) -> &'static str {
        match self {
            Function::AgeOut => ageout::FUNCTION,
            Function::Build => build::FUNCTION,
            Function::Share => share::FUNCTION,
            Function::Copy => copy::FUNCTION,
        }
    }
}

/// Runs a function under the Lambda runtime: loads the configuration once (an invalid one
/// fails the cold start, naming the field), then answers invocations until the runtime stops.
pub async fn serve(function: Function) -> std::result::Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Payload>| async move {
        handle(app, function, event).await
    }))
    .await
}

/// Answers one invocation of `function`.
pub async fn handle(
    app: &App,
    function: Function,
    invocation: LambdaEvent<Payload>,
) -> std::result::Result<serde_json::Value, Diagnostic> {
    let started = Instant::now();
    let deadline = app.deadline(invocation.context.deadline);
    let trigger = Trigger::parse(invocation.payload)?;
    let kind = trigger.kind();
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
        app.check_policies(request.policies.as_deref())?;
    }
    // Build creates only, never destroys: it runs for real unless a request says otherwise.
    // The others default to the document's `dry_run`.
    let dry_run = match &trigger {
        Trigger::Run(request) => request.dry_run,
        _ => None,
    }
    .unwrap_or(function != Function::Build && app.document.dry_run);
    let home = &app.settings.home_region;
    let ctx = Context {
        cloud: app,
        document: &app.document,
        limits: app.limits(),
        deadline,
    };
    let mut run = Run {
        function: function.name(),
        trigger: kind,
        dry_run,
        window: None,
        ignored: None,
        started,
    };
    match function {
        Function::AgeOut => {
            let request = match trigger {
                Trigger::Run(request) => request,
                Trigger::Scheduled { region, .. } => RunRequest {
                    regions: region.map(|r| vec![r]),
                    ..RunRequest::default()
                },
                _ => {
                    return Err(Error::event(
                        "$.detail-type",
                        format!(
                            "{} runs on a schedule or a run request, not on `{kind}`",
                            function.name()
                        ),
                    )
                    .into())
                }
            };
            let regions = request
                .regions
                .clone()
                .unwrap_or_else(|| vec![home.clone()]);
            let report = ageout::run(&ctx, &request, &regions, dry_run, app.events()).await;
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
            answer(&report, ageout::partial_failure(&report))
        }
        Function::Build => {
            let work = build::work(
                trigger,
                home,
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
        Function::Share | Function::Copy => {
            let request = match ami_request(trigger, function)? {
                Decision::Act(request) => request,
                Decision::Ignore(why) => {
                    run.ignored = Some(why);
                    return match function {
                        Function::Share => {
                            run.finish::<share::ShareResult>(app, Vec::new(), Vec::new())
                                .await
                        }
                        _ => {
                            run.finish::<copy::CopyResult>(app, Vec::new(), Vec::new())
                                .await
                        }
                    };
                }
            };
            let regions = request
                .regions
                .clone()
                .unwrap_or_else(|| vec![home.clone()]);
            if function == Function::Share {
                let results = share::run(&ctx, &request, &regions, dry_run).await;
                let events = if dry_run {
                    Vec::new()
                } else {
                    share::events(&results)
                };
                run.finish(app, results, events).await
            } else {
                let event_driven = kind == TriggerKind::AmiStateChange;
                let (results, ignored) =
                    copy::run(&ctx, &request, &regions, dry_run, event_driven).await;
                run.ignored = ignored;
                let events = if dry_run {
                    Vec::new()
                } else {
                    copy::events(&results)
                };
                run.finish(app, results, events).await
            }
        }
    }
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
        Trigger::AmiState { detail, .. } => Ok(Decision::Ignore(format!(
            "image {} is {}: {name} acts only on `available` AMIs",
            detail.image_id, detail.state
        ))),
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{name} runs on a schedule, a run request or `EC2 AMI State Change`, not on `{}`",
                other.kind()
            ),
        )),
    }
}
