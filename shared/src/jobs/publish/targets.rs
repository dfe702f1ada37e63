//! Publishing's decisions, pure: which AMI each SSM parameter and launch template of a region
//! should name, and whether to change what it names now.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{render_parameter, Policy, PolicyDocument};
use crate::domain::tags;
use crate::domain::trigger::PublishRequest;

/// Where an AMI is published.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// An SSM parameter, by its name.
    Parameter(String),
    /// A launch template, by id or name; `set_default` makes each new version the default.
    Template { template: String, set_default: bool },
}

impl Destination {
    /// `ssm:<name>` or `launch-template:<id or name>`, as reports name it.
    pub fn label(&self) -> String {
        match self {
            Destination::Parameter(name) => format!("ssm:{name}"),
            Destination::Template { template, .. } => format!("launch-template:{template}"),
        }
    }
}

/// One destination with the AMI it should name.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub policy: &'a Policy,
    pub family: String,
    pub destination: Destination,
    /// The AMI to publish.
    pub image: &'a Image,
    /// A rollback's pin: published even if older than what the destination names.
    pub pinned: bool,
}

/// What to do with one destination, given what it names now.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// It names the AMI already.
    Unchanged,
    /// It keeps what it names, and why.
    Keep(String),
    /// Make it name the AMI; `previous` is what it named.
    Publish { previous: Option<String> },
}

/// Whether an AMI may be published: available, through the promotion gate, not deprecated.
pub fn promotable(image: &Image, policy: &Policy, now: DateTime<Utc>) -> Result<(), String> {
    if image.state != ImageState::Available {
        return Err(format!(
            "{} is {}: only available AMIs are published",
            image.id, image.state
        ));
    }
    if let Some(why) = image.held_by_gate(policy) {
        return Err(format!("{}: {why}", image.id));
    }
    if image.deprecation_time.is_some_and(|t| t <= now) {
        return Err(format!("{} is deprecated: it is on its way out", image.id));
    }
    Ok(())
}

/// The destinations of every publishing policy in a region, each with the AMI it should name,
/// and a line for each that cannot get one.
///
/// The AMI is the newest promotable one of the family ([`promotable`]); with `pin` (a
/// rollback) it is the pinned AMI, or its copy in this region, for that policy and family only.
pub fn targets<'a>(
    images: &'a [Image],
    document: &'a PolicyDocument,
    region: &Region,
    policies: Option<&[String]>,
    pin: Option<&PublishRequest>,
    now: DateTime<Utc>,
) -> (Vec<Target<'a>>, Vec<PublishResult>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for policy in &document.policies {
        let Some(publish) = &policy.publish else {
            continue;
        };
        if policies.is_some_and(|ps| !ps.contains(&policy.name))
            || pin.is_some_and(|p| p.policy != policy.name)
        {
            continue;
        }
        let mut families: BTreeMap<String, Vec<&'a Image>> = BTreeMap::new();
        for image in images
            .iter()
            .filter(|i| i.policy_in(document).is_some_and(|p| p.name == policy.name))
        {
            families
                .entry(image.family(&policy.family_by))
                .or_default()
                .push(image);
        }
        let line = |image: &str, family: &str| {
            let mut l = PublishResult::new(Stage::Publish, image, region, &policy.name);
            l.family = Some(family.to_string());
            l.action = "keep";
            l
        };
        let mut chosen: BTreeMap<String, (&'a Image, bool)> = BTreeMap::new();
        for (family, members) in &families {
            if let Some(pin) = pin {
                if &pin.family != family {
                    continue;
                }
                let found = members.iter().find(|i| {
                    i.id == pin.image_id || i.tags.get(tags::SOURCE_IMAGE) == Some(&pin.image_id)
                });
                match found.map(|i| (i, promotable(i, policy, now))) {
                    Some((image, Ok(()))) => {
                        chosen.insert(family.clone(), (image, true));
                    }
                    Some((image, Err(why))) => lines.push(
                        line(&image.id, family)
                            .with(PublishOutcome::Refused, format!("cannot pin it: {why}")),
                    ),
                    None => lines.push(line(&pin.image_id, family).with(
                        PublishOutcome::Skipped,
                        format!("neither {} nor a copy of it is an AMI of family `{family}` in {region}", pin.image_id),
                    )),
                }
                continue;
            }
            let newest = members
                .iter()
                .filter(|i| promotable(i, policy, now).is_ok())
                .max_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            if let Some(image) = newest {
                chosen.insert(family.clone(), (image, false));
            }
        }
        if pin.is_some_and(|p| !families.contains_key(&p.family)) {
            let p = pin
                .map(|p| (p.image_id.as_str(), p.family.as_str()))
                .unwrap_or_default();
            lines.push(line(p.0, p.1).with(
                PublishOutcome::Skipped,
                format!(
                    "policy `{}` has no AMI of family `{}` in {region}",
                    policy.name, p.1
                ),
            ));
        }
        // SSM parameters: one per family; a name two families would both write is refused.
        let mut by_name: BTreeMap<String, BTreeSet<&String>> = BTreeMap::new();
        for family in families.keys() {
            for template in &publish.ssm_parameters {
                by_name
                    .entry(render_parameter(
                        template,
                        &policy.name,
                        family,
                        region.as_str(),
                    ))
                    .or_default()
                    .insert(family);
            }
        }
        for (name, owners) in &by_name {
            for family in owners {
                let Some((image, pinned)) = chosen.get(*family) else {
                    continue;
                };
                if owners.len() > 1 {
                    let mut l = line(&image.id, family);
                    l.target = Some(Destination::Parameter(name.clone()).label());
                    lines.push(l.with(
                        PublishOutcome::Refused,
                        format!(
                            "families {} would all write this parameter: put {{family}} in its name",
                            owners.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                    continue;
                }
                out.push(Target {
                    policy,
                    family: (*family).clone(),
                    destination: Destination::Parameter(name.clone()),
                    image,
                    pinned: *pinned,
                });
            }
        }
        // Launch templates: the family the entry names, or the region's only family.
        for entry in &publish.launch_templates {
            let family = match &entry.family {
                Some(f) => Some(f.clone()),
                None if families.len() == 1 => families.keys().next().cloned(),
                None => {
                    if !families.is_empty() {
                        let mut l = line("", "");
                        l.family = None;
                        l.target = Some(format!("launch-template:{}", entry.template));
                        lines.push(l.with(
                            PublishOutcome::Refused,
                            format!(
                                "policy `{}` has {} families in {region} ({}): name the family this template gets",
                                policy.name,
                                families.len(),
                                families.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    None
                }
            };
            let Some((family, (image, pinned))) =
                family.and_then(|f| chosen.get(&f).map(|c| (f, *c)))
            else {
                continue;
            };
            out.push(Target {
                policy,
                family,
                destination: Destination::Template {
                    template: entry.template.clone(),
                    set_default: entry.set_default,
                },
                image,
                pinned,
            });
        }
    }
    (out, lines)
}

/// Whether to change a destination that names `current` now (none: nothing yet).
///
/// Without a pin, the destination never moves to an AMI older than the one it names, nor away
/// from a rollback's pin to an AMI created before the pin.
pub fn choose(target: &Target, current: Option<&str>, images: &[Image]) -> Choice {
    let image = target.image;
    if current == Some(image.id.as_str()) {
        return Choice::Unchanged;
    }
    let previous = current.map(str::to_string);
    if target.pinned {
        return Choice::Publish { previous };
    }
    if let Some(named) = current.and_then(|c| images.iter().find(|i| i.id == c)) {
        if named.created > image.created {
            return Choice::Keep(format!(
                "it names {}, newer than {}: never published backwards (a rollback pins an older AMI)",
                named.id, image.id
            ));
        }
        let pin = named
            .tags
            .get(tags::PINNED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(pinned_at) = pin {
            if image.created.is_none_or(|c| c <= pinned_at) {
                return Choice::Keep(format!(
                    "a rollback pinned {} at {}: only an AMI created after the pin replaces it",
                    named.id,
                    pinned_at.to_rfc3339()
                ));
            }
        }
    }
    Choice::Publish { previous }
}

/// CreateLaunchTemplateVersion's client token (at most 128 ASCII characters): the same
/// template and AMI make one version, however often the event is delivered. A rollback's
/// carries its pin time: EC2 would answer a token used before with the old version, leaving
/// `$Latest` on the AMI rolled back from.
pub fn template_token(
    template_id: &str,
    image_id: &str,
    pinned_at: Option<DateTime<Utc>>,
) -> String {
    match pinned_at {
        Some(at) => format!("{template_id}-{image_id}-pin-{}", at.timestamp()),
        None => format!("{template_id}-{image_id}"),
    }
}
