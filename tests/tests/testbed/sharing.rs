//! Sharing (testbed/sharing.py): DisableImage and block public access for AMIs.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications};
use e2e_tests::seed;

use crate::bed;

#[tokio::test]
async fn disable_image_removes_every_launch_permission_and_public_sharing_obeys_ec2s_refusals() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "shared", &[]).await;
        let grant =
            |perm: LaunchPermission| LaunchPermissionModifications::builder().add(perm).build();
        ec2.modify_image_attribute()
            .image_id(&image)
            .launch_permission(grant(
                LaunchPermission::builder().user_id("111122223333").build(),
            ))
            .send()
            .await
            .expect("share");
        ec2.disable_image()
            .image_id(&image)
            .send()
            .await
            .expect("DisableImage");
        let left = ec2
            .describe_image_attribute()
            .image_id(&image)
            .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
            .send()
            .await
            .expect("DescribeImageAttribute")
            .launch_permissions()
            .len();
        // Block public access for AMIs refuses making another AMI public.
        let other = seed::image(&ec2, &builder, "to-be-public", &[]).await;
        let blocked = ec2
            .enable_image_block_public_access()
            .image_block_public_access_state(
                aws_sdk_ec2::types::ImageBlockPublicAccessEnabledState::BlockNewSharing,
            )
            .send()
            .await;
        let public = ec2
            .modify_image_attribute()
            .image_id(&other)
            .launch_permission(grant(
                LaunchPermission::builder()
                    .group(aws_sdk_ec2::types::PermissionGroup::All)
                    .build(),
            ))
            .send()
            .await;
        if plain {
            assert_eq!(
                left, 1,
                "plain moto keeps the launch permissions of a disabled AMI"
            );
            assert!(
                blocked.is_err(),
                "plain moto has no block public access for AMIs"
            );
            assert!(public.is_ok(), "plain moto makes it public");
            continue;
        }
        assert_eq!(left, 0, "DisableImage removes every launch permission");
        blocked.expect("EnableImageBlockPublicAccess");
        assert_eq!(
            public.expect_err("blocked").code(),
            Some("OperationNotPermitted")
        );
        let state = ec2
            .get_image_block_public_access_state()
            .send()
            .await
            .expect("GetImageBlockPublicAccessState");
        assert_eq!(
            state.image_block_public_access_state(),
            Some("block-new-sharing")
        );
    }
}
