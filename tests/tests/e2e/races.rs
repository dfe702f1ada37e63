//! Duplicates and races: the same run invoked twice at once ends with the same account as one
//! delivery (EventBridge delivers at least once; schedules and retries overlap).

use std::collections::BTreeSet;

use e2e_tests::{Function, Invocation, TestBed};
use serde_json::{json, Value};

use e2e_tests::fleet::{actions, age_out, build_fleet, request, state, DEREGISTERED};
use e2e_tests::seed;

/// Invokes both functions with the same payload at the same time.
fn twice_at_once(a: &Function, b: &Function, payload: &Value) -> (Invocation, Invocation) {
    std::thread::scope(|s| {
        let first = s.spawn(|| a.invoke(payload));
        let second = s.spawn(|| b.invoke(payload));
        (first.join().expect("first"), second.join().expect("second"))
    })
}

#[tokio::test]
async fn two_age_out_runs_at_once_leave_the_account_as_one_run_does() {
    let reference = crate::faults::fault_free_reference().await;
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let snapshots_before = crate::faults::snapshots_by_role(&bed, &fleet).await;
    let (a, b) = (age_out(&bed, &[]), age_out(&bed, &[]));
    let planned = a.invoke(&request(true)).ok();

    let (first, second) = twice_at_once(&a, &b, &request(false));

    for report in [first.ok(), second.ok()] {
        assert_eq!(
            report["failed"].as_array().map(Vec::len),
            Some(0),
            "{report}"
        );
        let outcomes: BTreeSet<&str> = report["plan"]
            .as_array()
            .expect("plan")
            .iter()
            .filter_map(|x| x["outcome"].as_str())
            .collect();
        assert!(
            outcomes
                .iter()
                .all(|o| ["done", "already_done", "deleted_with_image"].contains(o)),
            "{outcomes:?}"
        );
    }
    let after = state(&bed).await;
    let remaining: BTreeSet<String> = ["us-east-1", "eu-west-1"]
        .iter()
        .flat_map(|r| after[*r]["images"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_str().map(String::from))
        .collect();
    for role in DEREGISTERED {
        assert!(
            !remaining.contains(fleet.id(role)),
            "{role} deregistered once"
        );
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
    assert!(
        actions(&planned, "delete_snapshot").is_disjoint(&snapshots),
        "every planned snapshot is gone"
    );
    // And a third delivery finds nothing to do.
    assert_eq!(
        a.invoke(&request(false)).ok()["plan"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        crate::faults::account_by_role(&bed, &fleet, &snapshots_before).await,
        reference,
        "the whole account ends as one fault-free run leaves it"
    );
}

#[tokio::test]
async fn two_builds_and_two_copies_at_once_make_each_image_once() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    for _ in 0..3 {
        seed::instance(&ec2, 0, &[("ami-automation:build", "web")]).await;
    }
    let document = r#"{"dry_run": false, "policies": [{"name": "web", "family_by": "tag:Family",
        "build": {"instance_tags": {"ami-automation:build": "web"}},
        "copy": {"regions": {"eu-west-1": {"encrypted": true}}}}]}"#;
    let env = [("AMI_POLICIES", document)];
    let (a, b) = (
        Function::start(&bed, "ami-build", &env),
        Function::start(&bed, "ami-build", &env),
    );
    let (first, second) = twice_at_once(&a, &b, &json!({"as_of": "2026-11-25T10:00:00Z"}));
    let (first, second) = (first.ok(), second.ok());
    let created = [&first, &second]
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["outcome"] == "created")
        .count();
    assert_eq!(created, 3, "each instance imaged once: {first} {second}");
    let images = seed::image_ids(&ec2).await;
    assert_eq!(images.len(), 3);

    let (c, d) = (
        Function::start(&bed, "ami-copy", &env),
        Function::start(&bed, "ami-copy", &env),
    );
    let event = |id: &str| {
        json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": "us-east-1",
               "detail": {"ImageId": id, "State": "available"}})
    };
    for image in &images {
        let (x, y) = twice_at_once(&c, &d, &event(image));
        let (x, y) = (x.ok(), y.ok());
        let started = [&x, &y]
            .iter()
            .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["outcome"] == "started")
            .count();
        assert!(started >= 1, "{x} {y}");
    }
    assert_eq!(
        seed::image_ids(&bed.ec2("eu-west-1").await).await.len(),
        3,
        "one copy per image, however delivered"
    );
}

#[tokio::test]
async fn two_share_sweeps_at_once_leave_the_permissions_the_policy_says() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let mut images = Vec::new();
    for i in 0..4 {
        images.push(seed::image(&ec2, &builder, &format!("web-{i}"), &[("Family", "web-a")]).await);
    }
    let document = r#"{"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
        "share": {"accounts": ["111122223333", "444455556666"], "snapshots": true}}]}"#;
    let env = [("AMI_POLICIES", document)];
    let (a, b) = (
        Function::start(&bed, "ami-share", &env),
        Function::start(&bed, "ami-share", &env),
    );

    let (first, second) = twice_at_once(&a, &b, &json!({}));

    for report in [first.ok(), second.ok()] {
        assert_eq!(report["counts"]["failed"], Value::Null, "{report}");
    }
    for image in &images {
        let accounts = seed::launch_permissions(&ec2, image).await;
        assert_eq!(
            accounts,
            BTreeSet::from(["111122223333".to_string(), "444455556666".to_string()]),
            "{image}"
        );
    }
    let again = a.invoke(&json!({})).ok();
    assert_eq!(again["counts"]["unchanged"], 4, "{again}");
}
