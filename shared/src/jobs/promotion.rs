//! Which AMI a family promotes: shared by publishing (what SSM parameters and launch templates
//! name) and distribution (what target accounts get), so the two can never disagree.

use chrono::{DateTime, Utc};

use crate::domain::model::{Image, ImageState};
use crate::domain::policy::Policy;
use crate::domain::tags;

/// Whether an AMI may be published by a sweep: available, through the promotion gate, not
/// deprecated.
pub fn promotable(image: &Image, policy: &Policy, now: DateTime<Utc>) -> Result<(), String> {
    pinnable(image, policy)?;
    if image.deprecation_time.is_some_and(|t| t <= now) {
        return Err(format!("{} is deprecated: it is on its way out", image.id));
    }
    Ok(())
}

/// Whether a rollback may pin an AMI: available and through the promotion gate. A deprecated
/// AMI may be pinned: age-out deprecates the previous AMI soon after a new one is published, and
/// that is the AMI an incident rolls back to.
pub fn pinnable(image: &Image, policy: &Policy) -> Result<(), String> {
    if image.state != ImageState::Available {
        return Err(format!(
            "{} is {}: only available AMIs are published",
            image.id, image.state
        ));
    }
    if let Some(why) = image.held_by_gate(policy) {
        return Err(format!("{}: {why}", image.id));
    }
    Ok(())
}

/// A sweep's AMI for one family: the newest promotable one, unless a rollback pinned one and
/// no promotable AMI was created after the pin (then the pinned one, `true`: a destination the
/// rollback could not reach, or a sweep that raced it, still ends on the pin).
pub fn sweep_choice<'a>(
    members: &[&'a Image],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<(&'a Image, bool)> {
    let ready: Vec<&'a Image> = members
        .iter()
        .copied()
        .filter(|i| promotable(i, policy, now).is_ok())
        .collect();
    let newest = ready
        .iter()
        .copied()
        .max_by(|a, b| (a.made(), &a.id).cmp(&(b.made(), &b.id)));
    // A pinned AMI stays pinned once deprecated (age-out deprecates what a newer AMI replaced).
    let pin = members
        .iter()
        .filter(|i| pinnable(i, policy).is_ok())
        .filter_map(|i| pinned_at(i).map(|t| (t, *i)))
        .max_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
    match (newest, pin) {
        (Some(newest), Some((at, _))) if newest.made().is_some_and(|c| c > at) => {
            Some((newest, false))
        }
        // The pin holds, also when nothing else can be published (the AMI rolled back from
        // deregistered or failed).
        (_, Some((_, pinned))) => Some((pinned, true)),
        (Some(newest), None) => Some((newest, false)),
        (None, None) => None,
    }
}

/// When a rollback pinned the AMI, if it did.
pub fn pinned_at(image: &Image) -> Option<DateTime<Utc>> {
    image
        .tags
        .get(tags::PINNED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t.split(' ').next().unwrap_or(t)).ok())
        .map(|t| t.with_timezone(&Utc))
}
