//! Deprecate, disable, deregister, delete, protect: the changes age-out makes.

use chrono::{DateTime, Utc};

use aws_sdk_ec2::types::Tag;

use super::Ec2;
use crate::domain::tags;
use crate::error::Result;
use crate::ports::RetireImages;

impl RetireImages for Ec2 {
    async fn deprecate(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.client
            .enable_image_deprecation()
            .image_id(image_id)
            .deprecate_at(aws_smithy_types::DateTime::from_secs(at.timestamp()))
            .send()
            .await
            .map_err(self.err("EnableImageDeprecation"))?;
        Ok(())
    }

    async fn disable(&self, image_id: &str) -> Result<()> {
        self.client
            .disable_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("DisableImage"))?;
        Ok(())
    }

    async fn deregister(&self, image_id: &str) -> Result<Vec<String>> {
        let out = self
            .client
            .deregister_image()
            .image_id(image_id)
            .delete_associated_snapshots(true)
            .send()
            .await
            .map_err(self.err("DeregisterImage"))?;
        Ok(out
            .delete_snapshot_results()
            .iter()
            .filter(|r| r.return_code().is_some_and(|c| c.as_str() == "success"))
            .filter_map(|r| r.snapshot_id.clone())
            .collect())
    }

    async fn protect(&self, image_id: &str) -> Result<()> {
        // The tag first: a protection age-out cannot later recognise as its own would stay on
        // for good, while a tag without a protection is harmless.
        self.client
            .create_tags()
            .resources(image_id)
            .tags(
                Tag::builder()
                    .key(tags::PROTECTED_BY)
                    .value(tags::PROTECTED_BY_AGE_OUT)
                    .build(),
            )
            .send()
            .await
            .map_err(self.err("CreateTags"))?;
        self.client
            .enable_image_deregistration_protection()
            .image_id(image_id)
            .with_cooldown(true)
            .send()
            .await
            .map_err(self.err("EnableImageDeregistrationProtection"))?;
        Ok(())
    }

    async fn unprotect(&self, image_id: &str) -> Result<()> {
        self.client
            .disable_image_deregistration_protection()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("DisableImageDeregistrationProtection"))?;
        self.client
            .delete_tags()
            .resources(image_id)
            .tags(Tag::builder().key(tags::PROTECTED_BY).build())
            .send()
            .await
            .map_err(self.err("DeleteTags"))?;
        Ok(())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(self.err("DeleteSnapshot"))?;
        Ok(())
    }
}
