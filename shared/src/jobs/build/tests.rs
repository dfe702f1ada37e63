//! The build's planner (tables and properties) and executor, against in-memory fakes.

use chrono::TimeZone;
use proptest::prelude::*;

use super::plan::*;
use super::*;
use crate::domain::deadline::Deadline;
use crate::domain::naming::check_image_name;
use crate::domain::tags;
use crate::domain::trigger::{InstanceStateChange, RunRequest, Trigger};
use crate::domain::Decision;
use crate::error::Error;
use crate::tests::fakes::{context, document, instance, FakeCloud};

const DOC: &str = r#"{"policies": [{"name": "web",
    "build": {"instance_tags": {"ami-automation:build": "web"}, "on_stop": true}}]}"#;

fn window() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0)
        .single()
        .expect("time")
}

use chrono::{DateTime, Utc};

fn region() -> Region {
    "us-east-1".parse().expect("region")
}

#[test]
fn only_ebs_instances_that_are_running_or_stopped_are_imaged() {
    let doc = document(DOC);
    let policy = &doc.policies[0];
    let tag = [("ami-automation:build", "web")];
    let table = [
        (
            instance("i-0000000000000001a", "running", "ebs", &tag),
            None,
        ),
        (
            instance("i-0000000000000002a", "stopped", "ebs", &tag),
            None,
        ),
        (
            instance("i-0000000000000003a", "running", "instance-store", &tag),
            Some("instance-store-backed"),
        ),
        (
            instance("i-0000000000000004a", "pending", "ebs", &tag),
            Some("is pending"),
        ),
        (
            instance("i-0000000000000005a", "stopping", "ebs", &tag),
            Some("only running or stopped"),
        ),
    ];
    for (i, refused) in table {
        match (create_order(policy, &i, window()), refused) {
            (Ok(order), None) => {
                assert_eq!(order.name, format!("web-{}-20261126T030000Z", i.id));
                assert_eq!(order.tags[tags::SOURCE_INSTANCE], i.id);
                assert_eq!(order.tags[tags::POLICY], "web");
                assert_eq!(order.tags[tags::CREATED_BY], FUNCTION);
            }
            (Err(why), Some(part)) => assert!(why.contains(part), "{}: {why}", i.id),
            (got, want) => panic!("{}: wanted {want:?}, got {got:?}", i.id),
        }
    }
}

#[test]
fn each_trigger_asks_for_its_work() {
    let doc = document(DOC);
    let home = region();
    let stop = |state: &str| Trigger::InstanceState {
        region: None,
        time: Some(window()),
        detail: InstanceStateChange {
            instance_id: "i-0123456789abcdef0".into(),
            state: state.into(),
        },
    };
    assert!(matches!(
        work(stop("stopped"), &home, 60, &doc),
        Ok(Decision::Act(Work::OnStop { ref region, .. })) if *region == home
    ));
    assert!(matches!(
        work(stop("running"), &home, 60, &doc),
        Ok(Decision::Ignore(ref why)) if why.contains("only `stopped` builds")
    ));
    let scheduled = Trigger::Scheduled {
        region: None,
        time: Some(window() + chrono::Duration::minutes(59)),
    };
    assert_eq!(
        work(scheduled, &home, 60, &doc).expect("work"),
        Decision::Act(Work::Sweep {
            regions: vec![home.clone()],
            policies: None,
            window: window(),
        }),
        "a schedule's names come from the start of its window"
    );
    let register = |policy: &str| {
        Trigger::parse(serde_json::json!({"register": {"snapshot_id": "snap-0123456789abcdef0", "policy": policy}}))
            .expect("a run request")
    };
    match work(register("nope"), &home, 60, &doc) {
        Err(Error::Event { path, .. }) => assert_eq!(path, "$.register.policy"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        work(register("web"), &home, 60, &doc),
        Ok(Decision::Act(Work::Register { .. }))
    ));
    let _ = RunRequest::default();
}

#[test]
fn a_state_change_is_announced_only_for_the_tools_own_amis() {
    let detail = |state: &str| crate::domain::trigger::AmiStateChange {
        image_id: "ami-0123456789abcdef0".into(),
        state: state.into(),
        error_message: None,
    };
    let built = BTreeMap::from([
        (tags::POLICY.to_string(), "web".to_string()),
        (tags::CREATED_BY.to_string(), FUNCTION.to_string()),
    ]);
    let foreign = BTreeMap::new();
    let table = [
        ("failed", Some(&built), Some("AMI Build Failed")),
        ("available", Some(&built), Some("AMI Available")),
        ("failed", Some(&foreign), None),
        ("available", Some(&foreign), None),
        ("available", None, None),
        ("pending", Some(&built), None),
    ];
    for (state, found, announced) in table {
        let got = match announce(&region(), &detail(state), found) {
            Decision::Act(e) => Some(e.detail_type),
            Decision::Ignore(_) => None,
        };
        assert_eq!(got.as_deref(), announced, "{state} {found:?}");
    }
}

use std::collections::BTreeMap;

#[test]
fn a_snapshot_registers_only_when_its_tags_name_a_policy_of_the_document() {
    let doc = document(DOC);
    let id = "snap-0123456789abcdef0";
    let with = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(matches!(
        register_from_tags(id, &with(&[]), &doc),
        Decision::Ignore(_)
    ));
    assert!(matches!(
        register_from_tags(id, &with(&[(tags::REGISTER, "other")]), &doc),
        Decision::Ignore(_)
    ));
    assert!(matches!(
        register_from_tags(id, &with(&[(tags::REGISTER, "web"), (tags::ARCHITECTURE, "sparc")]), &doc),
        Decision::Ignore(ref why) if why.contains("sparc")
    ));
    match register_from_tags(
        id,
        &with(&[
            (tags::REGISTER, "web"),
            (tags::ARCHITECTURE, "arm64"),
            (tags::ROOT_DEVICE_NAME, "/dev/sda1"),
        ]),
        &doc,
    ) {
        Decision::Act(r) => {
            assert_eq!(
                (r.policy.as_str(), r.architecture.as_str()),
                ("web", "arm64")
            );
            assert_eq!(r.root_device_name, "/dev/sda1");
        }
        other => panic!("{other:?}"),
    }
    let states = [
        (None, false),
        (Some("pending"), false),
        (Some("error"), false),
        (Some("completed"), true),
    ];
    for (state, ok) in states {
        assert_eq!(check_snapshot(id, state).is_ok(), ok, "{state:?}");
    }
}

proptest! {
    /// Safety of the build: an order is made only for an EBS-backed running or stopped
    /// instance, under a name EC2 accepts, with the tags every other job relies on, and the
    /// same instance and window always make the same name (a re-delivery creates nothing).
    #[test]
    fn orders_are_safe_and_deterministic(
        hex in "[0-9a-f]{17}",
        state in prop::sample::select(vec!["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]),
        root in prop::sample::select(vec!["ebs", "instance-store"]),
        minutes in 0i64..100_000,
        template in prop::sample::select(vec!["{policy}-{instance_id}-{timestamp}", "{policy} {date}", "x{instance_id}", "{policy}:{date}", "{nope}"]),
    ) {
        let doc = document(r#"{"policies": [{"name": "web",
            "build": {"instance_tags": {"b": "1"}, "name_template": "{policy}-{instance_id}"}}]}"#);
        let mut policy = doc.policies[0].clone();
        if let Some(b) = policy.build.as_mut() { b.name_template = template.to_string(); }
        let i = instance(&format!("i-{hex}"), state, root, &[("b", "1")]);
        let at = window() + chrono::Duration::minutes(minutes);
        match create_order(&policy, &i, at) {
            Ok(order) => {
                prop_assert!(matches!(state, "running" | "stopped"));
                prop_assert_eq!(root, "ebs");
                prop_assert!(check_image_name(&order.name).is_ok());
                prop_assert_eq!(&order.tags[tags::POLICY], "web");
                prop_assert_eq!(&order.tags[tags::SOURCE_INSTANCE], &i.id);
                prop_assert_eq!(create_order(&policy, &i, at), Ok(order));
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }
}

fn seeded() -> FakeCloud {
    let cloud = FakeCloud::default();
    let ec2 = cloud.region("us-east-1");
    let tag = [("ami-automation:build", "web")];
    ec2.state().instances = vec![
        instance("i-0000000000000001a", "running", "ebs", &tag),
        instance("i-0000000000000002a", "stopped", "ebs", &tag),
        instance("i-0000000000000003a", "running", "ebs", &[]),
    ];
    cloud
}

fn sweep() -> Work {
    Work::Sweep {
        regions: vec![region()],
        policies: None,
        window: window(),
    }
}

fn outcomes(ran: &Ran) -> Vec<BuildOutcome> {
    ran.results.iter().map(|r| r.outcome).collect()
}

#[tokio::test]
async fn a_sweep_images_the_selected_instances_once_and_a_redelivery_finds_them() {
    let cloud = seeded();
    let doc = document(DOC);
    let ctx = context(&cloud, &doc);
    let first = run(&ctx, sweep(), false).await.expect("run");
    assert_eq!(
        outcomes(&first),
        [BuildOutcome::Created, BuildOutcome::Created]
    );
    assert_eq!(first.events.len(), 2, "{:?}", first.events);
    let again = run(&ctx, sweep(), false).await.expect("run");
    assert_eq!(
        outcomes(&again),
        [BuildOutcome::Exists, BuildOutcome::Exists]
    );
    assert_eq!(
        again
            .results
            .iter()
            .map(|r| r.image_id.clone())
            .collect::<Vec<_>>(),
        first
            .results
            .iter()
            .map(|r| r.image_id.clone())
            .collect::<Vec<_>>(),
        "the re-delivery names the AMIs the first delivery made"
    );
    assert!(again.events.is_empty());
    let creates = cloud.region("us-east-1").state().changes.len();
    assert_eq!(creates, 2, "no second CreateImage");
}

#[tokio::test]
async fn throttling_defers_a_refusal_fails_and_a_dry_run_changes_nothing() {
    let doc = document(DOC);
    let table = [
        (Some("RequestLimitExceeded"), false, BuildOutcome::Deferred),
        (Some("InternalError"), false, BuildOutcome::Deferred),
        (Some("UnauthorizedOperation"), false, BuildOutcome::Failed),
        (None, true, BuildOutcome::Planned),
    ];
    for (code, dry_run, want) in table {
        let cloud = seeded();
        if let Some(code) = code {
            cloud.region("us-east-1").fail("CreateImage", code);
        }
        let ran = run(&context(&cloud, &doc), sweep(), dry_run)
            .await
            .expect("run");
        assert_eq!(outcomes(&ran), [want, want], "{code:?}");
        assert!(ran.events.is_empty());
        assert!(cloud.region("us-east-1").state().changes.is_empty());
        let failed = ran.results.iter().any(crate::jobs::Line::failed);
        assert_eq!(failed, want == BuildOutcome::Failed, "{code:?}");
    }
}

#[tokio::test]
async fn past_the_deadline_nothing_starts() {
    let cloud = seeded();
    let doc = document(DOC);
    let mut ctx = context(&cloud, &doc);
    ctx.deadline = Deadline::passed_already();
    let ran = run(&ctx, sweep(), false).await.expect("run");
    assert_eq!(
        outcomes(&ran),
        [BuildOutcome::Deferred, BuildOutcome::Deferred]
    );
    assert!(cloud.region("us-east-1").state().changes.is_empty());
}

#[tokio::test]
async fn a_snapshot_is_registered_only_once_it_is_completed() {
    let doc = document(DOC);
    for (state, want) in [
        ("pending", BuildOutcome::Refused),
        ("completed", BuildOutcome::Created),
    ] {
        let cloud = FakeCloud::default();
        let snapshot = crate::domain::model::Snapshot {
            id: "snap-0123456789abcdef0".into(),
            owner_id: "111122223333".into(),
            for_an_image: false,
            started: None,
            tags: Default::default(),
            size: Default::default(),
        };
        cloud.region("us-east-1").state().snapshots = vec![(snapshot, state.into())];
        let request = match Trigger::parse(
            serde_json::json!({"register": {"snapshot_id": "snap-0123456789abcdef0", "policy": "web"}}),
        ) {
            Ok(Trigger::Run(r)) => r.register.expect("register"),
            other => panic!("{other:?}"),
        };
        let ran = run(
            &context(&cloud, &doc),
            Work::Register {
                region: region(),
                request,
            },
            false,
        )
        .await
        .expect("run");
        assert_eq!(outcomes(&ran), [want], "{state}");
        assert_eq!(
            ran.results[0].name.as_deref(),
            Some("web-snap-0123456789abcdef0")
        );
    }
}
