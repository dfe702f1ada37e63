//! Publish: the last stage of an AMI's life before consumers use it. Two steps, both planned
//! from the account's state alone (the state lives in tags, so no invocation waits for an
//! instance to boot):
//!
//! - the **launch test** ([`validate`]): a new AMI of a policy with `validate` is launched
//!   once, passes when its instance runs with both status checks `ok` (and the console output
//!   says what it must) within the timeout, and is tagged `passed` or `failed`; the instance is
//!   always terminated;
//! - **publishing** ([`targets`]): the newest promotable AMI of each family is written to the
//!   policy's SSM parameters and launch templates, never one older than what they name, and a
//!   rollback pins a given AMI.

mod destinations;
mod execute;
mod launch_tests;
mod request;
pub mod targets;
#[cfg(test)]
mod tests;
pub mod validate;

use serde::Serialize;

pub use execute::{rollback, run};
pub use request::{regions, request};

use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::ids::Region;

/// The function's name in reports, events and tags.
pub const FUNCTION: &str = crate::domain::function::Function::Publish.name();

/// Which step a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The launch test.
    Validate,
    /// Writing an SSM parameter or a launch template.
    Publish,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishOutcome {
    /// Dry run: this would be done (`action` says what).
    Planned,
    /// The test instance was launched.
    Launched,
    /// The test is running: nothing to do until the instance is ready or times out.
    Waiting,
    /// The AMI passed its launch test.
    Passed,
    /// The AMI failed its launch test (`reason` says why).
    ValidationFailed,
    /// A test instance that outlived its test was terminated.
    Terminated,
    /// The target now names the AMI.
    Published,
    /// The target already names it: nothing was called.
    Unchanged,
    /// The target keeps what it names (a newer AMI, or a rollback's pin).
    Kept,
    /// Nothing to publish or test (no promotable AMI, not in this region).
    Skipped,
    /// Cannot be done as configured (ambiguous family, unknown template).
    Refused,
    /// Left for the next run (the deadline came, or AWS throttled).
    Deferred,
    /// An AWS call failed.
    Failed,
}

impl From<crate::error::Disposition> for PublishOutcome {
    fn from(d: crate::error::Disposition) -> Self {
        match d {
            crate::error::Disposition::Deferred => PublishOutcome::Deferred,
            crate::error::Disposition::Failed => PublishOutcome::Failed,
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishResult {
    pub stage: Stage,
    /// The AMI tested or published.
    pub image_id: String,
    pub region: Region,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// What the line does: `launch`, `wait`, `pass`, `fail`, `terminate`, `put_parameter`,
    /// `new_template_version`, `set_default_version`, `keep`.
    pub action: &'static str,
    /// The test instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `ssm:<name>` or `launch-template:<id or name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The AMI the target named before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_image_id: Option<String>,
    /// The parameter's or template's new version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Published by a rollback's pin.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    pub outcome: PublishOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PublishResult {
    /// A line about an AMI.
    pub fn new(stage: Stage, image_id: &str, region: &Region, policy: &str) -> Self {
        PublishResult {
            stage,
            image_id: image_id.to_string(),
            region: region.clone(),
            policy: policy.to_string(),
            family: None,
            action: "",
            instance_id: None,
            target: None,
            previous_image_id: None,
            version: None,
            pinned: false,
            outcome: PublishOutcome::Planned,
            reason: None,
        }
    }

    /// The line with an outcome and its reason.
    pub fn with(mut self, outcome: PublishOutcome, reason: impl Into<Option<String>>) -> Self {
        self.outcome = outcome;
        self.reason = reason.into();
        self
    }
}

impl crate::jobs::Line for PublishResult {
    type Outcome = PublishOutcome;
    fn outcome(&self) -> &PublishOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(
            self.outcome,
            PublishOutcome::Refused | PublishOutcome::Failed
        )
    }
}

/// `AMI Validated`, `AMI Validation Failed` and `AMI Published` for what was done.
pub fn events(results: &[PublishResult]) -> Vec<Event> {
    results
        .iter()
        .filter_map(|r| {
            let detail_type = match r.outcome {
                PublishOutcome::Kept if r.action == destinations::HELD => {
                    detail_type::AMI_PUBLISH_HELD
                }
                PublishOutcome::Passed => detail_type::AMI_VALIDATED,
                PublishOutcome::ValidationFailed => detail_type::AMI_VALIDATION_FAILED,
                PublishOutcome::Published => detail_type::AMI_PUBLISHED,
                _ => return None,
            };
            Some(event(
                detail_type,
                vec![r.region.image_arn(&r.image_id)],
                serde_json::to_value(r).unwrap_or_default(),
            ))
        })
        .collect()
}
