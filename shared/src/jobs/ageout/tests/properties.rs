//! Properties: for random fleets, documents and filters, the safety rules always hold.

use super::*;

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
pub(super) struct World {
    pub(super) images: Vec<Image>,
    pub(super) snapshots: Vec<Snapshot>,
    pub(super) usage: Usage,
    pub(super) document: PolicyDocument,
    pub(super) policies: Option<Vec<String>>,
    pub(super) image_ids: Option<Vec<String>>,
}

pub(super) fn retain_json() -> impl Strategy<Value = String> {
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

pub(super) fn world() -> impl Strategy<Value = World> {
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
