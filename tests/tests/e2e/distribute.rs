//! `ami-distribute` end to end: the real binary through the Lambda runtime API, a sweep that
//! queues one unit per target account, the units delivered from the queue as Lambda's SQS event
//! source delivers them, and the target accounts' own EC2 and SSM (each its own moto account,
//! reached through target-role.yaml's role, evaluated by IAM).

use e2e_tests::{seed, Function, TestBed};
use serde_json::{json, Value};

const COPYING: &str = "111111111111";
const SHARING: &str = "222222222222";
const NO_ROLE: &str = "333333333333";
const PARAMETER: &str = "/ami/golden/web";

fn policies() -> String {
    json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [COPYING, SHARING, NO_ROLE], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING], "copy": {}, "ssm_parameters": ["/ami/golden/{family}"]},
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
    let env = [("AMI_POLICIES", policies())];
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
    let event = json!({"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": forged.to_string(),
        "eventSource": "aws:sqs", "awsRegion": "us-east-1", "attributes": {}, "messageAttributes": {},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ami-lifecycle-distribute"}]});
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
