//! The launch test: verdicts, timeouts, what is launched and terminated, its bounds.

use super::*;

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
