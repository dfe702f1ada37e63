//! Plain data about the account, free of SDK types, that the planners decide over: images
//! (here), their tags ([`tag_set`]), snapshots ([`snapshots`]) and what uses them ([`usage`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::policy::{name_prefix, FamilyBy, Policy, RootDeviceType, Select};
use crate::domain::tags;

mod snapshots;
mod tag_set;
mod usage;

pub use snapshots::*;
pub use tag_set::*;
pub use usage::*;

/// The state of an AMI as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    /// Usable.
    Available,
    /// Being created or copied.
    Pending,
    /// Disabled: hidden, cannot be launched, still holds its snapshots.
    Disabled,
    /// Creation failed.
    Failed,
    /// Any other state (`deregistered`, `transient`, `invalid`, `error`).
    Other(String),
}

impl std::fmt::Display for ImageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageState::Available => "available",
            ImageState::Pending => "pending",
            ImageState::Disabled => "disabled",
            ImageState::Failed => "failed",
            ImageState::Other(s) => s,
        })
    }
}

impl ImageState {
    /// Reads EC2's state name.
    pub fn from_ec2(s: &str) -> Self {
        match s {
            "available" => ImageState::Available,
            "pending" => ImageState::Pending,
            "disabled" => ImageState::Disabled,
            "failed" => ImageState::Failed,
            other => ImageState::Other(other.to_string()),
        }
    }
}

/// An AMI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    /// `ami-...`.
    pub id: String,
    pub name: String,
    pub owner_id: String,
    /// CreationDate.
    pub created: Option<DateTime<Utc>>,
    pub state: ImageState,
    pub tags: Tags,
    /// The EBS snapshots of its block device mappings.
    pub snapshot_ids: Vec<String>,
    /// `i386`, `x86_64`, `arm64`, ...
    pub architecture: Option<String>,
    /// `windows`, or none for Linux/UNIX.
    pub platform: Option<String>,
    /// `ebs` or `instance-store`.
    pub root_device_type: Option<String>,
    /// `hvm` or `paravirtual`.
    pub virtualization_type: Option<String>,
    /// Launchable by everyone.
    pub public: bool,
    /// It carries product codes (Marketplace): EC2 never makes it public.
    pub has_product_codes: bool,
    /// Any of its EBS snapshots is encrypted.
    pub encrypted: bool,
    /// When it is (or was) deprecated.
    pub deprecation_time: Option<DateTime<Utc>>,
    /// Deregistration protection enabled.
    pub deregistration_protection: bool,
    /// The last time an instance was launched from it (EC2 records this about daily).
    pub last_launched: Option<DateTime<Utc>>,
    /// Shared with other accounts, organizations or OUs; `None` when not looked up.
    pub shared: Option<bool>,
    /// What EC2 says it was made from (`SourceImageId`, `SourceImageRegion`: set by EC2 on
    /// CopyImage and CreateImage, never by a caller). Boxed: most AMIs of a large account
    /// have none.
    pub source: Option<Box<SourceImage>>,
}

/// The AMI an image was made from, as EC2 records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceImage {
    /// `SourceImageId`.
    pub image_id: String,
    /// `SourceImageRegion`.
    pub region: String,
}

impl Image {
    /// Whether `select` matches the image (every field given must match).
    pub fn matches(&self, select: &Select) -> bool {
        let tags = select
            .tags
            .iter()
            .all(|(k, p)| self.tags.get(k).is_some_and(|v| p.matches(v)));
        let name = select
            .name_pattern
            .as_ref()
            .is_none_or(|p| p.matches(&self.name));
        let arch = select.architectures.is_empty()
            || self
                .architecture
                .as_deref()
                .is_some_and(|a| select.architectures.iter().any(|s| s.as_str() == a));
        let platform = select.platform.is_none_or(|p| {
            let windows = self.platform.as_deref() == Some("windows");
            (p.as_str() == "windows") == windows
        });
        let root = select.root_device_type.is_none_or(|r| {
            self.root_device_type
                .as_deref()
                .unwrap_or(RootDeviceType::Ebs.as_str())
                == r.as_str()
        });
        let virt = select
            .virtualization_type
            .is_none_or(|v| self.virtualization_type.as_deref().unwrap_or("hvm") == v.as_str());
        tags && name && arch && platform && root && virt
    }

    /// Whether `policy` manages the image: tagged with the policy's name, or selected by a
    /// `select` that narrows (tags or a name pattern).
    pub fn managed_by(&self, policy: &Policy) -> bool {
        if let Some(tagged) = self.tags.get(tags::POLICY) {
            return tagged == &policy.name;
        }
        policy.select.narrows() && self.matches(&policy.select)
    }

    /// The policy that manages the image: the first of the document, in order, that does.
    pub fn policy_in<'a>(
        &self,
        document: &'a crate::domain::policy::PolicyDocument,
    ) -> Option<&'a Policy> {
        document.policies.iter().find(|p| self.managed_by(p))
    }

    /// The launch test's verdict on the image (`passed`, `failed`), if it has one.
    pub fn verdict(&self) -> Option<&str> {
        self.tags.get(tags::VALIDATION).map(String::as_str)
    }

    /// When what it holds was made: a copy's source's CreationDate (its tag), else its own. What
    /// publishing orders AMIs by.
    pub fn made(&self) -> Option<DateTime<Utc>> {
        self.tags
            .get(tags::SOURCE_CREATED)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or(self.created)
    }

    /// Whether its tags say it is a copy the tool made (copies carry their source's verdict;
    /// [`Image::verdict_subject`] checks the claim against EC2's record).
    pub fn is_copy(&self) -> bool {
        self.tags.contains_key(tags::SOURCE_IMAGE)
    }

    /// The AMI and region a seal of its verdict must name: its own, or for a copy its
    /// source's, once EC2 confirms the lineage its tags claim (a copy is made by CopyImage in
    /// another region: EC2's `SourceImageId`/`SourceImageRegion` equal its lineage tags, and that
    /// region is not its own). Tags alone prove nothing: anyone who may tag can write them.
    pub fn verdict_subject(&self, region: &str) -> Result<(String, String), String> {
        let Some(claimed) = self.tags.get(tags::SOURCE_IMAGE) else {
            return Ok((self.id.clone(), region.to_string()));
        };
        let claimed_region = self.tags.get(tags::SOURCE_REGION).map(String::as_str);
        match self.source.as_deref() {
            Some(source)
                if &source.image_id == claimed
                    && Some(source.region.as_str()) == claimed_region
                    && source.region != region =>
            {
                Ok((source.image_id.clone(), source.region.clone()))
            }
            _ => Err(format!(
                "its tags say it is a copy of {claimed}, and EC2 does not record it as a copy of that AMI from another region"
            )),
        }
    }

    /// Whether a recall the stack can prove took it out of circulation (its mark's seal
    /// verified: see `jobs::proof`, which reads any other mark as [`tags::UNPROVEN`]).
    pub fn recall_proven(&self) -> bool {
        self.tags
            .get(tags::RECALLED)
            .is_some_and(|v| v != tags::UNPROVEN && v != tags::UNCHECKED)
    }

    /// The promotion gate: why share, copy and publish must not act on the image yet, if they
    /// must not. A recalled AMI is held whatever its policy (any mark: fail closed); a policy
    /// with `validate` promotes only AMIs whose launch test passed.
    pub fn held_by_gate(&self, policy: &Policy) -> Option<String> {
        if self.tags.contains_key(tags::RECALLED) {
            return Some(format!(
                "recalled ({}={}{}): out of circulation until the recall is undone",
                tags::RECALL_OF,
                self.tags.get(tags::RECALL_OF).map_or("?", String::as_str),
                self.tags
                    .get(tags::RECALL_REASON)
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            ));
        }
        policy.validate.as_ref()?;
        match self.verdict() {
            Some(tags::PASSED) => None,
            Some(tags::FAILED) => Some(format!(
                "its launch test failed ({}={}): a policy with `validate` promotes only AMIs that passed",
                tags::VALIDATION,
                tags::FAILED
            )),
            Some(tags::UNCHECKED) => Some(format!(
                "the seal of its {}={} could not be checked this run (KMS did not answer): held until it can be",
                tags::VALIDATION,
                tags::PASSED
            )),
            Some(tags::UNPROVEN) => Some(format!(
                "its {}={} is not proven: no seal of this stack's key covers it ({}): set by hand, copied, or written before seals; only ami-publish's own verdicts promote, and the sweep tests the newest AMI of a family again",
                tags::VALIDATION,
                tags::PASSED,
                tags::VALIDATION_SEAL
            )),
            _ => Some(format!(
                "not validated yet: a policy with `validate` promotes an AMI once ami-publish tags it {}={}",
                tags::VALIDATION,
                tags::PASSED
            )),
        }
    }

    /// The family of the image under `family_by`.
    pub fn family(&self, family_by: &FamilyBy) -> String {
        match family_by {
            FamilyBy::Tag(key) => match self.tags.get(key) {
                Some(v) => v.clone(),
                None => name_prefix(&self.name).to_string(),
            },
            FamilyBy::NamePrefix => name_prefix(&self.name).to_string(),
        }
    }
}

/// An instance, as the build function sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    /// `i-...`.
    pub id: String,
    /// `running`, `stopped`, ...
    pub state: String,
    /// `ebs` or `instance-store`.
    pub root_device_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A copy of a source AMI found in a destination region.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFound {
    /// The copy.
    pub image_id: String,
    /// Its state (`failed` when CopyImage failed after it was accepted).
    pub state: ImageState,
    /// EC2's StateReason message, for a failed copy.
    pub state_reason: Option<String>,
    /// Which attempt made it (its attempt tag; 1 when absent).
    pub attempt: u32,
}
