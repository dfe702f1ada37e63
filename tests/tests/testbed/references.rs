//! DescribeImageReferences (testbed/references.py).

use e2e_tests::seed;
use e2e_tests::TestBed;

use crate::bed;

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
