//! `ami-distribute`: a sweep queues one sealed unit per target account and region; a batch of
//! units from the queue serves each, and names the units SQS must deliver again.

use chrono::Utc;
use lambda_runtime::Diagnostic;

use super::app::App;
use super::handler::{ignored, Checked, Job};
use super::report::Run;
use crate::domain::function::Function;
use crate::domain::trigger::{QueueRecord, Trigger};
use crate::domain::Decision;
use crate::jobs::distribute::execute::Rejection;
use crate::jobs::distribute::{self, plan, Action, DistributeLine, Outcome, Unit};
use crate::jobs::Context;

/// `ami-distribute`.
#[derive(Debug, Clone, Copy)]
pub struct DistributeJob;

impl Job for DistributeJob {
    const FUNCTION: Function = Function::Distribute;

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
        if let Trigger::Queue { records } = trigger {
            return units(app, &ctx, (run, dry_run), records).await;
        }
        let regions = match distribute::request(trigger)? {
            Decision::Act(regions) => {
                regions.unwrap_or_else(|| plan::regions(&app.document, &app.settings.home_region))
            }
            Decision::Ignore(why) => return ignored::<DistributeLine>(app, run, why).await,
        };
        let lines =
            distribute::execute::sweep(app, &app.document, &regions, dry_run, Utc::now()).await;
        run.finish(app, lines, Vec::new()).await
    }
}

/// Serves each unit of the batch; a unit whose message is not the stack's is refused (and
/// deleted: another delivery would refuse it again), one that failed is delivered again. A unit
/// queued for real runs dry when the document now says `dry_run` (`document_dry`): turning
/// `dry_run` on stops the units already queued too.
async fn units(
    app: &App,
    ctx: &Context<'_, App>,
    (mut run, document_dry): (Run, bool),
    records: Vec<QueueRecord>,
) -> std::result::Result<serde_json::Value, Diagnostic> {
    let now = Utc::now();
    let mut lines = Vec::new();
    let mut events = Vec::new();
    let mut retry = Vec::new();
    for record in records {
        let unit: Unit = match serde_json::from_str(&record.body) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(message = %record.message_id, error = %e, "not a unit of the stack: refused");
                continue;
            }
        };
        if let Some(rejection) = distribute::execute::check(app, &unit, now).await {
            let line = DistributeLine::new(&unit.account, &unit.region, Action::Unit);
            lines.push(match rejection {
                Rejection::Refuse(why) => {
                    tracing::warn!(message = %record.message_id, reason = %why, "unit refused");
                    line.with(Outcome::Refused, format!("not acted on: {why}"))
                }
                Rejection::Retry(why) => {
                    retry.push(record.message_id.clone());
                    line.with(Outcome::Failed, format!("not acted on yet: {why}"))
                }
            });
            continue;
        }
        let unit = Unit {
            dry_run: unit.dry_run || document_dry,
            ..unit
        };
        let served = distribute::execute::unit(ctx, &unit, now).await;
        if distribute::retry(&served) {
            retry.push(record.message_id.clone());
        }
        if !unit.dry_run {
            events.extend(distribute::events(&unit.account, &unit.region, &served));
        }
        run.dry_run = unit.dry_run;
        lines.extend(served);
    }
    run.finish_batch(app, lines, events, retry).await
}
