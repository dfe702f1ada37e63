//! The events the tool announces on EventBridge: source `ami.automation`, one detail type per
//! action. Publishing them is a port ([`crate::ports::EventSink`]).

use serde::Serialize;

use crate::error::{Error, Result};

/// The `source` of every event this tool publishes.
pub const SOURCE: &str = "ami.automation";

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `AMI Deprecated`, `AMI Deregistered`, `Policy Run Completed`, ...
    pub detail_type: String,
    /// The ARNs the event is about (rules can match on them).
    pub resources: Vec<String>,
    /// The JSON detail.
    pub detail: serde_json::Value,
}

/// What publishing achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Published {
    /// Events accepted by EventBridge.
    pub published: usize,
    /// Events that could not be published, with the error.
    pub failed: Vec<String>,
}

/// Builds an event.
pub fn event(detail_type: &str, resources: Vec<String>, detail: serde_json::Value) -> Event {
    Event {
        detail_type: detail_type.to_string(),
        resources,
        detail,
    }
}

/// Converts a serialisable value to JSON, which cannot fail for the plain structs of this crate.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::Refused(format!("cannot encode the report: {e}")))
}
