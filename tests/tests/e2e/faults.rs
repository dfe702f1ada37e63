//! Faults between the functions and EC2 — 500s, slow answers, dropped connections, throttling:
//! every run finishes or stops cleanly, reports what is left, and the next run completes the
//! work, with the account ending exactly as a run without faults leaves it.

use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::TestBed;
use serde_json::{json, Value};

use e2e_tests::fleet::{actions, age_out, build_fleet, request, state, Fleet, DEREGISTERED};
use e2e_tests::seed;

#[tokio::test]
async fn age_out_survives_500s_slow_answers_and_dropped_connections() {
    let reference = fault_free_reference().await;
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let snapshots_before = snapshots_by_role(&bed, &fleet).await;
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
    assert_eq!(
        account_by_role(&bed, &fleet, &snapshots_before).await,
        reference,
        "the whole account (images, states, deprecations, permissions, snapshots) ends as a fault-free run leaves it"
    );
    let twice: Vec<(String, usize)> = announcements(&bed)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "announced twice: {twice:?}");
}

#[tokio::test]
async fn build_share_and_copy_defer_what_faults_stop_and_finish_on_the_next_run() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    for _ in 0..2 {
        e2e_tests::seed::instance(&ec2, 0, &[("ami-automation:build", "web")]).await;
    }
    let document = r#"{"dry_run": false, "policies": [{"name": "web", "family_by": "tag:Family",
        "build": {"instance_tags": {"ami-automation:build": "web"}},
        "share": {"accounts": ["111122223333"]},
        "copy": {"regions": {"eu-west-1": {}}}}]}"#;
    let env = [("AMI_POLICIES", document), ("AMI_MAX_ATTEMPTS", "2")];
    let run = serde_json::json!({"as_of": "2026-11-25T10:00:00Z"});

    let build = e2e_tests::Function::start(&bed, "ami-build", &env);
    bed.inject_fault("CreateImage", "InternalError", 3);
    let first = build.invoke(&run).ok();
    let outcomes: Vec<&str> = first["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"deferred") && !outcomes.contains(&"failed"),
        "{first}"
    );
    let second = build.invoke(&run).ok();
    let created: usize = [&first, &second]
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["outcome"] == "created")
        .count();
    assert_eq!(created, 2, "each instance imaged once over the two runs");
    assert_eq!(e2e_tests::seed::image_ids(&ec2).await.len(), 2);

    let share = e2e_tests::Function::start(&bed, "ami-share", &env);
    bed.inject_fault("ModifyImageAttribute", "Unavailable", 3);
    let first = share.invoke(&serde_json::json!({})).ok();
    assert!(
        first["results"]
            .as_array()
            .expect("results")
            .iter()
            .any(|r| r["outcome"] == "deferred"),
        "{first}"
    );
    let second = share.invoke(&serde_json::json!({})).ok();
    assert!(
        second["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["outcome"] == "changed" || r["outcome"] == "unchanged"),
        "{second}"
    );

    let copy = e2e_tests::Function::start(&bed, "ami-copy", &env);
    bed.inject_fault("CopyImage", "DROP", 3);
    let first = copy.invoke(&serde_json::json!({})).ok();
    assert!(
        !first["results"]
            .as_array()
            .expect("results")
            .iter()
            .any(|r| r["outcome"] == "failed"),
        "{first}"
    );
    copy.invoke(&serde_json::json!({})).ok();
    assert_eq!(
        e2e_tests::seed::image_ids(&bed.ec2("eu-west-1").await)
            .await
            .len(),
        2,
        "one copy each, nothing lost or doubled"
    );
}

#[tokio::test]
async fn a_call_that_hangs_is_timed_out_and_the_run_ends_cleanly_reporting_what_is_left() {
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let function = age_out(
        &bed,
        &[("AMI_CALL_TIMEOUT_MS", "1500"), ("AMI_MAX_ATTEMPTS", "2")],
    );
    bed.inject_fault("DeregisterImage", "HANG", 1000);

    let started = std::time::Instant::now();
    let first = function.invoke(&request(false)).ok();

    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the run ended on its own: {:?}",
        started.elapsed()
    );
    assert_eq!(first["complete"], false, "{first}");
    let deregister: Vec<&Value> = first["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter(|a| a["action"] == "deregister")
        .collect();
    assert!(!deregister.is_empty());
    assert!(
        deregister.iter().all(|a| a["outcome"] == "deferred"),
        "a hung call is deferred, not failed: {first}"
    );
    assert!(
        first["remaining"].as_u64() >= Some(deregister.len() as u64),
        "the deferred deregistrations (and their snapshots) are reported as left: {first}"
    );

    // The next run, without the hang, finishes the work.
    bed.inject_fault("DeregisterImage", "HANG", 0);
    let second = function.invoke(&request(false)).ok();
    assert_eq!(second["complete"], true, "{second}");
    let after = state(&bed).await;
    let images: BTreeSet<String> = ["us-east-1", "eu-west-1"]
        .iter()
        .flat_map(|r| after[*r]["images"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["id"].as_str().map(String::from))
        .collect();
    for role in DEREGISTERED {
        assert!(!images.contains(fleet.id(role)), "{role}");
    }
}

fn region_of(role: &str) -> &'static str {
    if role.starts_with("batch") {
        "eu-west-1"
    } else {
        "us-east-1"
    }
}

/// The snapshots of every role's image, before a run.
pub(crate) async fn snapshots_by_role(
    bed: &TestBed,
    fleet: &Fleet,
) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (role, id) in fleet.roles() {
        let ec2 = bed.ec2(region_of(role)).await;
        out.insert(role, seed::snapshots_of(&ec2, id).await);
    }
    out
}

/// The whole account, by role, so that two beds with the same fleet compare: each image's
/// presence, state, deprecation and launch permissions, and how many of its snapshots are left.
pub(crate) async fn account_by_role(
    bed: &TestBed,
    fleet: &Fleet,
    snapshots: &BTreeMap<&'static str, Vec<String>>,
) -> Value {
    let mut out = json!({});
    for (role, id) in fleet.roles() {
        let ec2 = bed.ec2(region_of(role)).await;
        let found = ec2
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .send()
            .await
            .expect("DescribeImages");
        let image = found.images().iter().find(|i| i.image_id() == Some(id));
        let permissions = match image {
            Some(_) => ec2
                .describe_image_attribute()
                .image_id(id)
                .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                .send()
                .await
                .map(|a| a.launch_permissions().len())
                .unwrap_or(0),
            None => 0,
        };
        let left = seed::snapshot_ids(&ec2).await;
        out[role] = json!({
            "exists": image.is_some(),
            "state": image.and_then(|i| i.state()).map(|s| s.as_str().to_string()),
            "deprecated": image.and_then(|i| i.deprecation_time()).is_some(),
            "permissions": permissions,
            "snapshots_left": snapshots[role].iter().filter(|s| left.contains(s)).count(),
        });
    }
    out
}

/// The account, by role, after one fault-free real run over a fresh fleet: what every fault and
/// race test must end with.
pub(crate) async fn fault_free_reference() -> Value {
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let snapshots = snapshots_by_role(&bed, &fleet).await;
    age_out(&bed, &[]).invoke(&request(false)).ok();
    account_by_role(&bed, &fleet, &snapshots).await
}

/// Each (detail-type, resources) announced, with how often.
pub(crate) fn announcements(bed: &TestBed) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in bed.published() {
        if e["detail_type"] == "Policy Run Completed" {
            continue;
        }
        *out.entry(format!("{} {}", e["detail_type"], e["resources"]))
            .or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn a_mutating_call_whose_answer_is_lost_leaves_the_account_as_a_fault_free_run_and_announces_nothing_twice(
) {
    let reference = fault_free_reference().await;

    for call in ["DeregisterImage", "DisableImage", "EnableImageDeprecation"] {
        let bed = TestBed::start();
        let fleet = build_fleet(&bed).await;
        let snapshots = snapshots_by_role(&bed, &fleet).await;
        let function = age_out(&bed, &[]);
        bed.inject_fault(call, "LOSE", 1);

        // EC2 did the call, the client never heard: the SDK retries, or the next run re-plans.
        let _ = function.invoke(&request(false));
        let again = function.invoke(&request(false)).ok();

        assert_eq!(
            again["failed"].as_array().map(Vec::len),
            Some(0),
            "{call}: {again}"
        );
        assert_eq!(
            account_by_role(&bed, &fleet, &snapshots).await,
            reference,
            "{call}: the account ends as a fault-free run leaves it"
        );
        let twice: Vec<(String, usize)> = announcements(&bed)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(twice.is_empty(), "{call}: announced twice: {twice:?}");
    }
}

/// Every launch permission of every image, and every snapshot's createVolumePermission, in a region.
async fn permissions(bed: &TestBed, region: &str) -> BTreeMap<String, (usize, Vec<usize>)> {
    let ec2 = bed.ec2(region).await;
    let mut out = BTreeMap::new();
    for id in seed::image_ids(&ec2).await {
        let launch = ec2
            .describe_image_attribute()
            .image_id(&id)
            .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
            .send()
            .await
            .expect("DescribeImageAttribute")
            .launch_permissions()
            .len();
        let mut volumes = Vec::new();
        for snap in seed::snapshots_of(&ec2, &id).await {
            volumes.push(
                ec2.describe_snapshot_attribute()
                    .snapshot_id(&snap)
                    .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                    .send()
                    .await
                    .expect("DescribeSnapshotAttribute")
                    .create_volume_permissions()
                    .len(),
            );
        }
        out.insert(id, (launch, volumes));
    }
    out
}

#[tokio::test]
async fn build_share_and_copy_calls_whose_answer_is_lost_make_nothing_twice() {
    let document = r#"{"dry_run": false, "policies": [{"name": "web", "family_by": "tag:Family",
        "build": {"instance_tags": {"ami-automation:build": "web"}},
        "share": {"accounts": ["111122223333"], "snapshots": true},
        "copy": {"regions": {"eu-west-1": {}}}}]}"#;
    let env = [("AMI_POLICIES", document)];
    let run = json!({"as_of": "2026-11-25T10:00:00Z"});
    for lose in [
        "CreateImage",
        "RegisterImage",
        "ModifyImageAttribute",
        "ModifySnapshotAttribute",
        "CopyImage",
    ] {
        let bed = TestBed::start();
        let ec2 = bed.ec2("us-east-1").await;
        for _ in 0..2 {
            seed::instance(&ec2, 1, &[("ami-automation:build", "web")]).await;
        }
        let snapshot = seed::snapshot(&ec2, false).await;
        bed.inject_fault(lose, "LOSE", 1);
        let build = e2e_tests::Function::start(&bed, "ami-build", &env);
        let share = e2e_tests::Function::start(&bed, "ami-share", &env);
        let copy = e2e_tests::Function::start(&bed, "ami-copy", &env);
        let register = json!({"register": {"snapshot_id": snapshot, "name": "web-registered", "policy": "web"}});
        // Each function runs twice (the second as the next sweep or a re-delivery).
        for _ in 0..2 {
            let _ = build.invoke(&run);
            let _ = build.invoke(&register);
            let _ = share.invoke(&json!({}));
            let _ = copy.invoke(&json!({}));
        }

        assert_eq!(
            seed::image_ids(&ec2).await.len(),
            3,
            "{lose}: two builds and one registration"
        );
        assert_eq!(
            seed::image_ids(&bed.ec2("eu-west-1").await).await.len(),
            3,
            "{lose}: one copy of each"
        );
        for (id, (launch, volumes)) in permissions(&bed, "us-east-1").await {
            assert_eq!(launch, 1, "{lose}: {id} shared with the one account");
            assert!(
                volumes.iter().all(|v| *v == 1),
                "{lose}: {id}'s snapshots: {volumes:?}"
            );
        }
        let twice: Vec<(String, usize)> = announcements(&bed)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(twice.is_empty(), "{lose}: announced twice: {twice:?}");
        assert!(
            bed.calls().get(lose).copied().unwrap_or(0) >= 1,
            "{lose}: the lost call was made"
        );
    }
}
