//! The share's planner and executor, against in-memory fakes of the ports.

use std::collections::BTreeSet;

use super::plan::*;
use crate::domain::grant::Grant;
use crate::domain::policy::{Deployment, PolicyDocument, Share};

fn share(json: &str, allow_public: bool) -> Share {
    let doc = format!(r#"{{"policies": [{{"name": "p", "share": {json}}}]}}"#);
    let d = PolicyDocument::parse(
        &doc,
        Deployment {
            allow_public_sharing: allow_public,
            ..Deployment::default()
        },
    )
    .expect("policy");
    d.policies[0].share.clone().expect("share")
}

#[test]
fn reconcile_adds_what_is_missing_and_removes_what_the_policy_no_longer_lists() {
    let s = share(r#"{"accounts": ["111122223333", "444455556666"]}"#, false);
    let current = BTreeSet::from([
        Grant::Account("111122223333".into()),
        Grant::Account("999988887777".into()),
        Grant::Public,
    ]);
    let (add, remove) = diff(&current, &desired(&s, false));
    assert_eq!(add, vec![Grant::Account("444455556666".into())]);
    assert_eq!(
        remove,
        vec![Grant::Account("999988887777".into()), Grant::Public]
    );
}

#[test]
fn nothing_to_change_means_no_change() {
    let s = share(
        r#"{"accounts": ["111122223333"], "organizations": ["arn:aws:organizations::111122223333:organization/o-abcde12345"]}"#,
        false,
    );
    let wanted = desired(&s, false);
    assert_eq!(diff(&wanted, &wanted), (vec![], vec![]));
}

#[test]
fn public_is_desired_only_when_the_policy_and_the_deployment_both_allow_it() {
    let s = share(r#"{"public": true}"#, true);
    assert!(desired(&s, true).contains(&Grant::Public));
    assert!(!desired(&s, false).contains(&Grant::Public));
}

use proptest::prelude::*;

use super::{events, run, ShareOutcome, ShareResult};
use crate::domain::deadline::Deadline;
use crate::domain::ids::Region;
use crate::domain::model::ImageState;
use crate::domain::trigger::RunRequest;
use crate::ports::KeyInfo;
use crate::tests::fakes::{context, document, managed_image, FakeCloud};

const DOC: &str = r#"{"policies": [{"name": "web",
    "share": {"accounts": ["111111111111", "222222222222"], "public": true, "snapshots": true}}]}"#;

fn account(a: &str) -> Grant {
    Grant::Account(a.into())
}

fn region() -> Region {
    "us-east-1".parse().expect("region")
}

/// One managed AMI with one snapshot, shared with an account the policy no longer lists.
fn seeded(image: impl FnOnce(&mut crate::domain::model::Image)) -> FakeCloud {
    let cloud = FakeCloud::default();
    let ec2 = cloud.region("us-east-1");
    let mut ami = managed_image("ami-0000000000000001a", "web-1", "web");
    ami.snapshot_ids = vec!["snap-0000000000000001a".into()];
    image(&mut ami);
    let mut state = ec2.state();
    state.images = vec![ami];
    state.launch.insert(
        "ami-0000000000000001a".into(),
        BTreeSet::from([account("999999999999")]),
    );
    cloud
}

async fn share_all(cloud: &FakeCloud, dry_run: bool) -> Vec<ShareResult> {
    let doc = document(DOC);
    run(
        &context(cloud, &doc),
        &RunRequest::default(),
        &[region()],
        dry_run,
    )
    .await
}

#[test]
fn a_run_selects_only_what_a_policy_shares_and_names_what_it_does_not() {
    let doc = document(DOC);
    let images = vec![
        managed_image("ami-0000000000000001a", "web-1", "web"),
        managed_image("ami-0000000000000002a", "other-1", "other"),
    ];
    let ids: Vec<String> = [
        "ami-0000000000000001a",
        "ami-0000000000000002a",
        "ami-0000000000000003a",
    ]
    .map(String::from)
    .to_vec();
    let (work, lines) = select(&images, Some(&ids), None, &doc, &region());
    assert_eq!(
        work.iter().map(|(i, _)| i.id.as_str()).collect::<Vec<_>>(),
        ["ami-0000000000000001a"]
    );
    let outcomes: Vec<_> = lines
        .iter()
        .map(|l| (l.image_id.as_str(), l.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("ami-0000000000000002a", ShareOutcome::Skipped),
            ("ami-0000000000000003a", ShareOutcome::Refused)
        ]
    );
    let (sweep, lines) = select(&images, None, Some(&["other".to_string()]), &doc, &region());
    assert!(sweep.is_empty() && lines.is_empty(), "policy filter");
}

#[tokio::test]
async fn a_run_reconciles_then_a_second_run_changes_nothing() {
    let cloud = seeded(|_| {});
    let first = share_all(&cloud, false).await;
    assert_eq!(first.len(), 1);
    let r = &first[0];
    assert_eq!(r.outcome, ShareOutcome::Changed);
    assert_eq!(
        r.add,
        [
            account("111111111111"),
            account("222222222222"),
            Grant::Public
        ]
    );
    assert_eq!(r.remove, [account("999999999999")]);
    assert_eq!(
        r.snapshot_add["snap-0000000000000001a"],
        [account("111111111111"), account("222222222222")]
    );
    let kinds: Vec<String> = events(&first).into_iter().map(|e| e.detail_type).collect();
    assert_eq!(kinds, ["AMI Shared", "AMI Unshared"]);
    let calls = cloud.region("us-east-1").state().changes.len();
    let again = share_all(&cloud, false).await;
    assert_eq!(again[0].outcome, ShareOutcome::Unchanged);
    assert!(events(&again).is_empty());
    assert_eq!(
        cloud.region("us-east-1").state().changes.len(),
        calls,
        "no call the second time"
    );
}

#[tokio::test]
async fn public_is_refused_on_its_own_and_the_other_grants_still_go_through() {
    for (why, setup) in [
        (
            "encrypted",
            Box::new(|c: &FakeCloud| {
                c.region("us-east-1").state().images[0].encrypted = true;
            }) as Box<dyn Fn(&FakeCloud)>,
        ),
        (
            "block public access",
            Box::new(|c: &FakeCloud| {
                c.region("us-east-1").state().block_public_access = true;
            }),
        ),
        (
            "product codes",
            Box::new(|c: &FakeCloud| {
                c.region("us-east-1").state().images[0].has_product_codes = true;
            }),
        ),
    ] {
        let cloud = seeded(|_| {});
        setup(&cloud);
        let r = &share_all(&cloud, false).await[0];
        assert_eq!(r.outcome, ShareOutcome::Changed, "{why}");
        assert!(!r.add.contains(&Grant::Public), "{why}");
        assert!(
            r.public_refused.as_deref().is_some_and(|p| p.contains(why)),
            "{why}: {r:?}"
        );
        assert!(
            crate::jobs::Line::failed(r),
            "{why}: a refused public is a partial failure"
        );
        let grants = cloud.region("us-east-1").state().launch["ami-0000000000000001a"].clone();
        assert!(grants.contains(&account("111111111111")) && !grants.contains(&Grant::Public));
    }
}

#[tokio::test]
async fn an_aws_managed_key_refuses_the_share_and_changes_nothing() {
    let cloud = seeded(|i| i.encrypted = true);
    cloud
        .region("us-east-1")
        .state()
        .snapshot_keys
        .insert("snap-0000000000000001a".into(), "key-aws".into());
    cloud.keys.aws_managed("key-aws");
    let r = &share_all(&cloud, false).await[0];
    assert_eq!(r.outcome, ShareOutcome::Refused);
    assert!(r
        .reason
        .as_deref()
        .is_some_and(|w| w.contains("AWS managed key key-aws")));
    assert!(cloud.region("us-east-1").state().changes.is_empty());
}

#[tokio::test]
async fn throttling_defers_failure_fails_the_deadline_defers_and_dry_run_plans() {
    let table = [
        (Some("RequestLimitExceeded"), false, ShareOutcome::Deferred),
        (Some("UnauthorizedOperation"), false, ShareOutcome::Failed),
        (None, true, ShareOutcome::Planned),
    ];
    for (code, dry_run, want) in table {
        let cloud = seeded(|_| {});
        if let Some(code) = code {
            cloud
                .region("us-east-1")
                .fail("DescribeImageAttribute", code);
        }
        let r = &share_all(&cloud, dry_run).await[0];
        assert_eq!(r.outcome, want, "{code:?}");
        assert!(
            cloud.region("us-east-1").state().changes.is_empty(),
            "{code:?}"
        );
    }
    let cloud = seeded(|_| {});
    let doc = document(DOC);
    let mut ctx = context(&cloud, &doc);
    ctx.deadline = Deadline::passed_already();
    let r = &run(&ctx, &RunRequest::default(), &[region()], false).await[0];
    assert_eq!(r.outcome, ShareOutcome::Deferred);
    let cloud = seeded(|i| i.state = ImageState::Disabled);
    assert_eq!(
        share_all(&cloud, false).await[0].outcome,
        ShareOutcome::Skipped
    );
}

fn grants() -> impl Strategy<Value = BTreeSet<Grant>> {
    prop::collection::btree_set(
        prop_oneof![
            "[0-9]{12}".prop_map(Grant::Account),
            Just(Grant::Public),
            Just(Grant::Organization(
                "arn:aws:organizations::111122223333:organization/o-abcde12345".into()
            )),
        ],
        0..6,
    )
}

proptest! {
    /// Safety of the share: applying the diff makes the permissions exactly the policy's;
    /// public is wanted only when the policy and the deployment both say so; snapshots are
    /// never given to everyone.
    #[test]
    fn reconciling_reaches_exactly_the_policy_and_never_public_unasked(
        current in grants(),
        accounts in prop::collection::btree_set("[0-9]{12}", 0..4),
        public in any::<bool>(),
        allow_public in any::<bool>(),
    ) {
        let policy = format!(r#"{{"accounts": {}, "public": {public}}}"#, serde_json::json!(accounts));
        let s = share(&policy, true);
        let wanted = desired(&s, allow_public);
        prop_assert_eq!(wanted.contains(&Grant::Public), public && allow_public);
        prop_assert!(!snapshot_grants(&wanted).contains(&Grant::Public));
        let (add, remove) = diff(&current, &wanted);
        let mut after = current.clone();
        after.extend(add.iter().cloned());
        after.retain(|g| !remove.contains(g));
        prop_assert_eq!(&after, &wanted);
        prop_assert!(add.iter().all(|g| !current.contains(g)));
        prop_assert!(remove.iter().all(|g| current.contains(g)));
    }
}

async fn share_with(cloud: &FakeCloud, doc: &str) -> Vec<ShareResult> {
    let doc = document(doc);
    run(
        &context(cloud, &doc),
        &RunRequest::default(),
        &[region()],
        false,
    )
    .await
}

fn encrypted_with(key: &str) -> FakeCloud {
    let cloud = seeded(|i| i.encrypted = true);
    cloud
        .region("us-east-1")
        .state()
        .snapshot_keys
        .insert("snap-0000000000000001a".into(), key.into());
    cloud
}

#[tokio::test]
async fn kms_grants_follow_the_target_accounts_and_each_policy_keeps_its_own() {
    let cloud = encrypted_with("key-cmk");
    // Another policy's grant on the same key is never retired by this one.
    cloud
        .keys
        .create_grant("key-cmk", "333333333333", "ami-share:db:333333333333")
        .await
        .expect("grant");
    cloud
        .keys
        .create_grant("key-cmk", "444444444444", "ami-share:web-prod:444444444444")
        .await
        .expect("grant");
    let two = r#"{"policies": [{"name": "web", "share": {"accounts": ["111111111111", "222222222222"], "kms_grants": true}}]}"#;
    let r = &share_with(&cloud, two).await[0];
    assert_eq!(r.outcome, ShareOutcome::Changed, "{r:?}");
    assert_eq!(
        r.kms_grants_created,
        ["key-cmk → 111111111111", "key-cmk → 222222222222"]
    );
    assert!(r.launch.iter().all(|a| a.can_launch == Some(true)), "{r:?}");
    let names = |cloud: &FakeCloud| -> Vec<String> {
        let grants = cloud.keys.grants.lock().unwrap_or_else(|p| p.into_inner());
        let mut n: Vec<String> = grants["key-cmk"].iter().map(|g| g.name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&cloud),
        [
            "ami-share:db:333333333333",
            "ami-share:web-prod:444444444444",
            "ami-share:web:111111111111",
            "ami-share:web:222222222222"
        ]
    );
    // Again: nothing to change.
    let again = &share_with(&cloud, two).await[0];
    assert_eq!(again.outcome, ShareOutcome::Unchanged, "{again:?}");
    // One account dropped: its grant is retired, with the launch permission.
    let one = r#"{"policies": [{"name": "web", "share": {"accounts": ["111111111111"], "kms_grants": true}}]}"#;
    let r = &share_with(&cloud, one).await[0];
    assert_eq!(
        r.kms_grants_retired,
        ["key-cmk → arn:aws:iam::222222222222:root"]
    );
    assert_eq!(
        names(&cloud),
        [
            "ami-share:db:333333333333",
            "ami-share:web-prod:444444444444",
            "ami-share:web:111111111111"
        ]
    );
}

#[tokio::test]
async fn without_grants_or_a_key_policy_a_target_cannot_launch_and_is_told_why() {
    let cloud = encrypted_with("key-cmk");
    let doc = r#"{"policies": [{"name": "web", "share": {"accounts": ["111111111111"],
        "organizations": ["arn:aws:organizations::111122223333:organization/o-abcde12345"],
        "organizational_units": ["arn:aws:organizations::111122223333:ou/o-abcde12345/ou-ab12-cdefgh12"]}}]}"#;
    let r = &share_with(&cloud, doc).await[0];
    let by = |prefix: &str| {
        r.launch
            .iter()
            .find(|a| a.target.to_string().starts_with(prefix))
            .expect(prefix)
            .clone()
    };
    let account = by("account:");
    assert_eq!(account.can_launch, Some(false));
    assert!(account
        .why_not
        .as_deref()
        .is_some_and(|w| w.contains("share.kms_grants")));
    let org = by("organization:");
    assert_eq!(org.can_launch, Some(false));
    assert_eq!(
        org.key_policy_statement
            .as_ref()
            .map(|s| s["Condition"]["StringEquals"]["aws:PrincipalOrgID"].clone()),
        Some(serde_json::json!("o-abcde12345"))
    );
    let ou = by("ou:");
    assert_eq!(
        ou.key_policy_statement
            .as_ref()
            .map(|s| s["Condition"]["ForAnyValue:StringLike"]["aws:PrincipalOrgPaths"][0].clone()),
        Some(serde_json::json!("o-abcde12345/*/ou-ab12-cdefgh12/*"))
    );
    // The key policy with the statement for the organization: now it can.
    let statement = org.key_policy_statement.expect("statement");
    cloud
        .keys
        .policies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            "key-cmk".into(),
            serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}).to_string(),
        );
    let r = &share_with(&cloud, doc).await[0];
    assert!(
        r.launch.iter().any(
            |a| a.target.to_string().starts_with("organization:") && a.can_launch == Some(true)
        ),
        "{r:?}"
    );
    // An unencrypted AMI: every target can launch.
    let plain = seeded(|_| {});
    let r = &share_with(&plain, doc).await[0];
    assert!(r.launch.iter().all(|a| a.can_launch == Some(true)));
}

#[test]
fn a_key_policy_allows_a_target_only_with_the_actions_launching_needs() {
    let org =
        Grant::Organization("arn:aws:organizations::111122223333:organization/o-abcde12345".into());
    let cases = [
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]}"#,
            account("111111111111"),
            true,
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": ["111111111111"]}, "Action": ["kms:Decrypt", "kms:CreateGrant"], "Resource": "*"}}"#,
            account("111111111111"),
            true,
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": ["kms:Decrypt"], "Resource": "*"}]}"#,
            account("111111111111"),
            false,
        ),
        (
            r#"{"Statement": [{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]}"#,
            account("111111111111"),
            false,
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"}]}"#,
            account("111111111111"),
            false,
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcde12345"}}}]}"#,
            org.clone(),
            true,
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-other"}}}]}"#,
            org,
            false,
        ),
        ("not json", account("111111111111"), false),
    ];
    for (policy, target, want) in cases {
        assert_eq!(
            key_policy_allows(policy, &target),
            want,
            "{policy} {target}"
        );
    }
}
