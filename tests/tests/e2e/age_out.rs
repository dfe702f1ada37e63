//! `ami-age-out` end to end: the real binary, driven through the Lambda runtime API, against a
//! fleet in the test bed with every case the safety rules name.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Duration, Utc};
use e2e_tests::{Function, TestBed};
use serde_json::{json, Value};

use crate::seed;

const POLICIES: &str = r#"{"dry_run": true, "policies": [
  {"name": "web", "select": {"tags": {"Family": "web*"}}, "family_by": "tag:Family",
   "retain": {"keep_latest": 2, "deprecate_after_days": 30, "disable_after_days": 60, "max_age_days": 90,
              "protect_tags": {"Retain": "true"}, "in_use": {"launch_template_versions": "all"}}},
  {"name": "batch", "select": {"name_pattern": "batch-*"},
   "retain": {"keep_latest": 1, "max_age_days": 30}}
]}"#;

const AS_OF: &str = "2027-01-01T00:00:00Z";

fn as_of() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(AS_OF)
        .expect("as_of")
        .with_timezone(&Utc)
}

/// The fleet, by role.
pub(crate) struct Fleet {
    ids: BTreeMap<&'static str, String>,
    shared_snapshot: String,
    foreign: String,
}

impl Fleet {
    pub(crate) fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    /// Every role with its image id.
    pub(crate) fn roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.ids.iter().map(|(role, id)| (*role, id.as_str()))
    }
}

/// Where and from what an aged image is made.
struct Source<'a> {
    bed: &'a TestBed,
    ec2: &'a Client,
    region: &'a str,
    instance: &'a str,
}

/// A row of the fleet: role, family, age in days, extra tags.
type Row = (
    &'static str,
    &'static str,
    i64,
    &'static [(&'static str, &'static str)],
);

async fn aged_image(
    src: &Source<'_>,
    name: &str,
    family: Option<&str>,
    days: i64,
    extra_tags: &[(&str, &str)],
) -> String {
    let (bed, ec2, region, instance) = (src.bed, src.ec2, src.region, src.instance);
    let mut tags: Vec<(&str, &str)> = extra_tags.to_vec();
    if let Some(f) = family {
        tags.push(("Family", f));
    }
    let id = seed::image(ec2, instance, name, &tags).await;
    let created = (as_of() - Duration::days(days)).to_rfc3339();
    bed.seed_image(region, &id, json!({"creation_date": created}));
    id
}

pub(crate) async fn build_fleet(bed: &TestBed) -> Fleet {
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await; // root + data volume: multi-volume AMIs
    let mut ids = BTreeMap::new();
    let src = Source {
        bed,
        ec2: &ec2,
        region: "us-east-1",
        instance: &builder,
    };
    let plan: &[Row] = &[
        ("a1_newest", "web-a", 1, &[]),
        ("a2_second", "web-a", 5, &[]),
        ("a3_deprecate", "web-a", 40, &[]),
        ("a4_disable", "web-a", 70, &[]),
        ("a5_deregister", "web-a", 100, &[]),
        ("a6_running", "web-a", 120, &[]),
        ("a7_stopped", "web-a", 130, &[]),
        ("a8_terminated", "web-a", 140, &[]),
        ("a9_protected", "web-a", 150, &[("Retain", "true")]),
        ("a10_decoy", "web-a", 160, &[("Retain", "false")]),
        ("a11_lt_old", "web-a", 170, &[]),
        ("a12_lt_default", "web-a", 180, &[]),
        ("a13_lt_latest", "web-a", 190, &[]),
        ("a14_disabled", "web-a", 200, &[]),
        ("a16_ssm", "web-a", 215, &[]),
        ("a17_dereg_protected", "web-a", 220, &[]),
        ("b2_second", "web-b", 4, &[]),
        ("b3_old", "web-b", 95, &[]),
    ];
    for (role, family, days, tags) in plan {
        let id = aged_image(&src, &format!("{role}-img"), Some(family), *days, tags).await;
        ids.insert(*role, id);
    }
    bed.seed_image(
        "us-east-1",
        &ids["a17_dereg_protected"],
        json!({"deregistration_protection": "enabled"}),
    );
    // One snapshot shared by two AMIs: a15 (old, web-a) and b1 (newest of web-b).
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .send()
        .await
        .expect("volume");
    let snap = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().expect("volume id"))
        .send()
        .await
        .expect("snapshot")
        .snapshot_id()
        .expect("id")
        .to_string();
    let a15 = seed::register(
        &ec2,
        "a15_shared_snapshot-img",
        std::slice::from_ref(&snap),
        &[("Family", "web-a")],
    )
    .await;
    let b1 = seed::register(
        &ec2,
        "b1_newest-img",
        std::slice::from_ref(&snap),
        &[("Family", "web-b")],
    )
    .await;
    bed.seed_image(
        "us-east-1",
        &a15,
        json!({"creation_date": (as_of() - Duration::days(210)).to_rfc3339()}),
    );
    bed.seed_image(
        "us-east-1",
        &b1,
        json!({"creation_date": (as_of() - Duration::days(3)).to_rfc3339()}),
    );
    ids.insert("a15_shared_snapshot", a15);
    ids.insert("b1_newest", b1);

    // Owned by another account: never touched, whatever its age.
    let foreign = aged_image(&src, "foreign-img", Some("web-a"), 300, &[]).await;
    bed.seed_image(
        "us-east-1",
        &foreign,
        json!({"owner_id": "210987654321", "snapshot_owner_id": "210987654321"}),
    );

    // Instances: running, stopped and terminated.
    let run = |image: String| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2
                .run_instances()
                .image_id(image)
                .instance_type(InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .expect("RunInstances");
            out.instances()[0].instance_id().expect("id").to_string()
        }
    };
    run(ids["a6_running"].clone()).await;
    let stopped = run(ids["a7_stopped"].clone()).await;
    ec2.stop_instances()
        .instance_ids(stopped)
        .send()
        .await
        .expect("StopInstances");
    let terminated = run(ids["a8_terminated"].clone()).await;
    ec2.terminate_instances()
        .instance_ids(terminated)
        .send()
        .await
        .expect("TerminateInstances");

    // A launch template: v1 old, v2 $Default, v3 $Latest.
    let template = ec2
        .create_launch_template()
        .launch_template_name("web")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&ids["a11_lt_old"])
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let template_id = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("template id")
        .to_string();
    for image in ["a12_lt_default", "a13_lt_latest"] {
        ec2.create_launch_template_version()
            .launch_template_id(&template_id)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(&ids[image])
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplateVersion");
    }
    ec2.modify_launch_template()
        .launch_template_id(&template_id)
        .default_version("2")
        .send()
        .await
        .expect("ModifyLaunchTemplate");

    ec2.disable_image()
        .image_id(&ids["a14_disabled"])
        .send()
        .await
        .expect("DisableImage");

    // An SSM parameter that names an old AMI (found by DescribeImageReferences).
    bed.ssm("us-east-1")
        .await
        .put_parameter()
        .name("/golden/web-a")
        .value(&ids["a16_ssm"])
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .expect("PutParameter");

    // eu-west-1: the batch family, selected by name.
    let eu = bed.ec2("eu-west-1").await;
    let eu_builder = eu_instance(&eu).await;
    for (role, days) in [("batch_new", 10), ("batch_40", 40), ("batch_50", 50)] {
        // Realistic names: the family is the name without its date (`batch`).
        let name = (as_of() - Duration::days(days))
            .format("batch-%Y%m%d")
            .to_string();
        let id = aged_image(
            &Source {
                bed,
                ec2: &eu,
                region: "eu-west-1",
                instance: &eu_builder,
            },
            &name,
            None,
            days,
            &[],
        )
        .await;
        ids.insert(role, id);
    }
    Fleet {
        ids,
        shared_snapshot: snap,
        foreign,
    }
}

async fn eu_instance(eu: &Client) -> String {
    // The base image lives in every region of the test bed (support/amis.json).
    seed::instance(eu, 0, &[]).await
}

/// The account's state: every image with its state and deprecation, and every snapshot.
pub(crate) async fn state(bed: &TestBed) -> Value {
    let mut out = json!({});
    for region in ["us-east-1", "eu-west-1"] {
        let ec2 = bed.ec2(region).await;
        let images = ec2
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .send()
            .await
            .expect("DescribeImages");
        let mut list: Vec<Value> = images
            .images()
            .iter()
            .map(|i| {
                json!({"id": i.image_id(), "state": i.state().map(|s| s.as_str()), "deprecation": i.deprecation_time(),
                       "owner": i.owner_id()})
            })
            .collect();
        list.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_string());
        let foreign = ec2
            .describe_images()
            .owners("210987654321")
            .send()
            .await
            .expect("foreign");
        out[region] = json!({"images": list, "snapshots": seed::snapshot_ids(&ec2).await,
                             "foreign": foreign.images().len()});
    }
    out
}

pub(crate) fn age_out(bed: &TestBed, extra: &[(&str, &str)]) -> Function {
    let mut env = vec![("AMI_POLICIES", POLICIES)];
    env.extend_from_slice(extra);
    Function::start(bed, "ami-age-out", &env)
}

pub(crate) fn actions(report: &Value, kind: &str) -> BTreeSet<String> {
    report["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter(|a| a["action"] == kind)
        .map(|a| {
            a["snapshot_id"]
                .as_str()
                .or(a["image_id"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn snapshots_of_all(bed: &TestBed, fleet: &Fleet, roles: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for role in roles {
        let region = if role.starts_with("batch") {
            "eu-west-1"
        } else {
            "us-east-1"
        };
        out.extend(seed::snapshots_of(&bed.ec2(region).await, fleet.id(role)).await);
    }
    out
}

pub(crate) const DEREGISTERED: &[&str] = &[
    "a5_deregister",
    "a8_terminated",
    "a10_decoy",
    "a14_disabled",
    "a15_shared_snapshot",
    "b3_old",
    "batch_40",
    "batch_50",
];

pub(crate) fn request(dry_run: bool) -> Value {
    json!({"regions": ["us-east-1", "eu-west-1"], "dry_run": dry_run, "as_of": AS_OF})
}

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

    let report = function.invoke(&request(false)).ok();

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
    let planned = report["plan"].as_array().expect("plan").len();
    assert!(planned > 0);
    assert_eq!(
        report["remaining"], planned,
        "every action is left for the next run"
    );
    assert_eq!(
        state(&bed).await,
        before,
        "nothing was started after the deadline"
    );
    drop(out_of_time);

    let function = age_out(&bed, &[]);
    let report = function.invoke(&request(false)).ok();
    assert_eq!(report["complete"], true);
    assert_eq!(report["plan"].as_array().map(Vec::len), Some(planned));
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let bed = TestBed::start();
    let _fleet = build_fleet(&bed).await;
    let before = state(&bed).await;
    let function = age_out(&bed, &[]);
    let cases = [
        (
            json!({"regions": ["us-east-9"], "dry_run": false, "as_of": AS_OF}),
            "$.regions[0]",
        ),
        (
            json!({"policies": ["nope"], "dry_run": false, "as_of": AS_OF}),
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
