//! The launch test's and publishing's EC2 and SSM behaviours the launcher adds, each proven on
//! the test bed and shown missing from plain moto.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use aws_sdk_ssm::types::ParameterType;
use e2e_tests::{seed, TestBed, BASE_ARM, BASE_X86};

fn bed(plain: bool) -> TestBed {
    if plain {
        TestBed::start_plain()
    } else {
        TestBed::start()
    }
}

async fn launch(
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
async fn an_image_parameter_naming_no_ami_is_never_written() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ssm = bed.ssm("us-east-1").await;
        let put = |value: &'static str| {
            ssm.put_parameter()
                .name("/ami/web/latest")
                .value(value)
                .r#type(ParameterType::String)
                .data_type("aws:ec2:image")
                .overwrite(true)
                .send()
        };
        put("ami-00000000000000dea")
            .await
            .expect("PutParameter answers success");
        let read = ssm.get_parameter().name("/ami/web/latest").send().await;
        if plain {
            assert!(read.is_ok(), "plain moto is expected to store any value");
            continue;
        }
        assert_eq!(
            read.expect_err("not written").into_service_error().code(),
            Some("ParameterNotFound")
        );
        put(BASE_X86).await.expect("PutParameter");
        let read = ssm
            .get_parameter()
            .name("/ami/web/latest")
            .send()
            .await
            .expect("GetParameter");
        assert_eq!(read.parameter().and_then(|p| p.value()), Some(BASE_X86));
    }
}

#[tokio::test]
async fn an_image_parameter_update_is_seen_once_ssm_validated_it_and_none_is_taken_meanwhile() {
    for plain in [false, true] {
        let bed = bed(plain);
        let ssm = bed.ssm("us-east-1").await;
        let put = |value: &'static str, data_type: &'static str| {
            ssm.put_parameter()
                .name("/ami/web/latest")
                .value(value)
                .r#type(ParameterType::String)
                .data_type(data_type)
                .overwrite(true)
                .send()
        };
        let read = || async {
            let p = ssm
                .get_parameter()
                .name("/ami/web/latest")
                .send()
                .await
                .expect("GetParameter");
            p.parameter()
                .map(|p| (p.value().unwrap_or_default().to_string(), p.version()))
                .expect("a parameter")
        };
        put(BASE_X86, "aws:ec2:image").await.expect("created");
        bed.ssm_validation(serde_json::json!({ "validation_seconds": 120 }));
        let answered = put(BASE_ARM, "aws:ec2:image")
            .await
            .expect("PutParameter answers at once")
            .version();
        assert_eq!(answered, 2);
        if plain {
            assert_eq!(
                read().await,
                (BASE_ARM.to_string(), 2),
                "plain moto stores it at once"
            );
            continue;
        }
        assert_eq!(read().await, (BASE_X86.to_string(), 1), "not yet validated");
        let second = put(BASE_X86, "aws:ec2:image").await;
        assert_eq!(
            second.expect_err("refused").into_service_error().code(),
            Some("TooManyUpdates")
        );
        assert_eq!(
            bed.ssm_validation(serde_json::json!({ "advance_seconds": 121 })),
            Vec::<String>::new()
        );
        assert_eq!(read().await, (BASE_ARM.to_string(), 2), "validated");
        // An existing parameter never changes to or from `aws:ec2:image`.
        ssm.put_parameter()
            .name("/ami/web/text")
            .value(BASE_X86)
            .r#type(ParameterType::String)
            .send()
            .await
            .expect("a text parameter");
        let changed = ssm
            .put_parameter()
            .name("/ami/web/text")
            .value(BASE_X86)
            .r#type(ParameterType::String)
            .data_type("aws:ec2:image")
            .overwrite(true)
            .send()
            .await;
        assert_eq!(
            changed.expect_err("refused").into_service_error().code(),
            Some("ValidationException")
        );
    }
}

#[tokio::test]
async fn a_named_kms_grant_is_created_once() {
    for plain in [false, true] {
        let bed = bed(plain);
        let kms = bed.kms("us-east-1").await;
        let key = seed::kms_key(&kms).await;
        let grant = || {
            kms.create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::111111111111:root")
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .name("ami-share-web-111111111111")
                .send()
        };
        let first = grant().await.expect("CreateGrant");
        let again = grant().await.expect("CreateGrant");
        let listed = kms
            .list_grants()
            .key_id(&key)
            .send()
            .await
            .expect("ListGrants");
        if plain {
            assert_eq!(
                listed.grants().len(),
                2,
                "plain moto is expected to make a second grant"
            );
            continue;
        }
        assert_eq!(first.grant_id(), again.grant_id());
        assert_eq!(listed.grants().len(), 1);
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

#[tokio::test]
async fn a_one_time_schedule_that_terminates_an_instance_runs_at_its_time() {
    use aws_sdk_scheduler::types::{
        ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
    };
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        let id = launch(&ec2, &subnet, "dead-man", InstanceType::T3Micro)
            .await
            .expect("RunInstances");
        let at = chrono::Utc::now() + chrono::Duration::minutes(10);
        bed.scheduler("us-east-1")
            .await
            .create_schedule()
            .name(format!("ami-publish-{id}"))
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .expect("window"),
            )
            .target(
                Target::builder()
                    .arn("arn:aws:scheduler:::aws-sdk:ec2:terminateInstances")
                    .role_arn(e2e_tests::DEAD_MAN_ROLE)
                    .input(serde_json::json!({ "InstanceIds": [id] }).to_string())
                    .build()
                    .expect("target"),
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await
            .expect("CreateSchedule");
        let state = |ec2: aws_sdk_ec2::Client, id: String| async move {
            ec2.describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("DescribeInstances")
                .reservations()[0]
                .instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default()
        };
        assert!(bed.advance_scheduler(9).is_empty(), "not before its time");
        assert_eq!(state(ec2.clone(), id.clone()).await, "running");
        let run = bed.advance_scheduler(2);
        if plain {
            assert!(run.is_empty(), "plain moto is expected to run no schedule");
            assert_eq!(state(ec2.clone(), id.clone()).await, "running");
            continue;
        }
        assert_eq!(run.len(), 1, "{run:?}");
        assert_eq!(state(ec2.clone(), id.clone()).await, "terminated");
        let left = bed
            .scheduler("us-east-1")
            .await
            .list_schedules()
            .send()
            .await
            .expect("ListSchedules");
        assert!(left.schedules().is_empty(), "deleted after it ran");
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
