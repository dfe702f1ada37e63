//! Undo: the Recycle Bin's AMIs and snapshots, their restores, EnableImage and
//! DisableImageDeprecation.

use super::convert::smithy_time;
use super::{absent, Ec2};
use crate::domain::model::Image;
use crate::domain::recycle_bin::{BinImage, BinSnapshot};
use crate::error::Result;
use crate::ports::{ImageInventory, RestoreImages};

/// ListSnapshotsInRecycleBin's page (5 to 1000) and ListImagesInRecycleBin's ImageIds (at most 20).
const BIN_PAGE: i32 = 1000;
const BIN_IMAGE_IDS: usize = 20;

impl RestoreImages for Ec2 {
    async fn registered(&self, image_id: &str) -> Result<Option<Image>> {
        // The inventory scan of one id; a deregistered AMI is "not found", which means none.
        let ids = [image_id.to_string()];
        absent(
            self.images(Some(&ids))
                .await
                .map(|found| found.into_iter().next()),
        )
    }

    async fn images_in_bin(&self, ids: &[String]) -> Result<Vec<BinImage>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(BIN_IMAGE_IDS) {
            let mut pages = self
                .client
                .list_images_in_recycle_bin()
                .set_image_ids(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.err("ListImagesInRecycleBin"))?;
                found.extend(page.images().iter().filter_map(|i| {
                    Some(BinImage {
                        image_id: i.image_id()?.to_string(),
                        exit: smithy_time(i.recycle_bin_exit_time()),
                    })
                }));
            }
        }
        Ok(found)
    }

    async fn snapshots_in_bin(&self) -> Result<Vec<BinSnapshot>> {
        let mut pages = self
            .client
            .list_snapshots_in_recycle_bin()
            .max_results(BIN_PAGE)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("ListSnapshotsInRecycleBin"))?;
            found.extend(page.snapshots().iter().filter_map(|s| {
                Some(BinSnapshot {
                    snapshot_id: s.snapshot_id()?.to_string(),
                    description: s.description().unwrap_or_default().to_string(),
                })
            }));
        }
        Ok(found)
    }

    async fn restore_snapshot(&self, snapshot_id: &str) -> Result<String> {
        let out = self
            .client
            .restore_snapshot_from_recycle_bin()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(self.err("RestoreSnapshotFromRecycleBin"))?;
        Ok(out
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default())
    }

    async fn restore_image(&self, image_id: &str) -> Result<()> {
        self.client
            .restore_image_from_recycle_bin()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("RestoreImageFromRecycleBin"))?;
        Ok(())
    }

    async fn enable(&self, image_id: &str) -> Result<()> {
        self.client
            .enable_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("EnableImage"))?;
        Ok(())
    }

    async fn cancel_deprecation(&self, image_id: &str) -> Result<()> {
        self.client
            .disable_image_deprecation()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("DisableImageDeprecation"))?;
        Ok(())
    }

    async fn missing_snapshots(&self, snapshot_ids: &[String]) -> Result<Vec<String>> {
        let mut present = std::collections::HashSet::new();
        // A filter takes at most 200 values.
        for chunk in snapshot_ids.chunks(200) {
            let mut pages = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("snapshot-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.err("DescribeSnapshots"))?;
                present.extend(
                    page.snapshots()
                        .iter()
                        .filter_map(|s| s.snapshot_id().map(str::to_string)),
                );
            }
        }
        Ok(snapshot_ids
            .iter()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect())
    }
}
