//! Launch templates, for publishing: DescribeLaunchTemplates (with the tag recording the default
//! the tool set last) and DescribeLaunchTemplateVersions (`$Latest`, `$Default`),
//! CreateLaunchTemplateVersion from a source version with only the AMI changed, and
//! ModifyLaunchTemplate for the default version.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMapping, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, RequestLaunchTemplateData,
};

use super::{absent, Ec2};
use crate::adapters::ec2::convert::tag_list;
use crate::domain::tags;
use crate::error::Result;
use crate::ports::{LaunchTemplateState, LaunchTemplates};

/// A mapping as CreateLaunchTemplateVersion takes it, from one a version holds; without its
/// snapshot when `drop_snapshot` (a snapshot of the AMI it replaces, or a device the new AMI
/// maps itself: the new AMI supplies those).
fn as_request(
    m: &LaunchTemplateBlockDeviceMapping,
    drop_snapshot: bool,
) -> LaunchTemplateBlockDeviceMappingRequest {
    let ebs = m.ebs().map(|e| {
        LaunchTemplateEbsBlockDeviceRequest::builder()
            .set_encrypted(e.encrypted())
            .set_delete_on_termination(e.delete_on_termination())
            .set_iops(e.iops())
            .set_kms_key_id(e.kms_key_id().map(str::to_string))
            .set_snapshot_id(
                e.snapshot_id()
                    .filter(|_| !drop_snapshot)
                    .map(str::to_string),
            )
            .set_volume_size(e.volume_size())
            .set_volume_type(e.volume_type().cloned())
            .set_throughput(e.throughput())
            .set_volume_initialization_rate(e.volume_initialization_rate())
            .set_ebs_card_index(e.ebs_card_index())
            .build()
    });
    LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(m.device_name().map(str::to_string))
        .set_virtual_name(m.virtual_name().map(str::to_string))
        .set_no_device(m.no_device().map(str::to_string))
        .set_ebs(ebs)
        .build()
}

impl Ec2 {
    /// An AMI's snapshots and the devices it maps (none for an id that is no AMI here, such as
    /// a `resolve:ssm:` alias).
    async fn mappings_of(&self, image_id: &str) -> Result<(Vec<String>, Vec<String>)> {
        if crate::domain::ids::check_resource_id("ami", image_id).is_err() {
            return Ok((Vec::new(), Vec::new()));
        }
        let out = self
            .client
            .describe_images()
            .image_ids(image_id)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let e = crate::error::Error::aws("DescribeImages", self.region.as_str(), e);
                if e.is_not_found() {
                    return Ok((Vec::new(), Vec::new()));
                }
                return Err(e);
            }
        };
        let mappings: Vec<_> = out
            .images()
            .iter()
            .flat_map(|i| i.block_device_mappings())
            .collect();
        let snapshots = mappings
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect();
        let devices = mappings
            .iter()
            .filter_map(|m| m.device_name().map(str::to_string))
            .collect();
        Ok((snapshots, devices))
    }
}

impl LaunchTemplates for Ec2 {
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<LaunchTemplateState>> {
        let is_id = crate::domain::ids::check_resource_id("lt", id_or_name).is_ok();
        let request = self.client.describe_launch_templates();
        let request = if is_id {
            request.launch_template_ids(id_or_name)
        } else {
            request.launch_template_names(id_or_name)
        };
        let found = request
            .send()
            .await
            .map_err(self.err("DescribeLaunchTemplates"))
            .map(|out| out.launch_templates().first().cloned());
        // An unknown name answers InvalidLaunchTemplateName.NotFoundException, an unknown id
        // InvalidLaunchTemplateId.NotFound.
        let found = match found {
            Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => Ok(None),
            other => absent(other),
        }?;
        let Some(template) = found else {
            return Ok(None);
        };
        let Some(template_id) = template.launch_template_id.clone() else {
            return Ok(None);
        };
        let versions = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(&template_id)
            .versions("$Latest")
            .versions("$Default")
            .send()
            .await
            .map_err(self.err("DescribeLaunchTemplateVersions"))?;
        let latest_version = template.latest_version_number.unwrap_or_default();
        let default_version = template.default_version_number.unwrap_or_default();
        let image_of = |number: i64| {
            versions
                .launch_template_versions()
                .iter()
                .find(|v| v.version_number == Some(number))
                .and_then(|v| v.launch_template_data())
                .and_then(|d| d.image_id.clone())
        };
        let recorded_default = template
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::DEFAULT_VERSION))
            .and_then(|t| t.value())
            .and_then(|v| v.parse().ok());
        let opted_in = template
            .tags()
            .iter()
            .any(|t| t.key() == Some(tags::PUBLISH_OPT_IN));
        Ok(Some(LaunchTemplateState {
            opted_in,
            name: template.launch_template_name.clone().unwrap_or_default(),
            latest_image: image_of(latest_version),
            default_image: image_of(default_version),
            latest_version,
            default_version,
            recorded_default,
            template_id,
        }))
    }

    async fn new_template_version(
        &self,
        template_id: &str,
        source_version: i64,
        image_id: &str,
        description: &str,
        client_token: &str,
    ) -> Result<i64> {
        // "Snapshots applied to the block device mapping are ignored when creating a new version
        // unless they are explicitly included" (CreateLaunchTemplateVersion): a source with a
        // snapshot-backed mapping has its mappings sent again, all of them (a list given
        // replaces the inherited one).
        let source = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .versions(source_version.to_string())
            .send()
            .await
            .map_err(self.err("DescribeLaunchTemplateVersions"))?;
        let source_data = source
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data());
        let mappings: Vec<LaunchTemplateBlockDeviceMapping> = source_data
            .map(|d| d.block_device_mappings().to_vec())
            .unwrap_or_default();
        let with_snapshots = mappings
            .iter()
            .any(|m| m.ebs().and_then(|e| e.snapshot_id()).is_some());
        let resent = if with_snapshots {
            // The snapshots of the AMI the version named, and the devices the new AMI maps,
            // come from the new AMI: only the consumers' own data snapshots are kept.
            let old_image = source_data.and_then(|d| d.image_id()).unwrap_or_default();
            let (old_snapshots, _) = self.mappings_of(old_image).await?;
            let (_, new_devices) = self.mappings_of(image_id).await?;
            Some(
                mappings
                    .iter()
                    .map(|m| {
                        let snapshot = m.ebs().and_then(|e| e.snapshot_id()).unwrap_or_default();
                        let device = m.device_name().unwrap_or_default();
                        let drop = old_snapshots.iter().any(|s| s == snapshot)
                            || new_devices.iter().any(|d| d == device);
                        as_request(m, drop)
                    })
                    .collect(),
            )
        } else {
            None
        };
        let data = RequestLaunchTemplateData::builder()
            .image_id(image_id)
            .set_block_device_mappings(resent)
            .build();
        let out = self
            .client
            .create_launch_template_version()
            .launch_template_id(template_id)
            .source_version(source_version.to_string())
            .launch_template_data(data)
            .version_description(description)
            .client_token(client_token)
            .send()
            .await
            .map_err(self.err("CreateLaunchTemplateVersion"))?;
        if let Some(warning) = out.warning() {
            tracing::warn!(template = template_id, warning = ?warning, "the new launch template version has warnings");
        }
        out.launch_template_version()
            .and_then(|v| v.version_number)
            .ok_or_else(|| {
                crate::error::Error::Refused(format!(
                    "CreateLaunchTemplateVersion of {template_id} answered without a version"
                ))
            })
    }

    async fn set_default_version(&self, template_id: &str, version: i64) -> Result<()> {
        self.client
            .modify_launch_template()
            .launch_template_id(template_id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(self.err("ModifyLaunchTemplate"))?;
        let record = BTreeMap::from([(tags::DEFAULT_VERSION.to_string(), version.to_string())]);
        self.client
            .create_tags()
            .resources(template_id)
            .set_tags(Some(tag_list(&record)))
            .send()
            .await
            .map_err(self.err("CreateTags"))?;
        Ok(())
    }
}
