//! Undo: restores from the Recycle Bin, snapshots first.

use super::*;

#[tokio::test]
async fn a_restore_brings_back_binned_amis_snapshots_first_and_undoes_disable_and_deprecation() {
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::jobs::ageout::restore::{self, RestoreOutcome, Step};
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
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::jobs::ageout::restore::{self, RestoreOutcome};
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

#[tokio::test]
async fn a_restore_waits_until_its_snapshots_are_available_before_the_ami() {
    use crate::domain::recycle_bin::BinSnapshot;
    use crate::jobs::ageout::restore::{self, RestoreOutcome};
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
