//! Deprecate, disable, deregister, delete: the changes age-out makes.

use chrono::{DateTime, Utc};

use super::Ec2;
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
