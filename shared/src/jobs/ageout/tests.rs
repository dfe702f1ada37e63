//! The planner: table-driven cases and property tests of the safety rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::plan::{plan, ActionKind, KeepReason, Plan, PlanInput};
use crate::domain::model::{
    EvidenceGap, Image, ImageState, ReportState, Snapshot, TemplateUse, Usage, UsageReport,
};
use crate::domain::policy::{Deployment, PolicyDocument};

const ME: &str = "111111111111";
const OTHER: &str = "222222222222";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .expect("date")
}

fn doc(retain: &str) -> PolicyDocument {
    let json = format!(
        r#"{{"policies": [{{"name": "web", "select": {{"tags": {{"Family": "*"}}}}, "family_by": "tag:Family", "retain": {retain}}}]}}"#
    );
    PolicyDocument::parse(&json, Deployment::default()).expect("policy")
}

fn image(id: &str, family: &str, days: i64) -> Image {
    let mut i = Image::new(
        id,
        &format!("{family}-{id}"),
        ME,
        now() - Duration::days(days),
    );
    i.tags.insert("Family".into(), family.into());
    i.snapshot_ids = vec![format!("snap-{id}")];
    // Private unless a test says otherwise (the scan leaves it unknown until looked up).
    i.shared = Some(false);
    i
}

fn snapshots_of(images: &[Image]) -> Vec<Snapshot> {
    images
        .iter()
        .flat_map(|i| i.snapshot_ids.iter().map(move |s| (s, i)))
        .map(|(s, i)| Snapshot {
            id: s.clone(),
            owner_id: i.owner_id.clone(),
            for_an_image: true,
            started: i.created,
            tags: Default::default(),
            size: Default::default(),
        })
        .collect()
}

fn run(document: &PolicyDocument, images: &[Image], usage: &Usage) -> Plan {
    run_with(document, images, &snapshots_of(images), usage)
}

fn run_with(
    document: &PolicyDocument,
    images: &[Image],
    snapshots: &[Snapshot],
    usage: &Usage,
) -> Plan {
    plan(PlanInput {
        account_id: ME,
        images,
        snapshots,
        usage,
        document,
        policies: None,
        image_ids: None,
        as_of: now(),
        recycle_bin: None,
    })
}

fn action_of(p: &Plan, id: &str) -> Option<ActionKind> {
    p.actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some(id) && a.kind != ActionKind::DeleteSnapshot)
        .map(|a| a.kind)
}

fn deleted_snapshots(p: &Plan) -> BTreeSet<&str> {
    p.actions
        .iter()
        .filter(|a| a.kind == ActionKind::DeleteSnapshot)
        .filter_map(|a| a.snapshot_id.as_deref())
        .collect()
}

fn kept_for(p: &Plan, id: &str) -> Option<KeepReason> {
    p.kept.iter().find(|k| k.image_id == id).map(|k| k.reason)
}

const STAGES: &str = r#"{"keep_latest": 1, "deprecate_after_days": 30, "disable_after_days": 60, "max_age_days": 90, "protect_tags": {"Retain": "true"}}"#;

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

fn sharing_doc(extra: &str) -> PolicyDocument {
    let json = format!(
        r#"{{"policies": [{{"name": "web", "select": {{"tags": {{"Family": "*"}}}}, "family_by": "tag:Family",
            "share": {{"accounts": ["210987654321"]}},
            "retain": {{"keep_latest": 1, "disable_after_days": 60, "max_age_days": 90{extra}}}}}]}}"#
    );
    PolicyDocument::parse(&json, Deployment::default()).expect("policy")
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
fn report(id: &str, hours: i64, state: ReportState, users: &[(&str, &str, u64)]) -> UsageReport {
    let mut accounts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (account, kind, n) in users {
        accounts
            .entry(account.to_string())
            .or_default()
            .insert(kind.to_string(), *n);
    }
    UsageReport {
        report_id: id.into(),
        state,
        created: now() - Duration::hours(hours),
        accounts,
        all_accounts: true,
        resource_types: BTreeMap::from([
            ("ec2:Instance".to_string(), None),
            ("ec2:LaunchTemplate".to_string(), Some(10_000)),
            ("imagebuilder:ImageRecipe".to_string(), None),
            ("imagebuilder:ContainerRecipe".to_string(), None),
        ]),
    }
}

#[test]
fn a_shared_ami_is_retired_only_when_a_fresh_usage_report_shows_no_other_account_uses_it() {
    let document = doc(r#"{"keep_latest": 1, "max_age_days": 90, "deprecate_after_days": 30}"#);
    let not_deprecated = |mut i: Image| {
        i.deprecation_time = None;
        i
    };
    // Deprecated ten days ago: the notice to the accounts that use them.
    let shared = |id: &str, days| {
        let mut i = image(id, "a", days);
        i.shared = Some(true);
        i.deprecation_time = Some(now() - Duration::days(10));
        i
    };
    let mut unknown = image("unknown", "a", 200);
    unknown.shared = None;
    let mut public = image("public", "a", 200);
    public.public = true;
    public.deprecation_time = Some(now() - Duration::days(10));
    let images = [
        image("n", "a", 1),
        shared("used", 200),
        shared("clear", 200),
        shared("own-use-only", 200),
        shared("stale", 200),
        shared("pending", 200),
        shared("failed", 200),
        shared("none", 200),
        shared("unread", 200),
        shared("partial", 200),
        not_deprecated(shared("deprecate-only", 40)),
        unknown,
        public,
    ];
    let mut usage = Usage::default();
    let mut put = |id: &str, reports: Vec<UsageReport>| {
        usage.consumer_reports.insert(id.into(), reports);
    };
    put(
        "used",
        vec![report(
            "r-used",
            3,
            ReportState::Available,
            &[
                ("210987654321", "ec2:Instance", 2),
                ("310987654321", "ec2:LaunchTemplate", 0),
            ],
        )],
    );
    put(
        "clear",
        vec![report(
            "r-clear",
            3,
            ReportState::Available,
            &[("210987654321", "ec2:Instance", 0)],
        )],
    );
    put(
        "own-use-only",
        vec![report(
            "r-own",
            3,
            ReportState::Available,
            &[(ME, "ec2:Instance", 4)],
        )],
    );
    put(
        "stale",
        vec![report("r-stale", 30, ReportState::Available, &[])],
    );
    put(
        "pending",
        vec![
            report("r-new", 1, ReportState::Pending, &[]),
            report("r-old", 30, ReportState::Available, &[]),
        ],
    );
    put(
        "failed",
        vec![report("r-err", 1, ReportState::Error("no".into()), &[])],
    );
    put("none", Vec::new());
    put(
        "public",
        vec![report("r-pub", 1, ReportState::Available, &[])],
    );
    // Reports someone made for fewer accounts, fewer types or too few template versions
    // prove nothing.
    let mut some_accounts = report("r-some", 1, ReportState::Available, &[]);
    some_accounts.all_accounts = false;
    let mut instances_only = report("r-inst", 1, ReportState::Available, &[]);
    instances_only.resource_types.remove("ec2:LaunchTemplate");
    let mut shallow = report("r-shallow", 1, ReportState::Available, &[]);
    shallow
        .resource_types
        .insert("ec2:LaunchTemplate".into(), None);
    put("partial", vec![some_accounts, instances_only, shallow]);
    let p = run(&document, &images, &usage);

    assert_eq!(kept_for(&p, "used"), Some(KeepReason::InUseByAccount));
    let used = p.kept.iter().find(|k| k.image_id == "used").expect("kept");
    assert!(
        used.detail.contains("210987654321: 2 ec2:Instance")
            && !used.detail.contains("310987654321"),
        "{}",
        used.detail
    );
    assert_eq!(action_of(&p, "clear"), Some(ActionKind::Deregister));
    assert_eq!(
        action_of(&p, "own-use-only"),
        Some(ActionKind::Deregister),
        "the account's own use is the instance scan's to judge"
    );
    assert_eq!(action_of(&p, "public"), Some(ActionKind::Deregister));
    for id in [
        "stale", "pending", "failed", "none", "unread", "unknown", "partial",
    ] {
        assert_eq!(
            kept_for(&p, id),
            Some(KeepReason::ConsumerUsageUnknown),
            "{id}"
        );
    }
    // A report is asked for exactly the shared AMIs with no fresh report and none in progress.
    assert_eq!(
        p.usage_reports_to_request,
        ["failed", "none", "partial", "stale"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(p.consumer_reports_needed, vec!["unread".to_string()]);
    assert_eq!(p.share_state_needed, vec!["unknown".to_string()]);
    // Deprecation stops no launch: it needs no report.
    assert_eq!(action_of(&p, "deprecate-only"), Some(ActionKind::Deprecate));
    // A longer allowed age accepts the 30-hour-old report.
    let longer =
        doc(r#"{"keep_latest": 1, "max_age_days": 90, "consumer_report_max_age_hours": 48}"#);
    let p = run(&longer, &images, &usage);
    assert_eq!(action_of(&p, "stale"), Some(ActionKind::Deregister));
    assert_eq!(
        action_of(&p, "pending"),
        Some(ActionKind::Deregister),
        "the older available report is fresh enough"
    );
}

#[test]
fn a_shared_ami_is_deprecated_first_and_retired_only_on_a_report_made_past_what_reports_miss() {
    // EC2 User Guide, "View your AMI usage": a report can miss the instances of the day before
    // it and the launch templates of the few days before it.
    let document = doc(r#"{"keep_latest": 1, "max_age_days": 90}"#);
    let shared = |id: &str, deprecated_hours: Option<i64>| {
        let mut i = image(id, "a", 200);
        i.shared = Some(true);
        i.deprecation_time = deprecated_hours.map(|h| now() - Duration::hours(h));
        i
    };
    let mut launched = shared("launched", Some(10 * 24));
    launched.last_launched = Some(now() - Duration::hours(10));
    // Deprecated a minute ahead by an earlier run (EC2 refuses a time in the past).
    let mut in_a_minute = shared("notice-ahead", None);
    in_a_minute.deprecation_time = Some(now() + Duration::minutes(1));
    // Given to a new account two days ago, long after its deprecation: that is its notice.
    let mut shared_again = shared("shared-again", Some(10 * 24));
    shared_again.tags.insert(
        crate::domain::tags::SHARED_AT.into(),
        (now() - Duration::days(2)).to_rfc3339(),
    );
    let images = [
        image("n", "a", 1),
        shared("no-notice", None),
        shared_again,
        in_a_minute,
        // EC2 deprecates public AMIs two years after creation by default.
        shared("notice-years-ahead", Some(-2 * 365 * 24)),
        shared("recent-notice", Some(3 * 24)),
        shared("report-too-early", Some(7 * 24 + 1)),
        shared("proven", Some(10 * 24)),
        launched,
        shared("used-before-notice", None),
    ];
    let mut usage = Usage::default();
    for image in &images[1..] {
        let clear = report(&format!("r-{}", image.id), 2, ReportState::Available, &[]);
        usage.consumer_reports.insert(image.id.clone(), vec![clear]);
    }
    // A report that covers only instances still shows use.
    let mut partial = report(
        "r-partial",
        1,
        ReportState::Available,
        &[("210987654321", "ec2:Instance", 1)],
    );
    partial.resource_types.remove("ec2:LaunchTemplate");
    usage
        .consumer_reports
        .insert("used-before-notice".into(), vec![partial]);
    let p = run(&document, &images, &usage);

    // Never deprecated: the deprecation is the notice, made now, whatever a report says.
    assert_eq!(action_of(&p, "no-notice"), Some(ActionKind::Deprecate));
    assert_eq!(
        action_of(&p, "used-before-notice"),
        Some(ActionKind::Deprecate)
    );
    let reason = &p
        .actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some("no-notice"))
        .expect("deprecated")
        .reason;
    assert!(
        reason.contains("notice") && reason.contains("7 days"),
        "{reason}"
    );
    // A deprecation years ahead is brought forward to now: the notice is given now.
    assert_eq!(
        action_of(&p, "notice-years-ahead"),
        Some(ActionKind::Deprecate)
    );
    // The notice tells the earliest date a report can allow, not the policy's date long past.
    let deregister_on = p
        .actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some("no-notice"))
        .and_then(|a| a.retirement.as_ref())
        .and_then(|r| r.deregister_on)
        .expect("deregister_on");
    assert!(
        deregister_on >= now() + Duration::days(7),
        "{deregister_on}"
    );
    for id in [
        "shared-again",
        "notice-ahead",
        "recent-notice",
        "report-too-early",
        "launched",
    ] {
        assert_eq!(
            kept_for(&p, id),
            Some(KeepReason::ConsumerUsageUnknown),
            "{id}"
        );
    }
    assert_eq!(action_of(&p, "proven"), Some(ActionKind::Deregister));
    // A new report is asked only once it can prove something: a week after the notice, a day
    // after the last launch.
    assert_eq!(
        p.usage_reports_to_request,
        vec!["report-too-early".to_string()]
    );
    let detail = |id: &str| {
        p.kept
            .iter()
            .find(|k| k.image_id == id)
            .map(|k| k.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("launched").contains("last launched"),
        "{}",
        detail("launched")
    );

    // Once deprecated, the AMI another account uses is kept by the report that shows it.
    let mut deprecated = images.to_vec();
    for i in &mut deprecated {
        if i.id == "used-before-notice" {
            i.deprecation_time = Some(now() - Duration::days(10));
        }
    }
    let p = run(&document, &deprecated, &usage);
    assert_eq!(
        kept_for(&p, "used-before-notice"),
        Some(KeepReason::InUseByAccount)
    );
}

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

// ------------------------------------------------------------------------------------------
// Properties: for random fleets, documents and filters, the safety rules always hold (nothing
// that must stay is touched), and liveness holds too (what must go is planned): a planner that
// plans nothing would pass the safety rules alone.
// ------------------------------------------------------------------------------------------

/// One random image: (policy 0-2, family, age in days, state, usage flags, snapshots).
#[derive(Debug, Clone)]
struct Spec {
    policy: usize,
    family: usize,
    days: i64,
    state: u8,
    flags: [bool; 9],
    shared: Option<bool>,
    template: (i64, bool, i64),
    snaps: (usize, usize),
    /// 0: not read, 1: fresh and clear, 2: fresh and used elsewhere, 3: stale, 4: pending,
    /// 5: read, none.
    report: u8,
    /// 0: never deprecated, 1: ten days ago (a fresh report can prove), 2: two days ago (none
    /// can yet).
    deprecated: u8,
}

#[derive(Debug, Clone)]
struct World {
    images: Vec<Image>,
    snapshots: Vec<Snapshot>,
    usage: Usage,
    document: PolicyDocument,
    policies: Option<Vec<String>>,
    image_ids: Option<Vec<String>>,
}

fn retain_json() -> impl Strategy<Value = String> {
    (
        0u32..4,
        prop::option::of(1u32..60),
        prop::option::of(1u32..60),
        prop::option::of(1u32..200),
        any::<bool>(),
        prop::sample::select(vec![0u32, 7]),
        prop::sample::select(vec!["\"all\"", "\"default-and-latest\"", "1", "3"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(keep, dep, dis, max, shared, launched, depth, orphans, disable_shared)| {
            // Stages in order: deprecate <= disable <= max age.
            let mut ages = [dep, dis, max];
            let mut sorted: Vec<u32> = ages.iter().flatten().copied().collect();
            sorted.sort();
            let mut it = sorted.into_iter();
            for a in ages.iter_mut() {
                if a.is_some() {
                    *a = it.next();
                }
            }
            let age = |name: &str, v: Option<u32>| v.map(|d| format!(r#", "{name}": {d}"#)).unwrap_or_default();
            let (keep, allow) = if keep == 0 && ages.iter().all(Option::is_none) { (1, false) } else { (keep, keep == 0) };
            format!(
                r#"{{"keep_latest": {keep}, "allow_empty_family": {allow}{}{}{}, "protect_tags": {{"Retain": "true"}},
                   "exclude_shared": {shared}, "exclude_launched_within_days": {launched},
                   "in_use": {{"launch_template_versions": {depth}}}, "delete_orphan_snapshots": {orphans},
                   "disable_shared_images": {disable_shared}}}"#,
                age("deprecate_after_days", ages[0]),
                age("disable_after_days", ages[1]),
                age("max_age_days", ages[2])
            )
        })
}

fn world() -> impl Strategy<Value = World> {
    let spec = (
        (0usize..3, 0usize..3, 0i64..400, 0u8..10),
        proptest::array::uniform9(proptest::bool::weighted(0.08)),
        prop::option::of(any::<bool>()),
        (0i64..12, any::<bool>(), 0i64..12),
        (0usize..8, 0usize..8, 0u8..6, 0u8..3),
    )
        .prop_map(
            |(
                (policy, family, days, state),
                flags,
                shared,
                template,
                (snap_a, snap_b, report, deprecated),
            )| {
                Spec {
                    policy,
                    family,
                    days,
                    state,
                    flags,
                    shared,
                    template,
                    snaps: (snap_a, snap_b),
                    report,
                    deprecated,
                }
            },
        );
    (
        proptest::collection::vec(spec, 1..40),
        retain_json(),
        retain_json(),
        any::<bool>(),
        0usize..4,
        0usize..5,
        0usize..4,
    )
        .prop_map(|(specs, web, batch, shares, policy_filter, image_filter, orphans)| {
            let share = if shares { r#", "share": {"accounts": ["210987654321"]}"# } else { "" };
            let json = format!(
                r#"{{"policies": [
                    {{"name": "web", "select": {{"tags": {{"Family": "*"}}}}, "family_by": "tag:Family"{share}, "retain": {web}}},
                    {{"name": "batch", "select": {{"name_pattern": "batch-*"}}, "retain": {batch}}}]}}"#
            );
            let document = PolicyDocument::parse(&json, Deployment::default()).expect("a valid random policy");
            let mut usage = Usage::default();
            let mut images = Vec::new();
            let mut snapshots = Vec::new();
            for (n, s) in specs.iter().enumerate() {
                let id = format!("ami-{n}");
                let mut i = match s.policy {
                    0 => image(&id, ["a", "b", "c"][s.family], s.days),
                    1 => Image::new(&id, &format!("batch-{}-{n}", s.family), ME, now() - Duration::days(s.days)),
                    _ => Image::new(&id, &format!("stray-{n}"), ME, now() - Duration::days(s.days)),
                };
                i.snapshot_ids = vec![format!("snap-{}", s.snaps.0), format!("snap-x{n}"), format!("snap-{}", s.snaps.1 + 10)];
                i.state = match s.state {
                    0 => ImageState::Pending,
                    1 => ImageState::Failed,
                    2 => ImageState::Disabled,
                    _ => ImageState::Available,
                };
                i.shared = s.shared;
                i.deprecation_time = match s.deprecated {
                    1 => Some(now() - Duration::days(10)),
                    2 => Some(now() - Duration::days(2)),
                    _ => None,
                };
                let reports = match s.report {
                    1 => Some(vec![report("r", 1, ReportState::Available, &[])]),
                    2 => Some(vec![report("r", 1, ReportState::Available, &[("210987654321", "ec2:Instance", 1)])]),
                    3 => Some(vec![report("r", 25, ReportState::Available, &[])]),
                    4 => Some(vec![report("r", 1, ReportState::Pending, &[])]),
                    5 => Some(Vec::new()),
                    _ => None,
                };
                if let Some(reports) = reports {
                    usage.consumer_reports.insert(id.clone(), reports);
                }
                let [foreign, instance, template, referenced, protected, dereg, launched, public, gap] = s.flags;
                if foreign {
                    i.owner_id = OTHER.into();
                }
                if instance {
                    usage.instances.insert(id.clone(), BTreeSet::from(["i-1".to_string()]));
                }
                if template {
                    let (version, is_default, newer) = s.template;
                    usage.launch_templates.entry(id.clone()).or_default().push(TemplateUse {
                        template_id: "lt-1".into(),
                        version,
                        is_default,
                        newer_versions: newer,
                    });
                }
                if referenced {
                    usage.references.insert(id.clone(), BTreeSet::from(["arn:aws:ssm:::parameter/x".to_string()]));
                }
                if protected {
                    i.tags.insert("Retain".into(), "true".into());
                }
                i.deregistration_protection = dereg;
                if launched {
                    i.last_launched = Some(now() - Duration::days(1));
                }
                i.public = public;
                if gap {
                    usage.gaps.push(EvidenceGap {
                        call: "DescribeImageReferences".into(),
                        code: Some("InternalError".into()),
                        error: "injected".into(),
                        transient: true,
                        images: Some(BTreeSet::from([id.clone()])),
                    });
                }
                for snap in &i.snapshot_ids {
                    snapshots.push(Snapshot {
                        id: snap.clone(),
                        owner_id: if foreign && snap.starts_with("snap-x") { OTHER.into() } else { ME.into() },
                        for_an_image: true,
                        started: i.created,
                        tags: Default::default(),
                        size: Default::default(),
                    });
                }
                images.push(i);
            }
            // Orphans: snapshots made for an AMI that no AMI uses, tagged for `web`.
            for n in 0..orphans {
                snapshots.push(Snapshot {
                    id: format!("snap-orphan{n}"),
                    owner_id: ME.into(),
                    for_an_image: true,
                    started: Some(now() - Duration::days(300)),
                    tags: [(crate::domain::tags::POLICY.to_string(), "web".to_string())].into(),
                    size: Default::default(),
                });
            }
            snapshots.sort_by(|a, b| a.id.cmp(&b.id));
            snapshots.dedup_by(|a, b| a.id == b.id);
            let policies = match policy_filter {
                1 => Some(vec!["web".to_string()]),
                2 => Some(vec!["batch".to_string()]),
                _ => None,
            };
            let image_ids = (image_filter > 0).then(|| {
                images.iter().step_by(image_filter).map(|i| i.id.clone()).collect()
            });
            World { images, snapshots, usage, document, policies, image_ids }
        })
}

/// What the policy that manages `image` says, if a wanted policy with `retain` manages it.
fn manager<'a>(w: &'a World, image: &Image) -> Option<&'a crate::domain::policy::Policy> {
    let p = image.policy_in(&w.document)?;
    p.retain.as_ref()?;
    w.policies
        .as_ref()
        .is_none_or(|ps| ps.contains(&p.name))
        .then_some(p)
}

/// Whether no other account can be using the image: it is private, or it is known to be shared,
/// was deprecated (the notice), and a usage report no older than the default 24 hours, made a
/// week after the notice and a day after the last launch, shows no other account using it (and
/// no fresh report shows one).
fn consumers_clear(w: &World, i: &Image) -> bool {
    let private = !i.public && i.shared == Some(false);
    let shared = i.public || i.shared == Some(true);
    let Some(notice) = i.deprecation_time else {
        return private;
    };
    let proves_from = (notice + Duration::days(7)).max(
        i.last_launched
            .map_or(notice, |at| at + Duration::hours(24)),
    );
    let fresh = |r: &&UsageReport| {
        r.state == ReportState::Available && now() - r.created <= Duration::hours(24)
    };
    private
        || shared
            && w.usage.consumer_reports.get(&i.id).is_some_and(|rs| {
                rs.iter().filter(fresh).all(|r| r.consumers(ME).is_empty())
                    && rs
                        .iter()
                        .filter(fresh)
                        .any(|r| r.created >= proves_from && r.covers(20))
            })
}

fn older(image: &Image, days: Option<u32>) -> bool {
    days.is_some_and(|d| {
        image
            .created
            .is_some_and(|c| now() - c > Duration::days(i64::from(d)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_safety_rules_and_liveness_hold_for_any_fleet(w in world()) {
        let p = plan(PlanInput { account_id: ME, images: &w.images, snapshots: &w.snapshots, usage: &w.usage,
            document: &w.document, policies: w.policies.as_deref(), image_ids: w.image_ids.as_deref(), as_of: now(),
            recycle_bin: None });
        let by_id: HashMap<&str, &Image> = w.images.iter().map(|i| (i.id.as_str(), i)).collect();
        let acted: HashMap<&str, ActionKind> = p.actions.iter()
            .filter(|a| a.kind != ActionKind::DeleteSnapshot)
            .filter_map(|a| Some((a.image_id.as_deref()?, a.kind))).collect();

        // The newest keep_latest launchable AMIs of each family.
        let mut families: BTreeMap<(String, String), Vec<&Image>> = BTreeMap::new();
        for i in w.images.iter().filter(|i| i.owner_id == ME && i.state == ImageState::Available) {
            if let Some(policy) = i.policy_in(&w.document).filter(|p| p.retain.is_some()) {
                families.entry((policy.name.clone(), i.family(&policy.family_by))).or_default().push(i);
            }
        }
        let mut newest: HashSet<&str> = HashSet::new();
        for ((name, _), members) in families.iter_mut() {
            let keep = w.document.policy(name).and_then(|p| p.retain.as_ref()).map_or(0, |r| r.keep_latest) as usize;
            members.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
            newest.extend(members.iter().take(keep).map(|i| i.id.as_str()));
        }

        for (id, kind) in &acted {
            let i = by_id[id];
            let policy = manager(&w, i).expect("acted on an image a wanted policy manages");
            let r = policy.retain.as_ref().expect("retain");
            prop_assert!(w.image_ids.as_ref().is_none_or(|ids| ids.iter().any(|x| x == id)), "{} outside image_ids", id);
            prop_assert_eq!(&i.owner_id, ME);
            prop_assert!(!w.usage.instances.contains_key(*id), "{} in use by an instance", id);
            prop_assert!(w.usage.launch_templates.get(*id).into_iter().flatten()
                .all(|t| !t.counts_at(r.in_use.launch_template_versions)), "{} in a template", id);
            prop_assert!(!w.usage.references.contains_key(*id), "{} referenced", id);
            prop_assert!(i.tags.get("Retain").map(String::as_str) != Some("true"));
            prop_assert!(!i.deregistration_protection);
            prop_assert!(r.exclude_launched_within_days == 0 || i.last_launched.is_none());
            prop_assert!(!newest.contains(id), "{} is among the newest", id);
            prop_assert!(matches!(i.state, ImageState::Available | ImageState::Disabled), "{} not settled", id);
            if r.exclude_shared {
                prop_assert!(!i.public && i.shared == Some(false), "{} may be shared", id);
            }
            if *kind == ActionKind::Disable && policy.share.is_some() && !r.disable_shared_images {
                prop_assert!(!i.public && i.shared == Some(false), "{} shared, disabled", id);
            }
            if w.usage.gap_for(id).is_some() {
                prop_assert_eq!(*kind, ActionKind::Deprecate, "{} has no evidence", id);
            }
            if *kind != ActionKind::Deprecate {
                prop_assert!(consumers_clear(&w, i), "{} may be used by another account", id);
            }
            if *kind == ActionKind::Deprecate && (i.public || i.shared == Some(true)) {
                prop_assert!(i.deprecation_time.is_none(), "{} deprecated twice", id);
            }
        }

        // Never a snapshot that a remaining image uses, or one the account does not own.
        let deregistered: HashSet<&str> = acted.iter().filter(|(_, k)| **k == ActionKind::Deregister).map(|(i, _)| *i).collect();
        let still_used: HashSet<&str> = w.images.iter().filter(|i| !deregistered.contains(i.id.as_str()))
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str)).collect();
        let mut deleted = HashSet::new();
        for a in p.actions.iter().filter(|a| a.kind == ActionKind::DeleteSnapshot) {
            let snap = a.snapshot_id.as_deref().unwrap_or_default();
            prop_assert!(!still_used.contains(snap), "{} is still used", snap);
            prop_assert!(w.snapshots.iter().any(|s| s.id == snap && s.owner_id == ME));
            prop_assert!(deleted.insert(snap), "{} deleted twice", snap);
        }

        // Liveness: an AMI with nothing to keep it, past its policy's max age, is deregistered;
        // past the disable age (and not yet disabled), disabled; past the deprecation age, deprecated.
        for i in &w.images {
            let Some(policy) = manager(&w, i) else { continue };
            let r = policy.retain.as_ref().expect("retain");
            let free = i.owner_id == ME
                && w.image_ids.as_ref().is_none_or(|ids| ids.contains(&i.id))
                && matches!(i.state, ImageState::Available | ImageState::Disabled)
                && !newest.contains(i.id.as_str())
                && !w.usage.instances.contains_key(&i.id)
                && !w.usage.launch_templates.contains_key(&i.id)
                && !w.usage.references.contains_key(&i.id)
                && !i.tags.contains_key("Retain")
                && !i.deregistration_protection
                && (r.exclude_launched_within_days == 0 || i.last_launched.is_none())
                && !(r.exclude_shared && (i.public || i.shared != Some(false)))
                && w.usage.gap_for(&i.id).is_none();
            if !free {
                continue;
            }
            let shared_disable_blocked = policy.share.is_some() && !r.disable_shared_images
                && (i.public || i.shared != Some(false));
            let clear = consumers_clear(&w, i);
            // A shared AMI due to be disabled or deregistered is deprecated first, as notice.
            let notice_first = (i.public || i.shared == Some(true))
                && i.deprecation_time.is_none()
                && i.state == ImageState::Available;
            let retire = |kind| if notice_first { Some(ActionKind::Deprecate) } else { clear.then_some(kind) };
            let want = if older(i, r.max_age_days) {
                retire(ActionKind::Deregister)
            } else if older(i, r.disable_after_days) {
                (i.state != ImageState::Disabled && !shared_disable_blocked).then(|| retire(ActionKind::Disable)).flatten()
            } else if older(i, r.deprecate_after_days) {
                (i.deprecation_time.is_none() && i.state != ImageState::Disabled).then_some(ActionKind::Deprecate)
            } else {
                None
            };
            prop_assert_eq!(acted.get(i.id.as_str()).copied(), want, "{}: {:?}", &i.id, i);
        }
    }
}

/// Three AMIs of policy `web` (keep 1, max age 2 days) in us-east-1 of the fake account, all
/// older than that; returns the policy document.
fn three_old_amis(cloud: &crate::tests::fakes::FakeCloud) -> PolicyDocument {
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
    let report = super::run(
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

#[tokio::test]
async fn a_restore_brings_back_binned_amis_snapshots_first_and_undoes_disable_and_deprecation() {
    use super::restore::{self, RestoreOutcome, Step};
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::tests::fakes::{context, FakeCloud};
    let cloud = FakeCloud::default();
    let ec2 = cloud.region("us-east-1");
    {
        let mut state = ec2.state();
        let mut binned = image("ami-binned", "a", 200);
        binned.snapshot_ids = vec!["snap-1".into()];
        state.bin_images.push(binned);
        state.bin_snapshots = vec![
            BinSnapshot {
                snapshot_id: "snap-1".into(),
                description: "Created by CreateImage(i-1) for ami-binned".into(),
            },
            BinSnapshot {
                snapshot_id: "snap-other".into(),
                description: "Created by CreateImage(i-1) for ami-binned2".into(),
            },
        ];
        let mut disabled = image("ami-disabled", "a", 70);
        disabled.state = ImageState::Disabled;
        disabled.deprecation_time = Some(now());
        state.images.push(disabled);
        state.images.push(image("ami-fine", "a", 1));
        state.snapshots = snapshots_of(&state.images)
            .into_iter()
            .map(|s| (s, "completed".to_string()))
            .collect();
    }
    let document = crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#,
    );
    let ctx = context(&cloud, &document);
    let ids: Vec<String> = ["ami-binned", "ami-disabled", "ami-fine", "ami-gone"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");

    let dry = restore::run(&ctx, &ids, std::slice::from_ref(&region), true).await;
    assert!(ec2.state().changes.is_empty(), "a dry run changes nothing");
    assert_eq!(dry[0].outcome, RestoreOutcome::WouldRestore);
    assert_eq!(
        dry[0].steps,
        vec![
            Step::RestoreSnapshot("snap-1".into()),
            Step::RestoreImage("ami-binned".into())
        ],
        "its own snapshots, before the AMI"
    );

    let done = restore::run(&ctx, &ids, std::slice::from_ref(&region), false).await;
    let outcomes: Vec<RestoreOutcome> = done.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            RestoreOutcome::Restored,
            RestoreOutcome::Restored,
            RestoreOutcome::NothingToUndo,
            RestoreOutcome::NotFound
        ]
    );
    assert_eq!(
        ec2.state().changes,
        vec![
            "RestoreSnapshotFromRecycleBin snap-1",
            "RestoreImageFromRecycleBin ami-binned",
            "EnableImage ami-disabled",
            "DisableImageDeprecation ami-disabled"
        ]
    );
    assert_eq!(
        restore::events(&done).len(),
        2,
        "AMI Restored for each AMI given back"
    );

    // Delivered again: nothing left to undo.
    let again = restore::run(&ctx, &ids[..3], std::slice::from_ref(&region), false).await;
    assert!(again
        .iter()
        .all(|r| r.outcome == RestoreOutcome::NothingToUndo));
}

#[tokio::test]
async fn a_restore_whose_snapshots_are_gone_is_partial_and_names_them() {
    use super::restore::{self, RestoreOutcome};
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::jobs::Line;
    use crate::tests::fakes::{context, FakeCloud};
    let cloud = FakeCloud::default();
    let ec2 = cloud.region("us-east-1");
    {
        let mut state = ec2.state();
        // Registered from snapshots (no description names the AMI): one is in the bin, one
        // was deleted for good.
        let mut binned = image("ami-binned", "a", 200);
        binned.snapshot_ids = vec!["snap-root".into(), "snap-data".into()];
        state.bin_images.push(binned);
        state.bin_snapshots = vec![BinSnapshot {
            snapshot_id: "snap-root".into(),
            description: "".into(),
        }];
    }
    let document = crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#,
    );
    let ctx = context(&cloud, &document);
    let ids = vec!["ami-binned".to_string()];
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let done = restore::run(&ctx, &ids, std::slice::from_ref(&region), false).await;
    assert_eq!(done[0].outcome, RestoreOutcome::Partial, "{done:?}");
    assert_eq!(done[0].missing, vec!["snap-root", "snap-data"]);
    assert!(done[0].failed(), "the invocation reports it");
    assert!(
        restore::events(&done).is_empty(),
        "not announced as restored"
    );
}

#[test]
fn savings_count_what_was_deleted_measured_or_estimated_per_family() {
    use super::execute::{ActionReport, Outcome};
    use super::savings::savings;
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let line = |family: Option<&str>, bytes: Option<u64>, estimated: bool, outcome: Outcome| {
        ActionReport {
            action: super::plan::Action {
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
    let report = super::run(
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

#[tokio::test]
async fn a_restore_waits_until_its_snapshots_are_available_before_the_ami() {
    use super::restore::{self, RestoreOutcome};
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::tests::fakes::{context, FakeCloud};
    let cloud = FakeCloud::default();
    let ec2 = cloud.region("us-east-1");
    {
        let mut state = ec2.state();
        let mut binned = image("ami-binned", "a", 200);
        binned.state = ImageState::Disabled;
        binned.snapshot_ids = vec!["snap-1".into()];
        state.bin_images.push(binned);
        state.bin_snapshots = vec![BinSnapshot {
            snapshot_id: "snap-1".into(),
            description: "Created by CreateImage(i-1) for ami-binned".into(),
        }];
        state.restored_snapshot_state = Some("pending".into());
    }
    let document = crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#,
    );
    let ctx = context(&cloud, &document);
    let ids = vec!["ami-binned".to_string()];
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let first = restore::run(&ctx, &ids, std::slice::from_ref(&region), false).await;
    assert_eq!(first[0].outcome, RestoreOutcome::Deferred, "{first:?}");
    assert_eq!(
        ec2.state().changes,
        vec!["RestoreSnapshotFromRecycleBin snap-1"]
    );
    // The same request later: the snapshot is available, the AMI comes back, and as it went
    // into the bin disabled, it is enabled too.
    ec2.state().restored_snapshot_state = None;
    let second = restore::run(&ctx, &ids, std::slice::from_ref(&region), false).await;
    assert_eq!(second[0].outcome, RestoreOutcome::Restored, "{second:?}");
    assert_eq!(
        ec2.state().changes[1..],
        [
            "RestoreImageFromRecycleBin ami-binned",
            "EnableImage ami-binned"
        ]
    );
}

#[test]
fn a_run_continues_only_when_time_alone_stopped_it() {
    use super::continuation::{next, request_for};
    use super::execute::{ActionReport, Outcome};
    use crate::domain::trigger::RunRequest;
    use crate::domain::Decision;
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let line = |outcome| ActionReport {
        action: super::plan::Action {
            kind: ActionKind::Deregister,
            image_id: Some("ami-1".into()),
            snapshot_id: None,
            policy: "web".into(),
            family: None,
            reason: String::new(),
            retirement: None,
            recovery: None,
            bytes: None,
            bytes_estimated: false,
        },
        region: region.clone(),
        outcome,
        error_code: None,
        error: None,
    };
    let report = |complete, dry_run, outcomes: &[Outcome]| super::Report {
        function: super::FUNCTION,
        dry_run,
        complete,
        as_of: now(),
        counts: BTreeMap::new(),
        kept_by_reason: BTreeMap::new(),
        plan: outcomes.iter().map(|o| line(*o)).collect(),
        failed: outcomes
            .iter()
            .filter(|o| **o == Outcome::Failed)
            .map(|o| line(*o))
            .collect(),
        remaining: outcomes.iter().filter(|o| **o == Outcome::Deferred).count(),
        saved: Default::default(),
        continued: None,
        regions: Vec::new(),
        events: Default::default(),
        elapsed_ms: 0,
    };
    use Outcome::*;
    let first = RunRequest::default();
    let third = RunRequest {
        continuation: Some(2),
        run_id: Some("chain".into()),
        ..RunRequest::default()
    };
    let cases: [(&str, super::Report, &RunRequest, u32, Option<u32>); 7] = [
        (
            "time alone",
            report(false, false, &[Done, Deferred]),
            &first,
            24,
            Some(1),
        ),
        (
            "the next link",
            report(false, false, &[Done, Deferred]),
            &third,
            24,
            Some(3),
        ),
        ("done", report(true, false, &[Done]), &first, 24, None),
        (
            "dry run",
            report(false, true, &[Planned, Deferred]),
            &first,
            24,
            None,
        ),
        (
            "a failure",
            report(false, false, &[Done, Failed, Deferred]),
            &first,
            24,
            None,
        ),
        (
            "no progress",
            report(false, false, &[Deferred, Deferred]),
            &first,
            24,
            None,
        ),
        (
            "limit reached",
            report(false, false, &[Done, Deferred]),
            &third,
            2,
            None,
        ),
    ];
    for (name, r, request, max, want) in cases {
        let got = match next(&super::continuation::Progress::of(&r), request, max) {
            Decision::Act(n) => Some(n),
            Decision::Ignore(_) => None,
        };
        assert_eq!(got, want, "{name}");
    }
    // The chain keeps its first run's id; the first continuation takes the invocation's.
    assert_eq!(
        request_for(&first, 1, "req-1").run_id.as_deref(),
        Some("req-1")
    );
    assert_eq!(
        request_for(&third, 3, "req-9").run_id.as_deref(),
        Some("chain")
    );
    assert_eq!(request_for(&third, 3, "req-9").continuation, Some(3));
}

#[test]
fn an_image_whose_share_state_is_left_for_the_next_run_is_kept_as_deferred_and_not_asked_again() {
    let d = doc(r#"{"keep_latest": 1, "max_age_days": 90}"#);
    let unknown = |id: &str, days| {
        let mut i = image(id, "a", days);
        i.shared = None;
        i
    };
    let images = [
        image("n", "a", 1),
        unknown("read", 200),
        unknown("later", 100),
    ];
    let mut usage = Usage::default();
    usage.deferred.insert("later".into());
    let p = run(&d, &images, &usage);
    assert_eq!(kept_for(&p, "later"), Some(KeepReason::Deferred));
    assert_eq!(
        kept_for(&p, "read"),
        Some(KeepReason::ConsumerUsageUnknown),
        "waits on its share state"
    );
    assert_eq!(p.share_state_needed, vec!["read".to_string()]);
    assert_eq!(action_of(&p, "later"), None);
}

/// A real run of one region with ten minutes to go.
fn ten_minute_run<'a>(
    region: &'a crate::domain::ids::Region,
    document: &'a PolicyDocument,
    request: &'a crate::domain::trigger::RunRequest,
) -> super::RegionRun<'a> {
    super::RegionRun {
        region,
        document,
        request,
        as_of: now(),
        dry_run: false,
        deadline: crate::domain::deadline::Deadline::from_lambda(
            0,
            std::time::Duration::ZERO,
            Some(std::time::Duration::from_secs(600)),
        ),
        concurrency: 2,
    }
}

/// The AMIs a region's run deregistered, in its order.
fn deregistered(report: &super::RegionReport) -> Vec<String> {
    report
        .plan
        .iter()
        .filter(|a| a.action.kind == ActionKind::Deregister)
        .filter_map(|a| a.action.image_id.clone())
        .collect()
}

/// A pacer that lets `n` mutating calls start in any window.
struct Capacity(usize);

impl crate::ports::Pace for Capacity {
    async fn take(&self) {}
    fn capacity(&self, _: std::time::Duration) -> Option<usize> {
        Some(self.0)
    }
}

#[tokio::test]
async fn a_run_reads_share_state_only_for_what_it_can_retire_oldest_first_and_leaves_the_rest() {
    use crate::ports::Cloud;
    use crate::tests::fakes::FakeCloud;
    let cloud = FakeCloud::default();
    let document = three_old_amis(&cloud);
    let request = crate::domain::trigger::RunRequest::default();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);
    let first = super::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &run).await;
    // Of the two AMIs past their age, the run can retire one: it reads the oldest's share
    // state, retires it, and leaves the other, undecided, for the next run.
    assert_eq!(deregistered(&first), vec![format!("ami-{:017x}", 0)]);
    let deferred: Vec<_> = first
        .kept
        .iter()
        .filter(|k| k.reason == KeepReason::Deferred)
        .map(|k| k.image_id.clone())
        .collect();
    assert_eq!(deferred, vec![format!("ami-{:017x}", 1)]);
    assert_eq!(ec2.state().images.len(), 2);

    // Without a deadline nothing bounds the reads: the next run finishes.
    let unbounded = super::RegionRun {
        deadline: crate::domain::deadline::Deadline::none(),
        ..run
    };
    let second = super::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &unbounded).await;
    assert_eq!(deregistered(&second), vec![format!("ami-{:017x}", 1)]);
    assert!(second.kept.iter().all(|k| k.reason != KeepReason::Deferred));
    assert_eq!(ec2.state().images.len(), 1);
}

/// `amis` AMIs of one family, an hour apart, past their age but the newest, each with its own
/// snapshot; the oldest and the newest old one also share one, which can go only once both are
/// gone. The oldest 100 are read in a run's first chunk, the newest old one in a later one.
fn backlog(ec2: &crate::tests::fakes::FakeEc2, amis: usize) -> PolicyDocument {
    let old = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    {
        let mut state = ec2.state();
        for n in 0..amis {
            let id = format!("ami-{n:017x}");
            let mut image = crate::tests::fakes::managed_image(&id, &format!("web-{n}"), "web");
            image.created = Some(old + chrono::Duration::hours(n as i64));
            image.snapshot_ids = vec![format!("snap-{n:017x}")];
            if n == 0 || n == amis - 2 {
                image.snapshot_ids.push("snap-shared".into());
            }
            for snap in &image.snapshot_ids {
                if state.snapshots.iter().all(|(s, _)| &s.id != snap) {
                    let snapshot = Snapshot {
                        id: snap.clone(),
                        owner_id: image.owner_id.clone(),
                        for_an_image: true,
                        started: image.created,
                        tags: Default::default(),
                        size: Default::default(),
                    };
                    state.snapshots.push((snapshot, "completed".into()));
                }
            }
            state.images.push(image);
        }
    }
    crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1, "max_age_days": 2}}]}"#,
    )
}

#[tokio::test]
async fn a_run_retires_while_it_reads_and_does_what_a_dry_run_says_once() {
    use crate::ports::Cloud;
    use crate::tests::fakes::{FakeCloud, NoPace};
    let cloud = FakeCloud::default();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    let amis = 251;
    let document = backlog(&ec2, amis);
    let request = crate::domain::trigger::RunRequest::default();
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);
    let dry = super::run_region(
        &ec2,
        &bin,
        (&NoPace, &NoPace),
        &super::RegionRun {
            dry_run: true,
            ..run
        },
    )
    .await;
    ec2.state().attribute_reads.clear();
    let real = super::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    // It deregistered while it was still reading share states: its first read came before
    // any change, its last after some.
    let reads = ec2.state().attribute_reads.clone();
    assert_eq!(reads.len(), amis - 1);
    assert_eq!(reads.first(), Some(&0));
    assert!(reads.last() > Some(&0), "{reads:?}");

    // Each action once, the same as the dry run's, and all done.
    let keys = |r: &super::RegionReport| {
        r.plan
            .iter()
            .map(|a| super::action_key(&a.action))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(&real).len(), real.plan.len(), "an action twice");
    assert_eq!(keys(&real), keys(&dry));
    assert_eq!(deregistered(&real).len(), amis - 1);
    assert!(real.plan.iter().all(|a| matches!(
        a.outcome,
        super::Outcome::Done | super::Outcome::DeletedWithImage
    )));
    let shared = real
        .plan
        .iter()
        .find(|a| a.action.snapshot_id.as_deref() == Some("snap-shared"))
        .map(|a| a.outcome);
    assert_eq!(shared, Some(super::Outcome::DeletedWithImage));
    assert!(
        real.snapshots_kept
            .iter()
            .all(|k| k.snapshot_id != "snap-shared"),
        "{:?}",
        real.snapshots_kept
    );
    assert_eq!(real.kept.len(), 1, "{:?}", real.kept);
    assert_eq!(real.kept, dry.kept);
    assert_eq!(real.snapshots_kept, dry.snapshots_kept);
    assert_eq!(real.orphans, dry.orphans);
    let state = ec2.state();
    assert_eq!(state.images.len(), 1);
    assert_eq!(
        state.snapshots.len(),
        1,
        "only the newest AMI's snapshot is left"
    );
}

#[tokio::test]
async fn a_snapshot_an_ami_left_registered_by_an_earlier_round_still_uses_is_not_deleted() {
    use crate::ports::Cloud;
    use crate::tests::fakes::{FakeCloud, NoPace};
    let cloud = FakeCloud::default();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    let amis = 251;
    let document = backlog(&ec2, amis);
    // EC2 throttles the oldest AMI's deregistration past the SDK's retries: the first round
    // leaves it registered, still using the snapshot it shares with a newer AMI.
    let oldest = format!("ami-{:017x}", 0);
    ec2.state()
        .refused
        .insert(oldest.clone(), "RequestLimitExceeded".into());
    let request = crate::domain::trigger::RunRequest::default();
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);
    let report = super::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    let outcome = |kind: ActionKind, id: &str| {
        report
            .plan
            .iter()
            .find(|a| {
                a.action.kind == kind
                    && (a.action.image_id.as_deref() == Some(id)
                        || a.action.snapshot_id.as_deref() == Some(id))
            })
            .map(|a| a.outcome)
    };
    assert_eq!(
        outcome(ActionKind::Deregister, &oldest),
        Some(super::Outcome::Deferred)
    );
    // The newer AMI that shares the snapshot went in a later round; the snapshot stays, left
    // for the next run, and is no orphan.
    let newer = format!("ami-{:017x}", amis - 2);
    assert_eq!(
        outcome(ActionKind::Deregister, &newer),
        Some(super::Outcome::Done)
    );
    assert_eq!(
        outcome(ActionKind::DeleteSnapshot, "snap-shared"),
        Some(super::Outcome::Deferred)
    );
    let state = ec2.state();
    assert!(state.snapshots.iter().any(|(s, _)| s.id == "snap-shared"));
    assert!(!state.changes.iter().any(|c| c.contains("snap-shared")));
    assert!(state.images.iter().any(|i| i.id == oldest));
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
}

#[tokio::test]
async fn shared_amis_that_stay_kept_never_use_up_a_runs_share_state_reads() {
    use crate::domain::grant::Grant;
    use crate::ports::Cloud;
    use crate::tests::fakes::FakeCloud;
    let cloud = FakeCloud::default();
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    let old = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    {
        let mut state = ec2.state();
        // Three old AMIs shared with another account (kept: the policy excludes shared AMIs),
        // older than one that is not shared, and the newest, kept by keep_latest.
        for n in 0..5 {
            let id = format!("ami-{n:017x}");
            let mut image = crate::tests::fakes::managed_image(&id, &format!("web-{n}"), "web");
            image.created = Some(old + chrono::Duration::days(n));
            state.images.push(image);
            if n < 3 {
                state
                    .launch
                    .insert(id, BTreeSet::from([Grant::Account("210987654321".into())]));
            }
        }
    }
    let document = crate::tests::fakes::document(
        r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1, "max_age_days": 2, "exclude_shared": true}}]}"#,
    );
    let request = crate::domain::trigger::RunRequest::default();
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);
    // The run can retire one AMI: the shared ones it reads do not count, so it reads on to the
    // one it can retire.
    let report = super::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &run).await;
    assert_eq!(deregistered(&report), vec![format!("ami-{:017x}", 3)]);
    let shared = report
        .kept
        .iter()
        .filter(|k| k.reason == KeepReason::Shared)
        .count();
    assert_eq!(shared, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A run acts in rounds: the first plans before some share states are read (those AMIs
    /// deferred), the next after, over the account without what the first removed. Together
    /// they do what one plan with every answer does, and keep what it keeps.
    #[test]
    fn a_run_in_two_rounds_does_what_one_plan_with_every_answer_does(w in world(), unread in any::<u64>()) {
        let input = |images: &[Image], usage: &Usage| plan(PlanInput { account_id: ME, images, snapshots: &w.snapshots,
            usage, document: &w.document, policies: w.policies.as_deref(), image_ids: w.image_ids.as_deref(),
            as_of: now(), recycle_bin: None });
        let key = |a: &super::plan::Action| super::action_key(a);
        let all = input(&w.images, &w.usage);

        let mut images = w.images.clone();
        let mut usage = w.usage.clone();
        for (n, i) in images.iter_mut().enumerate() {
            if unread >> (n % 64) & 1 == 1 && !i.public && i.shared.is_some() {
                i.shared = None;
                usage.deferred.insert(i.id.clone());
            }
        }
        let first = input(&images, &usage);
        let mut usage = w.usage.clone();
        usage.gone = first.actions.iter().filter_map(|a| match a.kind {
            ActionKind::Deregister => a.image_id.clone(),
            ActionKind::DeleteSnapshot => a.snapshot_id.clone(),
            _ => None,
        }).collect();
        let second = input(&w.images, &usage);

        let rounds: BTreeSet<_> = first.actions.iter().chain(&second.actions).map(key).collect();
        let once: BTreeSet<_> = all.actions.iter().map(key).collect();
        prop_assert_eq!(rounds, once);
        let kept = |p: &Plan| p.kept.iter().map(|k| (k.image_id.clone(), k.reason)).collect::<BTreeSet<_>>();
        prop_assert_eq!(kept(&second), kept(&all));
    }

    /// What a run already removed is planned as if the account had never had it.
    #[test]
    fn a_plan_without_what_the_run_removed_is_the_plan_of_the_account_without_it(w in world(), removed in any::<u64>()) {
        let picked = |n: usize| removed >> (n % 64) & 1 == 1;
        let mut usage = w.usage.clone();
        usage.gone.extend(w.images.iter().enumerate().filter(|(n, _)| picked(*n)).map(|(_, i)| i.id.clone()));
        usage.gone.extend(w.snapshots.iter().enumerate().filter(|(n, _)| picked(*n + 7)).map(|(_, s)| s.id.clone()));
        let images: Vec<Image> = w.images.iter().filter(|i| !usage.gone.contains(&i.id)).cloned().collect();
        let snapshots: Vec<Snapshot> = w.snapshots.iter().filter(|s| !usage.gone.contains(&s.id)).cloned().collect();
        let with_gone = plan(PlanInput { account_id: ME, images: &w.images, snapshots: &w.snapshots, usage: &usage,
            document: &w.document, policies: w.policies.as_deref(), image_ids: w.image_ids.as_deref(), as_of: now(),
            recycle_bin: None });
        let without = plan(PlanInput { account_id: ME, images: &images, snapshots: &snapshots, usage: &w.usage,
            document: &w.document, policies: w.policies.as_deref(), image_ids: w.image_ids.as_deref(), as_of: now(),
            recycle_bin: None });
        prop_assert_eq!(with_gone, without);
    }
}

#[tokio::test]
async fn usage_reports_are_asked_only_within_ec2s_quota_of_reports_in_progress() {
    use crate::domain::grant::Grant;
    use crate::ports::Cloud;
    use crate::tests::fakes::{FakeCloud, NoPace};
    let cloud = FakeCloud::default();
    let document = three_old_amis(&cloud);
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    {
        // The two old AMIs are shared, and were deprecated (the notice) long ago.
        let mut state = ec2.state();
        for image in state.images.iter_mut().take(2) {
            image.deprecation_time = Some(Utc::now() - Duration::days(30));
        }
        for n in 0..2 {
            let grant = BTreeSet::from([Grant::Account("210987654321".into())]);
            state.launch.insert(format!("ami-{n:017x}"), grant);
        }
        // 1,999 reports of other AMIs are in progress: room for one more.
        state.other_pending_reports = crate::domain::model::PENDING_REPORTS_QUOTA - 1;
    }
    let request = crate::domain::trigger::RunRequest::default();
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);

    let report = super::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    let outcomes: Vec<(String, String)> = report
        .usage_reports
        .iter()
        .map(|r| (r.outcome.to_string(), r.error.clone().unwrap_or_default()))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0], ("requested".to_string(), String::new()));
    assert_eq!(outcomes[1].0, "deferred");
    assert!(outcomes[1].1.contains("2000"), "{outcomes:?}");
    let asked = ec2
        .state()
        .changes
        .iter()
        .filter(|c| c.starts_with("CreateImageUsageReport"))
        .count();
    assert_eq!(asked, 1);
    assert!(deregistered(&report).is_empty());
}

#[test]
fn the_run_summary_names_the_first_evidence_gaps_and_counts_the_rest_within_puts_limit() {
    let images: BTreeSet<String> = (0..10_000).map(|n| format!("ami-{n:017x}")).collect();
    let gap = |n: usize| EvidenceGap {
        call: format!("DescribeImageAttribute-{n}"),
        code: Some("UnauthorizedOperation".into()),
        error: "denied".into(),
        transient: false,
        images: Some(images.clone()),
    };
    let region = super::RegionReport {
        region: "us-east-1".parse().expect("region"),
        plan: Vec::new(),
        kept: Vec::new(),
        snapshots_kept: Vec::new(),
        orphans: Vec::new(),
        warnings: Vec::new(),
        evidence_gaps: (0..100).map(gap).collect(),
        usage_reports: Vec::new(),
        error: None,
        planning_ms: 0,
    };

    let (named, total) = super::gaps_summary(&[region]);

    assert_eq!(total, 100);
    assert_eq!(named.len(), 20);
    assert_eq!(named[0]["images"], 10_000);
    assert_eq!(named[0]["first_images"].as_array().map(Vec::len), Some(10));
    // PutEvents takes entries up to 256 KB (EventBridge quotas).
    let size = serde_json::to_string(&named).expect("json").len();
    assert!(size < 16 * 1024, "{size} bytes");
}

#[tokio::test]
async fn a_usage_report_ec2_refuses_to_make_is_an_evidence_gap_not_a_silent_keep() {
    use crate::domain::grant::Grant;
    use crate::ports::Cloud;
    use crate::tests::fakes::{FakeCloud, NoPace};
    let cloud = FakeCloud::default();
    let document = three_old_amis(&cloud);
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let ec2 = cloud.ec2(&region);
    {
        let mut state = ec2.state();
        let first = state.images.first_mut().expect("image");
        first.deprecation_time = Some(Utc::now() - Duration::days(30));
        let grant = BTreeSet::from([Grant::Account("210987654321".into())]);
        state.launch.insert(format!("ami-{:017x}", 0), grant);
        state
            .failing
            .insert("CreateImageUsageReport", "UnauthorizedOperation".into());
    }
    let request = crate::domain::trigger::RunRequest::default();
    let bin = cloud.recycle_bin(&region);
    let run = ten_minute_run(&region, &document, &request);

    let report = super::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    let gap = report
        .evidence_gaps
        .iter()
        .find(|g| g.call == "CreateImageUsageReport")
        .expect("the refused request is a gap");
    assert!(!gap.transient);
    assert_eq!(report.usage_reports[0].outcome, "failed");
}
