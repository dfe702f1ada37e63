//! The copy's planner and executor, against in-memory fakes of the ports.

use super::*;
use crate::domain::policy::CopyDestination;

#[test]
fn the_client_token_is_stable_fits_ec2s_limit_and_changes_with_every_copy_parameter() {
    let (source, dest): (Region, Region) = (
        "us-east-1".parse().expect("region"),
        "ap-southeast-7".parse().expect("region"),
    );
    let plain = CopyDestination::default();
    let keyed = CopyDestination {
        encrypted: true,
        kms_key_id: Some("alias/ami".into()),
    };
    let key = CopyKey {
        source: "ami-0123456789abcdef0",
        source_region: &source,
        destination: &dest,
        name: "web-20261125T030000Z",
        how: &plain,
        attempt: 1,
    };
    let a = client_token(&key);
    assert_eq!(a, client_token(&key), "the same copy gets the same token");
    assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    let variants = [
        CopyKey {
            source: "ami-0123456789abcdef1",
            ..key
        },
        CopyKey {
            destination: &source,
            ..key
        },
        CopyKey {
            name: "web-other",
            ..key
        },
        CopyKey { how: &keyed, ..key },
        CopyKey { attempt: 2, ..key },
    ];
    for v in variants {
        assert_ne!(client_token(&v), a, "{v:?}");
    }
}

use proptest::prelude::*;

use super::plan::*;
use crate::domain::deadline::Deadline;
use crate::domain::model::{CopyFound, Image, ImageState};
use crate::domain::tags;
use crate::domain::trigger::RunRequest;
use crate::tests::fakes::{context, document, managed_image, FakeCloud};

const DOC: &str = r#"{"policies": [{"name": "web",
    "copy": {"regions": {"eu-west-1": {"encrypted": true}, "us-east-1": {}}}}]}"#;

fn found(id: &str, state: ImageState, attempt: u32) -> CopyFound {
    CopyFound {
        image_id: id.into(),
        state,
        state_reason: None,
        attempt,
    }
}

#[test]
fn a_failed_copy_is_no_copy_and_the_next_attempt_follows_the_highest() {
    use ImageState::*;
    let table = [
        (
            vec![],
            Step::Copy {
                attempt: 1,
                failed: vec![],
            },
        ),
        (
            vec![found("ami-1", Available, 1)],
            Step::Exists("ami-1".into()),
        ),
        (
            vec![found("ami-1", Pending, 1)],
            Step::Exists("ami-1".into()),
        ),
        (
            vec![found("ami-1", Failed, 1), found("ami-2", Failed, 2)],
            Step::Copy {
                attempt: 3,
                failed: vec![found("ami-1", Failed, 1), found("ami-2", Failed, 2)],
            },
        ),
        (
            vec![found("ami-1", Failed, 1), found("ami-2", Pending, 2)],
            Step::Exists("ami-2".into()),
        ),
    ];
    for (copies, want) in table {
        assert_eq!(step(copies.clone()), want, "{copies:?}");
    }
}

fn region(name: &str) -> Region {
    name.parse().expect("region")
}

fn seeded(state: ImageState) -> FakeCloud {
    let cloud = FakeCloud::default();
    let mut image = managed_image("ami-0000000000000001a", "web-1", "web");
    image.state = state;
    cloud.region("us-east-1").state().images = vec![image];
    cloud
}

async fn copy_all(cloud: &FakeCloud, dry_run: bool) -> Vec<CopyResult> {
    let doc = document(DOC);
    let (results, ignored) = run(
        &context(cloud, &doc),
        &RunRequest::default(),
        &[region("us-east-1")],
        dry_run,
        false,
    )
    .await;
    assert_eq!(ignored, None);
    results
}

#[tokio::test]
async fn a_copy_is_made_once_into_each_other_region_with_its_lineage() {
    let cloud = seeded(ImageState::Available);
    let first = copy_all(&cloud, false).await;
    assert_eq!(
        first.len(),
        1,
        "never into the source's own region: {first:?}"
    );
    assert_eq!(first[0].outcome, CopyOutcome::Started);
    assert_eq!(first[0].destination, Some(region("eu-west-1")));
    let copy = cloud.region("eu-west-1").state().images[0].clone();
    assert_eq!(copy.tags[tags::SOURCE_IMAGE], "ami-0000000000000001a");
    assert_eq!(copy.tags[tags::SOURCE_REGION], "us-east-1");
    assert_eq!(copy.tags[tags::CREATED_BY], FUNCTION);
    assert_eq!(events(&first).len(), 1);
    let again = copy_all(&cloud, false).await;
    assert_eq!(again[0].outcome, CopyOutcome::Exists);
    assert_eq!(again[0].copy_image_id, first[0].copy_image_id);
    assert_eq!(
        cloud.region("eu-west-1").state().changes.len(),
        1,
        "one CopyImage"
    );
}

#[tokio::test]
async fn a_failed_copy_is_deregistered_announced_and_copied_again_as_the_next_attempt() {
    let cloud = seeded(ImageState::Available);
    copy_all(&cloud, false).await;
    let failed_id = {
        let dest = cloud.region("eu-west-1");
        let mut state = dest.state();
        state.images[0].state = ImageState::Failed;
        let id = state.images[0].id.clone();
        state
            .state_reasons
            .insert(id.clone(), "kms key disabled".into());
        id
    };
    let r = &copy_all(&cloud, false).await[0];
    assert_eq!(r.outcome, CopyOutcome::Started);
    assert_eq!(r.failed_copies[0].image_id, failed_id);
    let images = cloud.region("eu-west-1").state().images.clone();
    assert_eq!(images.len(), 1, "the failed copy is gone");
    assert_eq!(images[0].tags[tags::COPY_ATTEMPT], "2");
    let kinds: Vec<String> = events(std::slice::from_ref(r))
        .into_iter()
        .map(|e| e.detail_type)
        .collect();
    assert_eq!(kinds, ["AMI Copy Failed", "AMI Copy Started"]);
}

#[tokio::test]
async fn deferrals_refusals_and_failures_each_have_their_cause() {
    let cases: [(&str, &str, &str, CopyOutcome, &str); 4] = [
        (
            "CopyImage",
            "RequestLimitExceeded",
            "eu-west-1",
            CopyOutcome::Deferred,
            "next sweep",
        ),
        (
            "DescribeImages",
            "OptInRequired",
            "eu-west-1",
            CopyOutcome::Failed,
            "not enabled",
        ),
        (
            "CopyImage",
            "InvalidAMIName.Duplicate",
            "eu-west-1",
            CopyOutcome::Refused,
            "rename one",
        ),
        (
            "CopyImage",
            "InvalidKMSKey.InvalidState",
            "eu-west-1",
            CopyOutcome::Failed,
            "KMS key",
        ),
    ];
    for (operation, code, in_region, want, says) in cases {
        let cloud = seeded(ImageState::Available);
        cloud.region(in_region).fail(operation, code);
        let r = &copy_all(&cloud, false).await[0];
        assert_eq!(r.outcome, want, "{code}");
        assert!(
            r.reason.as_deref().is_some_and(|w| w.contains(says)),
            "{code}: {r:?}"
        );
        assert!(
            cloud.region("eu-west-1").state().changes.is_empty(),
            "{code}"
        );
    }
    let cloud = seeded(ImageState::Available);
    let planned = copy_all(&cloud, true).await;
    assert_eq!(planned[0].outcome, CopyOutcome::Planned);
    assert!(
        cloud.region("eu-west-1").state().images.is_empty(),
        "a dry run copies nothing"
    );
    for (state, want) in [
        (ImageState::Pending, CopyOutcome::Deferred),
        (ImageState::Disabled, CopyOutcome::Skipped),
    ] {
        let cloud = seeded(state.clone());
        assert_eq!(copy_all(&cloud, false).await[0].outcome, want, "{state}");
    }
}

#[tokio::test]
async fn a_full_destination_and_the_deadline_defer_the_copy() {
    let cloud = seeded(ImageState::Available);
    {
        let dest = cloud.region("eu-west-1");
        let mut state = dest.state();
        for n in 0..MAX_IN_FLIGHT {
            let mut pending = Image::new(
                &format!("ami-{n:017x}"),
                &format!("p{n}"),
                "111122223333",
                chrono::Utc::now(),
            );
            pending.state = ImageState::Pending;
            state.images.push(pending);
        }
    }
    let r = &copy_all(&cloud, false).await[0];
    assert_eq!(r.outcome, CopyOutcome::Deferred);
    assert!(r.reason.as_deref().is_some_and(|w| w.contains("in flight")));
    let cloud = seeded(ImageState::Available);
    let doc = document(DOC);
    let mut ctx = context(&cloud, &doc);
    ctx.deadline = Deadline::passed_already();
    let (results, _) = run(
        &ctx,
        &RunRequest::default(),
        &[region("us-east-1")],
        false,
        false,
    )
    .await;
    assert_eq!(results[0].outcome, CopyOutcome::Deferred);
}

proptest! {
    /// Safety of the copy: a copy is never copied, never into its own region, and only an
    /// available AMI is; a destination never gets more than EC2's quota in flight.
    #[test]
    fn only_available_originals_are_copied_and_only_elsewhere(
        fleet in prop::collection::vec((any::<bool>(), prop::sample::select(vec!["available", "pending", "disabled", "failed"])), 0..12),
        in_flight in 0usize..150,
    ) {
        let doc = document(DOC);
        let images: Vec<Image> = fleet.iter().enumerate().map(|(n, (is_copy, state))| {
            let mut i = managed_image(&format!("ami-{n:017x}"), &format!("web-{n}"), "web");
            i.state = ImageState::from_ec2(state);
            if *is_copy {
                i.tags.insert(tags::SOURCE_IMAGE.into(), "ami-00000000000000000".into());
            }
            i
        }).collect();
        let source = region("us-east-1");
        let selection = select(&images, None, None, &doc, &source, false);
        for job in &selection.jobs {
            prop_assert!(!is_copy(job.image));
            prop_assert_eq!(&job.image.state, &ImageState::Available);
            prop_assert!(job.destination != source);
        }
        let originals_available = images.iter().filter(|i| !is_copy(i) && i.state == ImageState::Available).count();
        prop_assert_eq!(selection.jobs.len(), originals_available);
        prop_assert!(room(in_flight) + in_flight.min(MAX_IN_FLIGHT) == MAX_IN_FLIGHT);
    }
}
