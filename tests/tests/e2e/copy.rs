//! `ami-copy` end to end: the real binary through the Lambda runtime API, two destination regions.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use e2e_tests::{root, Function, TestBed};
use serde_json::{json, Value};

use e2e_tests::seed;

const POLICIES: &str = r#"{"dry_run": false, "policies": [
  {"name": "web", "select": {"tags": {"Family": "web*"}}, "family_by": "tag:Family",
   "build": {"instance_tags": {"ami-automation:build": "web"}, "tags": {"Team": "platform"}},
   "copy": {"regions": {"eu-west-1": {"encrypted": true}, "us-west-2": {}}}}
]}"#;

fn copier(bed: &TestBed) -> Function {
    Function::start(bed, "ami-copy", &[("AMI_POLICIES", POLICIES)])
}

fn available(image: &str, region: &str) -> Value {
    let text =
        std::fs::read_to_string(root().join("events/copy-ami-available.json")).expect("sample");
    let mut v: Value =
        serde_json::from_str(&text.replace("ami-0123456789abcdef0", image)).expect("json");
    v["region"] = region.into();
    v
}

/// The account's images in a region: id → (tags, source image id, source region).
async fn images(
    ec2: &Client,
) -> BTreeMap<String, (BTreeMap<String, String>, Option<String>, Option<String>)> {
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
                i.image_id().unwrap_or_default().to_string(),
                (
                    tags.collect(),
                    i.source_image_id().map(String::from),
                    i.source_image_region().map(String::from),
                ),
            )
        })
        .collect()
}

async fn source(bed: &TestBed, name: &str) -> String {
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await;
    seed::image(&ec2, &builder, name, &[("Family", "web-a")]).await
}

#[tokio::test]
async fn an_available_ami_is_copied_to_each_destination_with_its_lineage_and_only_once() {
    let bed = TestBed::start();
    let image = source(&bed, "web-20261125").await;
    let function = copier(&bed);

    let report = function.invoke(&available(&image, "us-east-1")).ok();

    assert_eq!(outcomes(&report), vec!["started", "started"], "{report}");
    for (region, encrypted) in [("eu-west-1", true), ("us-west-2", false)] {
        let ec2 = bed.ec2(region).await;
        let copies = images(&ec2).await;
        assert_eq!(copies.len(), 1, "{region}: one copy");
        let (copy, (tags, source_id, source_region)) = copies.into_iter().next().expect("copy");
        assert_eq!(source_id.as_deref(), Some(image.as_str()));
        assert_eq!(source_region.as_deref(), Some("us-east-1"));
        for (k, v) in [
            ("ami-automation:source-image", image.as_str()),
            ("ami-automation:source-region", "us-east-1"),
            ("ami-automation:policy", "web"),
            ("Family", "web-a"),
            ("Team", "platform"),
        ] {
            assert_eq!(
                tags.get(k).map(String::as_str),
                Some(v),
                "{region}: tag {k}"
            );
        }
        let snaps = seed::snapshots_of(&ec2, &copy).await;
        assert_eq!(snaps.len(), 2, "both volumes copied");
        let d = ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(snaps))
            .send()
            .await
            .expect("snapshots");
        for s in d.snapshots() {
            assert_eq!(
                s.encrypted(),
                Some(encrypted),
                "{region}: encrypted as the policy says"
            );
            assert!(s
                .tags()
                .iter()
                .any(|t| t.key() == Some("ami-automation:source-image")
                    && t.value() == Some(image.as_str())));
        }
    }
    let started: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Copy Started")
        .collect();
    assert_eq!(started.len(), 2);

    // The same event again (EventBridge delivers at least once): no second copy.
    let again = function.invoke(&available(&image, "us-east-1")).ok();
    let outcomes: Vec<&str> = again["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, vec!["exists", "exists"], "{again}");
    for region in ["eu-west-1", "us-west-2"] {
        assert_eq!(images(&bed.ec2(region).await).await.len(), 1, "{region}");
    }

    // The copy's own `available` event in its region: a copy is never copied.
    let eu = images(&bed.ec2("eu-west-1").await).await;
    let copy = eu.keys().next().expect("copy").clone();
    let ignored = function.invoke(&available(&copy, "eu-west-1")).ok();
    assert!(
        ignored["ignored"]
            .as_str()
            .unwrap_or_default()
            .contains("a copy is never copied"),
        "{ignored}"
    );
    assert_eq!(images(&bed.ec2("us-west-2").await).await.len(), 1);
    assert_eq!(images(&bed.ec2("us-east-1").await).await.len(), 1);
}

#[tokio::test]
async fn the_sweep_copies_only_what_is_missing_and_a_dry_run_copies_nothing() {
    let bed = TestBed::start();
    let first = source(&bed, "web-1").await;
    let second = source(&bed, "web-2").await;
    let function = copier(&bed);
    function.invoke(&available(&first, "us-east-1")).ok();

    let dry = function
        .invoke_file(&root().join("events/copy-sweep-dry-run.json"))
        .ok();
    let planned: Vec<&str> = dry["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["outcome"] == "planned")
        .filter_map(|r| r["source_image_id"].as_str())
        .collect();
    assert_eq!(planned, vec![second.as_str(), second.as_str()], "{dry}");
    assert_eq!(
        images(&bed.ec2("eu-west-1").await).await.len(),
        1,
        "the dry run copied nothing"
    );

    let sweep = function
        .invoke_file(&root().join("events/copy-sweep.json"))
        .ok();
    let mut by_source: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in sweep["results"].as_array().expect("results") {
        by_source
            .entry(r["source_image_id"].as_str().unwrap_or_default().into())
            .or_default()
            .push(r["outcome"].as_str().unwrap_or_default().into());
    }
    assert_eq!(by_source[&first], vec!["exists", "exists"]);
    assert_eq!(by_source[&second], vec!["started", "started"]);
    for region in ["eu-west-1", "us-west-2"] {
        assert_eq!(images(&bed.ec2(region).await).await.len(), 2, "{region}");
    }
}

#[tokio::test]
async fn sources_that_cannot_be_copied_are_refused_with_the_reason() {
    let bed = TestBed::start();
    let foreign = source(&bed, "web-foreign").await;
    bed.seed_image("us-east-1", &foreign, json!({"owner_id": "210987654321"}));
    let disabled = source(&bed, "web-disabled").await;
    bed.ec2("us-east-1")
        .await
        .disable_image()
        .image_id(&disabled)
        .send()
        .await
        .expect("DisableImage");
    let function = copier(&bed);

    let (kind, message) = function
        .invoke(&json!({"image_ids": [foreign, disabled]}))
        .err();

    assert_eq!(kind, "PartialFailure");
    assert!(
        message.contains(&format!("{foreign} is not an AMI of the account")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "{disabled} is disabled: only available AMIs can be copied"
        )),
        "{message}"
    );
    for region in ["eu-west-1", "us-west-2"] {
        assert!(
            images(&bed.ec2(region).await).await.is_empty(),
            "{region}: nothing copied"
        );
    }

    let (kind, message) = function.invoke(&json!({"image_ids": ["not-an-ami"]})).err();
    assert_eq!(kind, "InvalidEvent");
    assert!(message.contains("$.image_ids[0]"), "{message}");
}

#[tokio::test]
async fn an_unknown_destination_region_fails_the_cold_start() {
    let bed = TestBed::start();
    let bad = POLICIES.replace("us-west-2", "us-west-9");
    let mut function = Function::start(&bed, "ami-copy", &[("AMI_POLICIES", &bad)]);
    let log = function.cold_start_failure();
    assert!(
        log.contains("$.policies[0].copy.regions.us-west-9") && log.contains("unknown region"),
        "{log}"
    );
}

#[tokio::test]
async fn a_destination_region_not_enabled_is_named_in_the_error_and_nothing_is_copied() {
    let bed = TestBed::start();
    let image = source(&bed, "web-optin").await;
    let function = copier(&bed);
    // EC2 answers OptInRequired in a region the account has not enabled.
    bed.inject_fault("CopyImage", "OptInRequired", 100);
    let (kind, message) = function.invoke(&available(&image, "us-east-1")).err();
    assert_eq!(kind, "PartialFailure");
    assert!(
        message.contains("destination region eu-west-1 is not enabled"),
        "{message}"
    );
    for region in ["eu-west-1", "us-west-2"] {
        assert!(
            images(&bed.ec2(region).await).await.is_empty(),
            "{region}: nothing copied"
        );
    }
}

#[tokio::test]
async fn a_copy_that_fails_after_it_was_accepted_is_announced_replaced_and_copied_again() {
    let bed = TestBed::start();
    let image = source(&bed, "web-20261126").await;
    let function = copier(&bed);
    let first = function.invoke(&available(&image, "us-east-1")).ok();
    let copy_of = |report: &Value, region: &str| -> Value {
        report["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["destination"] == region)
            .cloned()
            .expect("a line for the region")
    };
    let failed = copy_of(&first, "eu-west-1")["copy_image_id"]
        .as_str()
        .expect("copy id")
        .to_string();
    // EC2 fails the copy after accepting it (for example: the KMS key cannot be used).
    bed.seed_image(
        "eu-west-1",
        &failed,
        json!({"state": "failed", "state_reason": "Client.InvalidKMSKey.InvalidState"}),
    );

    let second = function.invoke(&available(&image, "us-east-1")).ok();

    let line = copy_of(&second, "eu-west-1");
    assert_eq!(
        line["outcome"], "started",
        "a failed copy is not `exists`: {second}"
    );
    let again = line["copy_image_id"]
        .as_str()
        .expect("new copy")
        .to_string();
    assert_ne!(
        again, failed,
        "a new client token: not the failed copy's id"
    );
    assert_eq!(line["failed_copies"][0]["image_id"], failed.as_str());
    assert_eq!(copy_of(&second, "us-west-2")["outcome"], "exists");
    let eu = bed.ec2("eu-west-1").await;
    let now = images(&eu).await;
    assert!(
        !now.contains_key(&failed),
        "the failed copy is deregistered"
    );
    assert_eq!(
        now.get(&again)
            .map(|(tags, _, _)| tags.get("ami-automation:copy-attempt").cloned()),
        Some(Some("2".to_string()))
    );
    let events = bed.published();
    let announced: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail_type"] == "AMI Copy Failed")
        .collect();
    assert_eq!(announced.len(), 1, "{events:?}");
    assert_eq!(
        announced[0]["detail"]["state_reason"],
        "Client.InvalidKMSKey.InvalidState"
    );

    // Delivered once more: the new copy exists, nothing else happens.
    let third = function.invoke(&available(&image, "us-east-1")).ok();
    assert_eq!(copy_of(&third, "eu-west-1")["outcome"], "exists", "{third}");
    assert_eq!(
        copy_of(&third, "eu-west-1")["copy_image_id"],
        again.as_str()
    );
}

#[tokio::test]
async fn a_source_encrypted_with_a_customer_key_is_copied_only_when_the_deployment_names_the_key() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let kms = bed.kms("us-east-1").await;
    let (image, key) =
        seed::encrypted_image(&ec2, &kms, "web-20261201", &[("Family", "web-a")]).await;
    let function = copier(&bed);

    // EC2 decrypts the source with the caller's permissions: a key the deployment does not name
    // (CopySourceKmsKeyArns) is refused by IAM, and the copy fails saying so.
    let source_key = [
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:ReEncryptFrom",
    ];
    bed.expect_denials(&source_key);
    let (_, refused) = function.invoke(&available(&image, "us-east-1")).err();
    bed.expect_denials(&[]);
    assert!(
        refused.contains("kms:") && refused.contains("CopySourceKmsKeyArns"),
        "{refused}"
    );
    let denied = bed.iam()["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .any(|d| d["result"] == "ImplicitlyDenied" && d["resource"] == key.as_str());
    assert!(denied, "the source key was denied");

    bed.deploy(json!({ "CopySourceKmsKeyArns": key }));
    let report = function.invoke(&available(&image, "us-east-1")).ok();
    assert_eq!(outcomes(&report), vec!["started", "started"], "{report}");
}

/// The outcome of each line of a report.
fn outcomes(report: &Value) -> Vec<&str> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect()
}

#[tokio::test]
async fn a_copy_re_delivered_before_ec2_lists_it_makes_no_second_copy() {
    let bed = TestBed::start();
    let image = source(&bed, "web-20261125").await;
    let function = copier(&bed);
    // EC2 is eventually consistent: a copy it just started is not listed for a while.
    bed.read_after_create(600);

    function.invoke(&available(&image, "us-east-1")).ok();
    let again = function.invoke(&available(&image, "us-east-1")).ok();
    let sweep = function.invoke(&json!({})).ok();

    bed.read_after_create(0);
    for region in ["eu-west-1", "us-west-2"] {
        let copies = images(&bed.ec2(region).await).await;
        assert_eq!(copies.len(), 1, "{region}: one copy: {again} {sweep}");
    }
}
