//! `ami-share` end to end: the real binary through the Lambda runtime API against the test bed.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{
    LaunchPermission, LaunchPermissionModifications, PermissionGroup, SnapshotAttributeName,
};
use aws_sdk_ec2::Client;
use e2e_tests::{Function, TestBed};
use serde_json::{json, Value};

use e2e_tests::seed;

const ORG: &str = "arn:aws:organizations::111122223333:organization/o-abcde12345";
const OU: &str = "arn:aws:organizations::111122223333:ou/o-abcde12345/ou-ab12-cdefgh12";

fn policies(accounts: &[&str], public: bool) -> String {
    json!({"dry_run": false, "policies": [
        {"name": "web", "select": {"tags": {"Family": "web*"}},
         "share": {"accounts": accounts, "organizations": [ORG], "organizational_units": [OU], "snapshots": true}},
        {"name": "open", "select": {"tags": {"Visibility": "public"}}, "share": {"public": public}}
    ]})
    .to_string()
}

fn share(bed: &TestBed, document: &str, extra: &[(&str, &str)]) -> Function {
    let mut env = vec![("AMI_POLICIES", document)];
    env.extend_from_slice(extra);
    Function::start(bed, "ami-share", &env)
}

async fn volume_permissions(ec2: &Client, snapshot: &str) -> BTreeSet<String> {
    let out = ec2
        .describe_snapshot_attribute()
        .snapshot_id(snapshot)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .expect("DescribeSnapshotAttribute");
    out.create_volume_permissions()
        .iter()
        .filter_map(|p| p.user_id().map(str::to_string))
        .collect()
}

fn available(image: &str) -> Value {
    json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": "us-east-1",
           "detail": {"RequestId": "r", "ImageId": image, "State": "available", "ErrorMessage": ""}})
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn an_available_ami_is_shared_exactly_as_its_policy_says_and_a_second_run_makes_no_call() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let unmanaged = seed::image(&ec2, &builder, "other-1", &[("Family", "db")]).await;
    let function = share(
        &bed,
        &policies(&["111122223333", "444455556666"], false),
        &[],
    );

    let report = function.invoke(&available(&image)).ok();

    assert_eq!(report["results"][0]["outcome"], "changed", "{report}");
    assert_eq!(
        seed::launch_permissions(&ec2, &image).await,
        set(&["111122223333", "444455556666", ORG, OU])
    );
    for snap in seed::snapshots_of(&ec2, &image).await {
        assert_eq!(
            volume_permissions(&ec2, &snap).await,
            set(&["111122223333", "444455556666"]),
            "{snap}"
        );
    }
    assert!(
        seed::launch_permissions(&ec2, &unmanaged).await.is_empty(),
        "an AMI no policy shares is untouched"
    );
    let shared: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Shared")
        .collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0]["detail"]["add"].as_array().map(Vec::len), Some(4));

    let modifies = |calls: &std::collections::BTreeMap<String, u64>| {
        calls.get("ModifyImageAttribute").copied().unwrap_or(0)
            + calls.get("ModifySnapshotAttribute").copied().unwrap_or(0)
    };
    let before = modifies(&bed.calls());
    let sweep = function.invoke(&json!({})).ok();
    assert_eq!(
        sweep["results"].as_array().map(Vec::len),
        Some(1),
        "{sweep}"
    );
    assert_eq!(sweep["results"][0]["outcome"], "unchanged");
    assert_eq!(
        modifies(&bed.calls()),
        before,
        "nothing to change: no Modify call"
    );
    // Not deprecated: its deprecation will be the notice; nothing is marked.
    assert_eq!(
        seed::image_tag(&ec2, &image, "ami-automation:shared-at").await,
        None
    );
}

#[tokio::test]
async fn a_deprecated_ami_given_to_a_new_target_says_when_and_only_then() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let deprecated = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    bed.seed_image(
        "us-east-1",
        &image,
        json!({ "deprecation_time": deprecated }),
    );
    let function = share(&bed, &policies(&["111122223333"], false), &[]);

    function.invoke(&available(&image)).ok();

    // The new target's notice starts now (age-out counts from the later of this and the
    // deprecation).
    let marked = seed::image_tag(&ec2, &image, "ami-automation:shared-at").await;
    assert!(
        marked
            .as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{marked:?}"
    );
    // A sweep that gives it to nobody new writes nothing.
    let tags = |calls: &std::collections::BTreeMap<String, u64>| calls.get("CreateTags").copied();
    let before = tags(&bed.calls());
    function.invoke(&json!({})).ok();
    assert_eq!(tags(&bed.calls()), before);
    assert_eq!(
        seed::image_tag(&ec2, &image, "ami-automation:shared-at").await,
        marked
    );
    // A dry run marks nothing either.
    let more = share(
        &bed,
        &policies(&["111122223333", "444455556666"], false),
        &[],
    );
    more.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(tags(&bed.calls()), before);
}

#[tokio::test]
async fn permissions_the_policy_no_longer_lists_are_revoked() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    share(
        &bed,
        &policies(&["111122223333", "444455556666"], false),
        &[],
    )
    .invoke(&available(&image))
    .ok();

    let shrunk = share(&bed, &policies(&["111122223333"], false), &[]);
    let report = shrunk.invoke(&json!({"image_ids": [image]})).ok();

    assert_eq!(
        report["results"][0]["remove"],
        json!(["account:444455556666"]),
        "{report}"
    );
    assert_eq!(
        seed::launch_permissions(&ec2, &image).await,
        set(&["111122223333", ORG, OU])
    );
    let snap = &seed::snapshots_of(&ec2, &image).await[0];
    assert_eq!(volume_permissions(&ec2, snap).await, set(&["111122223333"]));
    assert_eq!(
        bed.published()
            .iter()
            .filter(|e| e["detail_type"] == "AMI Unshared")
            .count(),
        1
    );
}

#[tokio::test]
async fn public_sharing_needs_the_deployment_switch_and_a_public_ami_not_allowed_is_made_private() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let open = seed::image(&ec2, &builder, "open-1", &[("Visibility", "public")]).await;
    let web = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;

    // A policy asking for public sharing without the switch: refused at start, naming the field.
    let mut refused = share(&bed, &policies(&["111122223333"], true), &[]);
    let log = refused.cold_start_failure();
    assert!(
        log.contains("$.policies[1].share.public") && log.contains("AllowPublicSharing"),
        "{log}"
    );

    // With the switch, the policy's AMI becomes public.
    let allowed = share(
        &bed,
        &policies(&["111122223333"], true),
        &[("ALLOW_PUBLIC_SHARING", "true")],
    );
    allowed.invoke(&available(&open)).ok();
    assert_eq!(seed::launch_permissions(&ec2, &open).await, set(&["all"]));

    // An AMI made public by hand whose policy does not allow it: made private, reported.
    let public = LaunchPermissionModifications::builder()
        .add(
            LaunchPermission::builder()
                .group(PermissionGroup::All)
                .build(),
        )
        .build();
    ec2.modify_image_attribute()
        .image_id(&web)
        .launch_permission(public)
        .send()
        .await
        .expect("make public");
    let report = allowed.invoke(&json!({"image_ids": [web]})).ok();
    assert!(!seed::launch_permissions(&ec2, &web).await.contains("all"));
    let findings = report["results"][0]["findings"].to_string();
    assert!(findings.contains("made private"), "{report}");
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let function = share(&bed, &policies(&["111122223333"], false), &[]);
    let report = function.invoke(&json!({"dry_run": true})).ok();
    assert_eq!(report["results"][0]["outcome"], "planned");
    assert_eq!(
        report["results"][0]["add"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(seed::launch_permissions(&ec2, &image).await.is_empty());
    assert_eq!(bed.calls().get("ModifyImageAttribute"), None);
}

#[tokio::test]
async fn foreign_unknown_disabled_and_aws_key_encrypted_amis_are_not_shared_and_say_why() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let foreign = seed::image(&ec2, &builder, "web-foreign", &[("Family", "web-a")]).await;
    bed.seed_image("us-east-1", &foreign, json!({"owner_id": "210987654321"}));
    let disabled = seed::image(&ec2, &builder, "web-disabled", &[("Family", "web-a")]).await;
    ec2.disable_image()
        .image_id(&disabled)
        .send()
        .await
        .expect("DisableImage");
    // Encrypted with the default EBS key (alias/aws/ebs): an AWS managed key.
    let snap = seed::snapshot(&ec2, true).await;
    let encrypted = seed::register(
        &ec2,
        "web-encrypted",
        std::slice::from_ref(&snap),
        &[("Family", "web-a")],
    )
    .await;
    let function = share(&bed, &policies(&["111122223333"], false), &[]);

    let (kind, message) = function
        .invoke(&json!({"image_ids": [foreign, disabled, encrypted, "ami-00000000000000000"]}))
        .err();

    assert_eq!(kind, "PartialFailure");
    assert!(
        message.contains(&format!("{foreign} is not an AMI of the account")),
        "{message}"
    );
    assert!(
        message.contains("ami-00000000000000000 is not an AMI of the account"),
        "{message}"
    );
    assert!(
        message.contains("disabled: a disabled AMI cannot be shared"),
        "{message}"
    );
    assert!(message.contains("AWS managed key"), "{message}");
    for image in [&foreign, &encrypted] {
        assert!(
            seed::launch_permissions(&ec2, image).await.is_empty(),
            "{image} untouched"
        );
    }
    assert!(volume_permissions(&ec2, &snap).await.is_empty());

    let (kind, message) = function.invoke(&json!({"image_ids": ["nope"]})).err();
    assert_eq!(kind, "InvalidEvent");
    assert!(message.contains("$.image_ids[0]"), "{message}");
}

#[tokio::test]
async fn a_thirteen_digit_account_or_a_malformed_org_fails_the_cold_start() {
    let bed = TestBed::start();
    for (document, path) in [
        (
            policies(&["1111222233334"], false),
            "$.policies[0].share.accounts[0]",
        ),
        (
            policies(&["111122223333"], false)
                .replace(ORG, "arn:aws:organizations::111122223333:organization/o-x"),
            "$.policies[0].share.organizations[0]",
        ),
    ] {
        let mut function = share(&bed, &document, &[]);
        let log = function.cold_start_failure();
        assert!(log.contains(path), "{log}");
    }
}

#[tokio::test]
async fn a_sweep_out_of_time_defers_the_rest_and_changes_nothing_it_did_not_finish() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let function = share(
        &bed,
        &policies(&["111122223333"], false),
        &[("AMI_RUN_BUDGET_MS", "0")],
    );
    let report = function.invoke(&json!({})).ok();
    assert_eq!(report["results"][0]["outcome"], "deferred", "{report}");
    assert!(seed::launch_permissions(&ec2, &image).await.is_empty());
}

#[tokio::test]
async fn a_refused_public_share_is_reported_and_keeps_the_account_grants_of_the_same_change() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "both-1", &[("Family", "web-a")]).await;
    let document = json!({"dry_run": false, "policies": [
        {"name": "both", "select": {"tags": {"Family": "web*"}},
         "share": {"accounts": ["111122223333"], "organizations": [ORG], "public": true}}]})
    .to_string();
    let function = share(&bed, &document, &[("ALLOW_PUBLIC_SHARING", "true")]);
    // Block public access for AMIs is on in the region (GetImageBlockPublicAccessState).
    ec2.enable_image_block_public_access()
        .image_block_public_access_state(
            aws_sdk_ec2::types::ImageBlockPublicAccessEnabledState::BlockNewSharing,
        )
        .send()
        .await
        .expect("EnableImageBlockPublicAccess");

    let (kind, message) = function.invoke(&available(&image)).err();

    assert_eq!(kind, "PartialFailure", "{message}");
    let report: Value = serde_json::from_str(&message).expect("report");
    let line = &report["results"][0];
    assert!(
        line["public_refused"]
            .as_str()
            .unwrap_or_default()
            .contains("block public access"),
        "{report}"
    );
    assert_eq!(
        seed::launch_permissions(&ec2, &image).await,
        set(&["111122223333", ORG]),
        "the account and organization grants are made, public is not"
    );
    let shared: Vec<Value> = bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Shared")
        .collect();
    assert_eq!(shared.len(), 1, "the grants made are announced");
    assert!(!shared[0]["detail"]["add"].to_string().contains("public"));

    // With block public access off, the next run makes it public, in a call of its own.
    ec2.disable_image_block_public_access()
        .send()
        .await
        .expect("DisableImageBlockPublicAccess");
    let report = function.invoke(&available(&image)).ok();
    assert_eq!(report["results"][0]["outcome"], "changed", "{report}");
    assert_eq!(
        seed::launch_permissions(&ec2, &image).await,
        set(&["111122223333", ORG, "all"])
    );
}

#[tokio::test]
async fn when_kms_does_not_answer_an_encrypted_ami_is_not_shared() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let snap = seed::snapshot(&ec2, true).await;
    let encrypted = seed::register(
        &ec2,
        "web-encrypted",
        std::slice::from_ref(&snap),
        &[("Family", "web-a")],
    )
    .await;
    let function = share(&bed, &policies(&["111122223333"], false), &[]);
    // Whether the key is AWS managed (which cannot be shared) is evidence: without it, no grant.
    bed.inject_fault("DescribeKey", "AccessDeniedException", 100);

    let (kind, message) = function.invoke(&json!({"image_ids": [encrypted]})).err();

    assert_eq!(kind, "PartialFailure", "{message}");
    assert!(message.contains("DescribeKey"), "{message}");
    assert!(seed::launch_permissions(&ec2, &encrypted).await.is_empty());
    assert!(volume_permissions(&ec2, &snap).await.is_empty());
    assert!(bed
        .published()
        .iter()
        .all(|e| e["detail_type"] != "AMI Shared"));
}

/// An AMI whose snapshot is encrypted with a new customer managed key: `(image, key ARN)`.
async fn encrypted_with_a_customer_key(bed: &TestBed, ec2: &Client) -> (String, String) {
    let kms = bed.kms("us-east-1").await;
    seed::encrypted_image(ec2, &kms, "web-cmk", &[("Family", "web-a")]).await
}

async fn grantees(bed: &TestBed, key: &str) -> BTreeSet<String> {
    let kms = bed.kms("us-east-1").await;
    let listed = kms
        .list_grants()
        .key_id(key)
        .send()
        .await
        .expect("ListGrants");
    listed
        .grants()
        .iter()
        .filter_map(|g| g.grantee_principal().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn kms_grants_are_made_for_target_accounts_and_retired_when_unshared() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let (image, key) = encrypted_with_a_customer_key(&bed, &ec2).await;
    // The stack is deployed with that key among the ones it may grant.
    bed.deploy(json!({ "ShareKmsKeyArns": key }));
    let document = |accounts: &[&str]| {
        json!({"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
            "share": {"accounts": accounts, "kms_grants": true}}]})
        .to_string()
    };
    let two = share(&bed, &document(&["111122223333", "444455556666"]), &[]);
    let report = two.invoke(&json!({"image_ids": [image]})).ok();
    let line = &report["results"][0];
    assert_eq!(line["outcome"], "changed", "{report}");
    assert_eq!(
        line["kms_grants_created"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert!(
        line["launch"]
            .as_array()
            .expect("launch")
            .iter()
            .all(|a| a["can_launch"] == true),
        "{report}"
    );
    assert_eq!(
        grantees(&bed, &key).await,
        set(&[
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::444455556666:root"
        ])
    );
    // Re-delivered: no new grant.
    let again = two.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(again["results"][0]["outcome"], "unchanged", "{again}");
    assert_eq!(grantees(&bed, &key).await.len(), 2);

    // 444455556666 is no longer a target: its launch permission and its grant go.
    let one = share(&bed, &document(&["111122223333"]), &[]);
    let report = one.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(
        report["results"][0]["kms_grants_retired"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(
        seed::launch_permissions(&ec2, &image).await,
        set(&["111122223333"])
    );
    assert_eq!(
        grantees(&bed, &key).await,
        set(&["arn:aws:iam::111122223333:root"])
    );
}

#[tokio::test]
async fn a_retired_grant_kms_still_lists_is_retired_again_as_done_not_failed() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let (image, key) = encrypted_with_a_customer_key(&bed, &ec2).await;
    bed.deploy(json!({ "ShareKmsKeyArns": key }));
    // Grants are eventually consistent: a retired grant is still listed for a while.
    bed.grant_lag(600);
    let document = |accounts: &[&str]| {
        json!({"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
            "share": {"accounts": accounts, "kms_grants": true}}]})
        .to_string()
    };
    let two = share(&bed, &document(&["111122223333", "444455556666"]), &[]);
    two.invoke(&json!({"image_ids": [image]})).ok();
    let one = share(&bed, &document(&["111122223333"]), &[]);
    let first = one.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(
        first["results"][0]["kms_grants_retired"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{first}"
    );

    // Re-delivered while KMS still lists the retired grant: retiring it again is done.
    let again = one.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(
        again["results"][0]["kms_grants_retired"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "KMS still listed it: {again}"
    );
    assert_ne!(again["results"][0]["outcome"], "failed", "{again}");
    assert!(
        again["failed"].as_array().is_none_or(Vec::is_empty),
        "{again}"
    );
}

#[tokio::test]
async fn an_organization_target_of_an_encrypted_ami_gets_the_key_policy_statement_it_needs() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let (image, key) = encrypted_with_a_customer_key(&bed, &ec2).await;
    let document = json!({"dry_run": false, "policies": [{"name": "web", "select": {"tags": {"Family": "web*"}},
        "share": {"organizations": [ORG]}}]})
    .to_string();
    let function = share(&bed, &document, &[]);
    let report = function.invoke(&json!({"image_ids": [image]})).ok();
    let access = &report["results"][0]["launch"][0];
    assert_eq!(access["target"], format!("organization:{ORG}"), "{report}");
    assert_eq!(access["can_launch"], false, "{report}");
    assert!(access["why_not"]
        .as_str()
        .unwrap_or_default()
        .contains("key policy"));
    let statement = access["key_policy_statement"].clone();
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
        "o-abcde12345"
    );

    // The key's owner adds the statement: the report now says the organization can launch it.
    let kms = bed.kms("us-east-1").await;
    let current: Value = serde_json::from_str(
        kms.get_key_policy()
            .key_id(&key)
            .policy_name("default")
            .send()
            .await
            .expect("GetKeyPolicy")
            .policy()
            .unwrap_or_default(),
    )
    .expect("policy JSON");
    let mut statements = current["Statement"].as_array().cloned().unwrap_or_default();
    statements.push(statement);
    kms.put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(json!({"Version": "2012-10-17", "Statement": statements}).to_string())
        .send()
        .await
        .expect("PutKeyPolicy");
    let report = function.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(
        report["results"][0]["launch"][0]["can_launch"], true,
        "{report}"
    );
}

#[tokio::test]
async fn an_announcement_that_can_be_neither_published_nor_parked_fails_the_invocation() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let function = share(&bed, &policies(&["111122223333"], false), &[]);
    bed.inject_fault("PutEvents", "AccessDeniedException", 1000);
    bed.inject_fault("SendMessage", "AccessDenied", 1000);

    let (kind, message) = function.invoke(&available(&image)).err();

    assert_eq!(kind, "PartialFailure");
    let report: Value = serde_json::from_str(&message).expect("the report");
    assert_eq!(
        report["results"][0]["outcome"], "changed",
        "the share is done"
    );
    assert_eq!(
        report["events"]["failed"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert!(seed::launch_permissions(&ec2, &image)
        .await
        .contains("111122223333"));
}

#[tokio::test]
async fn an_announcement_eventbridge_does_not_take_is_parked_and_sent_by_the_next_run_once() {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let image = seed::image(&ec2, &builder, "web-1", &[("Family", "web-a")]).await;
    let function = share(&bed, &policies(&["111122223333"], false), &[]);
    // Every attempt of this run's PutEvents (the SDK's and the adapter's retries) is refused.
    bed.inject_fault("PutEvents", "AccessDeniedException", 1000);

    let report = function.invoke(&available(&image)).ok();
    assert_eq!(report["results"][0]["outcome"], "changed", "{report}");
    assert_eq!(report["events"]["parked"], 1, "{report}");
    let shared = |bed: &TestBed| {
        bed.published()
            .into_iter()
            .filter(|e| e["detail_type"] == "AMI Shared")
            .count()
    };
    assert_eq!(shared(&bed), 0);

    // EventBridge takes events again. A run with nothing to announce leaves the outbox; the
    // next run EventBridge takes announcements of sends it first.
    bed.inject_fault("PutEvents", "AccessDeniedException", 0);
    let quiet = function.invoke(&json!({})).ok();
    assert!(quiet["events"].get("resent").is_none(), "{quiet}");
    let second = seed::image(&ec2, &builder, "web-2", &[("Family", "web-a")]).await;
    let next = function.invoke(&available(&second)).ok();
    assert_eq!(next["events"]["resent"], 1, "{next}");
    assert_eq!(shared(&bed), 2, "the parked one and the new one");
    let third = seed::image(&ec2, &builder, "web-3", &[("Family", "web-a")]).await;
    let again = function.invoke(&available(&third)).ok();
    assert!(again["events"].get("resent").is_none(), "{again}");
    assert_eq!(shared(&bed), 3, "the parked one was sent once");
}
