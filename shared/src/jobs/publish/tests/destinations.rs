//! Publishing: SSM parameters and launch templates, rollback pins, what is refused.

use super::*;

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
    crate::jobs::publish::targets::missing_templates(&mut lines, &both);
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
    crate::jobs::publish::targets::missing_templates(&mut lines, &both);
    assert_eq!(lines[1].outcome, PublishOutcome::Skipped);
    // A region where the family had nothing to publish was not searched: it may hold it (the
    // template's region while its copy is on its way).
    let mut lines = vec![template_line("us-east-1", false)];
    crate::jobs::publish::targets::missing_templates(&mut lines, &both);
    assert_eq!(lines[0].outcome, PublishOutcome::Skipped);
    // A region that could not be read may hold it: nothing is concluded.
    let mut lines = vec![
        template_line("eu-west-1", false),
        crate::jobs::publish::PublishResult::new(
            Stage::Publish,
            "",
            &"us-east-1".parse().expect("region"),
            "",
        )
        .with(PublishOutcome::Deferred, "throttled".to_string()),
    ];
    crate::jobs::publish::targets::missing_templates(&mut lines, &both);
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
