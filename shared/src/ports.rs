//! Ports: one narrow trait per capability the jobs act through. The adapters implement them
//! against AWS ([`crate::adapters`]); the unit tests implement them in memory
//! (`crate::tests::fakes`). A port speaks the domain's vocabulary only, never an SDK type, and
//! every implementation for one region answers in that region.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::event::{Event, Published};
use crate::domain::grant::Grant;
use crate::domain::ids::{AccountId, Region};
use crate::domain::model::{CopyFound, Image, InstanceInfo, Snapshot, TemplateUse, UsageReport};
use crate::domain::policy::{CopyDestination, TagPattern, TemplateDepth};
use crate::domain::recycle_bin::{BinImage, BinSnapshot, RecycleBin};
use crate::error::Result;

/// DescribeImageReferences takes 1 to 10 `ImageIds` per call (EC2 API reference, "Array
/// Members: Minimum number of 1 item. Maximum number of 10 items").
pub const IMAGE_REFERENCES_MAX_IDS: usize = 10;

/// DescribeImageUsageReports and DescribeImageUsageReportEntries take at most 200 `ImageIds` or
/// `ReportIds` per call (EC2 API reference).
pub const USAGE_REPORT_MAX_IDS: usize = 200;

/// A port bound to one region.
pub trait Regional {
    /// The region it answers in.
    fn region(&self) -> &Region;
}

/// Reads what the age-out planner needs from a region.
pub trait ImageInventory {
    /// The account's AMIs, disabled and deprecated included (all of them, or only `ids`).
    fn images(&self, ids: Option<&[String]>) -> impl Future<Output = Result<Vec<Image>>> + Send;
    /// The account's snapshots.
    fn snapshots(&self) -> impl Future<Output = Result<Vec<Snapshot>>> + Send;
    /// Image id → the instances that use it, in every state but terminated.
    fn instance_usage(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, BTreeSet<String>>>> + Send;
    /// Image id → the launch template versions that name it, down to `depth`.
    fn template_usage(
        &self,
        depth: TemplateDepth,
    ) -> impl Future<Output = Result<HashMap<String, Vec<TemplateUse>>>> + Send;
    /// References to at most [`IMAGE_REFERENCES_MAX_IDS`] images from DescribeImageReferences,
    /// with options that agree with [`ImageInventory::instance_usage`] and `depth`.
    fn image_references(
        &self,
        ids: &[String],
        depth: TemplateDepth,
    ) -> impl Future<Output = Result<HashMap<String, BTreeSet<String>>>> + Send;
    /// Whether an AMI is shared with any account, organization or OU (or public).
    fn is_shared(&self, image_id: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// Undoing age-out: the Recycle Bin's contents, restores, re-enabling, cancelling deprecation.
pub trait RestoreImages {
    /// The account's AMI with this id, if it is registered (any state).
    fn registered(&self, image_id: &str) -> impl Future<Output = Result<Option<Image>>> + Send;
    /// Which of these AMIs are in the Recycle Bin.
    fn images_in_bin(&self, ids: &[String]) -> impl Future<Output = Result<Vec<BinImage>>> + Send;
    /// Every snapshot in the Recycle Bin.
    fn snapshots_in_bin(&self) -> impl Future<Output = Result<Vec<BinSnapshot>>> + Send;
    /// RestoreSnapshotFromRecycleBin; returns the snapshot's state (`completed` once usable).
    fn restore_snapshot(&self, snapshot_id: &str) -> impl Future<Output = Result<String>> + Send;
    /// RestoreImageFromRecycleBin.
    fn restore_image(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// EnableImage.
    fn enable(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// DisableImageDeprecation.
    fn cancel_deprecation(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Which of these snapshots the account does not have (DescribeSnapshots, owner `self`,
    /// by the `snapshot-id` filter, so a missing one is left out rather than refused).
    fn missing_snapshots(
        &self,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// The Recycle Bin's retention rules of a region.
pub trait RecoveryRules {
    /// Every rule for AMIs and snapshots.
    fn recycle_bin(&self) -> impl Future<Output = Result<RecycleBin>> + Send;
}

/// EC2's AMI usage reports: which other accounts use the account's shared AMIs.
pub trait ConsumerUsage {
    /// Image id → the usage reports EC2 holds for it (every id of `image_ids`, at most
    /// [`USAGE_REPORT_MAX_IDS`], has an entry), newest first; an available report with the
    /// accounts that use the AMI.
    fn usage_reports(
        &self,
        image_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Vec<UsageReport>>>> + Send;
    /// How many of the account's usage reports in the region EC2 is still building (at most
    /// [`crate::domain::model::PENDING_REPORTS_QUOTA`] may be).
    fn pending_usage_reports(&self) -> impl Future<Output = Result<usize>> + Send;
    /// CreateImageUsageReport over instances, launch templates (down to `depth`) and Image
    /// Builder recipes in every account; the same `token` returns the same report. Returns the
    /// report id.
    fn request_usage_report(
        &self,
        image_id: &str,
        token: &str,
        depth: TemplateDepth,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// The changes age-out makes (and copy, to clear a failed copy).
pub trait RetireImages {
    /// EnableImageDeprecation at `at`.
    fn deprecate(
        &self,
        image_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// DisableImage.
    fn disable(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// DeregisterImage with DeleteAssociatedSnapshots; returns the snapshots EC2 deleted.
    fn deregister(&self, image_id: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// DeleteSnapshot.
    fn delete_snapshot(&self, snapshot_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Tags the AMI as protected by age-out, then EnableImageDeregistrationProtection with
    /// cooldown.
    fn protect(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// DisableImageDeregistrationProtection, then removes age-out's protection tag.
    fn unprotect(&self, image_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// What RegisterImage is called with.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterSpec {
    pub name: String,
    /// The root volume's snapshot.
    pub snapshot_id: String,
    /// `x86_64`, `arm64`, `i386`.
    pub architecture: &'static str,
    /// `legacy-bios`, `uefi`, `uefi-preferred`, or EC2's default.
    pub boot_mode: Option<&'static str>,
    pub ena_support: bool,
    pub root_device_name: String,
    /// The root volume type.
    pub volume_type: &'static str,
    /// Provisioned IOPS of the root volume (io1, io2, gp3).
    pub iops: Option<u32>,
    /// Delete the root volume with the instance.
    pub delete_on_termination: bool,
    /// Tags on the image.
    pub tags: BTreeMap<String, String>,
}

/// What the build reads and creates: instances and snapshots in, AMIs out.
pub trait BuildImages: Regional {
    /// Running and stopped instances carrying `tags`.
    fn instances_tagged(
        &self,
        tags: &BTreeMap<String, TagPattern>,
    ) -> impl Future<Output = Result<Vec<InstanceInfo>>> + Send;
    /// One instance, or none if it does not exist.
    fn instance(&self, id: &str) -> impl Future<Output = Result<Option<InstanceInfo>>> + Send;
    /// The account's AMI with this name, if any.
    fn image_id_by_name(&self, name: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The tags of one of the account's AMIs, or none if the account has no such AMI.
    fn image_tags(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>>> + Send;
    /// The state of one of the account's snapshots, or none when it does not exist or another
    /// account owns it.
    fn own_snapshot(&self, id: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The tags of a snapshot.
    fn snapshot_tags(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
    /// CreateImage, tagging the image and its snapshots; returns the image id.
    fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        no_reboot: bool,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String>> + Send;
    /// RegisterImage: an EBS-backed HVM AMI whose root volume is the snapshot.
    fn register_image(&self, spec: &RegisterSpec) -> impl Future<Output = Result<String>> + Send;
}

/// Launch permissions and snapshots' createVolumePermission.
pub trait Permissions: Regional {
    /// The AMI's launch permissions.
    fn launch_permissions(
        &self,
        image_id: &str,
    ) -> impl Future<Output = Result<BTreeSet<Grant>>> + Send;
    /// One change of launch permissions with exactly these additions and removals.
    fn modify_launch_permissions(
        &self,
        image_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> impl Future<Output = Result<()>> + Send;
    /// A snapshot's createVolumePermission (accounts, and `public`).
    fn volume_permissions(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<BTreeSet<Grant>>> + Send;
    /// One change of createVolumePermission with exactly these additions and removals.
    fn modify_volume_permissions(
        &self,
        snapshot_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The KMS keys that encrypt these snapshots.
    fn snapshot_kms_keys(
        &self,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Whether block public access for AMIs is on in the region.
    fn image_block_public_access(&self) -> impl Future<Output = Result<bool>> + Send;
    /// Marks the AMI as given to a new target at `at` ([`crate::domain::tags::SHARED_AT`]).
    fn mark_shared(
        &self,
        image_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Cross-region copies, seen from the destination region.
pub trait CopyImages: Regional {
    /// How many of the account's AMIs are pending in the region (copies in flight among them).
    fn pending_images(&self) -> impl Future<Output = Result<usize>> + Send;
    /// The account's copies of a source AMI in the region, in every state.
    fn copies_of(
        &self,
        source_image_id: &str,
    ) -> impl Future<Output = Result<Vec<CopyFound>>> + Send;
    /// CopyImage into the region; returns the copy's id.
    fn copy_image(
        &self,
        source_image_id: &str,
        source_region: &Region,
        name: &str,
        how: &CopyDestination,
        client_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// A test instance of the launch test, as DescribeInstances and DescribeInstanceStatus see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestInstance {
    pub instance_id: String,
    /// The AMI it tests (its `ami-automation:validates` tag).
    pub image_id: String,
    /// The policy it tests for (its `ami-automation:policy` tag).
    pub policy: Option<String>,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
    /// LaunchTime.
    pub launched: Option<DateTime<Utc>>,
    /// The system status check (`ok`, `impaired`, `initializing`, `insufficient-data`,
    /// `not-applicable`); none until EC2 reports one.
    pub system_status: Option<String>,
    /// The instance status check, the same values.
    pub instance_status: Option<String>,
    /// RunInstances' `ClientToken` (DescribeInstances returns it; nothing but RunInstances sets
    /// it): the proof that the stack launched it ([`crate::domain::seal::launch`]).
    pub client_token: Option<String>,
    /// The AMI it was launched from (DescribeInstances `ImageId`, which no tag can change).
    pub launched_from: Option<String>,
}

/// What RunInstances is called with for a launch test.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    /// The instance profile's name or ARN.
    pub instance_profile: Option<String>,
    /// RunInstances' idempotency token: the same token launches at most one instance. The
    /// attempt and the seal of [`crate::domain::seal::launch`], made when the instance is
    /// launched (empty in a plan).
    pub client_token: String,
    /// How long the instance may live at most: its test's timeout and a grace, after which its
    /// dead-man schedule terminates it whether or not the function runs.
    pub lifetime_minutes: u32,
    /// Which launch test of the AMI this is (1 for the first; the next after a test whose
    /// verdict the stack can no longer prove: EC2 would answer the old token with the old,
    /// terminated instance).
    pub attempt: u32,
    /// Tags on the instance and its volumes.
    pub tags: BTreeMap<String, String>,
}

/// The launch test's EC2 calls.
pub trait ValidateImages: Regional {
    /// The instances that carry `ami-automation:validates` (a terminated one as long as EC2
    /// still lists it), with their status checks.
    fn test_instances(&self) -> impl Future<Output = Result<Vec<TestInstance>>> + Send;
    /// The instance's boot console output (GetConsoleOutput, decoded); empty until there is one.
    fn console_output(&self, instance_id: &str) -> impl Future<Output = Result<String>> + Send;
    /// RunInstances of one instance; returns its id (the same for the same client token).
    fn launch(&self, spec: &LaunchSpec) -> impl Future<Output = Result<String>> + Send;
    /// The inbound rules of these security groups, each described (`sg-…: tcp 22 from
    /// 0.0.0.0/0`); empty when none of them lets anything in.
    fn inbound_rules(
        &self,
        group_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The architectures each of these instance types runs (DescribeInstanceTypes,
    /// `ProcessorInfo.SupportedArchitectures`).
    fn architectures(
        &self,
        instance_types: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Vec<String>>>> + Send;
    /// TerminateInstances of one test instance.
    fn terminate(&self, instance_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// CreateTags on one of the account's AMIs.
    fn tag_image(
        &self,
        image_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// DeleteTags of these keys (whatever their values) on one of the account's AMIs.
    fn untag_image(&self, image_id: &str, keys: &[&str])
        -> impl Future<Output = Result<()>> + Send;
}

/// A launch template as publishing sees it: its `$Latest` and `$Default` versions.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchTemplateState {
    /// `lt-...`.
    pub template_id: String,
    pub name: String,
    pub latest_version: i64,
    pub default_version: i64,
    /// The AMI of `$Latest` (none when it names none, or names it by an SSM parameter).
    pub latest_image: Option<String>,
    /// The AMI of `$Default`, as written.
    pub default_image: Option<String>,
    /// The default version the tool set last ([`crate::domain::tags::DEFAULT_VERSION`]).
    pub recorded_default: Option<i64>,
    /// The template's team opted it in ([`crate::domain::tags::PUBLISH_OPT_IN`]).
    pub opted_in: bool,
}

/// Launch templates, for publishing.
pub trait LaunchTemplates: Regional {
    /// The template with this id or name in the region, or none when there is none.
    /// `latest_image` is what `$Latest` names, as written (`resolve:ssm:...` when it names
    /// its AMI through an SSM parameter).
    fn launch_template(
        &self,
        id_or_name: &str,
    ) -> impl Future<Output = Result<Option<LaunchTemplateState>>> + Send;
    /// CreateLaunchTemplateVersion from `source_version` with only the AMI changed (its
    /// snapshot-backed block device mappings included again: EC2 drops the snapshots a new
    /// version inherits); returns the new version number (the same for the same client token).
    fn new_template_version(
        &self,
        template_id: &str,
        source_version: i64,
        image_id: &str,
        description: &str,
        client_token: &str,
    ) -> impl Future<Output = Result<i64>> + Send;
    /// ModifyLaunchTemplate: make `version` the default, and record it as the one the tool set
    /// ([`crate::domain::tags::DEFAULT_VERSION`]).
    fn set_default_version(
        &self,
        template_id: &str,
        version: i64,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// An SSM parameter as GetParameter answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredParameter {
    pub value: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// `text`, `aws:ec2:image`, ...
    pub data_type: String,
}

impl StoredParameter {
    /// The data type publishing writes: SSM never changes a parameter to or from it (SSM User
    /// Guide, "Parameter data types in Parameter Store").
    pub const IMAGE_DATA_TYPE: &'static str = "aws:ec2:image";

    /// Whether publishing can write it: a `String` of data type `aws:ec2:image`.
    pub fn holds_images(&self) -> bool {
        self.kind == "String" && self.data_type == Self::IMAGE_DATA_TYPE
    }
}

/// SSM's refusal of an update while it validates the one before (PutParameter,
/// `TooManyUpdates`: "There are concurrent updates for a resource that supports one update at a
/// time"): an `aws:ec2:image` value is validated asynchronously; the next sweep writes again.
pub const PARAMETER_VALIDATING: &str = "TooManyUpdates";

/// SSM parameters, for publishing.
pub trait Parameters: Regional {
    /// The parameter as GetParameter answers it (its validated version), or none when it does
    /// not exist.
    fn parameter(&self, name: &str)
        -> impl Future<Output = Result<Option<StoredParameter>>> + Send;
    /// PutParameter: a String of data type `aws:ec2:image`, overwriting; returns its version.
    fn put_image_parameter(
        &self,
        name: &str,
        image_id: &str,
    ) -> impl Future<Output = Result<i64>> + Send;
}

/// What the share needs to know of a KMS key, and the grants it gives target accounts.
pub trait KeyInfo {
    /// Whether the key is an AWS managed key (AMIs encrypted with one cannot be shared).
    fn is_aws_managed(&self, key_id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// The key's grants whose name starts with `prefix` (ListGrants, every page).
    fn grants(
        &self,
        key_id: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<KeyGrant>>> + Send;
    /// CreateGrant to the account's root with the operations launching an encrypted AMI needs;
    /// the same `name` with the same parameters returns the same grant. Returns its id.
    fn create_grant(
        &self,
        key_id: &str,
        account: &str,
        name: &str,
    ) -> impl Future<Output = Result<String>> + Send;
    /// RetireGrant by key and grant id (the key's own account may retire any of its grants).
    fn retire_grant(&self, key_id: &str, grant_id: &str)
        -> impl Future<Output = Result<()>> + Send;
    /// The key policy (GetKeyPolicy `default`), as JSON text.
    fn key_policy(&self, key_id: &str) -> impl Future<Output = Result<String>> + Send;
}

/// A grant on a KMS key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub grant_id: String,
    pub name: String,
    /// The grantee principal (an account root ARN for the share's grants).
    pub grantee: String,
}

/// Seals what the stack makes, and checks what claims to be the stack's
/// ([`crate::domain::seal`]), with a key only the stack's roles may use.
pub trait Seal {
    /// The seal of `message` (base64).
    fn seal(&self, message: Vec<u8>) -> impl Future<Output = Result<String>> + Send;
    /// Whether `seal` is the seal of `message`: false for any other seal, malformed ones too.
    fn verify(&self, message: Vec<u8>, seal: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// A bound on a test instance's life that holds whether or not the function runs: armed at
/// launch, it terminates the instance at its deadline; removed once the verdict is in.
pub trait DeadMan {
    /// Terminate `instance_id` at `at` (armed already: done).
    fn arm(&self, instance_id: &str, at: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    /// No longer (gone already: done).
    fn disarm(&self, instance_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Somewhere events go.
pub trait EventSink {
    /// Publishes the events; entries that fail are retried, then reported, never dropped silently.
    fn publish(&self, events: Vec<Event>) -> impl Future<Output = Published> + Send;
}

/// EventBridge's PutEvents, with its own retries of the entries it did not take.
pub trait EventBus {
    /// Publishes the events: how many EventBridge took, and those it did not, each with why.
    fn send(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = (usize, Vec<(Event, String)>)> + Send;
}

/// An event an earlier run could not publish, waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedEvent {
    /// What removes it from the outbox once sent (SQS's receipt handle).
    pub receipt: String,
    pub event: Event,
}

/// Where events EventBridge did not take wait for the next run (an SQS queue whose messages
/// are sent again once, then go to the failure queue).
pub trait Outbox {
    /// Keeps one event for the next run.
    fn park(&self, event: &Event) -> impl Future<Output = Result<()>> + Send;
    /// Up to 10 parked events, each hidden from other runs while this one sends it.
    fn parked(&self) -> impl Future<Output = Result<Vec<ParkedEvent>>> + Send;
    /// Removes a parked event once EventBridge took it.
    fn done(&self, receipt: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Pacing of mutating calls, so that a run stays within EC2's request buckets.
pub trait Pace {
    /// Waits until the next mutating call may start.
    fn take(&self) -> impl Future<Output = ()> + Send;

    /// How many mutating calls may start within `window` at most (`None`: no bound).
    fn capacity(&self, _window: std::time::Duration) -> Option<usize> {
        None
    }
}

/// Every port, for any region: what a job is given to run.
pub trait Cloud: Sync {
    /// EC2 in one region.
    type Ec2: ImageInventory
        + ConsumerUsage
        + RestoreImages
        + RetireImages
        + BuildImages
        + Permissions
        + CopyImages
        + ValidateImages
        + LaunchTemplates
        + Clone
        + Send
        + Sync;
    /// SSM parameters in one region.
    type Params: Parameters + Send + Sync;
    /// KMS in one region.
    type Keys: KeyInfo + Send + Sync;
    /// The Recycle Bin in one region.
    type Bin: RecoveryRules + Send + Sync;
    /// A pacer of mutating calls.
    type Pacer: Pace + Send + Sync;
    /// The stack's seal.
    type Sealer: Seal + Send + Sync;
    /// The launch tests' dead-man switch in one region.
    type DeadMan: DeadMan + Send + Sync;
    /// EC2 in `region`.
    fn ec2(&self, region: &Region) -> Self::Ec2;
    /// KMS in `region`.
    fn keys(&self, region: &Region) -> Self::Keys;
    /// The Recycle Bin in `region`.
    fn recycle_bin(&self, region: &Region) -> Self::Bin;
    /// SSM parameters in `region`.
    fn parameters(&self, region: &Region) -> Self::Params;
    /// A new pacer (EC2's buckets are per region: one per region's run).
    fn pacer(&self) -> Self::Pacer;
    /// The stack's seal, when the deployment names its key (without one nothing sealed is made
    /// or accepted).
    fn sealer(&self) -> Option<Self::Sealer>;
    /// The launch tests' dead-man switch in `region`, when the deployment names its role
    /// (without one no test instance is launched).
    fn dead_man(&self, region: &Region) -> Option<Self::DeadMan>;
}

/// Other accounts: the role the stack assumes in each (`sts:AssumeRole` with the deployment's
/// ExternalId), and the units of work a sweep queues, one per account and region.
pub trait Accounts {
    /// One target account, through its role.
    type Target: TargetAccount + Send + Sync;
    /// Assumes the target role in `account`; the error says why not (no role, denied, ...).
    fn assume(&self, account: &AccountId) -> impl Future<Output = Result<Self::Target>> + Send;
    /// The active accounts directly in an organizational unit (Organizations
    /// ListAccountsForParent, every page).
    fn accounts_in(&self, ou_id: &str) -> impl Future<Output = Result<Vec<AccountId>>> + Send;
    /// The id of the OU (or root) an account is directly in now (Organizations ListParents);
    /// none when the organization has no such account.
    fn parent_of(&self, account: &AccountId)
        -> impl Future<Output = Result<Option<String>>> + Send;
    /// Queues units of work (their bodies), at most 10 a call; the bodies SQS refused.
    fn queue_units(&self, bodies: Vec<String>) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// A target account seen through the role the stack assumed there.
pub trait TargetAccount {
    /// EC2 of the target account in one region.
    type Ec2: ImageInventory + CopyImages + RetireImages + LaunchTemplates + Clone + Send + Sync;
    /// SSM parameters of the target account in one region.
    type Params: Parameters + Send + Sync;
    /// EC2 in `region`.
    fn ec2(&self, region: &Region) -> Self::Ec2;
    /// SSM parameters in `region`.
    fn parameters(&self, region: &Region) -> Self::Params;
}
