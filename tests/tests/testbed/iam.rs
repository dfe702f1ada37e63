//! IAM on every request (tests/support/authorize.py): the evaluator denies what AWS denies, and
//! plain moto, which evaluates nothing, lets the same request through. Each proof calls as a
//! function does (its own credentials), with a role the test gives it.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag,
};
use e2e_tests::{seed, TestBed, BASE_X86};
use serde_json::{json, Value};

use crate::bed;

const MARK: &str = "ami-automation:protected-by";

/// The statement age-out had before issue 29: DeleteTags conditioned on `ec2:Owner`, a key the
/// Service Authorization Reference does not list for DeleteTags.
fn delete_tags_on_owner() -> Value {
    json!([{"Effect": "Allow", "Action": "ec2:DeleteTags", "Resource": "arn:aws:ec2:*::image/*",
            "Condition": {"StringEquals": {"ec2:Owner": "123456789012"},
                          "ForAllValues:StringEquals": {"aws:TagKeys": [MARK]}}}])
}

/// The statement that replaced it: the mark is removed only from an image that carries it.
fn delete_tags_on_the_mark() -> Value {
    json!([{"Effect": "Allow", "Action": "ec2:DeleteTags", "Resource": "arn:aws:ec2:*::image/*",
            "Condition": {"StringEquals": {"ec2:ResourceTag/ami-automation:protected-by": "ami-age-out"},
                          "ForAllValues:StringEquals": {"aws:TagKeys": [MARK]}}}])
}

async fn unmark(bed: &TestBed, image: &str) -> Result<(), String> {
    let ec2 = bed.ec2_as("ami-age-out", "us-east-1").await;
    ec2.delete_tags()
        .resources(image)
        .tags(Tag::builder().key(MARK).build())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().code().unwrap_or("?").to_string())
}

#[tokio::test]
async fn a_delete_tags_statement_on_ec2_owner_is_denied_and_plain_moto_accepts_it() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &instance, "web-1", &[(MARK, "ami-age-out")]).await;

        bed.override_role("ami-age-out", delete_tags_on_owner());
        let old = unmark(&bed, &image).await;
        bed.override_role("ami-age-out", delete_tags_on_the_mark());
        let new = unmark(&bed, &image).await;

        if plain {
            assert_eq!(old, Ok(()), "plain moto evaluates no IAM");
        } else {
            assert_eq!(old, Err("UnauthorizedOperation".to_string()));
            assert_eq!(new, Ok(()));
            // The decision says which statement allowed it.
            let decisions = bed.iam()["decisions"].clone();
            let last = decisions.as_array().and_then(|d| d.last()).cloned();
            assert_eq!(last.map(|d| d["result"].clone()), Some(json!("Allowed")));
        }
    }
}

/// A launch's statements, with the volume statement given.
fn launch_statements(volume: Value) -> Value {
    let any = |resource: &str| json!({"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": resource});
    json!([
        any("arn:aws:ec2:*::image/*"),
        any("arn:aws:ec2:*:*:instance/*"),
        any("arn:aws:ec2:*:*:network-interface/*"),
        any("arn:aws:ec2:*:*:subnet/*"),
        any("arn:aws:ec2:*:*:security-group/*"),
        volume,
        // Tags at launch are authorized as CreateTags (ec2:CreateAction RunInstances).
        {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "arn:aws:ec2:*:*:instance/*"},
    ])
}

async fn launch(bed: &TestBed, subnet: &str) -> Result<(), String> {
    let ec2 = bed.ec2_as("ami-publish", "us-east-1").await;
    ec2.run_instances()
        .image_id(BASE_X86)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .build(),
        )
        .tag_specifications(seed::tag_spec(
            ResourceType::Instance,
            &[("ami-automation:created-by", "ami-publish")],
        ))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.into_service_error().code().unwrap_or("?").to_string())
}

#[tokio::test]
async fn a_volume_statement_on_metadata_http_tokens_denies_every_launch_and_plain_moto_launches() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        // ec2:MetadataHttpTokens is a key of the instance resource, never of its volumes.
        let on_tokens = json!({"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {"StringEquals": {"ec2:MetadataHttpTokens": "required"}}});
        bed.override_role("ami-publish", launch_statements(on_tokens));
        let old = launch(&bed, &subnet).await;
        let plain_volume = json!({"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "arn:aws:ec2:*:*:volume/*"});
        bed.override_role("ami-publish", launch_statements(plain_volume));
        let new = launch(&bed, &subnet).await;

        if plain {
            assert_eq!(old, Ok(()), "plain moto evaluates no IAM");
        } else {
            assert_eq!(old, Err("UnauthorizedOperation".to_string()));
            assert_eq!(new, Ok(()), "{}", bed.iam());
        }
    }
}

#[tokio::test]
async fn a_test_set_up_call_is_not_evaluated_and_a_functions_call_is() {
    let bed = TestBed::start();
    let admin = bed.ec2("us-east-1").await;
    admin
        .describe_images()
        .owners("self")
        .send()
        .await
        .expect("set-up call");
    assert!(bed.iam()["decisions"].as_array().is_some_and(Vec::is_empty));

    // A function whose role allows no DescribeImages is denied it.
    bed.override_role(
        "ami-copy",
        json!([{"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"}]),
    );
    let copy = bed.ec2_as("ami-copy", "us-east-1").await;
    let denied = copy.describe_images().owners("self").send().await;
    let code = denied.map_err(|e| e.into_service_error().code().unwrap_or("?").to_string());
    assert_eq!(code.err().as_deref(), Some("UnauthorizedOperation"));
    let decisions = bed.iam()["decisions"].clone();
    assert_eq!(decisions[0]["result"], "ImplicitlyDenied", "{decisions}");
    assert_eq!(decisions[0]["caller"], "ami-copy");
}
