//! `ami-distribute` end to end: the real binary through the Lambda runtime API, a sweep that
//! queues one unit per target account, the units delivered from the queue as Lambda's SQS event
//! source delivers them, and the target accounts' own EC2 and SSM (each its own moto account,
//! reached through target-role.yaml's role, evaluated by IAM).

use e2e_tests::{seed, sqs_event, Function, TestBed};
use serde_json::{json, Value};

const COPYING: &str = "111111111111";
const SHARING: &str = "222222222222";
const NO_ROLE: &str = "333333333333";
const PARAMETER: &str = "/ami/golden/web";

fn policies() -> String {
    policies_with(json!({}))
}

/// The document, the copying target's copies made as `copy` says.
fn policies_with(copy: Value) -> String {
    json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [COPYING, SHARING, NO_ROLE], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING], "copy": copy, "ssm_parameters": ["/ami/golden/{family}"]},
            {"accounts": [SHARING, NO_ROLE], "ssm_parameters": ["/ami/golden/{family}"]}
        ]}
    }]})
    .to_string()
}

async fn golden(bed: &TestBed, name: &str) -> String {
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await;
    seed::image(
        &ec2,
        &builder,
        name,
        &[("Team", "platform"), ("Family", "web")],
    )
    .await
}

fn outcomes(reports: &[Value], account: &str) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["account"] == account)
        .map(|l| {
            format!(
                "{} {}",
                l["action"].as_str().unwrap_or(""),
                l["outcome"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The images `account` owns in us-east-1: (id, encrypted, source-image tag).
async fn owned(bed: &TestBed, account: &str) -> Vec<(String, bool, Option<String>)> {
    let ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(account, "us-east-1").await);
    let out = ec2
        .describe_images()
        .owners("self")
        .send()
        .await
        .expect("DescribeImages");
    out.images()
        .iter()
        .map(|i| {
            let encrypted = i
                .block_device_mappings()
                .iter()
                .any(|m| m.ebs().and_then(|e| e.encrypted()).unwrap_or(false));
            let source = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("ami-automation:source-image"))
                .and_then(|t| t.value().map(String::from));
            (
                i.image_id().unwrap_or_default().to_string(),
                encrypted,
                source,
            )
        })
        .collect()
}

/// The KMS key of the first snapshot of `account`'s (COPYING's) image.
async fn copy_key(bed: &TestBed, image: &str) -> Option<String> {
    let ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(COPYING, "us-east-1").await);
    let out = ec2.describe_images().image_ids(image).send().await.ok()?;
    let snapshot = out
        .images()
        .first()?
        .block_device_mappings()
        .iter()
        .find_map(|m| m.ebs()?.snapshot_id())?
        .to_string();
    let snaps = ec2
        .describe_snapshots()
        .snapshot_ids(snapshot)
        .send()
        .await
        .ok()?;
    snaps.snapshots().first()?.kms_key_id().map(String::from)
}

async fn parameter(bed: &TestBed, account: &str) -> Option<String> {
    let ssm = aws_sdk_ssm::Client::new(&bed.sdk_in(account, "us-east-1").await);
    ssm.get_parameter()
        .name(PARAMETER)
        .send()
        .await
        .ok()
        .and_then(|p| p.parameter().and_then(|p| p.value().map(String::from)))
}

#[tokio::test]
async fn each_target_gets_its_own_encrypted_copy_or_the_shared_ami_and_a_target_without_the_role_fails_alone(
) {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[NO_ROLE]);
    bed.expect_denials(&["sts:AssumeRole", "sts:TagSession"]);
    let image = golden(&bed, "web-20261201").await;
    // The copying target encrypts with its own customer managed key.
    let key = aws_sdk_kms::Client::new(&bed.sdk_in(COPYING, "us-east-1").await)
        .create_key()
        .send()
        .await
        .expect("CreateKey in the target");
    let key_arn = key
        .key_metadata()
        .and_then(|k| k.arn())
        .unwrap_or_default()
        .to_string();
    let env = [(
        "AMI_POLICIES",
        policies_with(json!({"kms_key_id": key_arn})),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let share = Function::start(&bed, "ami-share", &env);
    share.invoke(&json!({})).ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);

    let sweep = distribute.invoke(&json!({})).ok();
    let queued: Vec<&str> = sweep["results"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["outcome"] == "queued")
        .filter_map(|l| l["account"].as_str())
        .collect();
    assert_eq!(queued, vec![COPYING, SHARING, NO_ROLE], "{sweep}");

    let first = bed.deliver_units(&distribute).await;
    assert_eq!(
        outcomes(&first, COPYING),
        vec!["copy started", "publish waiting"],
        "{first:?}"
    );
    assert_eq!(
        outcomes(&first, SHARING),
        vec!["publish published"],
        "{first:?}"
    );
    assert_eq!(outcomes(&first, NO_ROLE), vec!["unit failed"], "{first:?}");
    let failures: Vec<&Value> = first
        .iter()
        .filter(|r| {
            r["batchItemFailures"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        })
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "only the unit without a role is delivered again: {first:?}"
    );
    let copies = owned(&bed, COPYING).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].1, "the target's copy is encrypted: {copies:?}");
    assert_eq!(
        copy_key(&bed, &copies[0].0).await,
        Some(key_arn.clone()),
        "with the target's key"
    );
    assert_eq!(copies[0].2.as_deref(), Some(image.as_str()));
    assert_eq!(
        parameter(&bed, SHARING).await.as_deref(),
        Some(image.as_str())
    );
    assert!(
        owned(&bed, SHARING).await.is_empty(),
        "a sharing target owns no copy"
    );
    let failed_events: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Distribution Failed")
        .collect();
    assert_eq!(failed_events.len(), 1);
    assert_eq!(failed_events[0]["detail"]["account"], NO_ROLE);

    // The next sweep: the copy is available, the parameter names it; nothing is copied again.
    distribute.invoke(&json!({})).ok();
    let second = bed.deliver_units(&distribute).await;
    assert_eq!(
        outcomes(&second, COPYING),
        vec!["copy unchanged", "publish published"],
        "{second:?}"
    );
    assert_eq!(
        outcomes(&second, SHARING),
        vec!["publish unchanged"],
        "{second:?}"
    );
    assert_eq!(
        owned(&bed, COPYING).await.len(),
        1,
        "a re-delivery makes no second copy"
    );
    assert_eq!(parameter(&bed, COPYING).await, Some(copies[0].0.clone()));
}

#[tokio::test]
async fn a_unit_the_stack_did_not_seal_is_refused_and_changes_nothing() {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[]);
    golden(&bed, "web-20261201").await;
    let env = [("AMI_POLICIES", policies())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let distribute = Function::start(&bed, "ami-distribute", &env);
    let forged = json!({"account": COPYING, "region": "us-east-1", "dry_run": false,
        "expires": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(), "seal": "AAAA"});
    let event = sqs_event("m-1", "r", &forged.to_string());
    let report = distribute.invoke(&event).ok();
    assert_eq!(report["results"][0]["outcome"], "refused", "{report}");
    assert!(
        report["batchItemFailures"]
            .as_array()
            .is_some_and(|f| f.is_empty()),
        "{report}"
    );
    assert_eq!(bed.calls().get("AssumeRole"), None, "no role was assumed");
    assert!(owned(&bed, COPYING).await.is_empty(), "nothing was copied");
}

fn only_copying() -> String {
    json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [COPYING], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING], "copy": {}, "ssm_parameters": ["/ami/golden/{family}"]}
        ]}
    }]})
    .to_string()
}

/// Two sweeps, each delivered: a new AMI is copied, then its copy published.
async fn serve_twice(bed: &TestBed, distribute: &Function) -> Vec<Value> {
    distribute.invoke(&json!({})).ok();
    let mut reports = bed.deliver_units(distribute).await;
    distribute.invoke(&json!({})).ok();
    reports.extend(bed.deliver_units(distribute).await);
    reports
}

/// `old` is deregistered at the source, then a sweep is served: its reports, and their retire
/// lines.
async fn source_deregistered(
    bed: &TestBed,
    distribute: &Function,
    old: &str,
) -> (Vec<Value>, Vec<Value>) {
    bed.ec2("us-east-1")
        .await
        .deregister_image()
        .image_id(old)
        .send()
        .await
        .expect("DeregisterImage");
    distribute.invoke(&json!({})).ok();
    let reports = bed.deliver_units(distribute).await;
    let retire = reports
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["action"] == "retire")
        .collect();
    (reports, retire)
}

/// COPYING holds the stack's copy of an older AMI (`old`), which a newer one replaced there:
/// the distribute function, the old AMI and its copy.
async fn replaced_copy(bed: &TestBed, document: String) -> (Function, String, String) {
    bed.targets(&[COPYING], &[]);
    let env = [("AMI_POLICIES", document)];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let share = Function::start(bed, "ami-share", &env);
    let distribute = Function::start(bed, "ami-distribute", &env);
    let old = golden(bed, "web-20261101").await;
    share.invoke(&json!({})).ok();
    serve_twice(bed, &distribute).await;
    let old_copy = owned(bed, COPYING).await[0].0.clone();

    let new = golden(bed, "web-20261201").await;
    bed.seed_image(
        "us-east-1",
        &new,
        json!({"creation_date": "2026-12-01T00:00:00.000Z"}),
    );
    bed.seed_image(
        "us-east-1",
        &old,
        json!({"creation_date": "2026-11-01T00:00:00.000Z"}),
    );
    share.invoke(&json!({})).ok();
    serve_twice(bed, &distribute).await;
    (distribute, old, old_copy)
}

#[tokio::test]
async fn a_copy_whose_source_left_is_retired_in_the_target_only_once_nothing_there_uses_it() {
    let bed = TestBed::start();
    let (distribute, old, old_copy) = replaced_copy(&bed, only_copying()).await;

    // A team in the target still runs the old copy.
    let target_ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(COPYING, "us-east-1").await);
    let running = target_ec2
        .run_instances()
        .image_id(&old_copy)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances in the target");
    let instance = running.instances()[0]
        .instance_id()
        .unwrap_or_default()
        .to_string();
    assert_ne!(
        parameter(&bed, COPYING).await,
        Some(old_copy.clone()),
        "the parameter moved on"
    );
    // Someone in the target copies the old AMI themselves and tags it as the stack's copy.
    let lineage = [
        ("ami-automation:created-by", "ami-distribute"),
        ("ami-automation:source-account", "123456789012"),
        ("ami-automation:source-image", old.as_str()),
    ];
    let planted = target_ec2
        .copy_image()
        .source_image_id(&old)
        .source_region("us-east-1")
        .name("their-own-copy")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Image)
                .set_tags(Some(
                    lineage
                        .iter()
                        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("CopyImage by the target's own team")
        .image_id()
        .unwrap_or_default()
        .to_string();

    // The source of the old copy is deregistered: the copy in use is kept, named in the report.
    let (kept, retire) = source_deregistered(&bed, &distribute, &old).await;
    let retire: Vec<&Value> = retire
        .iter()
        .filter(|l| l["image_id"] == old_copy.as_str())
        .collect();
    assert_eq!(retire.len(), 1, "{kept:?}");
    assert_eq!(retire[0]["outcome"], "kept", "{kept:?}");
    assert!(
        retire[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&instance),
        "{kept:?}"
    );
    assert!(owned(&bed, COPYING)
        .await
        .iter()
        .any(|(id, ..)| id == &old_copy));

    // Once the team's instance is gone, the copy is retired with its snapshots.
    target_ec2
        .terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("TerminateInstances");
    distribute.invoke(&json!({})).ok();
    let retired = bed.deliver_units(&distribute).await;
    assert!(
        outcomes(&retired, COPYING).contains(&"retire retired".to_string()),
        "{retired:?}"
    );
    let left: Vec<String> = owned(&bed, COPYING)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert!(!left.contains(&old_copy) && left.len() == 2, "{left:?}");
    assert!(
        left.contains(&planted),
        "a copy only tagged as the stack's is never retired: {left:?}"
    );
    let kept_planted = retired
        .iter()
        .flat_map(|r| r["results"].as_array().into_iter().flatten())
        .any(|l| l["image_id"] == planted.as_str() && l["outcome"] == "kept");
    assert!(kept_planted, "{retired:?}");
}

#[tokio::test]
async fn a_copy_whose_deregistered_source_the_recycle_bin_holds_is_deprecated_not_deregistered() {
    let bed = TestBed::start();
    let (distribute, old, old_copy) = replaced_copy(&bed, only_copying()).await;

    // The source is deregistered into the Recycle Bin (a 7-day rule): it can be restored.
    bed.retention_rule("us-east-1", "EC2_IMAGE", 7).await;
    let (served, retire) = source_deregistered(&bed, &distribute, &old).await;
    let ec2 = bed.ec2("us-east-1").await;
    assert_eq!(retire.len(), 1, "{served:?}");
    let reason = retire[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Recycle Bin") && reason.contains("deprecated"),
        "{reason}"
    );
    let target_ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(COPYING, "us-east-1").await);
    let copy = target_ec2
        .describe_images()
        .image_ids(&old_copy)
        .send()
        .await
        .expect("DescribeImages in the target");
    assert!(
        copy.images()[0].deprecation_time().is_some(),
        "still registered, deprecated: {copy:?}"
    );

    // Restored from the bin, the source is back: its copy is still there to follow it.
    ec2.restore_image_from_recycle_bin()
        .image_id(&old)
        .send()
        .await
        .expect("RestoreImageFromRecycleBin");
    distribute.invoke(&json!({})).ok();
    let served = bed.deliver_units(&distribute).await;
    assert!(
        !outcomes(&served, COPYING)
            .iter()
            .any(|o| o.starts_with("retire")),
        "{served:?}"
    );
    assert!(owned(&bed, COPYING)
        .await
        .iter()
        .any(|(id, ..)| id == &old_copy));
}

#[tokio::test]
async fn a_target_removed_from_the_policy_is_no_longer_served_and_keeps_its_copy() {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[]);
    bed.expect_denials(&["sts:AssumeRole", "sts:TagSession"]);
    golden(&bed, "web-20261201").await;
    let env = [("AMI_POLICIES", policies())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);
    serve_twice(&bed, &distribute).await;
    let copy = owned(&bed, COPYING).await;
    assert_eq!(copy.len(), 1);

    // The policy no longer lists COPYING (a new deployment of the document).
    drop(distribute);
    let without = json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [SHARING], "snapshots": true},
        "distribute": {"targets": [{"accounts": [SHARING], "ssm_parameters": ["/ami/golden/{family}"]}]}
    }]})
    .to_string();
    let distribute = Function::start(
        &bed,
        "ami-distribute",
        &[("AMI_POLICIES", without.as_str())],
    );
    let sweep = distribute.invoke(&json!({})).ok();
    let accounts: Vec<&str> = sweep["results"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["account"].as_str())
        .collect();
    assert_eq!(accounts, vec![SHARING], "{sweep}");
    let served = bed.deliver_units(&distribute).await;
    assert!(outcomes(&served, COPYING).is_empty(), "{served:?}");
    assert_eq!(owned(&bed, COPYING).await, copy, "nothing is deleted there");
    assert_eq!(parameter(&bed, COPYING).await, Some(copy[0].0.clone()));
}

#[tokio::test]
async fn an_ous_accounts_are_served_through_it_and_one_moved_out_is_no_longer_served() {
    let bed = TestBed::start();
    bed.targets(&[SHARING, NO_ROLE], &[]);
    let units = bed.organization(json!({"platform": [SHARING, NO_ROLE]}));
    let ou = units["platform"]
        .as_str()
        .expect("the OU's ARN")
        .to_string();
    let image = golden(&bed, "web-20261201").await;
    let document = json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"organizational_units": [ou]},
        "distribute": {"targets": [{"organizational_units": [ou], "ssm_parameters": ["/ami/golden/{family}"]}]}
    }]})
    .to_string();
    let env = [("AMI_POLICIES", document.as_str())];
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);

    let sweep = distribute.invoke(&json!({})).ok();
    let queued: Vec<(&str, &str)> = sweep["results"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["account"].as_str().unwrap_or(""),
                l["organizational_unit"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        queued,
        vec![(SHARING, ou.as_str()), (NO_ROLE, ou.as_str())],
        "{sweep}"
    );
    let served = bed.deliver_units(&distribute).await;
    assert_eq!(
        outcomes(&served, SHARING),
        vec!["publish published"],
        "{served:?}"
    );
    assert_eq!(
        parameter(&bed, NO_ROLE).await.as_deref(),
        Some(image.as_str())
    );

    // A newer AMI; its units are queued, then NO_ROLE leaves the OU before they are delivered:
    // its unit (queued through the OU) serves it nothing, and its parameter stays.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    bed.seed_image("us-east-1", &image, json!({"creation_date": yesterday}));
    let newer = golden(&bed, "web-20261202").await;
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    distribute.invoke(&json!({})).ok();
    bed.organization(json!({"platform": [SHARING]}));
    let served = bed.deliver_units(&distribute).await;
    assert_eq!(
        parameter(&bed, SHARING).await.as_deref(),
        Some(newer.as_str())
    );
    assert_eq!(
        parameter(&bed, NO_ROLE).await.as_deref(),
        Some(image.as_str()),
        "{served:?}"
    );
    let left: Vec<String> = served
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["account"] == NO_ROLE)
        .map(|l| l["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        left.len() == 1 && left[0].contains("left the OU after the sweep"),
        "{left:?}"
    );

    // The next sweep does not queue it at all.
    let sweep = distribute.invoke(&json!({})).ok();
    let accounts: Vec<&str> = sweep["results"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["account"].as_str())
        .collect();
    assert_eq!(accounts, vec![SHARING], "{sweep}");
    bed.deliver_units(&distribute).await;
    assert_eq!(
        parameter(&bed, NO_ROLE).await.as_deref(),
        Some(image.as_str()),
        "nothing is changed there"
    );
}

#[tokio::test]
async fn units_queued_for_real_run_dry_once_the_document_says_dry_run() {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING, NO_ROLE], &[]);
    golden(&bed, "web-20261201").await;
    let real = policies();
    let env = [("AMI_POLICIES", real.as_str())];
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let sweep = Function::start(&bed, "ami-distribute", &env)
        .invoke(&json!({"regions": ["us-east-1"]}))
        .ok();
    assert_eq!(sweep["dry_run"], false, "{sweep}");

    // The operator turns dry_run on while the units wait on the queue.
    let dry = real.replacen("\"dry_run\":false", "\"dry_run\":true", 1);
    assert_ne!(dry, real);
    let env = [("AMI_POLICIES", dry.as_str())];
    let served = bed
        .deliver_units(&Function::start(&bed, "ami-distribute", &env))
        .await;
    assert_eq!(
        outcomes(&served, COPYING),
        vec!["copy planned", "publish waiting"]
    );
    assert_eq!(outcomes(&served, SHARING), vec!["publish planned"]);
    assert!(owned(&bed, COPYING).await.is_empty(), "no copy is made");
    assert_eq!(
        parameter(&bed, SHARING).await,
        None,
        "no parameter is written"
    );
}

#[tokio::test]
async fn a_unit_that_keeps_failing_lands_in_the_dead_letter_queue_after_three_deliveries() {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[NO_ROLE]);
    bed.expect_denials(&["sts:AssumeRole", "sts:TagSession"]);
    golden(&bed, "web-20261201").await;
    let env = [("AMI_POLICIES", policies())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);
    distribute.invoke(&json!({"regions": ["us-east-1"]})).ok();
    let sqs = bed.sqs().await;
    let dead = bed.distribute_queue.replace(
        "ami-lifecycle-distribute",
        "ami-lifecycle-distribute-dead-letter",
    );

    // Lambda receives each message, then SQS delivers what was not deleted again (here at once:
    // the visibility timeout is set to 0 on receipt).
    let mut failed_deliveries = 0;
    for _ in 0..6 {
        let out = sqs
            .receive_message()
            .queue_url(&bed.distribute_queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in out.messages() {
            let event = sqs_event(
                m.message_id().unwrap_or_default(),
                m.receipt_handle().unwrap_or_default(),
                m.body().unwrap_or_default(),
            );
            let report = distribute.invoke(&event).ok();
            if report["batchItemFailures"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                failed_deliveries += 1;
            } else {
                sqs.delete_message()
                    .queue_url(&bed.distribute_queue)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }
    assert_eq!(
        failed_deliveries, 3,
        "the unit without a role is delivered three times"
    );
    let parked = sqs
        .receive_message()
        .queue_url(&dead)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage from the dead-letter queue");
    let bodies: Vec<&str> = parked.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(
        bodies[0].contains(NO_ROLE),
        "its body names the account: {}",
        bodies[0]
    );
}

/// AssumeRole of the target role in COPYING, as the function `binary` calls it.
async fn assume_as(
    bed: &TestBed,
    binary: &str,
    external_id: Option<&str>,
    tag: Option<&str>,
) -> Result<(), String> {
    let sts = aws_sdk_sts::Client::new(&bed.sdk_as(binary, "us-east-1").await);
    // template.yaml's TargetRoleName default, as target-role.yaml's RoleName.
    let mut request = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{COPYING}:role/ami-lifecycle-target"))
        .role_session_name(binary)
        .set_external_id(external_id.map(String::from));
    if let Some(value) = tag {
        request = request.tags(
            aws_sdk_sts::types::Tag::builder()
                .key("ami-lifecycle-function")
                .value(value)
                .build()
                .expect("a tag"),
        );
    }
    request.send().await.map(|_| ()).map_err(|e| {
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e.into_service_error())
            .unwrap_or("?")
            .to_string()
    })
}

#[tokio::test]
async fn the_target_role_trusts_only_the_distribute_role_with_the_external_id_and_its_tag() {
    let bed = TestBed::start();
    bed.targets(&[COPYING], &[]);
    bed.expect_denials(&["sts:AssumeRole", "sts:TagSession"]);
    const EXTERNAL_ID: &str = "testbed-external-id";

    // Another of the stack's functions, even one whose own role allows any AssumeRole: the
    // target's trust policy names only the distribute role.
    bed.override_role(
        "ami-publish",
        json!([{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}]),
    );
    let denied = Err("AccessDenied".to_string());
    assert_eq!(
        assume_as(
            &bed,
            "ami-publish",
            Some(EXTERNAL_ID),
            Some("ami-distribute")
        )
        .await,
        denied
    );

    // The distribute role without the ExternalId, with another one, or with another session tag.
    let refused = [
        (None, "ami-distribute"),
        (Some("guessed"), "ami-distribute"),
        (Some(EXTERNAL_ID), "ami-age-out"),
    ];
    for (external_id, tag) in refused {
        let got = assume_as(&bed, "ami-distribute", external_id, Some(tag)).await;
        assert_eq!(got, denied, "{external_id:?} {tag}");
    }

    // As the stack assumes it.
    assert_eq!(
        assume_as(
            &bed,
            "ami-distribute",
            Some(EXTERNAL_ID),
            Some("ami-distribute")
        )
        .await,
        Ok(())
    );
}

#[tokio::test]
async fn two_copy_targets_each_own_a_tagged_encrypted_copy_and_a_redelivery_makes_none() {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[]);
    let image = golden(&bed, "web-20261201").await;
    let document = json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [COPYING, SHARING], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING, SHARING], "copy": {}, "ssm_parameters": ["/ami/golden/{family}"]}
        ]}
    }]})
    .to_string();
    let env = [("AMI_POLICIES", document.as_str())];
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);
    serve_twice(&bed, &distribute).await;

    for account in [COPYING, SHARING] {
        let copies = owned(&bed, account).await;
        assert_eq!(copies.len(), 1, "{account}: {copies:?}");
        let (copy, encrypted, source) = &copies[0];
        assert!(*encrypted, "{account}: {copies:?}");
        assert_eq!(source.as_deref(), Some(image.as_str()), "{account}");
        assert_eq!(
            parameter(&bed, account).await.as_deref(),
            Some(copy.as_str())
        );
    }

    // The same units delivered again (the next sweep): no second copy anywhere.
    distribute.invoke(&json!({})).ok();
    let again = bed.deliver_units(&distribute).await;
    for account in [COPYING, SHARING] {
        assert_eq!(
            outcomes(&again, account),
            vec!["copy unchanged", "publish unchanged"]
        );
        assert_eq!(owned(&bed, account).await.len(), 1, "{account}");
    }
}

#[tokio::test]
async fn an_ous_accounts_are_listed_through_the_organizations_role_when_another_account_holds_it() {
    let bed = TestBed::start();
    bed.targets(&[SHARING], &[]);
    const MANAGEMENT: &str = "999999999999";
    let (units, reader) = bed.organization_in(MANAGEMENT, json!({"platform": [SHARING]}));
    let ou = units["platform"]
        .as_str()
        .expect("the OU's ARN")
        .to_string();
    assert!(ou.contains(&format!("::{MANAGEMENT}:ou/")), "{ou}");
    let image = golden(&bed, "web-20261201").await;
    let document = json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"organizational_units": [ou]},
        "distribute": {"targets": [{"organizational_units": [ou], "ssm_parameters": ["/ami/golden/{family}"]}]}
    }]})
    .to_string();
    let env = [
        ("AMI_POLICIES", document.as_str()),
        ("AMI_ORGANIZATIONS_ROLE_ARN", reader.as_str()),
    ];
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);

    // The sweep lists the OU through the reader role (the stack's own account holds no
    // organization), and each unit checks membership through it too.
    let sweep = distribute.invoke(&json!({"regions": ["us-east-1"]})).ok();
    let queued: Vec<&str> = sweep["results"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["outcome"] == "queued")
        .filter_map(|l| l["account"].as_str())
        .collect();
    assert_eq!(queued, vec![SHARING], "{sweep}");
    let served = bed.deliver_units(&distribute).await;
    assert_eq!(
        outcomes(&served, SHARING),
        vec!["publish published"],
        "{served:?}"
    );
    assert_eq!(
        parameter(&bed, SHARING).await.as_deref(),
        Some(image.as_str())
    );
}

#[tokio::test]
async fn a_copy_a_templates_default_names_is_kept_however_shallow_the_depth() {
    let bed = TestBed::start();
    // Only `$Default` and `$Latest` protect (retain.in_use), and DescribeImageReferences counts
    // versions from the newest: the `$Default` below `$Latest` is read on its own.
    let shallow = only_copying().replace(
        "\"name\":\"golden\"",
        "\"name\":\"golden\",\"retain\":{\"keep_latest\":1,\"in_use\":{\"launch_template_versions\":\"default-and-latest\"}}",
    );
    assert_ne!(shallow, only_copying());
    let (distribute, old, old_copy) = replaced_copy(&bed, shallow).await;
    let new_copy = parameter(&bed, COPYING)
        .await
        .expect("the new copy published");
    let ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(COPYING, "us-east-1").await);
    let data = |image: &str| {
        aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .image_id(image)
            .build()
    };
    let template = ec2
        .create_launch_template()
        .launch_template_name("web")
        .launch_template_data(data(&old_copy))
        .send()
        .await
        .expect("CreateLaunchTemplate")
        .launch_template()
        .and_then(|t| t.launch_template_id().map(String::from))
        .expect("its id");
    ec2.create_launch_template_version()
        .launch_template_id(&template)
        .launch_template_data(data(&new_copy))
        .send()
        .await
        .expect("a newer $Latest");

    let (kept, retire) = source_deregistered(&bed, &distribute, &old).await;
    assert_eq!(retire.len(), 1, "{kept:?}");
    assert_eq!(retire[0]["outcome"], "kept", "{kept:?}");
    assert!(
        retire[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&template),
        "{retire:?}"
    );

    // The template's team moves its default to the new copy: the old one is retired.
    ec2.modify_launch_template()
        .launch_template_id(&template)
        .default_version("2")
        .send()
        .await
        .expect("ModifyLaunchTemplate");
    distribute.invoke(&json!({})).ok();
    let retired = bed.deliver_units(&distribute).await;
    assert!(
        outcomes(&retired, COPYING).contains(&"retire retired".to_string()),
        "{retired:?}"
    );
    assert!(!owned(&bed, COPYING)
        .await
        .iter()
        .any(|(id, ..)| id == &old_copy));
}
