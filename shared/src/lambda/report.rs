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

/// The largest answer: Lambda's invocation response (and an error's payload) is at most 6 MB
/// (Lambda quotas, "Invocation payload"); a larger report would not reach the caller at all.
pub const MAX_ANSWER_BYTES: usize = 5 * 1024 * 1024;

/// Items kept of each long list of a report too large to answer whole.
pub const KEPT_LINES: usize = 1000;

/// A report as it can be answered: whole when it fits in [`MAX_ANSWER_BYTES`]; otherwise every
/// list keeps its first items (fewer until it fits), `truncated` says how many each left out,
/// and every item left out goes to the log as one JSON line (`report line`), so nothing is lost
/// and the answer is still one valid JSON document.
pub fn fit(mut json: serde_json::Value) -> serde_json::Value {
    let size = json.to_string().len();
    if size <= MAX_ANSWER_BYTES {
        return json;
    }
    let mut keep = KEPT_LINES;
    let mut omitted: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        for (path, items) in crate::domain::event::shorten_lists(&mut json, keep) {
            for item in &items {
                tracing::info!(path = %path, line = %item, "report line");
            }
            *omitted.entry(path).or_insert(0) += items.len();
        }
        if json.to_string().len() <= MAX_ANSWER_BYTES || keep == 0 {
            break;
        }
        keep /= 10;
    }
    if let Some(object) = json.as_object_mut() {
        object.insert(
            "truncated".into(),
            serde_json::json!({"bytes": size, "kept_per_list": keep, "omitted": omitted,
                "logged_as": "report line"}),
        );
    }
    json
}

/// The invocation's answer: the report, or, when part of the work failed, a `PartialFailure`
/// error carrying the whole report (so retries, the failure queue and the alarms see it); a
/// report too large for Lambda's answer is shortened by [`fit`].
pub fn answer<R: Serialize>(
    report: &R,
    partial_failure: bool,
) -> Result<serde_json::Value, Diagnostic> {
    let json = fit(to_json(report)?);
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
    /// Publishes the events (none in a dry run), logs the summary line and answers with the
    /// report.
    pub async fn finish<R: Line>(
        self,
        app: &App,
        results: Vec<R>,
        events: Vec<Event>,
    ) -> Result<serde_json::Value, Diagnostic> {
        // A dry run changes nothing, so it announces nothing.
        let events = if self.dry_run { Vec::new() } else { events };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_too_large_for_lambda_is_shortened_to_valid_json_that_says_so() {
        let line = serde_json::json!({"action": "deregister", "image_id": "ami-0123456789abcdef0",
            "reason": "x".repeat(200), "outcome": "done"});
        let report =
            serde_json::json!({"complete": true, "plan": vec![line; 40_000], "failed": []});
        assert!(report.to_string().len() > MAX_ANSWER_BYTES);
        let answer = fit(report);
        let text = answer.to_string();
        assert!(text.len() <= MAX_ANSWER_BYTES, "{}", text.len());
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        assert_eq!(answer["complete"], true);
        assert_eq!(answer["plan"].as_array().map(Vec::len), Some(KEPT_LINES));
        assert_eq!(
            answer["truncated"]["omitted"]["$.plan"],
            40_000 - KEPT_LINES
        );
        // A report that fits is answered whole.
        let small = serde_json::json!({"plan": [1, 2, 3]});
        assert_eq!(fit(small.clone()), small);
    }
}
