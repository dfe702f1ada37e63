//! Every file of `events/invalid/` sent to every function: an error that names the problem, and
//! the account exactly as it was.

use e2e_tests::{root, Function, TestBed};
use serde_json::{json, Value};

use e2e_tests::seed;

const POLICIES: &str = r#"{"dry_run": false, "policies": [
  {"name": "web", "select": {"tags": {"Family": "web*"}}, "family_by": "tag:Family",
   "build": {"instance_tags": {"ami-automation:build": "web"}},
   "share": {"accounts": ["111122223333"], "snapshots": true},
   "copy": {"regions": {"eu-west-1": {}}},
   "retain": {"keep_latest": 0, "allow_empty_family": true, "max_age_days": 1},
   "publish": {"ssm_parameters": ["/ami/{policy}/{family}"]}}
]}"#;

/// Every image with its state and launch permissions, and every snapshot, in both regions.
async fn account(bed: &TestBed) -> Value {
    let mut out = json!({});
    for region in ["us-east-1", "eu-west-1"] {
        let ec2 = bed.ec2(region).await;
        let mut images = Vec::new();
        for id in seed::image_ids(&ec2).await {
            let perms = ec2
                .describe_image_attribute()
                .image_id(&id)
                .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                .send()
                .await
                .expect("DescribeImageAttribute");
            images.push(json!({"id": id, "permissions": perms.launch_permissions().len()}));
        }
        out[region] = json!({"images": images, "snapshots": seed::snapshot_ids(&ec2).await});
    }
    out
}

#[tokio::test]
async fn every_invalid_event_gets_a_clear_error_from_every_function_and_changes_nothing() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[("ami-automation:build", "web")]).await;
    let image = seed::image(&ec2, &builder, "web-old", &[("Family", "web-a")]).await;
    bed.seed_image(
        "us-east-1",
        &image,
        json!({"creation_date": "2020-01-01T00:00:00Z"}),
    );
    let before = account(&bed).await;
    let mut files: Vec<_> = std::fs::read_dir(root().join("events/invalid"))
        .expect("events/invalid")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 26, "the corpus is there");

    for binary in [
        "ami-age-out",
        "ami-build",
        "ami-share",
        "ami-copy",
        "ami-publish",
    ] {
        let function = Function::start(&bed, binary, &[("AMI_POLICIES", POLICIES)]);
        for file in &files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let (kind, message) = function.invoke_file(file).err();
            if name == "truncated.json" {
                // Not JSON: the Lambda runtime refuses it before the handler runs.
                assert!(
                    message.to_lowercase().contains("eof") || message.contains("deserializ"),
                    "{binary} {name}: {message}"
                );
                continue;
            }
            assert_eq!(kind, "InvalidEvent", "{binary} {name}: {message}");
            let expected = match name.as_str() {
                "wrong-types.json" => "$.dry_run",
                "unknown-detail-type.json" => "unsupported event",
                "other-source.json" => "from `attacker.custom`",
                "missing-fields.json" => "ImageId",
                "region-does-not-exist.json" => "us-east-7",
                "unknown-field.json" => "unknown field `dryrun`",
                "bad-image-id.json" => "$.image_ids[0]",
                "unknown-policy.json" => "no policy named `no-such-policy`",
                // A key given twice: refused wherever it is, naming its path.
                "duplicate-dry-run.json" => "`$.dry_run`: this key is given twice",
                "duplicate-policies.json" => "`$.policies`: this key is given twice",
                "duplicate-key-in-detail.json" => "`$.detail.ImageId`: this key is given twice",
                "duplicate-key-in-envelope.json" => "`$.region`: this key is given twice",
                "duplicate-key-in-register.json" => {
                    "`$.register.snapshot_id`: this key is given twice"
                }
                // A null on a field is not its default.
                "null-dry-run.json" => "`$.dry_run`: null is not a value",
                "null-policies.json" => "`$.policies`: null is not a value",
                "null-regions.json" => "`$.regions`: null is not a value",
                "null-as-of.json" => "`$.as_of`: null is not a value",
                // A real run never takes a clock ahead of the wall clock.
                "future-as-of-real-run.json" => "`$.as_of`: 2100-01-01T00:00:00+00:00 is later than now",
                "null-image-ids.json" => "`$.image_ids`: null is not a value",
                "duplicate-image-ids.json" => "`$.image_ids[1]`: `ami-0123456789abcdef0` is listed twice",
                // Ids and states inside events are checked before any call.
                "ami-event-bad-image-id.json" => "`$.detail.ImageId`: `not-an-ami` is not an AMI id",
                "ami-event-snapshot-id.json" => {
                    "`$.detail.ImageId`: `snap-0123456789abcdef0` is not an AMI id"
                }
                "ami-state-does-not-exist.json" => {
                    "`$.detail.State`: `exploding` is not a state EC2 defines: one of pending, available"
                }
                "instance-state-does-not-exist.json" => {
                    "`$.detail.state`: `exploding` is not a state EC2 defines: one of pending, running"
                }
                "instance-event-bad-id.json" => "`$.detail.instance-id`",
                "snapshot-event-bad-id.json" => "`$.detail.snapshot_id`",
                "rollback-bad-image-id.json" => "`$.publish.image_id`: `ami-XYZ` is not an AMI id",
                // ami-publish names `$.publish.policy`, the others `$.publish` (not theirs).
                "rollback-unknown-policy.json" => "`$.publish",
                "validated-bad-image-id.json" => "`$.detail.image_id`",
                // A recall says why, and finds the tree itself (the check runs before any
                // function refuses it as not its own).
                "recall-without-reason.json" => "`$.recall.reason`: missing",
                "recall-with-image-ids.json" => "`$.image_ids`",
                other => panic!("events/invalid/{other} has no expectation here"),
            };
            assert!(
                message.contains(expected),
                "{binary} {name}: expected `{expected}` in {message}"
            );
        }
    }
    assert_eq!(
        account(&bed).await,
        before,
        "the account is exactly as it was"
    );
    assert!(bed.published().is_empty(), "nothing announced");
}

/// docs/deploy.md tells operators to run the dry-run samples against production first: each one,
/// sent to its function with a document that says `dry_run: false`, changes nothing.
#[tokio::test]
async fn every_dry_run_sample_changes_nothing_in_an_account_with_work_to_do() {
    let bed = TestBed::start();
    e2e_tests::fleet::build_fleet(&bed).await;
    let ec2 = bed.ec2("us-east-1").await;
    seed::instance(&ec2, 0, &[("ami-automation:build", "web")]).await;
    let before = account(&bed).await;
    let mut samples: Vec<_> = std::fs::read_dir(root().join("events"))
        .expect("events")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("dry-run") && n.ends_with(".json"))
        })
        .collect();
    samples.sort();
    assert_eq!(samples.len(), 5, "{samples:?}");
    for sample in &samples {
        let name = sample
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let binary = match name.split('-').next() {
            Some("age") => "ami-age-out",
            Some(function) => match function {
                "build" => "ami-build",
                "share" => "ami-share",
                "copy" => "ami-copy",
                "publish" => "ami-publish",
                other => panic!("{name}: no function `{other}`"),
            },
            None => panic!("{name}"),
        };
        let function = Function::start(&bed, binary, &[("AMI_POLICIES", POLICIES)]);
        let report = function.invoke_file(sample).ok();
        assert_eq!(report["dry_run"], true, "{name}: {report}");
        let planned = report
            .get("plan")
            .or(report.get("results"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert!(
            planned > 0,
            "{name}: the account has work for it to plan: {report}"
        );
        assert_eq!(account(&bed).await, before, "{name} changed the account");
    }
    let actions: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| {
            !["Policy Run Completed", "Run Completed"]
                .contains(&e["detail_type"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        actions.is_empty(),
        "a dry run announces no action: {actions:?}"
    );
}
