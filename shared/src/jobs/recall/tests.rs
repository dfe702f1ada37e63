//! The recall's tree, table-tested over small fleets.

use chrono::{TimeZone, Utc};

use super::tree::{tree, Descent, Located};
use crate::domain::ids::Region;
use crate::domain::model::{Image, SourceImage};
use crate::domain::tags;

const ACCOUNT: &str = "123456789012";

fn region(name: &str) -> Region {
    name.parse().expect("a region")
}

/// An image in `at`, made from `source` (`(id, region)`, as EC2 records it).
fn image(id: &str, at: &str, source: Option<(&str, &str)>) -> Located {
    let mut image = Image::new(
        id,
        id,
        ACCOUNT,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    );
    image.source = source.map(|(image_id, region)| {
        Box::new(SourceImage {
            image_id: image_id.into(),
            region: region.into(),
        })
    });
    (region(at), image)
}

fn lines(fleet: &[Located], root: &str) -> Vec<(String, String, u32, Descent)> {
    tree(root, fleet)
        .into_iter()
        .map(|m| (m.image_id, m.region.to_string(), m.depth, m.descent))
        .collect()
}

fn line(id: &str, at: &str, depth: u32, descent: Descent) -> (String, String, u32, Descent) {
    (id.into(), at.into(), depth, descent)
}

#[test]
fn the_tree_holds_copies_children_and_their_copies_to_any_depth_and_nothing_else() {
    let fleet = vec![
        image("ami-base", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        image("ami-base-eu", "eu-west-1", Some(("ami-base", "us-east-1"))),
        image("ami-child", "eu-west-1", Some(("ami-base-eu", "eu-west-1"))),
        image(
            "ami-child-us",
            "us-east-1",
            Some(("ami-child", "eu-west-1")),
        ),
        image("ami-other", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        image(
            "ami-other-eu",
            "eu-west-1",
            Some(("ami-other", "us-east-1")),
        ),
    ];

    assert_eq!(
        lines(&fleet, "ami-base"),
        vec![
            line("ami-base", "us-east-1", 0, Descent::Recalled),
            line("ami-base-eu", "eu-west-1", 1, Descent::Copy),
            line("ami-child", "eu-west-1", 2, Descent::CreatedFrom),
            line("ami-child-us", "us-east-1", 3, Descent::Copy),
        ],
        "a copy of a child of a copy, and not the unrelated family"
    );
    assert_eq!(
        lines(&fleet, "ami-child"),
        vec![
            line("ami-child", "eu-west-1", 0, Descent::Recalled),
            line("ami-child-us", "us-east-1", 1, Descent::Copy),
        ],
        "a recall reaches down, never up to the parents"
    );
}

#[test]
fn lineage_tags_count_only_where_ec2_records_no_source_and_say_so() {
    let mut tagged = image("ami-old-copy", "eu-west-1", None);
    tagged
        .1
        .tags
        .insert(tags::SOURCE_IMAGE.into(), "ami-base".into());
    tagged
        .1
        .tags
        .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
    let mut forged = image(
        "ami-real-child",
        "us-east-1",
        Some(("ami-other", "us-east-1")),
    );
    forged
        .1
        .tags
        .insert(tags::SOURCE_IMAGE.into(), "ami-base".into());
    forged
        .1
        .tags
        .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
    let fleet = vec![
        image("ami-base", "us-east-1", None),
        image("ami-other", "us-east-1", None),
        tagged,
        forged,
    ];

    assert_eq!(
        lines(&fleet, "ami-base"),
        vec![
            line("ami-base", "us-east-1", 0, Descent::Recalled),
            line("ami-old-copy", "eu-west-1", 1, Descent::LineageTags),
        ],
        "EC2's record wins over tags that claim another parent"
    );
}

#[test]
fn an_image_nothing_descends_from_makes_no_tree_and_a_loop_ends() {
    let fleet = vec![
        image("ami-a", "us-east-1", Some(("ami-b", "eu-west-1"))),
        image("ami-b", "eu-west-1", Some(("ami-a", "us-east-1"))),
    ];

    assert!(lines(&fleet, "ami-missing").is_empty());
    assert_eq!(
        lines(&fleet, "ami-a"),
        vec![
            line("ami-a", "us-east-1", 0, Descent::Recalled),
            line("ami-b", "eu-west-1", 1, Descent::Copy),
        ],
        "each image once, even where records loop"
    );
}

#[test]
fn a_base_image_the_account_does_not_own_recalls_what_the_account_made_from_it() {
    let fleet = vec![
        image("ami-team", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        image("ami-team-eu", "eu-west-1", Some(("ami-team", "us-east-1"))),
        image(
            "ami-other",
            "us-east-1",
            Some(("ami-other-base", "us-east-1")),
        ),
    ];

    assert_eq!(
        lines(&fleet, "ami-amazon"),
        vec![
            line("ami-team", "us-east-1", 1, Descent::CreatedFrom),
            line("ami-team-eu", "eu-west-1", 2, Descent::Copy),
        ]
    );
}

// ------------------------------------------------------------------------------------------
// The recall run, over the fake account: dry run, real run, a second delivery, disable, undo.
// ------------------------------------------------------------------------------------------

mod run {
    use std::collections::BTreeSet;

    use chrono::Utc;

    use super::image;
    use crate::domain::ids::Region;
    use crate::domain::model::ImageState;
    use crate::domain::tags;
    use crate::domain::trigger::RecallRequest;
    use crate::jobs::recall::plan::Step;
    use crate::jobs::recall::{events, run, RecallLine, RecallOutcome};
    use crate::ports::LaunchTemplateState;
    use crate::tests::fakes::{context, document, FakeCloud};

    const LAUNCH_TEMPLATE: &str = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-1";

    fn regions() -> Vec<Region> {
        ["us-east-1", "eu-west-1"]
            .map(|r| r.parse().expect("region"))
            .to_vec()
    }

    /// base (us) → its copy (eu) → a child made from it (eu) → the child's copy (us); and an
    /// unrelated family in both regions. The child is named by a launch template.
    fn fleet() -> FakeCloud {
        let cloud = FakeCloud::default();
        let us = [
            image("ami-base", "us-east-1", Some(("ami-amazon", "us-east-1"))),
            image(
                "ami-child-us",
                "us-east-1",
                Some(("ami-child", "eu-west-1")),
            ),
            image("ami-other", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        ];
        let eu = [
            image("ami-base-eu", "eu-west-1", Some(("ami-base", "us-east-1"))),
            image("ami-child", "eu-west-1", Some(("ami-base-eu", "eu-west-1"))),
            image(
                "ami-other-eu",
                "eu-west-1",
                Some(("ami-other", "us-east-1")),
            ),
        ];
        cloud.region("us-east-1").state().images = us.into_iter().map(|(_, i)| i).collect();
        let ec2 = cloud.region("eu-west-1");
        ec2.state().images = eu.into_iter().map(|(_, i)| i).collect();
        ec2.state().references.insert(
            "ami-child".into(),
            BTreeSet::from([LAUNCH_TEMPLATE.to_string()]),
        );
        // Its `$Default` (version 1 of 1) launches the child.
        let template = LaunchTemplateState {
            template_id: "lt-1".into(),
            name: "web-servers".into(),
            latest_version: 1,
            default_version: 1,
            latest_image: Some("ami-child".into()),
            default_image: Some("ami-child".into()),
            recorded_default: None,
            opted_in: true,
        };
        ec2.state()
            .templates
            .push((template, vec![Some("ami-child".into())]));
        cloud
    }

    fn request(undo: bool, disable: bool) -> RecallRequest {
        RecallRequest {
            image_id: "ami-base".into(),
            reason: (!undo).then(|| "CVE-2026-1234 in openssl".into()),
            disable,
            undo,
        }
    }

    fn changes(cloud: &FakeCloud) -> Vec<String> {
        let mut out = cloud.region("us-east-1").state().changes.clone();
        out.extend(cloud.region("eu-west-1").state().changes.clone());
        out
    }

    fn summary(lines: &[RecallLine]) -> Vec<(String, Vec<Step>, RecallOutcome)> {
        lines
            .iter()
            .map(|l| (l.member.image_id.clone(), l.steps.clone(), l.outcome))
            .collect()
    }

    /// The wall clock: the deprecations a run sets are at the wall clock's next minute.
    fn now() -> chrono::DateTime<Utc> {
        Utc::now()
    }

    #[tokio::test]
    async fn a_dry_run_says_exactly_what_the_real_run_then_does_to_exactly_the_tree() {
        let cloud = fleet();
        let document = document(r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#);
        let ctx = context(&cloud, &document);

        let dry = run(&ctx, &request(false, false), &regions(), true, now())
            .await
            .expect("a recall");
        assert!(changes(&cloud).is_empty(), "a dry run changes nothing");
        let planned: Vec<_> = summary(&dry)
            .into_iter()
            .map(|(id, steps, _)| (id, steps))
            .collect();
        let ids: Vec<&str> = planned.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["ami-base", "ami-base-eu", "ami-child", "ami-child-us"]
        );
        assert!(dry.iter().all(|l| l.outcome == RecallOutcome::WouldRecall));
        assert_eq!(
            dry[2].used_by,
            [LAUNCH_TEMPLATE],
            "who is affected is listed"
        );

        let real = run(&ctx, &request(false, false), &regions(), false, now())
            .await
            .expect("a recall");
        let done: Vec<_> = summary(&real)
            .into_iter()
            .map(|(id, steps, _)| (id, steps))
            .collect();
        assert_eq!(
            done, planned,
            "the real run takes the steps the dry run said"
        );
        assert!(real.iter().all(|l| l.outcome == RecallOutcome::Recalled));
        let deprecations = changes(&cloud)
            .iter()
            .filter(|c| c.starts_with("EnableImageDeprecation"))
            .count();
        assert_eq!(deprecations, 4);
        assert!(
            changes(&cloud).iter().all(|c| !c.contains("ami-other")),
            "the unrelated family is untouched"
        );
        let announced = events(&real, &request(false, false));
        assert_eq!(
            announced.len(),
            1,
            "one AMI Recalled per run: one publish sweep"
        );
        assert_eq!(announced[0].resources.len(), 4, "naming each image");
    }

    #[tokio::test]
    async fn a_recalled_image_is_refused_by_the_gate_and_a_second_delivery_does_nothing() {
        let cloud = fleet();
        let document = document(r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#);
        let ctx = context(&cloud, &document);
        run(&ctx, &request(false, false), &regions(), false, now())
            .await
            .expect("a recall");
        let made = changes(&cloud).len();

        let again = run(&ctx, &request(false, false), &regions(), false, now())
            .await
            .expect("a recall");
        assert!(again
            .iter()
            .all(|l| l.outcome == RecallOutcome::AlreadyRecalled));
        assert_eq!(changes(&cloud).len(), made, "nothing new");

        let child = cloud.region("eu-west-1").state().images[1].clone();
        assert_eq!(
            child.tags.get(tags::RECALL_OF).map(String::as_str),
            Some("ami-base")
        );
        let policy = &document.policies[0];
        let held = child
            .held_by_gate(policy)
            .expect("the gate holds a recalled image");
        assert!(
            held.contains("recalled") && held.contains("CVE-2026-1234"),
            "{held}"
        );
    }

    #[tokio::test]
    async fn disable_waits_for_what_names_an_image_and_undo_puts_back_what_the_recall_set() {
        let cloud = fleet();
        let document = document(r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#);
        let ctx = context(&cloud, &document);

        let recalled = run(&ctx, &request(false, true), &regions(), false, now())
            .await
            .expect("a recall");
        let child = &recalled[2];
        assert_eq!(child.member.image_id, "ami-child");
        assert!(
            !child.steps.contains(&Step::Disable),
            "a launch template still names it"
        );
        assert!(child.note.as_deref().is_some_and(|n| n.contains("lt-1")));
        let disabled: Vec<&str> = recalled
            .iter()
            .filter(|l| l.steps.contains(&Step::Disable))
            .map(|l| l.member.image_id.as_str())
            .collect();
        assert_eq!(disabled, ["ami-base", "ami-base-eu", "ami-child-us"]);

        let undone = run(&ctx, &request(true, false), &regions(), false, now())
            .await
            .expect("an undo");
        assert!(undone.iter().all(|l| l.outcome == RecallOutcome::Undone));
        assert_eq!(
            undone[0].steps,
            [Step::Enable, Step::CancelDeprecation, Step::Unmark]
        );
        for region in ["us-east-1", "eu-west-1"] {
            for image in &cloud.region(region).state().images {
                assert!(
                    !image.tags.contains_key(tags::RECALLED),
                    "{} unmarked",
                    image.id
                );
                assert_eq!(image.state, ImageState::Available);
                assert_eq!(image.deprecation_time, None, "{}", image.id);
            }
        }
    }

    #[tokio::test]
    async fn an_ami_the_account_does_not_hold_is_refused_naming_the_field() {
        let cloud = fleet();
        let document = document(r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#);
        let ctx = context(&cloud, &document);
        let mut missing = request(false, false);
        missing.image_id = "ami-0123456789abcdef0".into();

        let err = run(&ctx, &missing, &regions(), false, now())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("$.recall.image_id"), "{err}");
        assert!(changes(&cloud).is_empty());
    }

    #[tokio::test]
    async fn a_link_only_tags_claim_is_listed_not_acted_on_and_kms_down_defers_an_undo() {
        let cloud = fleet();
        let (_, mut claimed) = image("ami-old-copy", "eu-west-1", None);
        claimed
            .tags
            .insert(tags::SOURCE_IMAGE.into(), "ami-base".into());
        claimed
            .tags
            .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
        cloud.region("eu-west-1").state().images.push(claimed);
        let document = document(r#"{"policies": [{"name": "web", "retain": {"keep_latest": 1}}]}"#);
        let ctx = context(&cloud, &document);

        let lines = run(&ctx, &request(false, false), &regions(), false, now())
            .await
            .expect("a recall");
        let old = lines
            .iter()
            .find(|l| l.member.image_id == "ami-old-copy")
            .expect("listed");
        assert_eq!(old.outcome, RecallOutcome::Unconfirmed);
        assert!(old.steps.is_empty());
        let touched: Vec<String> = changes(&cloud)
            .into_iter()
            .filter(|c| c.contains("ami-old-copy") && !c.starts_with("CreateImageUsageReport"))
            .collect();
        assert!(
            touched.is_empty(),
            "nothing is done to an image only tags tie to the recall: {touched:?}"
        );

        cloud
            .kms_unavailable
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let made = changes(&cloud).len();
        let undo = run(&ctx, &request(true, false), &regions(), false, now())
            .await
            .expect("an undo");
        assert!(
            undo.iter()
                .filter(|l| l.member.image_id != "ami-old-copy")
                .all(|l| l.outcome == RecallOutcome::Deferred),
            "a mark KMS cannot check is neither believed nor removed"
        );
        assert_eq!(changes(&cloud).len(), made, "nothing changed");
    }
}
