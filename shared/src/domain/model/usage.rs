//! What uses the account's AMIs: instances, launch templates, SSM parameters, other accounts
//! (usage reports), and the evidence that could not be read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Image;

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

/// The instance states that make an AMI "in use": every state but terminated. The same list
/// goes to DescribeInstances and to DescribeImageReferences' `state-name` option, so both
/// checks agree (DescribeImageReferences' default is every state, terminated included).
pub const IN_USE_INSTANCE_STATES: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];
