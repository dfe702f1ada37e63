//! The planner: table-driven cases and property tests of the safety rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::plan::{plan, ActionKind, KeepReason, Plan, PlanInput};
use crate::model::{EvidenceGap, Image, ImageState, Snapshot, TemplateUse, Usage};
use crate::policy::{Deployment, PolicyDocument};

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
    i
}

fn snapshots_of(images: &[Image]) -> Vec<Snapshot> {
    images
        .iter()
        .flat_map(|i| i.snapshot_ids.iter().map(move |s| (s, i)))
        .map(|(s, i)| Snapshot {
            id: s.clone(),
            owner_id: i.owner_id.clone(),
            description: format!("Created by CreateImage(i-1) for {}", i.id),
            started: i.created,
            tags: BTreeMap::new(),
        })
        .collect()
}

fn run(document: &PolicyDocument, images: &[Image], usage: &Usage) -> Plan {
    let snapshots = snapshots_of(images);
    plan(PlanInput {
        account_id: ME,
        images,
        snapshots: &snapshots,
        usage,
        document,
        policies: None,
        image_ids: None,
        as_of: now(),
    })
}

fn action_of(p: &Plan, id: &str) -> Option<ActionKind> {
    p.actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some(id) && a.action != ActionKind::DeleteSnapshot)
        .map(|a| a.action)
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
        description: "Created by CreateImage(i-9) for ami-gone".into(),
        started: Some(now() - Duration::days(100)),
        tags: BTreeMap::from([("Family".to_string(), "a".to_string())]),
    });
    let p = plan(PlanInput {
        account_id: ME,
        images: &images,
        snapshots: &snapshots,
        usage: &Usage::default(),
        document: &d,
        policies: None,
        image_ids: None,
        as_of: now(),
    });
    let deleted: BTreeSet<&str> = p
        .actions
        .iter()
        .filter(|a| a.action == ActionKind::DeleteSnapshot)
        .filter_map(|a| a.snapshot_id.as_deref())
        .collect();
    assert_eq!(deleted, BTreeSet::from(["snap-own", "snap-orphan"]));
    assert!(p
        .snapshots_kept
        .iter()
        .any(|s| s.snapshot_id == "snap-shared" && s.reason.contains("keeper")));
    assert_eq!(p.orphans.len(), 1);
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
        .all(|a| a.action != ActionKind::DeleteSnapshot));
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
    let mut private = image("private", "a", 70);
    private.shared = Some(false);
    let unknown = image("unknown", "a", 70);
    let mut old_shared = image("old-shared", "a", 100);
    old_shared.shared = Some(true);
    let images = [image("n", "a", 1), shared, private, unknown, old_shared];
    let p = run(&sharing_doc(""), &images, &Usage::default());
    assert_eq!(kept_for(&p, "shared"), Some(KeepReason::Shared));
    assert_eq!(action_of(&p, "private"), Some(ActionKind::Disable));
    // Unknown share state keeps it, and asks for exactly that image's share state.
    assert_eq!(kept_for(&p, "unknown"), Some(KeepReason::Shared));
    assert_eq!(p.share_state_needed, vec!["unknown".to_string()]);
    // Deregistration is not DisableImage: a shared AMI past max_age_days still goes.
    assert_eq!(action_of(&p, "old-shared"), Some(ActionKind::Deregister));

    let p = run(
        &sharing_doc(r#", "disable_shared_images": true"#),
        &images,
        &Usage::default(),
    );
    assert_eq!(action_of(&p, "shared"), Some(ActionKind::Disable));
    assert!(p.share_state_needed.is_empty());
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
// Properties: for random fleets the safety rules always hold.
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Fleet {
    images: Vec<Image>,
    usage: Usage,
    keep_latest: u32,
}

fn fleet() -> impl Strategy<Value = Fleet> {
    let one = (
        0usize..3,
        0i64..400,
        0u8..10,
        0usize..6,
        0usize..6,
        any::<bool>(),
    );
    (proptest::collection::vec(one, 1..40), 0u32..4).prop_map(|(specs, keep_latest)| {
        let mut usage = Usage::default();
        let images =
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (family, days, flag, snap_a, snap_b, disabled))| {
                    let id = format!("ami-{n}");
                    let mut i = image(&id, ["a", "b", "c"][family], days);
                    i.snapshot_ids = vec![
                        format!("snap-{snap_a}"),
                        format!("snap-x{n}"),
                        format!("snap-{}", snap_b + 10),
                    ];
                    match flag {
                        0 => i.owner_id = OTHER.into(),
                        1 => {
                            usage
                                .instances
                                .insert(id.clone(), BTreeSet::from(["i-1".to_string()]));
                        }
                        2 => usage.launch_templates.entry(id.clone()).or_default().push(
                            TemplateUse {
                                template_id: "lt-1".into(),
                                version: 1,
                                is_default: true,
                                newer_versions: 2,
                            },
                        ),
                        3 => {
                            i.tags.insert("Retain".into(), "true".into());
                        }
                        4 => i.deregistration_protection = true,
                        5 => i.last_launched = Some(now() - Duration::days(1)),
                        6 => usage.gaps.push(EvidenceGap {
                            call: "DescribeImageReferences".into(),
                            code: Some("InternalError".into()),
                            error: "injected".into(),
                            transient: true,
                            images: Some(BTreeSet::from([id.clone()])),
                        }),
                        _ => {}
                    }
                    if disabled {
                        i.state = ImageState::Disabled;
                    }
                    i
                })
                .collect();
        Fleet {
            images,
            usage,
            keep_latest,
        }
    })
}

proptest! {
    #[test]
    fn the_safety_rules_hold_for_any_fleet(f in fleet()) {
        let d = doc(&format!(
            r#"{{"keep_latest": {}, "deprecate_after_days": 30, "disable_after_days": 60, "max_age_days": 90,
                "protect_tags": {{"Retain": "true"}}, "exclude_launched_within_days": 7}}"#,
            f.keep_latest.max(1)
        ));
        let snapshots = {
            let mut s = snapshots_of(&f.images);
            s.sort_by(|a, b| a.id.cmp(&b.id));
            s.dedup_by(|a, b| a.id == b.id);
            s
        };
        let p = plan(PlanInput { account_id: ME, images: &f.images, snapshots: &snapshots, usage: &f.usage,
            document: &d, policies: None, image_ids: None, as_of: now() });
        let by_id: HashMap<&str, &Image> = f.images.iter().map(|i| (i.id.as_str(), i)).collect();

        // Never an action on an in-use, protected, foreign or recently launched image.
        for a in p.actions.iter().filter(|a| a.action != ActionKind::DeleteSnapshot) {
            let id = a.image_id.as_deref().unwrap_or_default();
            let i = by_id[id];
            prop_assert_eq!(&i.owner_id, ME);
            prop_assert!(!f.usage.instances.contains_key(id));
            prop_assert!(!f.usage.launch_templates.contains_key(id));
            prop_assert!(i.tags.get("Retain").map(String::as_str) != Some("true"));
            prop_assert!(!i.deregistration_protection);
            prop_assert!(i.last_launched.is_none());
            // Fail closed: an image whose evidence is missing is at most deprecated.
            if f.usage.gap_for(id).is_some() {
                prop_assert_eq!(a.action, ActionKind::Deprecate, "{} has no evidence", id);
            }
        }

        // Never a snapshot that a remaining image uses, or one the account does not own.
        let deregistered: HashSet<&str> = p.actions.iter().filter(|a| a.action == ActionKind::Deregister)
            .filter_map(|a| a.image_id.as_deref()).collect();
        let still_used: HashSet<&str> = f.images.iter().filter(|i| !deregistered.contains(i.id.as_str()))
            .flat_map(|i| i.snapshot_ids.iter().map(String::as_str)).collect();
        for a in p.actions.iter().filter(|a| a.action == ActionKind::DeleteSnapshot) {
            let snap = a.snapshot_id.as_deref().unwrap_or_default();
            prop_assert!(!still_used.contains(snap), "{} is still used", snap);
            prop_assert!(snapshots.iter().any(|s| s.id == snap && s.owner_id == ME));
        }

        // The newest keep_latest launchable (available) AMIs of each family (owned images) are
        // never acted on: a disabled, pending or failed newer AMI does not push them out.
        let keep = f.keep_latest.max(1) as usize;
        let mut families: BTreeMap<&str, Vec<&Image>> = BTreeMap::new();
        for i in f.images.iter().filter(|i| i.owner_id == ME && i.state == ImageState::Available) {
            families.entry(i.tags["Family"].as_str()).or_default().push(i);
        }
        for members in families.values_mut() {
            members.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
            for i in members.iter().take(keep) {
                prop_assert!(p.actions.iter().all(|a| a.image_id.as_deref() != Some(i.id.as_str())
                    || a.action == ActionKind::DeleteSnapshot), "{} is among the newest", i.id);
            }
        }
    }
}
