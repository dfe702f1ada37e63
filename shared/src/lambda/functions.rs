//! The five functions' jobs behind the common prologue ([`super::handler`]): each maps its
//! trigger to its job's request (the mapping lives in the job), runs it and answers.

use lambda_runtime::Diagnostic;

use super::app::App;
use super::continuation::continue_run;
use super::handler::{ignored, regions_of, Checked, Job};
use super::metrics;
use super::report::answer;
use crate::domain::function::Function;
use crate::domain::trigger::TriggerKind;
use crate::domain::Decision;
use crate::jobs::{ageout, build, copy, publish, recall, share};

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
        let (request, sweep) = ageout::request(trigger)?;
        let regions = regions_of(app, &request);
        if let Some(restore) = &request.restore {
            let results = ageout::restore::run(&ctx, &restore.image_ids, &regions, dry_run).await;
            let events = ageout::restore::events(&results);
            return run.finish(app, results, events).await;
        }
        if let Some(recall) = &request.recall {
            let regions = recall::regions(&app.document, &app.settings.home_region, &request);
            let mut lines =
                recall::run(&ctx, recall, &regions, dry_run, chrono::Utc::now()).await?;
            recall_continues(app, &mut lines, &request, dry_run, &run_id).await;
            let events = recall::events(&lines, recall);
            return run.finish(app, lines, events).await;
        }
        let mut report = ageout::run(&ctx, &request, &regions, dry_run, app.events()).await;
        if !report.complete {
            let progress = ageout::continuation::Progress::of(&report);
            report.continued = Some(continue_run(app, &progress, &request, &run_id).await);
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

/// A recall cut by its deadline continues like an age-out backlog: the same request, sealed,
/// once nothing failed and something was done; the lines it takes say so.
async fn recall_continues(
    app: &App,
    lines: &mut [recall::RecallLine],
    request: &crate::domain::trigger::RunRequest,
    dry_run: bool,
    run_id: &str,
) {
    let left = recall::left_for_later(lines);
    if left == 0 {
        return;
    }
    let progress = ageout::continuation::Progress {
        complete: false,
        remaining: left,
        dry_run,
        failed: lines.iter().any(|l| {
            l.outcome == recall::RecallOutcome::Failed
                || (l.outcome == recall::RecallOutcome::Deferred
                    && l.error.as_deref() != Some(crate::jobs::PAST_DEADLINE))
        }),
        progressed: lines.iter().any(|l| {
            matches!(
                l.outcome,
                recall::RecallOutcome::Recalled | recall::RecallOutcome::Undone
            )
        }),
    };
    let continued = continue_run(app, &progress, request, run_id).await;
    match continued.next {
        Some(_) => recall::continued(lines),
        None => recall::not_continued(lines, continued.why_not.as_deref().unwrap_or_default()),
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
        let request = match share::request(trigger)? {
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
        let request = match copy::request(trigger)? {
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
        let home = &app.settings.home_region;
        let request = match publish::request(app, trigger, home).await? {
            Decision::Act(request) => request,
            Decision::Ignore(why) => {
                return ignored::<publish::PublishResult>(app, run, why).await;
            }
        };
        let now = request.as_of.unwrap_or_else(chrono::Utc::now);
        let results = match &request.publish {
            Some(pin) => {
                let regions = publish::regions(&app.document, home, &request, Some(&pin.policy));
                publish::rollback(&ctx, pin, &regions, dry_run, now).await
            }
            None => {
                let regions = publish::regions(&app.document, home, &request, None);
                publish::run(&ctx, &request, &regions, dry_run, now).await
            }
        };
        let events = publish::events(&results);
        run.finish(app, results, events).await
    }
}
