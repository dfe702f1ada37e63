//! AMI usage reports (EC2 User Guide, "View your AMI usage"): which other accounts' instances
//! and launch templates use the account's shared AMIs. CreateImageUsageReport starts a report
//! that EC2 builds asynchronously; DescribeImageUsageReports and
//! DescribeImageUsageReportEntries read it once it is `available`.

use std::collections::HashMap;

use aws_sdk_ec2::types::{
    ImageUsageReport, ImageUsageResourceTypeOptionRequest, ImageUsageResourceTypeRequest,
};

use super::convert::smithy_time;
use super::Ec2;
use crate::domain::model::{ReportState, UsageReport, REPORT_RESOURCE_TYPES};
use crate::domain::policy::TemplateDepth;
use crate::error::Result;
use crate::ports::ConsumerUsage;

impl ConsumerUsage for Ec2 {
    async fn usage_reports(
        &self,
        image_ids: &[String],
    ) -> Result<HashMap<String, Vec<UsageReport>>> {
        let mut found: HashMap<String, Vec<UsageReport>> = image_ids
            .iter()
            .map(|id| (id.clone(), Vec::new()))
            .collect();
        let mut pages = self
            .client
            .describe_image_usage_reports()
            .set_image_ids(Some(image_ids.to_vec()))
            .into_paginator()
            .send();
        let mut available: HashMap<String, String> = HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeImageUsageReports"))?;
            for (image, report) in page.image_usage_reports().iter().filter_map(report_of) {
                if report.state == ReportState::Available {
                    available.insert(report.report_id.clone(), image.clone());
                }
                found.entry(image).or_default().push(report);
            }
        }

        self.count_entries(&available, &mut found).await?;
        for reports in found.values_mut() {
            reports.sort_by_key(|r| std::cmp::Reverse(r.created));
        }
        Ok(found)
    }

    async fn pending_usage_reports(&self) -> Result<usize> {
        let mut pages = self
            .client
            .describe_image_usage_reports()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("state")
                    .values("pending")
                    .build(),
            )
            .into_paginator()
            .send();
        let mut pending = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.err("DescribeImageUsageReports"))?;
            pending += page.image_usage_reports().len();
        }
        Ok(pending)
    }

    async fn request_usage_report(
        &self,
        image_id: &str,
        token: &str,
        depth: TemplateDepth,
    ) -> Result<String> {
        let templates = ImageUsageResourceTypeRequest::builder()
            .resource_type("ec2:LaunchTemplate")
            .resource_type_options(
                ImageUsageResourceTypeOptionRequest::builder()
                    .option_name("version-depth")
                    .option_values(depth.consumer_report_depth().to_string())
                    .build(),
            )
            .build();
        let others = REPORT_RESOURCE_TYPES
            .iter()
            .filter(|t| **t != "ec2:LaunchTemplate")
            .map(|t| {
                ImageUsageResourceTypeRequest::builder()
                    .resource_type(*t)
                    .build()
            });
        let out = self
            .client
            .create_image_usage_report()
            .image_id(image_id)
            .set_resource_types(Some(others.chain([templates]).collect()))
            .client_token(token)
            .send()
            .await
            .map_err(self.err("CreateImageUsageReport"))?;
        Ok(out.report_id().unwrap_or_default().to_string())
    }
}

/// A usage report as the domain reads it, with its AMI; none without its AMI, id or time.
fn report_of(r: &ImageUsageReport) -> Option<(String, UsageReport)> {
    let (Some(image), Some(id), Some(created)) =
        (r.image_id(), r.report_id(), smithy_time(r.creation_time()))
    else {
        return None;
    };
    let state = match r.state() {
        Some("available") => ReportState::Available,
        Some("pending") => ReportState::Pending,
        other => ReportState::Error(r.state_reason().or(other).unwrap_or("no state").to_string()),
    };
    let resource_types = r
        .resource_types()
        .iter()
        .filter_map(|t| {
            let depth = t
                .resource_type_options()
                .iter()
                .find(|o| o.option_name() == Some("version-depth"))
                .and_then(|o| o.option_values().first())
                .and_then(|v| v.parse().ok());
            Some((t.resource_type()?.to_string(), depth))
        })
        .collect();
    let report = UsageReport {
        report_id: id.to_string(),
        state,
        created,
        accounts: Default::default(),
        all_accounts: r.account_ids().is_empty(),
        resource_types,
    };
    Some((image.to_string(), report))
}

impl Ec2 {
    /// Counts the entries of the available reports (`available`: report id → AMI) into their
    /// reports in `found`, by account and resource type.
    async fn count_entries(
        &self,
        available: &HashMap<String, String>,
        found: &mut HashMap<String, Vec<UsageReport>>,
    ) -> Result<()> {
        let ids: Vec<String> = available.keys().cloned().collect();
        for chunk in ids.chunks(crate::ports::USAGE_REPORT_MAX_IDS) {
            let mut pages = self
                .client
                .describe_image_usage_report_entries()
                .set_report_ids(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.err("DescribeImageUsageReportEntries"))?;
                for e in page.image_usage_report_entries() {
                    let Some(report) = e.report_id() else {
                        continue;
                    };
                    // An entry without its account or type still counts (fail closed).
                    let account = e.account_id().unwrap_or("(unknown account)");
                    let kind = e.resource_type().unwrap_or("(unknown type)");
                    let Some(image) = available.get(report) else {
                        continue;
                    };
                    let Some(r) = found
                        .get_mut(image)
                        .and_then(|rs| rs.iter_mut().find(|r| r.report_id == report))
                    else {
                        continue;
                    };
                    let count = e.usage_count().map_or(1, |n| u64::try_from(n).unwrap_or(1));
                    *r.accounts
                        .entry(account.to_string())
                        .or_default()
                        .entry(kind.to_string())
                        .or_insert(0) += count;
                }
            }
        }
        Ok(())
    }
}
