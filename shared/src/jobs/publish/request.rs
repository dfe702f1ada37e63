//! The run request a trigger asks of publish, and the regions it looks at.

use crate::domain::ids::Region;
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::{RunRequest, Trigger};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::jobs::proof::own_instances;
use crate::ports::{Cloud, ValidateImages};

/// Every trigger is a sweep of its region: the state of each launch test is in tags, so an
/// event only says when to look again. The schedule sweeps every region publishing reaches (the
/// copies' regions too). An instance's state change is worth a sweep only when the instance is
/// one of publish's own test instances (every instance of the account changes state through
/// this rule: EventBridge cannot match tags); otherwise the reason it needs no work.
pub async fn request<C: Cloud>(
    cloud: &C,
    trigger: Trigger,
    home: &Region,
) -> Result<Decision<RunRequest>> {
    let in_region = |region: Option<Region>| RunRequest {
        regions: region.map(|r| vec![r]),
        ..RunRequest::default()
    };
    match trigger {
        Trigger::Run(request) => Ok(Decision::Act(request)),
        Trigger::Scheduled { .. } => Ok(Decision::Act(RunRequest::default())),
        Trigger::AmiState { region, .. } => Ok(Decision::Act(in_region(region))),
        // A recall reaches every region publishing does: sweep them all.
        Trigger::Recalled { .. } => Ok(Decision::Act(RunRequest::default())),
        Trigger::InstanceState { region, detail, .. } => {
            let region = region.unwrap_or_else(|| home.clone());
            let tagged = cloud.ec2(&region).test_instances().await?;
            let sealer = cloud.sealer();
            let ours = own_instances(sealer.as_ref(), &region, tagged)
                .await
                .ours
                .iter()
                .any(|i| i.instance_id == detail.instance_id);
            if !ours {
                return Ok(Decision::Ignore(format!(
                    "instance {} is not a test instance of ami-publish",
                    detail.instance_id
                )));
            }
            Ok(Decision::Act(in_region(Some(region))))
        }
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{} runs on a schedule, a run request, `EC2 AMI State Change`, `EC2 Instance State-change Notification` or `AMI Recalled`, not on `{}`",
                super::FUNCTION,
                other.kind()
            ),
        )),
    }
}

/// The regions publishing looks at: those a request names, or the home region and every region
/// the publishing policies (or the one named) copy into, where their copies are published.
pub fn regions(
    document: &PolicyDocument,
    home: &Region,
    request: &RunRequest,
    only: Option<&str>,
) -> Vec<Region> {
    if let Some(regions) = &request.regions {
        if only.is_none() {
            return regions.clone();
        }
    }
    let first = request
        .regions
        .as_ref()
        .and_then(|r| r.first())
        .unwrap_or(home)
        .clone();
    let mut out = vec![first];
    for policy in document
        .policies
        .iter()
        .filter(|p| p.publish.is_some() && only.is_none_or(|name| p.name == name))
    {
        for region in policy.copy.iter().flat_map(|c| c.regions.keys()) {
            if !out.contains(region) {
                out.push(region.clone());
            }
        }
    }
    out
}
