//! The Recycle Bin adapter: a region's retention rules for AMIs and snapshots (ListRules for
//! the identifiers, then GetRule for each rule's tags, exclusion tags and status, which ListRules
//! does not return).

use aws_sdk_rbin::types::{LockState, ResourceTag, ResourceType, RetentionPeriodUnit, RuleStatus};
use aws_sdk_rbin::Client;

use crate::domain::ids::Region;
use crate::domain::recycle_bin::{BinResource, RecycleBin, RetentionRule, RuleTag};
use crate::error::{Error, Result};
use crate::ports::RecoveryRules;

/// The Recycle Bin in one region.
#[derive(Debug, Clone)]
pub struct Rbin {
    client: Client,
    region: Region,
}

impl Rbin {
    /// An adapter over a client configured for `region`.
    pub fn new(client: Client, region: Region) -> Self {
        Rbin { client, region }
    }

    async fn rules_of(
        &self,
        kind: ResourceType,
        resource: BinResource,
    ) -> Result<Vec<RetentionRule>> {
        let mut ids = Vec::new();
        let mut pages = self
            .client
            .list_rules()
            .resource_type(kind)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::aws("ListRules", self.region.as_str(), e))?;
            ids.extend(
                page.rules()
                    .iter()
                    .filter_map(|r| r.identifier().map(String::from)),
            );
        }
        let mut out = Vec::new();
        for id in ids {
            let rule = self
                .client
                .get_rule()
                .identifier(&id)
                .send()
                .await
                .map_err(|e| Error::aws("GetRule", self.region.as_str(), e))?;
            let days = rule
                .retention_period()
                .filter(|p| *p.retention_period_unit() == RetentionPeriodUnit::Days)
                .map(|p| u32::try_from(p.retention_period_value()).unwrap_or(0))
                .unwrap_or(0);
            out.push(RetentionRule {
                id,
                resource,
                days,
                tags: rule.resource_tags().iter().map(rule_tag).collect(),
                exclude_tags: rule.exclude_resource_tags().iter().map(rule_tag).collect(),
                // A rule without a retention in days retains nothing this tool can count on.
                available: rule.status() == Some(&RuleStatus::Available) && days > 0,
                locked: rule.lock_state() == Some(&LockState::Locked),
            });
        }
        Ok(out)
    }
}

fn rule_tag(t: &ResourceTag) -> RuleTag {
    RuleTag {
        key: t.resource_tag_key().to_string(),
        value: t.resource_tag_value().map(String::from),
    }
}

impl RecoveryRules for Rbin {
    async fn recycle_bin(&self) -> Result<RecycleBin> {
        let (images, snapshots) = futures::try_join!(
            self.rules_of(ResourceType::Ec2Image, BinResource::Image),
            self.rules_of(ResourceType::EbsSnapshot, BinResource::Snapshot)
        )?;
        Ok(RecycleBin {
            rules: images.into_iter().chain(snapshots).collect(),
        })
    }
}
