//! Which AMI each family of each publishing policy should name: a sweep's newest promotable
//! AMI (or a rollback's pin that still holds), or a rollback's pinned AMI.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{keep_line, pinnable, sweep_choice, Scope, ABSENT};
use crate::domain::model::Image;
use crate::domain::policy::Policy;
use crate::domain::tags;
use crate::domain::trigger::PublishRequest;
use crate::jobs::publish::{PublishOutcome, PublishResult};

/// A family of a policy with the AMI its destinations should name.
#[derive(Debug, Clone)]
pub struct Chosen<'a> {
    pub policy: &'a Policy,
    pub family: String,
    pub image: &'a Image,
    /// A rollback's pin: published even if older than what a destination names.
    pub pinned: bool,
    /// The way back from a recall only ([`super::Target::recall_fallback`]).
    pub recall_fallback: bool,
}

/// Each publishing policy's families (those this run serves: `policies`, or the pin's) and
/// the AMI each should name; a line for a pin that cannot be carried out.
pub fn chosen<'a>(
    scope: &Scope<'a, '_>,
    policies: Option<&[String]>,
    pin: Option<&PublishRequest>,
    now: DateTime<Utc>,
    lines: &mut Vec<PublishResult>,
) -> Vec<Chosen<'a>> {
    let mut out = Vec::new();
    for policy in &scope.document.policies {
        if policy.publish.is_none()
            || policies.is_some_and(|ps| !ps.contains(&policy.name))
            || pin.is_some_and(|p| p.policy != policy.name)
        {
            continue;
        }
        let families = families_of(scope, policy);
        match pin {
            Some(pin) => out.extend(pinned_choice(scope, policy, &families, pin, lines)),
            None => out.extend(families.iter().filter_map(|(family, members)| {
                let (image, pinned, recall_fallback) = match sweep_choice(members, policy, now) {
                    Some((image, pinned)) => (image, pinned, false),
                    None => match recall_fallback(members, policy) {
                        Some(image) => (image, false, true),
                        None => {
                            lines.extend(all_recalled(scope, policy, family, members));
                            return None;
                        }
                    },
                };
                Some(Chosen {
                    policy,
                    family: family.clone(),
                    image,
                    pinned,
                    recall_fallback,
                })
            })),
        }
    }
    out
}

/// Where a family a recall left without a promotable AMI goes back to: its newest AMI outside
/// the recall that a rollback could pin (available and through the gate; age-out deprecates the
/// AMI a newer one replaced, and that is the one to go back to). Only when a recall the stack
/// proves took one of the family's AMIs.
fn recall_fallback<'a>(members: &[&'a Image], policy: &Policy) -> Option<&'a Image> {
    if !members.iter().any(|i| i.recall_proven()) {
        return None;
    }
    members
        .iter()
        .copied()
        .filter(|i| pinnable(i, policy).is_ok())
        .max_by(|a, b| (a.made(), &a.id).cmp(&(b.made(), &b.id)))
}

/// A family a recall left without a promotable AMI: a failure that needs a person (publish a
/// new AMI, or undo the recall); its destinations keep what they name.
fn all_recalled(
    scope: &Scope<'_, '_>,
    policy: &Policy,
    family: &str,
    members: &[&Image],
) -> Option<PublishResult> {
    let recalled = members
        .iter()
        .find(|i| i.tags.contains_key(tags::RECALLED))?;
    Some(
        keep_line(scope.region, &policy.name, &recalled.id, Some(family)).with(
            PublishOutcome::Refused,
            format!(
                "family `{family}` has no promotable AMI outside its recall ({} is recalled): its destinations keep what they name until a person publishes a new AMI or undoes the recall",
                recalled.id
            ),
        ),
    )
}

/// The policy's AMIs in the region, by family.
fn families_of<'a>(scope: &Scope<'a, '_>, policy: &Policy) -> BTreeMap<String, Vec<&'a Image>> {
    let mut families: BTreeMap<String, Vec<&'a Image>> = BTreeMap::new();
    let document = scope.document;
    for image in scope
        .images
        .iter()
        .filter(|i| i.policy_in(document).is_some_and(|p| p.name == policy.name))
    {
        families
            .entry(image.family(&policy.family_by))
            .or_default()
            .push(image);
    }
    families
}

/// A rollback's AMI in this region: the pinned AMI or its copy. A rollback that cannot be
/// carried out in a region is refused there, loudly: the destinations there keep naming what
/// the rollback was sent to replace.
fn pinned_choice<'a>(
    scope: &Scope<'a, '_>,
    policy: &'a Policy,
    families: &BTreeMap<String, Vec<&'a Image>>,
    pin: &PublishRequest,
    lines: &mut Vec<PublishResult>,
) -> Option<Chosen<'a>> {
    let region = scope.region;
    let refused = |image: &str, why: String| {
        keep_line(region, &policy.name, image, Some(&pin.family)).with(PublishOutcome::Refused, why)
    };
    let Some(members) = families.get(&pin.family) else {
        let mut absent = refused(
            &pin.image_id,
            format!(
                "policy `{}` has no AMI of family `{}` in {region}",
                policy.name, pin.family
            ),
        );
        absent.action = ABSENT;
        lines.push(absent);
        return None;
    };

    let found = members
        .iter()
        .find(|i| i.id == pin.image_id || i.tags.get(tags::SOURCE_IMAGE) == Some(&pin.image_id));
    let refusal = match found.map(|i| (*i, pinnable(i, policy))) {
        Some((image, Ok(()))) => {
            return Some(Chosen {
                policy,
                family: pin.family.clone(),
                image,
                pinned: true,
                recall_fallback: false,
            })
        }
        Some((image, Err(why))) => refused(&image.id, format!("cannot pin it: {why}")),
        None => refused(
            &pin.image_id,
            format!(
                "neither {} nor a copy of it is an AMI of family `{}` in {region}",
                pin.image_id, pin.family
            ),
        ),
    };
    lines.push(refusal);
    None
}
