//! The run request a trigger asks of a job that acts on available AMIs (share, copy). Age-out,
//! build and publish map their triggers themselves (`ageout::request`, `build::work`,
//! `publish::request`).

use crate::domain::function::Function;
use crate::domain::trigger::{RunRequest, Trigger};
use crate::domain::Decision;
use crate::error::{Error, Result};

/// For the functions that act on available AMIs (share, copy): the run request a trigger asks
/// for, or why the event needs no work. A schedule sweeps its region; an `EC2 AMI State
/// Change` to `available` names one image.
pub fn ami_request(trigger: Trigger, function: Function) -> Result<Decision<RunRequest>> {
    let name = function.name();
    match trigger {
        Trigger::Run(r) => Ok(Decision::Act(r)),
        Trigger::Scheduled { region, .. } => Ok(Decision::Act(RunRequest {
            regions: region.map(|r| vec![r]),
            ..RunRequest::default()
        })),
        Trigger::AmiState { region, detail } if detail.state == "available" => {
            Ok(Decision::Act(RunRequest {
                regions: region.map(|r| vec![r]),
                image_ids: Some(vec![detail.image_id]),
                ..RunRequest::default()
            }))
        }
        Trigger::Validated { region, detail } => Ok(Decision::Act(RunRequest {
            regions: region.map(|r| vec![r]),
            image_ids: Some(vec![detail.image_id]),
            ..RunRequest::default()
        })),
        // The AMI's own region, not the bus's: a restore may be in any region.
        Trigger::Restored { region, detail } => Ok(Decision::Act(RunRequest {
            regions: detail.region.or(region).map(|r| vec![r]),
            image_ids: Some(vec![detail.image_id]),
            ..RunRequest::default()
        })),
        Trigger::AmiState { detail, .. } => Ok(Decision::Ignore(format!(
            "image {} is {}: {name} acts only on `available` AMIs",
            detail.image_id, detail.state
        ))),
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{name} runs on a schedule, a run request, `EC2 AMI State Change`, `AMI Validated` or `AMI Restored`, not on `{}`",
                other.kind()
            ),
        )),
    }
}
