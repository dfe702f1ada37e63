//! CopyImage, seen from the destination region.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::convert::{tag_spec, tags_of};
use super::Ec2;
use crate::domain::ids::Region;
use crate::domain::model::{CopyFound, ImageState};
use crate::domain::policy::CopyDestination;
use crate::domain::tags;
use crate::error::{Error, Result};
use crate::ports::CopyImages;

impl CopyImages for Ec2 {
    /// How many of the account's AMIs are pending in this region (copies in flight among them).
    async fn pending_images(&self) -> Result<usize> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("state").values("pending").build())
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out.images().len())
    }

    /// The account's copies of `source_image_id` in this region (found by their lineage tag),
    /// in every state: a copy can fail after CopyImage accepted it.
    async fn copies_of(&self, source_image_id: &str) -> Result<Vec<CopyFound>> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::SOURCE_IMAGE))
                    .values(source_image_id)
                    .build(),
            )
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out
            .images()
            .iter()
            .filter_map(|i| {
                Some(CopyFound {
                    image_id: i.image_id.clone()?,
                    state: ImageState::from_ec2(i.state().map(|s| s.as_str()).unwrap_or("unknown")),
                    state_reason: i
                        .state_reason()
                        .and_then(|r| r.message().map(str::to_string)),
                    attempt: tags_of::<crate::domain::model::Tags>(i.tags())
                        .get(tags::COPY_ATTEMPT)
                        .and_then(|a| a.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    /// CopyImage into this (the destination) region; returns the copy's id.
    async fn copy_image(
        &self,
        source_image_id: &str,
        source_region: &Region,
        name: &str,
        how: &CopyDestination,
        client_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let mut request = self
            .client
            .copy_image()
            .source_image_id(source_image_id)
            .source_region(source_region.as_str())
            .name(name)
            .description(format!("Copy of {source_image_id} from {source_region}"))
            .client_token(client_token)
            .tag_specifications(tag_spec(ResourceType::Image, tags))
            .tag_specifications(tag_spec(ResourceType::Snapshot, tags));
        if how.encrypted {
            request = request.encrypted(true);
            if let Some(key) = &how.kms_key_id {
                request = request.kms_key_id(key);
            }
        }
        let out = request.send().await.map_err(self.err("CopyImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!(
                "CopyImage of {source_image_id} returned no image id"
            ))
        })
    }
}
