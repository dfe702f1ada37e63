//! EventBridge envelopes: EC2's events, the schedule's, and this tool's own. Each detail is
//! checked as EC2 (or the stack) defines it; the error names the field under `$.detail`.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{check_id, from_value, RunRequest, Trigger, ACCEPTED};
use crate::domain::event::{detail_type, SOURCE};
use crate::domain::ids::Region;
use crate::error::{Error, Result};

/// Parses an EventBridge envelope into its trigger.
pub(super) fn parse(value: serde_json::Value) -> Result<Trigger> {
    let envelope: EventBridgeEvent<serde_json::Value> = from_value(value, "$")?;
    let region = match envelope.region.as_deref() {
        Some(r) => Some(
            r.parse::<Region>()
                .map_err(|m| Error::event("$.region", m))?,
        ),
        None => None,
    };

    let detail = envelope.detail;
    match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        ("aws.events", "Scheduled Event") => Ok(Trigger::Scheduled {
            region,
            time: envelope.time,
        }),
        ("aws.ec2", "EC2 AMI State Change") => {
            let detail: AmiStateChange = from_value(detail, "$.detail")?;
            check_id("ami", &detail.image_id, "$.detail.ImageId")?;
            check_state(&detail.state, AMI_STATES, "$.detail.State")?;
            Ok(Trigger::AmiState { region, detail })
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let detail: InstanceStateChange = from_value(detail, "$.detail")?;
            check_id("i", &detail.instance_id, "$.detail.instance-id")?;
            check_state(&detail.state, INSTANCE_STATES, "$.detail.state")?;
            Ok(Trigger::InstanceState {
                region,
                time: envelope.time,
                detail,
            })
        }
        ("aws.ec2", "EBS Snapshot Notification") => {
            let detail: SnapshotNotification = from_value(detail, "$.detail")?;
            check_id("snap", detail.snapshot(), "$.detail.snapshot_id")?;
            Ok(Trigger::Snapshot { region, detail })
        }
        (SOURCE, detail_type::AMI_VALIDATED) => {
            let detail: ValidatedDetail = from_value(detail, "$.detail")?;
            check_id("ami", &detail.image_id, "$.detail.image_id")?;
            Ok(Trigger::Validated { region, detail })
        }
        (SOURCE, detail_type::AMI_RESTORED) => {
            let detail: RestoredDetail = from_value(detail, "$.detail")?;
            check_id("ami", &detail.image_id, "$.detail.image_id")?;
            Ok(Trigger::Restored { region, detail })
        }
        (SOURCE, detail_type::AMI_RECALLED) => {
            let detail: RecalledDetail = from_value(detail, "$.detail")?;
            check_id("ami", &detail.image_id, "$.detail.image_id")?;
            Ok(Trigger::Recalled { region, detail })
        }
        (SOURCE, detail_type::POLICY_RUN_CONTINUED) => Ok(Trigger::Continued {
            region,
            detail: Box::new(ContinuedDetail::from_json(detail)?),
        }),
        (source, detail_type) => Err(Error::event(
            "$.detail-type",
            format!("unsupported event `{detail_type}` from `{source}`: accepted are {ACCEPTED}"),
        )),
    }
}

impl ContinuedDetail {
    /// Parses a continuation's detail: its request is a run request checked like any other,
    /// and carries the same `continuation` and `run_id` as the event.
    fn from_json(detail: serde_json::Value) -> Result<ContinuedDetail> {
        let wire: ContinuedWire = from_value(detail, "$.detail")?;
        let request = RunRequest::from_json(wire.request, "$.detail.request")?;
        if request.continuation != Some(wire.continuation)
            || request.run_id.as_deref() != Some(wire.run_id.as_str())
        {
            return Err(Error::event(
                "$.detail.request",
                "its `continuation` and `run_id` differ from the event's: age-out sets both the same",
            ));
        }
        Ok(ContinuedDetail {
            function: wire.function,
            continuation: wire.continuation,
            run_id: wire.run_id,
            remaining: wire.remaining,
            key: wire.key,
            request,
            expires: wire.expires,
            seal: wire.seal,
        })
    }
}

/// The detail of this tool's own `AMI Validated` event, which share and copy act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedDetail {
    /// The AMI that passed its launch test.
    pub image_id: String,
}

/// The detail of age-out's own `AMI Restored`: the AMI and the region it was restored in (age-out
/// restores in every region of its request; the event goes to the home region's bus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredDetail {
    /// The AMI given back.
    pub image_id: String,
    /// Where it is.
    #[serde(default)]
    pub region: Option<Region>,
}

/// The detail of age-out's own `AMI Recalled` that a publish sweep needs: the AMI that left
/// circulation and its region (the same fields as [`RestoredDetail`]). It carries no authority:
/// it only says when to sweep.
pub type RecalledDetail = RestoredDetail;

/// The detail of age-out's own `Policy Run Continued`: the next run's request and the seal that
/// proves the stack made it ([`crate::domain::seal::continuation`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContinuedDetail {
    /// The function the next run is for (`ami-age-out`).
    pub function: String,
    /// How many continuations came before the next run (1 for the first).
    pub continuation: u32,
    /// The invocation that started the chain.
    pub run_id: String,
    /// How much work the run left (for people reading the event).
    pub remaining: u64,
    /// The key that sealed it (the template's rule matches the stack's own).
    pub key: Option<String>,
    /// The next run's request.
    pub request: RunRequest,
    /// When the seal stops holding.
    pub expires: DateTime<Utc>,
    /// The HMAC over [`crate::domain::seal::continuation`], base64.
    pub seal: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContinuedWire {
    function: String,
    continuation: u32,
    run_id: String,
    #[serde(default)]
    remaining: u64,
    #[serde(default)]
    key: Option<String>,
    request: serde_json::Value,
    expires: DateTime<Utc>,
    seal: String,
}

/// `EC2 AMI State Change` detail (PascalCase, as EC2 sends it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AmiStateChange {
    pub image_id: String,
    /// `pending`, `available`, `failed`, `deregistered`, `disabled`.
    pub state: String,
    /// Why it failed, when it failed.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `EC2 Instance State-change Notification` detail (kebab-case, as EC2 sends it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceStateChange {
    pub instance_id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
}

/// `EBS Snapshot Notification` detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotNotification {
    /// `createSnapshot`, `copySnapshot`, `createSnapshots`, ...
    pub event: String,
    /// `succeeded` or `failed`.
    pub result: String,
    /// The snapshot ARN (`arn:aws:ec2::<region>:snapshot/snap-...`).
    pub snapshot_id: String,
}

impl SnapshotNotification {
    /// The snapshot id from the ARN.
    pub fn snapshot(&self) -> &str {
        self.snapshot_id
            .rsplit('/')
            .next()
            .unwrap_or(&self.snapshot_id)
    }
}

/// The AMI states EC2 defines (DescribeImages `State`).
pub const AMI_STATES: &[&str] = &[
    "pending",
    "available",
    "invalid",
    "deregistered",
    "transient",
    "failed",
    "error",
    "disabled",
];

/// The instance states EC2 defines (InstanceState `Name`).
pub const INSTANCE_STATES: &[&str] = &[
    "pending",
    "running",
    "shutting-down",
    "terminated",
    "stopping",
    "stopped",
];

fn check_state(state: &str, allowed: &[&str], path: &str) -> Result<()> {
    if allowed.contains(&state) {
        return Ok(());
    }
    Err(Error::event(
        path,
        format!(
            "`{state}` is not a state EC2 defines: one of {}",
            allowed.join(", ")
        ),
    ))
}
