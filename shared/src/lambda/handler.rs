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
use super::continuation;
use super::report::Run;
use crate::domain::function::Function;
use crate::domain::ids::Region;
use crate::domain::payload::Payload;
use crate::domain::trigger::{RunRequest, Trigger};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::jobs::{Context, Line};

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
            match continuation::accept(app, function, *detail).await? {
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
        check_request(app, function, request)?;
    }

    // Build creates only, never destroys: it runs for real unless a request says otherwise.
    // A recall is a dry run unless its request says otherwise. The others default to the
    // document's `dry_run`.
    let dry_run = match &trigger {
        Trigger::Run(request) => request.dry_run.or(request.recall.as_ref().map(|_| true)),
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

/// A run request's parts go to the function that acts on them (a registration to build, a
/// restore or a recall to age-out, a rollback to publish, naming a policy that publishes), and its policies
/// are the document's.
fn check_request(app: &App, function: Function, request: &RunRequest) -> Result<()> {
    let misdirected = [
        (
            "register",
            request.register.is_some(),
            Function::Build,
            "register AMIs",
        ),
        (
            "restore",
            request.restore.is_some(),
            Function::AgeOut,
            "restore AMIs",
        ),
        (
            "recall",
            request.recall.is_some(),
            Function::AgeOut,
            "recall AMIs",
        ),
    ];
    for (field, set, owner, what) in misdirected {
        if set && function != owner {
            return Err(Error::event(
                format!("$.{field}"),
                format!(
                    "{} does not {what}: send it to {}",
                    function.name(),
                    owner.name()
                ),
            ));
        }
    }
    if let Some(pin) = &request.publish {
        if function != Function::Publish {
            return Err(Error::event(
                "$.publish",
                format!(
                    "{} does not publish AMIs: send the rollback to ami-publish",
                    function.name()
                ),
            ));
        }
        check_rollback_policy(app, &pin.policy)?;
    }
    app.check_policies(request.policies.as_deref())
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
pub(super) fn regions_of(app: &App, request: &RunRequest) -> Vec<Region> {
    request
        .regions
        .clone()
        .unwrap_or_else(|| vec![app.settings.home_region.clone()])
}

/// The answer to an event that needs no work: an empty report that says why.
pub(super) async fn ignored<R: Line>(
    app: &App,
    mut run: Run,
    why: String,
) -> std::result::Result<serde_json::Value, Diagnostic> {
    run.ignored = Some(why);
    run.finish::<R>(app, Vec::new(), Vec::new()).await
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
        let Ok(Decision::Act(request)) = crate::jobs::share::request(trigger) else {
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
