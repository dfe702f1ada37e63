//! The build's decisions, pure: what a trigger asks for, whether an instance or a snapshot is
//! built and under which name and tags, and what an AMI state change announces.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{BuildOutcome, BuildResult, FUNCTION};
use crate::domain::event::detail_type;
use crate::domain::event::{event, Event};
use crate::domain::ids::Region;
use crate::domain::model::InstanceInfo;
use crate::domain::naming::{check_image_name, render_name, window_start};
use crate::domain::policy::{Architecture, Policy, PolicyDocument};
use crate::domain::register::{RegisterRequest, VolumeType, DEFAULT_ROOT_DEVICE};
use crate::domain::tags;
use crate::domain::trigger::{AmiStateChange, RunRequest, SnapshotNotification, Trigger};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::ports::RegisterSpec;

/// The work a trigger asks of the build.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Image every instance the policies select, in every region.
    Sweep {
        /// The regions.
        regions: Vec<Region>,
        /// Only these policies (default: all).
        policies: Option<Vec<String>>,
        /// The schedule window the names are made from.
        window: DateTime<Utc>,
    },
    /// An instance stopped: image it if a policy with `on_stop` selects it.
    OnStop {
        /// Its region.
        region: Region,
        /// The instance.
        instance_id: String,
        /// The window of the stop event's own time.
        window: DateTime<Utc>,
    },
    /// Register an AMI from a snapshot.
    Register {
        /// The snapshot's region.
        region: Region,
        /// What to register.
        request: RegisterRequest,
    },
    /// A snapshot was created: register it if it is tagged for it.
    SnapshotCreated {
        /// Its region.
        region: Region,
        /// The notification.
        detail: SnapshotNotification,
    },
    /// An AMI changed state: announce a build's failure or a managed AMI's availability.
    Announce {
        /// Its region.
        region: Region,
        /// The change.
        detail: AmiStateChange,
    },
}

/// The work a trigger asks for, or why it asks for none. The regions a trigger does not name
/// are `home`; names are made from the window of the trigger's own time (a re-delivery makes
/// the same names).
pub fn work(
    trigger: Trigger,
    home: &Region,
    window_minutes: u32,
    document: &PolicyDocument,
) -> Result<Decision<Work>> {
    let window =
        |at: Option<DateTime<Utc>>| window_start(at.unwrap_or_else(Utc::now), window_minutes);
    Ok(Decision::Act(match trigger {
        Trigger::Run(request) => requested(request, home, document, window)?,
        Trigger::Scheduled { region, time } => Work::Sweep {
            regions: vec![region.unwrap_or_else(|| home.clone())],
            policies: None,
            window: window(time),
        },
        Trigger::InstanceState {
            region,
            time,
            detail,
        } => {
            if detail.state != "stopped" {
                return Ok(Decision::Ignore(format!(
                    "instance {} is {}: only `stopped` builds",
                    detail.instance_id, detail.state
                )));
            }
            Work::OnStop {
                region: region.unwrap_or_else(|| home.clone()),
                instance_id: detail.instance_id,
                window: window(time),
            }
        }
        Trigger::Snapshot { region, detail } => Work::SnapshotCreated {
            region: region.unwrap_or_else(|| home.clone()),
            detail,
        },
        Trigger::AmiState { region, detail } => Work::Announce {
            region: region.unwrap_or_else(|| home.clone()),
            detail,
        },
        Trigger::Validated { .. } => {
            return Err(Error::event(
                "$.detail-type",
                "ami-build does not act on `AMI Validated`: share and copy do",
            ))
        }
        Trigger::Restored { .. } => {
            return Err(Error::event(
                "$.detail-type",
                "ami-build does not act on `AMI Restored`: share does",
            ))
        }
        Trigger::Recalled { .. } => {
            return Err(Error::event(
                "$.detail-type",
                "ami-build does not act on `AMI Recalled`: publish does",
            ))
        }
        Trigger::Continued { .. } => {
            return Err(Error::event(
                "$.detail-type",
                "ami-build runs no continuation: only ami-age-out continues its runs",
            ))
        }
        Trigger::Queue { .. } => {
            return Err(Error::event(
                "$.Records",
                "ami-build takes no SQS batch: only ami-distribute serves its queue's units",
            ))
        }
    }))
}

/// A run request's work: a registration (in the request's first region), or a sweep.
fn requested(
    request: RunRequest,
    home: &Region,
    document: &PolicyDocument,
    window: impl Fn(Option<DateTime<Utc>>) -> DateTime<Utc>,
) -> Result<Work> {
    let Some(register) = request.register else {
        return Ok(Work::Sweep {
            regions: request.regions.unwrap_or_else(|| vec![home.clone()]),
            policies: request.policies,
            window: window(request.as_of),
        });
    };
    if document.policy(&register.policy).is_none() {
        return Err(Error::event(
            "$.register.policy",
            format!("no policy named `{}`", register.policy),
        ));
    }
    register.check()?;
    Ok(Work::Register {
        region: request
            .regions
            .as_ref()
            .and_then(|r| r.first())
            .unwrap_or(home)
            .clone(),
        request: register,
    })
}

/// The tags a built AMI and its snapshots carry: the policy's, the family, the policy, the
/// source and the tool.
pub fn build_tags(
    policy: &Policy,
    instance_tags: &BTreeMap<String, String>,
    source: (&str, &str),
) -> BTreeMap<String, String> {
    let mut out = tags::managed(
        policy,
        |key| {
            Some(
                instance_tags
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| policy.name.clone()),
            )
        },
        FUNCTION,
    );
    out.insert(source.0.into(), source.1.into());
    out
}

/// A CreateImage to make.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOrder {
    pub instance_id: String,
    pub name: String,
    /// Image without rebooting.
    pub no_reboot: bool,
    /// Tags of the image and its snapshots.
    pub tags: BTreeMap<String, String>,
}

/// Whether and how an instance is imaged: the CreateImage to make, or why not. Only EBS-backed
/// instances that are running or stopped are imaged (CreateImage cannot image instance-store).
pub fn create_order(
    policy: &Policy,
    instance: &InstanceInfo,
    window: DateTime<Utc>,
) -> std::result::Result<CreateOrder, String> {
    let Some(build) = &policy.build else {
        return Err("the policy has no build section".into());
    };
    if instance.root_device_type.as_deref() == Some("instance-store") {
        return Err(format!(
            "instance {} is instance-store-backed: EC2 cannot image it through CreateImage (bundle it with the AMI tools, or move it to EBS)",
            instance.id
        ));
    }
    if !matches!(instance.state.as_str(), "running" | "stopped") {
        return Err(format!(
            "instance {} is {}: only running or stopped instances are imaged",
            instance.id, instance.state
        ));
    }
    let name = render_name(&build.name_template, &policy.name, &instance.id, window)
        .map_err(|why| format!("name_template: {why}"))?;
    Ok(CreateOrder {
        instance_id: instance.id.clone(),
        name,
        no_reboot: build.no_reboot,
        tags: build_tags(
            policy,
            &instance.tags,
            (tags::SOURCE_INSTANCE, &instance.id),
        ),
    })
}

/// The first policy with `build.on_stop` whose instance tags the instance carries.
pub fn on_stop_policy<'a>(
    document: &'a PolicyDocument,
    instance: &InstanceInfo,
) -> Option<&'a Policy> {
    document.policies.iter().find(|p| {
        p.build.as_ref().is_some_and(|b| {
            b.on_stop
                && b.instance_tags
                    .iter()
                    .all(|(k, pat)| instance.tags.get(k).is_some_and(|v| pat.matches(v)))
        })
    })
}

/// The name of an AMI registered from a snapshot: the request's, or `{policy}-{snapshot_id}`.
pub fn register_name(request: &RegisterRequest) -> std::result::Result<String, String> {
    let name = match &request.name {
        Some(n) => n.clone(),
        None => format!("{}-{}", request.policy, request.snapshot_id),
    };
    check_image_name(&name)?;
    Ok(name)
}

/// Whether a snapshot in `state` (none: absent or another account's) can be registered.
pub fn check_snapshot(id: &str, state: Option<&str>) -> std::result::Result<(), String> {
    match state {
        None => Err(format!(
            "snapshot {id} does not exist or is not owned by the account"
        )),
        Some("error") => Err(format!(
            "snapshot {id} is in state `error`: its creation failed"
        )),
        Some("completed") => Ok(()),
        Some(state) => Err(format!(
            "snapshot {id} is `{state}`: register it once it is completed"
        )),
    }
}

/// The RegisterImage of a request, named `name`, under `policy`.
pub fn register_spec(policy: &Policy, request: &RegisterRequest, name: String) -> RegisterSpec {
    RegisterSpec {
        name,
        snapshot_id: request.snapshot_id.clone(),
        architecture: request.architecture.as_str(),
        boot_mode: request.boot_mode.map(|b| b.as_str()),
        ena_support: request.ena_support,
        root_device_name: request.root_device_name.clone(),
        volume_type: request.volume_type.unwrap_or(VolumeType::Gp3).as_str(),
        iops: request.iops,
        delete_on_termination: request.delete_on_termination,
        tags: build_tags(
            policy,
            &BTreeMap::new(),
            (tags::SOURCE_SNAPSHOT, &request.snapshot_id),
        ),
    }
}

/// Why an `EBS Snapshot Notification` registers nothing whatever its tags say, if it does not.
pub fn snapshot_event_ignored(detail: &SnapshotNotification) -> Option<String> {
    let registers = matches!(detail.event.as_str(), "createSnapshot" | "copySnapshot")
        && detail.result == "succeeded";
    (!registers).then(|| {
        format!(
            "{} {}: only a succeeded createSnapshot or copySnapshot registers",
            detail.event, detail.result
        )
    })
}

/// The registration a created snapshot's tags ask for, or why they ask for none.
pub fn register_from_tags(
    id: &str,
    snapshot_tags: &BTreeMap<String, String>,
    document: &PolicyDocument,
) -> Decision<RegisterRequest> {
    let Some(policy) = snapshot_tags.get(tags::REGISTER) else {
        return Decision::Ignore(format!("snapshot {id} has no {} tag", tags::REGISTER));
    };
    if document.policy(policy).is_none() {
        return Decision::Ignore(format!(
            "snapshot {id} names policy `{policy}`, which the document does not have"
        ));
    }
    let architecture = match snapshot_tags.get(tags::ARCHITECTURE).map(String::as_str) {
        None | Some("x86_64") => Architecture::X86_64,
        Some("arm64") => Architecture::Arm64,
        Some("i386") => Architecture::I386,
        Some(other) => {
            return Decision::Ignore(format!("snapshot {id}: unknown architecture `{other}`"))
        }
    };
    Decision::Act(RegisterRequest {
        snapshot_id: id.to_string(),
        name: None,
        architecture,
        boot_mode: None,
        ena_support: true,
        root_device_name: snapshot_tags
            .get(tags::ROOT_DEVICE_NAME)
            .cloned()
            .unwrap_or_else(|| DEFAULT_ROOT_DEVICE.into()),
        volume_type: None,
        iops: None,
        delete_on_termination: true,
        virtualization_type: None,
        policy: policy.clone(),
    })
}

/// `EC2 AMI State Change`: `failed` for an AMI this tool built → `AMI Build Failed`;
/// `available` for an AMI a policy manages → `AMI Available`. `image_tags` is none when the
/// account has no such AMI.
pub fn announce(
    region: &Region,
    detail: &AmiStateChange,
    image_tags: Option<&BTreeMap<String, String>>,
) -> Decision<Event> {
    let Some(image_tags) = image_tags else {
        return Decision::Ignore(format!(
            "image {} is not an AMI of the account",
            detail.image_id
        ));
    };
    let body = serde_json::json!({"ImageId": detail.image_id, "State": detail.state,
        "ErrorMessage": detail.error_message, "Policy": image_tags.get(tags::POLICY), "Region": region});
    let resources = vec![region.image_arn(&detail.image_id)];
    match detail.state.as_str() {
        "failed" if image_tags.get(tags::CREATED_BY).map(String::as_str) == Some(FUNCTION) => {
            Decision::Act(event(detail_type::AMI_BUILD_FAILED, resources, body))
        }
        "available" if image_tags.contains_key(tags::POLICY) => {
            Decision::Act(event(detail_type::AMI_AVAILABLE, resources, body))
        }
        state => Decision::Ignore(format!(
            "image {} is {state} and not one this tool announces",
            detail.image_id
        )),
    }
}

/// `AMI Build Started` for every AMI a run created.
pub fn started_events(results: &[BuildResult]) -> Vec<Event> {
    results
        .iter()
        .filter(|r| r.outcome == BuildOutcome::Created)
        .map(|r| {
            event(
                detail_type::AMI_BUILD_STARTED,
                r.image_id.iter().map(|id| r.region.image_arn(id)).collect(),
                serde_json::to_value(r).unwrap_or_default(),
            )
        })
        .collect()
}
