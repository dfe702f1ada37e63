//! Every payload a function can receive, parsed by one parser.
//!
//! Two shapes arrive: EventBridge envelopes (`Scheduled Event`, `EC2 AMI State Change`,
//! `EC2 Instance State-change Notification`, `EBS Snapshot Notification`) and run requests, the
//! JSON a schedule's `Input` or a person sends. A schedule with `Input` delivers exactly that JSON,
//! not an envelope, so both must be accepted.

//!
//! [`request`] parses and checks run requests, [`envelope`] the events; [`Trigger::parse`] tells
//! them apart.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::event::detail_type;
use crate::domain::ids::Region;
pub use crate::domain::payload::Payload;
use crate::error::{Error, Result};

mod envelope;
mod queue;
mod recall;
mod request;

#[cfg(test)]
mod tests;

pub use envelope::*;
pub use queue::QueueRecord;
pub use recall::*;
pub use request::*;

/// What the accepted payloads are, for error messages.
pub const ACCEPTED: &str = "a run request ({\"policies\", \"regions\", \"dry_run\", \"as_of\", ...}) or an EventBridge event with detail-type `Scheduled Event` (source aws.events), `EC2 AMI State Change`, `EC2 Instance State-change Notification` or `EBS Snapshot Notification` (source aws.ec2), or `AMI Validated`, `AMI Restored`, `AMI Recalled` and age-out's sealed `Policy Run Continued` (source ami.automation)";

/// One parsed invocation payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A run request (a schedule's `Input`, or by hand).
    Run(RunRequest),
    /// An EventBridge schedule without `Input`: run everything in the event's region.
    Scheduled {
        region: Option<Region>,
        time: Option<DateTime<Utc>>,
    },
    /// `EC2 AMI State Change`.
    AmiState {
        region: Option<Region>,
        detail: AmiStateChange,
    },
    /// `EC2 Instance State-change Notification`.
    InstanceState {
        region: Option<Region>,
        /// When the state changed (the envelope's `time`): a re-delivery carries the same.
        time: Option<DateTime<Utc>>,
        detail: InstanceStateChange,
    },
    /// `EBS Snapshot Notification`.
    Snapshot {
        region: Option<Region>,
        detail: SnapshotNotification,
    },
    /// This tool's `AMI Validated`: an AMI passed its launch test.
    Validated {
        region: Option<Region>,
        detail: ValidatedDetail,
    },
    /// Age-out's own `AMI Restored`: an AMI came back from the Recycle Bin (its launch
    /// permissions did not: EnableImage and RestoreImageFromRecycleBin bring none back).
    Restored {
        region: Option<Region>,
        detail: RestoredDetail,
    },
    /// Age-out's own `AMI Recalled`: an image left circulation (what names it rolls back).
    Recalled {
        region: Option<Region>,
        detail: RecalledDetail,
    },
    /// Age-out's own `Policy Run Continued`: run the sealed request next, once the seal holds.
    Continued {
        region: Option<Region>,
        detail: Box<ContinuedDetail>,
    },
    /// An SQS batch: the units of a distribution sweep.
    Queue { records: Vec<queue::QueueRecord> },
}

impl Trigger {
    /// Parses any payload a function may receive; the error names the field and lists what is accepted.
    pub fn parse(payload: impl Into<Payload>) -> Result<Trigger> {
        let Payload { value, duplicate } = payload.into();
        if let Some(path) = duplicate {
            return Err(Error::event(
                path,
                "this key is given twice in its object: give each key once (JSON readers disagree on which one wins, and a safety switch must not depend on it)",
            ));
        }

        if value.get("Records").is_some() {
            return queue::parse(value);
        }
        let is_envelope = value.get("detail-type").is_some() || value.get("source").is_some();
        if is_envelope {
            return envelope::parse(value);
        }

        let request = RunRequest::from_json(value, "$")?;
        for (field, set) in [
            ("continuation", request.continuation.is_some()),
            ("run_id", request.run_id.is_some()),
        ] {
            if set {
                return Err(Error::event(
                    format!("$.{field}"),
                    "set only by age-out, inside its sealed `Policy Run Continued` event: leave it out of a run request",
                ));
            }
        }
        Ok(Trigger::Run(request))
    }

    /// What kind of trigger it is.
    pub fn kind(&self) -> TriggerKind {
        match self {
            Trigger::Run(_) => TriggerKind::RunRequest,
            Trigger::Scheduled { .. } => TriggerKind::Scheduled,
            Trigger::AmiState { .. } => TriggerKind::AmiStateChange,
            Trigger::InstanceState { .. } => TriggerKind::InstanceStateChange,
            Trigger::Snapshot { .. } => TriggerKind::SnapshotNotification,
            Trigger::Validated { .. } => TriggerKind::Validated,
            Trigger::Restored { .. } => TriggerKind::Restored,
            Trigger::Recalled { .. } => TriggerKind::Recalled,
            Trigger::Continued { .. } => TriggerKind::Continued,
            Trigger::Queue { .. } => TriggerKind::Queue,
        }
    }
}

/// The kinds of trigger, named in reports and logs as EventBridge names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    /// A run request (`run request`).
    RunRequest,
    /// `Scheduled Event`.
    Scheduled,
    /// `EC2 AMI State Change`.
    AmiStateChange,
    /// `EC2 Instance State-change Notification`.
    InstanceStateChange,
    /// `EBS Snapshot Notification`.
    SnapshotNotification,
    /// `AMI Validated` (this tool's own event).
    Validated,
    /// `AMI Restored` (age-out's own event).
    Restored,
    /// `AMI Recalled` (age-out's own event).
    Recalled,
    /// `Policy Run Continued` (age-out's own, sealed).
    Continued,
    /// An SQS batch (a distribution sweep's units).
    Queue,
}

impl TriggerKind {
    /// As reports and logs name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            TriggerKind::RunRequest => "run request",
            TriggerKind::Scheduled => "Scheduled Event",
            TriggerKind::AmiStateChange => "EC2 AMI State Change",
            TriggerKind::InstanceStateChange => "EC2 Instance State-change Notification",
            TriggerKind::SnapshotNotification => "EBS Snapshot Notification",
            TriggerKind::Validated => detail_type::AMI_VALIDATED,
            TriggerKind::Restored => detail_type::AMI_RESTORED,
            TriggerKind::Recalled => detail_type::AMI_RECALLED,
            TriggerKind::Continued => detail_type::POLICY_RUN_CONTINUED,
            TriggerKind::Queue => "SQS batch",
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TriggerKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `ami-`, `i-` or `snap-` and 8 to 17 hexadecimal digits, as EC2 makes them.
fn check_id(prefix: &str, id: &str, path: &str) -> Result<()> {
    crate::domain::ids::check_resource_id(prefix, id).map_err(|m| Error::event(path, m))
}

fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value, root: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            root.to_string()
        } else {
            format!("{root}.{path}")
        };
        Error::event(at, e.into_inner().to_string())
    })
}
