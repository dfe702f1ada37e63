//! Build: CreateImage from EBS-backed instances selected by tags (on a schedule, or when one
//! stops), RegisterImage from EBS snapshots, and the announcements of AMI state changes.
//!
//! Names are deterministic (the policy's template over the schedule window), so a re-delivered
//! event finds its AMI already there (`InvalidAMIName.Duplicate`) and creates nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};

use crate::app::{App, Deadline};
use crate::ec2::{Ec2, InstanceInfo, RegisterSpec};
use crate::error::{Error, Result};
use crate::ids::Region;
use crate::policy::{Architecture, FamilyBy, Policy, POLICY_TAG};
use crate::publish::{event, Event};
use crate::trigger::{AmiStateChange, RunRequest, SnapshotNotification, Trigger};

/// The function's name in reports, events and the `created-by` tag.
pub const FUNCTION: &str = "ami-build";
/// Tag naming the instance an AMI was made from.
pub const SOURCE_INSTANCE_TAG: &str = "ami-automation:source-instance";
/// Tag naming the tool that made the AMI.
pub const CREATED_BY_TAG: &str = "ami-automation:created-by";
/// A snapshot tagged `ami-automation:register=<policy>` is registered as an AMI when created.
pub const REGISTER_TAG: &str = "ami-automation:register";

/// Checks EC2's AMI name rules: 3 to 128 characters of letters, digits and `( ) [ ] . / - ' @ _`
/// and space.
pub fn check_image_name(name: &str) -> std::result::Result<(), String> {
    let len = name.chars().count();
    if !(3..=128).contains(&len) {
        return Err(format!(
            "`{name}` has {len} characters: an AMI name has 3 to 128"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
    {
        return Err(format!(
            "`{name}` contains `{bad}`: an AMI name takes letters, digits, spaces and ( ) [ ] . / - ' @ _"
        ));
    }
    Ok(())
}

/// Fills a name template: `{policy}`, `{instance_id}` (or the snapshot id), `{timestamp}`
/// (`20260101T120000Z`) and `{date}` (`2026-01-01`) of the schedule window.
pub fn render_name(
    template: &str,
    policy: &str,
    source_id: &str,
    window: DateTime<Utc>,
) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("`{template}`: a `{{` without its `}}`"));
        };
        let key = &rest[start + 1..start + end];
        match key {
            "policy" => out.push_str(policy),
            "instance_id" | "source_id" => out.push_str(source_id),
            "timestamp" => out.push_str(&window.format("%Y%m%dT%H%M%SZ").to_string()),
            "date" => out.push_str(&window.format("%Y-%m-%d").to_string()),
            other => {
                return Err(format!(
                    "`{template}`: unknown placeholder `{{{other}}}` (use {{policy}}, {{instance_id}}, {{timestamp}}, {{date}})"
                ))
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    check_image_name(&out)?;
    Ok(out)
}

/// The start of the schedule window that contains `at`.
pub fn window_start(at: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(i64::from(minutes.max(1))))
        .unwrap_or(at)
}

/// A request to register an AMI from an EBS snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The root volume's snapshot (completed, owned by the account).
    pub snapshot_id: String,
    /// The AMI name (default `{policy}-{snapshot_id}`).
    #[serde(default)]
    pub name: Option<String>,
    /// `x86_64` (default), `arm64` or `i386`.
    #[serde(default = "x86")]
    pub architecture: Architecture,
    /// `legacy-bios`, `uefi` or `uefi-preferred` (default: EC2's).
    #[serde(default)]
    pub boot_mode: Option<BootMode>,
    /// ENA support (default true: current instance types need it).
    #[serde(default = "yes")]
    pub ena_support: bool,
    /// The root device (default `/dev/xvda`).
    #[serde(default = "xvda")]
    pub root_device_name: String,
    /// `gp3` (default), `gp2`, `io1`, `io2` or `standard`: the types EC2 boots from (st1 and
    /// sc1 cannot be boot volumes, and are refused).
    #[serde(default)]
    pub volume_type: Option<VolumeType>,
    /// Provisioned IOPS of the root volume: required for io1 and io2, optional for gp3, not
    /// supported by gp2 and standard (EbsBlockDevice).
    #[serde(default)]
    pub iops: Option<u32>,
    /// Delete the root volume when the instance terminates (always set explicitly; default true).
    #[serde(default = "yes")]
    pub delete_on_termination: bool,
    /// Only `hvm`: paravirtual is refused.
    #[serde(default)]
    pub virtualization_type: Option<crate::policy::VirtualizationType>,
    /// The policy whose build tags the AMI carries.
    pub policy: String,
}

fn x86() -> Architecture {
    Architecture::X86_64
}
fn yes() -> bool {
    true
}
fn xvda() -> String {
    "/dev/xvda".into()
}

/// Boot modes RegisterImage takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Legacy BIOS.
    LegacyBios,
    /// UEFI.
    Uefi,
    /// UEFI where the instance type supports it.
    UefiPreferred,
}

impl BootMode {
    /// As EC2 spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            BootMode::LegacyBios => "legacy-bios",
            BootMode::Uefi => "uefi",
            BootMode::UefiPreferred => "uefi-preferred",
        }
    }
}

/// EBS volume types for the root volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// gp2.
    Gp2,
    /// gp3.
    Gp3,
    /// io1.
    Io1,
    /// io2.
    Io2,
    /// st1.
    St1,
    /// sc1.
    Sc1,
    /// standard.
    Standard,
}

impl VolumeType {
    /// As EC2 spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
        }
    }
}

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

/// One line of the build report.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    /// The instance imaged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The snapshot registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The policy.
    pub policy: String,
    /// The region.
    pub region: String,
    /// The AMI name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The AMI created or found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// What happened.
    pub outcome: BuildOutcome,
    /// Why (refusals and failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The Lambda handler of `ami-build`.
pub async fn handle(
    app: &App,
    invocation: LambdaEvent<crate::payload::Payload>,
) -> Result<serde_json::Value, Diagnostic> {
    let started = Instant::now();
    let deadline = Deadline::from_lambda(invocation.context.deadline, &app.settings);
    let trigger = Trigger::parse(invocation.payload)?;
    let kind = trigger.kind();
    let home = app.settings.home_region.clone();
    let mut window = None;
    let mut ignored = None;
    let mut events = Vec::new();
    let (dry_run, results) = match trigger {
        Trigger::Run(request) => {
            app.check_policies(request.policies.as_deref())?;
            let dry_run = request.dry_run.unwrap_or(false);
            if let Some(register) = request.register.clone() {
                let spec = parse_register(register, app)?;
                let ec2 = app.ec2(
                    request
                        .regions
                        .as_ref()
                        .and_then(|r| r.first())
                        .unwrap_or(&home),
                );
                (dry_run, vec![register_one(&ec2, app, &spec, dry_run).await])
            } else {
                let at = window_start(
                    request.as_of.unwrap_or_else(Utc::now),
                    app.settings.build_window_minutes,
                );
                window = Some(at);
                (
                    dry_run,
                    scheduled(app, &request, at, dry_run, deadline).await,
                )
            }
        }
        Trigger::Scheduled { region, time } => {
            let at = window_start(
                time.unwrap_or_else(Utc::now),
                app.settings.build_window_minutes,
            );
            window = Some(at);
            let request = RunRequest {
                regions: region.map(|r| vec![r]),
                ..RunRequest::default()
            };
            (false, scheduled(app, &request, at, false, deadline).await)
        }
        Trigger::InstanceState {
            region,
            time,
            detail,
        } => {
            let ec2 = app.ec2(region.as_ref().unwrap_or(&home));
            if detail.state != "stopped" {
                ignored = Some(format!(
                    "instance {} is {}: only `stopped` builds",
                    detail.instance_id, detail.state
                ));
                (false, Vec::new())
            } else {
                // The window of the event's own time: a re-delivery of the same stop, even one
                // that arrives in the next window, makes the same name and creates nothing.
                let at = window_start(
                    time.unwrap_or_else(Utc::now),
                    app.settings.build_window_minutes,
                );
                window = Some(at);
                (false, on_stop(&ec2, app, &detail.instance_id, at).await?)
            }
        }
        Trigger::Snapshot { region, detail } => {
            let ec2 = app.ec2(region.as_ref().unwrap_or(&home));
            match snapshot_register_spec(&ec2, app, &detail).await? {
                Ok(spec) => (false, vec![register_one(&ec2, app, &spec, false).await]),
                Err(why) => {
                    ignored = Some(why);
                    (false, Vec::new())
                }
            }
        }
        Trigger::AmiState { region, detail } => {
            let ec2 = app.ec2(region.as_ref().unwrap_or(&home));
            match state_event(&ec2, &detail).await? {
                Ok(e) => events.push(e),
                Err(why) => ignored = Some(why),
            }
            (false, Vec::new())
        }
    };

    if !dry_run {
        for r in results
            .iter()
            .filter(|r| r.outcome == BuildOutcome::Created)
        {
            let region: Option<Region> = r.region.parse().ok();
            events.push(event(
                "AMI Build Started",
                r.image_id
                    .iter()
                    .filter_map(|id| region.as_ref().map(|reg| reg.image_arn(id)))
                    .collect(),
                serde_json::to_value(r).unwrap_or_default(),
            ));
        }
    }
    let run = crate::respond::Run {
        function: FUNCTION,
        trigger: kind,
        dry_run,
        window,
        ignored,
        started,
    };
    run.finish(app, results, events).await
}

fn parse_register(request: RegisterRequest, app: &App) -> Result<RegisterRequest> {
    if app.document.policy(&request.policy).is_none() {
        return Err(Error::event(
            "$.register.policy",
            format!("no policy named `{}`", request.policy),
        ));
    }
    if request.virtualization_type == Some(crate::policy::VirtualizationType::Paravirtual) {
        return Err(Error::event(
            "$.register.virtualization_type",
            "paravirtual AMIs are not built: current instance types run only HVM AMIs; omit the field or set `hvm`",
        ));
    }
    if let Some(name) = &request.name {
        check_image_name(name).map_err(|m| Error::event("$.register.name", m))?;
    }
    if !request.snapshot_id.starts_with("snap-") {
        return Err(Error::event(
            "$.register.snapshot_id",
            format!("`{}` is not a snapshot id (snap-...)", request.snapshot_id),
        ));
    }
    check_root_volume(request.volume_type.unwrap_or(VolumeType::Gp3), request.iops)?;
    let device_ok =
        request.root_device_name.starts_with("/dev/") && request.root_device_name.len() > 5;
    if !device_ok {
        return Err(Error::event(
            "$.register.root_device_name",
            format!(
                "`{}`: expected a device such as /dev/xvda",
                request.root_device_name
            ),
        ));
    }
    Ok(request)
}

/// Whether EC2 can boot from a root volume of this type with these IOPS (EbsBlockDevice:
/// "Iops ... is required for io1 and io2 volumes ... not supported for gp2, st1, sc1, or
/// standard volumes"; st1 and sc1 "can't be used as boot volumes").
pub fn check_root_volume(volume_type: VolumeType, iops: Option<u32>) -> Result<()> {
    use VolumeType::*;
    match (volume_type, iops) {
        (St1 | Sc1, _) => Err(Error::event(
            "$.register.volume_type",
            format!(
                "`{}` cannot be a boot volume: use gp3 (default), gp2, io1, io2 or standard",
                volume_type.as_str()
            ),
        )),
        (Io1 | Io2, None) => Err(Error::event(
            "$.register.iops",
            format!(
                "required with volume_type `{}`: set the provisioned IOPS (100 or more)",
                volume_type.as_str()
            ),
        )),
        (Gp2 | Standard, Some(_)) => Err(Error::event(
            "$.register.iops",
            format!(
                "not supported with volume_type `{}`: remove it, or use gp3, io1 or io2",
                volume_type.as_str()
            ),
        )),
        (_, Some(n)) if !(100..=256_000).contains(&n) => Err(Error::event(
            "$.register.iops",
            format!("{n}: provisioned IOPS are from 100 to 256000"),
        )),
        _ => Ok(()),
    }
}

/// The tags a built AMI and its snapshots carry.
fn build_tags(
    policy: &Policy,
    instance_tags: &BTreeMap<String, String>,
    source: (&str, &str),
) -> BTreeMap<String, String> {
    let mut tags = policy
        .build
        .as_ref()
        .map(|b| b.tags.clone())
        .unwrap_or_default();
    if let FamilyBy::Tag(key) = &policy.family_by {
        let family = instance_tags
            .get(key)
            .cloned()
            .unwrap_or_else(|| policy.name.clone());
        tags.insert(key.clone(), family);
    }
    tags.insert(POLICY_TAG.into(), policy.name.clone());
    tags.insert(source.0.into(), source.1.into());
    tags.insert(CREATED_BY_TAG.into(), FUNCTION.into());
    tags
}

fn result(
    instance: Option<&str>,
    snapshot: Option<&str>,
    policy: &str,
    region: &str,
) -> BuildResult {
    BuildResult {
        instance_id: instance.map(String::from),
        snapshot_id: snapshot.map(String::from),
        policy: policy.to_string(),
        region: region.to_string(),
        name: None,
        image_id: None,
        outcome: BuildOutcome::Refused,
        reason: None,
    }
}

fn refused(mut r: BuildResult, why: String) -> BuildResult {
    r.outcome = BuildOutcome::Refused;
    r.reason = Some(why);
    r
}

/// The scheduled build: every policy with `build`, every region, every tagged instance.
async fn scheduled(
    app: &App,
    request: &RunRequest,
    window: DateTime<Utc>,
    dry_run: bool,
    deadline: Deadline,
) -> Vec<BuildResult> {
    let regions = request
        .regions
        .clone()
        .unwrap_or_else(|| vec![app.settings.home_region.clone()]);
    let wanted = |p: &Policy| {
        request
            .policies
            .as_ref()
            .is_none_or(|ps| ps.contains(&p.name))
    };
    let mut jobs = Vec::new();
    let mut results = Vec::new();
    for region in &regions {
        let ec2 = app.ec2(region);
        for policy in app
            .document
            .policies
            .iter()
            .filter(|p| p.build.is_some() && wanted(p))
        {
            let Some(build) = &policy.build else { continue };
            match ec2.instances_tagged(&build.instance_tags).await {
                Ok(instances) => {
                    jobs.extend(instances.into_iter().map(|i| (ec2.clone(), policy, i)))
                }
                Err(e) => {
                    let mut r = result(None, None, &policy.name, region.as_str());
                    r.outcome = BuildOutcome::Failed;
                    r.reason = Some(e.to_string());
                    results.push(r);
                }
            }
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = jobs.len();
    let built: Vec<BuildResult> = futures::stream::iter(jobs)
        .map(|(ec2, policy, instance)| {
            let done = &done;
            async move {
                let r = if deadline.passed() {
                    let mut r = result(
                        Some(&instance.id),
                        None,
                        &policy.name,
                        ec2.region().as_str(),
                    );
                    r.outcome = BuildOutcome::Deferred;
                    r
                } else {
                    image_instance(&ec2, policy, &instance, window, dry_run).await
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % 50 == 0 {
                    tracing::info!(done = n, total, "build progress");
                }
                r
            }
        })
        .buffer_unordered(app.settings.concurrency)
        .collect()
        .await;
    results.extend(built);
    results.sort_by(|a, b| (&a.region, &a.instance_id).cmp(&(&b.region, &b.instance_id)));
    results
}

/// CreateImage of one instance (or the reason it cannot be imaged).
async fn image_instance(
    ec2: &Ec2,
    policy: &Policy,
    instance: &InstanceInfo,
    window: DateTime<Utc>,
    dry_run: bool,
) -> BuildResult {
    let mut r = result(
        Some(&instance.id),
        None,
        &policy.name,
        ec2.region().as_str(),
    );
    let Some(build) = &policy.build else {
        return refused(r, "the policy has no build section".into());
    };
    if instance.root_device_type.as_deref() == Some("instance-store") {
        return refused(r, format!(
            "instance {} is instance-store-backed: EC2 cannot image it through CreateImage (bundle it with the AMI tools, or move it to EBS)",
            instance.id
        ));
    }
    if !matches!(instance.state.as_str(), "running" | "stopped") {
        return refused(
            r,
            format!(
                "instance {} is {}: only running or stopped instances are imaged",
                instance.id, instance.state
            ),
        );
    }
    let name = match render_name(&build.name_template, &policy.name, &instance.id, window) {
        Ok(n) => n,
        Err(why) => return refused(r, format!("name_template: {why}")),
    };
    r.name = Some(name.clone());
    if dry_run {
        r.outcome = BuildOutcome::Planned;
        return r;
    }
    let tags = build_tags(policy, &instance.tags, (SOURCE_INSTANCE_TAG, &instance.id));
    let created = ec2
        .create_image(&instance.id, &name, build.no_reboot, &tags)
        .await;
    finish(ec2, r, created, &name).await
}

/// Records a CreateImage/RegisterImage answer; a duplicate name means the AMI exists already.
async fn finish(ec2: &Ec2, mut r: BuildResult, created: Result<String>, name: &str) -> BuildResult {
    match created {
        Ok(id) => {
            r.image_id = Some(id);
            r.outcome = BuildOutcome::Created;
        }
        Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => {
            r.outcome = BuildOutcome::Exists;
            r.image_id = ec2.image_id_by_name(name).await.ok().flatten();
        }
        Err(e) if e.is_transient() => {
            r.outcome = BuildOutcome::Deferred;
            r.reason = Some(e.to_string());
        }
        Err(e) => {
            r.outcome = BuildOutcome::Failed;
            r.reason = Some(e.to_string());
        }
    }
    r
}

/// An instance stopped: image it if a policy with `on_stop` selects it.
async fn on_stop(
    ec2: &Ec2,
    app: &App,
    instance_id: &str,
    window: DateTime<Utc>,
) -> Result<Vec<BuildResult>> {
    let Some(instance) = ec2.instance(instance_id).await? else {
        let r = result(Some(instance_id), None, "", ec2.region().as_str());
        return Ok(vec![refused(
            r,
            format!(
                "instance {instance_id} does not exist (any more) in {}",
                ec2.region()
            ),
        )]);
    };
    let policy = app.document.policies.iter().find(|p| {
        p.build.as_ref().is_some_and(|b| {
            b.on_stop
                && b.instance_tags
                    .iter()
                    .all(|(k, pat)| instance.tags.get(k).is_some_and(|v| pat.matches(v)))
        })
    });
    match policy {
        Some(policy) => Ok(vec![
            image_instance(ec2, policy, &instance, window, false).await,
        ]),
        None => Ok(Vec::new()),
    }
}

/// RegisterImage from a snapshot.
async fn register_one(ec2: &Ec2, app: &App, spec: &RegisterRequest, dry_run: bool) -> BuildResult {
    let mut r = result(
        None,
        Some(&spec.snapshot_id),
        &spec.policy,
        ec2.region().as_str(),
    );
    let Some(policy) = app.document.policy(&spec.policy) else {
        return refused(r, format!("no policy named `{}`", spec.policy));
    };
    let name = match &spec.name {
        Some(n) => n.clone(),
        None => format!("{}-{}", spec.policy, spec.snapshot_id),
    };
    if let Err(why) = check_image_name(&name) {
        return refused(r, why);
    }
    r.name = Some(name.clone());
    let snapshot = match ec2.own_snapshot(&spec.snapshot_id).await {
        Ok(s) => s,
        Err(e) => {
            r.outcome = BuildOutcome::Failed;
            r.reason = Some(e.to_string());
            return r;
        }
    };
    match snapshot {
        None => {
            return refused(
                r,
                format!(
                    "snapshot {} does not exist or is not owned by the account",
                    spec.snapshot_id
                ),
            )
        }
        Some(state) if state == "error" => {
            return refused(
                r,
                format!(
                    "snapshot {} is in state `error`: its creation failed",
                    spec.snapshot_id
                ),
            )
        }
        Some(state) if state != "completed" => {
            return refused(
                r,
                format!(
                    "snapshot {} is `{state}`: register it once it is completed",
                    spec.snapshot_id
                ),
            )
        }
        Some(_) => {}
    }
    if dry_run {
        r.outcome = BuildOutcome::Planned;
        return r;
    }
    let tags = build_tags(
        policy,
        &BTreeMap::new(),
        ("ami-automation:source-snapshot", &spec.snapshot_id),
    );
    let register = RegisterSpec {
        name: &name,
        snapshot_id: &spec.snapshot_id,
        architecture: spec.architecture.as_str(),
        boot_mode: spec.boot_mode.map(|b| b.as_str()),
        ena_support: spec.ena_support,
        root_device_name: &spec.root_device_name,
        volume_type: spec.volume_type.unwrap_or(VolumeType::Gp3).as_str(),
        iops: spec.iops,
        delete_on_termination: spec.delete_on_termination,
        tags: &tags,
    };
    let created = ec2.register_image(&register).await;
    finish(ec2, r, created, &name).await
}

/// The registration an `EBS Snapshot Notification` asks for, or why it asks for none.
async fn snapshot_register_spec(
    ec2: &Ec2,
    app: &App,
    detail: &SnapshotNotification,
) -> Result<std::result::Result<RegisterRequest, String>> {
    if !matches!(detail.event.as_str(), "createSnapshot" | "copySnapshot")
        || detail.result != "succeeded"
    {
        return Ok(Err(format!(
            "{} {}: only a succeeded createSnapshot or copySnapshot registers",
            detail.event, detail.result
        )));
    }
    let id = detail.snapshot();
    let tags = ec2.snapshot_tags(id).await?;
    let Some(policy) = tags.get(REGISTER_TAG) else {
        return Ok(Err(format!("snapshot {id} has no {REGISTER_TAG} tag")));
    };
    if app.document.policy(policy).is_none() {
        return Ok(Err(format!(
            "snapshot {id} names policy `{policy}`, which the document does not have"
        )));
    }
    let arch = match tags.get("ami-automation:architecture").map(String::as_str) {
        None | Some("x86_64") => Architecture::X86_64,
        Some("arm64") => Architecture::Arm64,
        Some("i386") => Architecture::I386,
        Some(other) => {
            return Ok(Err(format!(
                "snapshot {id}: unknown architecture `{other}`"
            )))
        }
    };
    Ok(Ok(RegisterRequest {
        snapshot_id: id.to_string(),
        name: None,
        architecture: arch,
        boot_mode: None,
        ena_support: true,
        root_device_name: tags
            .get("ami-automation:root-device-name")
            .cloned()
            .unwrap_or_else(xvda),
        volume_type: None,
        iops: None,
        delete_on_termination: true,
        virtualization_type: None,
        policy: policy.clone(),
    }))
}

/// `EC2 AMI State Change`: `failed` for an AMI this tool built → `AMI Build Failed`;
/// `available` for an AMI a policy manages → `AMI Available`.
async fn state_event(
    ec2: &Ec2,
    detail: &AmiStateChange,
) -> Result<std::result::Result<Event, String>> {
    let Some(tags) = ec2.image_tags(&detail.image_id).await? else {
        return Ok(Err(format!(
            "image {} is not an AMI of the account",
            detail.image_id
        )));
    };
    let body = serde_json::json!({"ImageId": detail.image_id, "State": detail.state,
        "ErrorMessage": detail.error_message, "Policy": tags.get(POLICY_TAG), "Region": ec2.region()});
    match detail.state.as_str() {
        "failed" if tags.get(CREATED_BY_TAG).map(String::as_str) == Some(FUNCTION) => {
            Ok(Ok(event(
                "AMI Build Failed",
                vec![ec2.region().image_arn(&detail.image_id)],
                body,
            )))
        }
        "available" if tags.contains_key(POLICY_TAG) => Ok(Ok(event(
            "AMI Available",
            vec![ec2.region().image_arn(&detail.image_id)],
            body,
        ))),
        state => Ok(Err(format!(
            "image {} is {state} and not one this tool announces",
            detail.image_id
        ))),
    }
}

impl crate::respond::Line for BuildResult {
    type Outcome = BuildOutcome;
    fn outcome(&self) -> &BuildOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, BuildOutcome::Refused | BuildOutcome::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_volumes_ec2_boots_from_are_registered() {
        use VolumeType::*;
        let table: [(VolumeType, Option<u32>, Option<&str>); 10] = [
            (Gp3, None, None),
            (Gp3, Some(4000), None),
            (Gp2, None, None),
            (Standard, None, None),
            (Io1, Some(1000), None),
            (Io2, None, Some("$.register.iops")),
            (St1, None, Some("$.register.volume_type")),
            (Sc1, None, Some("$.register.volume_type")),
            (Gp2, Some(100), Some("$.register.iops")),
            (Io2, Some(5), Some("$.register.iops")),
        ];
        for (volume, iops, refused_at) in table {
            let got = check_root_volume(volume, iops);
            match (refused_at, got) {
                (None, Ok(())) => {}
                (Some(path), Err(Error::Event { path: p, .. })) => assert_eq!(p, path),
                (want, got) => panic!("{volume:?} {iops:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
