//! Metrics as CloudWatch Embedded Metric Format lines (CloudWatch User Guide, "Specification:
//! Embedded metric format"): JSON log lines that CloudWatch Logs turns into metrics in the
//! `AmiLifecycle` namespace, with no API call. Each line names its dimensions and metrics in
//! `_aws.CloudWatchMetrics`, and carries their values as top-level members. Dry runs send none.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::jobs::ageout::{Outcome, Report};
use crate::jobs::label;

/// The metrics' namespace.
pub const NAMESPACE: &str = "AmiLifecycle";

/// One EMF line: `dimensions` (name → value) and `metrics` (name, unit, value).
pub fn line(
    timestamp_ms: i64,
    dimensions: &[(&str, String)],
    metrics: &[(&str, &str, f64)],
) -> Value {
    let mut out = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        },
    });
    for (k, v) in dimensions {
        out[*k] = json!(v);
    }
    for (name, _, value) in metrics {
        out[*name] = json!(value);
    }
    out
}

/// The lines of an age-out run, per policy: actions by type and outcome, images kept by
/// reason, and the run's deferred and failed actions and bytes freed.
pub fn age_out(report: &Report, sweep: bool, timestamp_ms: i64) -> Vec<Value> {
    if report.dry_run {
        return Vec::new();
    }
    let function = report.function.to_string();
    let mut actions: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut per_policy: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for a in &report.plan {
        let policy = a.action.policy.clone();
        *actions
            .entry((policy.clone(), label(&a.action.kind), label(&a.outcome)))
            .or_insert(0.0) += 1.0;
        let totals = per_policy.entry(policy).or_insert([0.0; 3]);
        match a.outcome {
            Outcome::Deferred => totals[0] += 1.0,
            Outcome::Failed => totals[1] += 1.0,
            Outcome::Done | Outcome::DeletedWithImage => {
                totals[2] += a.action.bytes.unwrap_or(0) as f64
            }
            _ => {}
        }
    }
    let mut kept: BTreeMap<(String, String), f64> = BTreeMap::new();
    for k in report.regions.iter().flat_map(|r| &r.kept) {
        per_policy.entry(k.policy.clone()).or_insert([0.0; 3]);
        *kept
            .entry((k.policy.clone(), label(&k.reason)))
            .or_insert(0.0) += 1.0;
    }
    let deferred: f64 = per_policy.values().map(|t| t[0]).sum();
    let mut out: Vec<Value> = sweep
        .then(|| run_deferred(&function, deferred, timestamp_ms))
        .into_iter()
        .collect();
    for (policy, [deferred, failed, bytes]) in &per_policy {
        out.push(line(
            timestamp_ms,
            &[("Function", function.clone()), ("Policy", policy.clone())],
            &[
                ("Deferred", "Count", *deferred),
                ("Failed", "Count", *failed),
                ("BytesFreed", "Bytes", *bytes),
            ],
        ));
    }
    for ((policy, action, outcome), n) in actions {
        out.push(line(
            timestamp_ms,
            &[
                ("Function", function.clone()),
                ("Policy", policy),
                ("Action", action),
                ("Outcome", outcome),
            ],
            &[("Actions", "Count", n)],
        ));
    }
    for ((policy, reason), n) in kept {
        out.push(line(
            timestamp_ms,
            &[
                ("Function", function.clone()),
                ("Policy", policy),
                ("Reason", reason),
            ],
            &[("Kept", "Count", n)],
        ));
    }
    out
}

/// The lines of a build, share, copy or publish run: its results by outcome, and, for a
/// scheduled sweep, what it deferred ([`run_deferred`]).
pub fn results(
    function: &str,
    counts: &BTreeMap<String, usize>,
    dry_run: bool,
    sweep: bool,
    timestamp_ms: i64,
) -> Vec<Value> {
    if dry_run {
        return Vec::new();
    }
    let deferred = counts.get("deferred").copied().unwrap_or(0) as f64;
    sweep
        .then(|| run_deferred(function, deferred, timestamp_ms))
        .into_iter()
        .chain(counts.iter().map(|(outcome, n)| {
            line(
                timestamp_ms,
                &[
                    ("Function", function.to_string()),
                    ("Outcome", outcome.clone()),
                ],
                &[("Results", "Count", *n as f64)],
            )
        }))
        .collect()
}

/// The work a scheduled sweep of `function` left for the next run (throttled, out of time, SSM
/// still validating), by function alone, every real sweep (0 included):
/// `PersistentDeferralAlarm` fires when every sweep of several periods in a row deferred some,
/// which no single run's error shows. Only sweeps count: a run for one event or one region
/// that deferred nothing says nothing of the others, and anyone who can make an AMI could send
/// such runs to keep the alarm quiet.
pub fn run_deferred(function: &str, deferred: f64, timestamp_ms: i64) -> Value {
    line(
        timestamp_ms,
        &[("Function", function.to_string())],
        &[("Deferred", "Count", deferred)],
    )
}

/// Writes the lines to standard output, where Lambda sends them to CloudWatch Logs.
pub fn emit(lines: &[Value]) {
    for l in lines {
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_a_line_names_is_a_number_beside_its_dimensions() {
        let l = line(
            1_700_000_000_000,
            &[("Function", "ami-age-out".into()), ("Policy", "web".into())],
            &[
                ("BytesFreed", "Bytes", 8.0 * 1073741824.0),
                ("Failed", "Count", 0.0),
            ],
        );
        let directive = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(l["_aws"]["Timestamp"], 1_700_000_000_000i64);
        for d in directive["Dimensions"][0]
            .as_array()
            .expect("a dimension set")
        {
            assert!(l[d.as_str().unwrap_or_default()].is_string(), "{d}");
        }
        let metrics = directive["Metrics"].as_array().expect("metrics");
        assert!(metrics.len() <= 100, "EMF allows 100 metrics per directive");
        for m in metrics {
            assert!(l[m["Name"].as_str().unwrap_or_default()].is_number(), "{m}");
        }
        assert_eq!(l["BytesFreed"], 8589934592.0);
    }

    #[test]
    fn every_real_run_says_how_much_it_deferred_by_function_alone() {
        let counts = BTreeMap::from([("deferred".to_string(), 2), ("published".to_string(), 1)]);
        let lines = results("ami-publish", &counts, false, true, 0);
        let by_function: Vec<&Value> = lines
            .iter()
            .filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] == json!(["Function"]))
            .collect();
        assert_eq!(by_function.len(), 1, "{lines:?}");
        assert_eq!(by_function[0]["Deferred"], 2.0);
        assert_eq!(by_function[0]["Function"], "ami-publish");
        let none = results("ami-publish", &BTreeMap::new(), false, true, 0);
        assert_eq!(
            none[0]["Deferred"], 0.0,
            "a sweep that deferred nothing says 0"
        );
        assert!(
            results("ami-publish", &counts, true, true, 0).is_empty(),
            "dry runs send none"
        );
        let event = results("ami-publish", &BTreeMap::new(), false, false, 0);
        assert!(
            event.iter().all(|l| l.get("Deferred").is_none()),
            "a run for one event says nothing of the sweep"
        );
    }
}
