//! What the stack proves it made: sealed verdicts, pins and test instances.

use super::*;

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
