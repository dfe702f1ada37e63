//! Eventual consistency (testbed/consistency.py): read after create.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use e2e_tests::seed;

use crate::bed;

/// Eventual consistency (EC2 API reference, "Eventual consistency in the Amazon EC2 API"): an
/// AMI or instance just made may be "not found" for a while when described by id, and missing
/// from lists.
#[tokio::test]
async fn what_was_just_made_is_not_found_for_a_while_and_plain_moto_finds_it_at_once() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        if !plain {
            bed.read_after_create(600);
        }
        let instance = seed::instance(&ec2, 0, &[]).await;
        let by_id = ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await;
        let image = ec2
            .create_image()
            .instance_id(&instance)
            .name("web-new")
            .send()
            .await
            .expect("CreateImage")
            .image_id()
            .unwrap_or_default()
            .to_string();
        let described = ec2.describe_images().image_ids(&image).send().await;
        let listed = seed::image_ids(&ec2).await;
        if plain {
            assert!(by_id.is_ok() && described.is_ok());
            assert!(listed.contains(&image));
        } else {
            let code = |e: Option<String>| e.unwrap_or_default();
            let instance_code = code(
                by_id
                    .err()
                    .and_then(|e| e.into_service_error().code().map(String::from)),
            );
            assert_eq!(instance_code, "InvalidInstanceID.NotFound");
            let image_code = code(
                described
                    .err()
                    .and_then(|e| e.into_service_error().code().map(String::from)),
            );
            assert_eq!(image_code, "InvalidAMIID.NotFound");
            assert!(!listed.contains(&image));
            // Once the window is over, both are there.
            bed.read_after_create(0);
            assert!(ec2.describe_images().image_ids(&image).send().await.is_ok());
        }
    }
}
