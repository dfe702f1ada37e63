//! Faults between the functions and EC2 — 500s, slow answers, dropped connections, throttling:
//! every run finishes or stops cleanly, reports what is left, and the next run completes the
//! work, with the account ending exactly as a run without faults leaves it.

use std::collections::BTreeSet;

use e2e_tests::TestBed;
use serde_json::Value;

use crate::age_out::{actions, age_out, build_fleet, request, state, DEREGISTERED};

#[tokio::test]
async fn age_out_survives_500s_slow_answers_and_dropped_connections() {
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let function = age_out(&bed, &[("AMI_MAX_ATTEMPTS", "2")]);
    let planned = function.invoke(&request(true)).ok();
    bed.inject_fault("DescribeImages", "SLOW:1500", 1);
    bed.inject_fault("DescribeSnapshots", "DROP", 1);
    bed.inject_fault("EnableImageDeprecation", "DROP", 1);
    bed.inject_fault("DeregisterImage", "InternalError", 9);

    let first = function.invoke(&request(false)).ok();

    assert_eq!(
        first["failed"].as_array().map(Vec::len),
        Some(0),
        "a fault is not a failure: {first}"
    );
    let outcomes: BTreeSet<&str> = first["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|o| ["done", "already_done", "deleted_with_image", "deferred"].contains(o)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains("deferred"),
        "persistent 500s left work for the next run: {outcomes:?}"
    );
    assert_eq!(first["complete"], false);

    let second = function.invoke(&request(false)).ok();
    assert_eq!(second["complete"], true, "{second}");
    assert_eq!(second["failed"].as_array().map(Vec::len), Some(0));

    // The account ends as a fault-free run leaves it.
    let after = state(&bed).await;
    let images: BTreeSet<String> = ["us-east-1", "eu-west-1"]
        .iter()
        .flat_map(|r| after[*r]["images"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_str().map(String::from))
        .collect();
    for role in DEREGISTERED {
        assert!(!images.contains(fleet.id(role)), "{role}");
    }
    let snapshots: BTreeSet<String> = ["us-east-1", "eu-west-1"]
        .iter()
        .flat_map(|r| {
            after[*r]["snapshots"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    assert!(actions(&planned, "delete_snapshot").is_disjoint(&snapshots));
    let image = |role: &str| -> Value {
        after["us-east-1"]["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["id"] == fleet.id(role))
            .cloned()
            .expect(role)
    };
    assert_eq!(image("a4_disable")["state"], "disabled");
    assert!(image("a3_deprecate")["deprecation"].is_string());
    assert_eq!(
        function.invoke(&request(false)).ok()["plan"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "nothing left"
    );
}
