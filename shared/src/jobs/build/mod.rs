//! Build: CreateImage from EBS-backed instances selected by tags (on a schedule, or when one
//! stops), RegisterImage from EBS snapshots, and the announcements of AMI state changes.
//!
//! Names are deterministic (the policy's template over the schedule window), so a re-delivered
//! event finds its AMI already there (`InvalidAMIName.Duplicate`) and creates nothing.

mod execute;
pub mod plan;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use execute::{run, Ran};
pub use plan::{work, Work};

use crate::domain::ids::Region;

/// The function's name in reports, events and the `created-by` tag.
pub const FUNCTION: &str = crate::domain::function::Function::Build.name();

/// What happened to one source (instance or snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildOutcome {
    /// Dry run: it would be created.
    Planned,
    /// CreateImage/RegisterImage was called; the AMI is pending.
    Created,
    /// An AMI with this name already exists (a re-delivered event): nothing was created.
    Exists,
    /// Not built, with the reason (an instance-store instance, a missing instance, ...).
    Refused,
    /// Left for the next run (the deadline came, or EC2 throttled).
    Deferred,
    /// EC2 failed the call.
    Failed,
}

impl From<crate::error::Disposition> for BuildOutcome {
    fn from(d: crate::error::Disposition) -> Self {
        match d {
            crate::error::Disposition::Deferred => BuildOutcome::Deferred,
            crate::error::Disposition::Failed => BuildOutcome::Failed,
        }
    }
}

/// One line of the build report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildResult {
    /// The instance imaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The snapshot registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    pub policy: String,
    pub region: Region,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The AMI created or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub outcome: BuildOutcome,
    /// Why (refusals and failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl BuildResult {
    /// A line about an instance or a snapshot, refused until something else is decided.
    pub fn new(
        instance: Option<&str>,
        snapshot: Option<&str>,
        policy: &str,
        region: &Region,
    ) -> Self {
        BuildResult {
            instance_id: instance.map(String::from),
            snapshot_id: snapshot.map(String::from),
            policy: policy.to_string(),
            region: region.clone(),
            name: None,
            image_id: None,
            outcome: BuildOutcome::Refused,
            reason: None,
        }
    }

    /// The line with an outcome and its reason.
    pub fn with(mut self, outcome: BuildOutcome, reason: impl Into<Option<String>>) -> Self {
        self.outcome = outcome;
        self.reason = reason.into();
        self
    }
}

impl crate::jobs::Line for BuildResult {
    type Outcome = BuildOutcome;
    fn outcome(&self) -> &BuildOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, BuildOutcome::Refused | BuildOutcome::Failed)
    }
}
