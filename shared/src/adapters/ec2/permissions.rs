//! Launch permissions and snapshots' createVolumePermission.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, ImageAttributeName,
    LaunchPermissionModifications, PermissionGroup, SnapshotAttributeName, Tag,
};
use chrono::{DateTime, Utc};

use super::convert::{grant_of, launch_permission};
use super::Ec2;
use crate::domain::grant::Grant;
use crate::domain::tags;
use crate::error::Result;
use crate::ports::Permissions;

impl Permissions for Ec2 {
    /// Whether block public access for AMIs is on in this region
    /// (GetImageBlockPublicAccessState: `block-new-sharing`; `unblocked` otherwise).
    async fn image_block_public_access(&self) -> Result<bool> {
        let out = self
            .client
            .get_image_block_public_access_state()
            .send()
            .await
            .map_err(self.err("GetImageBlockPublicAccessState"))?;
        Ok(out.image_block_public_access_state() != Some("unblocked"))
    }

    /// The AMI's launch permissions (DescribeImageAttribute `launchPermission`).
    async fn launch_permissions(&self, image_id: &str) -> Result<BTreeSet<Grant>> {
        let out = self
            .client
            .describe_image_attribute()
            .image_id(image_id)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .map_err(self.err("DescribeImageAttribute"))?;
        Ok(out
            .launch_permissions()
            .iter()
            .filter_map(grant_of)
            .collect())
    }

    /// One ModifyImageAttribute with exactly these additions and removals.
    async fn modify_launch_permissions(
        &self,
        image_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let changes = LaunchPermissionModifications::builder()
            .set_add(Some(add.iter().map(launch_permission).collect()))
            .set_remove(Some(remove.iter().map(launch_permission).collect()))
            .build();
        self.client
            .modify_image_attribute()
            .image_id(image_id)
            .launch_permission(changes)
            .send()
            .await
            .map_err(self.err("ModifyImageAttribute"))?;
        Ok(())
    }

    /// CreateTags of [`tags::SHARED_AT`] on the AMI.
    async fn mark_shared(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
        let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.client
            .create_tags()
            .resources(image_id)
            .tags(Tag::builder().key(tags::SHARED_AT).value(when).build())
            .send()
            .await
            .map_err(self.err("CreateTags"))?;
        Ok(())
    }

    /// A snapshot's createVolumePermission (accounts, and `public` for group `all`).
    async fn volume_permissions(&self, snapshot_id: &str) -> Result<BTreeSet<Grant>> {
        let out = self
            .client
            .describe_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(self.err("DescribeSnapshotAttribute"))?;
        Ok(out
            .create_volume_permissions()
            .iter()
            .filter_map(|p| match (&p.user_id, &p.group) {
                (Some(u), _) => Some(Grant::Account(u.clone())),
                (None, Some(g)) if g.as_str() == "all" => Some(Grant::Public),
                _ => None,
            })
            .collect())
    }

    /// One ModifySnapshotAttribute with exactly these createVolumePermission changes.
    async fn modify_volume_permissions(
        &self,
        snapshot_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let volume = |g: &Grant| match g {
            Grant::Public => Some(
                CreateVolumePermission::builder()
                    .group(PermissionGroup::All)
                    .build(),
            ),
            Grant::Account(a) => Some(CreateVolumePermission::builder().user_id(a).build()),
            _ => None,
        };
        let changes = CreateVolumePermissionModifications::builder()
            .set_add(Some(add.iter().filter_map(volume).collect()))
            .set_remove(Some(remove.iter().filter_map(volume).collect()))
            .build();
        self.client
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .create_volume_permission(changes)
            .send()
            .await
            .map_err(self.err("ModifySnapshotAttribute"))?;
        Ok(())
    }

    /// The KMS keys that encrypt these snapshots.
    async fn snapshot_kms_keys(&self, snapshot_ids: &[String]) -> Result<Vec<String>> {
        if snapshot_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_snapshots()
            .set_snapshot_ids(Some(snapshot_ids.to_vec()))
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))?;
        let mut keys: Vec<String> = out
            .snapshots()
            .iter()
            .filter_map(|s| s.kms_key_id.clone())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
