//! Launch template versions (testbed/launch_templates.py).

use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use e2e_tests::{seed, BASE_X86};

use crate::bed;

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
async fn a_template_version_inherits_its_source_and_is_made_once_per_client_token() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let template = ec2
            .create_launch_template()
            .launch_template_name("web-servers")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(BASE_X86)
                    .instance_type(InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplate")
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .expect("id")
            .to_string();
        let version = || {
            ec2.create_launch_template_version()
                .launch_template_id(&template)
                .source_version("$Latest")
                .launch_template_data(
                    RequestLaunchTemplateData::builder()
                        .image_id("ami-0123456789abcdef0")
                        .build(),
                )
                .client_token("lt-ami-1")
                .send()
        };
        let first = version().await.expect("CreateLaunchTemplateVersion");
        let again = version().await.expect("CreateLaunchTemplateVersion");
        let data = first
            .launch_template_version()
            .and_then(|v| v.launch_template_data())
            .expect("data");
        let numbers =
            [&first, &again].map(|o| o.launch_template_version().and_then(|v| v.version_number()));
        if plain {
            assert_eq!(
                data.instance_type(),
                None,
                "plain moto is expected to drop what the source version had"
            );
            assert_ne!(
                numbers[0], numbers[1],
                "plain moto is expected to make a version per call"
            );
            continue;
        }
        assert_eq!(
            data.instance_type().map(|t| t.as_str()),
            Some("t3.micro"),
            "inherited from $Latest"
        );
        assert_eq!(data.image_id(), Some("ami-0123456789abcdef0"));
        assert_eq!(numbers, [Some(2), Some(2)], "one version per client token");
    }
}

#[tokio::test]
async fn a_template_version_drops_the_snapshots_it_inherits_unless_they_are_sent_again() {
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    };
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let snapshot = seed::snapshot(&ec2, false).await;
        let data_volume = LaunchTemplateBlockDeviceMappingRequest::builder()
            .device_name("/dev/sdb")
            .ebs(
                LaunchTemplateEbsBlockDeviceRequest::builder()
                    .snapshot_id(&snapshot)
                    .volume_size(10)
                    .build(),
            )
            .build();
        ec2.create_launch_template()
            .launch_template_name("with-data")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(BASE_X86)
                    .block_device_mappings(data_volume)
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplate");
        ec2.create_launch_template_version()
            .launch_template_name("with-data")
            .source_version("1")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(BASE_X86)
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplateVersion");
        let version = ec2
            .describe_launch_template_versions()
            .launch_template_name("with-data")
            .versions("2")
            .send()
            .await
            .expect("DescribeLaunchTemplateVersions");
        let mappings = version.launch_template_versions()[0]
            .launch_template_data()
            .map(|d| d.block_device_mappings().to_vec())
            .unwrap_or_default();
        if plain {
            assert!(
                mappings.is_empty(),
                "plain moto is expected to inherit nothing from the source version"
            );
            continue;
        }
        assert_eq!(mappings.len(), 1, "the mapping is inherited");
        assert_eq!(
            mappings[0].ebs().and_then(|e| e.snapshot_id()),
            None,
            "its snapshot is not"
        );
    }
}
