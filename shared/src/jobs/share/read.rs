//! What the share reads of one AMI before it decides: the first of read → plan
//! ([`super::decide`]) → apply ([`super::execute`]).
//!
//! It reads only what the decision can need, in the order the decision needs it, and stops at
//! the first thing that settles the AMI: a refused AMI (an AWS managed key and targets to add)
//! costs no further calls.

use std::collections::{BTreeMap, BTreeSet};

use super::plan;
use crate::domain::grant::Grant;
use crate::domain::model::Image;
use crate::domain::policy::Share;
use crate::error::Result;
use crate::ports::{KeyGrant, KeyInfo, Permissions};

/// Who manages one of the AMI's KMS keys.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyKind {
    /// AWS: the key cannot be shared.
    AwsManaged,
    /// The account: it can be granted, and its key policy can allow a target.
    CustomerManaged,
    /// KMS could not describe it (only when nothing depends on the answer but the launch
    /// report, which then says it does not know).
    Unknown(String),
}

/// Everything the decision about one AMI reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The AMI's launch permissions.
    pub launch: BTreeSet<Grant>,
    /// The KMS keys of its snapshots (read for an encrypted AMI with targets), in order.
    pub keys: Vec<(String, KeyKind)>,
    /// With `kms_grants`: each customer managed key's grants that carry the policy's prefix.
    pub grants: BTreeMap<String, Vec<KeyGrant>>,
    /// The key policies of the customer managed keys, when a target depends on them; a policy
    /// that could not be read is the error's text.
    pub key_policies: BTreeMap<String, std::result::Result<String, String>>,
    /// With `snapshots`: each snapshot's createVolumePermission.
    pub snapshots: Vec<(String, BTreeSet<Grant>)>,
    /// Whether block public access for AMIs is on in the region (read only when public is
    /// to be added and nothing else rules it out).
    pub block_public_access: bool,
}

impl Observed {
    /// The first AWS managed key, if any.
    pub fn aws_managed_key(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, kind)| *kind == KeyKind::AwsManaged)
            .map(|(key, _)| key.as_str())
    }

    /// The customer managed keys, in order.
    pub fn customer_managed_keys(&self) -> impl Iterator<Item = &String> {
        self.keys
            .iter()
            .filter(|(_, kind)| *kind == KeyKind::CustomerManaged)
            .map(|(key, _)| key)
    }
}

/// Reads what deciding about `image` needs, for a policy that wants `wanted`.
pub async fn read<E: Permissions, K: KeyInfo>(
    (ec2, keys): (&E, &K),
    image: &Image,
    (policy, share): (&str, &Share),
    wanted: &BTreeSet<Grant>,
) -> Result<Observed> {
    let launch = ec2.launch_permissions(&image.id).await?;
    let (add, _) = plan::diff(&launch, wanted);
    let adds = !add.is_empty();

    let needs_keys = image.encrypted && (adds || share.kms_grants || !wanted.is_empty());
    let key_ids = if needs_keys {
        ec2.snapshot_kms_keys(&image.snapshot_ids).await?
    } else {
        Vec::new()
    };
    let mut seen = Observed {
        launch,
        keys: key_kinds(keys, &key_ids, adds, share.kms_grants).await?,
        ..Observed::default()
    };
    if adds && seen.aws_managed_key().is_some() {
        return Ok(seen);
    }

    seen.grants = key_grants(keys, &seen, policy, share).await?;
    seen.key_policies = key_policies(keys, &seen, share, wanted).await;
    if share.snapshots {
        for snap in &image.snapshot_ids {
            let current = ec2.volume_permissions(snap).await?;
            seen.snapshots.push((snap.clone(), current));
        }
    }
    if add.contains(&Grant::Public) && plan::never_public(image).is_none() {
        seen.block_public_access = ec2.image_block_public_access().await?;
    }
    Ok(seen)
}

/// Who manages each key. A key KMS cannot describe fails the AMI when the answer decides a
/// change (targets to add, or grants to reconcile); otherwise it is only unknown. With targets
/// to add, the first AWS managed key settles the AMI (it is refused) and the rest are not read.
async fn key_kinds<K: KeyInfo>(
    keys: &K,
    key_ids: &[String],
    adds: bool,
    kms_grants: bool,
) -> Result<Vec<(String, KeyKind)>> {
    let mut out = Vec::new();
    for key in key_ids {
        let kind = match keys.is_aws_managed(key).await {
            Ok(true) => KeyKind::AwsManaged,
            Ok(false) => KeyKind::CustomerManaged,
            Err(e) if adds || kms_grants => return Err(e),
            Err(e) => KeyKind::Unknown(format!("unknown: KMS could not describe {key} ({e})")),
        };
        let settled = adds && kind == KeyKind::AwsManaged;
        out.push((key.clone(), kind));
        if settled {
            break;
        }
    }
    Ok(out)
}

/// With `kms_grants`, each customer managed key's grants made for this policy.
async fn key_grants<K: KeyInfo>(
    keys: &K,
    seen: &Observed,
    policy: &str,
    share: &Share,
) -> Result<BTreeMap<String, Vec<KeyGrant>>> {
    let mut out = BTreeMap::new();
    if !share.kms_grants {
        return Ok(out);
    }
    for key in seen.customer_managed_keys() {
        let existing = keys.grants(key, &plan::grant_prefix(policy)).await?;
        out.insert(key.clone(), existing);
    }
    Ok(out)
}

/// The key policies of the customer managed keys, when some target can launch only through
/// them (not public, and not an account the share grants the keys to). Best effort: a policy
/// that cannot be read leaves that target's answer unknown.
async fn key_policies<K: KeyInfo>(
    keys: &K,
    seen: &Observed,
    share: &Share,
    wanted: &BTreeSet<Grant>,
) -> BTreeMap<String, std::result::Result<String, String>> {
    let mut out = BTreeMap::new();
    let needed = wanted.iter().any(|t| !plan::granted_or_public(share, t));
    if !needed {
        return out;
    }
    for key in seen.customer_managed_keys() {
        let read = keys.key_policy(key).await.map_err(|e| e.to_string());
        out.insert(key.clone(), read);
    }
    out
}
