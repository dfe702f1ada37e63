//! The launch test and publishing: planners as tables, executors against the fake account.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::targets::{choose, targets, Choice, Destination};
use super::validate::{judge, plan, Step};
use super::{events, rollback, run, PublishOutcome, Stage};
use crate::domain::model::{Image, ImageState, SourceImage};
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::{PublishRequest, RunRequest};
use crate::domain::{seal, tags};
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
) -> (Vec<super::targets::Target<'a>>, Vec<super::PublishResult>) {
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
fn launched<'a>(steps: &'a [super::validate::Planned<'_>]) -> Vec<&'a str> {
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

#[test]
fn the_launch_test_passes_only_when_running_with_both_checks_ok_and_the_console_says_so() {
    let d = doc(VALIDATE);
    let v = validate_of(&d);
    let now = at(10);
    // (state, checks, console, expected step kind)
    let table: [(&str, Option<&str>, Option<&str>, &str); 7] = [
        ("pending", None, None, "wait"),
        ("running", Some("initializing"), None, "wait"),
        ("running", Some("ok"), None, "wait"),
        ("running", Some("ok"), Some("kernel panic"), "wait"),
        ("running", Some("ok"), Some("Ubuntu\nweb login: "), "pass"),
        ("stopped", Some("ok"), Some("login:"), "fail"),
        ("shutting-down", None, None, "fail"),
    ];
    for (state, checks, console, want) in table {
        let i = test_instance(
            "i-0000000000000000a",
            "ami-0000000000000000a",
            state,
            2,
            checks,
        );
        let got = match judge(&i, v, console, now) {
            Step::Wait { .. } => "wait",
            Step::Pass { .. } => "pass",
            Step::Fail { .. } => "fail",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, want, "{state} {checks:?} {console:?}");
    }
}

#[test]
fn a_test_that_outlives_its_timeout_fails_and_says_what_it_last_saw() {
    let d = doc(VALIDATE);
    let v = validate_of(&d);
    let i = test_instance(
        "i-0000000000000000a",
        "ami-0000000000000000a",
        "running",
        0,
        Some("initializing"),
    );
    assert!(
        matches!(judge(&i, v, None, at(15)), Step::Wait { .. }),
        "15 minutes is not yet over"
    );
    match judge(&i, v, None, at(16)) {
        Step::Fail {
            reason,
            instance_id,
        } => {
            assert_eq!(instance_id.as_deref(), Some("i-0000000000000000a"));
            assert!(reason.contains("timed out after 15 minutes"), "{reason}");
            assert!(reason.contains("system status initializing"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn only_the_newest_ami_of_a_family_is_launched_and_copies_never() {
    let d = doc(VALIDATE);
    let mut copy = ami("ami-0000000000000000c", "web", 30);
    copy.tags
        .insert(tags::SOURCE_IMAGE.into(), "ami-0000000000000000f".into());
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        ami("ami-0000000000000000b", "web", 10),
        copy,
        ami("ami-0000000000000000d", "db", 5),
        verdict(ami("ami-0000000000000000e", "api", 1), tags::PASSED),
    ];
    let steps = plan(&images, &[], &HashMap::new(), &d, None, None, at(20));
    let launched = launched(&steps);
    assert_eq!(launched, ["ami-0000000000000000b", "ami-0000000000000000d"]);
    let spec = steps
        .iter()
        .find_map(|s| match &s.step {
            Step::Launch(spec) => Some(spec.clone()),
            _ => None,
        })
        .expect("a launch");
    assert_eq!(spec.tags[tags::VALIDATES], "ami-0000000000000000b");
    assert_eq!(spec.tags[tags::CREATED_BY], tags::VALIDATOR);
    assert_eq!(
        spec.client_token, "",
        "sealed when it is launched, not planned"
    );
}

#[test]
fn instances_with_nothing_left_to_test_are_terminated() {
    let d = doc(VALIDATE);
    let images = vec![
        verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED),
        ami("ami-0000000000000000b", "web", 10),
    ];
    let instances = vec![
        test_instance(
            "i-000000000000000a1",
            "ami-0000000000000000a",
            "running",
            0,
            Some("ok"),
        ),
        test_instance(
            "i-000000000000000b1",
            "ami-0000000000000000b",
            "running",
            11,
            None,
        ),
        test_instance(
            "i-000000000000000b2",
            "ami-0000000000000000b",
            "running",
            12,
            None,
        ),
        test_instance(
            "i-0000000000000gone",
            "ami-000000000000dead0",
            "running",
            0,
            None,
        ),
    ];
    let steps = plan(&images, &instances, &HashMap::new(), &d, None, None, at(13));
    let terminated: Vec<&str> = steps
        .iter()
        .filter_map(|s| match &s.step {
            Step::Terminate { instance_id, .. } => Some(instance_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        terminated,
        [
            "i-000000000000000a1",
            "i-000000000000000b2",
            "i-0000000000000gone"
        ]
    );
    assert!(steps.iter().any(|s| matches!(&s.step, Step::Wait { instance_id, .. } if instance_id == "i-000000000000000b1")));
    assert!(
        !steps.iter().any(|s| matches!(s.step, Step::Launch(_))),
        "one test per AMI"
    );
}

#[tokio::test]
async fn a_launch_test_runs_once_across_deliveries_then_tags_terminates_and_announces() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state()
        .images
        .push(ami("ami-0000000000000000a", "web", 0));
    let regions = ["us-east-1".parse().expect("region")];
    let request = RunRequest::default();
    for _ in 0..2 {
        let lines = run(&ctx, &request, &regions, false, at(1)).await;
        assert!(
            lines
                .iter()
                .any(|l| l.action == "launch" || l.action == "wait"),
            "{lines:?}"
        );
    }
    let instance = {
        let state = ec2.state();
        assert_eq!(
            state.test_instances.len(),
            1,
            "one instance, however often delivered"
        );
        state.test_instances[0].instance_id.clone()
    };
    // The instance boots; the checks pass; the console says `login:`.
    {
        let mut state = ec2.state();
        let i = &mut state.test_instances[0];
        i.state = "running".into();
        i.system_status = Some("ok".into());
        i.instance_status = Some("ok".into());
        state.consoles.insert(instance.clone(), "web login:".into());
    }
    let lines = run(&ctx, &request, &regions, false, at(5)).await;
    let passed: Vec<_> = lines
        .iter()
        .filter(|l| l.outcome == PublishOutcome::Passed)
        .collect();
    assert_eq!(passed.len(), 1, "{lines:?}");
    assert_eq!(ec2.state().images[0].verdict(), Some(tags::PASSED));
    assert_eq!(ec2.state().test_instances[0].state, "terminated");
    let announced = events(&lines);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].detail_type, "AMI Validated");
    assert_eq!(announced[0].detail["image_id"], "ami-0000000000000000a");
    // Delivered again: nothing left to do.
    let again = run(&ctx, &request, &regions, false, at(6)).await;
    assert!(
        again
            .iter()
            .all(|l| l.stage == Stage::Validate && l.outcome != PublishOutcome::Launched),
        "{again:?}"
    );
    assert!(events(&again).is_empty());
}

#[tokio::test]
async fn a_dry_run_launches_nothing_and_says_it_would() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state()
        .images
        .push(ami("ami-0000000000000000a", "web", 0));
    let lines = run(
        &ctx,
        &RunRequest::default(),
        &["us-east-1".parse().expect("region")],
        true,
        at(1),
    )
    .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0].action, lines[0].outcome),
        ("launch", PublishOutcome::Planned)
    );
    assert!(ec2.state().changes.is_empty());
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
            latest_made_by_tool: false,
            recorded_default: None,
        },
        vec![Some(image.into())],
    ));
}

#[tokio::test]
async fn the_newest_validated_ami_is_published_once_to_ssm_and_the_template() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(verdict(
            ami("ami-0000000000000000a", "web", 0),
            tags::PASSED,
        ));
        s.images.push(verdict(
            ami("ami-0000000000000000b", "web", 10),
            tags::PASSED,
        ));
        s.images.push(verdict(
            ami("ami-0000000000000000c", "web", 20),
            tags::FAILED,
        ));
    }
    template(&ec2, "ami-0000000000000000a");
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    let published: Vec<_> = lines
        .iter()
        .filter(|l| l.outcome == PublishOutcome::Published)
        .collect();
    assert_eq!(published.len(), 2, "{lines:?}");
    assert!(published
        .iter()
        .all(|l| l.image_id == "ami-0000000000000000b"));
    {
        let state = ec2.state();
        assert_eq!(
            state.parameters["/ami/web/web"],
            ("ami-0000000000000000b".to_string(), 1)
        );
        let (t, versions) = &state.templates[0];
        assert_eq!((t.latest_version, t.default_version), (2, 2));
        assert_eq!(versions[1].as_deref(), Some("ami-0000000000000000b"));
    }
    let announced = events(&lines);
    let to_template = announced
        .iter()
        .find(|e| e.detail["target"] == "launch-template:web-servers")
        .expect("AMI Published for the template");
    assert_eq!(to_template.detail_type, "AMI Published");
    assert_eq!(
        to_template.detail["previous_image_id"],
        "ami-0000000000000000a"
    );
    assert_eq!(to_template.detail["image_id"], "ami-0000000000000000b");
    // Re-delivered: no new parameter version, no new template version.
    let again = run(&ctx, &RunRequest::default(), &regions, false, at(31)).await;
    assert!(
        again.iter().all(|l| l.outcome == PublishOutcome::Unchanged),
        "{again:?}"
    );
    assert_eq!(ec2.state().templates[0].1.len(), 2);
    assert_eq!(ec2.state().parameters["/ami/web/web"].1, 1);
}

#[tokio::test]
async fn a_rollback_pins_an_older_ami_until_a_newer_one_is_made() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(verdict(
            ami("ami-0000000000000000a", "web", 0),
            tags::PASSED,
        ));
        s.images.push(verdict(
            ami("ami-0000000000000000b", "web", 10),
            tags::PASSED,
        ));
    }
    template(&ec2, "ami-0000000000000000b");
    let regions = ["us-east-1".parse().expect("region")];
    run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000b"
    );
    let pin = PublishRequest {
        policy: "web".into(),
        family: "web".into(),
        image_id: "ami-0000000000000000a".into(),
    };
    let lines = rollback(&ctx, &pin, &regions, false, at(40)).await;
    assert!(
        lines
            .iter()
            .all(|l| l.outcome == PublishOutcome::Published && l.pinned),
        "{lines:?}"
    );
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
    assert_eq!(
        ec2.state().templates[0].0.latest_image.as_deref(),
        Some("ami-0000000000000000a")
    );
    assert!(ec2.state().images[0].tags.contains_key(tags::PINNED_AT));
    // The sweep keeps the pin: b is newer but older than the pin.
    let sweep = run(&ctx, &RunRequest::default(), &regions, false, at(45)).await;
    assert!(
        sweep.iter().all(|l| l.outcome == PublishOutcome::Unchanged),
        "{sweep:?}"
    );
    // A destination the rollback did not reach (its write failed) gets the pin on the sweep.
    ec2.state()
        .parameters
        .insert("/ami/web/web".into(), ("ami-0000000000000000b".into(), 9));
    let sweep = run(&ctx, &RunRequest::default(), &regions, false, at(46)).await;
    let line = sweep
        .iter()
        .find(|l| l.action == "put_parameter")
        .expect("a parameter line");
    assert_eq!(
        (line.outcome, line.pinned),
        (PublishOutcome::Published, true),
        "{sweep:?}"
    );
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
    // A new AMI made after the pin (the wall clock's) replaces it.
    let mut c = verdict(ami("ami-0000000000000000c", "web", 50), tags::PASSED);
    c.created = Some(Utc::now() + Duration::minutes(1));
    ec2.state().images.push(c);
    run(&ctx, &RunRequest::default(), &regions, false, at(60)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000c"
    );
    assert_eq!(
        ec2.state().templates[0].0.latest_image.as_deref(),
        Some("ami-0000000000000000c")
    );
}

#[test]
fn a_destination_never_moves_backwards_without_a_pin() {
    let d = doc(PUBLISH);
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        ami("ami-0000000000000000b", "web", 10),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(lines.is_empty(), "{lines:?}");
    let param = work
        .iter()
        .find(|t| matches!(t.destination, Destination::Parameter(_)))
        .expect("a parameter");
    assert_eq!(
        param.image.id, "ami-0000000000000000b",
        "no validate: the newest available"
    );
    assert_eq!(
        choose(param, Some("ami-0000000000000000b"), &images),
        Choice::Unchanged
    );
    assert_eq!(
        choose(param, Some("ami-0000000000000000a"), &images),
        Choice::Publish {
            previous: Some("ami-0000000000000000a".into())
        }
    );
    let mut newer = images.clone();
    newer.push(ami("ami-0000000000000000z", "web", 99));
    assert!(matches!(
        choose(param, Some("ami-0000000000000000z"), &newer),
        Choice::Keep(_)
    ));
    // Not one of the account's AMIs (or gone): replaced.
    assert!(matches!(
        choose(param, Some("ami-00000000000000099"), &images),
        Choice::Publish { .. }
    ));
}

#[test]
fn ambiguous_destinations_are_refused_with_the_fix() {
    let d = doc(
        r#""publish": {"ssm_parameters": ["/ami/{policy}/latest"], "launch_templates": [{"template": "web-servers"}]}"#,
    );
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        ami("ami-0000000000000000b", "db", 10),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(work.is_empty(), "{work:?}");
    let reasons: Vec<&str> = lines.iter().filter_map(|l| l.reason.as_deref()).collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.outcome == PublishOutcome::Refused)
            .count(),
        3,
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("put {family} (and {policy}) in its name")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("name the family this template gets")),
        "{reasons:?}"
    );
}

#[test]
fn the_gate_holds_what_did_not_pass_and_a_failed_ami_is_never_published() {
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let policy = &d.policies[0];
    let unvalidated = ami("ami-0000000000000000a", "web", 0);
    assert!(unvalidated
        .held_by_gate(policy)
        .is_some_and(|w| w.contains("not validated yet")));
    let failed = verdict(ami("ami-0000000000000000b", "web", 0), tags::FAILED);
    assert!(failed
        .held_by_gate(policy)
        .is_some_and(|w| w.contains("failed")));
    let passed = verdict(ami("ami-0000000000000000c", "web", 0), tags::PASSED);
    assert_eq!(passed.held_by_gate(policy), None);
    let no_validate = doc(PUBLISH);
    assert_eq!(unvalidated.held_by_gate(&no_validate.policies[0]), None);
    let held = [unvalidated, failed];
    let (work, _) = targets_at(&held, &d, at(5));
    assert!(work.is_empty(), "{work:?}");
}

proptest! {
    /// Whatever the fleet, a sweep publishes only promotable AMIs, and for each family the
    /// newest of them.
    #[test]
    fn a_sweep_publishes_the_newest_promotable_ami_of_each_family(
        fleet in proptest::collection::vec((0u8..3, 0i64..100, 0u8..4, proptest::bool::ANY), 0..12)
    ) {
        let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
        let images: Vec<Image> = fleet.iter().enumerate().map(|(n, (family, minutes, verdict_kind, available))| {
            let mut i = ami(&format!("ami-{n:017x}"), ["web", "db", "api"][*family as usize], *minutes);
            match verdict_kind {
                0 => {}
                1 => { i.tags.insert(tags::VALIDATION.into(), tags::FAILED.into()); }
                _ => { i.tags.insert(tags::VALIDATION.into(), tags::PASSED.into()); }
            }
            if !available { i.state = ImageState::Disabled; }
            i
        }).collect();
        let (work, _) = targets_at(&images, &d, at(200));
        for t in &work {
            prop_assert_eq!(t.image.verdict(), Some(tags::PASSED));
            prop_assert_eq!(&t.image.state, &ImageState::Available);
            let best = images.iter()
                .filter(|i| i.family(&d.policies[0].family_by) == t.family && i.verdict() == Some(tags::PASSED) && i.state == ImageState::Available)
                .max_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
                .map(|i| i.id.clone());
            prop_assert_eq!(Some(t.image.id.clone()), best);
        }
    }
}

#[test]
fn a_test_instance_terminated_before_a_verdict_fails_its_ami_and_pending_builds_supersede_nothing()
{
    let d = doc(VALIDATE);
    let mut pending = ami("ami-0000000000000000c", "web", 20);
    pending.state = ImageState::Pending;
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        ami("ami-0000000000000000b", "db", 10),
        pending,
    ];
    let instances = vec![test_instance(
        "i-000000000000000a1",
        "ami-0000000000000000a",
        "terminated",
        1,
        None,
    )];
    let steps = plan(&images, &instances, &HashMap::new(), &d, None, None, at(5));
    let fail = steps
        .iter()
        .find_map(|s| match &s.step {
            Step::Fail { reason, .. } if s.image_id == "ami-0000000000000000a" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .expect("a failure");
    assert!(
        fail.contains("terminated before its checks passed"),
        "{fail}"
    );
    // The pending build supersedes nothing: b (the newest available of db) is launched, and a
    // is not launched again (its client token would answer the dead instance).
    let launched = launched(&steps);
    assert_eq!(launched, ["ami-0000000000000000b"]);
}

#[test]
fn another_deployments_test_instances_are_left_alone() {
    let d = doc(VALIDATE);
    let mut theirs = test_instance(
        "i-0000000000000000f",
        "ami-000000000000000ff",
        "running",
        0,
        None,
    );
    theirs.policy = Some("someone-elses".into());
    let steps = plan(
        &[],
        &[theirs.clone()],
        &HashMap::new(),
        &d,
        None,
        None,
        at(5),
    );
    assert!(steps.is_empty(), "{steps:?}");
    // Still running past the longest timeout a policy can set: abandoned, terminated.
    let steps = plan(&[], &[theirs], &HashMap::new(), &d, None, None, at(256));
    assert!(
        matches!(&steps[..], [s] if matches!(s.step, Step::Terminate { .. })),
        "{steps:?}"
    );
}

#[test]
fn a_destination_two_families_share_is_refused_even_when_only_one_has_an_ami_to_publish() {
    let d = doc(r#""publish": {"ssm_parameters": ["/ami/{policy}/latest"],
        "launch_templates": [{"template": "web-servers"}]}"#);
    // db has an AMI, but none promotable (disabled): the parameter is still shared.
    let mut disabled = ami("ami-0000000000000000b", "db", 10);
    disabled.state = ImageState::Disabled;
    let images = [ami("ami-0000000000000000a", "web", 0), disabled];
    let region = "us-east-1".parse().expect("region");
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(work.is_empty(), "{work:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.outcome == PublishOutcome::Refused)
            .count(),
        2,
        "{lines:?}"
    );
    // A rollback of one family does not write it either.
    let pin = PublishRequest {
        policy: "web".into(),
        family: "web".into(),
        image_id: "ami-0000000000000000a".into(),
    };
    let (work, _) = targets(&images, &d, &region, None, Some(&pin), at(20));
    assert!(work.is_empty(), "{work:?}");
}

#[test]
fn two_policies_writing_one_parameter_are_both_refused() {
    let d = document(
        r#"{"policies": [
        {"name": "prod", "select": {"tags": {"Stage": "prod"}}, "family_by": "tag:Family", "validate": {"instance_type": "t3.micro",
         "subnet_id": "subnet-0123456789abcdef0", "security_group_ids": ["sg-0123456789abcdef0"]},
         "publish": {"ssm_parameters": ["/ami/{family}/latest"]}},
        {"name": "dev", "select": {"tags": {"Stage": "dev"}}, "family_by": "tag:Family",
         "publish": {"ssm_parameters": ["/ami/{family}/latest"]}}]}"#,
    );
    let mut prod = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    prod.tags.remove(tags::POLICY);
    prod.tags.insert("Stage".into(), "prod".into());
    let mut dev = ami("ami-0000000000000000b", "web", 10);
    dev.tags.remove(tags::POLICY);
    dev.tags.insert("Stage".into(), "dev".into());
    let images = [prod, dev];
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(
        work.is_empty(),
        "an untested dev AMI must never reach prod's parameter: {work:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.outcome == PublishOutcome::Refused)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_passed_verdict_the_stack_cannot_prove_it_wrote_is_held_by_the_gate() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    let sealed = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    // Newer, each with a `passed` someone else wrote: by hand, with another AMI's seal, with a
    // seal over another region, and a "copy" whose lineage EC2 does not record.
    let by_hand = {
        let mut i = ami("ami-0000000000000000b", "web", 10);
        i.tags.insert(tags::VALIDATION.into(), tags::PASSED.into());
        i
    };
    let borrowed = {
        let mut i = ami("ami-0000000000000000c", "web", 20);
        for key in [tags::VALIDATION, tags::VALIDATION_SEAL] {
            let value = sealed.tags.get(key).cloned().unwrap_or_default();
            i.tags.insert(key.into(), value);
        }
        i
    };
    let elsewhere = {
        let mut i = ami("ami-0000000000000000d", "web", 30);
        let at = "2026-11-01T12:00:00Z";
        let mac = FakeSeal::of(&seal::verdict(&i.id, "eu-west-1", "web", tags::PASSED, at));
        i.tags.insert(tags::VALIDATION.into(), tags::PASSED.into());
        i.tags
            .insert(tags::VALIDATION_SEAL.into(), seal::sealed_tag(at, &mac));
        i
    };
    let posing_copy = {
        let mut i = borrowed.clone();
        i.id = "ami-0000000000000000e".into();
        i.created = Some(at(40));
        i.tags
            .insert(tags::SOURCE_IMAGE.into(), "ami-0000000000000000a".into());
        i.tags
            .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
        // EC2 says it was made from an instance of the sealed AMI, in its own region.
        i.source = Some(Box::new(SourceImage {
            image_id: "ami-0000000000000000a".into(),
            region: "us-east-1".into(),
        }));
        i
    };
    {
        let mut s = ec2.state();
        s.images
            .extend([sealed, by_hand, borrowed, elsewhere, posing_copy]);
    }
    template(&ec2, "ami-0000000000000000a");
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(60)).await;
    assert!(
        lines.iter().all(
            |l| l.image_id == "ami-0000000000000000a" || l.outcome != PublishOutcome::Published
        ),
        "only the sealed verdict promotes: {lines:?}"
    );
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
    // The newest AMI that is not a copy is tested (again): its verdict is then the stack's.
    let launched: Vec<_> = lines.iter().filter(|l| l.action == "launch").collect();
    assert_eq!(launched.len(), 1, "{lines:?}");
    assert_eq!(launched[0].image_id, "ami-0000000000000000d");
}

#[tokio::test]
async fn a_copy_carries_its_sources_seal_which_holds_where_ec2_records_the_lineage() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("eu-west-1");
    let source = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    let copy = |id: &str, recorded: bool, minutes: i64| {
        let mut i = source.clone();
        i.id = id.into();
        i.created = Some(at(minutes));
        i.tags
            .insert(tags::SOURCE_IMAGE.into(), "ami-0000000000000000a".into());
        i.tags
            .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
        i.source = recorded.then(|| {
            Box::new(SourceImage {
                image_id: "ami-0000000000000000a".into(),
                region: "us-east-1".into(),
            })
        });
        i
    };
    {
        let mut s = ec2.state();
        s.images.push(copy("ami-0000000000000000b", true, 5));
        // Newer, tagged like a copy, which EC2 does not record as one.
        s.images.push(copy("ami-0000000000000000c", false, 10));
    }
    let regions = ["eu-west-1".parse().expect("region")];
    run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000b"
    );
}

#[tokio::test]
async fn an_instance_tagged_like_a_test_instance_but_not_launched_by_the_stack_is_left_alone() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(ami("ami-0000000000000000a", "web", 0));
        // Tagged exactly like the AMI's test instance, running long past any timeout, with
        // both checks ok: someone's own instance, one with another AMI's token, one with no
        // token at all, and one launched with the right token from another AMI.
        let mut by_hand = test_instance(
            "i-00000000000000001",
            "ami-0000000000000000a",
            "running",
            -600,
            Some("ok"),
        );
        by_hand.client_token = Some("a-token-of-their-own".into());
        let mut borrowed = test_instance(
            "i-00000000000000002",
            "ami-0000000000000000a",
            "running",
            -600,
            Some("ok"),
        );
        borrowed.client_token = Some(seal::launch_token(
            1,
            &FakeSeal::of(&seal::launch("ami-0000000000000000b", "us-east-1", 1)),
        ));
        let mut none = test_instance(
            "i-00000000000000003",
            "ami-0000000000000000a",
            "running",
            -600,
            Some("ok"),
        );
        none.client_token = None;
        let mut elsewhere = test_instance(
            "i-00000000000000004",
            "ami-0000000000000000a",
            "running",
            -600,
            Some("ok"),
        );
        elsewhere.launched_from = Some("ami-0000000000000000f".into());
        s.test_instances
            .extend([by_hand, borrowed, none, elsewhere]);
        s.consoles
            .insert("i-00000000000000001".into(), "web login:".into());
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    let changes = ec2.state().changes.clone();
    assert!(
        !changes.iter().any(|c| c.starts_with("TerminateInstances")),
        "none of them is terminated: {changes:?}"
    );
    assert_eq!(
        ec2.state().images[0].verdict(),
        None,
        "none of them decides a verdict: {lines:?}"
    );
    let launched: Vec<_> = lines.iter().filter(|l| l.action == "launch").collect();
    assert_eq!(
        launched.len(),
        1,
        "the AMI gets its own test instance: {lines:?}"
    );
}

#[tokio::test]
async fn a_pin_the_stack_did_not_seal_holds_nothing_back() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    let when = at(100).to_rfc3339();
    let mut old = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    // Tagged by hand as a rollback's pin, after the newer AMI was made.
    old.tags.insert(tags::PINNED_AT.into(), when.clone());
    let mut borrowed = verdict(ami("ami-0000000000000000c", "other", 0), tags::PASSED);
    let sealed_elsewhere = FakeSeal::of(&seal::pin("ami-0000000000000000a", "eu-west-1", &when));
    borrowed.tags.insert(
        tags::PINNED_AT.into(),
        seal::sealed_tag(&when, &sealed_elsewhere),
    );
    {
        let mut s = ec2.state();
        s.images.push(old);
        s.images.push(borrowed);
        s.images.push(verdict(
            ami("ami-0000000000000000b", "web", 10),
            tags::PASSED,
        ));
    }
    template(&ec2, "ami-0000000000000000d");
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(200)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000b",
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.pinned), "{lines:?}");

    // A destination that names an AMI under a pin it cannot prove (one from before seals) is
    // kept: the AMI it was rolled back from does not return.
    let ssm = cloud.region("us-east-1");
    ssm.state()
        .parameters
        .insert("/ami/web/web".into(), ("ami-0000000000000000a".into(), 2));
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(210)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a",
        "{lines:?}"
    );
    let kept = lines
        .iter()
        .find(|l| l.target.as_deref() == Some("ssm:/ami/web/web"))
        .expect("the parameter's line");
    assert_eq!(
        kept.outcome,
        PublishOutcome::Refused,
        "a person must decide, and the alarm says so: {kept:?}"
    );
    assert!(kept
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("no seal"));
}

#[tokio::test]
async fn a_test_instance_launched_before_tokens_were_sealed_is_terminated_and_judges_nothing() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(ami("ami-0000000000000000a", "web", 0));
        let mut earlier = test_instance(
            "i-00000000000000001",
            "ami-0000000000000000a",
            "running",
            -5,
            Some("ok"),
        );
        earlier.client_token = Some("ami-publish-validate-ami-0000000000000000a".into());
        s.test_instances.push(earlier);
        s.consoles
            .insert("i-00000000000000001".into(), "web login:".into());
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    let changes = ec2.state().changes.clone();
    assert!(
        changes.contains(&"TerminateInstances i-00000000000000001".to_string()),
        "{changes:?}"
    );
    assert_eq!(ec2.state().images[0].verdict(), None, "{lines:?}");
    let launched: Vec<_> = lines.iter().filter(|l| l.action == "launch").collect();
    assert_eq!(launched.len(), 1, "tested again: {lines:?}");
}

#[tokio::test]
async fn a_rollback_that_cannot_be_carried_out_is_refused_and_one_to_a_deprecated_ami_is_done() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    let mut previous = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    // Age-out deprecated it soon after the newer one was published.
    previous.deprecation_time = Some(at(20));
    {
        let mut s = ec2.state();
        s.images.push(previous);
        s.images.push(verdict(
            ami("ami-0000000000000000b", "web", 10),
            tags::PASSED,
        ));
        s.images.push(verdict(
            ami("ami-0000000000000000c", "api", 10),
            tags::PASSED,
        ));
    }
    template(&ec2, "ami-0000000000000000b");
    let regions = ["us-east-1".parse().expect("region")];
    let pin = |family: &str, image: &str| PublishRequest {
        policy: "web".into(),
        family: family.into(),
        image_id: image.into(),
    };
    for (family, image, why) in [
        (
            "web",
            "ami-0000000000000000f",
            "neither ami-0000000000000000f",
        ),
        (
            "web",
            "ami-0000000000000000c",
            "neither ami-0000000000000000c",
        ),
        ("nope", "ami-0000000000000000a", "no AMI of family `nope`"),
    ] {
        let lines = rollback(&ctx, &pin(family, image), &regions, false, at(40)).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].outcome, PublishOutcome::Refused, "{lines:?}");
        assert!(
            lines[0].reason.as_deref().unwrap_or_default().contains(why),
            "{lines:?}"
        );
    }
    let lines = rollback(
        &ctx,
        &pin("web", "ami-0000000000000000a"),
        &regions,
        false,
        at(40),
    )
    .await;
    assert!(
        lines
            .iter()
            .all(|l| l.outcome == PublishOutcome::Published && l.pinned),
        "a deprecated AMI is what an incident rolls back to: {lines:?}"
    );
    // The next sweep keeps the pin.
    let sweep = run(&ctx, &RunRequest::default(), &regions, false, at(50)).await;
    let web: Vec<_> = sweep
        .iter()
        .filter(|l| l.family.as_deref() == Some("web"))
        .collect();
    assert_eq!(web.len(), 2, "{sweep:?}");
    assert!(
        web.iter()
            .all(|l| l.outcome == PublishOutcome::Unchanged && l.pinned),
        "{sweep:?}"
    );
}

#[tokio::test]
async fn a_verdict_whose_seal_kms_cannot_check_is_held_and_neither_failed_nor_tested_again() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(verdict(
            ami("ami-0000000000000000a", "web", 0),
            tags::PASSED,
        ));
        // Its test instance, gone after the verdict.
        s.test_instances.push(test_instance(
            "i-00000000000000001",
            "ami-0000000000000000a",
            "terminated",
            -30,
            None,
        ));
    }
    cloud
        .kms_unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(60)).await;
    assert!(
        lines
            .iter()
            .all(|l| !matches!(l.action, "fail" | "launch")
                && l.outcome != PublishOutcome::Published),
        "{lines:?}"
    );
    assert_eq!(ec2.state().images[0].verdict(), Some(tags::PASSED));
    // KMS answers again: it is published.
    cloud
        .kms_unavailable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    run(&ctx, &RunRequest::default(), &regions, false, at(70)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
}

#[tokio::test]
async fn a_verdict_the_stack_cannot_prove_is_tested_again_with_a_token_of_its_own() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        let mut image = ami("ami-0000000000000000a", "web", 0);
        // Written before seals: `passed` alone; its test instance ended long ago.
        image
            .tags
            .insert(tags::VALIDATION.into(), tags::PASSED.into());
        s.images.push(image);
        s.test_instances.push(test_instance(
            "i-00000000000000001",
            "ami-0000000000000000a",
            "terminated",
            -600,
            None,
        ));
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    assert!(lines.iter().all(|l| l.action != "fail"), "{lines:?}");
    let launched: Vec<_> = lines.iter().filter(|l| l.action == "launch").collect();
    assert_eq!(launched.len(), 1, "{lines:?}");
    let state = ec2.state();
    let tokens: Vec<&String> = state.launch_tokens.keys().collect();
    assert_eq!(tokens.len(), 1);
    assert!(
        tokens[0].starts_with("2."),
        "the second test's token: {tokens:?}"
    );
}

#[tokio::test]
async fn a_launch_test_is_not_started_in_security_groups_that_let_traffic_in() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(ami("ami-0000000000000000a", "web", 0));
        s.inbound.insert(
            "sg-0123456789abcdef0".into(),
            vec!["sg-0123456789abcdef0: tcp 22 from 0.0.0.0/0".into()],
        );
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    let launch = lines
        .iter()
        .find(|l| l.action == "launch")
        .expect("a launch line");
    assert_eq!(launch.outcome, PublishOutcome::Failed, "{lines:?}");
    assert!(
        launch
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("tcp 22 from 0.0.0.0/0"),
        "{lines:?}"
    );
    assert!(ec2.state().test_instances.is_empty(), "nothing launched");
}

#[tokio::test]
async fn twenty_families_built_at_once_are_tested_a_few_at_a_time_and_all_in_the_end() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let mut ctx = context(&cloud, &d);
    ctx.limits.max_test_instances = 3;
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        for n in 0..20 {
            s.images
                .push(ami(&format!("ami-{n:017x}"), &format!("f{n}"), 0));
        }
    }
    let regions = ["us-east-1".parse().expect("region")];
    let mut most_up = 0;
    for sweep in 0..30 {
        run(&ctx, &RunRequest::default(), &regions, false, at(sweep)).await;
        let mut s = ec2.state();
        let up: Vec<String> = s
            .test_instances
            .iter()
            .filter(|i| i.state != "terminated")
            .map(|i| i.instance_id.clone())
            .collect();
        most_up = most_up.max(up.len());
        // EC2 boots them: both checks ok, a login prompt.
        for i in s
            .test_instances
            .iter_mut()
            .filter(|i| i.state != "terminated")
        {
            i.state = "running".into();
            i.system_status = Some("ok".into());
            i.instance_status = Some("ok".into());
        }
        for id in up {
            s.consoles.insert(id, "web login:".into());
        }
        if s.images.iter().all(|i| i.verdict() == Some(tags::PASSED)) {
            break;
        }
    }
    assert!(most_up <= 3, "{most_up} test instances up at once");
    let s = ec2.state();
    assert!(
        s.images.iter().all(|i| i.verdict() == Some(tags::PASSED)),
        "every family tested in the end"
    );
    assert_eq!(s.test_instances.len(), 20, "each launched once");
}

#[tokio::test]
async fn a_test_instance_is_bounded_by_a_dead_man_schedule_from_its_launch_to_its_verdict() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state()
        .images
        .push(ami("ami-0000000000000000a", "web", 0));
    let regions = ["us-east-1".parse().expect("region")];
    let before = Utc::now();
    run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    let armed = cloud.dead_man.0.lock().expect("armed").clone();
    assert_eq!(armed.len(), 1, "{armed:?}");
    let (instance, deadline) = armed.iter().next().expect("one schedule");
    // Its timeout (15) and the grace (10): past it, the schedule terminates it.
    let lifetime = *deadline - before;
    assert!((25..=26).contains(&lifetime.num_minutes()), "{lifetime:?}");
    {
        let mut s = ec2.state();
        let i = s
            .test_instances
            .iter_mut()
            .find(|i| &i.instance_id == instance)
            .expect("the test instance");
        i.state = "running".into();
        i.system_status = Some("ok".into());
        i.instance_status = Some("ok".into());
        s.consoles.insert(instance.clone(), "web login:".into());
    }
    run(&ctx, &RunRequest::default(), &regions, false, at(5)).await;
    assert_eq!(ec2.state().images[0].verdict(), Some(tags::PASSED));
    assert!(
        cloud.dead_man.0.lock().expect("armed").is_empty(),
        "removed once the verdict is in"
    );
}

#[tokio::test]
async fn one_console_that_cannot_be_read_holds_only_its_own_test() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(ami("ami-0000000000000000a", "web", 0));
        s.images.push(ami("ami-0000000000000000b", "api", 0));
        for (id, image) in [
            ("i-00000000000000001", "ami-0000000000000000a"),
            ("i-00000000000000002", "ami-0000000000000000b"),
        ] {
            s.test_instances
                .push(test_instance(id, image, "running", 0, Some("ok")));
            s.consoles.insert(id.into(), "web login:".into());
        }
        s.unreadable_consoles.insert("i-00000000000000001".into());
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(5)).await;
    let of = |image: &str| {
        lines
            .iter()
            .find(|l| l.image_id == image)
            .unwrap_or_else(|| panic!("no line for {image}: {lines:?}"))
    };
    assert_eq!(
        of("ami-0000000000000000b").outcome,
        PublishOutcome::Passed,
        "{lines:?}"
    );
    let held = of("ami-0000000000000000a");
    assert_eq!(held.outcome, PublishOutcome::Waiting, "{lines:?}");
    assert!(held
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("console could not be read"));
}

#[tokio::test]
async fn a_pin_in_a_copy_region_is_not_undone_by_the_copy_of_the_bad_ami_arriving_after_it() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("eu-west-1");
    let copy_of = |source: &Image, id: &str, arrived: i64| {
        let mut i = source.clone();
        i.id = id.into();
        i.created = Some(at(arrived));
        i.tags.insert(tags::SOURCE_IMAGE.into(), source.id.clone());
        i.tags
            .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
        i.tags.insert(
            tags::SOURCE_CREATED.into(),
            source.created.expect("created").to_rfc3339(),
        );
        i.source = Some(Box::new(SourceImage {
            image_id: source.id.clone(),
            region: "us-east-1".into(),
        }));
        i
    };
    let good = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    let bad = verdict(ami("ami-0000000000000000b", "web", 10), tags::PASSED);
    // The good AMI's copy, pinned by a rollback at minute 20 (after the bad one was made).
    let mut pinned = copy_of(&good, "ami-0000000000000000c", 5);
    let when = at(20).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sealed = FakeSeal::of(&seal::pin(&pinned.id, "eu-west-1", &when));
    pinned
        .tags
        .insert(tags::PINNED_AT.into(), seal::sealed_tag(&when, &sealed));
    {
        let mut s = ec2.state();
        s.images.push(pinned);
        // The bad AMI's copy arrives at minute 30, after the pin.
        s.images.push(copy_of(&bad, "ami-0000000000000000d", 30));
        s.parameters
            .insert("/ami/web/web".into(), ("ami-0000000000000000c".into(), 1));
    }
    let regions = ["eu-west-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(40)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000c",
        "the rollback holds: {lines:?}"
    );
}

#[tokio::test]
async fn a_dead_man_schedule_that_cannot_be_created_keeps_the_test_and_is_created_by_the_next_sweep(
) {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state()
        .images
        .push(ami("ami-0000000000000000a", "web", 0));
    let regions = ["us-east-1".parse().expect("region")];
    cloud
        .dead_man
        .1
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(0)).await;
    let launch = lines.iter().find(|l| l.action == "launch").expect("launch");
    assert_eq!(launch.outcome, PublishOutcome::Failed, "{lines:?}");
    assert_eq!(ec2.state().test_instances.len(), 1, "launched, and kept");
    assert!(ec2
        .state()
        .changes
        .iter()
        .all(|c| !c.starts_with("TerminateInstances")));
    cloud
        .dead_man
        .1
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(1)).await;
    assert_eq!(
        cloud.dead_man.0.lock().expect("armed").len(),
        1,
        "armed by the next sweep: {lines:?}"
    );
    assert!(lines.iter().all(|l| l.action != "fail"), "{lines:?}");
}

#[tokio::test]
async fn a_pin_holds_when_nothing_else_of_the_family_can_be_published() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    let mut previous = verdict(ami("ami-0000000000000000a", "web", 0), tags::PASSED);
    previous.deprecation_time = Some(at(20));
    {
        let mut s = ec2.state();
        s.images.push(previous);
        s.images.push(verdict(
            ami("ami-0000000000000000b", "web", 10),
            tags::PASSED,
        ));
    }
    template(&ec2, "ami-0000000000000000b");
    let regions = ["us-east-1".parse().expect("region")];
    let pin = PublishRequest {
        policy: "web".into(),
        family: "web".into(),
        image_id: "ami-0000000000000000a".into(),
    };
    rollback(&ctx, &pin, &regions, false, at(40)).await;
    // The bad AMI is deregistered, and a destination the rollback did not reach names it still.
    {
        let mut s = ec2.state();
        s.images.retain(|i| i.id != "ami-0000000000000000b");
        s.parameters
            .insert("/ami/web/web".into(), ("ami-0000000000000000b".into(), 3));
    }
    run(&ctx, &RunRequest::default(), &regions, false, at(50)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
}

#[tokio::test]
async fn a_default_version_a_consumer_chose_is_left_until_they_hand_it_back() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state().images.push(verdict(
        ami("ami-0000000000000000a", "web", 0),
        tags::PASSED,
    ));
    template(&ec2, "ami-0000000000000000f");
    let regions = ["us-east-1".parse().expect("region")];
    run(&ctx, &RunRequest::default(), &regions, false, at(10)).await;
    {
        let s = ec2.state();
        let (t, _) = &s.templates[0];
        assert_eq!((t.default_version, t.recorded_default), (2, Some(2)));
    }
    // The consumer team rolls its default back to version 1 by hand; a newer AMI passes.
    ec2.state().templates[0].0.default_version = 1;
    ec2.state().images.push(verdict(
        ami("ami-0000000000000000b", "web", 20),
        tags::PASSED,
    ));
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    let held = lines
        .iter()
        .find(|l| l.target.as_deref() == Some("launch-template:web-servers"))
        .expect("the template's line");
    assert_eq!(held.outcome, PublishOutcome::Kept, "{held:?}");
    assert!(held
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("a rollback by hand"));
    assert!(events(&lines)
        .iter()
        .any(|e| e.detail_type == "AMI Publish Held"));
    {
        let s = ec2.state();
        let (t, versions) = &s.templates[0];
        assert_eq!(
            (t.default_version, versions.len()),
            (1, 2),
            "nothing changed"
        );
    }
    // They hand it back: the tool publishes again, from the version consumers run.
    ec2.state().templates[0].0.default_version = 2;
    run(&ctx, &RunRequest::default(), &regions, false, at(40)).await;
    let s = ec2.state();
    let (t, versions) = &s.templates[0];
    assert_eq!(t.default_version, 3);
    assert_eq!(versions[2].as_deref(), Some("ami-0000000000000000b"));
    assert_eq!(
        s.template_sources.last(),
        Some(&(t.template_id.clone(), 2)),
        "derived from the default consumers run"
    );
}

/// A publish line to a launch template in `region`, found there or not.
fn template_line(region: &str, found: bool) -> super::PublishResult {
    let mut l = super::PublishResult::new(
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
        l.action = super::targets::NO_TEMPLATE;
        l.with(PublishOutcome::Skipped, "no launch template".to_string())
    }
}

#[test]
fn a_launch_template_found_in_no_region_is_refused_and_one_found_somewhere_is_not() {
    // Misspelled: in no region the family's AMIs are in. Refused everywhere, naming the field.
    let both: Vec<crate::domain::ids::Region> = ["us-east-1", "eu-west-1"]
        .iter()
        .map(|r| r.parse().expect("region"))
        .collect();
    let mut lines = vec![
        template_line("us-east-1", false),
        template_line("eu-west-1", false),
    ];
    super::targets::missing_templates(&mut lines, &both);
    for l in &lines {
        assert_eq!(l.outcome, PublishOutcome::Refused, "{l:?}");
        let reason = l.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("`web-servrs`")
                && reason.contains("publish.launch_templates[].template")
                && reason.contains("us-east-1, eu-west-1"),
            "{reason}"
        );
    }
    // A template lives in one region: the other regions only have none.
    let mut lines = vec![
        template_line("us-east-1", true),
        template_line("eu-west-1", false),
    ];
    super::targets::missing_templates(&mut lines, &both);
    assert_eq!(lines[1].outcome, PublishOutcome::Skipped);
    // A region where the family had nothing to publish was not searched: it may hold it (the
    // template's region while its copy is on its way).
    let mut lines = vec![template_line("us-east-1", false)];
    super::targets::missing_templates(&mut lines, &both);
    assert_eq!(lines[0].outcome, PublishOutcome::Skipped);
    // A region that could not be read may hold it: nothing is concluded.
    let mut lines = vec![
        template_line("eu-west-1", false),
        super::PublishResult::new(
            Stage::Publish,
            "",
            &"us-east-1".parse().expect("region"),
            "",
        )
        .with(PublishOutcome::Deferred, "throttled".to_string()),
    ];
    super::targets::missing_templates(&mut lines, &both);
    assert_eq!(lines[0].outcome, PublishOutcome::Skipped);
}

#[tokio::test]
async fn a_sweep_to_a_launch_template_that_does_not_exist_fails_the_run() {
    let cloud = FakeCloud::default();
    let d = doc(&format!("{VALIDATE}, {PUBLISH}"));
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    ec2.state().images.push(verdict(
        ami("ami-0000000000000000a", "web", 0),
        tags::PASSED,
    ));
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    let line = lines
        .iter()
        .find(|l| l.target.as_deref() == Some("launch-template:web-servers"))
        .expect("the template's line");
    assert_eq!(line.outcome, PublishOutcome::Refused, "{line:?}");
    assert!(crate::jobs::Line::failed(line));
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a",
        "the parameter is published all the same"
    );
    // One region's event cannot say the template is nowhere.
    let one = RunRequest {
        regions: Some(regions.to_vec()),
        ..RunRequest::default()
    };
    let lines = run(&ctx, &one, &regions, false, at(31)).await;
    let line = lines
        .iter()
        .find(|l| l.target.as_deref() == Some("launch-template:web-servers"))
        .expect("the template's line");
    assert_eq!(line.outcome, PublishOutcome::Skipped, "{line:?}");
}

#[tokio::test]
async fn a_parameter_ssm_is_still_validating_is_deferred_and_one_of_another_data_type_refused() {
    let cloud = FakeCloud::default();
    let d =
        doc(r#""publish": {"ssm_parameters": ["/ami/{policy}/{family}", "/ami/{family}/text"]}"#);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    {
        let mut s = ec2.state();
        s.images.push(ami("ami-0000000000000000a", "web", 0));
        s.parameters
            .insert("/ami/web/text".into(), ("ami-0000000000000000a".into(), 1));
        s.parameter_data_types
            .insert("/ami/web/text".into(), "text".into());
        s.failing.insert("PutParameter", "TooManyUpdates".into());
    }
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(30)).await;
    let line = |target: &str| {
        lines
            .iter()
            .find(|l| l.target.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("a line for {target}: {lines:?}"))
    };
    let validating = line("ssm:/ami/web/web");
    assert_eq!(
        validating.outcome,
        PublishOutcome::Deferred,
        "{validating:?}"
    );
    assert!(!crate::jobs::Line::failed(validating), "no partial failure");
    assert!(validating
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("still validating"));
    let text = line("ssm:/ami/web/text");
    assert_eq!(text.outcome, PublishOutcome::Refused, "{text:?}");
    assert!(text
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("data type `text`"));
    // Validated: the next sweep writes it.
    ec2.state().failing.clear();
    run(&ctx, &RunRequest::default(), &regions, false, at(35)).await;
    assert_eq!(
        ec2.state().parameters["/ami/web/web"].0,
        "ami-0000000000000000a"
    );
}

#[tokio::test]
async fn an_ami_its_instance_type_cannot_run_is_refused_without_a_launch_or_a_verdict() {
    let cloud = FakeCloud::default();
    let d = doc(VALIDATE);
    let ctx = context(&cloud, &d);
    let ec2 = cloud.region("us-east-1");
    let mut arm = ami("ami-0000000000000000a", "arm", 0);
    arm.architecture = Some("arm64".into());
    ec2.state().images.push(arm);
    ec2.state()
        .images
        .push(ami("ami-0000000000000000b", "x86", 0));
    let regions = ["us-east-1".parse().expect("region")];
    let lines = run(&ctx, &RunRequest::default(), &regions, false, at(1)).await;
    let arm = lines
        .iter()
        .find(|l| l.image_id == "ami-0000000000000000a")
        .expect("the arm64 AMI's line");
    assert_eq!(arm.outcome, PublishOutcome::Refused, "{arm:?}");
    assert!(crate::jobs::Line::failed(arm), "the alarm says so");
    assert!(
        arm.reason
            .as_deref()
            .unwrap_or_default()
            .contains("arm64 does not run on t3.micro"),
        "{arm:?}"
    );
    assert_eq!(
        ec2.state().images[0].tags.get(tags::VALIDATION),
        None,
        "the configuration's mistake, not the AMI's: no verdict"
    );
    assert!(lines
        .iter()
        .any(|l| l.image_id == "ami-0000000000000000b" && l.outcome == PublishOutcome::Launched));
    let launches = |cloud: &FakeCloud| {
        cloud
            .region("us-east-1")
            .state()
            .changes
            .iter()
            .filter(|c| c.starts_with("RunInstances"))
            .count()
    };
    assert_eq!(launches(&cloud), 1, "only the x86_64 AMI was launched");
    let again = run(&ctx, &RunRequest::default(), &regions, false, at(6)).await;
    assert!(
        again
            .iter()
            .all(|l| l.image_id != "ami-0000000000000000a" || l.outcome == PublishOutcome::Refused),
        "{again:?}"
    );
    assert_eq!(launches(&cloud), 1, "never launched");
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

#[test]
fn a_destination_naming_a_recalled_ami_rolls_back_and_a_family_with_nothing_else_needs_a_person() {
    let d = doc(PUBLISH);
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        recalled(ami("ami-0000000000000000b", "web", 10), true),
        recalled(ami("ami-0000000000000000c", "db", 10), true),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    let param = work
        .iter()
        .find(|t| matches!(t.destination, Destination::Parameter(_)) && t.family == "web")
        .expect("web's parameter");
    assert_eq!(
        param.image.id, "ami-0000000000000000a",
        "the newest outside the recall"
    );
    assert_eq!(
        choose(param, Some("ami-0000000000000000b"), &images),
        Choice::Publish {
            previous: Some("ami-0000000000000000b".into())
        },
        "rolled back from the recalled AMI, though it is newer"
    );
    let unproven = vec![
        images[0].clone(),
        recalled(ami("ami-0000000000000000b", "web", 10), false),
    ];
    assert!(
        matches!(
            choose(param, Some("ami-0000000000000000b"), &unproven),
            Choice::Frozen(_)
        ),
        "a mark no seal proves holds the AMI at the gate, and moves no consumer back: a person decides"
    );

    let db = lines
        .iter()
        .find(|l| l.family.as_deref() == Some("db"))
        .expect("a line for db");
    assert_eq!(db.outcome, PublishOutcome::Refused);
    assert!(db
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("needs a person") || r.contains("a person")));
    assert!(
        work.iter().all(|t| t.family != "db"),
        "db's destinations keep what they name"
    );
}

#[test]
fn a_recall_falls_back_to_a_deprecated_ami_outside_it_and_only_to_replace_the_recalled_one() {
    let d = doc(PUBLISH);
    // age-out deprecated a when b replaced it; then b is recalled.
    let mut previous = ami("ami-0000000000000000a", "web", 0);
    previous.deprecation_time = Some(at(5));
    let images = vec![
        previous,
        recalled(ami("ami-0000000000000000b", "web", 10), true),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(
        lines.iter().all(|l| l.outcome != PublishOutcome::Refused),
        "{lines:?}"
    );
    let param = work
        .iter()
        .find(|t| matches!(t.destination, Destination::Parameter(_)))
        .expect("web's parameter");
    assert_eq!(param.image.id, "ami-0000000000000000a");
    assert_eq!(
        choose(param, Some("ami-0000000000000000b"), &images),
        Choice::Publish {
            previous: Some("ami-0000000000000000b".into())
        },
        "the way back from the recall"
    );
    assert!(
        matches!(choose(param, None, &images), Choice::Keep(_)),
        "a deprecated AMI is never published anywhere else"
    );
}

#[test]
fn a_recalled_ami_is_never_launch_tested_even_as_its_familys_newest() {
    let d = doc(VALIDATE);
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        recalled(ami("ami-0000000000000000b", "web", 10), true),
        recalled(ami("ami-0000000000000000d", "db", 5), false),
    ];
    let steps = plan(&images, &[], &HashMap::new(), &d, None, None, at(20));
    let launched = launched(&steps);
    assert!(
        !launched.contains(&"ami-0000000000000000b")
            && !launched.contains(&"ami-0000000000000000d"),
        "a recalled AMI, proven or not, is never tested: {launched:?}"
    );
    assert_eq!(
        launched,
        ["ami-0000000000000000a"],
        "the family's newest outside the recall is"
    );
}
