//! The launch test and publishing: planners as tables, executors against the fake account.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use crate::domain::model::{Image, ImageState, SourceImage};
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::{PublishRequest, RunRequest};
use crate::domain::{seal, tags};
use crate::jobs::publish::targets::{choose, targets, Choice, Destination};
use crate::jobs::publish::validate::{judge, plan, Step};
use crate::jobs::publish::{events, rollback, run, PublishOutcome, Stage};
use crate::ports::{LaunchTemplateState, TestInstance};
use crate::tests::fakes::{context, document, managed_image, FakeCloud, FakeSeal};

const VALIDATE: &str = r#""validate": {"instance_type": "t3.micro", "subnet_id": "subnet-0123456789abcdef0",
    "security_group_ids": ["sg-0123456789abcdef0"], "timeout_minutes": 15, "console_contains": "login:"}"#;

fn doc(sections: &str) -> PolicyDocument {
    document(&format!(
        r#"{{"dry_run": false, "policies": [{{"name": "web", "family_by": "tag:Family", {sections}}}]}}"#
    ))
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

/// An AMI of policy `web`, family `f`, created `minutes` after noon.
fn ami(id: &str, family: &str, minutes: i64) -> Image {
    let mut i = managed_image(id, &format!("{family}-{minutes}"), "web");
    i.created = Some(at(minutes));
    i.tags.insert("Family".into(), family.into());
    i
}

/// The AMI with a verdict as ami-publish writes it in us-east-1 (a `passed` with its seal).
fn verdict(mut i: Image, v: &str) -> Image {
    i.tags.insert(tags::VALIDATION.into(), v.into());
    if v == tags::PASSED {
        let at = "2026-11-01T12:00:00Z";
        let sealed = FakeSeal::of(&seal::verdict(&i.id, "us-east-1", "web", v, at));
        i.tags
            .insert(tags::VALIDATION_SEAL.into(), seal::sealed_tag(at, &sealed));
    }
    i
}

fn test_instance(
    id: &str,
    image: &str,
    state: &str,
    launched: i64,
    checks: Option<&str>,
) -> TestInstance {
    TestInstance {
        instance_id: id.into(),
        image_id: image.into(),
        policy: Some("web".into()),
        state: state.into(),
        launched: Some(at(launched)),
        system_status: checks.map(str::to_string),
        instance_status: checks.map(str::to_string),
        // Launched by the stack in us-east-1: its token is the stack's seal.
        client_token: Some(seal::launch_token(
            1,
            &FakeSeal::of(&seal::launch(image, "us-east-1", 1)),
        )),
        launched_from: Some(image.into()),
    }
}

/// What publishing in us-east-1 would do for every policy, without a pin.
fn targets_at<'a>(
    images: &'a [Image],
    d: &'a PolicyDocument,
    now: DateTime<Utc>,
) -> (
    Vec<crate::jobs::publish::targets::Target<'a>>,
    Vec<crate::jobs::publish::PublishResult>,
) {
    targets(
        images,
        d,
        &"us-east-1".parse().expect("region"),
        None,
        None,
        now,
    )
}

/// The AMIs a plan launches, in order.
fn launched<'a>(steps: &'a [crate::jobs::publish::validate::Planned<'_>]) -> Vec<&'a str> {
    steps
        .iter()
        .filter_map(|s| match &s.step {
            Step::Launch(spec) => Some(spec.image_id.as_str()),
            _ => None,
        })
        .collect()
}

fn validate_of(d: &PolicyDocument) -> &crate::domain::policy::Validate {
    d.policies[0].validate.as_ref().expect("validate")
}

const PUBLISH: &str = r#""publish": {"ssm_parameters": ["/ami/{policy}/{family}"],
    "launch_templates": [{"template": "web-servers", "family": "web", "set_default": true}]}"#;

fn template(ec2: &crate::tests::fakes::FakeEc2, image: &str) {
    ec2.state().templates.push((
        LaunchTemplateState {
            template_id: "lt-0123456789abcdef0".into(),
            name: "web-servers".into(),
            latest_version: 1,
            default_version: 1,
            latest_image: Some(image.into()),
            default_image: None,
            recorded_default: None,
            opted_in: true,
        },
        vec![Some(image.into())],
    ));
}

/// A publish line to a launch template in `region`, found there or not.
fn template_line(region: &str, found: bool) -> crate::jobs::publish::PublishResult {
    let mut l = crate::jobs::publish::PublishResult::new(
        Stage::Publish,
        "ami-0000000000000000a",
        &region.parse().expect("region"),
        "web",
    );
    l.target = Some("launch-template:web-servrs".into());
    if found {
        l.action = "new_template_version";
        l.with(PublishOutcome::Published, None)
    } else {
        l.action = crate::jobs::publish::targets::NO_TEMPLATE;
        l.with(PublishOutcome::Skipped, "no launch template".to_string())
    }
}

/// The stack's recall mark on an image (read as the proof leaves a verified one: its value).
fn recalled(mut image: Image, proven: bool) -> Image {
    let value = if proven {
        "2026-12-05T12:00:00Z mac"
    } else {
        tags::UNPROVEN
    };
    image.tags.insert(tags::RECALLED.into(), value.into());
    image.tags.insert(tags::RECALL_OF.into(), image.id.clone());
    image
}

mod destinations;
mod launch_tests;
mod recall;
mod trust;
