//! Each behaviour the launcher adds around moto, proven: the documented EC2 behaviour holds on the
//! test bed, and plain moto departs from it (so the addition is what makes the difference).

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{LaunchPermission, LaunchPermissionModifications, ResourceType};
use e2e_tests::TestBed;

use e2e_tests::seed;

/// The test bed with its additions, or moto as it is.
fn bed(plain: bool) -> TestBed {
    if plain {
        TestBed::start_plain()
    } else {
        TestBed::start()
    }
}

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
async fn delete_snapshot_refuses_a_snapshot_a_registered_ami_uses() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let volume = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(8)
            .send()
            .await
            .expect("CreateVolume");
        let snap = ec2
            .create_snapshot()
            .volume_id(volume.volume_id().expect("volume"))
            .send()
            .await
            .expect("CreateSnapshot")
            .snapshot_id()
            .expect("snapshot")
            .to_string();
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
async fn describe_image_references_finds_instances_templates_and_ssm_parameters() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "referenced", &[]).await;
        ec2.run_instances()
            .image_id(&image)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances");
        ec2.create_launch_template()
            .launch_template_name("t")
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id(&image)
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplate");
        bed.ssm("us-east-1")
            .await
            .put_parameter()
            .name("/golden/ref")
            .value(&image)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .data_type("aws:ec2:image")
            .send()
            .await
            .expect("PutParameter");
        let result = ec2
            .describe_image_references()
            .image_ids(&image)
            .include_all_resource_types(true)
            .send()
            .await;
        if plain {
            assert!(
                result.is_err(),
                "plain moto does not implement DescribeImageReferences"
            );
            continue;
        }
        let out = result.expect("DescribeImageReferences");
        let mut kinds: Vec<&str> = out
            .image_references()
            .iter()
            .filter_map(|r| r.resource_type())
            .map(|t| t.as_str())
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec!["ec2:Instance", "ec2:LaunchTemplate", "ssm:Parameter"]
        );
    }
}

#[tokio::test]
async fn an_instance_launched_from_an_instance_store_ami_is_instance_store_backed() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let out = ec2
            .run_instances()
            .image_id("ami-0a1b2c3d4e5f60003")
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances");
        let id = out.instances()[0].instance_id().expect("id").to_string();
        let d = ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("DescribeInstances");
        let root = d.reservations()[0].instances()[0]
            .root_device_type()
            .map(|r| r.as_str().to_string());
        let expected = if plain { "ebs" } else { "instance-store" };
        assert_eq!(root.as_deref(), Some(expected), "plain moto: {plain}");
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
        let volume = ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(8)
            .send()
            .await
            .expect("volume");
        let snap = ec2
            .create_snapshot()
            .volume_id(volume.volume_id().expect("id"))
            .send()
            .await
            .expect("snapshot");
        let snap = snap.snapshot_id().expect("id").to_string();
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

#[tokio::test]
async fn the_default_ebs_key_is_an_aws_managed_key() {
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
        let key = volume.kms_key_id().expect("key").to_string();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(bed.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let d = kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .expect("DescribeKey");
        let manager = d
            .key_metadata()
            .and_then(|m| m.key_manager())
            .map(|k| k.as_str().to_string());
        assert_eq!(
            manager.as_deref(),
            Some(if plain { "CUSTOMER" } else { "AWS" }),
            "plain moto: {plain}"
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
async fn the_contract_check_refuses_what_ec2_refuses_and_moto_alone_accepts() {
    // DescribeImageReferences takes 1 to 10 ImageIds (EC2 API reference; botocore's model).
    for contract in [true, false] {
        let bed = if contract {
            TestBed::start()
        } else {
            TestBed::start_without_contract()
        };
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let mut ids = Vec::new();
        for n in 0..11 {
            ids.push(seed::image(&ec2, &builder, &format!("img-{n}"), &[]).await);
        }
        let result = ec2
            .describe_image_references()
            .set_image_ids(Some(ids.clone()))
            .include_all_resource_types(true)
            .send()
            .await;
        if contract {
            let err = result.expect_err("11 ids are refused");
            assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
            assert!(
                err.message().unwrap_or_default().contains("10"),
                "the message names the limit: {:?}",
                err.message()
            );
            // Ten are fine.
            ec2.describe_image_references()
                .set_image_ids(Some(ids[..10].to_vec()))
                .include_all_resource_types(true)
                .send()
                .await
                .expect("10 ids are accepted");
            // A required member missing, and a value outside its enum.
            let err = ec2.deregister_image().send().await.expect_err("no ImageId");
            assert_eq!(err.code(), Some("MissingParameter"));
            let err = ec2
                .describe_image_attribute()
                .image_id(&ids[0])
                .attribute(aws_sdk_ec2::types::ImageAttributeName::from("bogus"))
                .send()
                .await
                .expect_err("not an attribute");
            assert_eq!(err.code(), Some("InvalidParameterValue"));
        } else {
            result.expect("without the contract check, 11 ids are accepted");
        }
    }
}

#[tokio::test]
async fn describe_image_references_covers_every_instance_state_and_ten_template_versions_by_default(
) {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 0, &[]).await;
    let by_terminated = seed::image(&ec2, &builder, "by-terminated", &[]).await;
    let in_v1 = seed::image(&ec2, &builder, "in-v1", &[]).await;
    let latest = seed::image(&ec2, &builder, "latest", &[]).await;
    let gone = ec2
        .run_instances()
        .image_id(&by_terminated)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    ec2.terminate_instances()
        .instance_ids(gone.instances()[0].instance_id().expect("id"))
        .send()
        .await
        .expect("TerminateInstances");
    // A template whose version 1 names `in_v1`, then 11 newer versions name `latest`.
    let data = |image: &str| {
        aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .image_id(image)
            .build()
    };
    let template = ec2
        .create_launch_template()
        .launch_template_name("deep")
        .launch_template_data(data(&in_v1))
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let template_id = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("id")
        .to_string();
    for _ in 0..11 {
        ec2.create_launch_template_version()
            .launch_template_id(&template_id)
            .launch_template_data(data(&latest))
            .send()
            .await
            .expect("CreateLaunchTemplateVersion");
    }
    let ids = vec![by_terminated.clone(), in_v1.clone(), latest.clone()];
    let refs = |types: Vec<aws_sdk_ec2::types::ResourceTypeRequest>| {
        let ec2 = ec2.clone();
        let ids = ids.clone();
        async move {
            let out = ec2
                .describe_image_references()
                .set_image_ids(Some(ids))
                .set_resource_types(Some(types))
                .send()
                .await
                .expect("DescribeImageReferences");
            let mut found: Vec<(String, String)> = out
                .image_references()
                .iter()
                .map(|r| {
                    (
                        r.image_id().unwrap_or_default().to_string(),
                        r.resource_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            found.sort();
            found
        }
    };
    use aws_sdk_ec2::types::{
        ImageReferenceOptionName as Opt, ImageReferenceResourceType as Type, ResourceTypeOption,
        ResourceTypeRequest,
    };
    let request = |t: Type, option: Option<(Opt, &str)>| {
        let mut r = ResourceTypeRequest::builder().resource_type(t);
        if let Some((name, value)) = option {
            r = r.resource_type_options(
                ResourceTypeOption::builder()
                    .option_name(name)
                    .option_values(value)
                    .build(),
            );
        }
        r.build()
    };
    // Defaults: instances in every state (terminated too); the 10 newest versions.
    let found = refs(vec![
        request(Type::Ec2Instance, None),
        request(Type::Ec2LaunchTemplate, None),
    ])
    .await;
    let instance = "ec2:Instance".to_string();
    let template = "ec2:LaunchTemplate".to_string();
    assert!(
        found.contains(&(by_terminated.clone(), instance.clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&(latest.clone(), template.clone())),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(i, _)| i == &in_v1),
        "version 1 is 11 versions deep: {found:?}"
    );
    // Options narrow or deepen them.
    let found = refs(vec![
        request(Type::Ec2Instance, Some((Opt::StateName, "running"))),
        request(Type::Ec2LaunchTemplate, Some((Opt::VersionDepth, "12"))),
    ])
    .await;
    assert!(!found.iter().any(|(i, _)| i == &by_terminated), "{found:?}");
    assert!(
        found.contains(&(in_v1.clone(), template.clone())),
        "{found:?}"
    );
}

#[tokio::test]
async fn launch_template_versions_resolve_ssm_aliases_only_when_asked_and_ranges_skip_deleted_versions(
) {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "behind-alias", &[]).await;
        bed.ssm("us-east-1")
            .await
            .put_parameter()
            .name("/golden/alias")
            .value(&image)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .data_type("aws:ec2:image")
            .send()
            .await
            .expect("PutParameter");
        let data = |image: &str| {
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(image)
                .build()
        };
        let template = ec2
            .create_launch_template()
            .launch_template_name("alias")
            .launch_template_data(data("resolve:ssm:/golden/alias"))
            .send()
            .await
            .expect("CreateLaunchTemplate");
        let id = template
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .expect("id")
            .to_string();
        let image_of = |resolve: bool| {
            let ec2 = ec2.clone();
            let id = id.clone();
            async move {
                ec2.describe_launch_template_versions()
                    .launch_template_id(id)
                    .versions("$Latest")
                    .resolve_alias(resolve)
                    .send()
                    .await
                    .expect("DescribeLaunchTemplateVersions")
                    .launch_template_versions()[0]
                    .launch_template_data()
                    .and_then(|d| d.image_id())
                    .map(str::to_string)
            }
        };
        assert_eq!(
            image_of(false).await.as_deref(),
            Some("resolve:ssm:/golden/alias")
        );
        let resolved = image_of(true).await;
        if plain {
            assert_ne!(
                resolved.as_deref(),
                Some(image.as_str()),
                "plain moto does not resolve"
            );
            continue;
        }
        assert_eq!(resolved.as_deref(), Some(image.as_str()));

        // Versions 2..4, then version 3 deleted: a range skips it, naming it fails.
        for _ in 0..3 {
            ec2.create_launch_template_version()
                .launch_template_id(&id)
                .launch_template_data(data(&image))
                .send()
                .await
                .expect("CreateLaunchTemplateVersion");
        }
        ec2.delete_launch_template_versions()
            .launch_template_id(&id)
            .versions("3")
            .send()
            .await
            .expect("DeleteLaunchTemplateVersions");
        let named = ec2
            .describe_launch_template_versions()
            .launch_template_id(&id)
            .versions("3")
            .send()
            .await;
        assert!(named.is_err(), "a deleted version named is an error");
        let range = ec2
            .describe_launch_template_versions()
            .launch_template_id(&id)
            .min_version("1")
            .max_version("4")
            .send()
            .await
            .expect("a range over a deleted version");
        let mut numbers: Vec<i64> = range
            .launch_template_versions()
            .iter()
            .filter_map(|v| v.version_number())
            .collect();
        numbers.sort();
        assert_eq!(
            numbers,
            vec![2, 4],
            "MinVersion is exclusive, MaxVersion inclusive"
        );
    }
}

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

/// AMI usage reports (EC2 API reference, CreateImageUsageReport, DescribeImageUsageReports,
/// DescribeImageUsageReportEntries; EC2 User Guide "View your AMI usage"): a report is pending
/// until EC2 has built it, then lists per account and resource type how many resources use the
/// AMI; one report per AMI may be in progress; the same client token returns the same report.
/// Plain moto implements none of it.
#[tokio::test]
async fn usage_reports_are_built_asynchronously_one_at_a_time_per_ami() {
    use aws_sdk_ec2::types::ImageUsageResourceTypeRequest;
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "consumed", &[]).await;
        let create = |token: &str| {
            ec2.create_image_usage_report()
                .image_id(&image)
                .resource_types(
                    ImageUsageResourceTypeRequest::builder()
                        .resource_type("ec2:Instance")
                        .build(),
                )
                .client_token(token)
                .send()
        };
        let first = create("t-1").await;
        if plain {
            assert!(
                first.is_err(),
                "plain moto does not implement CreateImageUsageReport"
            );
            continue;
        }
        let report = first
            .expect("CreateImageUsageReport")
            .report_id()
            .unwrap_or_default()
            .to_string();
        assert!(report.starts_with("amiur-"), "{report}");
        let again = create("t-1").await.expect("the same token");
        assert_eq!(
            again.report_id(),
            Some(report.as_str()),
            "same token, same report"
        );
        let second = create("t-2").await;
        assert!(
            second.is_err(),
            "a second report while one is in progress is refused"
        );
        let described = ec2
            .describe_image_usage_reports()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImageUsageReports");
        let states: Vec<&str> = described
            .image_usage_reports()
            .iter()
            .filter_map(|r| r.state())
            .collect();
        assert_eq!(states, vec!["pending"]);

        let completed = bed.complete_usage_report(
            "us-east-1",
            &image,
            serde_json::json!({"entries": [
                {"account_id": "210987654321", "resource_type": "ec2:Instance", "usage_count": 3}]}),
        );
        assert_eq!(completed, report);
        let entries = ec2
            .describe_image_usage_report_entries()
            .report_ids(&report)
            .send()
            .await
            .expect("DescribeImageUsageReportEntries");
        let got: Vec<(Option<&str>, Option<i64>)> = entries
            .image_usage_report_entries()
            .iter()
            .map(|e| (e.account_id(), e.usage_count()))
            .collect();
        assert_eq!(got, vec![(Some("210987654321"), Some(3))]);
        create("t-3")
            .await
            .expect("a new report once none is in progress");
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

/// EC2's request buckets are per account and region (EC2 API throttling): one region's empty
/// bucket throttles no call in another. moto throttles nothing; the test bed's buckets
/// (`/_testbed/throttle`) keep one state per region.
#[tokio::test]
async fn a_throttle_bucket_empties_in_one_region_and_not_in_another() {
    let bed = TestBed::start();
    bed.throttle(serde_json::json!({"reads": {"actions": ["DescribeAvailabilityZones"], "size": 2, "refill": 0.001}}));
    let east = bed.ec2("us-east-1").await;
    for _ in 0..2 {
        east.describe_availability_zones()
            .send()
            .await
            .expect("within the bucket");
    }
    let refused = east
        .describe_availability_zones()
        .send()
        .await
        .expect_err("the bucket is empty");
    assert_eq!(refused.code(), Some("RequestLimitExceeded"));
    let west = bed.ec2("eu-west-1").await;
    for _ in 0..2 {
        west.describe_availability_zones()
            .send()
            .await
            .expect("eu-west-1 has its own bucket");
    }
}

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
