//! The gate's contract check (testbed/gate.py, contract.py): what EC2 refuses is refused.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use e2e_tests::seed;
use e2e_tests::TestBed;

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
async fn the_contract_check_refuses_what_sts_refuses_and_moto_alone_accepts() {
    // AssumeRole's RoleSessionName is 2 to 64 characters (STS API reference; botocore's model).
    for contract in [true, false] {
        let bed = if contract {
            TestBed::start()
        } else {
            TestBed::start_without_contract()
        };
        let sts = aws_sdk_sts::Client::new(&bed.sdk("us-east-1").await);
        let assume = |session: &str| {
            sts.assume_role()
                .role_arn("arn:aws:iam::123456789012:role/any")
                .role_session_name(session)
                .tags(
                    aws_sdk_sts::types::Tag::builder()
                        .key("ami-lifecycle-function")
                        .value("ami-distribute")
                        .build()
                        .expect("a tag"),
                )
                .send()
        };
        let short = assume("a").await;
        if contract {
            let err = short.expect_err("a one-character session name is refused");
            let err = err.into_service_error();
            assert_eq!(
                aws_sdk_sts::error::ProvideErrorMetadata::code(&err),
                Some("InvalidParameterValue"),
                "{err:?}"
            );
            // A valid request, with its tags as `Tags.member.N`, passes.
            assume("ami-distribute").await.expect("a valid AssumeRole");
        } else {
            short.expect("plain moto accepts it");
        }
    }
}
