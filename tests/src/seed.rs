//! Building fleets in the test bed through the real SDK.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceType, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;

/// Launches an instance of the x86 base image with a root volume and `extra` data volumes.
pub async fn instance(ec2: &Client, extra: usize, tags: &[(&str, &str)]) -> String {
    let mut request = ec2
        .run_instances()
        .image_id(crate::BASE_X86)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(volume("/dev/xvda", 8));
    for i in 0..extra {
        let device = format!("/dev/sd{}", (b'b' + i as u8) as char);
        request = request.block_device_mappings(volume(&device, 10 + i as i32));
    }
    if !tags.is_empty() {
        request = request.tag_specifications(tag_spec(ResourceType::Instance, tags));
    }
    let out = request.send().await.expect("RunInstances");
    out.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string()
}

pub fn volume(device: &str, size: i32) -> BlockDeviceMapping {
    BlockDeviceMapping::builder()
        .device_name(device)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(size)
                .delete_on_termination(true)
                .build(),
        )
        .build()
}

/// A TagSpecification from pairs.
pub fn tag_spec(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build()
}

/// CreateImage of `instance` with tags on the image.
pub async fn image(ec2: &Client, instance: &str, name: &str, tags: &[(&str, &str)]) -> String {
    let mut request = ec2
        .create_image()
        .instance_id(instance)
        .name(name)
        .no_reboot(true);
    if !tags.is_empty() {
        request = request.tag_specifications(tag_spec(ResourceType::Image, tags));
    }
    request
        .send()
        .await
        .expect("CreateImage")
        .image_id()
        .expect("image id")
        .to_string()
}

/// The snapshots of an image, from DescribeImages.
pub async fn snapshots_of(ec2: &Client, image: &str) -> Vec<String> {
    let out = ec2
        .describe_images()
        .image_ids(image)
        .include_disabled(true)
        .send()
        .await
        .expect("DescribeImages");
    out.images()
        .iter()
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
        .collect()
}

/// RegisterImage from existing snapshots (root first).
pub async fn register(
    ec2: &Client,
    name: &str,
    snapshots: &[String],
    tags: &[(&str, &str)],
) -> String {
    let mut request = ec2
        .register_image()
        .name(name)
        .root_device_name("/dev/xvda")
        .virtualization_type("hvm");
    for (i, snap) in snapshots.iter().enumerate() {
        let device = if i == 0 {
            "/dev/xvda".to_string()
        } else {
            format!("/dev/sd{}", (b'a' + i as u8) as char)
        };
        request = request.block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    EbsBlockDevice::builder()
                        .snapshot_id(snap)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    if !tags.is_empty() {
        request = request.tag_specifications(tag_spec(ResourceType::Image, tags));
    }
    request
        .send()
        .await
        .expect("RegisterImage")
        .image_id()
        .expect("image id")
        .to_string()
}

/// A snapshot of a new 8 GiB volume in us-east-1a (encrypted with the default EBS key if asked).
pub async fn snapshot(ec2: &Client, encrypted: bool) -> String {
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(encrypted)
        .send()
        .await
        .expect("CreateVolume");
    ec2.create_snapshot()
        .volume_id(volume.volume_id().expect("volume id"))
        .send()
        .await
        .expect("CreateSnapshot")
        .snapshot_id()
        .expect("snapshot id")
        .to_string()
}

/// Every image id of the account (disabled included), sorted.
pub async fn image_ids(ec2: &Client) -> Vec<String> {
    let out = ec2
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .send()
        .await
        .expect("DescribeImages");
    let mut ids: Vec<String> = out
        .images()
        .iter()
        .filter_map(|i| i.image_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Every snapshot id of the account, sorted.
pub async fn snapshot_ids(ec2: &Client) -> Vec<String> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("DescribeSnapshots");
    let mut ids: Vec<String> = out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// A VPC with one subnet and one security group, for launch tests: `(subnet, security group)`.
pub async fn network(ec2: &Client) -> (String, String) {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .send()
        .await
        .expect("CreateSubnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string();
    let group = ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name("ami-validation")
        .description("launch tests")
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id()
        .expect("group id")
        .to_string();
    (subnet, group)
}

/// The volumes in state `available` (attached to nothing).
pub async fn available_volumes(ec2: &Client) -> Vec<String> {
    let out = ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("status")
                .values("available")
                .build(),
        )
        .send()
        .await
        .expect("DescribeVolumes");
    out.volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect()
}

/// A server of the base image with a root volume and a 20 GiB data volume kept on termination
/// (`DeleteOnTermination=false`, as a volume attached to a server usually is).
pub async fn server_with_kept_data_volume(ec2: &Client) -> String {
    let kept = BlockDeviceMapping::builder()
        .device_name("/dev/sdb")
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(20)
                .delete_on_termination(false)
                .build(),
        )
        .build();
    ec2.run_instances()
        .image_id(crate::BASE_X86)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(volume("/dev/xvda", 8))
        .block_device_mappings(kept)
        .send()
        .await
        .expect("RunInstances")
        .instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string()
}

/// A new customer managed KMS key: its ARN.
pub async fn kms_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key()
        .description("AMI key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .map(|m| m.arn().unwrap_or_default().to_string())
        .expect("key")
}

/// An AMI whose snapshot is encrypted with a new customer managed key: `(image, key ARN)`.
pub async fn encrypted_image(
    ec2: &Client,
    kms: &aws_sdk_kms::Client,
    name: &str,
    tags: &[(&str, &str)],
) -> (String, String) {
    let key = kms_key(kms).await;
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .encrypted(true)
        .kms_key_id(&key)
        .send()
        .await
        .expect("CreateVolume");
    let snap = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().expect("id"))
        .send()
        .await
        .expect("CreateSnapshot")
        .snapshot_id()
        .expect("id")
        .to_string();
    let image = register(ec2, name, &[snap], tags).await;
    (image, key)
}

/// Who may launch the image: account ids, organization and OU ARNs, `all`.
pub async fn launch_permissions(ec2: &Client, image: &str) -> std::collections::BTreeSet<String> {
    let out = ec2
        .describe_image_attribute()
        .image_id(image)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .expect("DescribeImageAttribute");
    out.launch_permissions()
        .iter()
        .map(|p| {
            p.user_id()
                .or(p.organization_arn())
                .or(p.organizational_unit_arn())
                .map(str::to_string)
                .or_else(|| p.group().map(|g| g.as_str().to_string()))
                .unwrap_or_default()
        })
        .collect()
}

/// The value of one of the image's tags.
pub async fn image_tag(ec2: &Client, image: &str, key: &str) -> Option<String> {
    let out = ec2
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .expect("DescribeImages");
    out.images()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}
