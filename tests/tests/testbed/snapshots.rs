//! EBS snapshots (testbed/snapshots.py): listing by owner, deletion, permissions, encryption.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use e2e_tests::seed;

use crate::bed;

#[tokio::test]
async fn describe_snapshots_with_owner_self_lists_only_the_accounts_snapshots() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let out = ec2
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .expect("DescribeSnapshots");
        let foreign = out
            .snapshots()
            .iter()
            .filter(|s| s.owner_id() != Some(e2e_tests::ACCOUNT))
            .count();
        if plain {
            assert!(
                foreign > 0,
                "plain moto lists the base images' (Amazon's) snapshots too"
            );
        } else {
            assert_eq!(foreign, 0);
        }
    }
}

#[tokio::test]
async fn delete_snapshot_refuses_a_snapshot_a_registered_ami_uses() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let snap = seed::snapshot(&ec2, false).await;
        seed::register(&ec2, "registered", std::slice::from_ref(&snap), &[]).await;
        let result = ec2.delete_snapshot().snapshot_id(&snap).send().await;
        if plain {
            // plain moto's RegisterImage ignores the mappings, so nothing holds the snapshot.
            assert!(result.is_ok(), "plain moto deletes the snapshot");
        } else {
            assert_eq!(
                result.expect_err("in use").code(),
                Some("InvalidSnapshot.InUse")
            );
        }
    }
}

#[tokio::test]
async fn a_snapshot_of_an_encrypted_volume_carries_the_volumes_kms_key() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let volume = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(8)
            .encrypted(true)
            .send()
            .await
            .expect("volume");
        let key = volume
            .kms_key_id()
            .expect("an encrypted volume has a key")
            .to_string();
        let snap = ec2
            .create_snapshot()
            .volume_id(volume.volume_id().expect("id"))
            .send()
            .await
            .expect("snapshot");
        let d = ec2
            .describe_snapshots()
            .snapshot_ids(snap.snapshot_id().expect("id"))
            .send()
            .await
            .expect("describe");
        let got = d.snapshots()[0].kms_key_id().map(str::to_string);
        if plain {
            assert_eq!(got, None, "plain moto drops the key");
        } else {
            assert_eq!(got, Some(key));
        }
    }
}

#[tokio::test]
async fn structured_create_volume_permission_changes_apply() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let snap = seed::snapshot(&ec2, false).await;
        let add = aws_sdk_ec2::types::CreateVolumePermissionModifications::builder()
            .add(
                aws_sdk_ec2::types::CreateVolumePermission::builder()
                    .user_id("111122223333")
                    .build(),
            )
            .build();
        ec2.modify_snapshot_attribute()
            .snapshot_id(&snap)
            .create_volume_permission(add)
            .send()
            .await
            .expect("modify");
        let d = ec2
            .describe_snapshot_attribute()
            .snapshot_id(&snap)
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .expect("describe");
        assert_eq!(
            d.create_volume_permissions().len(),
            usize::from(!plain),
            "plain moto ignores the structured form"
        );
    }
}
