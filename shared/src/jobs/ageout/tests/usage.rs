//! Shared AMIs: retired only when a usage report made late enough shows no other account uses them.

use super::*;

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
