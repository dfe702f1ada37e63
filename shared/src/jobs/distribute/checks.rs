//! What a unit proves before it acts, since it may run hours after the sweep that queued it:
//! that its account is still in the OU it was queued through (Organizations ListParents), and,
//! before a copy is deregistered, that its source cannot be restored from the Recycle Bin. Both
//! fail closed: an OU not proven serves nothing through it, a bin not read keeps the copy.

use std::str::FromStr;

use super::execute::On;
use super::plan::{self, Orphan};
use super::{Action, DistributeLine, Outcome, Unit};
use crate::domain::ids::OrganizationalUnitArn;
use crate::domain::tags;
use crate::ports::{Accounts, Cloud, RestoreImages};

/// The OU the unit serves its account through: the unit's, if the account is still directly in
/// it; none (with a line saying why) when it has left or Organizations cannot tell, so that
/// only what a policy gives the account by id is served. When Organizations cannot tell, the
/// line is a failure: the unit is delivered again (and the dead-letter queue's alarm fires if
/// it keeps failing: the organizations role may lack `organizations:ListParents`).
pub async fn still_in<'u, C: Accounts>(
    cloud: &C,
    unit: &'u Unit,
    lines: &mut Vec<DistributeLine>,
) -> Option<&'u str> {
    let ou = unit.organizational_unit.as_deref()?;
    let mut line = DistributeLine::new(&unit.account, &unit.region, Action::Unit);
    line.organizational_unit = Some(ou.to_string());
    let parent = match cloud.parent_of(&unit.account).await {
        Ok(parent) => parent,
        Err(e) => {
            let why = format!("whether the account is still in the OU could not be read (ListParents): {e}: nothing is served through the OU, only what a policy gives the account by id");
            lines.push(line.with(Outcome::Failed, why));
            return None;
        }
    };
    let id = OrganizationalUnitArn::from_str(ou).map(|o| o.id().to_string());
    if parent.is_some() && id.as_ref().ok() == parent.as_ref() {
        return Some(ou);
    }

    let now_in = parent.map_or_else(
        || "no longer in the organization".to_string(),
        |p| format!("in {p} now"),
    );
    let why = format!("the account left the OU after the sweep ({now_in}): nothing is served through the OU, only what a policy gives the account by id");
    lines.push(line.with(Outcome::Unchanged, why));
    None
}

/// The orphans once the source region's Recycle Bin is read: a copy whose deregistered source
/// the bin still holds is deprecated instead; when the bin cannot be read, every copy that would
/// be deregistered is kept, with a line.
pub async fn restorable<'a, C: Cloud>(
    cloud: &C,
    orphans: Vec<Orphan<'a>>,
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) -> Vec<Orphan<'a>> {
    let sources: Vec<String> = orphans
        .iter()
        .filter(|(_, how, _)| *how == plan::Retirement::Deregister)
        .filter_map(|(copy, ..)| copy.tags.get(tags::SOURCE_IMAGE).cloned())
        .collect();
    if sources.is_empty() {
        return orphans;
    }
    match cloud.ec2(on.region).images_in_bin(&sources).await {
        Ok(binned) => plan::after_bin(orphans, &binned, on.now),
        Err(e) => {
            let (kept, rest): (Vec<_>, Vec<_>) = orphans
                .into_iter()
                .partition(|(_, how, _)| *how == plan::Retirement::Deregister);
            for (copy, _, why) in kept {
                let mut line = DistributeLine::new(on.account, on.region, Action::Retire);
                line.image_id = Some(copy.id.clone());
                line.source_image_id = copy.tags.get(tags::SOURCE_IMAGE).cloned();
                let why = format!(
                    "{why}, but whether the Recycle Bin can restore it is unknown ({e}): kept"
                );
                lines.push(line.with(Outcome::Kept, why));
            }
            rest
        }
    }
}
