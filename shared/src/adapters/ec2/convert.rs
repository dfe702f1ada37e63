//! Conversions between the SDK's types and the domain's.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{LaunchPermission, PermissionGroup, ResourceType, Tag, TagSpecification};
use chrono::{DateTime, Utc};

use crate::domain::grant::Grant;
use crate::domain::model::{Image, ImageState, InstanceInfo};

pub fn grant_of(p: &LaunchPermission) -> Option<Grant> {
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

pub fn launch_permission(g: &Grant) -> LaunchPermission {
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

pub fn instance_info(i: &aws_sdk_ec2::types::Instance) -> Option<InstanceInfo> {
    Some(InstanceInfo {
        id: i.instance_id.clone()?,
        state: state_name(i),
        root_device_type: i.root_device_type().map(|r| r.as_str().to_string()),
        tags: tags_of(i.tags()),
    })
}

/// An instance's state name (`running`, ...), empty when EC2 gives none.
pub fn state_name(i: &aws_sdk_ec2::types::Instance) -> String {
    i.state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

/// EC2 tags from a map.
pub fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// A TagSpecification for one resource type.
pub fn tag_spec(resource: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tag_list(tags)))
        .build()
}

pub fn tags_of<T: FromIterator<(String, String)>>(tags: &[Tag]) -> T {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

pub fn time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub fn smithy_time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
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
        // "enabled-with-cooldown", "enabled-without-cooldown", or "disabled-until <time>" while
        // a cooldown runs: anything but "disabled" (or no value) refuses deregistration, and a
        // value EC2 may add later is read as protected (fail closed).
        deregistration_protection: i
            .deregistration_protection()
            .is_some_and(|p| p != "disabled"),
        last_launched: time(i.last_launched_time()),
        shared: None,
        source: match (i.source_image_id(), i.source_image_region()) {
            (Some(id), Some(region)) => Some(Box::new(crate::domain::model::SourceImage {
                image_id: id.to_string(),
                region: region.to_string(),
            })),
            _ => None,
        },
    })
}
