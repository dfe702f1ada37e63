//! The scans age-out plans from: images, snapshots, and what uses them.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ec2::types::Filter;
use futures::{StreamExt, TryStreamExt};

use super::convert::{image_from_sdk, smithy_time, tags_of};
use super::{reference_version_depth, Ec2};
use crate::domain::model::{Image, Snapshot, SnapshotSize, TemplateUse, IN_USE_INSTANCE_STATES};
use crate::domain::policy::TemplateDepth;
use crate::error::{Error, Result};
use crate::ports::{ImageInventory, Permissions, IMAGE_REFERENCES_MAX_IDS};

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
                    for_an_image: Snapshot::made_by_ec2_for_an_image(
                        s.description().unwrap_or_default(),
                    ),
                    started: smithy_time(s.start_time()),
                    tags: tags_of(s.tags()),
                    size: SnapshotSize {
                        full_bytes: s
                            .full_snapshot_size_in_bytes()
                            .and_then(|b| u64::try_from(b).ok()),
                        volume_gib: s.volume_size().and_then(|g| u32::try_from(g).ok()),
                    },
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
        for instance in self.instances_matching(vec![states], 1000).await? {
            if let (Some(image), Some(id)) = (instance.image_id, instance.instance_id) {
                used.entry(image).or_default().insert(id);
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
