//! `ami-age-out` end to end: the real binary, driven through the Lambda runtime API, against a
//! fleet in the test bed with every case the safety rules name.

use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::fleet::*;
use e2e_tests::seed;
use e2e_tests::{Function, TestBed};
use serde_json::{json, Value};

#[tokio::test]
async fn a_dry_run_reports_the_exact_plan_and_changes_nothing() {
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let before = state(&bed).await;
    let function = age_out(&bed, &[]);

    let report = function.invoke(&request(true)).ok();

    assert_eq!(report["dry_run"], true);
    assert_eq!(report["complete"], true);
    let ids = |roles: &[&str]| -> BTreeSet<String> {
        roles.iter().map(|r| fleet.id(r).to_string()).collect()
    };
    assert_eq!(actions(&report, "deprecate"), ids(&["a3_deprecate"]));
    assert_eq!(actions(&report, "disable"), ids(&["a4_disable"]));
    assert_eq!(
        actions(&report, "deregister"),
        ids(DEREGISTERED),
        "warnings: {}",
        report["regions"][0]["warnings"]
    );
    let mut doomed = snapshots_of_all(&bed, &fleet, DEREGISTERED).await;
    doomed.remove(&fleet.shared_snapshot);
    // This plan-level assertion (with `snapshots_kept` below) is what guards the planner's
    // shared-snapshot rule: in a real run the test bed itself refuses to delete a snapshot a
    // registered AMI uses (DeleteAssociatedSnapshots keeps it, DeleteSnapshot answers
    // InvalidSnapshot.InUse, as EC2 does), so the account would look right either way.
    assert_eq!(
        actions(&report, "delete_snapshot"),
        doomed,
        "every snapshot of the deregistered AMIs but the shared one"
    );
    assert!(report["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .all(|a| a["outcome"] == "planned"));

    let kept: BTreeMap<String, String> = report["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .flat_map(|r| r["kept"].as_array().cloned().unwrap_or_default())
        .map(|k| {
            (
                k["image_id"].as_str().unwrap_or_default().to_string(),
                k["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expect = [
        ("a1_newest", "keep_latest"),
        ("a2_second", "keep_latest"),
        ("a6_running", "in_use_by_instance"),
        ("a7_stopped", "in_use_by_instance"),
        ("a9_protected", "protect_tag"),
        ("a11_lt_old", "in_use_by_launch_template"),
        ("a12_lt_default", "in_use_by_launch_template"),
        ("a13_lt_latest", "in_use_by_launch_template"),
        ("a16_ssm", "referenced"),
        ("a17_dereg_protected", "deregistration_protection"),
        ("b1_newest", "keep_latest"),
        ("b2_second", "keep_latest"),
        ("batch_new", "keep_latest"),
    ];
    for (role, reason) in expect {
        assert_eq!(
            kept.get(fleet.id(role)).map(String::as_str),
            Some(reason),
            "{role}"
        );
    }
    assert!(
        !kept.contains_key(&fleet.foreign)
            && !actions(&report, "deregister").contains(&fleet.foreign)
    );
    let shared_kept = report["regions"][0]["snapshots_kept"]
        .as_array()
        .expect("snapshots_kept");
    assert!(shared_kept
        .iter()
        .any(|s| s["snapshot_id"] == fleet.shared_snapshot.as_str()
            && s["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(fleet.id("b1_newest"))));

    assert_eq!(state(&bed).await, before, "a dry run changes nothing");
    let events = bed.published();
    assert_eq!(events.len(), 1, "a dry run announces only its summary");
    assert_eq!(events[0]["detail_type"], "Policy Run Completed");
    assert_eq!(events[0]["detail"]["dry_run"], true);
}

#[tokio::test]
async fn a_real_run_leaves_the_account_exactly_as_planned_and_a_second_run_does_nothing() {
    let bed = TestBed::start();
    let fleet = build_fleet(&bed).await;
    let function = age_out(&bed, &[]);
    let planned = function.invoke(&request(true)).ok();
    let doomed_snapshots = actions(&planned, "delete_snapshot");
    let all_snapshots_before: BTreeSet<String> = {
        let mut s: BTreeSet<String> = seed::snapshot_ids(&bed.ec2("us-east-1").await)
            .await
            .into_iter()
            .collect();
        s.extend(seed::snapshot_ids(&bed.ec2("eu-west-1").await).await);
        s
    };
    // The size of every snapshot, as DescribeSnapshots gives it (GiB of its volume here).
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for region in ["us-east-1", "eu-west-1"] {
        let out = bed
            .ec2(region)
            .await
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .expect("DescribeSnapshots");
        for s in out.snapshots() {
            let gib = u64::try_from(s.volume_size().unwrap_or(0)).unwrap_or(0);
            sizes.insert(s.snapshot_id().unwrap_or_default().to_string(), gib << 30);
        }
    }
    let freed: u64 = doomed_snapshots.iter().map(|s| sizes[s]).sum();
    assert!(freed > 0);
    assert_eq!(
        planned["saved"]["bytes"], freed,
        "the dry run shows what it would free"
    );

    let report = function.invoke(&request(false)).ok();

    // The bytes freed are the sizes of the snapshots deleted, labelled as volume sizes.
    assert_eq!(report["saved"]["bytes"], freed, "{}", report["saved"]);
    assert_eq!(report["saved"]["estimated"], true);
    let by_family: u64 = report["saved"]["by_family"]
        .as_object()
        .expect("by_family")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(by_family, freed);
    let gib = freed as f64 / 1073741824.0;
    let monthly = report["saved"]["monthly_usd"].as_f64().unwrap_or(-1.0);
    assert!(
        (monthly - (gib * 0.05 * 100.0).round() / 100.0).abs() < 1e-9,
        "{monthly}"
    );
    // The same figures go out as CloudWatch metrics (EMF lines in the function's log).
    let log = function.log_text();
    let emf_bytes: f64 = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["_aws"].is_object())
        .filter_map(|l| l["BytesFreed"].as_f64())
        .sum();
    assert_eq!(emf_bytes, freed as f64, "EMF BytesFreed in the log");

    assert_eq!(report["dry_run"], false);
    assert_eq!(report["complete"], true);
    assert_eq!(
        report["failed"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let outcomes: BTreeSet<&str> = report["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|o| ["done", "deleted_with_image"].contains(o)),
        "{outcomes:?}"
    );
    assert_eq!(
        actions(&report, "deregister"),
        actions(&planned, "deregister"),
        "the real run did what the dry run said"
    );

    let after = state(&bed).await;
    let images: BTreeMap<String, Value> = ["us-east-1", "eu-west-1"]
        .iter()
        .flat_map(|r| after[*r]["images"].as_array().cloned().unwrap_or_default())
        .map(|i| (i["id"].as_str().unwrap_or_default().to_string(), i))
        .collect();
    for role in DEREGISTERED {
        assert!(
            !images.contains_key(fleet.id(role)),
            "{role} is deregistered"
        );
    }
    assert_eq!(images[fleet.id("a4_disable")]["state"], "disabled");
    assert!(
        images[fleet.id("a3_deprecate")]["deprecation"].is_string(),
        "a3 is deprecated"
    );
    for role in [
        "a1_newest",
        "a2_second",
        "a6_running",
        "a7_stopped",
        "a9_protected",
        "a11_lt_old",
        "a12_lt_default",
        "a13_lt_latest",
        "b1_newest",
        "b2_second",
        "batch_new",
    ] {
        assert_eq!(
            images[fleet.id(role)]["state"],
            "available",
            "{role} untouched"
        );
        assert!(
            images[fleet.id(role)]["deprecation"].is_null(),
            "{role} not deprecated"
        );
    }
    assert_eq!(
        after["us-east-1"]["foreign"], 1,
        "the other account's AMI is still there"
    );
    let mut snapshots_after: BTreeSet<String> = after["us-east-1"]["snapshots"]
        .as_array()
        .expect("s")
        .iter()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    snapshots_after.extend(
        after["eu-west-1"]["snapshots"]
            .as_array()
            .expect("s")
            .iter()
            .filter_map(|s| s.as_str().map(String::from)),
    );
    let expected: BTreeSet<String> = all_snapshots_before
        .difference(&doomed_snapshots)
        .cloned()
        .collect();
    assert_eq!(
        snapshots_after, expected,
        "exactly the planned snapshots are gone"
    );
    assert!(
        snapshots_after.contains(&fleet.shared_snapshot),
        "the snapshot b1 still uses is kept"
    );

    let events = bed.published();
    let by_type = |t: &str| events.iter().filter(|e| e["detail_type"] == t).count();
    assert_eq!(by_type("AMI Deregistered"), DEREGISTERED.len());
    assert_eq!(by_type("AMI Deprecated"), 1);
    assert_eq!(by_type("AMI Disabled"), 1);
    assert_eq!(by_type("AMI Snapshot Deleted"), doomed_snapshots.len());
    assert_eq!(by_type("Policy Run Completed"), 2);
    // The deprecation gives notice: a3 (40 days old) is disabled at 60 days and deregistered
    // at 90 under the `web` policy.
    let notice = events
        .iter()
        .find(|e| e["detail_type"] == "AMI Retirement Scheduled")
        .expect("AMI Retirement Scheduled");
    let detail = &notice["detail"];
    let created = as_of() - chrono::Duration::days(40);
    let day = |d: Option<&str>| d.map(|t| t[..10].to_string());
    assert_eq!(detail["image_id"], fleet.id("a3_deprecate"), "{notice}");
    assert_eq!(
        day(detail["disable_on"].as_str()),
        Some(
            (created + chrono::Duration::days(60))
                .format("%Y-%m-%d")
                .to_string()
        ),
        "{notice}"
    );
    assert_eq!(
        day(detail["deregister_on"].as_str()),
        Some(
            (created + chrono::Duration::days(90))
                .format("%Y-%m-%d")
                .to_string()
        ),
        "{notice}"
    );

    // A re-delivered schedule: nothing left to do, nothing changes.
    let again = function.invoke(&request(false)).ok();
    assert_eq!(
        again["plan"].as_array().map(Vec::len),
        Some(0),
        "{}",
        again["plan"]
    );
    assert_eq!(state(&bed).await, after);
}

#[tokio::test]
async fn a_run_out_of_time_stops_cleanly_and_the_next_run_finishes() {
    let bed = TestBed::start();
    let _fleet = build_fleet(&bed).await;
    let before = state(&bed).await;
    let out_of_time = age_out(&bed, &[("AMI_RUN_BUDGET_MS", "0")]);
    let report = out_of_time.invoke(&request(false)).ok();
    assert_eq!(report["complete"], false);
    let plan = report["plan"].as_array().expect("plan");
    assert!(plan.iter().all(|a| a["outcome"] == "deferred"), "{plan:?}");
    let deregisters = |plan: &[Value]| plan.iter().filter(|a| a["action"] == "deregister").count();
    // Past its deadline a run reads no share state either: the AMIs waiting on it are kept
    // as `deferred`, undecided, and counted with the actions in what is left.
    let undecided = report["kept_by_reason"]["deferred"].as_u64().unwrap_or(0) as usize;
    assert!(undecided > 0, "{}", report["kept_by_reason"]);
    assert_eq!(
        report["remaining"],
        plan.len() + undecided,
        "every action and every undecided AMI is left for the next run"
    );
    assert_eq!(
        state(&bed).await,
        before,
        "nothing was started after the deadline"
    );
    assert!(deregisters(plan) + undecided > 0);
    drop(out_of_time);

    // The next run, with time, does exactly what a dry run with time says.
    let function = age_out(&bed, &[]);
    let dry = function.invoke(&request(true)).ok();
    let report = function.invoke(&request(false)).ok();
    assert_eq!(report["complete"], true);
    let retired = |plan: &Value| -> Vec<Value> {
        plan.as_array()
            .expect("plan")
            .iter()
            .filter(|a| a["action"] == "deregister")
            .map(|a| a["image_id"].clone())
            .collect()
    };
    assert!(!retired(&report["plan"]).is_empty());
    assert_eq!(retired(&report["plan"]), retired(&dry["plan"]));
    assert!(report["kept_by_reason"]["deferred"].is_null());
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let bed = TestBed::start();
    let _fleet = build_fleet(&bed).await;
    let before = state(&bed).await;
    let function = age_out(&bed, &[]);
    let cases = [
        (
            json!({"regions": ["us-east-9"], "dry_run": false, "as_of": as_of_text()}),
            "$.regions[0]",
        ),
        (
            json!({"policies": ["nope"], "dry_run": false, "as_of": as_of_text()}),
            "no policy named `nope`",
        ),
        (json!({"dryrun": false}), "unknown field `dryrun`"),
        (json!({"as_of": "soon", "dry_run": false}), "$.as_of"),
        (
            json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "detail": {"ImageId": "ami-0123456789abcdef0", "State": "available"}}),
            "runs on a schedule",
        ),
        (
            json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
            "unsupported event",
        ),
    ];
    for (payload, expected) in cases {
        let (error_type, message) = function.invoke(&payload).err();
        assert_eq!(error_type, "InvalidEvent", "{payload}: {message}");
        assert!(
            message.contains(expected),
            "{payload}: expected `{expected}` in {message}"
        );
    }
    assert_eq!(state(&bed).await, before);
    assert!(bed.published().is_empty());
}

#[tokio::test]
async fn an_invalid_policy_document_fails_the_cold_start_naming_the_field() {
    let bed = TestBed::start();
    let bad = POLICIES.replace("\"max_age_days\": 90", "\"max_age_days\": 20");
    let mut function = Function::start(&bed, "ami-age-out", &[("AMI_POLICIES", &bad)]);
    let log = function.cold_start_failure();
    assert!(
        log.contains("$.policies[0].retain.deprecate_after_days"),
        "{log}"
    );
    assert!(log.contains("greater than max_age_days"), "{log}");
}

#[tokio::test]
async fn throttled_calls_are_deferred_not_failed_and_the_next_run_finishes() {
    let bed = TestBed::start();
    let _fleet = build_fleet(&bed).await;
    // EC2 throttles every DeregisterImage (more than the SDK's retries).
    bed.inject_fault("DeregisterImage", "RequestLimitExceeded", 1000);
    let function = age_out(&bed, &[("AMI_MAX_ATTEMPTS", "2")]);

    let report = function.invoke(&request(false)).ok();

    assert_eq!(report["complete"], false, "{report}");
    assert_eq!(
        report["failed"].as_array().map(Vec::len),
        Some(0),
        "throttling is not a failure"
    );
    let deregister: Vec<&Value> = report["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter(|a| a["action"] == "deregister")
        .collect();
    assert_eq!(deregister.len(), DEREGISTERED.len());
    assert!(deregister
        .iter()
        .all(|a| a["outcome"] == "deferred" && a["error_code"] == "RequestLimitExceeded"));
    assert_eq!(
        report["remaining"].as_u64(),
        Some(
            report["plan"]
                .as_array()
                .map(|p| p.iter().filter(|a| a["outcome"] == "deferred").count())
                .unwrap_or(0) as u64
        )
    );

    // The throttling is over: the next run plans again from the account and finishes.
    bed.inject_fault("DeregisterImage", "RequestLimitExceeded", 0);
    let next = function.invoke(&request(false)).ok();
    assert_eq!(next["complete"], true, "{next}");
    assert_eq!(actions(&next, "deregister").len(), DEREGISTERED.len());
}

/// The `Policy Run Continued` events published so far.
fn continued(bed: &TestBed) -> Vec<Value> {
    bed.published()
        .into_iter()
        .filter(|e| e["detail_type"] == "Policy Run Continued")
        .collect()
}

#[tokio::test]
async fn a_run_that_hits_its_deadline_continues_itself_until_the_work_is_done_within_bounds() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let mut old = Vec::new();
    for n in 0..61 {
        let id = seed::image(
            &ec2,
            &builder,
            &format!("web-{n:03}"),
            &[("Family", "web-a")],
        )
        .await;
        let days = if n == 0 { 1 } else { 40 + n };
        let created = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
        bed.seed_image("us-east-1", &id, json!({ "creation_date": created }));
        if n > 0 {
            old.push(id);
        }
    }
    let policies = r#"{"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
        "family_by": "tag:Family", "retain": {"keep_latest": 1, "max_age_days": 30}}]}"#;
    // EC2's bucket, scaled down: 2 mutating calls at once, then 1 a second; each run may spend
    // 15 s (planning included, with room for a loaded machine), so one run retires about 15 of
    // the 60.
    bed.throttle(json!({"mutating": {"actions": ["DeregisterImage", "DeleteSnapshot"], "size": 2, "refill": 1}}));
    let paced = |extra: &[(&'static str, &'static str)]| {
        let mut env = vec![
            ("AMI_POLICIES", policies),
            ("AMI_MUTATION_RATE", "1"),
            ("AMI_MUTATION_BURST", "2"),
            ("AMI_RUN_BUDGET_MS", "15000"),
        ];
        env.extend_from_slice(extra);
        Function::start(&bed, "ami-age-out", &env)
    };

    // Bounded: a dry run never continues; a run with no progress neither; nor one whose
    // continuations are used up.
    let function = paced(&[]);
    let dry = function.invoke(&json!({"dry_run": true})).ok();
    // It reads no more than the real run would (2 + 1 × 15 AMIs' share state), so it is not
    // complete either, and says why it does not continue.
    assert_eq!(dry["complete"], false, "{}", dry["kept_by_reason"]);
    assert!(
        dry["continued"]["why_not"]
            .as_str()
            .unwrap_or_default()
            .contains("dry run"),
        "{}",
        dry["continued"]
    );
    let stalled = paced(&[("AMI_RUN_BUDGET_MS", "1")]);
    let report = stalled.invoke(&json!({})).ok();
    assert_eq!(report["complete"], false);
    assert!(
        report["continued"]["why_not"]
            .as_str()
            .unwrap_or_default()
            .contains("no progress"),
        "{}",
        report["continued"]
    );
    let capped = paced(&[("AMI_MAX_CONTINUATIONS", "0")]);
    let report = capped.invoke(&json!({})).ok();
    assert_eq!(report["complete"], false, "{report}");
    assert!(
        report["continued"]["why_not"]
            .as_str()
            .unwrap_or_default()
            .contains("AMI_MAX_CONTINUATIONS"),
        "{}",
        report["continued"]
    );
    assert!(continued(&bed).is_empty(), "no continuation started so far");

    // A failure stops the chain too.
    bed.inject_fault("DeregisterImage", "UnauthorizedOperation", 1);
    let (_, message) = function.invoke(&json!({})).err();
    let failed: Value = serde_json::from_str(&message).expect("the report");
    assert_eq!(failed["complete"], false, "{}", failed["counts"]);
    assert!(
        failed["continued"]["why_not"]
            .as_str()
            .unwrap_or_default()
            .contains("failures"),
        "{}",
        failed["continued"]
    );
    assert!(continued(&bed).is_empty());

    // The scheduled run: it stops at its deadline and continues itself until the work is done;
    // each continuation is delivered as the template's rule would (the whole sealed event).
    // It reads the share state of no more AMIs than it can retire in its 15 s (2 + 1 × 15),
    // and leaves the others, kept as `deferred`, to its continuations.
    let reads = |bed: &TestBed| {
        bed.calls()
            .get("DescribeImageAttribute")
            .copied()
            .unwrap_or(0)
    };
    let before = reads(&bed);
    let registered = seed::image_ids(&ec2).await;
    let candidates = old.iter().filter(|id| registered.contains(id)).count();
    let mut report = function.invoke(&json!({})).ok();
    assert!(
        reads(&bed) - before <= 17,
        "{} share-state reads",
        reads(&bed) - before
    );
    let deferred = report["kept_by_reason"]["deferred"].as_u64().unwrap_or(0);
    assert!(
        candidates > 17 && deferred as usize >= candidates - 17,
        "{candidates} candidates: {}",
        report["kept_by_reason"]
    );
    assert!(
        report["remaining"].as_u64().unwrap_or(0) >= deferred,
        "{}",
        report["remaining"]
    );
    let mut hops = 0;
    while report["complete"] == false {
        let events = continued(&bed);
        assert_eq!(
            events.len(),
            hops + 1,
            "one continuation per unfinished run: {}",
            report["continued"]
        );
        let next = &events[hops]["detail"];
        assert_eq!(next["continuation"], hops + 1);
        assert_eq!(next["request"]["continuation"], hops + 1);
        assert!(next["remaining"].as_u64().unwrap_or(0) > 0);
        assert!(
            next["seal"].as_str().is_some_and(|s| !s.is_empty()),
            "{next}"
        );
        let link = bed.delivered(&events[hops]);
        hops += 1;
        assert!(hops <= 24, "the chain ends");
        report = function.invoke(&link).ok();
    }
    assert!(hops >= 1, "the work needed more than one run");
    assert!(
        report["continued"].is_null(),
        "a finished run starts nothing"
    );
    assert_eq!(continued(&bed).len(), hops);
    let left = seed::image_ids(&ec2).await;
    assert!(
        old.iter().all(|id| !left.contains(id)),
        "every old AMI retired, none twice"
    );
    let events = bed.published();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["detail_type"] == "AMI Deregistered")
            .count(),
        old.len(),
        "each retirement announced once"
    );
}
