//! The adapters against the test bed: create an image, list it back through every page, publish.

use std::collections::BTreeMap;

use ami_lifecycle::adapters::ec2::Ec2;
use ami_lifecycle::adapters::eventbridge::EventBridge;
use ami_lifecycle::domain::event::event;
use ami_lifecycle::ports::{BuildImages, EventBus, ImageInventory};
use e2e_tests::TestBed;
use serde_json::json;

use e2e_tests::seed;

#[tokio::test]
async fn an_image_created_through_the_adapter_is_listed_back_with_its_tags_and_announced() {
    let bed = TestBed::start();
    let client = bed.ec2("us-east-1").await;
    let ec2 = Ec2::new(client.clone(), "us-east-1".parse().expect("region"));
    let instance = seed::instance(&client, 1, &[]).await;
    let tags = BTreeMap::from([
        ("Team".to_string(), "platform".to_string()),
        ("Family".to_string(), "web".to_string()),
    ]);

    let image_id = ec2
        .create_image(&instance, "web-20261125T000000Z", true, &tags)
        .await
        .expect("create_image");

    let images = ec2.images(None).await.expect("images");
    let image = images
        .iter()
        .find(|i| i.id == image_id)
        .expect("the new image is listed");
    assert_eq!(BTreeMap::from(&image.tags), tags);
    assert_eq!(image.snapshot_ids.len(), 2, "root and data volume");
    let snapshots = ec2.snapshots().await.expect("snapshots");
    for id in &image.snapshot_ids {
        let snap = snapshots
            .iter()
            .find(|s| &s.id == id)
            .expect("snapshot listed");
        assert_eq!(
            BTreeMap::from(&snap.tags),
            tags,
            "tags on the snapshots at creation"
        );
        assert_eq!(snap.owner_id, e2e_tests::ACCOUNT);
    }

    let bus = EventBridge::new(bed.eventbridge().await, "default");
    let (published, refused) = bus
        .send(vec![event(
            "AMI Build Started",
            vec![image_id.clone()],
            json!({"ImageId": image_id}),
        )])
        .await;
    assert_eq!(published, 1);
    assert!(refused.is_empty());
    let seen = bed.published();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["source"], "ami.automation");
    assert_eq!(seen[0]["detail_type"], "AMI Build Started");
    assert_eq!(seen[0]["detail"]["ImageId"], image_id.as_str());
}

#[tokio::test]
async fn the_scans_follow_every_page() {
    let bed = TestBed::start();
    let client = bed.ec2("us-east-1").await;
    let ec2 = Ec2::new(client.clone(), "us-east-1".parse().expect("region")).with_page_size(5);
    let instance = seed::instance(&client, 0, &[]).await;
    let mut created = Vec::new();
    for i in 0..12 {
        created.push(seed::image(&client, &instance, &format!("paged-{i:02}"), &[]).await);
    }
    created.sort();
    let mut listed: Vec<String> = ec2
        .images(None)
        .await
        .expect("images")
        .into_iter()
        .map(|i| i.id)
        .collect();
    listed.sort();
    assert_eq!(listed, created, "12 images over pages of 5");
    assert_eq!(
        ec2.snapshots().await.expect("snapshots").len(),
        12,
        "12 snapshots over pages of 5"
    );
}

#[tokio::test]
async fn more_than_ten_events_go_out_in_batches_of_ten() {
    let bed = TestBed::start();
    let bus = EventBridge::new(bed.eventbridge().await, "default");
    let events = (0..23)
        .map(|i| event("AMI Deprecated", vec![format!("ami-{i}")], json!({"n": i})))
        .collect();
    let (published, _) = bus.send(events).await;
    assert_eq!(published, 23);
    assert_eq!(bed.published().len(), 23);
}

#[tokio::test]
async fn events_to_a_bus_that_does_not_exist_are_reported_as_failed() {
    let bed = TestBed::start();
    let bus = EventBridge::new(bed.eventbridge().await, "no-such-bus");
    let (published, refused) = bus
        .send(vec![event("AMI Deprecated", vec![], json!({}))])
        .await;
    assert_eq!(published, 0);
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[tokio::test]
async fn a_grant_already_retired_is_not_found_and_the_adapter_takes_that_as_done() {
    use ami_lifecycle::adapters::kms::Kms;
    use ami_lifecycle::ports::KeyInfo;
    use aws_sdk_kms::error::ProvideErrorMetadata;
    for plain in [false, true] {
        let bed = if plain {
            TestBed::start_plain()
        } else {
            TestBed::start()
        };
        let client = bed.kms("us-east-1").await;
        let key = seed::kms_key(&client).await;
        let grant = client
            .create_grant()
            .key_id(&key)
            .grantee_principal("arn:aws:iam::111122223333:root")
            .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
            .send()
            .await
            .expect("CreateGrant")
            .grant_id()
            .unwrap_or_default()
            .to_string();
        let retire = || client.retire_grant().key_id(&key).grant_id(&grant).send();
        retire().await.expect("the first RetireGrant");
        let again = retire().await.map_err(|e| e.into_service_error());
        if plain {
            assert!(
                again.is_ok(),
                "plain moto answers success for a grant that is gone"
            );
        } else {
            let code = again.err().and_then(|e| e.code().map(String::from));
            assert_eq!(code.as_deref(), Some("NotFoundException"));
            let adapter = Kms::new(client.clone(), "us-east-1".parse().expect("region"));
            adapter
                .retire_grant(&key, &grant)
                .await
                .expect("a grant already gone is retired");
        }
    }
}
