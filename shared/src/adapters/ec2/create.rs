//! CreateImage and RegisterImage, and the look-ups the build makes before them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::convert::{instance_info, tag_spec, tags_of};
use super::{absent, Ec2};
use crate::domain::model::InstanceInfo;
use crate::domain::policy::TagPattern;
use crate::error::{Error, Result};
use crate::ports::{BuildImages, RegisterSpec};

impl BuildImages for Ec2 {
    /// Running and stopped instances carrying `tags` (EC2 filters, every page).
    async fn instances_tagged(
        &self,
        tags: &BTreeMap<String, TagPattern>,
    ) -> Result<Vec<InstanceInfo>> {
        let mut filters = vec![Filter::builder()
            .name("instance-state-name")
            .values("running")
            .values("stopped")
            .build()];
        for (key, pattern) in tags {
            filters.push(match pattern {
                TagPattern::Any => Filter::builder().name("tag-key").values(key).build(),
                TagPattern::Prefix(p) => Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(format!("{p}*"))
                    .build(),
                TagPattern::Exact(v) => Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(v)
                    .build(),
            });
        }
        let mut out: Vec<InstanceInfo> = self
            .instances_matching(filters, self.page_size)
            .await?
            .iter()
            .filter_map(instance_info)
            .collect();
        // Filters on tags take `*` as a wildcard: check the patterns exactly.
        out.retain(|i| {
            tags.iter()
                .all(|(k, p)| i.tags.get(k).is_some_and(|v| p.matches(v)))
        });
        Ok(out)
    }

    /// One instance, or none if it does not exist.
    async fn instance(&self, id: &str) -> Result<Option<InstanceInfo>> {
        let found = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeInstances"))
            .map(|out| {
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(instance_info)
            });
        absent(found)
    }

    /// The account's AMI with this name, if any.
    async fn image_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out.images().iter().find_map(|i| i.image_id.clone()))
    }

    /// The tags of one of the account's AMIs, or none if the account has no such AMI.
    async fn image_tags(&self, id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let found = self
            .client
            .describe_images()
            .owners("self")
            .image_ids(id)
            .include_disabled(true)
            .send()
            .await
            .map_err(self.err("DescribeImages"))
            .map(|out| out.images().first().map(|i| tags_of(i.tags())));
        absent(found)
    }

    /// The state of one of the account's snapshots, or none when it does not exist or another
    /// account owns it.
    async fn own_snapshot(&self, id: &str) -> Result<Option<String>> {
        let found = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .snapshot_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))
            .map(|out| {
                out.snapshots()
                    .first()
                    .and_then(|s| s.state())
                    .map(|s| s.as_str().to_string())
            });
        absent(found)
    }

    /// The tags of a snapshot.
    async fn snapshot_tags(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let out = self
            .client
            .describe_snapshots()
            .snapshot_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))?;
        Ok(out
            .snapshots()
            .first()
            .map(|s| tags_of(s.tags()))
            .unwrap_or_default())
    }

    /// RegisterImage: an EBS-backed HVM AMI whose root volume is the snapshot.
    async fn register_image(&self, spec: &RegisterSpec) -> Result<String> {
        use aws_sdk_ec2::types::{
            ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, VolumeType,
        };
        let root = BlockDeviceMapping::builder()
            .device_name(&spec.root_device_name)
            .ebs(
                EbsBlockDevice::builder()
                    .snapshot_id(&spec.snapshot_id)
                    .delete_on_termination(spec.delete_on_termination)
                    .volume_type(VolumeType::from(spec.volume_type))
                    .set_iops(spec.iops.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                    .build(),
            )
            .build();
        let mut request = self
            .client
            .register_image()
            .name(&spec.name)
            .architecture(ArchitectureValues::from(spec.architecture))
            .virtualization_type("hvm")
            .ena_support(spec.ena_support)
            .root_device_name(&spec.root_device_name)
            .block_device_mappings(root)
            .tag_specifications(tag_spec(ResourceType::Image, &spec.tags));
        if let Some(mode) = spec.boot_mode {
            request = request.boot_mode(BootModeValues::from(mode));
        }
        let out = request.send().await.map_err(self.err("RegisterImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!(
                "RegisterImage of {} returned no image id",
                spec.snapshot_id
            ))
        })
    }

    /// CreateImage with TagSpecifications on the image and its snapshots; returns the image id.
    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        no_reboot: bool,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let out = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .no_reboot(no_reboot)
            .tag_specifications(tag_spec(ResourceType::Image, tags))
            .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(self.err("CreateImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!("CreateImage of {instance_id} returned no image id"))
        })
    }
}
