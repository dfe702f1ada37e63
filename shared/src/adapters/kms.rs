//! The KMS adapter: what the share needs to know of a key.

use aws_sdk_kms::Client;

use crate::domain::ids::Region;
use crate::error::{Error, Result};
use crate::ports::KeyInfo;

/// KMS in one region.
#[derive(Debug, Clone)]
pub struct Kms {
    client: Client,
    region: Region,
}

impl Kms {
    /// An adapter over a client configured for `region`.
    pub fn new(client: Client, region: Region) -> Self {
        Kms { client, region }
    }
}

impl KeyInfo for Kms {
    /// DescribeKey: `KeyManager` is `AWS` for an AWS managed key.
    async fn is_aws_managed(&self, key_id: &str) -> Result<bool> {
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeKey", self.region.as_str(), e))?;
        Ok(out
            .key_metadata()
            .and_then(|m| m.key_manager())
            .map(|k| k.as_str())
            == Some("AWS"))
    }
}
