//! SSM Parameter Store (testbed/ssm.py): asynchronous validation of aws:ec2:image values.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::ParameterType;
use e2e_tests::{BASE_ARM, BASE_X86};

use crate::bed;

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
