//! Runs over the fake account: retiring and announcing, protection, the Recycle Bin, savings.

use super::*;

/// Three AMIs of policy `web` (keep 1, max age 2 days) in us-east-1 of the fake account, all
/// older than that; returns the policy document.
pub(super) fn three_old_amis(cloud: &crate::tests::fakes::FakeCloud) -> PolicyDocument {
    let old = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let ec2 = cloud.region("us-east-1");
    let mut state = ec2.state();
    for n in 0..3 {
        let mut image = crate::tests::fakes::managed_image(
            &format!("ami-{n:017x}"),
            &format!("web-{n}"),
            "web",
        );
        image.created = Some(old + chrono::Duration::days(n));
        state.images.push(image);
    }
    crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1, "max_age_days": 2}}]}"#,
    )
}

#[tokio::test]
async fn a_run_over_the_fake_account_retires_and_announces_what_it_did() {
    use crate::tests::fakes::{context, FakeCloud, Recorder};
    let cloud = FakeCloud::default();
    let document = three_old_amis(&cloud);
    let recorder = Recorder::default();
    let request = crate::domain::trigger::RunRequest::default();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let report = crate::jobs::ageout::run(
        &context(&cloud, &document),
        &request,
        &[region],
        false,
        &recorder,
    )
    .await;
    assert!(report.complete, "{report:?}");
    let images = cloud.region("us-east-1").state().images.len();
    assert_eq!(images, 1, "keep_latest 1: two deregistered");
    let published = recorder
        .0
        .lock()
        .expect("events")
        .iter()
        .map(|e| e.detail_type.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        published
            .iter()
            .filter(|d| *d == "AMI Deregistered")
            .count(),
        2,
        "{published:?}"
    );
    assert_eq!(
        published.last().map(String::as_str),
        Some("Policy Run Completed")
    );
}

#[test]
fn protect_latest_turns_protection_on_for_the_newest_and_off_only_where_age_out_set_it() {
    let d = doc(r#"{"keep_latest": 2, "max_age_days": 90, "protect_latest": 2}"#);
    let ours = |id: &str, days| {
        let mut i = image(id, "a", days);
        i.deregistration_protection = true;
        i.tags.insert(
            crate::domain::tags::PROTECTED_BY.into(),
            crate::domain::tags::PROTECTED_BY_AGE_OUT.into(),
        );
        i
    };
    let mut second = image("second", "a", 5);
    second.deregistration_protection = true;
    let mut by_a_person = image("person", "a", 11);
    by_a_person.deregistration_protection = true;
    let mut failed = image("failed", "a", 0);
    failed.state = ImageState::Failed;
    let images = [
        failed,
        image("newest", "a", 1),
        second,
        ours("ours-old", 10),
        ours("ours-gone", 100),
        by_a_person,
    ];
    let p = run(&d, &images, &Usage::default());
    let kinds = |id: &str| -> Vec<ActionKind> {
        p.actions
            .iter()
            .filter(|a| a.image_id.as_deref() == Some(id))
            .map(|a| a.kind)
            .collect()
    };
    // A failed AMI is not among the newest: the newest two launchable ones are.
    assert_eq!(kinds("failed"), Vec::<ActionKind>::new());
    assert_eq!(kinds("newest"), vec![ActionKind::Protect]);
    assert_eq!(
        kinds("second"),
        Vec::<ActionKind>::new(),
        "already protected"
    );
    assert_eq!(kinds("ours-old"), vec![ActionKind::Unprotect]);
    // Still protected this run (and for EC2's cooldown): kept, unprotected, not deregistered.
    assert_eq!(kinds("ours-gone"), vec![ActionKind::Unprotect]);
    assert_eq!(
        kept_for(&p, "ours-gone"),
        Some(KeepReason::DeregistrationProtection)
    );
    assert_eq!(
        kinds("person"),
        Vec::<ActionKind>::new(),
        "a person's protection stays"
    );
    // Protection changes are not retirements: no reference check for them.
    assert!(!p.acted_images().contains(&"newest".to_string()));
}

#[test]
fn require_recoverable_deregisters_only_what_the_recycle_bin_keeps_with_its_snapshots() {
    use crate::domain::recycle_bin::{BinResource, RecycleBin, RetentionRule, RuleTag};
    let rule = |resource, days, tags: &[(&str, &str)], exclude: &[&str]| RetentionRule {
        id: format!("{resource:?}-{days}"),
        resource,
        days,
        tags: tags
            .iter()
            .map(|(k, v)| RuleTag {
                key: k.to_string(),
                value: Some(v.to_string()),
            })
            .collect(),
        exclude_tags: exclude
            .iter()
            .map(|k| RuleTag {
                key: k.to_string(),
                value: None,
            })
            .collect(),
        available: true,
        locked: days == 14,
    };
    let old = |id: &str, tag: Option<(&str, &str)>| {
        let mut i = image(id, "a", 200);
        if let Some((k, v)) = tag {
            i.tags.insert(k.into(), v.into());
        }
        i
    };
    let mut instance_store = old("instance-store", None);
    instance_store.root_device_type = Some("instance-store".into());
    let images = [
        image("n", "a", 1),
        old("covered", None),
        old("excluded", Some(("NoBin", "x"))),
        old("short-snapshots", Some(("Short", "yes"))),
        instance_store,
    ];
    let mut snapshots = snapshots_of(&images);
    for s in snapshots.iter_mut() {
        if s.id == "snap-short-snapshots" {
            s.tags.insert("Short".into(), "yes".into());
        }
    }
    let bin = RecycleBin {
        rules: vec![
            rule(BinResource::Image, 14, &[], &["NoBin"]),
            rule(BinResource::Snapshot, 30, &[], &["Short"]),
            rule(BinResource::Snapshot, 7, &[("Short", "yes")], &[]),
        ],
    };
    let plan_with = |retain: &str, bin: Option<&RecycleBin>| {
        plan(PlanInput {
            account_id: ME,
            images: &images,
            snapshots: &snapshots,
            usage: &Usage::default(),
            document: &doc(retain),
            policies: None,
            image_ids: None,
            as_of: now(),
            recycle_bin: bin,
        })
    };
    let strict = r#"{"keep_latest": 1, "max_age_days": 90, "require_recoverable": true}"#;
    let p = plan_with(strict, Some(&bin));
    assert_eq!(action_of(&p, "covered"), Some(ActionKind::Deregister));
    let covered = p
        .actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some("covered") && a.kind == ActionKind::Deregister)
        .and_then(|a| a.recovery.clone())
        .expect("recovery");
    assert!(covered.recoverable);
    assert_eq!(covered.until, Some(now() + Duration::days(14)));
    assert_eq!(
        (covered.image_days, covered.snapshot_days),
        (Some(14), Some(30))
    );
    assert_eq!(kept_for(&p, "excluded"), Some(KeepReason::NotRecoverable));
    // The Recycle Bin keeps only EBS-backed AMIs, whatever its rules say.
    assert_eq!(
        kept_for(&p, "instance-store"),
        Some(KeepReason::NotRecoverable)
    );
    // Its snapshot leaves the bin after 7 days, the AMI after 14: restorable for 7 days only.
    assert_eq!(
        kept_for(&p, "short-snapshots"),
        Some(KeepReason::NotRecoverable)
    );
    assert!(
        p.actions
            .iter()
            .all(|a| a.snapshot_id.as_deref() != Some("snap-excluded")),
        "a kept AMI keeps its snapshots"
    );
    // Rules that could not be read keep every deregistration of a strict policy.
    let p = plan_with(strict, None);
    assert_eq!(kept_for(&p, "covered"), Some(KeepReason::NotRecoverable));
    // Without require_recoverable the same AMIs go, each saying whether it can come back.
    let lax = r#"{"keep_latest": 1, "max_age_days": 90}"#;
    let p = plan_with(lax, Some(&bin));
    let recovery = |id: &str| {
        p.actions
            .iter()
            .find(|a| a.image_id.as_deref() == Some(id) && a.kind == ActionKind::Deregister)
            .and_then(|a| a.recovery.clone())
            .expect("a deregistration with its recovery")
    };
    assert!(recovery("covered").recoverable);
    assert!(!recovery("excluded").recoverable);
    assert_eq!(recovery("short-snapshots").snapshot_days, Some(7));
    let never = recovery("instance-store");
    assert!(!never.recoverable && never.until.is_none());
    assert!(never.why_not.is_some_and(|w| w.contains("EBS-backed")));
}

#[test]
fn savings_count_what_was_deleted_measured_or_estimated_per_family() {
    use crate::jobs::ageout::execute::{ActionReport, Outcome};
    use crate::jobs::ageout::savings::savings;
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let line = |family: Option<&str>, bytes: Option<u64>, estimated: bool, outcome: Outcome| {
        ActionReport {
            action: crate::jobs::ageout::plan::Action {
                kind: ActionKind::DeleteSnapshot,
                image_id: None,
                snapshot_id: Some("snap-1".into()),
                policy: "web".into(),
                family: family.map(String::from),
                reason: String::new(),
                retirement: None,
                recovery: None,
                bytes,
                bytes_estimated: estimated,
            },
            region: region.clone(),
            outcome,
            error_code: None,
            error: None,
        }
    };
    let gib = 1u64 << 30;
    let done = [
        line(
            Some("web-a"),
            Some(8 * gib),
            true,
            Outcome::DeletedWithImage,
        ),
        line(Some("web-a"), Some(2 * gib), false, Outcome::Done),
        line(None, Some(gib), false, Outcome::Done),
        line(Some("web-b"), None, false, Outcome::Done),
        line(Some("web-b"), Some(5 * gib), false, Outcome::Failed),
        line(Some("web-b"), Some(5 * gib), false, Outcome::Deferred),
    ];
    let s = savings(&done, false, 0.05);
    assert_eq!(
        s.bytes,
        11 * gib,
        "failed and deferred deletions free nothing"
    );
    assert_eq!(s.by_family.get("web-a"), Some(&(10 * gib)));
    assert_eq!(s.by_family.get("(orphans)"), Some(&gib));
    assert!(s.estimated, "one size is the volume's");
    assert_eq!(s.size_unknown, 1);
    assert_eq!(s.gib, 11.0);
    assert_eq!(s.monthly_usd, 0.55);
    // A dry run counts what it plans.
    let planned = [line(Some("web-a"), Some(3 * gib), false, Outcome::Planned)];
    let s = savings(&planned, true, 0.05);
    assert_eq!(
        (s.bytes, s.estimated, s.monthly_usd),
        (3 * gib, false, 0.15)
    );
}

#[tokio::test]
async fn a_shared_ami_a_usage_report_clears_is_still_checked_for_references() {
    use crate::tests::fakes::{context, FakeCloud, Recorder};
    let cloud = FakeCloud::default();
    let document = three_old_amis(&cloud);
    let ec2 = cloud.region("us-east-1");
    {
        let mut state = ec2.state();
        for n in 0..3 {
            let id = format!("ami-{n:017x}");
            // Shared with another account, and a fresh report says nobody there uses it.
            state.launch.insert(
                id.clone(),
                BTreeSet::from([crate::domain::grant::Grant::Account("210987654321".into())]),
            );
            let mut fresh = report("r", 0, ReportState::Available, &[]);
            fresh.created = Utc::now();
            state.usage_reports.insert(id.clone(), vec![fresh]);
            // An SSM parameter names every one of them.
            state.references.insert(
                id,
                BTreeSet::from(["arn:aws:ssm:us-east-1:1:parameter/golden".to_string()]),
            );
        }
    }
    let report = crate::jobs::ageout::run(
        &context(&cloud, &document),
        &crate::domain::trigger::RunRequest::default(),
        &["us-east-1".parse().expect("region")],
        false,
        &Recorder::default(),
    )
    .await;
    assert_eq!(ec2.state().images.len(), 3, "{report:?}");
    assert_eq!(report.kept_by_reason.get(&KeepReason::Referenced), Some(&2));
}
