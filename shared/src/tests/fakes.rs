//! In-memory fakes of the ports, for the jobs' unit tests: EC2 and KMS of any region, an
//! event recorder and a pacer that never waits. Each fake answers as EC2 documents (a duplicate
//! AMI name is `InvalidAMIName.Duplicate`, a reused client token returns the same copy), and
//! any call can be made to fail with an EC2 error code.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::domain::event::{Event, Published};
use crate::domain::grant::Grant;
use crate::domain::ids::Region;
use crate::domain::model::{
    CopyFound, Image, ImageState, InstanceInfo, ReportState, Snapshot, TemplateUse, UsageReport,
};
use crate::domain::policy::{CopyDestination, TagPattern, TemplateDepth};
use crate::domain::recycle_bin::{BinImage, BinSnapshot, RecycleBin};
use crate::domain::tags;
use crate::error::{Error, Result};
use crate::ports::*;

/// An EC2 error with its code, as the adapter makes them.
pub fn ec2_error(operation: &'static str, region: &Region, code: &str) -> Error {
    Error::Aws {
        operation,
        region: region.to_string(),
        code: code.to_string(),
        message: format!("{code} (injected)"),
        source: Box::new(std::io::Error::other(code.to_string())),
    }
}

/// One region of the fake account.
#[derive(Debug, Default)]
pub struct RegionState {
    /// The account's AMIs.
    pub images: Vec<Image>,
    /// The account's snapshots, with their state (`completed`, `pending`, `error`).
    pub snapshots: Vec<(Snapshot, String)>,
    pub instances: Vec<InstanceInfo>,
    /// Launch permissions by image.
    pub launch: HashMap<String, BTreeSet<Grant>>,
    /// createVolumePermission by snapshot.
    pub volume: HashMap<String, BTreeSet<Grant>>,
    /// The KMS key of each encrypted snapshot.
    pub snapshot_keys: HashMap<String, String>,
    /// Block public access for AMIs is on.
    pub block_public_access: bool,
    /// StateReason of failed images.
    pub state_reasons: HashMap<String, String>,
    /// Client token → the copy it made.
    pub tokens: HashMap<String, String>,
    /// Operation → the error code it fails with (every call, until removed).
    pub failing: HashMap<&'static str, String>,
    /// DescribeImageReferences' answers: image → the ARNs that reference it.
    pub references: HashMap<String, BTreeSet<String>>,
    /// AMI usage reports by image, newest first.
    pub usage_reports: HashMap<String, Vec<UsageReport>>,
    /// Usage reports in progress for AMIs the test does not hold (toward EC2's quota).
    pub other_pending_reports: usize,
    /// The Recycle Bin's rules.
    pub recycle_bin: RecycleBin,
    /// AMIs in the Recycle Bin.
    pub bin_images: Vec<Image>,
    /// Snapshots in the Recycle Bin.
    pub bin_snapshots: Vec<BinSnapshot>,
    /// The state RestoreSnapshotFromRecycleBin answers (default `completed`).
    pub restored_snapshot_state: Option<String>,
    /// Test instances of the launch test (terminated ones stay, as EC2 shows them for a while).
    pub test_instances: Vec<TestInstance>,
    /// Console output by instance.
    pub consoles: HashMap<String, String>,
    /// Instances whose console cannot be read (GetConsoleOutput fails for them).
    pub unreadable_consoles: HashSet<String>,
    /// Security group → its inbound rules, described.
    pub inbound: HashMap<String, Vec<String>>,
    /// RunInstances client token → the instance it launched.
    pub launch_tokens: HashMap<String, String>,
    /// Each new launch template version's (template, source version).
    pub template_sources: Vec<(String, i64)>,
    /// Launch templates: the state and each version's AMI (version n at index n - 1).
    pub templates: Vec<(LaunchTemplateState, Vec<Option<String>>)>,
    /// CreateLaunchTemplateVersion client token → the version it made.
    pub template_tokens: HashMap<String, i64>,
    /// SSM parameters: name → (value, version).
    pub parameters: HashMap<String, (String, i64)>,
    /// A parameter's data type other than `aws:ec2:image`.
    pub parameter_data_types: HashMap<String, String>,
    /// Every call that changed something, as `Operation id`.
    pub changes: Vec<String>,
    /// Each DescribeImageAttribute call, as the number of changes made before it.
    pub attribute_reads: Vec<usize>,
    /// AMIs whose DeregisterImage fails, with the error code.
    pub refused: HashMap<String, String>,
    next_id: u64,
}

/// EC2 in one region of the fake account.
#[derive(Debug, Clone)]
pub struct FakeEc2 {
    region: Region,
    state: Arc<Mutex<RegionState>>,
}

impl FakeEc2 {
    /// The region's state, to seed it or to look at it.
    pub fn state(&self) -> MutexGuard<'_, RegionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every call of `operation` fail with `code`.
    pub fn fail(&self, operation: &'static str, code: &str) {
        self.state().failing.insert(operation, code.to_string());
    }

    fn check(&self, operation: &'static str) -> Result<MutexGuard<'_, RegionState>> {
        let state = self.state();
        match state.failing.get(operation) {
            Some(code) => Err(ec2_error(operation, &self.region, code)),
            None => Ok(state),
        }
    }

    fn new_id(state: &mut RegionState, prefix: &str) -> String {
        state.next_id += 1;
        format!("{prefix}-{:017x}", state.next_id)
    }
}

impl Regional for FakeEc2 {
    fn region(&self) -> &Region {
        &self.region
    }
}

impl ImageInventory for FakeEc2 {
    async fn images(&self, ids: Option<&[String]>) -> Result<Vec<Image>> {
        let state = self.check("DescribeImages")?;
        Ok(state
            .images
            .iter()
            .filter(|i| ids.is_none_or(|ids| ids.contains(&i.id)))
            .cloned()
            .collect())
    }
    async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let state = self.check("DescribeSnapshots")?;
        Ok(state.snapshots.iter().map(|(s, _)| s.clone()).collect())
    }
    async fn instance_usage(&self) -> Result<HashMap<String, BTreeSet<String>>> {
        let state = self.check("DescribeInstances")?;
        let mut used: HashMap<String, BTreeSet<String>> = HashMap::new();
        for i in state.instances.iter().filter(|i| i.state != "terminated") {
            if let Some(image) = i.tags.get("image") {
                used.entry(image.clone()).or_default().insert(i.id.clone());
            }
        }
        Ok(used)
    }
    async fn template_usage(&self, _: TemplateDepth) -> Result<HashMap<String, Vec<TemplateUse>>> {
        drop(self.check("DescribeLaunchTemplates")?);
        Ok(HashMap::new())
    }
    async fn image_references(
        &self,
        ids: &[String],
        _: TemplateDepth,
    ) -> Result<HashMap<String, BTreeSet<String>>> {
        let state = self.check("DescribeImageReferences")?;
        Ok(ids
            .iter()
            .filter_map(|id| Some((id.clone(), state.references.get(id)?.clone())))
            .collect())
    }
    async fn is_shared(&self, image_id: &str) -> Result<bool> {
        Ok(!self.launch_permissions(image_id).await?.is_empty())
    }
}

impl RestoreImages for FakeEc2 {
    async fn missing_snapshots(&self, snapshot_ids: &[String]) -> Result<Vec<String>> {
        let state = self.check("DescribeSnapshots")?;
        Ok(snapshot_ids
            .iter()
            .filter(|id| {
                let restored = format!("RestoreSnapshotFromRecycleBin {id}");
                !state.snapshots.iter().any(|(s, _)| &s.id == *id)
                    && !state.changes.contains(&restored)
            })
            .cloned()
            .collect())
    }
    async fn registered(&self, image_id: &str) -> Result<Option<Image>> {
        let state = self.check("DescribeImages")?;
        Ok(state.images.iter().find(|i| i.id == image_id).cloned())
    }
    async fn images_in_bin(&self, ids: &[String]) -> Result<Vec<BinImage>> {
        let state = self.check("ListImagesInRecycleBin")?;
        Ok(state
            .bin_images
            .iter()
            .filter(|i| ids.contains(&i.id))
            .map(|i| BinImage {
                image_id: i.id.clone(),
                exit: None,
            })
            .collect())
    }
    async fn snapshots_in_bin(&self) -> Result<Vec<BinSnapshot>> {
        Ok(self
            .check("ListSnapshotsInRecycleBin")?
            .bin_snapshots
            .clone())
    }
    async fn restore_snapshot(&self, snapshot_id: &str) -> Result<String> {
        let mut state = self.check("RestoreSnapshotFromRecycleBin")?;
        state.bin_snapshots.retain(|s| s.snapshot_id != snapshot_id);
        state
            .changes
            .push(format!("RestoreSnapshotFromRecycleBin {snapshot_id}"));
        Ok(state
            .restored_snapshot_state
            .clone()
            .unwrap_or_else(|| "completed".into()))
    }
    async fn restore_image(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("RestoreImageFromRecycleBin")?;
        if let Some(at) = state.bin_images.iter().position(|i| i.id == image_id) {
            let image = state.bin_images.remove(at);
            state.images.push(image);
        }
        state
            .changes
            .push(format!("RestoreImageFromRecycleBin {image_id}"));
        Ok(())
    }
    async fn enable(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("EnableImage")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.state = ImageState::Available;
        }
        state.changes.push(format!("EnableImage {image_id}"));
        Ok(())
    }
    async fn cancel_deprecation(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("DisableImageDeprecation")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.deprecation_time = None;
        }
        state
            .changes
            .push(format!("DisableImageDeprecation {image_id}"));
        Ok(())
    }
}

impl RecoveryRules for FakeEc2 {
    async fn recycle_bin(&self) -> Result<RecycleBin> {
        Ok(self.check("ListRules")?.recycle_bin.clone())
    }
}

impl ConsumerUsage for FakeEc2 {
    async fn usage_reports(
        &self,
        image_ids: &[String],
    ) -> Result<HashMap<String, Vec<UsageReport>>> {
        let state = self.check("DescribeImageUsageReports")?;
        Ok(image_ids
            .iter()
            .map(|id| {
                let reports = state.usage_reports.get(id).cloned().unwrap_or_default();
                (id.clone(), reports)
            })
            .collect())
    }
    async fn pending_usage_reports(&self) -> Result<usize> {
        let state = self.check("DescribeImageUsageReports")?;
        let pending = state
            .usage_reports
            .values()
            .flatten()
            .filter(|r| r.state == ReportState::Pending);
        Ok(pending.count() + state.other_pending_reports)
    }
    async fn request_usage_report(
        &self,
        image_id: &str,
        token: &str,
        depth: TemplateDepth,
    ) -> Result<String> {
        let mut state = self.check("CreateImageUsageReport")?;
        if let Some(id) = state.tokens.get(token) {
            return Ok(id.clone());
        }
        state.next_id += 1;
        let id = format!("amiur-{:017x}", state.next_id);
        state.tokens.insert(token.to_string(), id.clone());
        state
            .usage_reports
            .entry(image_id.to_string())
            .or_default()
            .insert(
                0,
                UsageReport {
                    report_id: id.clone(),
                    state: ReportState::Pending,
                    created: Utc::now(),
                    accounts: BTreeMap::new(),
                    all_accounts: true,
                    resource_types: crate::domain::model::REPORT_RESOURCE_TYPES
                        .iter()
                        .map(|t| {
                            let templates = *t == "ec2:LaunchTemplate";
                            let depth = templates.then(|| depth.consumer_report_depth());
                            (t.to_string(), depth)
                        })
                        .collect(),
                },
            );
        state
            .changes
            .push(format!("CreateImageUsageReport {image_id}"));
        Ok(id)
    }
}

impl RetireImages for FakeEc2 {
    async fn deprecate(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut state = self.check("EnableImageDeprecation")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.deprecation_time = Some(at);
        }
        state
            .changes
            .push(format!("EnableImageDeprecation {image_id} {at}"));
        Ok(())
    }
    async fn disable(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("DisableImage")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.state = ImageState::Disabled;
        }
        state.changes.push(format!("DisableImage {image_id}"));
        Ok(())
    }
    async fn deregister(&self, image_id: &str) -> Result<Vec<String>> {
        let mut state = self.check("DeregisterImage")?;
        if let Some(code) = state.refused.get(image_id) {
            return Err(ec2_error("DeregisterImage", &self.region, code));
        }
        let Some(at) = state.images.iter().position(|i| i.id == image_id) else {
            return Err(ec2_error(
                "DeregisterImage",
                &self.region,
                "InvalidAMIID.NotFound",
            ));
        };
        let image = state.images.remove(at);
        state.changes.push(format!("DeregisterImage {image_id}"));
        // DeleteAssociatedSnapshots: a snapshot another AMI still uses is not deleted (EC2 API
        // reference, DeregisterImage).
        let deleted: Vec<String> = image
            .snapshot_ids
            .into_iter()
            .filter(|s| !state.images.iter().any(|i| i.snapshot_ids.contains(s)))
            .collect();
        state.snapshots.retain(|(s, _)| !deleted.contains(&s.id));
        Ok(deleted)
    }
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let mut state = self.check("DeleteSnapshot")?;
        state.snapshots.retain(|(s, _)| s.id != snapshot_id);
        state.changes.push(format!("DeleteSnapshot {snapshot_id}"));
        Ok(())
    }
    async fn protect(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("EnableImageDeregistrationProtection")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.deregistration_protection = true;
            i.tags
                .insert(tags::PROTECTED_BY.into(), tags::PROTECTED_BY_AGE_OUT.into());
        }
        state
            .changes
            .push(format!("EnableImageDeregistrationProtection {image_id}"));
        Ok(())
    }
    async fn unprotect(&self, image_id: &str) -> Result<()> {
        let mut state = self.check("DisableImageDeregistrationProtection")?;
        if let Some(i) = state.images.iter_mut().find(|i| i.id == image_id) {
            i.deregistration_protection = false;
            i.tags.remove(tags::PROTECTED_BY);
        }
        state
            .changes
            .push(format!("DisableImageDeregistrationProtection {image_id}"));
        Ok(())
    }
}

impl BuildImages for FakeEc2 {
    async fn instances_tagged(
        &self,
        wanted: &BTreeMap<String, TagPattern>,
    ) -> Result<Vec<InstanceInfo>> {
        let state = self.check("DescribeInstances")?;
        Ok(state
            .instances
            .iter()
            .filter(|i| matches!(i.state.as_str(), "running" | "stopped"))
            .filter(|i| {
                wanted
                    .iter()
                    .all(|(k, p)| i.tags.get(k).is_some_and(|v| p.matches(v)))
            })
            .cloned()
            .collect())
    }
    async fn instance(&self, id: &str) -> Result<Option<InstanceInfo>> {
        let state = self.check("DescribeInstances")?;
        Ok(state.instances.iter().find(|i| i.id == id).cloned())
    }
    async fn image_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let state = self.check("DescribeImages")?;
        Ok(state
            .images
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.id.clone()))
    }
    async fn image_tags(&self, id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let state = self.check("DescribeImages")?;
        Ok(state
            .images
            .iter()
            .find(|i| i.id == id)
            .map(|i| (&i.tags).into()))
    }
    async fn own_snapshot(&self, id: &str) -> Result<Option<String>> {
        let state = self.check("DescribeSnapshots")?;
        Ok(state
            .snapshots
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(_, st)| st.clone()))
    }
    async fn snapshot_tags(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let state = self.check("DescribeSnapshots")?;
        Ok(state
            .snapshots
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(s, _)| (&s.tags).into())
            .unwrap_or_default())
    }
    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        _: bool,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let mut state = self.check("CreateImage")?;
        if state.images.iter().any(|i| i.name == name) {
            return Err(ec2_error(
                "CreateImage",
                &self.region,
                "InvalidAMIName.Duplicate",
            ));
        }
        let id = FakeEc2::new_id(&mut state, "ami");
        let mut image = Image::new(&id, name, "111122223333", Utc::now());
        image.state = ImageState::Pending;
        image.tags = tags.clone().into();
        state.images.push(image);
        state.changes.push(format!("CreateImage {instance_id}"));
        Ok(id)
    }
    async fn register_image(&self, spec: &RegisterSpec) -> Result<String> {
        let mut state = self.check("RegisterImage")?;
        if state.images.iter().any(|i| i.name == spec.name) {
            return Err(ec2_error(
                "RegisterImage",
                &self.region,
                "InvalidAMIName.Duplicate",
            ));
        }
        let id = FakeEc2::new_id(&mut state, "ami");
        let mut image = Image::new(&id, &spec.name, "111122223333", Utc::now());
        image.tags = spec.tags.clone().into();
        image.snapshot_ids = vec![spec.snapshot_id.clone()];
        state.images.push(image);
        state
            .changes
            .push(format!("RegisterImage {}", spec.snapshot_id));
        Ok(id)
    }
}

impl Permissions for FakeEc2 {
    async fn launch_permissions(&self, image_id: &str) -> Result<BTreeSet<Grant>> {
        let mut state = self.check("DescribeImageAttribute")?;
        let changed = state.changes.len();
        state.attribute_reads.push(changed);
        Ok(state.launch.get(image_id).cloned().unwrap_or_default())
    }
    async fn mark_shared(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut state = self.check("CreateTags")?;
        let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for image in state.images.iter_mut().filter(|i| i.id == image_id) {
            image.tags.insert(tags::SHARED_AT.into(), when.clone());
        }
        state.changes.push(format!("CreateTags {image_id}"));
        Ok(())
    }
    async fn modify_launch_permissions(
        &self,
        image_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let mut state = self.check("ModifyImageAttribute")?;
        let public_refused = add.contains(&Grant::Public)
            && (state.block_public_access
                || state
                    .images
                    .iter()
                    .any(|i| i.id == image_id && (i.encrypted || i.has_product_codes)));
        if public_refused {
            return Err(ec2_error(
                "ModifyImageAttribute",
                &self.region,
                "OperationNotPermitted",
            ));
        }
        let grants = state.launch.entry(image_id.to_string()).or_default();
        grants.extend(add.iter().cloned());
        grants.retain(|g| !remove.contains(g));
        state.changes.push(format!(
            "ModifyImageAttribute {image_id} +{} -{}",
            add.len(),
            remove.len()
        ));
        Ok(())
    }
    async fn volume_permissions(&self, snapshot_id: &str) -> Result<BTreeSet<Grant>> {
        let state = self.check("DescribeSnapshotAttribute")?;
        Ok(state.volume.get(snapshot_id).cloned().unwrap_or_default())
    }
    async fn modify_volume_permissions(
        &self,
        snapshot_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let mut state = self.check("ModifySnapshotAttribute")?;
        let grants = state.volume.entry(snapshot_id.to_string()).or_default();
        grants.extend(add.iter().cloned());
        grants.retain(|g| !remove.contains(g));
        state
            .changes
            .push(format!("ModifySnapshotAttribute {snapshot_id}"));
        Ok(())
    }
    async fn snapshot_kms_keys(&self, snapshot_ids: &[String]) -> Result<Vec<String>> {
        let state = self.check("DescribeSnapshots")?;
        let keys: BTreeSet<String> = snapshot_ids
            .iter()
            .filter_map(|s| state.snapshot_keys.get(s).cloned())
            .collect();
        Ok(keys.into_iter().collect())
    }
    async fn image_block_public_access(&self) -> Result<bool> {
        let state = self.check("GetImageBlockPublicAccessState")?;
        Ok(state.block_public_access)
    }
}

impl CopyImages for FakeEc2 {
    async fn pending_images(&self) -> Result<usize> {
        let state = self.check("DescribeImages")?;
        Ok(state
            .images
            .iter()
            .filter(|i| i.state == ImageState::Pending)
            .count())
    }
    async fn copies_of(&self, source_image_id: &str) -> Result<Vec<CopyFound>> {
        let state = self.check("DescribeImages")?;
        Ok(state
            .images
            .iter()
            .filter(|i| i.tags.get(tags::SOURCE_IMAGE).map(String::as_str) == Some(source_image_id))
            .map(|i| CopyFound {
                image_id: i.id.clone(),
                state: i.state.clone(),
                state_reason: state.state_reasons.get(&i.id).cloned(),
                attempt: i
                    .tags
                    .get(tags::COPY_ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }
    async fn copy_image(
        &self,
        source_image_id: &str,
        _: &Region,
        name: &str,
        _: &CopyDestination,
        client_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let mut state = self.check("CopyImage")?;
        if let Some(id) = state.tokens.get(client_token) {
            return Ok(id.clone());
        }
        if state.images.iter().any(|i| i.name == name) {
            return Err(ec2_error(
                "CopyImage",
                &self.region,
                "InvalidAMIName.Duplicate",
            ));
        }
        let id = FakeEc2::new_id(&mut state, "ami");
        let mut image = Image::new(&id, name, "111122223333", Utc::now());
        image.state = ImageState::Pending;
        image.tags = tags.clone().into();
        state.images.push(image);
        state.tokens.insert(client_token.to_string(), id.clone());
        state.changes.push(format!("CopyImage {source_image_id}"));
        Ok(id)
    }
}

impl ValidateImages for FakeEc2 {
    async fn test_instances(&self) -> Result<Vec<TestInstance>> {
        let state = self.check("DescribeInstances")?;
        Ok(state.test_instances.clone())
    }

    async fn architectures(
        &self,
        instance_types: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        drop(self.check("DescribeInstanceTypes")?);
        // Graviton types (`t4g`, `m7g`, `c7gn`...) run arm64, the others x86_64, as EC2 says.
        Ok(instance_types
            .iter()
            .map(|t| {
                let family = t.split('.').next().unwrap_or_default();
                let graviton = family.len() > 2 && family[2..].starts_with('g');
                let arch = if graviton { "arm64" } else { "x86_64" };
                (t.clone(), vec![arch.to_string()])
            })
            .collect())
    }

    async fn inbound_rules(&self, group_ids: &[String]) -> Result<Vec<String>> {
        let state = self.check("DescribeSecurityGroups")?;
        Ok(group_ids
            .iter()
            .flat_map(|g| state.inbound.get(g).cloned().unwrap_or_default())
            .collect())
    }

    async fn console_output(&self, instance_id: &str) -> Result<String> {
        let state = self.check("GetConsoleOutput")?;
        if state.unreadable_consoles.contains(instance_id) {
            return Err(Error::Refused(format!(
                "GetConsoleOutput of {instance_id} failed (fake)"
            )));
        }
        Ok(state.consoles.get(instance_id).cloned().unwrap_or_default())
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<String> {
        let mut state = self.check("RunInstances")?;
        if let Some(id) = state.launch_tokens.get(&spec.client_token) {
            return Ok(id.clone());
        }
        let id = Self::new_id(&mut state, "i");
        state.test_instances.push(TestInstance {
            instance_id: id.clone(),
            image_id: spec.tags[tags::VALIDATES].clone(),
            policy: spec.tags.get(tags::POLICY).cloned(),
            state: "pending".into(),
            launched: Some(Utc::now()),
            system_status: None,
            instance_status: None,
            client_token: Some(spec.client_token.clone()),
            launched_from: Some(spec.image_id.clone()),
        });
        state
            .launch_tokens
            .insert(spec.client_token.clone(), id.clone());
        state
            .changes
            .push(format!("RunInstances {}", spec.image_id));
        Ok(id)
    }

    async fn terminate(&self, instance_id: &str) -> Result<()> {
        let mut state = self.check("TerminateInstances")?;
        for i in state
            .test_instances
            .iter_mut()
            .filter(|i| i.instance_id == instance_id)
        {
            i.state = "terminated".into();
        }
        state
            .changes
            .push(format!("TerminateInstances {instance_id}"));
        Ok(())
    }

    async fn tag_image(&self, image_id: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        let mut state = self.check("CreateTags")?;
        for image in state.images.iter_mut().filter(|i| i.id == image_id) {
            image.tags.extend(tags.clone());
        }
        state.changes.push(format!("CreateTags {image_id}"));
        Ok(())
    }

    async fn untag_image(&self, image_id: &str, keys: &[&str]) -> Result<()> {
        let mut state = self.check("DeleteTags")?;
        for image in state.images.iter_mut().filter(|i| i.id == image_id) {
            for key in keys {
                image.tags.remove(key);
            }
        }
        state.changes.push(format!("DeleteTags {image_id}"));
        Ok(())
    }
}

impl LaunchTemplates for FakeEc2 {
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<LaunchTemplateState>> {
        let state = self.check("DescribeLaunchTemplates")?;
        Ok(state
            .templates
            .iter()
            .find(|(t, _)| t.template_id == id_or_name || t.name == id_or_name)
            .map(|(t, versions)| {
                let mut t = t.clone();
                t.default_image = versions
                    .get((t.default_version - 1).max(0) as usize)
                    .cloned()
                    .flatten();
                t
            }))
    }

    async fn new_template_version(
        &self,
        template_id: &str,
        source_version: i64,
        image_id: &str,
        _description: &str,
        client_token: &str,
    ) -> Result<i64> {
        let mut state = self.check("CreateLaunchTemplateVersion")?;
        state
            .template_sources
            .push((template_id.to_string(), source_version));
        if let Some(v) = state.template_tokens.get(client_token) {
            return Ok(*v);
        }
        let (t, versions) = state
            .templates
            .iter_mut()
            .find(|(t, _)| t.template_id == template_id)
            .ok_or_else(|| {
                ec2_error(
                    "CreateLaunchTemplateVersion",
                    &self.region,
                    "InvalidLaunchTemplateId.NotFound",
                )
            })?;
        versions.push(Some(image_id.to_string()));
        t.latest_version = versions.len() as i64;
        t.latest_image = Some(image_id.to_string());
        let v = t.latest_version;
        state.template_tokens.insert(client_token.to_string(), v);
        state.changes.push(format!(
            "CreateLaunchTemplateVersion {template_id} {image_id}"
        ));
        Ok(v)
    }

    async fn set_default_version(&self, template_id: &str, version: i64) -> Result<()> {
        let mut state = self.check("ModifyLaunchTemplate")?;
        for (t, _) in state
            .templates
            .iter_mut()
            .filter(|(t, _)| t.template_id == template_id)
        {
            t.default_version = version;
            t.recorded_default = Some(version);
        }
        state
            .changes
            .push(format!("ModifyLaunchTemplate {template_id} {version}"));
        Ok(())
    }
}

impl Parameters for FakeEc2 {
    async fn parameter(&self, name: &str) -> Result<Option<StoredParameter>> {
        let state = self.check("GetParameter")?;
        Ok(state.parameters.get(name).map(|(v, _)| StoredParameter {
            value: v.clone(),
            kind: "String".into(),
            data_type: state
                .parameter_data_types
                .get(name)
                .cloned()
                .unwrap_or_else(|| StoredParameter::IMAGE_DATA_TYPE.into()),
        }))
    }

    async fn put_image_parameter(&self, name: &str, image_id: &str) -> Result<i64> {
        let mut state = self.check("PutParameter")?;
        let version = state.parameters.get(name).map_or(1, |(_, v)| v + 1);
        state
            .parameters
            .insert(name.to_string(), (image_id.to_string(), version));
        state
            .changes
            .push(format!("PutParameter {name} {image_id}"));
        Ok(version)
    }
}

/// KMS of the fake account: the keys listed are AWS managed.
#[derive(Debug, Clone, Default)]
pub struct FakeKeys {
    aws_managed: Arc<Mutex<HashSet<String>>>,
    /// Key → its grants.
    pub grants: Arc<Mutex<HashMap<String, Vec<KeyGrant>>>>,
    /// Key → its key policy (`{}` when not set).
    pub policies: Arc<Mutex<HashMap<String, String>>>,
}

impl FakeKeys {
    /// Marks a key AWS managed.
    pub fn aws_managed(&self, key: &str) {
        self.aws_managed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
    }
}

impl KeyInfo for FakeKeys {
    async fn is_aws_managed(&self, key_id: &str) -> Result<bool> {
        Ok(self
            .aws_managed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key_id))
    }

    async fn grants(&self, key_id: &str, prefix: &str) -> Result<Vec<KeyGrant>> {
        let grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        Ok(grants
            .get(key_id)
            .map(|g| {
                g.iter()
                    .filter(|g| g.name.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn create_grant(&self, key_id: &str, account: &str, name: &str) -> Result<String> {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let list = grants.entry(key_id.to_string()).or_default();
        if let Some(g) = list.iter().find(|g| g.name == name) {
            return Ok(g.grant_id.clone());
        }
        let id = format!("grant-{:04}", list.len() + 1);
        list.push(KeyGrant {
            grant_id: id.clone(),
            name: name.to_string(),
            grantee: format!("arn:aws:iam::{account}:root"),
        });
        Ok(id)
    }

    async fn retire_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = grants.get_mut(key_id) {
            list.retain(|g| g.grant_id != grant_id);
        }
        Ok(())
    }

    async fn key_policy(&self, key_id: &str) -> Result<String> {
        let policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        Ok(policies.get(key_id).cloned().unwrap_or_else(|| "{}".into()))
    }
}

/// A pacer that never waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPace;

impl Pace for NoPace {
    async fn take(&self) {}
}

/// The stack's seal in memory: a keyed hash of the message (SipHash with this fake's key), so
/// a test can seal a verdict as ami-publish does, and a seal over anything else never verifies.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeSeal {
    /// KMS does not answer: every check is an error.
    pub unavailable: bool,
}

impl FakeSeal {
    /// The seal of `message`, as [`Seal::seal`] makes it.
    pub fn of(message: &[u8]) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        "the fake stack key".hash(&mut h);
        message.hash(&mut h);
        format!("fake{:016x}", h.finish())
    }
}

impl Seal for FakeSeal {
    async fn seal(&self, message: Vec<u8>) -> Result<String> {
        Ok(FakeSeal::of(&message))
    }

    async fn verify(&self, message: Vec<u8>, seal: &str) -> Result<bool> {
        if self.unavailable {
            return Err(Error::Refused("KMS did not answer (fake)".into()));
        }
        Ok(FakeSeal::of(&message) == seal)
    }
}

/// The dead-man switch in memory: the schedules armed, by instance.
#[derive(Debug, Clone, Default)]
pub struct FakeDeadMan(
    pub Arc<Mutex<BTreeMap<String, DateTime<Utc>>>>,
    /// Scheduler refuses every schedule.
    pub Arc<std::sync::atomic::AtomicBool>,
);

impl DeadMan for FakeDeadMan {
    async fn arm(&self, instance_id: &str, at: DateTime<Utc>) -> Result<()> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Refused("CreateSchedule failed (fake)".into()));
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance_id.to_string(), at);
        Ok(())
    }

    async fn disarm(&self, instance_id: &str) -> Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance_id);
        Ok(())
    }
}

/// Events collected in memory.
#[derive(Debug, Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl EventSink for Recorder {
    async fn publish(&self, events: Vec<Event>) -> Published {
        let n = events.len();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
        Published {
            published: n,
            ..Published::default()
        }
    }
}

/// The fake account: EC2 and KMS of every region, created on first use.
#[derive(Debug, Default)]
pub struct FakeCloud {
    regions: Mutex<HashMap<Region, Arc<Mutex<RegionState>>>>,
    /// KMS (one for all regions).
    pub keys: FakeKeys,
    /// The stack's key cannot be used: every seal check fails.
    pub kms_unavailable: std::sync::atomic::AtomicBool,
    /// The dead-man schedules armed (every region).
    pub dead_man: FakeDeadMan,
}

impl FakeCloud {
    /// EC2 in `region` (the same state every time).
    pub fn region(&self, region: &str) -> FakeEc2 {
        let region: Region = region.parse().expect("a region");
        Cloud::ec2(self, &region)
    }
}

impl Cloud for FakeCloud {
    type Ec2 = FakeEc2;
    type Keys = FakeKeys;
    type Bin = FakeEc2;
    type Params = FakeEc2;
    type Pacer = NoPace;
    type Sealer = FakeSeal;
    type DeadMan = FakeDeadMan;

    fn parameters(&self, region: &Region) -> FakeEc2 {
        Cloud::ec2(self, region)
    }

    fn recycle_bin(&self, region: &Region) -> FakeEc2 {
        Cloud::ec2(self, region)
    }

    fn ec2(&self, region: &Region) -> FakeEc2 {
        let state = self
            .regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(region.clone())
            .or_default()
            .clone();
        FakeEc2 {
            region: region.clone(),
            state,
        }
    }

    fn keys(&self, _: &Region) -> FakeKeys {
        self.keys.clone()
    }

    fn pacer(&self) -> NoPace {
        NoPace
    }

    fn dead_man(&self, _: &Region) -> Option<FakeDeadMan> {
        Some(self.dead_man.clone())
    }

    fn sealer(&self) -> Option<FakeSeal> {
        Some(FakeSeal {
            unavailable: self
                .kms_unavailable
                .load(std::sync::atomic::Ordering::SeqCst),
        })
    }
}

/// A policy document from JSON, with public sharing allowed by the deployment.
pub fn document(json: &str) -> crate::domain::policy::PolicyDocument {
    crate::domain::policy::PolicyDocument::parse(
        json,
        crate::domain::policy::Deployment {
            allow_public_sharing: true,
            ..Default::default()
        },
    )
    .expect("a valid policy document")
}

/// A job's context over the fake account, without a deadline.
pub fn context<'a>(
    cloud: &'a FakeCloud,
    document: &'a crate::domain::policy::PolicyDocument,
) -> crate::jobs::Context<'a, FakeCloud> {
    crate::jobs::Context {
        cloud,
        document,
        limits: crate::jobs::Limits {
            concurrency: 4,
            allow_public_sharing: true,
            snapshot_price: 0.05,
            max_test_instances: 5,
        },
        deadline: crate::domain::deadline::Deadline::none(),
    }
}

/// An available AMI of the account managed by `policy` (by its tag).
pub fn managed_image(id: &str, name: &str, policy: &str) -> Image {
    let mut image = Image::new(id, name, "111122223333", Utc::now());
    image.tags.insert(tags::POLICY.into(), policy.into());
    image
}

/// An instance with tags.
pub fn instance(id: &str, state: &str, root: &str, with: &[(&str, &str)]) -> InstanceInfo {
    InstanceInfo {
        id: id.into(),
        state: state.into(),
        root_device_type: Some(root.into()),
        tags: with
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
