//! The invocation's answer: the report of a build, share or copy run, and the partial-failure
//! error that carries it when part of the work failed.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;

use super::app::App;
use crate::domain::event::{Event, Published};
use crate::domain::trigger::TriggerKind;
use crate::jobs::{count, Line};
use crate::ports::EventSink;

/// The largest answer: Lambda's invocation response (and an error's payload) is at most 6 MB
/// (Lambda quotas, "Invocation payload"); a larger report would not reach the caller at all.
pub const MAX_ANSWER_BYTES: usize = 5 * 1024 * 1024;

/// Items kept of each long list of a report too large to answer whole.
pub const KEPT_LINES: usize = 1000;

/// A report whose long lists can be cut so that it fits in Lambda's answer.
pub trait Shorten: Serialize {
    /// Keeps the first `keep` items of each long list; every item cut is handed to `cut` as
    /// one JSON line, with the JSON path of its list.
    fn shorten(&mut self, keep: usize, cut: &mut dyn FnMut(&str, String));
}

/// Cuts `list` to its first `keep` items, handing each item cut to `cut` as a JSON line.
pub fn cut_list<T: Serialize>(
    list: &mut Vec<T>,
    keep: usize,
    path: &str,
    cut: &mut dyn FnMut(&str, String),
) {
    if list.len() > keep {
        for item in list.drain(keep..) {
            cut(path, serde_json::to_string(&item).unwrap_or_default());
        }
    }
}

/// The length of a value's JSON, counted without writing it anywhere.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter fails only where the value cannot be JSON at all; the answer's
    // own writing reports that.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The report as one JSON document Lambda can answer: whole when it fits in
/// [`MAX_ANSWER_BYTES`]; otherwise every long list keeps its first items (fewer until it fits),
/// `truncated` says how many each left out, and every item left out goes to the log as one JSON
/// line (`report line`), so nothing is lost and the answer is still one valid JSON document.
///
/// The report is measured without being written, cut as data, and written once at a size that
/// fits: never held whole as text or as a JSON tree (a tree of a large report takes several
/// times its text), so memory stays near the size of the report itself.
pub fn fit<R: Shorten>(report: &mut R) -> Result<serde_json::Value, Diagnostic> {
    let size = encoded_len(report);
    let mut truncated = None;
    if size > MAX_ANSWER_BYTES {
        let mut keep = KEPT_LINES;
        let mut omitted: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            report.shorten(keep, &mut |path, line| {
                tracing::info!(path = %path, line = %line, "report line");
                *omitted.entry(path.to_string()).or_insert(0) += 1;
            });
            if encoded_len(report) <= MAX_ANSWER_BYTES || keep == 0 {
                break;
            }
            keep /= 10;
        }
        truncated = Some(serde_json::json!({"bytes": size, "kept_per_list": keep,
            "omitted": omitted, "logged_as": "report line"}));
    }
    // Written once, at a size that fits.
    let text = serde_json::to_string(report).map_err(|e| Diagnostic {
        error_type: "InternalError".into(),
        error_message: format!("the report could not be written as JSON: {e}"),
    })?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Diagnostic {
        error_type: "InternalError".into(),
        error_message: format!("the report could not be read back: {e}"),
    })?;
    if let (Some(t), Some(object)) = (truncated, json.as_object_mut()) {
        object.insert("truncated".into(), t);
    }
    Ok(json)
}

/// The invocation's answer: the report, or, when part of the work failed, a `PartialFailure`
/// error carrying the whole report (so retries, the failure queue and the alarms see it); a
/// report too large for Lambda's answer is shortened by [`fit`].
pub fn answer<R: Shorten>(
    report: &mut R,
    partial_failure: bool,
) -> Result<serde_json::Value, Diagnostic> {
    let json = fit(report)?;
    if partial_failure {
        return Err(Diagnostic {
            error_type: "PartialFailure".into(),
            error_message: json.to_string(),
        });
    }
    Ok(json)
}

impl<R: Serialize> Shorten for Report<R> {
    fn shorten(&mut self, keep: usize, cut: &mut dyn FnMut(&str, String)) {
        cut_list(&mut self.results, keep, "$.results", cut);
        cut_list(&mut self.events.failed, keep, "$.events.failed", cut);
    }
}

impl Shorten for crate::jobs::ageout::Report {
    fn shorten(&mut self, keep: usize, cut: &mut dyn FnMut(&str, String)) {
        cut_list(&mut self.plan, keep, "$.plan", cut);
        cut_list(&mut self.failed, keep, "$.failed", cut);
        cut_list(&mut self.events.failed, keep, "$.events.failed", cut);
        for (i, r) in self.regions.iter_mut().enumerate() {
            let at = |list: &str| format!("$.regions[{i}].{list}");
            cut_list(&mut r.kept, keep, &at("kept"), cut);
            cut_list(&mut r.snapshots_kept, keep, &at("snapshots_kept"), cut);
            cut_list(&mut r.orphans, keep, &at("orphans"), cut);
            cut_list(&mut r.warnings, keep, &at("warnings"), cut);
            cut_list(&mut r.evidence_gaps, keep, &at("evidence_gaps"), cut);
            cut_list(&mut r.usage_reports, keep, &at("usage_reports"), cut);
        }
    }
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
        let (mut report, failed) = self.settle(app, results, events).await;
        answer(&mut report, failed)
    }

    /// Finishes the run of an SQS batch: the answer names the messages SQS delivers again
    /// (`batchItemFailures`, with the event source mapping's `ReportBatchItemFailures`), and
    /// the invocation itself succeeds, so that the messages served are deleted.
    pub async fn finish_batch<R: Line>(
        self,
        app: &App,
        results: Vec<R>,
        events: Vec<Event>,
        retry: Vec<String>,
    ) -> Result<serde_json::Value, Diagnostic> {
        let (mut report, _) = self.settle(app, results, events).await;
        let mut json = answer(&mut report, false)?;
        let failures: Vec<serde_json::Value> = retry
            .into_iter()
            .map(|id| serde_json::json!({"itemIdentifier": id}))
            .collect();
        if let Some(object) = json.as_object_mut() {
            object.insert("batchItemFailures".into(), failures.into());
        }
        Ok(json)
    }

    /// Publishes the events and makes the report; whether it is a partial failure.
    async fn settle<R: Line>(
        self,
        app: &App,
        results: Vec<R>,
        events: Vec<Event>,
    ) -> (Report<R>, bool) {
        // A dry run changes nothing, so it announces nothing.
        let events = if self.dry_run { Vec::new() } else { events };
        let published = app.events().publish(events).await;
        // An event EventBridge did not take is lost to whoever acts on it: a partial failure.
        let failed = results.iter().any(Line::failed) || !published.failed.is_empty();
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
            report.trigger == TriggerKind::Scheduled,
            chrono::Utc::now().timestamp_millis(),
        ));
        (report, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_too_large_for_lambda_is_shortened_to_valid_json_that_says_so() {
        let line = serde_json::json!({"action": "deregister", "image_id": "ami-0123456789abcdef0",
            "reason": "x".repeat(200), "outcome": "done"});
        let mut report = Report {
            function: "ami-share",
            trigger: TriggerKind::RunRequest,
            dry_run: true,
            window: None,
            counts: BTreeMap::new(),
            results: vec![line; 40_000],
            ignored: None,
            events: Published::default(),
            elapsed_ms: 0,
        };
        assert!(serde_json::to_string(&report).map_or(0, |t| t.len()) > MAX_ANSWER_BYTES);
        let answer = fit(&mut report).expect("an answer");
        let text = answer.to_string();
        assert!(text.len() <= MAX_ANSWER_BYTES + 1024, "{}", text.len());
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        assert_eq!(answer["dry_run"], true);
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(KEPT_LINES));
        assert_eq!(
            answer["truncated"]["omitted"]["$.results"],
            40_000 - KEPT_LINES
        );
        // A report that fits is answered whole.
        let mut small = Report {
            results: vec![1, 2, 3],
            function: "ami-share",
            trigger: TriggerKind::RunRequest,
            dry_run: true,
            window: None,
            counts: BTreeMap::new(),
            ignored: None,
            events: Published::default(),
            elapsed_ms: 0,
        };
        let whole = fit(&mut small).expect("an answer");
        assert_eq!(whole["results"], serde_json::json!([1, 2, 3]));
        assert!(whole.get("truncated").is_none());
    }
}
