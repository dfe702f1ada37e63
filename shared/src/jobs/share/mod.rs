//! Share: makes every managed AMI's launch permissions (and, when asked, its snapshots'
//! createVolumePermission) equal to its policy, and no wider. Reconcile, not append: one
//! ModifyImageAttribute with exactly the additions and removals, none when nothing differs.

pub mod decide;
mod execute;
pub mod plan;
pub mod read;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use execute::run;
pub use plan::{desired, diff};

use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::grant::Grant;
use crate::domain::ids::Region;

/// The run request a trigger asks of share: a schedule sweeps its region, an AMI that became
/// available (or passed its launch test, or came back from the Recycle Bin) is shared alone;
/// the reason when the event needs no work.
pub fn request(
    trigger: crate::domain::trigger::Trigger,
) -> crate::error::Result<crate::domain::Decision<crate::domain::trigger::RunRequest>> {
    crate::jobs::requests::ami_request(trigger, crate::domain::function::Function::Share)
}

/// The function's name in reports and events.
pub const FUNCTION: &str = crate::domain::function::Function::Share.name();

/// What happened to one AMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareOutcome {
    /// Dry run: these changes would be made.
    Planned,
    /// Permissions were changed.
    Changed,
    /// Already as the policy says: no call was made.
    Unchanged,
    /// Not shared, with the reason (disabled, not available).
    Skipped,
    /// Left for the next run (the deadline came, or EC2 throttled or failed transiently).
    Deferred,
    /// Cannot be shared as asked (AWS managed key, not the account's AMI).
    Refused,
    /// EC2 failed a call.
    Failed,
}

impl From<crate::error::Disposition> for ShareOutcome {
    fn from(d: crate::error::Disposition) -> Self {
        match d {
            crate::error::Disposition::Deferred => ShareOutcome::Deferred,
            crate::error::Disposition::Failed => ShareOutcome::Failed,
        }
    }
}

/// One line of the share report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareResult {
    pub image_id: String,
    pub region: Region,
    /// The policy that manages it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// Launch permissions added.
    pub add: Vec<Grant>,
    /// Launch permissions removed.
    pub remove: Vec<Grant>,
    /// Snapshot id → createVolumePermission added.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_add: BTreeMap<String, Vec<Grant>>,
    /// Snapshot id → createVolumePermission removed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_remove: BTreeMap<String, Vec<Grant>>,
    pub outcome: ShareOutcome,
    /// Why (skips, refusals, failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Permissions found wider than the policy allows (for example a public AMI).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Why the policy's `public` was not applied (the other grants were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_refused: Option<String>,
    /// KMS grants made for target accounts (`<key> → <account>`), with `share.kms_grants`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kms_grants_created: Vec<String>,
    /// KMS grants retired because their account is no longer a target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kms_grants_retired: Vec<String>,
    /// For each target of the policy: whether it can launch the AMI, and if not, why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub launch: Vec<LaunchAccess>,
}

/// Whether one target can launch a shared AMI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchAccess {
    pub target: Grant,
    /// Null when it could not be told (the key policy could not be read).
    pub can_launch: Option<bool>,
    /// Why it cannot (a KMS key it may not use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    /// The key policy statement that would let an organization or OU launch it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_policy_statement: Option<serde_json::Value>,
}

impl ShareResult {
    /// A line about an AMI: unchanged until something else is decided.
    pub fn new(image_id: &str, region: &Region, policy: &str) -> Self {
        ShareResult {
            image_id: image_id.to_string(),
            region: region.clone(),
            policy: policy.to_string(),
            add: Vec::new(),
            remove: Vec::new(),
            snapshot_add: BTreeMap::new(),
            snapshot_remove: BTreeMap::new(),
            outcome: ShareOutcome::Unchanged,
            reason: None,
            findings: Vec::new(),
            public_refused: None,
            kms_grants_created: Vec::new(),
            kms_grants_retired: Vec::new(),
            launch: Vec::new(),
        }
    }

    /// The line with an outcome and its reason.
    pub fn with(mut self, outcome: ShareOutcome, reason: impl Into<Option<String>>) -> Self {
        self.outcome = outcome;
        self.reason = reason.into();
        self
    }
}

impl crate::jobs::Line for ShareResult {
    type Outcome = ShareOutcome;
    fn outcome(&self) -> &ShareOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, ShareOutcome::Refused | ShareOutcome::Failed)
            || self.public_refused.is_some()
    }
}

/// `AMI Shared` and `AMI Unshared` for every AMI whose permissions changed.
pub fn events(results: &[ShareResult]) -> Vec<Event> {
    let mut events = Vec::new();
    for r in results
        .iter()
        .filter(|r| r.outcome == ShareOutcome::Changed)
    {
        let detail = serde_json::to_value(r).unwrap_or_default();
        if !r.add.is_empty() || !r.snapshot_add.is_empty() {
            events.push(event(
                detail_type::AMI_SHARED,
                vec![r.region.image_arn(&r.image_id)],
                detail.clone(),
            ));
        }
        if !r.remove.is_empty() || !r.snapshot_remove.is_empty() {
            events.push(event(
                detail_type::AMI_UNSHARED,
                vec![r.region.image_arn(&r.image_id)],
                detail,
            ));
        }
    }
    events
}
