//! Age-out against EC2 as it really is: the evidence that an AMI is unused must be complete
//! before anything destructive happens to it (fail closed), and the evidence calls are made as
//! EC2's API reference documents them (at most 10 ids per DescribeImageReferences, SSM aliases
//! in launch templates resolved, version ranges that survive deleted versions).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_ec2::Client;
use chrono::{Duration, Utc};
use e2e_tests::{Function, TestBed};
use serde_json::{json, Value};

use e2e_tests::fleet::{actions, age_out, build_fleet, request, state};
use e2e_tests::seed;

/// The report a partial failure carries in its message.
fn partial_failure(function: &Function, payload: &Value) -> Value {
    let (kind, message) = function.invoke(payload).err();
    assert_eq!(kind, "PartialFailure", "{message}");
    serde_json::from_str(&message).expect("the partial failure carries the report")
}

fn kept_with(report: &Value, reason: &str) -> BTreeSet<String> {
    report["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .flat_map(|r| r["kept"].as_array().cloned().unwrap_or_default())
        .filter(|k| k["reason"] == reason)
        .filter_map(|k| k["image_id"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn each_failing_evidence_call_keeps_every_ami_it_covers_and_names_itself() {
    for call in [
        "DescribeInstances",
        "DescribeLaunchTemplates",
        "DescribeLaunchTemplateVersions",
        "DescribeImageReferences",
    ] {
        let bed = TestBed::start();
        let fleet = build_fleet(&bed).await;
        let before = state(&bed).await;
        let function = age_out(&bed, &[]);
        let planned = function.invoke(&request(true)).ok();
        assert!(
            !actions(&planned, "deregister").is_empty(),
            "{call}: a plan to keep from"
        );
        bed.inject_fault(call, "UnauthorizedOperation", 1000);

        let report = partial_failure(&function, &request(false));

        assert_eq!(report["complete"], false, "{call}");
        // us-east-1 has instances, a launch template and references: each call is made there.
        // (eu-west-1 has no launch template, so without a DescribeLaunchTemplateVersions call
        // its evidence is complete and its run goes ahead.)
        let east: Vec<&Value> = report["plan"]
            .as_array()
            .expect("plan")
            .iter()
            .filter(|a| a["region"] == "us-east-1")
            .collect();
        for kind in ["disable", "deregister", "delete_snapshot"] {
            assert!(
                east.iter().all(|a| a["action"] != kind),
                "{call}: no {kind} without evidence: {report}"
            );
        }
        let unknown = kept_with(&report, "usage_unknown");
        for role in ["a4_disable", "a5_deregister", "b3_old"] {
            assert!(
                unknown.contains(fleet.id(role)),
                "{call}: {role} kept as usage_unknown"
            );
        }
        // Deprecation stops no launch: it still goes ahead. Nothing else changed.
        assert_eq!(
            actions(&report, "deprecate"),
            BTreeSet::from([fleet.id("a3_deprecate").to_string()])
        );
        let after = state(&bed).await;
        let (mut was, mut now) = (
            before["us-east-1"]["images"].clone(),
            after["us-east-1"]["images"].clone(),
        );
        for list in [&mut was, &mut now] {
            for image in list.as_array_mut().into_iter().flatten() {
                if image["id"] == fleet.id("a3_deprecate") {
                    image["deprecation"] = Value::Null;
                }
            }
        }
        assert_eq!(
            was, now,
            "{call}: the account is unchanged but for the deprecation"
        );
        assert_eq!(
            before["us-east-1"]["snapshots"],
            after["us-east-1"]["snapshots"]
        );

        let gaps = report["regions"][0]["evidence_gaps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            gaps.iter()
                .any(|g| g["call"] == call && g["code"] == "UnauthorizedOperation"),
            "{call}: {gaps:?}"
        );
        let summary = bed
            .published()
            .into_iter()
            .rev()
            .find(|e| e["detail_type"] == "Policy Run Completed")
            .expect("summary event");
        assert!(
            summary["detail"]["evidence_gaps"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["call"] == call)),
            "{call}: the event names the failing call: {summary}"
        );
    }
}

/// A family of `n` old AMIs (and one new) in us-east-1, with creation dates relative to now.
async fn family(bed: &TestBed, ec2: &Client, n: usize, days: i64) -> Vec<String> {
    let builder = seed::instance(ec2, 0, &[]).await;
    let mut ids = Vec::new();
    for i in 0..=n {
        let id = seed::image(
            ec2,
            &builder,
            &format!("web-{i:03}"),
            &[("Family", "web-a")],
        )
        .await;
        let age = if i == 0 { 1 } else { days + i as i64 };
        bed.seed_image(
            "us-east-1",
            &id,
            json!({"creation_date": (Utc::now() - Duration::days(age)).to_rfc3339()}),
        );
        ids.push(id);
    }
    ids
}

fn retire(bed: &TestBed, retain: &str) -> Function {
    let policies = format!(
        r#"{{"dry_run": false, "policies": [{{"name": "web", "select": {{"tags": {{"Family": "web*"}}}},
            "family_by": "tag:Family", "retain": {retain}}}]}}"#
    );
    Function::start(bed, "ami-age-out", &[("AMI_POLICIES", policies.as_str())])
}

#[tokio::test]
async fn more_than_ten_amis_are_checked_for_references_ten_at_a_time() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 24, 40).await;
    // Only an SSM parameter names the 23rd: found in the third batch.
    bed.ssm("us-east-1")
        .await
        .put_parameter()
        .name("/golden/web")
        .value(&ids[23])
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .expect("PutParameter");
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);

    let report = function.invoke(&json!({})).ok();

    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(actions(&report, "deregister").len(), 23);
    assert_eq!(
        kept_with(&report, "referenced"),
        BTreeSet::from([ids[23].clone()])
    );
    assert_eq!(
        bed.calls().get("DescribeImageReferences"),
        Some(&3),
        "24 ids: 3 calls"
    );
    assert!(seed::image_ids(&ec2).await.contains(&ids[23]));
}

#[tokio::test]
async fn a_second_run_without_as_of_plans_and_announces_nothing_and_events_name_arns() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await; // 41 and 42 days old: deprecated
    let function = retire(&bed, r#"{"keep_latest": 1, "deprecate_after_days": 30}"#);

    let first = function.invoke(&json!({})).ok();
    assert_eq!(
        actions(&first, "deprecate"),
        ids[1..].iter().cloned().collect::<BTreeSet<_>>()
    );
    let second = function.invoke(&json!({})).ok();
    assert_eq!(second["plan"].as_array().map(Vec::len), Some(0), "{second}");

    let events = bed.published();
    let deprecated: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail_type"] == "AMI Deprecated")
        .collect();
    assert_eq!(
        deprecated.len(),
        2,
        "each deprecation announced once: {events:?}"
    );
    for e in deprecated {
        let resource = e["resources"][0].as_str().unwrap_or_default();
        assert!(
            resource.starts_with("arn:aws:ec2:us-east-1::image/ami-"),
            "PutEvents resources are ARNs: {resource}"
        );
    }
}

async fn template(ec2: &Client, images: &[&str]) -> String {
    let data = |image: &str| RequestLaunchTemplateData::builder().image_id(image).build();
    let id = ec2
        .create_launch_template()
        .launch_template_name(format!("t-{}", images.len()))
        .launch_template_data(data(images[0]))
        .send()
        .await
        .expect("CreateLaunchTemplate")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("id")
        .to_string();
    for image in &images[1..] {
        ec2.create_launch_template_version()
            .launch_template_id(&id)
            .launch_template_data(data(image))
            .send()
            .await
            .expect("CreateLaunchTemplateVersion");
    }
    id
}

#[tokio::test]
async fn a_launch_template_naming_an_ami_through_an_ssm_alias_keeps_it() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await;
    bed.ssm("us-east-1")
        .await
        .put_parameter()
        .name("/golden/alias")
        .value(&ids[1])
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .expect("PutParameter");
    template(&ec2, &["resolve:ssm:/golden/alias"]).await;
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);

    let report = function.invoke(&json!({})).ok();

    assert_eq!(
        kept_with(&report, "in_use_by_launch_template"),
        BTreeSet::from([ids[1].clone()]),
        "the template's own scan resolves the alias: {report}"
    );
    assert_eq!(
        actions(&report, "deregister"),
        BTreeSet::from([ids[2].clone()])
    );
}

#[tokio::test]
async fn a_deleted_launch_template_version_does_not_fail_a_depth_n_scan() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 3, 40).await;
    // v1 names ids[3], v2..v4 name ids[2], v5 (latest) names ids[1]; v4 is then deleted.
    let id = template(&ec2, &[&ids[3], &ids[2], &ids[2], &ids[2], &ids[1]]).await;
    ec2.delete_launch_template_versions()
        .launch_template_id(&id)
        .versions("4")
        .send()
        .await
        .expect("DeleteLaunchTemplateVersions");
    let function = retire(
        &bed,
        r#"{"keep_latest": 1, "max_age_days": 30, "in_use": {"launch_template_versions": 3}}"#,
    );

    let report = function.invoke(&json!({})).ok();

    assert_eq!(report["complete"], true, "{report}");
    let kept = kept_with(&report, "in_use_by_launch_template");
    assert!(kept.contains(&ids[1]) && kept.contains(&ids[2]), "{report}");
    // v1 is $Default: it counts at every depth.
    assert!(kept.contains(&ids[3]), "{report}");
}

#[tokio::test]
async fn exclude_shared_keeps_shared_amis_and_a_failed_share_lookup_keeps_every_candidate() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 3, 40).await;
    let grant = aws_sdk_ec2::types::LaunchPermissionModifications::builder()
        .add(
            aws_sdk_ec2::types::LaunchPermission::builder()
                .user_id("111122223333")
                .build(),
        )
        .build();
    ec2.modify_image_attribute()
        .image_id(&ids[2])
        .launch_permission(grant)
        .send()
        .await
        .expect("share");
    let function = retire(
        &bed,
        r#"{"keep_latest": 1, "max_age_days": 30, "exclude_shared": true}"#,
    );

    // The share lookup fails: every image whose decision waits on it is kept.
    bed.inject_fault("DescribeImageAttribute", "UnauthorizedOperation", 100);
    let report = partial_failure(&function, &json!({}));
    assert!(actions(&report, "deregister").is_empty(), "{report}");
    assert_eq!(
        kept_with(&report, "shared"),
        ids[1..].iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(report["regions"][0]["evidence_gaps"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g["call"] == "DescribeImageAttribute")));
    assert_eq!(seed::image_ids(&ec2).await.len(), 4, "nothing deregistered");

    // It answers: the shared one is kept, the others go.
    bed.inject_fault("DescribeImageAttribute", "UnauthorizedOperation", 0);
    let report = function.invoke(&json!({})).ok();
    assert_eq!(
        kept_with(&report, "shared"),
        BTreeSet::from([ids[2].clone()])
    );
    assert_eq!(
        actions(&report, "deregister"),
        BTreeSet::from([ids[1].clone(), ids[3].clone()])
    );
    assert!(seed::image_ids(&ec2).await.contains(&ids[2]));
}

#[tokio::test]
async fn a_recent_launch_keeps_an_old_ami_only_within_the_window() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await;
    let at = |days: i64| (Utc::now() - Duration::days(days)).to_rfc3339();
    bed.seed_image("us-east-1", &ids[1], json!({"last_launched_time": at(2)}));
    bed.seed_image("us-east-1", &ids[2], json!({"last_launched_time": at(20)}));
    let function = retire(
        &bed,
        r#"{"keep_latest": 1, "max_age_days": 30, "exclude_launched_within_days": 7}"#,
    );

    let report = function.invoke(&json!({})).ok();

    assert_eq!(
        kept_with(&report, "recently_launched"),
        BTreeSet::from([ids[1].clone()])
    );
    assert_eq!(
        actions(&report, "deregister"),
        BTreeSet::from([ids[2].clone()])
    );
}

#[tokio::test]
async fn orphan_snapshots_are_deleted_only_when_the_policy_says_so() {
    for delete in [false, true] {
        let bed = TestBed::start();
        let ec2 = bed.ec2("us-east-1").await;
        let ids = family(&bed, &ec2, 1, 40).await;
        // An earlier deregistration left the snapshots of ids[1] behind.
        let orphans = seed::snapshots_of(&ec2, &ids[1]).await;
        for snap in &orphans {
            ec2.create_tags()
                .resources(snap)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("ami-automation:policy")
                        .value("web")
                        .build(),
                )
                .send()
                .await
                .expect("CreateTags");
        }
        // Taken 60 days ago: older than the policy's 30 days.
        let started = (Utc::now() - Duration::days(60)).to_rfc3339();
        bed.seed_image(
            "us-east-1",
            &ids[1],
            json!({ "snapshot_start_time": started }),
        );
        ec2.deregister_image()
            .image_id(&ids[1])
            .send()
            .await
            .expect("DeregisterImage");
        let retain = format!(
            r#"{{"keep_latest": 1, "max_age_days": 30, "delete_orphan_snapshots": {delete}}}"#
        );
        let function = retire(&bed, &retain);

        let report = function.invoke(&json!({})).ok();

        let found: BTreeSet<String> = report["regions"][0]["orphans"]
            .as_array()
            .expect("orphans")
            .iter()
            .filter_map(|o| o["snapshot_id"].as_str().map(String::from))
            .collect();
        assert_eq!(found, orphans.iter().cloned().collect::<BTreeSet<_>>());
        let left = seed::snapshot_ids(&ec2).await;
        for snap in &orphans {
            assert_eq!(
                left.contains(snap),
                !delete,
                "delete_orphan_snapshots {delete}: {snap}"
            );
        }
        assert_eq!(
            actions(&report, "delete_snapshot").len(),
            if delete { orphans.len() } else { 0 }
        );
    }
}

#[tokio::test]
async fn launch_template_depth_decides_which_versions_keep_an_ami() {
    for (depth, kept_v2) in [
        ("\"default-and-latest\"", false),
        ("3", true),
        ("\"all\"", true),
    ] {
        let bed = TestBed::start();
        let ec2 = bed.ec2("us-east-1").await;
        let ids = family(&bed, &ec2, 4, 40).await;
        // v1 ($Default) ids[4], v2 ids[3], v3 ids[2], v4 ($Latest) ids[1].
        template(&ec2, &[&ids[4], &ids[3], &ids[2], &ids[1]]).await;
        let retain = format!(
            r#"{{"keep_latest": 1, "max_age_days": 30, "in_use": {{"launch_template_versions": {depth}}}}}"#
        );
        let report = retire(&bed, &retain).invoke(&json!({})).ok();
        let kept = kept_with(&report, "in_use_by_launch_template");
        assert!(
            kept.contains(&ids[4]) && kept.contains(&ids[1]),
            "{depth}: $Default and $Latest"
        );
        assert_eq!(
            kept.contains(&ids[3]),
            kept_v2,
            "{depth}: version 2 (two behind $Latest)"
        );
        assert_eq!(
            actions(&report, "deregister").contains(&ids[3]),
            !kept_v2,
            "{depth}: {report}"
        );
    }
}

#[tokio::test]
async fn image_ids_and_policies_limit_what_a_run_touches() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 3, 40).await;
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);

    let one = function.invoke(&json!({"image_ids": [ids[2]]})).ok();
    assert_eq!(
        actions(&one, "deregister"),
        BTreeSet::from([ids[2].clone()])
    );
    assert_eq!(seed::image_ids(&ec2).await.len(), 3, "only that AMI went");

    let (kind, message) = function.invoke(&json!({"policies": ["nope"]})).err();
    assert_eq!(kind, "InvalidEvent", "{message}");
    let other = function
        .invoke(&json!({"policies": ["web"], "dry_run": true}))
        .ok();
    assert_eq!(
        actions(&other, "deregister"),
        BTreeSet::from([ids[1].clone(), ids[3].clone()])
    );
}

/// Shares an image with an account (a launch permission, as `ami-share` or a person would).
async fn share_with(ec2: &Client, image: &str, account: &str) {
    let grant = aws_sdk_ec2::types::LaunchPermissionModifications::builder()
        .add(
            aws_sdk_ec2::types::LaunchPermission::builder()
                .user_id(account)
                .build(),
        )
        .build();
    ec2.modify_image_attribute()
        .image_id(image)
        .launch_permission(grant)
        .send()
        .await
        .expect("share");
}

fn usage_reports(report: &Value) -> Vec<Value> {
    report["regions"][0]["usage_reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The notice was given `days` ago: the AMIs were deprecated then (EnableImageDeprecation
/// refuses a past time, so the test bed sets it).
fn deprecated_days_ago(bed: &TestBed, ids: &[String], days: i64) {
    for id in ids {
        let at = (Utc::now() - Duration::days(days)).to_rfc3339();
        bed.seed_image("us-east-1", id, json!({ "deprecation_time": at }));
    }
}

#[tokio::test]
async fn a_shared_ami_is_deprecated_first_then_kept_while_used_and_retired_after_a_report_made_a_week_later(
) {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    // ids[0] newest (kept), ids[1..=3] past max age: [1] private, [2] shared and used by
    // another account, [3] shared and used by nobody.
    let ids = family(&bed, &ec2, 3, 40).await;
    share_with(&ec2, &ids[2], "210987654321").await;
    share_with(&ec2, &ids[3], "310987654321").await;
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);
    let shared: BTreeSet<String> = BTreeSet::from([ids[2].clone(), ids[3].clone()]);

    // A dry run: the shared ones are deprecated first, as notice to whoever uses them.
    let dry = function.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(actions(&dry, "deprecate"), shared, "{dry}");
    assert_eq!(
        actions(&dry, "deregister"),
        BTreeSet::from([ids[1].clone()])
    );
    assert!(usage_reports(&dry).is_empty(), "{dry}");

    // The real run does exactly that, and asks for no report yet: one made now could miss
    // the launch templates of the days before the notice.
    let first = function.invoke(&json!({})).ok();
    assert_eq!(actions(&first, "deprecate"), shared, "{first}");
    assert_eq!(
        actions(&first, "deregister"),
        BTreeSet::from([ids[1].clone()])
    );
    let second = function.invoke(&json!({})).ok();
    assert_eq!(
        kept_with(&second, "consumer_usage_unknown"),
        shared,
        "{second}"
    );
    assert!(usage_reports(&second).is_empty(), "{second}");
    assert_eq!(bed.calls().get("CreateImageUsageReport"), None);

    // A week after the notice, a report of each is asked.
    deprecated_days_ago(&bed, &ids[2..=3], 8);
    let dry = function.invoke(&json!({"dry_run": true})).ok();
    let asked: Vec<String> = usage_reports(&dry)
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(asked, vec!["would_request", "would_request"], "{dry}");
    assert_eq!(
        bed.calls().get("CreateImageUsageReport"),
        None,
        "a dry run asks for nothing"
    );
    let third = function.invoke(&json!({})).ok();
    assert_eq!(kept_with(&third, "consumer_usage_unknown"), shared);
    assert!(
        usage_reports(&third)
            .iter()
            .all(|r| r["outcome"] == "requested" && r["report_id"].is_string()),
        "{third}"
    );
    assert_eq!(bed.calls().get("CreateImageUsageReport"), Some(&2));

    // While EC2 builds them, a run keeps both and asks for no second report.
    let pending = function.invoke(&json!({})).ok();
    assert_eq!(kept_with(&pending, "consumer_usage_unknown"), shared);
    assert!(usage_reports(&pending).is_empty(), "{pending}");
    assert_eq!(bed.calls().get("CreateImageUsageReport"), Some(&2));

    // The reports are in: another account runs ids[2]; nobody uses ids[3].
    bed.complete_usage_report(
        "us-east-1",
        &ids[2],
        json!({"entries": [{"account_id": "210987654321", "resource_type": "ec2:Instance", "usage_count": 2}]}),
    );
    bed.complete_usage_report("us-east-1", &ids[3], json!({"entries": []}));
    let last = function.invoke(&json!({})).ok();
    assert_eq!(
        kept_with(&last, "in_use_by_account"),
        BTreeSet::from([ids[2].clone()])
    );
    let detail = last["regions"][0]["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .find(|k| k["image_id"] == ids[2].as_str())
        .map(|k| k["detail"].to_string())
        .unwrap_or_default();
    assert!(detail.contains("210987654321: 2 ec2:Instance"), "{detail}");
    assert_eq!(
        actions(&last, "deregister"),
        BTreeSet::from([ids[3].clone()])
    );
    let left = seed::image_ids(&ec2).await;
    assert!(left.contains(&ids[2]) && !left.contains(&ids[3]) && !left.contains(&ids[1]));
}

#[tokio::test]
async fn use_a_report_can_miss_keeps_a_shared_ami_until_a_report_made_late_enough() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await;
    share_with(&ec2, &ids[1], "210987654321").await;
    share_with(&ec2, &ids[2], "210987654321").await;
    // ids[1] was deprecated a day ago; another account made a launch template with it the day
    // before. A report made now misses that template (EC2: launch template activity of the last
    // few days may not appear), so it shows nobody.
    deprecated_days_ago(&bed, &ids[1..=1], 1);
    let two_days_ago = (Utc::now() - Duration::days(2)).to_rfc3339();
    let missed = json!({"entries": [{"account_id": "210987654321", "resource_type": "ec2:LaunchTemplate",
        "usage_count": 1, "since": two_days_ago}]});
    bed.complete_usage_report("us-east-1", &ids[1], missed);
    // ids[2] was deprecated long ago, and launched (by anyone) twelve hours ago: its report,
    // made now, can miss that instance.
    deprecated_days_ago(&bed, &ids[2..=2], 10);
    bed.complete_usage_report("us-east-1", &ids[2], json!({"entries": []}));
    let launched = (Utc::now() - Duration::hours(12)).to_rfc3339();
    bed.seed_image(
        "us-east-1",
        &ids[2],
        json!({ "last_launched_time": launched }),
    );
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);

    let report = function.invoke(&json!({})).ok();
    assert!(actions(&report, "deregister").is_empty(), "{report}");
    let detail = |id: &str| {
        let kept = report["regions"][0]["kept"].as_array().expect("kept");
        let k = kept.iter().find(|k| k["image_id"] == id).cloned();
        let k = k.unwrap_or_default();
        assert_eq!(k["reason"], "consumer_usage_unknown", "{report}");
        k["detail"].as_str().unwrap_or_default().to_string()
    };
    assert!(detail(&ids[1]).contains("7 days"), "{}", detail(&ids[1]));
    assert!(
        detail(&ids[2]).contains("last launched"),
        "{}",
        detail(&ids[2])
    );
    // No report asked: none made now could prove either unused.
    assert!(usage_reports(&report).is_empty(), "{report}");
    assert_eq!(seed::image_ids(&ec2).await.len(), 3);
}

#[tokio::test]
async fn a_stale_or_unreadable_usage_report_keeps_a_shared_ami_and_deprecation_still_goes() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await;
    share_with(&ec2, &ids[1], "210987654321").await;
    share_with(&ec2, &ids[2], "210987654321").await;
    deprecated_days_ago(&bed, &ids[1..=2], 10);
    // A report two days old says nobody uses ids[1]: older than the policy's 24 hours.
    let stale = (Utc::now() - Duration::hours(48)).to_rfc3339();
    bed.complete_usage_report(
        "us-east-1",
        &ids[1],
        json!({"entries": [], "creation_time": stale}),
    );
    let function = retire(
        &bed,
        r#"{"keep_latest": 1, "deprecate_after_days": 20, "max_age_days": 30}"#,
    );
    let report = function.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(
        kept_with(&report, "consumer_usage_unknown"),
        BTreeSet::from([ids[1].clone(), ids[2].clone()]),
        "{report}"
    );

    // 72 hours allowed: the stale report is fresh enough.
    let lenient = retire(
        &bed,
        r#"{"keep_latest": 1, "max_age_days": 30, "consumer_report_max_age_hours": 72}"#,
    );
    let report = lenient.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(
        actions(&report, "deregister"),
        BTreeSet::from([ids[1].clone()])
    );

    // The reports cannot be read: every shared candidate is kept, and the run says why.
    bed.inject_fault("DescribeImageUsageReports", "UnauthorizedOperation", 100);
    let report = partial_failure(&lenient, &json!({"dry_run": true}));
    assert_eq!(
        kept_with(&report, "usage_unknown"),
        BTreeSet::from([ids[1].clone(), ids[2].clone()]),
        "{report}"
    );
    bed.inject_fault("DescribeImageUsageReports", "UnauthorizedOperation", 0);

    // Deprecation stops no launch: shared AMIs past deprecate_after_days are deprecated
    // whatever the reports say.
    for id in &ids[1..=2] {
        ec2.disable_image_deprecation()
            .image_id(id)
            .send()
            .await
            .expect("DisableImageDeprecation");
    }
    let deprecating = retire(
        &bed,
        r#"{"keep_latest": 1, "deprecate_after_days": 20, "max_age_days": 300}"#,
    );
    let report = deprecating.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(
        actions(&report, "deprecate"),
        BTreeSet::from([ids[1].clone(), ids[2].clone()]),
        "{report}"
    );
}

/// The image's deregistration protection as DescribeImages shows it, and its tags.
async fn protection(ec2: &Client, image: &str) -> (String, Vec<String>) {
    let out = ec2
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .expect("DescribeImages");
    let i = &out.images()[0];
    (
        i.deregistration_protection()
            .unwrap_or_default()
            .to_string(),
        i.tags()
            .iter()
            .filter_map(|t| t.key().map(String::from))
            .collect(),
    )
}

#[tokio::test]
async fn protect_latest_turns_protection_on_and_off_as_the_newest_change() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    // ids[0] is 1 day old, ids[1] 41, ids[2] 42 (someone protected it by hand).
    let ids = family(&bed, &ec2, 2, 40).await;
    bed.seed_image(
        "us-east-1",
        &ids[2],
        json!({"deregistration_protection": "enabled-without-cooldown"}),
    );
    let function = retire(
        &bed,
        r#"{"keep_latest": 2, "protect_latest": 2, "max_age_days": 300}"#,
    );

    let first = function.invoke(&json!({})).ok();
    assert_eq!(
        actions(&first, "protect"),
        BTreeSet::from([ids[0].clone(), ids[1].clone()]),
        "{first}"
    );
    for id in &ids[..2] {
        let (state, tags) = protection(&ec2, id).await;
        assert_eq!(state, "enabled-with-cooldown", "{id}");
        assert!(
            tags.contains(&"ami-automation:protected-by".to_string()),
            "{id}"
        );
    }
    let events = bed.published();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["detail_type"] == "AMI Deregistration Protection Enabled")
            .count(),
        2
    );

    // Delivered again: nothing to change.
    let again = function.invoke(&json!({})).ok();
    assert!(actions(&again, "protect").is_empty(), "{again}");

    // A newer AMI arrives: it is protected, and ids[1] falls out of the newest two.
    let builder = seed::instance(&ec2, 0, &[]).await;
    let newer = seed::image(&ec2, &builder, "web-new", &[("Family", "web-a")]).await;
    let next = function.invoke(&json!({})).ok();
    assert_eq!(actions(&next, "protect"), BTreeSet::from([newer.clone()]));
    assert_eq!(
        actions(&next, "unprotect"),
        BTreeSet::from([ids[1].clone()])
    );
    let (state, tags) = protection(&ec2, &ids[1]).await;
    assert!(
        state.starts_with("disabled-until"),
        "EC2's cooldown runs: {state}"
    );
    assert!(!tags.contains(&"ami-automation:protected-by".to_string()));
    // During the cooldown EC2 still refuses to deregister it.
    let refused = ec2.deregister_image().image_id(&ids[1]).send().await;
    assert!(refused.is_err(), "deregistered during the cooldown");
    // The protection a person set is never turned off.
    let (state, _) = protection(&ec2, &ids[2]).await;
    assert_eq!(state, "enabled-without-cooldown");
}

fn recoveries(report: &Value) -> Vec<Value> {
    report["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter(|a| a["action"] == "deregister")
        .map(|a| a["recovery"].clone())
        .collect()
}

#[tokio::test]
async fn require_recoverable_refuses_without_recycle_bin_rules_and_proceeds_with_them() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 2, 40).await;
    let function = retire(
        &bed,
        r#"{"keep_latest": 1, "max_age_days": 30, "require_recoverable": true}"#,
    );
    let old: BTreeSet<String> = ids[1..].iter().cloned().collect();

    // No rule: nothing could be undone, so nothing is deregistered.
    let refused = function.invoke(&json!({})).ok();
    assert_eq!(kept_with(&refused, "not_recoverable"), old, "{refused}");
    assert!(actions(&refused, "deregister").is_empty());

    // An AMI rule alone: the snapshots deleted with the AMI would be gone, and it with them.
    bed.retention_rule("us-east-1", "EC2_IMAGE", 14).await;
    let refused = function.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(kept_with(&refused, "not_recoverable"), old, "{refused}");

    // Both rules: deregistered, each saying until when it can be restored.
    bed.retention_rule("us-east-1", "EBS_SNAPSHOT", 21).await;
    let done = function.invoke(&json!({})).ok();
    assert_eq!(actions(&done, "deregister"), old, "{done}");
    for recovery in recoveries(&done) {
        assert_eq!(recovery["recoverable"], true, "{recovery}");
        assert_eq!(recovery["image_days"], 14);
        assert_eq!(recovery["snapshot_days"], 21);
        assert!(recovery["until"].is_string());
    }
    let binned = ec2
        .list_images_in_recycle_bin()
        .send()
        .await
        .expect("ListImagesInRecycleBin");
    let in_bin: BTreeSet<String> = binned
        .images()
        .iter()
        .filter_map(|i| i.image_id().map(String::from))
        .collect();
    assert_eq!(in_bin, old, "both AMIs wait in the Recycle Bin");
    // The event says so too.
    let events = bed.published();
    assert!(events
        .iter()
        .filter(|e| e["detail_type"] == "AMI Deregistered")
        .all(|e| e["detail"]["recovery"]["recoverable"] == true));
}

#[tokio::test]
async fn a_restore_request_gives_back_retired_amis_with_their_snapshots_and_undoes_a_disable() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    bed.retention_rule("us-east-1", "EC2_IMAGE", 14).await;
    bed.retention_rule("us-east-1", "EBS_SNAPSHOT", 14).await;
    let ids = family(&bed, &ec2, 3, 40).await;
    let images_before = seed::image_ids(&ec2).await;
    let snapshots_before = seed::snapshot_ids(&ec2).await;
    let retired: Vec<String> = ids[1..3].to_vec();

    // ids[1] and ids[2] are deregistered with their snapshots; ids[3] only disabled.
    let deregister = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);
    deregister.invoke(&json!({"image_ids": retired})).ok();
    // ids[3] is deprecated, then disabled.
    let deprecate = retire(&bed, r#"{"keep_latest": 1, "deprecate_after_days": 30}"#);
    deprecate.invoke(&json!({"image_ids": [ids[3]]})).ok();
    let disable = retire(&bed, r#"{"keep_latest": 1, "disable_after_days": 30}"#);
    disable.invoke(&json!({"image_ids": [ids[3]]})).ok();
    assert!(!seed::image_ids(&ec2).await.contains(&ids[1]));

    let undo: Vec<String> = ids[1..].to_vec();
    let dry = deregister
        .invoke(&json!({"restore": {"image_ids": undo}, "dry_run": true}))
        .ok();
    let outcomes: Vec<&str> = dry["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, vec!["would_restore"; 3], "{dry}");
    assert!(
        !seed::image_ids(&ec2).await.contains(&ids[1]),
        "a dry run restores nothing"
    );

    let done = deregister
        .invoke(&json!({"restore": {"image_ids": undo}}))
        .ok();
    assert!(
        done["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["outcome"] == "restored"),
        "{done}"
    );
    // The account ends as before: the same AMIs, the same snapshots, none disabled.
    assert_eq!(seed::image_ids(&ec2).await, images_before);
    assert_eq!(seed::snapshot_ids(&ec2).await, snapshots_before);
    let states: Vec<String> = ec2
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .send()
        .await
        .expect("DescribeImages")
        .images()
        .iter()
        .filter_map(|i| i.state().map(|s| s.as_str().to_string()))
        .collect();
    assert!(states.iter().all(|s| s == "available"), "{states:?}");
    let steps = done["results"][2]["steps"].to_string();
    assert!(
        steps.contains("enable") && steps.contains("cancel_deprecation"),
        "{steps}"
    );
    let restored = bed
        .published()
        .iter()
        .filter(|e| e["detail_type"] == "AMI Restored")
        .count();
    assert_eq!(restored, 3);
    // Asked again: nothing left to undo.
    let again = deregister
        .invoke(&json!({"restore": {"image_ids": undo}}))
        .ok();
    assert!(again["results"]
        .as_array()
        .expect("results")
        .iter()
        .all(|r| r["outcome"] == "nothing_to_undo"));
}

#[tokio::test]
async fn a_usage_report_over_some_accounts_only_proves_nothing() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 1, 40).await;
    share_with(&ec2, &ids[1], "210987654321").await;
    deprecated_days_ago(&bed, &ids[1..=1], 10);
    // Someone asked EC2 about one account only: nobody there uses it, but other accounts may.
    bed.complete_usage_report(
        "us-east-1",
        &ids[1],
        json!({"entries": [], "account_ids": ["310987654321"]}),
    );
    let function = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 30}"#);
    let report = function.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(
        kept_with(&report, "consumer_usage_unknown"),
        BTreeSet::from([ids[1].clone()]),
        "{report}"
    );
}

#[tokio::test]
async fn a_restored_ami_is_shared_again_by_the_share_run_its_restore_starts() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let ids = family(&bed, &ec2, 1, 40).await;
    share_with(&ec2, &ids[1], "210987654321").await;
    // Disabled: DisableImage takes away every launch permission, EnableImage gives none back.
    ec2.disable_image()
        .image_id(&ids[1])
        .send()
        .await
        .expect("DisableImage");
    let age_out = retire(&bed, r#"{"keep_latest": 1, "max_age_days": 300}"#);
    let restored = age_out
        .invoke(&json!({"restore": {"image_ids": [ids[1]]}}))
        .ok();
    assert_eq!(restored["results"][0]["outcome"], "restored", "{restored}");
    assert!(seed::launch_permissions(&ec2, &ids[1]).await.is_empty());

    // The restore's `AMI Restored`, delivered to ami-share by its rule, shares it again.
    let event = bed
        .published()
        .into_iter()
        .find(|e| e["detail_type"] == "AMI Restored")
        .expect("AMI Restored");
    let policies = r#"{"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
        "family_by": "tag:Family", "share": {"accounts": ["210987654321"]}}]}"#;
    let share = Function::start(&bed, "ami-share", &[("AMI_POLICIES", policies)]);
    let report = share.invoke(&bed.delivered(&event)).ok();
    assert_eq!(report["results"][0]["outcome"], "changed", "{report}");
    assert_eq!(
        seed::launch_permissions(&ec2, &ids[1]).await,
        BTreeSet::from(["210987654321".to_string()])
    );
}
