//! KMS (testbed/kms.py): AWS managed keys and named grants.

use e2e_tests::seed;

use crate::bed;

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
