//! `ami-build` end to end: the real binary through the Lambda runtime API against the test bed.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{InstanceType, ResourceType};
use aws_sdk_ec2::Client;
use e2e_tests::{root, Function, TestBed};
use serde_json::{json, Value};

use e2e_tests::seed;

const POLICIES: &str = r#"{"policies": [
  {"name": "web", "family_by": "tag:Family",
   "build": {"instance_tags": {"ami-automation:build": "web"}, "no_reboot": true, "on_stop": true,
             "name_template": "{policy}-{instance_id}-{timestamp}", "tags": {"Team": "platform"}},
   "retain": {"keep_latest": 3}},
  {"name": "legacy", "build": {"instance_tags": {"Legacy": "*"}}, "retain": {"keep_latest": 2}}
]}"#;

fn build(bed: &TestBed) -> Function {
    Function::start(bed, "ami-build", &[("AMI_POLICIES", POLICIES)])
}

async fn launch(ec2: &Client, image: &str, tags: &[(&str, &str)]) -> String {
    let mut request = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        request = request.tag_specifications(seed::tag_spec(ResourceType::Instance, tags));
    }
    request.send().await.expect("RunInstances").instances()[0]
        .instance_id()
        .expect("id")
        .to_string()
}

/// Every image of the account: name → tags.
async fn images(ec2: &Client) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let out = ec2
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .send()
        .await
        .expect("DescribeImages");
    out.images()
        .iter()
        .map(|i| {
            let tags = i.tags().iter().map(|t| {
                (
                    t.key().unwrap_or_default().into(),
                    t.value().unwrap_or_default().into(),
                )
            });
            (
                i.name().unwrap_or_default().to_string(),
                (i.image_id().unwrap_or_default().to_string(), tags.collect()),
            )
        })
        .collect()
}

fn sample(name: &str) -> std::path::PathBuf {
    root().join("events").join(name)
}

#[tokio::test]
async fn a_scheduled_build_images_each_tagged_instance_once_however_often_the_event_comes() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let running = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web"), ("Family", "web-frontend")],
    )
    .await;
    let stopped = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web")],
    )
    .await;
    ec2.stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .expect("StopInstances");
    launch(&ec2, e2e_tests::BASE_X86, &[("Other", "x")]).await;
    let terminated = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web")],
    )
    .await;
    ec2.terminate_instances()
        .instance_ids(&terminated)
        .send()
        .await
        .expect("TerminateInstances");
    launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "api")],
    )
    .await; // another value
    let function = build(&bed);

    let report = function.invoke_file(&sample("build-scheduled.json")).ok();

    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{report}");
    assert!(
        results.iter().all(|r| r["outcome"] == "created"),
        "{report}"
    );
    let all = images(&ec2).await;
    assert_eq!(all.len(), 2);
    for (instance, family) in [(&running, "web-frontend"), (&stopped, "web")] {
        let name = format!("web-{instance}-20261125T030000Z");
        let (id, tags) = all
            .get(&name)
            .unwrap_or_else(|| panic!("{name} in {all:?}"));
        assert_eq!(tags.get("Team").map(String::as_str), Some("platform"));
        assert_eq!(tags.get("Family").map(String::as_str), Some(family));
        assert_eq!(
            tags.get("ami-automation:policy").map(String::as_str),
            Some("web")
        );
        assert_eq!(tags.get("ami-automation:source-instance"), Some(instance));
        assert_eq!(
            tags.get("ami-automation:created-by").map(String::as_str),
            Some("ami-build")
        );
        let snaps = seed::snapshots_of(&ec2, id).await;
        let described = ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(snaps))
            .send()
            .await
            .expect("snapshots");
        for s in described.snapshots() {
            assert!(s
                .tags()
                .iter()
                .any(|t| t.key() == Some("ami-automation:policy") && t.value() == Some("web")));
        }
    }

    // The same event delivered again: each AMI is found, nothing is created.
    let again = function.invoke_file(&sample("build-scheduled.json")).ok();
    let outcomes: Vec<&str> = again["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, vec!["exists", "exists"]);
    assert!(again["results"]
        .as_array()
        .expect("results")
        .iter()
        .all(|r| r["image_id"].is_string()));
    assert_eq!(images(&ec2).await.len(), 2);
    let started = bed
        .published()
        .iter()
        .filter(|e| e["detail_type"] == "AMI Build Started")
        .count();
    assert_eq!(started, 2, "one AMI Build Started per image");
}

#[tokio::test]
async fn a_dry_run_lists_the_names_and_creates_nothing() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let instance = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web")],
    )
    .await;
    let function = build(&bed);
    let report = function.invoke_file(&sample("build-dry-run.json")).ok();
    assert_eq!(report["results"][0]["outcome"], "planned");
    assert!(report["results"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&format!("web-{instance}-")));
    assert!(images(&ec2).await.is_empty());
    assert!(bed.published().is_empty());
}

#[tokio::test]
async fn a_stopped_instance_is_imaged_when_its_policy_says_on_stop() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let instance = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web")],
    )
    .await;
    ec2.stop_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("StopInstances");
    let function = build(&bed);
    let event = |id: &str, state: &str| {
        json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "region": "us-east-1",
               "detail": {"instance-id": id, "state": state}})
    };

    let running = function.invoke(&event(&instance, "running")).ok();
    assert!(
        running["ignored"]
            .as_str()
            .unwrap_or_default()
            .contains("only `stopped`"),
        "{running}"
    );
    // The name comes from the event's own time (its window), not from the clock: a re-delivery,
    // even one that arrives in a later window, makes the same name and creates nothing.
    let mut stopped = event(&instance, "stopped");
    stopped["time"] = "2026-03-01T12:34:56Z".into();
    let report = function.invoke(&stopped).ok();
    assert_eq!(report["results"][0]["outcome"], "created", "{report}");
    assert_eq!(
        report["results"][0]["name"],
        format!("web-{instance}-20260301T120000Z"),
        "{report}"
    );
    assert_eq!(images(&ec2).await.len(), 1);
    let again = function.invoke(&stopped).ok();
    assert_eq!(again["results"][0]["outcome"], "exists", "{again}");
    assert_eq!(images(&ec2).await.len(), 1);

    let (kind, message) = function
        .invoke(&event("i-0000000000000dead", "stopped"))
        .err();
    assert_eq!(kind, "PartialFailure");
    assert!(
        message.contains("i-0000000000000dead does not exist"),
        "{message}"
    );
    assert_eq!(images(&ec2).await.len(), 1);
}

async fn snapshot(ec2: &Client, tags: &[(&str, &str)]) -> String {
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .send()
        .await
        .expect("CreateVolume");
    let mut request = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().expect("volume"));
    if !tags.is_empty() {
        request = request.tag_specifications(seed::tag_spec(ResourceType::Snapshot, tags));
    }
    request
        .send()
        .await
        .expect("CreateSnapshot")
        .snapshot_id()
        .expect("id")
        .to_string()
}

#[tokio::test]
async fn a_snapshot_is_registered_with_the_requested_attributes_once() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let snap = snapshot(&ec2, &[]).await;
    let function = build(&bed);
    let text = std::fs::read_to_string(sample("build-register-snapshot.json")).expect("sample");
    let request: Value =
        serde_json::from_str(&text.replace("snap-0123456789abcdef0", &snap)).expect("json");

    let report = function.invoke(&request).ok();

    assert_eq!(report["results"][0]["outcome"], "created", "{report}");
    let id = report["results"][0]["image_id"]
        .as_str()
        .expect("image id")
        .to_string();
    let d = ec2
        .describe_images()
        .image_ids(&id)
        .send()
        .await
        .expect("DescribeImages");
    let image = &d.images()[0];
    assert_eq!(image.name(), Some("web-golden-2026-11-25"));
    assert_eq!(image.architecture().map(|a| a.as_str()), Some("arm64"));
    assert_eq!(image.boot_mode().map(|b| b.as_str()), Some("uefi"));
    assert_eq!(image.ena_support(), Some(true));
    assert_eq!(image.root_device_name(), Some("/dev/xvda"));
    assert_eq!(image.virtualization_type().map(|v| v.as_str()), Some("hvm"));
    let root = image.block_device_mappings()[0].ebs().expect("ebs");
    assert_eq!(root.snapshot_id(), Some(snap.as_str()));
    assert_eq!(root.delete_on_termination(), Some(true));
    assert_eq!(root.volume_type().map(|v| v.as_str()), Some("gp3"));

    let again = function.invoke(&request).ok();
    assert_eq!(again["results"][0]["outcome"], "exists");
    assert_eq!(again["results"][0]["image_id"], id.as_str());
    assert_eq!(images(&ec2).await.len(), 1);
}

#[tokio::test]
async fn a_snapshot_tagged_for_registration_becomes_an_ami_when_it_completes() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let tagged = snapshot(
        &ec2,
        &[
            ("ami-automation:register", "web"),
            ("ami-automation:architecture", "arm64"),
        ],
    )
    .await;
    let untagged = snapshot(&ec2, &[]).await;
    let function = build(&bed);
    let text = std::fs::read_to_string(sample("build-snapshot-created.json")).expect("sample");

    let report = function
        .invoke(
            &serde_json::from_str(&text.replace("snap-0123456789abcdef0", &tagged)).expect("json"),
        )
        .ok();
    assert_eq!(report["results"][0]["outcome"], "created", "{report}");
    assert_eq!(report["results"][0]["name"], format!("web-{tagged}"));
    let ignored = function
        .invoke(
            &serde_json::from_str(&text.replace("snap-0123456789abcdef0", &untagged))
                .expect("json"),
        )
        .ok();
    assert!(
        ignored["ignored"]
            .as_str()
            .unwrap_or_default()
            .contains("no ami-automation:register tag"),
        "{ignored}"
    );
    assert_eq!(images(&ec2).await.len(), 1);
}

#[tokio::test]
async fn what_cannot_be_built_is_refused_with_the_reason_and_nothing_is_created() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let legacy = launch(&ec2, "ami-0a1b2c3d4e5f60003", &[("Legacy", "yes")]).await;
    let function = build(&bed);

    let (kind, message) = function
        .invoke(&json!({"policies": ["legacy"], "as_of": "2026-11-25T00:00:00Z"}))
        .err();
    assert_eq!(kind, "PartialFailure");
    assert!(
        message.contains(&legacy) && message.contains("instance-store-backed"),
        "{message}"
    );

    let (kind, message) = function.invoke(&json!({"policies": ["nope"]})).err();
    assert_eq!(kind, "InvalidEvent");
    assert!(message.contains("no policy named `nope`"), "{message}");

    let snap = snapshot(&ec2, &[]).await;
    let paravirtual = json!({"register": {"snapshot_id": snap, "policy": "web", "virtualization_type": "paravirtual"}});
    let (kind, message) = function.invoke(&paravirtual).err();
    assert_eq!(kind, "InvalidEvent");
    assert!(message.contains("paravirtual"), "{message}");

    let bad_name = json!({"register": {"snapshot_id": snap, "policy": "web", "name": "x!"}});
    let (kind, message) = function.invoke(&bad_name).err();
    assert_eq!(kind, "InvalidEvent");
    assert!(message.contains("$.register.name"), "{message}");

    // A snapshot another account owns.
    let builder = seed::instance(&ec2, 0, &[]).await;
    let foreign_image = seed::image(&ec2, &builder, "foreign-source", &[]).await;
    let foreign_snapshot = seed::snapshots_of(&ec2, &foreign_image).await[0].clone();
    bed.seed_image(
        "us-east-1",
        &foreign_image,
        json!({"snapshot_owner_id": "210987654321"}),
    );
    let (kind, message) = function
        .invoke(&json!({"register": {"snapshot_id": foreign_snapshot, "policy": "web"}}))
        .err();
    assert_eq!(kind, "PartialFailure");
    assert!(message.contains("not owned by the account"), "{message}");

    assert_eq!(
        images(&ec2).await.len(),
        1,
        "only the test's own source image"
    );
}

#[tokio::test]
async fn a_name_template_that_cannot_make_a_valid_name_fails_the_cold_start() {
    let bed = TestBed::start();
    let bad = POLICIES.replace(
        "{policy}-{instance_id}-{timestamp}",
        "{policy}:{instance_id}",
    );
    let mut function = Function::start(&bed, "ami-build", &[("AMI_POLICIES", &bad)]);
    let log = function.cold_start_failure();
    assert!(log.contains("$.policies[0].build.name_template"), "{log}");
}

#[tokio::test]
async fn a_failed_build_is_announced() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let instance = launch(
        &ec2,
        e2e_tests::BASE_X86,
        &[("ami-automation:build", "web")],
    )
    .await;
    let function = build(&bed);
    let report = function.invoke(&json!({"policies": ["web"]})).ok();
    let image = report["results"][0]["image_id"]
        .as_str()
        .expect("image")
        .to_string();
    let text = std::fs::read_to_string(sample("build-ami-failed.json")).expect("sample");
    let event: Value =
        serde_json::from_str(&text.replace("ami-0123456789abcdef0", &image)).expect("json");

    function.invoke(&event).ok();

    let failed: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Build Failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["detail"]["ImageId"], image.as_str());
    assert_eq!(
        failed[0]["detail"]["ErrorMessage"],
        "Snapshot creation failed"
    );
    let _ = instance;
}
