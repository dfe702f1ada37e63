//! The EC2 adapter: owns an `aws_sdk_ec2::Client` for one region and implements the ports
//! with it, turning its pages into the plain data of [`crate::domain::model`]. Split by concern:
//! [`scan`] (what age-out plans from), [`create`] (CreateImage, RegisterImage), [`permissions`],
//! [`copy`], [`retire`], [`usage`] (AMI usage reports), [`validate`] (the launch test), [`templates`] (launch templates for publishing), and [`convert`] (SDK types to domain types). Scans follow every page;
//! errors keep their EC2 error code.

mod convert;
mod copy;
mod create;
mod permissions;
mod restore;
mod retire;
mod scan;
mod templates;
mod usage;
mod validate;

use aws_sdk_ec2::Client;

use crate::domain::ids::Region;
use crate::domain::policy::TemplateDepth;
use crate::error::{Error, Result};
use crate::ports::Regional;

pub use convert::{image_from_sdk, tag_spec};

/// A look-up of one resource by id: "not found" and a malformed id both mean there is none.
fn absent<T>(found: Result<Option<T>>) -> Result<Option<T>> {
    match found {
        Err(e) if e.is_not_found() || e.code().is_some_and(|c| c.ends_with(".Malformed")) => {
            Ok(None)
        }
        other => other,
    }
}

/// Page size of the scans: DescribeImages and DescribeSnapshots take at most 1000.
pub const PAGE_SIZE: i32 = 1000;

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

    /// Every instance DescribeInstances answers for `filters`, following every page of at most
    /// `page` instances.
    async fn instances_matching(
        &self,
        filters: Vec<aws_sdk_ec2::types::Filter>,
        page: i32,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(page)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(found) = pages.next().await {
            let found = found.map_err(self.err("DescribeInstances"))?;
            out.extend(
                found
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .cloned(),
            );
        }
        Ok(out)
    }

    fn err<E>(&self, operation: &'static str) -> impl FnOnce(E) -> Error + '_
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |e| Error::aws(operation, self.region.as_str(), e)
    }
}

impl Regional for Ec2 {
    fn region(&self) -> &Region {
        &self.region
    }
}
