//! AMIs (testbed/images.py): creation, registration, listing, deregistration, deprecation,
//! deregistration protection, attributes and copies.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, ResourceType};
use e2e_tests::seed;

use crate::bed;

#[tokio::test]
async fn create_image_tags_the_snapshots_it_makes_one_per_volume() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 1, &[]).await;
        let result = ec2
            .create_image()
            .instance_id(&instance)
            .name("tagged")
            .tag_specifications(seed::tag_spec(
                ResourceType::Snapshot,
                &[("Team", "platform")],
            ))
            .send()
            .await;
        if plain {
            assert!(
                result.is_err(),
                "plain moto is expected to fail CreateImage with snapshot tags"
            );
            continue;
        }
        let image = result
            .expect("CreateImage")
            .image_id()
            .expect("id")
            .to_string();
        let snaps = seed::snapshots_of(&ec2, &image).await;
        assert_eq!(
            snaps.len(),
            2,
            "one snapshot per EBS volume of the instance"
        );
        let described = ec2
            .describe_snapshots()
            .set_snapshot_ids(Some(snaps))
            .send()
            .await
            .expect("DescribeSnapshots");
        for s in described.snapshots() {
            assert!(s
                .tags()
                .iter()
                .any(|t| t.key() == Some("Team") && t.value() == Some("platform")));
            assert!(s
                .description()
                .unwrap_or_default()
                .starts_with("Created by CreateImage("));
        }
    }
}

#[tokio::test]
async fn an_ami_name_already_used_is_refused_as_duplicate() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        seed::image(&ec2, &instance, "same-name", &[]).await;
        let second = ec2
            .create_image()
            .instance_id(&instance)
            .name("same-name")
            .send()
            .await;
        if plain {
            assert!(
                second.is_ok(),
                "plain moto creates a second AMI with the same name"
            );
        } else {
            let err = second.expect_err("duplicate name refused");
            assert_eq!(err.code(), Some("InvalidAMIName.Duplicate"));
            assert_eq!(seed::image_ids(&ec2).await.len(), 1);
        }
    }
}

#[tokio::test]
async fn describe_images_and_snapshots_page_with_max_results() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        for i in 0..7 {
            seed::image(&ec2, &instance, &format!("paged-{i}"), &[]).await;
        }
        let first = ec2
            .describe_images()
            .owners("self")
            .max_results(5)
            .send()
            .await
            .expect("page 1");
        if plain {
            assert!(
                first.next_token().is_none(),
                "plain moto ignores MaxResults"
            );
            continue;
        }
        assert_eq!(first.images().len(), 5);
        let token = first.next_token().expect("a next page").to_string();
        let second = ec2
            .describe_images()
            .owners("self")
            .max_results(5)
            .next_token(token)
            .send()
            .await
            .expect("page 2");
        assert_eq!(second.images().len(), 2);
        assert!(second.next_token().is_none());
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .max_results(5)
            .send()
            .await
            .expect("snapshots");
        assert_eq!(snaps.snapshots().len(), 5);
        assert!(snaps.next_token().is_some());
    }
}

#[tokio::test]
async fn disabled_amis_are_listed_only_with_include_disabled() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &instance, "to-disable", &[]).await;
        ec2.disable_image()
            .image_id(&image)
            .send()
            .await
            .expect("DisableImage");
        let hidden = ec2
            .describe_images()
            .owners("self")
            .send()
            .await
            .expect("DescribeImages");
        let shown = ec2
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .send()
            .await
            .expect("DescribeImages");
        assert_eq!(shown.images().len(), 1);
        assert_eq!(
            hidden.images().len(),
            usize::from(plain),
            "IncludeDisabled (plain moto: {plain})"
        );
    }
}

#[tokio::test]
async fn deregister_with_delete_associated_snapshots_keeps_a_snapshot_another_ami_uses() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 1, &[]).await;
        let image = seed::image(&ec2, &instance, "two-volumes", &[]).await;
        let snaps = seed::snapshots_of(&ec2, &image).await;
        // A second AMI that shares the first AMI's root snapshot.
        let sharer = seed::register(&ec2, "sharer", &snaps[..1], &[]).await;
        let out = ec2
            .deregister_image()
            .image_id(&image)
            .delete_associated_snapshots(true)
            .send()
            .await
            .expect("DeregisterImage");
        let left = seed::snapshot_ids(&ec2).await;
        if plain {
            assert!(
                snaps.iter().all(|s| left.contains(s)),
                "plain moto ignores DeleteAssociatedSnapshots"
            );
            continue;
        }
        let deleted: Vec<&str> = out
            .delete_snapshot_results()
            .iter()
            .filter_map(|r| r.snapshot_id())
            .collect();
        assert_eq!(
            deleted,
            vec![snaps[1].as_str()],
            "only the snapshot no other AMI uses"
        );
        assert!(left.contains(&snaps[0]) && !left.contains(&snaps[1]));
        assert_eq!(
            seed::snapshots_of(&ec2, &sharer).await,
            vec![snaps[0].clone()]
        );
    }
}

#[tokio::test]
async fn enable_and_disable_image_deprecation_set_the_deprecation_time() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &instance, "deprecating", &[]).await;
        let at = aws_smithy_types::DateTime::from_secs(1_893_456_000); // 2030-01-01
        let result = ec2
            .enable_image_deprecation()
            .image_id(&image)
            .deprecate_at(at)
            .send()
            .await;
        if plain {
            assert!(
                result.is_err(),
                "plain moto does not implement EnableImageDeprecation"
            );
            continue;
        }
        result.expect("EnableImageDeprecation");
        let described = ec2
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImages");
        assert_eq!(
            described.images()[0].deprecation_time(),
            Some("2030-01-01T00:00:00.000Z")
        );
        let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
        let refused = ec2
            .enable_image_deprecation()
            .image_id(&image)
            .deprecate_at(past)
            .send()
            .await;
        assert_eq!(
            refused.expect_err("past refused").code(),
            Some("InvalidParameterValue")
        );
        ec2.disable_image_deprecation()
            .image_id(&image)
            .send()
            .await
            .expect("DisableImageDeprecation");
        let described = ec2
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImages");
        assert_eq!(described.images()[0].deprecation_time(), None);
    }
}

#[tokio::test]
async fn register_image_uses_the_requested_mappings_and_attributes() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let source = seed::image(&ec2, &instance, "source", &[]).await;
        let snaps = seed::snapshots_of(&ec2, &source).await;
        let image = ec2
            .register_image()
            .name("registered-arm")
            .root_device_name("/dev/xvda")
            .architecture("arm64".into())
            .ena_support(true)
            .boot_mode("uefi".into())
            .block_device_mappings(
                aws_sdk_ec2::types::BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        aws_sdk_ec2::types::EbsBlockDevice::builder()
                            .snapshot_id(&snaps[0])
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("RegisterImage")
            .image_id()
            .expect("id")
            .to_string();
        let d = ec2
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImages");
        let i = &d.images()[0];
        let root_snapshot = i
            .block_device_mappings()
            .first()
            .and_then(|m| m.ebs())
            .and_then(|e| e.snapshot_id());
        if plain {
            assert_ne!(
                root_snapshot,
                Some(snaps[0].as_str()),
                "plain moto makes a fresh snapshot"
            );
            continue;
        }
        assert_eq!(root_snapshot, Some(snaps[0].as_str()));
        assert_eq!(i.root_device_name(), Some("/dev/xvda"));
        assert_eq!(i.architecture().map(|a| a.as_str()), Some("arm64"));
        assert_eq!(i.ena_support(), Some(true));
        assert_eq!(i.boot_mode().map(|b| b.as_str()), Some("uefi"));
        let ebs = i.block_device_mappings()[0].ebs().expect("ebs");
        assert_eq!(ebs.delete_on_termination(), Some(true));
    }
}

#[tokio::test]
async fn a_disabled_ami_refuses_attribute_changes() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &instance, "disabled", &[]).await;
        ec2.disable_image()
            .image_id(&image)
            .send()
            .await
            .expect("DisableImage");
        let add = LaunchPermissionModifications::builder()
            .add(LaunchPermission::builder().user_id("111122223333").build())
            .build();
        let result = ec2
            .modify_image_attribute()
            .image_id(&image)
            .launch_permission(add)
            .send()
            .await;
        assert_eq!(
            result.is_ok(),
            plain,
            "ModifyImageAttribute on a disabled AMI (plain moto: {plain})"
        );
    }
}

#[tokio::test]
async fn deregistration_protection_refuses_deregistration() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &instance, "protected", &[]).await;
        bed.seed_image(
            "us-east-1",
            &image,
            serde_json::json!({"deregistration_protection": "enabled"}),
        );
        let result = ec2.deregister_image().image_id(&image).send().await;
        assert_eq!(
            result.is_ok(),
            plain,
            "DeregisterImage of a protected AMI (plain moto: {plain})"
        );
    }
}

#[tokio::test]
async fn copy_image_is_idempotent_by_client_token_and_carries_lineage_encryption_and_tags() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let source = seed::image(&ec2, &instance, "to-copy", &[]).await;
        let eu = bed.ec2("eu-west-1").await;
        let copy = || {
            eu.copy_image()
                .source_image_id(&source)
                .source_region("us-east-1")
                .name("to-copy")
                .client_token("token-1")
                .encrypted(true)
                .tag_specifications(seed::tag_spec(ResourceType::Image, &[("Lineage", "yes")]))
                .tag_specifications(seed::tag_spec(
                    ResourceType::Snapshot,
                    &[("Lineage", "yes")],
                ))
                .send()
        };
        let first = copy()
            .await
            .expect("CopyImage")
            .image_id()
            .expect("id")
            .to_string();
        let second = copy()
            .await
            .expect("CopyImage again")
            .image_id()
            .expect("id")
            .to_string();
        let d = eu
            .describe_images()
            .image_ids(&first)
            .send()
            .await
            .expect("DescribeImages");
        let image = &d.images()[0];
        if plain {
            assert_ne!(first, second, "plain moto makes a second copy");
            assert_eq!(image.source_image_id(), None);
            continue;
        }
        assert_eq!(first, second, "the same ClientToken returns the same copy");
        assert_eq!(image.source_image_id(), Some(source.as_str()));
        assert_eq!(image.source_image_region(), Some("us-east-1"));
        assert!(image.tags().iter().any(|t| t.key() == Some("Lineage")));
        let snaps = seed::snapshots_of(&eu, &first).await;
        let s = eu
            .describe_snapshots()
            .set_snapshot_ids(Some(snaps))
            .send()
            .await
            .expect("snapshots");
        assert!(s
            .snapshots()
            .iter()
            .all(|s| s.encrypted() == Some(true)
                && s.tags().iter().any(|t| t.key() == Some("Lineage"))));
    }
}

#[tokio::test]
async fn only_the_owner_changes_an_ami_and_a_reused_copy_token_needs_the_same_request() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let foreign = seed::image(&ec2, &builder, "foreign", &[]).await;
        bed.seed_image(
            "us-east-1",
            &foreign,
            serde_json::json!({"owner_id": "210987654321"}),
        );
        let modify = ec2
            .modify_image_attribute()
            .image_id(&foreign)
            .launch_permission(
                LaunchPermissionModifications::builder()
                    .add(LaunchPermission::builder().user_id("111122223333").build())
                    .build(),
            )
            .send()
            .await;
        let deregister = ec2.deregister_image().image_id(&foreign).send().await;

        let source = seed::image(&ec2, &builder, "source", &[]).await;
        let eu = bed.ec2("eu-west-1").await;
        let copy = |name: &'static str| {
            let eu = eu.clone();
            let source = source.clone();
            async move {
                eu.copy_image()
                    .source_image_id(source)
                    .source_region("us-east-1")
                    .name(name)
                    .client_token("same-token")
                    .send()
                    .await
            }
        };
        let first = copy("copy-a").await.expect("CopyImage");
        let other = copy("copy-b").await;
        if plain {
            assert!(
                modify.is_ok() && deregister.is_ok(),
                "plain moto lets any account change any AMI"
            );
            assert!(other.is_ok(), "plain moto ignores the token");
            continue;
        }
        assert_eq!(modify.expect_err("foreign").code(), Some("AuthFailure"));
        assert_eq!(deregister.expect_err("foreign").code(), Some("AuthFailure"));
        assert_eq!(
            other.expect_err("a different request").code(),
            Some("IdempotentParameterMismatch")
        );
        let again = copy("copy-a").await.expect("the same request");
        assert_eq!(again.image_id(), first.image_id(), "the same copy");
    }
}

/// Deregistration protection (EC2 API reference, EnableImageDeregistrationProtection and
/// DisableImageDeregistrationProtection): on, nobody can deregister the AMI; enabled with
/// cooldown, it keeps refusing for 24 hours after it is disabled. Plain moto implements neither.
#[tokio::test]
async fn deregistration_protection_with_cooldown_outlasts_its_disabling() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "guarded", &[]).await;
        let enabled = ec2
            .enable_image_deregistration_protection()
            .image_id(&image)
            .with_cooldown(true)
            .send()
            .await;
        if plain {
            assert!(enabled.is_err(), "plain moto does not implement it");
            continue;
        }
        enabled.expect("EnableImageDeregistrationProtection");
        let refused = ec2.deregister_image().image_id(&image).send().await;
        assert!(refused.is_err(), "protected");
        ec2.disable_image_deregistration_protection()
            .image_id(&image)
            .send()
            .await
            .expect("DisableImageDeregistrationProtection");
        let state = ec2
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImages")
            .images()[0]
            .deregistration_protection()
            .unwrap_or_default()
            .to_string();
        assert!(state.starts_with("disabled-until "), "{state}");
        let refused = ec2.deregister_image().image_id(&image).send().await;
        assert!(refused.is_err(), "the cooldown still refuses");

        // Without cooldown, disabling it frees the AMI at once.
        let other = seed::image(&ec2, &builder, "guarded-briefly", &[]).await;
        ec2.enable_image_deregistration_protection()
            .image_id(&other)
            .send()
            .await
            .expect("enable");
        ec2.disable_image_deregistration_protection()
            .image_id(&other)
            .send()
            .await
            .expect("disable");
        ec2.deregister_image()
            .image_id(&other)
            .send()
            .await
            .expect("deregistered once unprotected");
    }
}

/// The source of an image (DescribeImages' `SourceImageId`/`SourceImageRegion`).
async fn source_of(ec2: &aws_sdk_ec2::Client, image: &str) -> Option<(String, String)> {
    let out = ec2
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .expect("DescribeImages");
    let image = &out.images()[0];
    Some((
        image.source_image_id()?.to_string(),
        image.source_image_region()?.to_string(),
    ))
}

#[tokio::test]
async fn an_image_created_from_an_instance_names_the_ami_the_instance_was_launched_from() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let instance = seed::instance(&ec2, 0, &[]).await;
        let child = seed::image(&ec2, &instance, "child", &[]).await;
        let relaunched = ec2
            .run_instances()
            .image_id(&child)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances of the child");
        let relaunched = relaunched.instances()[0].instance_id().expect("id");
        let grandchild = seed::image(&ec2, relaunched, "grandchild", &[]).await;

        let (child_source, grandchild_source) = (
            source_of(&ec2, &child).await,
            source_of(&ec2, &grandchild).await,
        );
        if plain {
            assert_eq!(
                (child_source, grandchild_source),
                (None, None),
                "plain moto records no source for CreateImage"
            );
            continue;
        }
        let in_region = |id: &str| Some((id.to_string(), "us-east-1".to_string()));
        assert_eq!(child_source, in_region(e2e_tests::BASE_X86));
        assert_eq!(grandchild_source, in_region(&child));
    }
}

#[tokio::test]
async fn get_image_ancestry_walks_from_an_image_to_its_root_across_regions() {
    for plain in [false, true] {
        let bed = bed(plain);
        let (us, eu) = (bed.ec2("us-east-1").await, bed.ec2("eu-west-1").await);
        let instance = seed::instance(&us, 0, &[]).await;
        let child = seed::image(&us, &instance, "child", &[]).await;
        let copy = eu
            .copy_image()
            .source_image_id(&child)
            .source_region("us-east-1")
            .name("child")
            .send()
            .await
            .expect("CopyImage")
            .image_id()
            .expect("id")
            .to_string();

        let answer = eu.get_image_ancestry().image_id(&copy).send().await;
        if plain {
            assert!(
                answer.is_err(),
                "plain moto does not implement GetImageAncestry"
            );
            continue;
        }
        let chain: Vec<(String, Option<String>, Option<String>)> = answer
            .expect("GetImageAncestry")
            .image_ancestry_entries()
            .iter()
            .map(|e| {
                (
                    e.image_id().unwrap_or_default().to_string(),
                    e.source_image_id().map(str::to_string),
                    e.source_image_region().map(str::to_string),
                )
            })
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            chain,
            [
                (copy.clone(), some(&child), some("us-east-1")),
                (child.clone(), some(e2e_tests::BASE_X86), some("us-east-1")),
                (e2e_tests::BASE_X86.to_string(), None, None),
            ],
            "from the image to the root, each with its parent"
        );
        let unknown = eu
            .get_image_ancestry()
            .image_id("ami-0123456789abcdef0")
            .send()
            .await
            .expect_err("an unknown AMI");
        assert_eq!(unknown.code(), Some("InvalidAMIID.NotFound"));
    }
}
