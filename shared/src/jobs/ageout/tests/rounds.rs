//! Rounds, deadlines and continuations: what a run reads, defers and leaves for the next.

use super::properties::world;
use super::run::three_old_amis;
use super::*;

#[test]
fn a_run_continues_only_when_time_alone_stopped_it() {
    use crate::domain::trigger::RunRequest;
    use crate::domain::Decision;
    use crate::jobs::ageout::continuation::{next, request_for};
    use crate::jobs::ageout::execute::{ActionReport, Outcome};
    let region: crate::domain::ids::Region = "us-east-1".parse().expect("region");
    let line = |outcome| ActionReport {
        action: crate::jobs::ageout::plan::Action {
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
    let report = |complete, dry_run, outcomes: &[Outcome]| crate::jobs::ageout::Report {
        function: crate::jobs::ageout::FUNCTION,
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
    let cases: [(
        &str,
        crate::jobs::ageout::Report,
        &RunRequest,
        u32,
        Option<u32>,
    ); 7] = [
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
        let got = match next(
            &crate::jobs::ageout::continuation::Progress::of(&r),
            request,
            max,
        ) {
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
) -> crate::jobs::ageout::RegionRun<'a> {
    crate::jobs::ageout::RegionRun {
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
fn deregistered(report: &crate::jobs::ageout::RegionReport) -> Vec<String> {
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
    let first =
        crate::jobs::ageout::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &run).await;
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
    let unbounded = crate::jobs::ageout::RegionRun {
        deadline: crate::domain::deadline::Deadline::none(),
        ..run
    };
    let second =
        crate::jobs::ageout::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &unbounded).await;
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
    let dry = crate::jobs::ageout::run_region(
        &ec2,
        &bin,
        (&NoPace, &NoPace),
        &crate::jobs::ageout::RegionRun {
            dry_run: true,
            ..run
        },
    )
    .await;
    ec2.state().attribute_reads.clear();
    let real = crate::jobs::ageout::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    // It deregistered while it was still reading share states: its first read came before
    // any change, its last after some.
    let reads = ec2.state().attribute_reads.clone();
    assert_eq!(reads.len(), amis - 1);
    assert_eq!(reads.first(), Some(&0));
    assert!(reads.last() > Some(&0), "{reads:?}");

    // Each action once, the same as the dry run's, and all done.
    let keys = |r: &crate::jobs::ageout::RegionReport| {
        r.plan
            .iter()
            .map(|a| crate::jobs::ageout::action_key(&a.action))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(&real).len(), real.plan.len(), "an action twice");
    assert_eq!(keys(&real), keys(&dry));
    assert_eq!(deregistered(&real).len(), amis - 1);
    assert!(real.plan.iter().all(|a| matches!(
        a.outcome,
        crate::jobs::ageout::Outcome::Done | crate::jobs::ageout::Outcome::DeletedWithImage
    )));
    let shared = real
        .plan
        .iter()
        .find(|a| a.action.snapshot_id.as_deref() == Some("snap-shared"))
        .map(|a| a.outcome);
    assert_eq!(shared, Some(crate::jobs::ageout::Outcome::DeletedWithImage));
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
    let report = crate::jobs::ageout::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

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
        Some(crate::jobs::ageout::Outcome::Deferred)
    );
    // The newer AMI that shares the snapshot went in a later round; the snapshot stays, left
    // for the next run, and is no orphan.
    let newer = format!("ami-{:017x}", amis - 2);
    assert_eq!(
        outcome(ActionKind::Deregister, &newer),
        Some(crate::jobs::ageout::Outcome::Done)
    );
    assert_eq!(
        outcome(ActionKind::DeleteSnapshot, "snap-shared"),
        Some(crate::jobs::ageout::Outcome::Deferred)
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
    let report =
        crate::jobs::ageout::run_region(&ec2, &bin, (&Capacity(1), &Capacity(1)), &run).await;
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
        let key = |a: &crate::jobs::ageout::plan::Action| crate::jobs::ageout::action_key(a);
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

    let report = crate::jobs::ageout::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

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
    let region = crate::jobs::ageout::RegionReport {
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

    let (named, total) = crate::jobs::ageout::gaps_summary(&[region]);

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

    let report = crate::jobs::ageout::run_region(&ec2, &bin, (&NoPace, &NoPace), &run).await;

    let gap = report
        .evidence_gaps
        .iter()
        .find(|g| g.call == "CreateImageUsageReport")
        .expect("the refused request is a gap");
    assert!(!gap.transient);
    assert_eq!(report.usage_reports[0].outcome, "failed");
}
