//! What only the stack may start (SECURITY.md, "Threat model"): a continuation is run only when
//! its seal proves the stack made it and the deployment's dry-run switches still say real; a
//! real run never takes a clock ahead of the wall clock; a policy cannot write the tool's own
//! tags. Each refusal changes nothing in the account.

use ami_lifecycle::domain::seal;
use ami_lifecycle::domain::trigger::RunRequest;
use chrono::{Duration, Utc};
use e2e_tests::{seed, Function, TestBed, ACCOUNT};
use serde_json::{json, Value};

const REAL: &str = r#"{"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
    "family_by": "tag:Family", "retain": {"keep_latest": 1, "max_age_days": 30}}]}"#;
const DRY: &str = r#"{"dry_run": true, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
    "family_by": "tag:Family", "retain": {"keep_latest": 1, "max_age_days": 30}}]}"#;

/// A family with one new AMI and two 40 days old: a real run deregisters the old two.
async fn family(bed: &TestBed) -> Vec<String> {
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let mut ids = Vec::new();
    for (n, days) in [(0, 1), (1, 40), (2, 41)] {
        let id = seed::image(&ec2, &builder, &format!("web-{n}"), &[("Family", "web-a")]).await;
        let created = (Utc::now() - Duration::days(days)).to_rfc3339();
        bed.seed_image("us-east-1", &id, json!({ "creation_date": created }));
        ids.push(id);
    }
    ids
}

/// A `Policy Run Continued` as EventBridge delivers it, with `request` and the seal given.
fn continued(request: &RunRequest, expires: chrono::DateTime<Utc>, seal: &str) -> Value {
    json!({
        "version": "0", "id": "0d1f7c2a-0000-4000-8000-000000000001",
        "detail-type": "Policy Run Continued", "source": "ami.automation",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": {
            "function": "ami-age-out", "continuation": request.continuation, "run_id": request.run_id,
            "remaining": 2, "request": request, "expires": expires, "seal": seal,
            "key": "arn:aws:kms:us-east-1:123456789012:key/any",
        },
    })
}

fn next_link() -> RunRequest {
    RunRequest {
        dry_run: Some(false),
        continuation: Some(1),
        run_id: Some("a-real-chain".into()),
        ..RunRequest::default()
    }
}

#[tokio::test]
async fn a_forged_altered_or_expired_continuation_is_refused_with_its_reason_and_changes_nothing() {
    let bed = TestBed::start();
    let ids = family(&bed).await;
    let ec2 = bed.ec2("us-east-1").await;
    let function = Function::start(&bed, "ami-age-out", &[("AMI_POLICIES", REAL)]);
    let request = next_link();
    let expires = Utc::now() + Duration::minutes(30);
    let genuine = bed
        .seal(seal::continuation("ami-age-out", &request, expires))
        .await;

    // The shape of the stack's event with no seal, a made-up one, or the stack's seal over
    // another request or expiry; one whose seal expired; and the bare request the rule used to
    // deliver, which a run request may no longer carry.
    let altered = RunRequest {
        as_of: Some(Utc::now() - Duration::days(1)),
        ..request.clone()
    };
    let past = Utc::now() - Duration::minutes(1);
    let stale = bed
        .seal(seal::continuation("ami-age-out", &request, past))
        .await;
    let mut unsealed = continued(&request, expires, "");
    unsealed["detail"]
        .as_object_mut()
        .expect("detail")
        .remove("seal");
    let cases = [
        (unsealed, "InvalidEvent", "missing field `seal`"),
        (
            continued(&request, expires, "bm90IHRoZSBzdGFjaydzIHNlYWw="),
            "Refused",
            "its seal does not verify",
        ),
        (
            continued(&altered, expires, &genuine),
            "Refused",
            "its seal does not verify",
        ),
        (
            continued(&request, expires + Duration::minutes(1), &genuine),
            "Refused",
            "its seal does not verify",
        ),
        (continued(&request, past, &stale), "Refused", "expired"),
        (
            serde_json::to_value(&request).expect("request"),
            "InvalidEvent",
            "`$.continuation`: set only by age-out",
        ),
    ];
    for (event, kind, expected) in &cases {
        let (error_type, message) = function.invoke(event).err();
        assert_eq!(&error_type, kind, "{message}");
        assert!(
            message.contains(expected),
            "expected `{expected}` in {message}"
        );
    }
    let refused = function.log_text().matches("\"RefusedMessages\":1").count();
    assert_eq!(refused, 4, "each refused seal counts in the alarmed metric");

    // Without the key nothing can be proven: refused too.
    let keyless = Function::start(
        &bed,
        "ami-age-out",
        &[("AMI_POLICIES", REAL), ("AMI_SIGNING_KEY_ARN", "")],
    );
    let (_, message) = keyless
        .invoke(&continued(&request, expires, &genuine))
        .err();
    assert!(message.contains("no signing key"), "{message}");

    assert_eq!(
        seed::image_ids(&ec2).await.len(),
        ids.len(),
        "nothing was retired"
    );
    assert!(bed.published().is_empty(), "nothing announced");

    // The stack's own, unaltered and in time, runs for real.
    let report = function
        .invoke(&continued(&request, expires, &genuine))
        .ok();
    assert_eq!(report["dry_run"], false, "{report}");
    assert_eq!(seed::image_ids(&ec2).await, vec![ids[0].clone()]);
}

#[tokio::test]
async fn switching_the_deployment_to_dry_run_stops_a_chain_at_its_next_link() {
    let bed = TestBed::start();
    let ids = family(&bed).await;
    let ec2 = bed.ec2("us-east-1").await;
    let request = next_link();
    let expires = Utc::now() + Duration::minutes(30);
    let genuine = bed
        .seal(seal::continuation("ami-age-out", &request, expires))
        .await;
    let link = continued(&request, expires, &genuine);

    // The link was sealed while the deployment ran for real; since then the document, or the
    // template's AgeOutDryRun, says dry run.
    let document = Function::start(&bed, "ami-age-out", &[("AMI_POLICIES", DRY)]);
    let template = Function::start(
        &bed,
        "ami-age-out",
        &[("AMI_POLICIES", REAL), ("AMI_AGE_OUT_DRY_RUN", "true")],
    );
    for (function, switch) in [(&document, "dry_run: true"), (&template, "AgeOutDryRun")] {
        let report = function.invoke(&link).ok();
        let why = report["ignored"].as_str().unwrap_or_default();
        assert!(
            why.contains("the chain stops here") && why.contains(switch),
            "{report}"
        );
    }
    assert_eq!(seed::image_ids(&ec2).await.len(), ids.len(), "nothing real");
    assert!(bed.published().is_empty(), "nothing announced");
}

#[tokio::test]
async fn a_real_run_with_a_clock_ahead_of_the_wall_clock_is_refused_by_every_function_and_a_dry_run_is_answered(
) {
    let bed = TestBed::start();
    let ids = family(&bed).await;
    let ec2 = bed.ec2("us-east-1").await;
    let ahead = (Utc::now() + Duration::days(400)).to_rfc3339();
    for binary in [
        "ami-age-out",
        "ami-build",
        "ami-share",
        "ami-copy",
        "ami-publish",
    ] {
        let function = Function::start(&bed, binary, &[("AMI_POLICIES", REAL)]);
        let (kind, message) = function
            .invoke(&json!({"dry_run": false, "as_of": ahead}))
            .err();
        assert_eq!(kind, "InvalidEvent", "{binary}: {message}");
        assert!(
            message.contains("`$.as_of`") && message.contains("later than now"),
            "{binary}: {message}"
        );
        let dry = function
            .invoke(&json!({"dry_run": true, "as_of": ahead}))
            .ok();
        assert_eq!(dry["dry_run"], true, "{binary}: {dry}");
    }
    assert_eq!(seed::image_ids(&ec2).await.len(), ids.len(), "nothing real");
}

#[tokio::test]
async fn a_policy_that_would_write_the_tools_own_tags_is_refused_at_cold_start() {
    let bed = TestBed::start();
    let document = r#"{"policies": [{"name": "web", "build": {"instance_tags": {"Build": "web"},
        "tags": {"ami-automation:validation": "passed"}}}]}"#;
    let mut function = Function::start(&bed, "ami-build", &[("AMI_POLICIES", document)]);
    let log = function.cold_start_failure();
    assert!(
        log.contains("$.policies[0].build.tags.ami-automation:validation")
            && log.contains("tool's own state"),
        "{log}"
    );
}

#[tokio::test]
async fn a_hand_tagged_passed_verdict_is_held_by_the_gate_and_only_a_sealed_one_promotes() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let (subnet, group) = seed::network(&ec2).await;
    bed.deploy(
        serde_json::json!({"ValidationSubnetId": subnet, "ValidationSecurityGroupIds": [group]}),
    );
    let document = format!(
        r#"{{"dry_run": false, "policies": [{{"name": "web", "select": {{"tags": {{"Family": "web*"}}}},
        "family_by": "tag:Family",
        "validate": {{"instance_type": "t3.micro", "subnet_id": "{subnet}", "security_group_ids": ["{group}"]}},
        "share": {{"accounts": ["111122223333"]}}, "copy": {{"regions": {{"eu-west-1": {{}}}}}},
        "publish": {{"ssm_parameters": ["/ami/{{policy}}/{{family}}"]}}}}]}}"#
    );
    let builder = seed::instance(&ec2, 0, &[]).await;
    let sealed = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    bed.pass("us-east-1", &sealed, "web").await;
    let hour_ago = (Utc::now() - Duration::hours(1)).to_rfc3339();
    bed.seed_image("us-east-1", &sealed, json!({ "creation_date": hour_ago }));
    // Newer, tagged `passed` by someone who may tag AMIs.
    let forged = seed::image(
        &ec2,
        &builder,
        "web-2",
        &[("Family", "web-a"), ("ami-automation:validation", "passed")],
    )
    .await;
    let env = [("AMI_POLICIES", document.as_str())];

    let share = Function::start(&bed, "ami-share", &env);
    let shared = share.invoke(&json!({})).ok();
    let line = |report: &Value, id: &str| {
        report["results"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|l| l["image_id"] == id || l["source_image_id"] == id)
                    .cloned()
            })
            .unwrap_or_default()
    };
    assert_eq!(line(&shared, &forged)["outcome"], "skipped", "{shared}");
    assert!(
        line(&shared, &forged)["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("is not proven"),
        "{shared}"
    );
    assert_eq!(line(&shared, &sealed)["outcome"], "changed", "{shared}");

    let copy = Function::start(&bed, "ami-copy", &env);
    let copied = copy.invoke(&json!({})).ok();
    assert_eq!(line(&copied, &forged)["outcome"], "skipped", "{copied}");
    let copies = seed::image_ids(&bed.ec2("eu-west-1").await).await;
    assert_eq!(copies.len(), 1, "only the sealed AMI is copied: {copied}");
    let carried = bed
        .ec2("eu-west-1")
        .await
        .describe_images()
        .image_ids(&copies[0])
        .send()
        .await
        .expect("DescribeImages");
    let image = &carried.images()[0];
    assert!(
        image
            .tags()
            .iter()
            .any(|t| t.key() == Some("ami-automation:validation-seal")),
        "the copy carries its source's seal"
    );
    assert_eq!(image.source_image_id(), Some(sealed.as_str()));

    let publish = Function::start(&bed, "ami-publish", &env);
    let report = publish.invoke(&json!({})).ok();
    let parameter = bed
        .ssm("us-east-1")
        .await
        .get_parameter()
        .name("/ami/web/web-a")
        .send()
        .await
        .expect("GetParameter");
    assert_eq!(
        parameter.parameter().and_then(|p| p.value()),
        Some(sealed.as_str()),
        "{report}"
    );
    // It is launch-tested like any AMI without a verdict: only a verdict of the stack's counts.
    let launched: Vec<&Value> = report["results"]
        .as_array()
        .map(|r| r.iter().filter(|l| l["action"] == "launch").collect())
        .unwrap_or_default();
    assert_eq!(launched.len(), 1, "{report}");
    assert_eq!(launched[0]["image_id"], forged.as_str());
}
