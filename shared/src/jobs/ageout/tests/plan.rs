//! The planner's rules, table by table: stages, what keeps an image, snapshots, evidence gaps.

use super::*;

#[test]
fn each_age_maps_to_its_stage() {
    let d = doc(STAGES);
    let images = [
        image("new", "a", 100),
        image("y", "a", 10),
        image("dep", "a", 31),
        image("dis", "a", 61),
        image("old", "a", 91),
    ];
    let p = run(&d, &images, &Usage::default());
    let table = [
        ("y", None, Some(KeepReason::KeepLatest)),
        ("dep", Some(ActionKind::Deprecate), None),
        ("dis", Some(ActionKind::Disable), None),
        ("old", Some(ActionKind::Deregister), None),
        ("new", Some(ActionKind::Deregister), None),
    ];
    for (id, action, kept) in table {
        assert_eq!(action_of(&p, id), action, "{id}");
        assert_eq!(kept_for(&p, id), kept, "{id}");
    }
}

#[test]
fn what_keeps_an_old_image_is_reported_with_its_reason() {
    let d = doc(STAGES);
    let mut images = vec![image("newest", "a", 1)];
    let mut usage = Usage::default();
    let mut add = |id: &str, f: &dyn Fn(&mut Image)| {
        let mut i = image(id, "a", 200);
        f(&mut i);
        images.push(i);
    };
    add("instance", &|_| {});
    add("template", &|_| {});
    add("referenced", &|_| {});
    add("protected", &|i| {
        i.tags.insert("Retain".into(), "true".into());
    });
    add("decoy", &|i| {
        i.tags.insert("Retain".into(), "false".into());
    });
    add("dereg-protected", &|i| i.deregistration_protection = true);
    add("pending", &|i| i.state = ImageState::Pending);
    usage
        .instances
        .insert("instance".into(), BTreeSet::from(["i-1".to_string()]));
    usage.launch_templates.insert(
        "template".into(),
        vec![TemplateUse {
            template_id: "lt-1".into(),
            version: 1,
            is_default: false,
            newer_versions: 5,
        }],
    );
    usage.references.insert(
        "referenced".into(),
        BTreeSet::from(["arn:aws:ssm:p".to_string()]),
    );
    let p = run(&d, &images, &usage);
    let table = [
        ("newest", KeepReason::KeepLatest),
        ("instance", KeepReason::InUseByInstance),
        ("template", KeepReason::InUseByLaunchTemplate),
        ("referenced", KeepReason::Referenced),
        ("protected", KeepReason::ProtectTag),
        ("dereg-protected", KeepReason::DeregistrationProtection),
        ("pending", KeepReason::NotSettled),
    ];
    for (id, reason) in table {
        assert_eq!(kept_for(&p, id), Some(reason), "{id}");
        assert_eq!(action_of(&p, id), None, "{id}");
    }
    assert_eq!(
        action_of(&p, "decoy"),
        Some(ActionKind::Deregister),
        "Retain=false does not protect"
    );
}

#[test]
fn launch_template_depth_decides_which_versions_count() {
    let old = TemplateUse {
        template_id: "lt-1".into(),
        version: 1,
        is_default: false,
        newer_versions: 3,
    };
    let mut usage = Usage::default();
    usage.launch_templates.insert("a".into(), vec![old]);
    let images = [image("n", "f", 1), image("a", "f", 200)];
    for (depth, kept) in [
        (r#""all""#, true),
        (r#""default-and-latest""#, false),
        ("3", false),
        ("4", true),
    ] {
        let d = doc(&format!(
            r#"{{"keep_latest": 1, "max_age_days": 90, "in_use": {{"launch_template_versions": {depth}}}}}"#
        ));
        let p = run(&d, &images, &usage);
        assert_eq!(
            kept_for(&p, "a") == Some(KeepReason::InUseByLaunchTemplate),
            kept,
            "depth {depth}"
        );
    }
}

#[test]
fn a_snapshot_another_ami_uses_is_kept_and_orphans_are_found() {
    let d = doc(r#"{"keep_latest": 1, "max_age_days": 90, "delete_orphan_snapshots": true}"#);
    let mut old = image("old", "a", 200);
    let mut keeper = image("keeper", "b", 1);
    old.snapshot_ids = vec!["snap-shared".into(), "snap-own".into()];
    keeper.snapshot_ids = vec!["snap-shared".into()];
    let images = vec![image("newest-a", "a", 1), old, keeper];
    let mut snapshots = snapshots_of(&images);
    snapshots.dedup_by(|a, b| a.id == b.id);
    snapshots.push(Snapshot {
        id: "snap-orphan".into(),
        owner_id: ME.into(),
        for_an_image: true,
        started: Some(now() - Duration::days(100)),
        tags: [("Family".to_string(), "a".to_string())].into(),
        size: Default::default(),
    });
    let p = run_with(&d, &images, &snapshots, &Usage::default());
    let deleted = deleted_snapshots(&p);
    assert_eq!(deleted, BTreeSet::from(["snap-own", "snap-orphan"]));
    assert!(p
        .snapshots_kept
        .iter()
        .any(|s| s.snapshot_id == "snap-shared" && s.reason.contains("keeper")));
    assert_eq!(p.orphans.len(), 1);
}

#[test]
fn only_owned_unused_snapshots_made_for_an_ami_of_a_deleting_policy_are_orphans_deleted() {
    let json = r#"{"policies": [
        {"name": "web", "select": {"tags": {"Family": "*"}}, "family_by": "tag:Family",
         "retain": {"keep_latest": 1, "max_age_days": 90, "delete_orphan_snapshots": true}},
        {"name": "keep", "select": {"tags": {"Team": "*"}},
         "retain": {"keep_latest": 1, "max_age_days": 90}}]}"#;
    let d = PolicyDocument::parse(json, Deployment::default()).expect("policy");
    let images = vec![image("newest", "a", 1)];
    let snap = |id: &str, owner: &str, description: &str, tags: &[(&str, &str)]| Snapshot {
        id: id.into(),
        owner_id: owner.into(),
        for_an_image: Snapshot::made_by_ec2_for_an_image(description),
        started: Some(now() - Duration::days(200)),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        size: Default::default(),
    };
    let made = "Created by CreateImage(i-9) for ami-gone";
    let mut snapshots = snapshots_of(&images);
    snapshots.extend([
        snap("snap-orphan", ME, made, &[("Family", "a")]),
        snap(
            "snap-tagged",
            ME,
            made,
            &[(crate::domain::tags::POLICY, "web")],
        ),
        snap("snap-foreign", OTHER, made, &[("Family", "a")]),
        snap("snap-by-hand", ME, "my backup", &[("Family", "a")]),
        snap("snap-used", ME, made, &[("Family", "a")]),
        snap(
            "snap-other-policy",
            ME,
            made,
            &[(crate::domain::tags::POLICY, "keep")],
        ),
        snap("snap-other-tags", ME, made, &[("Team", "x")]),
    ]);
    let mut images = images;
    let mut user = image("user", "b", 1);
    user.snapshot_ids = vec!["snap-used".into()];
    images.push(user);
    let p = run_with(&d, &images, &snapshots, &Usage::default());
    let deleted = deleted_snapshots(&p);
    assert_eq!(deleted, BTreeSet::from(["snap-orphan", "snap-tagged"]));
    let orphans: BTreeMap<&str, (&str, bool)> = p
        .orphans
        .iter()
        .map(|o| (o.snapshot_id.as_str(), (o.policy.as_str(), o.deleted)))
        .collect();
    assert_eq!(
        orphans,
        BTreeMap::from([
            ("snap-orphan", ("web", true)),
            ("snap-tagged", ("web", true)),
            ("snap-other-policy", ("keep", false)),
            ("snap-other-tags", ("keep", false)),
        ]),
        "foreign, hand-made and used snapshots are no orphans; another policy's are only reported"
    );
}

#[test]
fn a_snapshot_two_deregistered_amis_share_is_deleted_once() {
    let d = doc(r#"{"keep_latest": 1, "max_age_days": 90}"#);
    let mut x = image("x", "a", 200);
    let mut y = image("y", "a", 300);
    x.snapshot_ids = vec!["snap-both".into()];
    y.snapshot_ids = vec!["snap-both".into()];
    let images = vec![image("n", "a", 1), x, y];
    let p = run(&d, &images, &Usage::default());
    let deletes: Vec<&str> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::DeleteSnapshot)
        .filter_map(|a| a.snapshot_id.as_deref())
        .collect();
    assert_eq!(deletes, vec!["snap-both"]);
}

#[test]
fn the_images_a_plan_acts_on_are_the_ones_checked_for_references() {
    let d = doc(STAGES);
    let images = [
        image("n", "a", 1),
        image("dep", "a", 31),
        image("dis", "a", 61),
        image("old", "a", 91),
    ];
    let p = run(&d, &images, &Usage::default());
    let mut acted = p.acted_images();
    acted.sort();
    assert_eq!(
        acted,
        vec!["dep", "dis", "old"],
        "snapshot deletions are not images"
    );
}

#[test]
fn an_image_tagged_for_a_policy_belongs_to_that_policy_only() {
    let json = r#"{"policies": [
        {"name": "web", "select": {"tags": {"Family": "*"}}, "family_by": "tag:Family", "retain": {"keep_latest": 1, "max_age_days": 90}},
        {"name": "other", "retain": {"keep_latest": 5}}]}"#;
    let d = PolicyDocument::parse(json, Deployment::default()).expect("policy");
    let mut theirs = image("theirs", "a", 300);
    theirs
        .tags
        .insert(crate::domain::tags::POLICY.into(), "other".into());
    // Selected by nothing but the policy tag (no Family tag: its family is its name prefix).
    let tagged = |id: &str, name: &str, days: i64| {
        let mut i = Image::new(id, name, ME, now() - Duration::days(days));
        i.tags
            .insert(crate::domain::tags::POLICY.into(), "web".into());
        i.shared = Some(false);
        i
    };
    let images = [
        image("n", "a", 1),
        theirs,
        tagged("mine-new", "mine-20261201", 30),
        tagged("mine", "mine-20260101", 300),
    ];
    let p = run(&d, &images, &Usage::default());
    assert_eq!(
        action_of(&p, "theirs"),
        None,
        "tagged for `other`: not web's"
    );
    assert_eq!(kept_for(&p, "theirs"), Some(KeepReason::KeepLatest));
    assert_eq!(
        action_of(&p, "mine"),
        Some(ActionKind::Deregister),
        "tagged for web"
    );
}

#[test]
fn which_launch_template_versions_count_at_each_depth() {
    use crate::domain::policy::TemplateDepth::*;
    let at = |is_default: bool, newer: i64| TemplateUse {
        template_id: "lt-1".into(),
        version: 1,
        is_default,
        newer_versions: newer,
    };
    // (is $Default, newer versions) → counts at default-and-latest, newest 2, all.
    let table = [
        ((true, 5), [true, true, true]),
        ((false, 0), [true, true, true]),
        ((false, 1), [false, true, true]),
        ((false, 2), [false, false, true]),
        ((true, 0), [true, true, true]),
    ];
    for ((is_default, newer), want) in table {
        let t = at(is_default, newer);
        let got = [
            t.counts_at(DefaultAndLatest),
            t.counts_at(Newest(2)),
            t.counts_at(All),
        ];
        assert_eq!(got, want, "$Default {is_default}, {newer} newer");
    }
}

#[test]
fn foreign_images_are_never_acted_on() {
    let d = doc(STAGES);
    let mut foreign = image("foreign", "a", 500);
    foreign.owner_id = OTHER.into();
    let images = [image("n", "a", 1), foreign];
    let p = run(&d, &images, &Usage::default());
    assert_eq!(kept_for(&p, "foreign"), Some(KeepReason::NotOwned));
    assert!(p
        .actions
        .iter()
        .all(|a| a.image_id.as_deref() != Some("foreign")));
}

#[test]
fn shared_and_recently_launched_images_are_kept_when_the_policy_says_so() {
    let d = doc(
        r#"{"keep_latest": 1, "max_age_days": 90, "exclude_shared": true, "exclude_launched_within_days": 7}"#,
    );
    let mut shared = image("shared", "a", 200);
    shared.shared = Some(true);
    let mut launched = image("launched", "a", 200);
    launched.last_launched = Some(now() - Duration::days(2));
    let mut public = image("public", "a", 200);
    public.public = true;
    let p = run(
        &d,
        &[image("n", "a", 1), shared, launched, public],
        &Usage::default(),
    );
    assert_eq!(kept_for(&p, "shared"), Some(KeepReason::Shared));
    assert_eq!(kept_for(&p, "public"), Some(KeepReason::Shared));
    assert_eq!(kept_for(&p, "launched"), Some(KeepReason::RecentlyLaunched));
}

#[test]
fn stages_already_reached_are_not_planned_again() {
    let d = doc(STAGES);
    let mut deprecated = image("deprecated", "a", 40);
    deprecated.deprecation_time = Some(now() - Duration::days(1));
    let mut disabled = image("disabled", "a", 70);
    disabled.state = ImageState::Disabled;
    let p = run(
        &d,
        &[image("n", "a", 1), deprecated, disabled],
        &Usage::default(),
    );
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn a_failed_evidence_call_keeps_the_images_it_covers_from_disable_and_deregister_but_not_deprecation(
) {
    let d = doc(STAGES);
    let images = [
        image("n", "a", 1),
        image("dep", "a", 31),
        image("dis", "a", 61),
        image("old", "a", 91),
        image("other", "b", 91),
        image("newest-b", "b", 1),
    ];
    let gap = |images: Option<&[&str]>| EvidenceGap {
        call: "DescribeInstances".into(),
        code: Some("UnauthorizedOperation".into()),
        error: "denied".into(),
        transient: false,
        images: images.map(|ids| ids.iter().map(|s| s.to_string()).collect()),
    };
    // A scan that covers every image (DescribeInstances, launch templates) failed.
    let usage = Usage {
        gaps: vec![gap(None)],
        ..Usage::default()
    };
    let p = run(&d, &images, &usage);
    assert_eq!(action_of(&p, "dep"), Some(ActionKind::Deprecate));
    for id in ["dis", "old", "other"] {
        assert_eq!(action_of(&p, id), None, "{id}");
        assert_eq!(kept_for(&p, id), Some(KeepReason::UsageUnknown), "{id}");
    }
    assert!(p
        .actions
        .iter()
        .all(|a| a.kind != ActionKind::DeleteSnapshot));
    // A DescribeImageReferences batch failed: only its images are kept.
    let usage = Usage {
        gaps: vec![gap(Some(&["old"]))],
        ..Usage::default()
    };
    let p = run(&d, &images, &usage);
    assert_eq!(kept_for(&p, "old"), Some(KeepReason::UsageUnknown));
    assert_eq!(action_of(&p, "other"), Some(ActionKind::Deregister));
    assert_eq!(action_of(&p, "dis"), Some(ActionKind::Disable));
}

#[test]
fn keep_latest_ranks_only_launchable_amis() {
    let d = doc(r#"{"keep_latest": 1, "max_age_days": 30}"#);
    let mut pending = image("pending", "a", 1);
    pending.state = ImageState::Pending;
    let mut failed = image("failed", "a", 2);
    failed.state = ImageState::Failed;
    let mut disabled = image("disabled", "a", 3);
    disabled.state = ImageState::Disabled;
    let images = [
        pending,
        failed,
        disabled,
        image("good", "a", 40),
        image("older", "a", 50),
    ];
    let p = run(&d, &images, &Usage::default());
    assert_eq!(kept_for(&p, "good"), Some(KeepReason::KeepLatest));
    assert_eq!(action_of(&p, "good"), None);
    assert_eq!(action_of(&p, "older"), Some(ActionKind::Deregister));
    assert_eq!(kept_for(&p, "pending"), Some(KeepReason::NotSettled));
    assert_eq!(kept_for(&p, "failed"), Some(KeepReason::NotSettled));
}

#[test]
fn a_deprecation_already_scheduled_is_not_planned_again() {
    let d = doc(STAGES);
    // An earlier run (or a re-delivered schedule) set the deprecation a minute ahead.
    let mut scheduled = image("scheduled", "a", 40);
    scheduled.deprecation_time = Some(now() + Duration::minutes(1));
    let p = run(&d, &[image("n", "a", 1), scheduled], &Usage::default());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(kept_for(&p, "scheduled"), Some(KeepReason::WithinRetention));
}

#[test]
fn a_policy_that_shares_does_not_disable_its_shared_amis_unless_it_opts_out() {
    let mut shared = image("shared", "a", 70);
    shared.shared = Some(true);
    shared.deprecation_time = Some(now() - Duration::days(10));
    let mut private = image("private", "a", 70);
    private.shared = Some(false);
    let mut unknown = image("unknown", "a", 70);
    unknown.shared = None;
    let mut old_shared = image("old-shared", "a", 100);
    old_shared.shared = Some(true);
    old_shared.deprecation_time = Some(now() - Duration::days(10));
    let images = [image("n", "a", 1), shared, private, unknown, old_shared];
    // A fresh usage report says no other account uses the old shared AMI.
    let mut usage = Usage::default();
    usage.consumer_reports.insert(
        "old-shared".into(),
        vec![report("r1", 2, ReportState::Available, &[])],
    );
    let p = run(&sharing_doc(""), &images, &usage);
    assert_eq!(kept_for(&p, "shared"), Some(KeepReason::Shared));
    assert_eq!(action_of(&p, "private"), Some(ActionKind::Disable));
    // Unknown share state keeps it, and asks for exactly that image's share state.
    assert_eq!(kept_for(&p, "unknown"), Some(KeepReason::Shared));
    assert_eq!(p.share_state_needed, vec!["unknown".to_string()]);
    // Deregistration is not DisableImage: a shared AMI past max_age_days still goes.
    assert_eq!(action_of(&p, "old-shared"), Some(ActionKind::Deregister));

    let mut usage = Usage::default();
    usage.consumer_reports.insert(
        "shared".into(),
        vec![report("r2", 2, ReportState::Available, &[])],
    );
    let p = run(
        &sharing_doc(r#", "disable_shared_images": true"#),
        &images,
        &usage,
    );
    assert_eq!(action_of(&p, "shared"), Some(ActionKind::Disable));
    assert!(!p.share_state_needed.contains(&"shared".to_string()));
}

/// A usage report made `hours` ago; `users`: (account, resource type, count).
#[test]
fn an_image_belongs_to_the_first_policy_that_selects_it_and_unselected_images_are_ignored() {
    let json = r#"{"policies": [
        {"name": "first", "select": {"name_pattern": "web-*"}, "retain": {"keep_latest": 5}},
        {"name": "second", "select": {"tags": {"Family": "*"}}, "retain": {"keep_latest": 1, "max_age_days": 1}}]}"#;
    let d = PolicyDocument::parse(json, Deployment::default()).expect("policy");
    let mut stray = Image::new("stray", "stray", ME, now() - Duration::days(900));
    stray.snapshot_ids = vec!["snap-stray".into()];
    let images = [image("x", "web", 100), image("y", "web", 200), stray];
    let p = run(&d, &images, &Usage::default());
    assert!(
        p.actions.is_empty(),
        "policy `first` keeps 5: {:?}",
        p.actions
    );
    assert!(p.kept.iter().all(|k| k.policy == "first"));
    assert!(
        p.kept.iter().all(|k| k.image_id != "stray"),
        "an image no policy selects is not even reported"
    );
}
