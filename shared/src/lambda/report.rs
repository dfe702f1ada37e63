//! The invocation's answer: the report of a build, share or copy run, and the partial-failure
//! error that carries it when part of the work failed.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;

use super::app::App;
use crate::domain::event::{to_json, Event, Published};
use crate::domain::trigger::TriggerKind;
use crate::jobs::{count, Line};
use crate::ports::EventSink;

/// The invocation's answer: the report, or, when part of the work failed, a `PartialFailure`
/// error carrying the whole report (so retries, the failure queue and the alarms see it).
pub fn answer<R: Serialize>(
    report: &R,
    partial_failure: bool,
) -> Result<serde_json::Value, Diagnostic> {
    let json = to_json(report)?;
    if partial_failure {
        return Err(Diagnostic {
            error_type: "PartialFailure".into(),
            error_message: json.to_string(),
        });
    }
    Ok(json)
}

/// The response of the build, share and copy functions: one line per thing considered.
#[derive(Debug, Clone, Serialize)]
pub struct Report<R> {
    pub function: &'static str,
    pub trigger: TriggerKind,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The schedule window names were made from (build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<DateTime<Utc>>,
    pub counts: BTreeMap<String, usize>,
    /// One line per instance, snapshot, AMI or copy.
    pub results: Vec<R>,
    /// Why the event was acknowledged without work, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    pub events: Published,
    pub elapsed_ms: u128,
}

/// An invocation in progress: what the report says besides its lines.
#[derive(Debug)]
pub struct Run {
    pub function: &'static str,
    pub trigger: TriggerKind,
    /// Nothing is changed.
    pub dry_run: bool,
    /// The schedule window (build).
    pub window: Option<DateTime<Utc>>,
    /// Why the event needs no work, when it does not.
    pub ignored: Option<String>,
    /// When the invocation started.
    pub started: Instant,
}

impl Run {
    /// Publishes the events, logs the summary line and answers with the report.
    pub async fn finish<R: Line>(
        self,
        app: &App,
        results: Vec<R>,
        events: Vec<Event>,
    ) -> Result<serde_json::Value, Diagnostic> {
        let published = app.events().publish(events).await;
        let failed = results.iter().any(Line::failed);
        let report = Report {
            function: self.function,
            trigger: self.trigger,
            dry_run: self.dry_run,
            window: self.window,
            counts: count(results.iter().map(Line::outcome)),
            results,
            ignored: self.ignored,
            events: published,
            elapsed_ms: self.started.elapsed().as_millis(),
        };
        tracing::info!(function = report.function, trigger = %report.trigger, dry_run = report.dry_run,
            counts = %serde_json::to_string(&report.counts).unwrap_or_default(), "run finished");
        super::metrics::emit(&super::metrics::results(
            report.function,
            &report.counts,
            report.dry_run,
            chrono::Utc::now().timestamp_millis(),
        ));
        answer(&report, failed)
    }
}
