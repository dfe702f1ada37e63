//! Every payload a function can receive, parsed by one parser.
//!
//! Two shapes arrive: EventBridge envelopes (`Scheduled Event`, `EC2 AMI State Change`,
//! `EC2 Instance State-change Notification`, `EBS Snapshot Notification`) and run requests, the
//! JSON a schedule's `Input` or a person sends. A schedule with `Input` delivers exactly that JSON,
//! not an envelope, so both must be accepted.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::event::detail_type;
use crate::domain::ids::Region;
pub use crate::domain::payload::Payload;
use crate::domain::register::RegisterRequest;
use crate::error::{Error, Result};

/// What the accepted payloads are, for error messages.
pub const ACCEPTED: &str = "a run request ({\"policies\", \"regions\", \"dry_run\", \"as_of\", ...}) or an EventBridge event with detail-type `Scheduled Event` (source aws.events), `EC2 AMI State Change`, `EC2 Instance State-change Notification` or `EBS Snapshot Notification` (source aws.ec2), or `AMI Validated`, `AMI Restored` and age-out's sealed `Policy Run Continued` (source ami.automation)";

/// At most this many AMI ids in one run request.
pub const MAX_IMAGE_IDS: usize = 1000;
/// At most this many policy names in one run request.
pub const MAX_POLICIES: usize = 100;

/// A request to run a function, sent by a schedule's `Input` or by a person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Policies to run (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Regions to run in (default: the function's own region); processed concurrently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<Region>>,
    /// Report what would be done and change nothing (default: the policy document's `dry_run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// The clock the planner uses (default: now), so ages can be tested without waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// Limit the run to these AMIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ids: Option<Vec<String>>,
    /// Register an AMI from an EBS snapshot (the build function only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterRequest>,
    /// Undo age-out for these AMIs (the age-out function only): restore them and their
    /// snapshots from the Recycle Bin, re-enable a disabled one, cancel a deprecation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRequest>,
    /// Publish this AMI of a family now, even if older than what is published: the rollback
    /// (the publish function only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Box<PublishRequest>>,
    /// Set by age-out on the run it starts when it stops at its deadline with work left: how
    /// many continuations came before this one (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<u32>,
    /// The invocation that started a chain of continuations, carried by each of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// `{"restore": {"image_ids": [...]}}`: the AMIs age-out should give back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The AMIs (1 to 100), each as it was before age-out acted.
    pub image_ids: Vec<String>,
}

/// `{"publish": {"policy", "family", "image_id"}}`: pin a family's published AMI (rollback).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The policy whose `publish` targets are set.
    pub policy: String,
    /// The family (as the policy's `family_by` names it).
    pub family: String,
    /// The AMI to publish, in the request's region (its copies in the other regions).
    pub image_id: String,
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
    /// Age-out's own `Policy Run Continued`: run the sealed request next, once the seal holds.
    Continued {
        region: Option<Region>,
        detail: Box<ContinuedDetail>,
    },
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
        let is_envelope = value.get("detail-type").is_some() || value.get("source").is_some();
        if !is_envelope {
            let request = run_request(value, "$")?;
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
            return Ok(Trigger::Run(request));
        }
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
            (crate::domain::event::SOURCE, detail_type::AMI_VALIDATED) => {
                let detail: ValidatedDetail = from_value(detail, "$.detail")?;
                check_id("ami", &detail.image_id, "$.detail.image_id")?;
                Ok(Trigger::Validated { region, detail })
            }
            (crate::domain::event::SOURCE, detail_type::AMI_RESTORED) => {
                let detail: RestoredDetail = from_value(detail, "$.detail")?;
                check_id("ami", &detail.image_id, "$.detail.image_id")?;
                Ok(Trigger::Restored { region, detail })
            }
            (crate::domain::event::SOURCE, detail_type::POLICY_RUN_CONTINUED) => {
                let wire: ContinuedWire = from_value(detail, "$.detail")?;
                let request = run_request(wire.request, "$.detail.request")?;
                if request.continuation != Some(wire.continuation)
                    || request.run_id.as_deref() != Some(wire.run_id.as_str())
                {
                    return Err(Error::event(
                        "$.detail.request",
                        "its `continuation` and `run_id` differ from the event's: age-out sets both the same",
                    ));
                }
                Ok(Trigger::Continued {
                    region,
                    detail: Box::new(ContinuedDetail {
                        function: wire.function,
                        continuation: wire.continuation,
                        run_id: wire.run_id,
                        remaining: wire.remaining,
                        key: wire.key,
                        request,
                        expires: wire.expires,
                        seal: wire.seal,
                    }),
                })
            }
            (source, detail_type) => Err(Error::event(
                "$.detail-type",
                format!(
                    "unsupported event `{detail_type}` from `{source}`: accepted are {ACCEPTED}"
                ),
            )),
        }
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
            Trigger::Continued { .. } => TriggerKind::Continued,
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
    /// `Policy Run Continued` (age-out's own, sealed).
    Continued,
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
            TriggerKind::Continued => detail_type::POLICY_RUN_CONTINUED,
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

/// Parses and checks a run request at `root` (`$` for one sent as it is, the continuation's
/// `$.detail.request`); the error names the field under `root`.
fn run_request(value: serde_json::Value, root: &str) -> Result<RunRequest> {
    if !value.is_object() {
        return Err(Error::event(
            root,
            format!("expected a JSON object: {ACCEPTED}"),
        ));
    }
    for field in [
        "policies",
        "regions",
        "dry_run",
        "as_of",
        "image_ids",
        "register",
        "restore",
        "publish",
        "continuation",
        "run_id",
    ] {
        if value.get(field).is_some_and(serde_json::Value::is_null) {
            return Err(Error::event(
                format!("{root}.{field}"),
                "null is not a value: leave the field out for its default, or give a value",
            ));
        }
    }
    let request = from_value::<RunRequest>(value, root)?;
    let limits = [
        (
            "image_ids",
            request.image_ids.as_ref().map_or(0, Vec::len),
            MAX_IMAGE_IDS,
        ),
        (
            "regions",
            request.regions.as_ref().map_or(0, Vec::len),
            crate::domain::ids::KNOWN_REGIONS.len(),
        ),
        (
            "policies",
            request.policies.as_ref().map_or(0, Vec::len),
            MAX_POLICIES,
        ),
    ];
    for (field, len, max) in limits {
        if len > max {
            return Err(Error::event(
                format!("{root}.{field}"),
                format!("{len} entries: at most {max} in one request (split it, or run a sweep)"),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, id) in request.image_ids.iter().flatten().enumerate() {
        check_id("ami", id, &format!("{root}.image_ids[{i}]"))?;
        if !seen.insert(id) {
            return Err(Error::event(
                format!("{root}.image_ids[{i}]"),
                format!("`{id}` is listed twice: list each AMI once"),
            ));
        }
    }
    if request
        .run_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 128)
    {
        return Err(Error::event(
            format!("{root}.run_id"),
            "1 to 128 characters: age-out sets it on the runs it continues",
        ));
    }
    if let Some(restore) = &request.restore {
        if restore.image_ids.is_empty() || restore.image_ids.len() > MAX_IMAGE_IDS {
            return Err(Error::event(
                format!("{root}.restore.image_ids"),
                format!(
                    "{} entries: list 1 to {MAX_IMAGE_IDS} AMIs to restore",
                    restore.image_ids.len()
                ),
            ));
        }
        if request.image_ids.is_some() {
            return Err(Error::event(
                format!("{root}.image_ids"),
                "a restore names its AMIs in `restore.image_ids`: leave `image_ids` out",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, id) in restore.image_ids.iter().enumerate() {
            let at = format!("{root}.restore.image_ids[{i}]");
            check_id("ami", id, &at)?;
            if !seen.insert(id) {
                return Err(Error::event(
                    at,
                    format!("`{id}` is listed twice: list each AMI once"),
                ));
            }
        }
    }
    if let Some(publish) = &request.publish {
        check_id(
            "ami",
            &publish.image_id,
            &format!("{root}.publish.image_id"),
        )?;
        for (field, value) in [("policy", &publish.policy), ("family", &publish.family)] {
            if value.is_empty() {
                return Err(Error::event(
                    format!("{root}.publish.{field}"),
                    format!("empty: name the {field} whose published AMI to pin"),
                ));
            }
        }
        if request.image_ids.is_some() || request.restore.is_some() {
            return Err(Error::event(format!("{root}.publish"),
                "a rollback names its AMI in `publish.image_id`: leave `image_ids` and `restore` out",
            ));
        }
        if request.regions.as_ref().is_some_and(|r| r.len() != 1) {
            return Err(Error::event(format!("{root}.regions"),
                "a rollback names the one region of `publish.image_id` (its copies elsewhere follow)",
            ));
        }
    }
    Ok(request)
}

/// `ami-`, `i-` or `snap-` and 8 to 17 hexadecimal digits, as EC2 makes them.
fn check_id(prefix: &str, id: &str, path: &str) -> Result<()> {
    crate::domain::ids::check_resource_id(prefix, id).map_err(|m| Error::event(path, m))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_request_is_parsed_with_all_fields() {
        let t = Trigger::parse(
            json!({"policies": ["web"], "regions": ["us-east-1", "eu-west-1"],
            "dry_run": true, "as_of": "2027-01-01T00:00:00Z"}),
        )
        .expect("parses");
        let Trigger::Run(r) = t else {
            panic!("not a run request")
        };
        assert_eq!(r.regions.map(|v| v.len()), Some(2));
        assert_eq!(
            r.as_of.map(|t| t.to_rfc3339()),
            Some("2027-01-01T00:00:00+00:00".into())
        );
    }

    #[test]
    fn an_empty_object_is_a_run_of_everything() {
        assert_eq!(
            Trigger::parse(json!({})).expect("parses"),
            Trigger::Run(RunRequest::default())
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = Trigger::parse(json!({"regions": ["us-east-1", "mars-1"]})).unwrap_err();
        assert!(err.to_string().contains("$.regions[1]"), "{err}");
        let err = Trigger::parse(json!({"dryrun": true})).unwrap_err();
        assert!(err.to_string().contains("unknown field `dryrun`"), "{err}");
        let err = Trigger::parse(json!({"as_of": "yesterday"})).unwrap_err();
        assert!(err.to_string().contains("$.as_of"), "{err}");
    }

    #[test]
    fn an_unknown_detail_type_lists_what_is_accepted() {
        let err = Trigger::parse(
            json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unsupported event `Object Created`") && text.contains("Scheduled Event"),
            "{text}"
        );
    }

    /// Every file in `events/`, which are at once the samples users send and these fixtures.
    const SAMPLES: &[(&str, &str)] = &[
        (
            "age-out-dry-run.json",
            include_str!("../../../events/age-out-dry-run.json"),
        ),
        (
            "age-out-real-run.json",
            include_str!("../../../events/age-out-real-run.json"),
        ),
        (
            "age-out-two-regions-as-of.json",
            include_str!("../../../events/age-out-two-regions-as-of.json"),
        ),
        (
            "age-out-scheduled.json",
            include_str!("../../../events/age-out-scheduled.json"),
        ),
        (
            "age-out-restore.json",
            include_str!("../../../events/age-out-restore.json"),
        ),
        (
            "build-scheduled.json",
            include_str!("../../../events/build-scheduled.json"),
        ),
        (
            "build-dry-run.json",
            include_str!("../../../events/build-dry-run.json"),
        ),
        (
            "build-instance-stopped.json",
            include_str!("../../../events/build-instance-stopped.json"),
        ),
        (
            "build-register-snapshot.json",
            include_str!("../../../events/build-register-snapshot.json"),
        ),
        (
            "build-snapshot-created.json",
            include_str!("../../../events/build-snapshot-created.json"),
        ),
        (
            "build-ami-failed.json",
            include_str!("../../../events/build-ami-failed.json"),
        ),
        (
            "share-ami-available.json",
            include_str!("../../../events/share-ami-available.json"),
        ),
        (
            "share-sweep-dry-run.json",
            include_str!("../../../events/share-sweep-dry-run.json"),
        ),
        (
            "share-images.json",
            include_str!("../../../events/share-images.json"),
        ),
        (
            "copy-ami-available.json",
            include_str!("../../../events/copy-ami-available.json"),
        ),
        (
            "copy-sweep.json",
            include_str!("../../../events/copy-sweep.json"),
        ),
        (
            "copy-sweep-dry-run.json",
            include_str!("../../../events/copy-sweep-dry-run.json"),
        ),
        (
            "share-ami-validated.json",
            include_str!("../../../events/share-ami-validated.json"),
        ),
        (
            "publish-ami-available.json",
            include_str!("../../../events/publish-ami-available.json"),
        ),
        (
            "publish-test-instance-running.json",
            include_str!("../../../events/publish-test-instance-running.json"),
        ),
        (
            "publish-scheduled.json",
            include_str!("../../../events/publish-scheduled.json"),
        ),
        (
            "publish-dry-run.json",
            include_str!("../../../events/publish-dry-run.json"),
        ),
        (
            "publish-rollback.json",
            include_str!("../../../events/publish-rollback.json"),
        ),
        (
            "share-ami-restored.json",
            include_str!("../../../events/share-ami-restored.json"),
        ),
    ];

    #[test]
    fn every_sample_event_parses() {
        for (name, text) in SAMPLES {
            let value: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let trigger = Trigger::parse(value).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = match *name {
                n if n.contains("scheduled") => "Scheduled Event",
                n if n.contains("stopped") || n.contains("instance-running") => {
                    "EC2 Instance State-change Notification"
                }
                n if n.contains("ami-validated") => "AMI Validated",
                n if n.contains("ami-restored") => "AMI Restored",
                n if n.contains("snapshot-created") => "EBS Snapshot Notification",
                n if n.contains("ami-failed") || n.contains("ami-available") => {
                    "EC2 AMI State Change"
                }
                _ => "run request",
            };
            assert_eq!(trigger.kind().as_str(), expected, "{name}");
        }
    }

    #[test]
    fn every_file_in_events_is_a_tested_sample() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        for entry in std::fs::read_dir(dir).expect("events/") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            let is_event = name.ends_with(".json");
            assert!(
                !is_event || SAMPLES.iter().any(|(n, _)| *n == name),
                "events/{name} has no parse test"
            );
        }
    }

    #[test]
    fn the_ec2_envelopes_parse_with_typed_details() {
        let ami = json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": "us-east-1",
            "detail": {"RequestId": "r", "ImageId": "ami-0123456789abcdef0", "State": "available", "ErrorMessage": ""}});
        let Trigger::AmiState { detail, .. } = Trigger::parse(ami).expect("ami") else {
            panic!("ami state")
        };
        assert_eq!(detail.image_id, "ami-0123456789abcdef0");
        let stop = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
            "detail": {"instance-id": "i-0123456789abcdef0", "state": "stopped"}});
        let Trigger::InstanceState { detail, .. } = Trigger::parse(stop).expect("stop") else {
            panic!("instance")
        };
        assert_eq!(detail.state, "stopped");
        let snap = json!({"source": "aws.ec2", "detail-type": "EBS Snapshot Notification",
            "detail": {"event": "createSnapshot", "result": "succeeded",
                       "snapshot_id": "arn:aws:ec2::us-east-1:snapshot/snap-0123456789abcdef0", "source": "arn:aws:ec2::us-east-1:volume/vol-1"}});
        let Trigger::Snapshot { detail, .. } = Trigger::parse(snap).expect("snapshot") else {
            panic!("snapshot")
        };
        assert_eq!(detail.snapshot(), "snap-0123456789abcdef0");
        let missing = json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "detail": {"State": "available"}});
        let err = Trigger::parse(missing).unwrap_err().to_string();
        assert!(err.contains("$.detail") && err.contains("ImageId"), "{err}");
    }

    #[test]
    fn a_json_array_is_refused() {
        let err = Trigger::parse(json!([1, 2])).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }
}
