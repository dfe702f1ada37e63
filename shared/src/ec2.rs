//! The EC2 adapter: owns an `aws_sdk_ec2::Client` for one region and turns its pages into the
//! plain data of [`crate::model`]. Scans follow every page; errors keep their EC2 error code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, Filter, ImageAttributeName,
    LaunchPermission, LaunchPermissionModifications, PermissionGroup, ResourceType,
    SnapshotAttributeName, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::ids::Region;
use crate::model::{Image, ImageState, Snapshot, TemplateUse};
use crate::policy::{TagPattern, TemplateDepth};
use crate::share::Grant;

fn grant_of(p: &LaunchPermission) -> Option<Grant> {
    if let Some(u) = &p.user_id {
        return Some(Grant::Account(u.clone()));
    }
    if let Some(o) = &p.organization_arn {
        return Some(Grant::Organization(o.clone()));
    }
    if let Some(o) = &p.organizational_unit_arn {
        return Some(Grant::OrganizationalUnit(o.clone()));
    }
    (p.group.as_ref().map(|g| g.as_str()) == Some("all")).then_some(Grant::Public)
}

fn launch_permission(g: &Grant) -> LaunchPermission {
    match g {
        Grant::Account(a) => LaunchPermission::builder().user_id(a).build(),
        Grant::Organization(o) => LaunchPermission::builder().organization_arn(o).build(),
        Grant::OrganizationalUnit(o) => LaunchPermission::builder()
            .organizational_unit_arn(o)
            .build(),
        Grant::Public => LaunchPermission::builder()
            .group(PermissionGroup::All)
            .build(),
    }
}

/// An instance, as the build function sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    /// `i-...`.
    pub id: String,
    /// `running`, `stopped`, ...
    pub state: String,
    /// `ebs` or `instance-store`.
    pub root_device_type: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A copy of a source AMI found in a destination region.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFound {
    /// The copy.
    pub image_id: String,
    /// Its state (`failed` when CopyImage failed after it was accepted).
    pub state: ImageState,
    /// EC2's StateReason message, for a failed copy.
    pub state_reason: Option<String>,
    /// Which attempt made it (its attempt tag; 1 when absent).
    pub attempt: u32,
}

/// What RegisterImage is called with.
#[derive(Debug, Clone)]
pub struct RegisterSpec<'a> {
    /// The AMI name.
    pub name: &'a str,
    /// The root volume's snapshot.
    pub snapshot_id: &'a str,
    /// `x86_64`, `arm64`, `i386`.
    pub architecture: &'a str,
    /// `legacy-bios`, `uefi`, `uefi-preferred`, or EC2's default.
    pub boot_mode: Option<&'a str>,
    /// ENA support.
    pub ena_support: bool,
    /// The root device name.
    pub root_device_name: &'a str,
    /// The root volume type.
    pub volume_type: &'a str,
    /// Provisioned IOPS of the root volume (io1, io2, gp3).
    pub iops: Option<u32>,
    /// Delete the root volume with the instance.
    pub delete_on_termination: bool,
    /// Tags on the image.
    pub tags: &'a BTreeMap<String, String>,
}

/// A look-up of one resource by id: "not found" and a malformed id both mean there is none.
fn absent<T>(found: Result<Option<T>>) -> Result<Option<T>> {
    match found {
        Err(e) if e.is_not_found() || e.code().is_some_and(|c| c.ends_with(".Malformed")) => {
            Ok(None)
        }
        other => other,
    }
}

fn instance_info(i: &aws_sdk_ec2::types::Instance) -> Option<InstanceInfo> {
    Some(InstanceInfo {
        id: i.instance_id.clone()?,
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        root_device_type: i.root_device_type().map(|r| r.as_str().to_string()),
        tags: tags_of(i.tags()),
    })
}

/// Page size of the scans: DescribeImages and DescribeSnapshots take at most 1000.
pub const PAGE_SIZE: i32 = 1000;

/// DescribeImageReferences takes 1 to 10 `ImageIds` per call (EC2 API reference, "Array
/// Members: Minimum number of 1 item. Maximum number of 10 items").
pub const IMAGE_REFERENCES_MAX_IDS: usize = 10;

/// The instance states that make an AMI "in use": every state but terminated. The same list
/// goes to DescribeInstances and to DescribeImageReferences' `state-name` option, so both
/// checks agree (DescribeImageReferences' default is every state, terminated included).
pub const IN_USE_INSTANCE_STATES: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];

/// DescribeImageReferences' `version-depth` for a launch template depth (1 to 10000; EC2's
/// default is 10). `$Default` is always read by the function's own launch template scan.
pub fn reference_version_depth(depth: TemplateDepth) -> u32 {
    match depth {
        TemplateDepth::All => 10_000,
        TemplateDepth::DefaultAndLatest => 1,
        TemplateDepth::Newest(n) => n.clamp(1, 10_000),
    }
}

/// EC2 in one region.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    region: Region,
    page_size: i32,
}

/// Reads what the planners need from a region.
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

/// The changes age-out makes.
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
}

impl Ec2 {
    /// An adapter over a client configured for `region`.
    pub fn new(client: Client, region: Region) -> Self {
        Ec2 {
            client,
            region,
            page_size: PAGE_SIZE,
        }
    }

    /// The same adapter with a smaller scan page (5 to 1000), to prove the scans follow pages.
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size.clamp(5, PAGE_SIZE);
        self
    }

    /// The region this adapter works in.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The SDK client (for calls the adapter does not wrap, such as test set-up).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err<E>(&self, operation: &'static str) -> impl FnOnce(E) -> Error + '_
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |e| Error::aws(operation, self.region.as_str(), e)
    }

    /// Running and stopped instances carrying `tags` (EC2 filters, every page).
    pub async fn instances_tagged(
        &self,
        tags: &BTreeMap<String, TagPattern>,
    ) -> Result<Vec<InstanceInfo>> {
        let mut request = self.client.describe_instances().filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("stopped")
                .build(),
        );
        for (key, pattern) in tags {
            request = request.filters(match pattern {
                TagPattern::Any => Filter::builder().name("tag-key").values(key).build(),
                TagPattern::Prefix(p) => Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(format!("{p}*"))
                    .build(),
                TagPattern::Exact(v) => Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(v)
                    .build(),
            });
        }
        let mut pages = request.max_results(self.page_size).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeInstances"))?;
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(instance_info),
            );
        }
        // Filters on tags take `*` as a wildcard: check the patterns exactly.
        out.retain(|i| {
            tags.iter()
                .all(|(k, p)| i.tags.get(k).is_some_and(|v| p.matches(v)))
        });
        Ok(out)
    }

    /// One instance, or none if it does not exist.
    pub async fn instance(&self, id: &str) -> Result<Option<InstanceInfo>> {
        let found = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeInstances"))
            .map(|out| {
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(instance_info)
            });
        absent(found)
    }

    /// The account's AMI with this name, if any.
    pub async fn image_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out.images().iter().find_map(|i| i.image_id.clone()))
    }

    /// The tags of one of the account's AMIs, or none if the account has no such AMI.
    pub async fn image_tags(&self, id: &str) -> Result<Option<BTreeMap<String, String>>> {
        let found = self
            .client
            .describe_images()
            .owners("self")
            .image_ids(id)
            .include_disabled(true)
            .send()
            .await
            .map_err(self.err("DescribeImages"))
            .map(|out| out.images().first().map(|i| tags_of(i.tags())));
        absent(found)
    }

    /// The state of one of the account's snapshots, or none when it does not exist or another
    /// account owns it.
    pub async fn own_snapshot(&self, id: &str) -> Result<Option<String>> {
        let found = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .snapshot_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))
            .map(|out| {
                out.snapshots()
                    .first()
                    .and_then(|s| s.state())
                    .map(|s| s.as_str().to_string())
            });
        absent(found)
    }

    /// The tags of a snapshot.
    pub async fn snapshot_tags(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let out = self
            .client
            .describe_snapshots()
            .snapshot_ids(id)
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))?;
        Ok(out
            .snapshots()
            .first()
            .map(|s| tags_of(s.tags()))
            .unwrap_or_default())
    }

    /// RegisterImage: an EBS-backed HVM AMI whose root volume is the snapshot.
    pub async fn register_image(&self, spec: &RegisterSpec<'_>) -> Result<String> {
        use aws_sdk_ec2::types::{
            ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, VolumeType,
        };
        let root = BlockDeviceMapping::builder()
            .device_name(spec.root_device_name)
            .ebs(
                EbsBlockDevice::builder()
                    .snapshot_id(spec.snapshot_id)
                    .delete_on_termination(spec.delete_on_termination)
                    .volume_type(VolumeType::from(spec.volume_type))
                    .set_iops(spec.iops.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                    .build(),
            )
            .build();
        let mut request = self
            .client
            .register_image()
            .name(spec.name)
            .architecture(ArchitectureValues::from(spec.architecture))
            .virtualization_type("hvm")
            .ena_support(spec.ena_support)
            .root_device_name(spec.root_device_name)
            .block_device_mappings(root)
            .tag_specifications(tag_spec(ResourceType::Image, spec.tags));
        if let Some(mode) = spec.boot_mode {
            request = request.boot_mode(BootModeValues::from(mode));
        }
        let out = request.send().await.map_err(self.err("RegisterImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!(
                "RegisterImage of {} returned no image id",
                spec.snapshot_id
            ))
        })
    }

    /// Whether block public access for AMIs is on in this region
    /// (GetImageBlockPublicAccessState: `block-new-sharing`; `unblocked` otherwise).
    pub async fn image_block_public_access(&self) -> Result<bool> {
        let out = self
            .client
            .get_image_block_public_access_state()
            .send()
            .await
            .map_err(self.err("GetImageBlockPublicAccessState"))?;
        Ok(out.image_block_public_access_state() != Some("unblocked"))
    }

    /// The AMI's launch permissions (DescribeImageAttribute `launchPermission`).
    pub async fn launch_permissions(
        &self,
        image_id: &str,
    ) -> Result<std::collections::BTreeSet<Grant>> {
        let out = self
            .client
            .describe_image_attribute()
            .image_id(image_id)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .map_err(self.err("DescribeImageAttribute"))?;
        Ok(out
            .launch_permissions()
            .iter()
            .filter_map(grant_of)
            .collect())
    }

    /// One ModifyImageAttribute with exactly these additions and removals.
    pub async fn modify_launch_permissions(
        &self,
        image_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let changes = LaunchPermissionModifications::builder()
            .set_add(Some(add.iter().map(launch_permission).collect()))
            .set_remove(Some(remove.iter().map(launch_permission).collect()))
            .build();
        self.client
            .modify_image_attribute()
            .image_id(image_id)
            .launch_permission(changes)
            .send()
            .await
            .map_err(self.err("ModifyImageAttribute"))?;
        Ok(())
    }

    /// A snapshot's createVolumePermission (accounts, and `public` for group `all`).
    pub async fn volume_permissions(
        &self,
        snapshot_id: &str,
    ) -> Result<std::collections::BTreeSet<Grant>> {
        let out = self
            .client
            .describe_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .attribute(SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .map_err(self.err("DescribeSnapshotAttribute"))?;
        Ok(out
            .create_volume_permissions()
            .iter()
            .filter_map(|p| match (&p.user_id, &p.group) {
                (Some(u), _) => Some(Grant::Account(u.clone())),
                (None, Some(g)) if g.as_str() == "all" => Some(Grant::Public),
                _ => None,
            })
            .collect())
    }

    /// One ModifySnapshotAttribute with exactly these createVolumePermission changes.
    pub async fn modify_volume_permissions(
        &self,
        snapshot_id: &str,
        add: &[Grant],
        remove: &[Grant],
    ) -> Result<()> {
        let volume = |g: &Grant| match g {
            Grant::Public => Some(
                CreateVolumePermission::builder()
                    .group(PermissionGroup::All)
                    .build(),
            ),
            Grant::Account(a) => Some(CreateVolumePermission::builder().user_id(a).build()),
            _ => None,
        };
        let changes = CreateVolumePermissionModifications::builder()
            .set_add(Some(add.iter().filter_map(volume).collect()))
            .set_remove(Some(remove.iter().filter_map(volume).collect()))
            .build();
        self.client
            .modify_snapshot_attribute()
            .snapshot_id(snapshot_id)
            .create_volume_permission(changes)
            .send()
            .await
            .map_err(self.err("ModifySnapshotAttribute"))?;
        Ok(())
    }

    /// The KMS keys that encrypt these snapshots.
    pub async fn snapshot_kms_keys(&self, snapshot_ids: &[String]) -> Result<Vec<String>> {
        if snapshot_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_snapshots()
            .set_snapshot_ids(Some(snapshot_ids.to_vec()))
            .send()
            .await
            .map_err(self.err("DescribeSnapshots"))?;
        let mut keys: Vec<String> = out
            .snapshots()
            .iter()
            .filter_map(|s| s.kms_key_id.clone())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// How many of the account's AMIs are pending in this region (copies in flight among them).
    pub async fn pending_images(&self) -> Result<usize> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("state").values("pending").build())
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out.images().len())
    }

    /// The account's copies of `source_image_id` in this region (found by their lineage tag),
    /// in every state: a copy can fail after CopyImage accepted it.
    pub async fn copies_of(&self, source_image_id: &str) -> Result<Vec<CopyFound>> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", crate::copy::SOURCE_IMAGE_TAG))
                    .values(source_image_id)
                    .build(),
            )
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        Ok(out
            .images()
            .iter()
            .filter_map(|i| {
                Some(CopyFound {
                    image_id: i.image_id.clone()?,
                    state: ImageState::from_ec2(i.state().map(|s| s.as_str()).unwrap_or("unknown")),
                    state_reason: i
                        .state_reason()
                        .and_then(|r| r.message().map(str::to_string)),
                    attempt: tags_of(i.tags())
                        .get(crate::copy::ATTEMPT_TAG)
                        .and_then(|a| a.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    /// CopyImage into this (the destination) region; returns the copy's id.
    pub async fn copy_image(
        &self,
        source_image_id: &str,
        source_region: &Region,
        name: &str,
        how: &crate::policy::CopyDestination,
        client_token: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let mut request = self
            .client
            .copy_image()
            .source_image_id(source_image_id)
            .source_region(source_region.as_str())
            .name(name)
            .description(format!("Copy of {source_image_id} from {source_region}"))
            .client_token(client_token)
            .tag_specifications(tag_spec(ResourceType::Image, tags))
            .tag_specifications(tag_spec(ResourceType::Snapshot, tags));
        if how.encrypted {
            request = request.encrypted(true);
            if let Some(key) = &how.kms_key_id {
                request = request.kms_key_id(key);
            }
        }
        let out = request.send().await.map_err(self.err("CopyImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!(
                "CopyImage of {source_image_id} returned no image id"
            ))
        })
    }

    /// CreateImage with TagSpecifications on the image and its snapshots; returns the image id.
    pub async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        no_reboot: bool,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let out = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .no_reboot(no_reboot)
            .tag_specifications(tag_spec(ResourceType::Image, tags))
            .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(self.err("CreateImage"))?;
        out.image_id.ok_or_else(|| {
            Error::Refused(format!("CreateImage of {instance_id} returned no image id"))
        })
    }
}

/// A TagSpecification for one resource type.
pub fn tag_spec(resource: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

fn time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn smithy_time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Converts DescribeImages' image into the model.
pub fn image_from_sdk(i: &aws_sdk_ec2::types::Image) -> Option<Image> {
    Some(Image {
        id: i.image_id.clone()?,
        name: i.name.clone().unwrap_or_default(),
        owner_id: i.owner_id.clone().unwrap_or_default(),
        created: time(i.creation_date()),
        state: ImageState::from_ec2(i.state().map(|s| s.as_str()).unwrap_or("unknown")),
        tags: tags_of(i.tags()),
        snapshot_ids: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs.as_ref()?.snapshot_id.clone())
            .collect(),
        architecture: i.architecture().map(|a| a.as_str().to_string()),
        platform: i.platform().map(|p| p.as_str().to_string()),
        root_device_type: i.root_device_type().map(|r| r.as_str().to_string()),
        virtualization_type: i.virtualization_type().map(|v| v.as_str().to_string()),
        public: i.public.unwrap_or(false),
        has_product_codes: !i.product_codes().is_empty(),
        encrypted: i
            .block_device_mappings()
            .iter()
            .any(|m| m.ebs.as_ref().and_then(|e| e.encrypted) == Some(true)),
        deprecation_time: time(i.deprecation_time()),
        // "enabled", "enabled-with-cooldown", or "disabled-until <time>" while a cooldown runs.
        deregistration_protection: i
            .deregistration_protection()
            .is_some_and(|p| p.starts_with("enabled") || p.starts_with("disabled-until")),
        last_launched: time(i.last_launched_time()),
        shared: None,
    })
}

impl ImageInventory for Ec2 {
    async fn images(&self, ids: Option<&[String]>) -> Result<Vec<Image>> {
        let mut request = self
            .client
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .include_deprecated(true);
        request = match ids {
            // ImageIds and MaxResults cannot be combined.
            Some(ids) => request.set_image_ids(Some(ids.to_vec())),
            None => request.max_results(self.page_size),
        };
        let mut pages = request.into_paginator().send();
        let mut images = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeImages"))?;
            images.extend(page.images().iter().filter_map(image_from_sdk));
        }
        Ok(images)
    }

    async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .max_results(self.page_size)
            .into_paginator()
            .send();
        let mut snapshots = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeSnapshots"))?;
            snapshots.extend(page.snapshots().iter().filter_map(|s| {
                Some(Snapshot {
                    id: s.snapshot_id.clone()?,
                    owner_id: s.owner_id.clone().unwrap_or_default(),
                    description: s.description.clone().unwrap_or_default(),
                    started: smithy_time(s.start_time()),
                    tags: tags_of(s.tags()),
                })
            }));
        }
        Ok(snapshots)
    }

    async fn instance_usage(&self) -> Result<HashMap<String, BTreeSet<String>>> {
        let mut used: HashMap<String, BTreeSet<String>> = HashMap::new();
        // Every state but terminated: a stopped instance is started again from its volumes,
        // but its owner expects to relaunch it from the same AMI.
        let states = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(IN_USE_INSTANCE_STATES.map(String::from).to_vec()))
            .build();
        let mut pages = self
            .client
            .describe_instances()
            .filters(states)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeInstances"))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(image), Some(id)) = (&instance.image_id, &instance.instance_id) {
                    used.entry(image.clone()).or_default().insert(id.clone());
                }
            }
        }
        Ok(used)
    }

    async fn template_usage(
        &self,
        depth: TemplateDepth,
    ) -> Result<HashMap<String, Vec<TemplateUse>>> {
        let mut templates = Vec::new();
        let mut pages = self
            .client
            .describe_launch_templates()
            .max_results(200)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeLaunchTemplates"))?;
            for t in page.launch_templates() {
                if let Some(id) = &t.launch_template_id {
                    let latest = t.latest_version_number.unwrap_or(1);
                    templates.push((
                        id.clone(),
                        latest,
                        t.default_version_number.unwrap_or(latest),
                    ));
                }
            }
        }
        let versions: Vec<Vec<(String, TemplateUse)>> = futures::stream::iter(templates)
            .map(|(id, latest, default)| self.template_images(id, latest, default, depth))
            .buffer_unordered(4)
            .try_collect()
            .await?;
        let mut used: HashMap<String, Vec<TemplateUse>> = HashMap::new();
        for (image, version) in versions.into_iter().flatten() {
            let uses = used.entry(image).or_default();
            if !uses.contains(&version) {
                uses.push(version);
            }
        }
        Ok(used)
    }

    async fn image_references(
        &self,
        ids: &[String],
        depth: TemplateDepth,
    ) -> Result<HashMap<String, BTreeSet<String>>> {
        use aws_sdk_ec2::types::{
            ImageReferenceOptionName, ImageReferenceResourceType as Type, ResourceTypeOption,
            ResourceTypeRequest,
        };
        let mut refs: HashMap<String, BTreeSet<String>> = HashMap::new();
        if ids.is_empty() {
            return Ok(refs);
        }
        if ids.len() > IMAGE_REFERENCES_MAX_IDS {
            return Err(Error::Refused(format!(
                "DescribeImageReferences takes at most {IMAGE_REFERENCES_MAX_IDS} image ids, not {}",
                ids.len()
            )));
        }
        let option = |name: ImageReferenceOptionName, values: Vec<String>| {
            ResourceTypeOption::builder()
                .option_name(name)
                .set_option_values(Some(values))
                .build()
        };
        // Every resource type EC2 checks, each with options that agree with the function's
        // own rules: instances in every state but terminated, launch templates to `depth`.
        let types = [
            ResourceTypeRequest::builder()
                .resource_type(Type::Ec2Instance)
                .resource_type_options(option(
                    ImageReferenceOptionName::StateName,
                    IN_USE_INSTANCE_STATES.map(String::from).to_vec(),
                ))
                .build(),
            ResourceTypeRequest::builder()
                .resource_type(Type::Ec2LaunchTemplate)
                .resource_type_options(option(
                    ImageReferenceOptionName::VersionDepth,
                    vec![reference_version_depth(depth).to_string()],
                ))
                .build(),
            ResourceTypeRequest::builder()
                .resource_type(Type::SsmParameter)
                .build(),
            ResourceTypeRequest::builder()
                .resource_type(Type::ImageBuilderImageRecipe)
                .build(),
            ResourceTypeRequest::builder()
                .resource_type(Type::ImageBuilderContainerRecipe)
                .build(),
        ];
        let mut pages = self
            .client
            .describe_image_references()
            .set_image_ids(Some(ids.to_vec()))
            .set_resource_types(Some(types.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeImageReferences"))?;
            for r in page.image_references() {
                if let (Some(image), Some(arn)) = (&r.image_id, &r.arn) {
                    refs.entry(image.clone()).or_default().insert(arn.clone());
                }
            }
        }
        Ok(refs)
    }

    async fn is_shared(&self, image_id: &str) -> Result<bool> {
        Ok(!self.launch_permissions(image_id).await?.is_empty())
    }
}

impl Ec2 {
    /// The images named by the versions of one launch template that count at `depth`.
    ///
    /// `ResolveAlias=true`: a version whose ImageId is `resolve:ssm:<parameter>` names the AMI
    /// behind the parameter (the default, false, would answer the alias and protect nothing).
    /// The newest N are read as a `MinVersion`/`MaxVersion` range, never as a list of version
    /// numbers: a deleted version inside the range is simply absent, where a listed one would
    /// fail the call (and the region's evidence).
    async fn template_images(
        &self,
        id: String,
        latest: i64,
        default: i64,
        depth: TemplateDepth,
    ) -> Result<Vec<(String, TemplateUse)>> {
        let base = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(&id)
            .resolve_alias(true);
        let requests = match depth {
            TemplateDepth::All => vec![base.max_results(200)],
            TemplateDepth::DefaultAndLatest => vec![base.versions("$Default").versions("$Latest")],
            TemplateDepth::Newest(n) => {
                // MinVersion is "the version number after which to describe": one before the
                // newest N (reading one version too many is harmless, the planner counts).
                let first = latest - i64::from(n);
                let mut range = base
                    .clone()
                    .max_version(latest.to_string())
                    .max_results(200);
                if first >= 1 {
                    range = range.min_version(first.to_string());
                }
                vec![base.versions("$Default"), range]
            }
        };
        let mut found = Vec::new();
        for request in requests {
            let mut pages = request.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.err("DescribeLaunchTemplateVersions"))?;
                for v in page.launch_template_versions() {
                    let Some(image) = v
                        .launch_template_data
                        .as_ref()
                        .and_then(|d| d.image_id.clone())
                    else {
                        continue;
                    };
                    let version = v.version_number.unwrap_or(0);
                    let used = TemplateUse {
                        template_id: id.clone(),
                        version,
                        is_default: v.default_version.unwrap_or(version == default),
                        newer_versions: (latest - version).max(0),
                    };
                    found.push((image, used));
                }
            }
        }
        Ok(found)
    }
}

impl RetireImages for Ec2 {
    async fn deprecate(&self, image_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.client
            .enable_image_deprecation()
            .image_id(image_id)
            .deprecate_at(aws_smithy_types::DateTime::from_secs(at.timestamp()))
            .send()
            .await
            .map_err(self.err("EnableImageDeprecation"))?;
        Ok(())
    }

    async fn disable(&self, image_id: &str) -> Result<()> {
        self.client
            .disable_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(self.err("DisableImage"))?;
        Ok(())
    }

    async fn deregister(&self, image_id: &str) -> Result<Vec<String>> {
        let out = self
            .client
            .deregister_image()
            .image_id(image_id)
            .delete_associated_snapshots(true)
            .send()
            .await
            .map_err(self.err("DeregisterImage"))?;
        Ok(out
            .delete_snapshot_results()
            .iter()
            .filter(|r| r.return_code().is_some_and(|c| c.as_str() == "success"))
            .filter_map(|r| r.snapshot_id.clone())
            .collect())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(self.err("DeleteSnapshot"))?;
        Ok(())
    }
}
