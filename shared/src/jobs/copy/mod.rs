//! Copy: each managed AMI into the destination regions of its policy, encrypted as the policy
//! says, with its lineage tagged on the copy and its snapshots. CopyImage is called in the
//! destination region with a `ClientToken` derived from the copy's source, destination and
//! parameters, so a repeated event or a retry never makes a second copy; an existing copy
//! (found by its lineage tag) is never copied again, and a copy is never copied.

mod execute;
pub mod plan;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use crate::jobs::copies::{client_token, CopyKey};
pub use execute::run;

use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::tags;

/// The run request a trigger asks of copy: a schedule sweeps its region, an AMI that became
/// available (or passed its launch test, or came back from the Recycle Bin) is copied alone;
/// the reason when the event needs no work.
pub fn request(
    trigger: crate::domain::trigger::Trigger,
) -> crate::error::Result<crate::domain::Decision<crate::domain::trigger::RunRequest>> {
    crate::jobs::requests::ami_request(trigger, crate::domain::function::Function::Copy)
}

/// The function's name in reports and events.
pub const FUNCTION: &str = crate::domain::function::Function::Copy.name();
/// CopyImage copies in flight at once per destination region (an EC2 quota).
pub const MAX_IN_FLIGHT: usize = 100;

/// Whether an AMI is itself a copy made by this tool (or any CopyImage): it is never copied.
pub fn is_copy(image: &Image) -> bool {
    image.tags.contains_key(tags::SOURCE_IMAGE)
}

/// What happened to one (source, destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyOutcome {
    /// Dry run: it would be copied.
    Planned,
    /// CopyImage was called; the copy is pending.
    Started,
    /// The destination already has the copy: nothing was done.
    Exists,
    /// Left for the next run: the deadline, the in-flight quota or throttling.
    Deferred,
    /// Not copied, with the reason.
    Refused,
    /// Not copied, and nothing is wrong: a sweep passes over a disabled or failed source
    /// (age-out disables AMIs as a retirement stage; a sweep must not fail every run for it).
    Skipped,
    /// EC2 failed the call.
    Failed,
}

/// One line of the copy report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyResult {
    pub source_image_id: String,
    pub source_region: Region,
    /// The destination region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Region>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// The copy's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_image_id: Option<String>,
    pub outcome: CopyOutcome,
    /// Why (refusals, deferrals, failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Copies found failed (and deregistered) before this copy was made again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_copies: Vec<FailedCopy>,
}

/// A copy that EC2 failed after accepting it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedCopy {
    /// The failed copy (deregistered).
    pub image_id: String,
    /// EC2's StateReason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
}

impl From<crate::error::Disposition> for CopyOutcome {
    fn from(d: crate::error::Disposition) -> Self {
        match d {
            crate::error::Disposition::Deferred => CopyOutcome::Deferred,
            crate::error::Disposition::Failed => CopyOutcome::Failed,
        }
    }
}

impl CopyResult {
    /// A line about copying `image_id` from `region`: refused until something else is decided.
    pub fn new(image_id: &str, region: &Region, policy: &str) -> Self {
        CopyResult {
            source_image_id: image_id.to_string(),
            source_region: region.clone(),
            destination: None,
            policy: policy.to_string(),
            copy_image_id: None,
            outcome: CopyOutcome::Refused,
            reason: None,
            failed_copies: Vec::new(),
        }
    }

    /// The line with an outcome and its reason.
    pub fn with(mut self, outcome: CopyOutcome, reason: impl Into<Option<String>>) -> Self {
        self.outcome = outcome;
        self.reason = reason.into();
        self
    }
}

impl crate::jobs::Line for CopyResult {
    type Outcome = CopyOutcome;
    fn outcome(&self) -> &CopyOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, CopyOutcome::Refused | CopyOutcome::Failed)
    }
}

/// `AMI Copy Failed` for every failed copy found (and deregistered), `AMI Copy Started` for
/// every copy started.
pub fn events(results: &[CopyResult]) -> Vec<Event> {
    let failed = results.iter().flat_map(|r| {
        r.failed_copies.iter().map(move |f| {
            let region = r.destination.as_ref().unwrap_or(&r.source_region);
            event(
                detail_type::AMI_COPY_FAILED,
                vec![
                    region.image_arn(&f.image_id),
                    r.source_region.image_arn(&r.source_image_id),
                ],
                serde_json::json!({"source_image_id": r.source_image_id,
                    "source_region": r.source_region, "destination": r.destination,
                    "copy_image_id": f.image_id, "state_reason": f.state_reason,
                    "policy": r.policy, "copied_again": r.outcome == CopyOutcome::Started}),
            )
        })
    });
    let started = results
        .iter()
        .filter(|r| r.outcome == CopyOutcome::Started)
        .map(|r| {
            event(
                detail_type::AMI_COPY_STARTED,
                r.copy_image_id
                    .iter()
                    .zip(r.destination.iter())
                    .map(|(id, region)| region.image_arn(id))
                    .chain(std::iter::once(
                        r.source_region.image_arn(&r.source_image_id),
                    ))
                    .collect(),
                serde_json::to_value(r).unwrap_or_default(),
            )
        });
    failed.chain(started).collect()
}
