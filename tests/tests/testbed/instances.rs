//! Instances (testbed/instances.py): RunInstances and its volumes, idempotency, architecture,
//! status checks and console output.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::InstanceType;
use e2e_tests::{seed, BASE_ARM, BASE_X86};

use crate::bed;

/// Launches one instance of the x86 base image with this client token.
pub(crate) async fn launch(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    token: &str,
    kind: InstanceType,
) -> Result<String, aws_sdk_ec2::operation::run_instances::RunInstancesError> {
    ec2.run_instances()
        .image_id(BASE_X86)
        .instance_type(kind)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .client_token(token)
        .send()
        .await
        .map(|out| {
            out.instances()[0]
                .instance_id()
                .unwrap_or_default()
                .to_string()
        })
        .map_err(|e| e.into_service_error())
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
async fn run_instances_launches_once_per_client_token() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        let first = launch(&ec2, &subnet, "validate-ami-1", InstanceType::T3Micro)
            .await
            .expect("RunInstances");
        let again = launch(&ec2, &subnet, "validate-ami-1", InstanceType::T3Micro)
            .await
            .expect("RunInstances");
        if plain {
            assert_ne!(
                first, again,
                "plain moto is expected to launch a second instance"
            );
            continue;
        }
        assert_eq!(
            first, again,
            "the same token and parameters answer with the same instance"
        );
        let changed = launch(&ec2, &subnet, "validate-ami-1", InstanceType::T3Small).await;
        assert_eq!(
            changed.expect_err("a mismatch").code(),
            Some("IdempotentParameterMismatch")
        );
        let all = ec2
            .describe_instances()
            .send()
            .await
            .expect("DescribeInstances");
        let count: usize = all.reservations().iter().map(|r| r.instances().len()).sum();
        assert_eq!(count, 1);
    }
}

#[tokio::test]
async fn run_instances_refuses_an_ami_of_another_architecture_than_the_instance_type() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        let arm_on_x86 = ec2
            .run_instances()
            .image_id(BASE_ARM)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .send()
            .await;
        if plain {
            assert!(arm_on_x86.is_ok(), "plain moto is expected to launch it");
            continue;
        }
        let e = arm_on_x86.expect_err("refused").into_service_error();
        assert_eq!(e.code(), Some("InvalidParameterValue"));
        assert!(e.message().unwrap_or_default().contains("'arm64'"), "{e:?}");
        ec2.run_instances()
            .image_id(BASE_ARM)
            .instance_type(InstanceType::T4gMicro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet)
            .send()
            .await
            .expect("an arm64 type launches it");
    }
}

#[tokio::test]
async fn status_checks_initialize_after_launch_and_console_output_comes_with_the_boot() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        let id = launch(&ec2, &subnet, "boot", InstanceType::T3Micro)
            .await
            .expect("RunInstances");
        let status = ec2
            .describe_instance_status()
            .instance_ids(&id)
            .send()
            .await
            .expect("DescribeInstanceStatus");
        let system = status.instance_statuses()[0]
            .system_status()
            .and_then(|s| s.status())
            .map(|s| s.as_str().to_string());
        let console = ec2
            .get_console_output()
            .instance_id(&id)
            .send()
            .await
            .expect("GetConsoleOutput");
        if plain {
            assert_eq!(
                system.as_deref(),
                Some("ok"),
                "plain moto is expected to pass the checks at once"
            );
            assert!(
                console.output().is_some(),
                "plain moto is expected to answer a console at once"
            );
            continue;
        }
        assert_eq!(system.as_deref(), Some("initializing"));
        assert_eq!(console.output(), None, "no console output before the boot");
        bed.set_instance(&id, serde_json::json!({"system_status": "ok", "instance_status": "impaired", "console": "web login: "}));
        let status = ec2
            .describe_instance_status()
            .instance_ids(&id)
            .send()
            .await
            .expect("DescribeInstanceStatus");
        let s = &status.instance_statuses()[0];
        assert_eq!(
            s.system_status()
                .and_then(|s| s.status())
                .map(|s| s.as_str()),
            Some("ok")
        );
        assert_eq!(
            s.instance_status()
                .and_then(|s| s.status())
                .map(|s| s.as_str()),
            Some("impaired")
        );
        let console = ec2
            .get_console_output()
            .instance_id(&id)
            .send()
            .await
            .expect("GetConsoleOutput");
        let text =
            aws_smithy_types::base64::decode(console.output().expect("output")).expect("base64");
        assert_eq!(String::from_utf8_lossy(&text), "web login: ");
    }
}

#[tokio::test]
async fn an_instance_gets_a_volume_for_each_ebs_mapping_of_its_ami_and_termination_keeps_those_the_ami_keeps(
) {
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice};
    let mapping = |device: &str, size: Option<i32>, delete: bool| {
        BlockDeviceMapping::builder()
            .device_name(device)
            .ebs(
                EbsBlockDevice::builder()
                    .set_volume_size(size)
                    .delete_on_termination(delete)
                    .build(),
            )
            .build()
    };
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        // A server with a data volume kept on termination, imaged as it is.
        let server = seed::server_with_kept_data_volume(&ec2).await;
        let image = seed::image(&ec2, &server, "server", &[]).await;
        let launch = |overrides: Vec<BlockDeviceMapping>| {
            let (ec2, image) = (ec2.clone(), image.clone());
            async move {
                let id = ec2
                    .run_instances()
                    .image_id(&image)
                    .instance_type(InstanceType::T3Micro)
                    .min_count(1)
                    .max_count(1)
                    .set_block_device_mappings(Some(overrides).filter(|o| !o.is_empty()))
                    .send()
                    .await
                    .expect("RunInstances")
                    .instances()[0]
                    .instance_id()
                    .expect("id")
                    .to_string();
                let volumes = ec2
                    .describe_volumes()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("attachment.instance-id")
                            .values(&id)
                            .build(),
                    )
                    .send()
                    .await
                    .expect("DescribeVolumes")
                    .volumes()
                    .len();
                ec2.terminate_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .expect("TerminateInstances");
                volumes
            }
        };
        let as_mapped = launch(Vec::new()).await;
        let left = seed::available_volumes(&ec2).await;
        if plain {
            assert_eq!(
                (as_mapped, left.len()),
                (1, 0),
                "plain moto is expected to make one root volume whatever the AMI maps"
            );
            continue;
        }
        assert_eq!(as_mapped, 2, "a volume for each EBS mapping of the AMI");
        assert_eq!(
            left.len(),
            1,
            "the data volume the AMI keeps outlives the instance"
        );
        // Whoever launches overrides the AMI's DeleteOnTermination.
        let overridden = vec![
            mapping("/dev/xvda", None, true),
            mapping("/dev/sdb", None, true),
        ];
        assert_eq!(launch(overridden).await, 2);
        assert_eq!(
            seed::available_volumes(&ec2).await,
            left,
            "nothing more left behind"
        );
    }
}
