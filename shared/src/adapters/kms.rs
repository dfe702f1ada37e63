//! The KMS adapter: what the share needs to know of a key, its grants to target accounts, and
//! the stack's HMAC key that seals what the stack makes ([`Mac`]).

use aws_sdk_kms::Client;

use crate::domain::ids::Region;
use crate::error::{Error, Result};
use crate::ports::{KeyGrant, KeyInfo};

/// The operations a grant gives an account that launches an AMI encrypted with the key (EBS
/// User Guide, "Share the KMS key used to encrypt a shared Amazon EBS snapshot": DescribeKey,
/// CreateGrant, GenerateDataKey, GenerateDataKeyWithoutPlaintext, ReEncrypt, Decrypt).
pub const LAUNCH_OPERATIONS: [&str; 7] = [
    "Decrypt",
    "DescribeKey",
    "CreateGrant",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
];

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

    async fn grants(&self, key_id: &str, prefix: &str) -> Result<Vec<KeyGrant>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_grants()
                .key_id(key_id)
                .limit(100)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| Error::aws("ListGrants", self.region.as_str(), e))?;
            for g in page.grants() {
                let name = g.name().unwrap_or_default();
                if name.starts_with(prefix) {
                    out.push(KeyGrant {
                        grant_id: g.grant_id().unwrap_or_default().to_string(),
                        name: name.to_string(),
                        grantee: g.grantee_principal().unwrap_or_default().to_string(),
                    });
                }
            }
            match page.next_marker() {
                Some(next) if page.truncated() => marker = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn create_grant(&self, key_id: &str, account: &str, name: &str) -> Result<String> {
        let operations = LAUNCH_OPERATIONS
            .iter()
            .map(|o| aws_sdk_kms::types::GrantOperation::from(*o))
            .collect();
        let out = self
            .client
            .create_grant()
            .key_id(key_id)
            .grantee_principal(format!(
                "arn:{}:iam::{account}:root",
                self.region.partition()
            ))
            .set_operations(Some(operations))
            .name(name)
            .send()
            .await
            .map_err(|e| Error::aws("CreateGrant", self.region.as_str(), e))?;
        Ok(out.grant_id().unwrap_or_default().to_string())
    }

    /// RetireGrant; a grant already gone (`NotFoundException`: retired by someone else, or
    /// listed a moment before KMS dropped it, grants being eventually consistent) is done.
    async fn retire_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        let retired = self
            .client
            .retire_grant()
            .key_id(key_id)
            .grant_id(grant_id)
            .send()
            .await
            .map_err(|e| Error::aws("RetireGrant", self.region.as_str(), e));
        match retired {
            Err(e) if e.code() == Some("NotFoundException") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn key_policy(&self, key_id: &str) -> Result<String> {
        let out = self
            .client
            .get_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| Error::aws("GetKeyPolicy", self.region.as_str(), e))?;
        Ok(out.policy().unwrap_or_default().to_string())
    }
}

/// The stack's HMAC key in KMS (`AMI_SIGNING_KEY_ARN`: HMAC_256, GENERATE_VERIFY_MAC), which
/// only the stack's roles may use: GenerateMac and VerifyMac with HMAC_SHA_256 (KMS API
/// reference; a MAC that does not verify is `KMSInvalidMacException`).
///
/// Every answer is remembered for the life of the process (a warm Lambda): HMAC is
/// deterministic, so a (message, seal) pair that verified always will, and one that did not
/// never will. A sweep every five minutes over thousands of promoted AMIs checks each seal
/// once, and seals planted by the thousand cost one check each, not one per sweep. An answer
/// KMS could not give is not remembered.
#[derive(Debug, Clone)]
pub struct Mac {
    client: Client,
    key_id: String,
    region: Region,
    verified: Memory,
    rejected: Memory,
}

type Memory = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// At most this many verified seals are remembered (about 100 bytes each); past it the memory
/// starts again.
const REMEMBERED: usize = 100_000;

impl Mac {
    /// An adapter over a client configured for the key's region.
    pub fn new(client: Client, key_id: String, region: Region) -> Self {
        Mac {
            client,
            key_id,
            region,
            verified: Default::default(),
            rejected: Default::default(),
        }
    }

    /// What was answered for the pair before, if anything.
    fn remembered(&self, pair: &str) -> Option<bool> {
        let held = |memory: &Memory| {
            memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(pair)
        };
        if held(&self.verified) {
            return Some(true);
        }
        held(&self.rejected).then_some(false)
    }

    fn remember(&self, pair: String, verified: bool) {
        let memory = if verified {
            &self.verified
        } else {
            &self.rejected
        };
        let mut memory = memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() >= REMEMBERED {
            memory.clear();
        }
        memory.insert(pair);
    }
}

/// What identifies a (message, seal) pair in memory: the message's SHA-256 and the seal.
fn pair(message: &[u8], seal: &str) -> String {
    use sha2::Digest;
    format!("{} {seal}", hex::encode(sha2::Sha256::digest(message)))
}

impl crate::ports::Seal for Mac {
    async fn seal(&self, message: Vec<u8>) -> Result<String> {
        let digest = pair(&message, "");
        let out = self
            .client
            .generate_mac()
            .key_id(&self.key_id)
            .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
            .message(aws_smithy_types::Blob::new(message))
            .send()
            .await
            .map_err(|e| Error::aws("GenerateMac", self.region.as_str(), e))?;
        let mac = out.mac().map(|b| b.as_ref()).unwrap_or_default();
        if mac.is_empty() {
            return Err(Error::Refused(
                "GenerateMac answered without a MAC: nothing can be sealed".into(),
            ));
        }
        let sealed = aws_smithy_types::base64::encode(mac);
        // Its own seals need no check: the next sweep reads them back without KMS.
        self.remember(format!("{digest}{sealed}"), true);
        Ok(sealed)
    }

    async fn verify(&self, message: Vec<u8>, seal: &str) -> Result<bool> {
        let key = pair(&message, seal);
        if let Some(answer) = self.remembered(&key) {
            return Ok(answer);
        }
        let Ok(mac) = aws_smithy_types::base64::decode(seal) else {
            return Ok(false);
        };
        if mac.is_empty() || mac.len() > 6144 {
            return Ok(false);
        }
        let answer = self
            .client
            .verify_mac()
            .key_id(&self.key_id)
            .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
            .message(aws_smithy_types::Blob::new(message))
            .mac(aws_smithy_types::Blob::new(mac))
            .send()
            .await;
        match answer {
            Ok(out) => {
                self.remember(key, out.mac_valid());
                Ok(out.mac_valid())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_kms_invalid_mac_exception()) =>
            {
                self.remember(key, false);
                Ok(false)
            }
            Err(e) => Err(Error::aws("VerifyMac", self.region.as_str(), e)),
        }
    }
}
