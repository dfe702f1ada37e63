//! Plain data about the account, free of SDK types, that the planners decide over.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::policy::{name_prefix, FamilyBy, Policy, RootDeviceType, Select};
use crate::domain::tags;

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

/// A resource's tags, sorted by key: a short list where a `BTreeMap` would allocate a node of
/// over 500 bytes for even one tag (at 50,000 AMIs with their snapshots, tens of megabytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Tags(Vec::new())
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.position(key).ok().map(|n| &self.0[n].1)
    }

    /// Whether the resource carries `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`, and returns the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.position(&key) {
            Ok(n) => Some(std::mem::replace(&mut self.0[n].1, value)),
            Err(n) => {
                self.0.insert(n, (key, value));
                None
            }
        }
    }

    /// Removes `key`, and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.position(key).ok().map(|n| self.0.remove(n).1)
    }

    /// The tags, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(String, String)> for Tags {
    /// The last value of a key given twice wins, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut tags = Tags(Vec::new());
        for (k, v) in pairs {
            tags.insert(k, v);
        }
        tags.0.shrink_to_fit();
        tags
    }
}

impl Extend<(String, String)> for Tags {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, pairs: I) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Self {
        Tags(map.into_iter().collect())
    }
}

impl From<&Tags> for BTreeMap<String, String> {
    fn from(tags: &Tags) -> Self {
        tags.0.iter().cloned().collect()
    }
}

impl<const N: usize> From<[(String, String); N]> for Tags {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl std::ops::Index<&str> for Tags {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.get(key).unwrap_or_else(|| panic!("no tag {key}"))
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
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

    /// The promotion gate: why share, copy and publish must not act on the image yet, if they
    /// must not. A policy with `validate` promotes only AMIs whose launch test passed.
    pub fn held_by_gate(&self, policy: &Policy) -> Option<String> {
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

/// An EBS snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// `snap-...`.
    pub id: String,
    pub owner_id: String,
    /// CreateImage or CopyImage made it for an AMI (its description says so, see
    /// [`Snapshot::made_by_ec2_for_an_image`]). Only this is kept of the description: at
    /// 100,000 snapshots the text would cost megabytes for one bit.
    pub for_an_image: bool,
    /// StartTime.
    pub started: Option<DateTime<Utc>>,
    pub tags: Tags,
    /// Its size, as DescribeSnapshots gives it.
    pub size: SnapshotSize,
}

/// How big a snapshot is: `FullSnapshotSizeInBytes` where EC2 returns it, else the size of the
/// volume it was taken from (`VolumeSize`, GiB), which bounds it from above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotSize {
    /// FullSnapshotSizeInBytes.
    pub full_bytes: Option<u64>,
    /// VolumeSize, in GiB.
    pub volume_gib: Option<u32>,
}

impl SnapshotSize {
    /// Bytes, and whether they are measured (`FullSnapshotSizeInBytes`) rather than estimated
    /// from the volume size; none when EC2 gave neither.
    pub fn bytes(&self) -> Option<(u64, bool)> {
        match (self.full_bytes, self.volume_gib) {
            (Some(b), _) => Some((b, true)),
            (None, Some(g)) => Some((u64::from(g) << 30, false)),
            (None, None) => None,
        }
    }
}

impl Snapshot {
    /// Whether CreateImage or CopyImage made the snapshot for an AMI.
    pub fn made_for_an_image(&self) -> bool {
        self.for_an_image
    }

    /// Whether a snapshot's description is the one CreateImage or CopyImage gives the
    /// snapshots it makes for an AMI (`Created by CreateImage(i-...) for ami-...`,
    /// `Copied for DestinationAmi ami-...`).
    pub fn made_by_ec2_for_an_image(description: &str) -> bool {
        description.starts_with("Created by CreateImage(")
            || description.starts_with("Copied for DestinationAmi")
    }
}

/// What uses the region's AMIs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Image id → the non-terminated instances running it.
    pub instances: HashMap<String, BTreeSet<String>>,
    /// Image id → the launch template versions naming it.
    pub launch_templates: HashMap<String, Vec<TemplateUse>>,
    /// Image id → references found by DescribeImageReferences (resource ARNs).
    pub references: HashMap<String, BTreeSet<String>>,
    /// Image id → the usage reports EC2 holds for it (CreateImageUsageReport), newest first,
    /// for the shared AMIs the plan would disable or deregister. No entry: not read yet; an
    /// empty list: read, and there is none.
    pub consumer_reports: HashMap<String, Vec<UsageReport>>,
    /// Evidence that could not be gathered. An image it covers is never disabled or
    /// deregistered (safety checks fail closed): it is kept as `usage_unknown`.
    pub gaps: Vec<EvidenceGap>,
    /// Images whose share state this run has not read: not yet (a real run plans in rounds as
    /// it reads), or not at all (more candidates wait on it than the run can retire before its
    /// deadline). Each is kept (`deferred`), left for a later round or the next run.
    pub deferred: BTreeSet<String>,
    /// AMIs and snapshots this run already deregistered or deleted (an earlier round of it):
    /// the account no longer has them, so the planner plans as if they were not there.
    pub gone: HashSet<String>,
}

/// An AMI usage report: which accounts use a shared AMI, as EC2 found when it built the report
/// (EC2 User Guide, "View your AMI usage": instances and launch templates in every account the
/// AMI is shared with; reports are built asynchronously and kept 30 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// `amiur-...`.
    pub report_id: String,
    /// `pending` while EC2 builds it, then `available` (or `error`).
    pub state: ReportState,
    /// When it was requested: what it says is as old as this.
    pub created: DateTime<Utc>,
    /// For an available report: account → resource type (`ec2:Instance`,
    /// `ec2:LaunchTemplate`, ...) → how many of that account's resources use the AMI.
    pub accounts: BTreeMap<String, BTreeMap<String, u64>>,
    /// The report covers every account (it was created without `AccountIds`).
    pub all_accounts: bool,
    /// The resource types it covers, with the launch template `version-depth` it used (none:
    /// EC2's default, 20).
    pub resource_types: BTreeMap<String, Option<u32>>,
}

/// The resource types a usage report must cover to prove that no other account uses an AMI:
/// instances, launch templates and Image Builder's image and container recipes (EC2 API
/// reference, CreateImageUsageReport, `ImageUsageResourceTypeRequest`).
pub const REPORT_RESOURCE_TYPES: [&str; 4] = [
    "ec2:Instance",
    "ec2:LaunchTemplate",
    "imagebuilder:ImageRecipe",
    "imagebuilder:ContainerRecipe",
];

/// How much recent instance activity a usage report can miss (EC2 User Guide, "View your AMI
/// usage": "Instance activity from the past 24 hours ... might not appear in the report"). EC2's
/// `LastLaunchedTime` lags by as much ("there is a 24-hour delay before that usage is reported").
pub const REPORT_INSTANCE_LAG_HOURS: i64 = 24;

/// How much recent launch template activity a usage report can miss: the User Guide says "a
/// few days"; a week is taken, so that "few" never means more than the tool waits.
pub const REPORT_TEMPLATE_LAG_HOURS: i64 = 7 * 24;

/// How many usage reports an account may have in progress in a region (EC2 User Guide, "View
/// your AMI usage"; CreateImageUsageReport refuses past it).
pub const PENDING_REPORTS_QUOTA: usize = 2_000;

/// The state of an AMI usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    /// EC2 is building it.
    Pending,
    /// Its entries can be read.
    Available,
    /// EC2 could not build it (with EC2's reason).
    Error(String),
}

impl UsageReport {
    /// Whether the report can prove that no other account uses the AMI: it covered every
    /// account, their instances, and their launch templates at least `template_depth` versions
    /// deep. A report someone made for a few accounts or only instances cannot.
    pub fn covers(&self, template_depth: u32) -> bool {
        self.all_accounts
            && REPORT_RESOURCE_TYPES
                .iter()
                .all(|t| self.resource_types.contains_key(*t))
            && self
                .resource_types
                .get("ec2:LaunchTemplate")
                .is_some_and(|d| d.unwrap_or(20) >= template_depth)
    }

    /// The earliest time a report can be made at and still prove that no other account uses
    /// `image`, whose consumers were told at `notice` (its deprecation): a report misses the
    /// launch templates of the few days before it and the instances of the day before it, so it
    /// must be made that long after the notice, and a day after the last launch EC2 recorded
    /// (`LastLaunchedTime`, which covers every account's launches). Use that starts in the last
    /// day before the decision is seen by no source at all: the residual risk docs/functions/age-out.md states.
    pub fn proves_from(image: &Image, notice: DateTime<Utc>) -> DateTime<Utc> {
        let templates = notice + chrono::Duration::hours(REPORT_TEMPLATE_LAG_HOURS);
        let instances = image
            .last_launched
            .map(|at| at + chrono::Duration::hours(REPORT_INSTANCE_LAG_HOURS));
        instances.map_or(templates, |i| i.max(templates))
    }

    /// The accounts other than `owner` that use the AMI, each with what uses it
    /// (`210987654321: 3 ec2:Instance`).
    pub fn consumers(&self, owner: &str) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|(account, _)| account.as_str() != owner)
            .filter_map(|(account, kinds)| {
                let used: Vec<String> = kinds
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect();
                (!used.is_empty()).then(|| format!("{account}: {}", used.join(", ")))
            })
            .collect()
    }
}

/// A call that should have told whether AMIs are in use, and did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceGap {
    /// The EC2 call (`DescribeInstances`, `DescribeImageReferences`, ...).
    pub call: String,
    /// Its error code, when EC2 sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What went wrong.
    pub error: String,
    /// Whether a later run may get the answer (throttling, server error, no answer).
    pub transient: bool,
    /// The images it leaves without evidence; `None`: every image of the region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<BTreeSet<String>>,
}

impl Usage {
    /// The first evidence gap that covers `image_id`, if any.
    pub fn gap_for(&self, image_id: &str) -> Option<&EvidenceGap> {
        self.gaps
            .iter()
            .find(|g| g.images.as_ref().is_none_or(|ids| ids.contains(image_id)))
    }
}

/// A launch template version that names an AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateUse {
    /// `lt-...`.
    pub template_id: String,
    /// The version number.
    pub version: i64,
    /// It is the template's `$Default` version.
    pub is_default: bool,
    /// How many versions are newer (0: it is `$Latest`).
    pub newer_versions: i64,
}

impl TemplateUse {
    /// Whether this version counts at `depth`.
    pub fn counts_at(&self, depth: crate::domain::policy::TemplateDepth) -> bool {
        use crate::domain::policy::TemplateDepth::*;
        self.is_default
            || self.newer_versions == 0
            || match depth {
                All => true,
                DefaultAndLatest => false,
                Newest(n) => self.newer_versions < i64::from(n),
            }
    }
}

impl std::fmt::Display for TemplateUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.template_id, self.version)?;
        if self.is_default {
            f.write_str(" ($Default)")?;
        }
        if self.newer_versions == 0 {
            f.write_str(" ($Latest)")?;
        }
        Ok(())
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

/// The instance states that make an AMI "in use": every state but terminated. The same list
/// goes to DescribeInstances and to DescribeImageReferences' `state-name` option, so both
/// checks agree (DescribeImageReferences' default is every state, terminated included).
pub const IN_USE_INSTANCE_STATES: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];
