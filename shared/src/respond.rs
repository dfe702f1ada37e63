//! What the functions have in common around their work: turning a trigger into a run request,
//! counting outcomes, and answering the invocation.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use lambda_runtime::Diagnostic;
use serde::Serialize;

use crate::app::App;
use crate::error::{Error, Result};
use crate::publish::{to_json, Event, EventSink, Published};
use crate::trigger::{RunRequest, Trigger};

/// For the functions that act on available AMIs (share, copy): the run request a trigger asks
/// for, or (in `Ok(Err(..))`) why the event needs no work. A schedule sweeps its region; an
/// `EC2 AMI State Change` to `available` names one image.
pub fn ami_request(
    app: &App,
    trigger: Trigger,
    function: &str,
) -> Result<std::result::Result<RunRequest, String>> {
    match trigger {
        Trigger::Run(r) if r.register.is_some() => {
            Err(Error::event("$.register", format!("{function} does not register AMIs: send it to ami-build")))
        }
        Trigger::Run(r) => {
            app.check_policies(r.policies.as_deref())?;
            Ok(Ok(r))
        }
        Trigger::Scheduled { region, .. } => {
            Ok(Ok(RunRequest { regions: region.map(|r| vec![r]), ..RunRequest::default() }))
        }
        Trigger::AmiState { region, detail } if detail.state == "available" => Ok(Ok(RunRequest {
            regions: region.map(|r| vec![r]),
            image_ids: Some(vec![detail.image_id]),
            ..RunRequest::default()
        })),
        Trigger::AmiState { detail, .. } => Ok(Err(format!(
            "image {} is {}: {function} acts only on `available` AMIs",
            detail.image_id, detail.state
        ))),
        other => Err(Error::event(
            "$.detail-type",
            format!("{function} runs on a schedule, a run request or `EC2 AMI State Change`, not on `{}`", other.kind()),
        )),
    }
}

/// The serde name of a value (the outcome labels of the reports).
pub fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Counts by label.
pub fn count<'a, T: Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(label(v)).or_insert(0) += 1;
    }
    counts
}

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

/// One line of a build, share or copy report.
pub trait Line: Serialize {
    /// What happened to it (its serde name is counted).
    type Outcome: Serialize;
    /// What happened to it.
    fn outcome(&self) -> &Self::Outcome;
    /// Whether it makes the invocation a partial failure (refused or failed).
    fn failed(&self) -> bool;
}

/// The response of the build, share and copy functions: one line per thing considered.
#[derive(Debug, Clone, Serialize)]
pub struct Report<R> {
    /// The function.
    pub function: &'static str,
    /// What triggered it.
    pub trigger: &'static str,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The schedule window names were made from (build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<DateTime<Utc>>,
    /// Counts by outcome.
    pub counts: BTreeMap<String, usize>,
    /// One line per instance, snapshot, AMI or copy.
    pub results: Vec<R>,
    /// Why the event was acknowledged without work, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// Events published.
    pub events: Published,
    /// Wall time.
    pub elapsed_ms: u128,
}

/// An invocation in progress: what the report says besides its lines.
#[derive(Debug)]
pub struct Run {
    /// The function.
    pub function: &'static str,
    /// What triggered it.
    pub trigger: &'static str,
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
        tracing::info!(function = report.function, trigger = report.trigger, dry_run = report.dry_run,
            counts = %serde_json::to_string(&report.counts).unwrap_or_default(), "run finished");
        answer(&report, failed)
    }
}
