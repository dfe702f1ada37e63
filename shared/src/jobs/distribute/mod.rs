//! Distribute: each policy's newest promotable AMI of each family into the accounts of its
//! `distribute.targets`, as EC2 Image Builder's distribution does: the target account owns a
//! copy (CopyImage in the target, encrypted with its key, tagged with the lineage) or uses the
//! shared AMI, and its SSM parameters name it. Copies whose source has left circulation
//! (deregistered, disabled, recalled) are deregistered in the target once nothing there uses
//! them (DescribeImageReferences, fail closed).
//!
//! A sweep does no work in any account: it queues one sealed unit per target account and
//! region on the distribution queue, which feeds this function again, so accounts are served in
//! parallel, each within its own EC2 buckets; one account failing (no role, denied, region not
//! enabled) fails its unit only, which SQS delivers again and then moves to the dead-letter
//! queue.

mod checks;
pub mod execute;
mod launch_templates;
pub mod plan;
mod request;
mod sweep;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::domain::event::{detail_type, event, Event};
use crate::domain::ids::{AccountId, Region};

pub use request::request;

/// The function's name in reports, events and tags.
pub const FUNCTION: &str = crate::domain::function::Function::Distribute.name();

/// One unit of work: a target account in one region, as the queue carries it (sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub account: AccountId,
    pub region: Region,
    /// The OU the sweep found the account in (its ARN), when it is a target as a member of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<String>,
    /// A dry run reports what the unit would do and changes nothing.
    pub dry_run: bool,
    /// When the seal stops holding (RFC 3339).
    pub expires: chrono::DateTime<chrono::Utc>,
    /// The stack's seal over the rest ([`crate::domain::seal::unit`]).
    pub seal: String,
}

/// What a line of the report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A sweep queued the unit.
    Queue,
    /// The unit as a whole (its role, its source images).
    Unit,
    /// The target's own copy.
    Copy,
    /// An SSM parameter in the target.
    Publish,
    /// A launch template in the target.
    LaunchTemplate,
    /// A copy whose source left circulation.
    Retire,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dry run: it would be done.
    Planned,
    /// The unit is on the queue.
    Queued,
    /// CopyImage was called in the target; the copy is pending.
    Started,
    /// Nothing to do: the copy exists, the parameter already names the AMI.
    Unchanged,
    /// The copy is still pending: its parameters wait for the next sweep.
    Waiting,
    /// The parameter, or the launch template's version, now names the AMI.
    Published,
    /// The copy was deregistered (with its snapshots).
    Retired,
    /// Not retired, with the reason (in use in the target, usage unknown).
    Kept,
    /// Not done, with the reason; nothing else is wrong in the account.
    Refused,
    /// The call failed, or the account could not be reached: the unit is retried.
    Failed,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributeLine {
    /// The target account (empty on a line about an OU that could not be listed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    /// The OU the account is a target through (or the OU that could not be listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<String>,
    pub region: Region,
    pub action: Action,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// The source AMI (the stack's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    /// The AMI in the target: its copy, or the shared source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The SSM parameter, for a publish line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The launch template (as the policy names it), for a launch template line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    /// The template's version that names the AMI (made, or made the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DistributeLine {
    /// A line about `action` in `account` and `region`, failed until decided.
    pub fn new(account: &AccountId, region: &Region, action: Action) -> Self {
        DistributeLine {
            account: account.to_string(),
            ..DistributeLine::new_unchecked(region, action)
        }
    }

    /// A sweep's line about an organizational unit (its ARN), which names no account.
    pub fn of_unit(ou: &str, region: &Region) -> Self {
        DistributeLine {
            account: String::new(),
            organizational_unit: Some(ou.to_string()),
            ..DistributeLine::new_unchecked(region, Action::Queue)
        }
    }

    fn new_unchecked(region: &Region, action: Action) -> Self {
        DistributeLine {
            account: String::new(),
            organizational_unit: None,
            region: region.clone(),
            action,
            policy: String::new(),
            family: String::new(),
            source_image_id: None,
            image_id: None,
            parameter: None,
            launch_template: None,
            version: None,
            outcome: Outcome::Failed,
            reason: None,
        }
    }

    /// The line with an outcome and its reason.
    pub fn with(mut self, outcome: Outcome, reason: impl Into<Option<String>>) -> Self {
        self.outcome = outcome;
        self.reason = reason.into();
        self
    }
}

impl crate::jobs::Line for DistributeLine {
    type Outcome = Outcome;
    fn outcome(&self) -> &Outcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Refused | Outcome::Failed)
    }
}

/// Whether a unit's lines call for SQS to deliver it again (a call failed, the account could
/// not be reached): refusals are decisions, and another delivery would decide the same.
pub fn retry(lines: &[DistributeLine]) -> bool {
    lines.iter().any(|l| l.outcome == Outcome::Failed)
}

/// One event per unit served: `AMI Distribution Failed` when something failed or was refused,
/// else `AMI Distributed` with what changed in the account (none for a unit with nothing to do).
pub fn events(account: &AccountId, region: &Region, lines: &[DistributeLine]) -> Vec<Event> {
    let mine: Vec<&DistributeLine> = lines
        .iter()
        .filter(|l| {
            l.account == account.as_str() && &l.region == region && l.action != Action::Queue
        })
        .collect();
    let resources = mine
        .iter()
        .filter_map(|l| l.image_id.as_deref())
        .map(|id| region.image_arn(id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let detail = serde_json::json!({"account": account, "region": region, "lines": mine});
    // A refusal (a disabled copy, copies EC2 keeps failing, a parameter of another type) needs a
    // person as much as a failure does: both are announced.
    if mine.iter().any(|l| crate::jobs::Line::failed(*l)) {
        return vec![event(
            detail_type::AMI_DISTRIBUTION_FAILED,
            resources,
            detail,
        )];
    }
    let changed = mine.iter().any(|l| {
        matches!(
            l.outcome,
            Outcome::Started | Outcome::Published | Outcome::Retired
        )
    });
    if changed {
        vec![event(detail_type::AMI_DISTRIBUTED, resources, detail)]
    } else {
        Vec::new()
    }
}
