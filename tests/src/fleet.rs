//! The age-out fleet: a seeded account with every case the safety rules name, by role, and the
//! helpers that read its state and run `ami-age-out` over it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Function, TestBed};
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::seed;

pub const POLICIES: &str = r#"{"dry_run": true, "policies": [
  {"name": "web", "select": {"tags": {"Family": "web*"}}, "family_by": "tag:Family",
   "retain": {"keep_latest": 2, "deprecate_after_days": 30, "disable_after_days": 60, "max_age_days": 90,
              "protect_tags": {"Retain": "true"}, "in_use": {"launch_template_versions": "all"}}},
  {"name": "batch", "select": {"name_pattern": "batch-*"},
   "retain": {"keep_latest": 1, "max_age_days": 30}}
]}"#;

/// The clock of the fleet's runs: a minute before this test process first asked, to the second,
/// so the fleet's ages are the same in every run and a real run's `as_of` is never ahead of the
/// wall clock (such a request is refused).
pub fn as_of() -> DateTime<Utc> {
    static AT: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let now = Utc::now() - Duration::minutes(1);
        DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
    })
}

/// [`as_of`] as a run request gives it.
pub fn as_of_text() -> String {
    as_of().to_rfc3339()
}

/// The fleet, by role.
pub struct Fleet {
    pub ids: BTreeMap<&'static str, String>,
    pub shared_snapshot: String,
    pub foreign: String,
}

impl Fleet {
    pub fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    /// Every role with its image id.
    pub fn roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.ids.iter().map(|(role, id)| (*role, id.as_str()))
    }
}

/// Where and from what an aged image is made.
pub struct Source<'a> {
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

pub async fn aged_image(
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

pub async fn build_fleet(bed: &TestBed) -> Fleet {
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

pub async fn eu_instance(eu: &Client) -> String {
    // The base image lives in every region of the test bed (support/amis.json).
    seed::instance(eu, 0, &[]).await
}

/// The account's state: every image with its state and deprecation, and every snapshot.
pub async fn state(bed: &TestBed) -> Value {
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

pub fn age_out(bed: &TestBed, extra: &[(&str, &str)]) -> Function {
    let mut env = vec![("AMI_POLICIES", POLICIES)];
    env.extend_from_slice(extra);
    Function::start(bed, "ami-age-out", &env)
}

pub fn actions(report: &Value, kind: &str) -> BTreeSet<String> {
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

pub async fn snapshots_of_all(bed: &TestBed, fleet: &Fleet, roles: &[&str]) -> BTreeSet<String> {
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

pub const DEREGISTERED: &[&str] = &[
    "a5_deregister",
    "a8_terminated",
    "a10_decoy",
    "a14_disabled",
    "a15_shared_snapshot",
    "b3_old",
    "batch_40",
    "batch_50",
];

pub fn request(dry_run: bool) -> Value {
    json!({"regions": ["us-east-1", "eu-west-1"], "dry_run": dry_run, "as_of": as_of_text()})
}
