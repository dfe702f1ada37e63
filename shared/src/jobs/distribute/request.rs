//! Which sweep a trigger asks of distribute: a schedule or a run request sweeps every region
//! of the document (or the request's), and a new AMI (available, passed its launch test) or a
//! recall sweeps its region, so that targets get the new AMI, or move off the recalled one, at
//! once rather than at the next schedule.

use crate::domain::ids::Region;
use crate::domain::trigger::Trigger;
use crate::domain::Decision;
use crate::error::{Error, Result};

/// The regions to sweep (none: every region of the document), or why the event needs no work.
pub fn request(trigger: Trigger) -> Result<Decision<Option<Vec<Region>>>> {
    let name = super::FUNCTION;
    match trigger {
        Trigger::Run(r) => Ok(Decision::Act(r.regions)),
        Trigger::Scheduled { .. } => Ok(Decision::Act(None)),
        Trigger::AmiState { region, detail } if detail.state == "available" => {
            Ok(Decision::Act(region.map(|r| vec![r])))
        }
        Trigger::AmiState { detail, .. } => Ok(Decision::Ignore(format!(
            "image {} is {}: {name} acts only on `available` AMIs",
            detail.image_id, detail.state
        ))),
        Trigger::Validated { region, .. } | Trigger::Recalled { region, .. } => {
            Ok(Decision::Act(region.map(|r| vec![r])))
        }
        other => Err(Error::event(
            "$.detail-type",
            format!(
                "{name} runs on a schedule, a run request, `EC2 AMI State Change`, `AMI Validated`, `AMI Recalled` or its own queue's units, not on `{}`",
                other.kind()
            ),
        )),
    }
}
