//! The Recycle Bin (testbed/recycle_bin.py).

use e2e_tests::seed;

use crate::bed;

/// The Recycle Bin (Recycle Bin API reference, CreateRule, ListRules, GetRule; EC2 API
/// reference, ListImagesInRecycleBin, RestoreSnapshotFromRecycleBin, RestoreImageFromRecycleBin):
/// a retention rule keeps what DeregisterImage and DeleteSnapshot remove; an AMI comes back
/// only after its snapshots. Plain moto serves neither the `rbin` service nor these calls.
#[tokio::test]
async fn the_recycle_bin_keeps_what_rules_retain_and_restores_snapshots_before_the_ami() {
    for plain in [false, true] {
        let bed = bed(plain);
        if plain {
            // (moto's server fails any `rbin` request with a 500 from inside its dispatcher.)
            let ec2 = bed.ec2("us-east-1").await;
            let listed = ec2.list_images_in_recycle_bin().send().await;
            assert!(listed.is_err(), "plain moto has no Recycle Bin");
            continue;
        }
        let rbin = bed.rbin("us-east-1").await;
        let listed = rbin
            .list_rules()
            .resource_type(aws_sdk_rbin::types::ResourceType::Ec2Image)
            .send()
            .await;
        assert!(listed.expect("ListRules").rules().is_empty());
        let image_rule = bed.retention_rule("us-east-1", "EC2_IMAGE", 7).await;
        bed.retention_rule("us-east-1", "EBS_SNAPSHOT", 7).await;
        let rule = rbin
            .get_rule()
            .identifier(&image_rule)
            .send()
            .await
            .expect("GetRule");
        assert_eq!(
            rule.retention_period().map(|p| p.retention_period_value()),
            Some(7)
        );

        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "binned", &[]).await;
        let snapshots = seed::snapshots_of(&ec2, &image).await;
        ec2.deregister_image()
            .image_id(&image)
            .delete_associated_snapshots(true)
            .send()
            .await
            .expect("DeregisterImage");
        let binned = ec2
            .list_images_in_recycle_bin()
            .send()
            .await
            .expect("ListImagesInRecycleBin");
        assert_eq!(binned.images().len(), 1);
        let early = ec2
            .restore_image_from_recycle_bin()
            .image_id(&image)
            .send()
            .await;
        assert!(early.is_err(), "the AMI waits for its snapshots");
        for snapshot in &snapshots {
            ec2.restore_snapshot_from_recycle_bin()
                .snapshot_id(snapshot)
                .send()
                .await
                .expect("RestoreSnapshotFromRecycleBin");
        }
        ec2.restore_image_from_recycle_bin()
            .image_id(&image)
            .send()
            .await
            .expect("RestoreImageFromRecycleBin");
        assert!(seed::image_ids(&ec2).await.contains(&image));
    }
}
