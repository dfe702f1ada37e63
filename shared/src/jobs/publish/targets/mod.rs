//! Publishing's decisions, pure: which AMI each SSM parameter and launch template of a region
//! should name, and whether to change what it names now.

use std::collections::BTreeMap;

mod chosen;
mod owners;
mod parameters;
mod templates;

pub use crate::jobs::promotion::{pinnable, pinned_at, promotable, sweep_choice};

use chrono::{DateTime, Utc};

use super::{PublishOutcome, PublishResult, Stage};
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::{Policy, PolicyDocument};
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

/// How a report names a launch template destination: this, then its id or name.
pub const TEMPLATE_LABEL: &str = "launch-template:";

impl Destination {
    /// `ssm:<name>` or `launch-template:<id or name>`, as reports name it.
    pub fn label(&self) -> String {
        match self {
            Destination::Parameter(name) => format!("ssm:{name}"),
            Destination::Template { template, .. } => format!("{TEMPLATE_LABEL}{template}"),
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
    /// Only the way back from a recall: a family whose only promotable AMIs are recalled falls
    /// back to its newest AMI outside the recall that may be pinned (a deprecated one too), and
    /// that replaces only a recalled AMI a destination names.
    pub recall_fallback: bool,
}

/// What to do with one destination, given what it names now.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// It names the AMI already.
    Unchanged,
    /// It keeps what it names, and why.
    Keep(String),
    /// It keeps what it names until a person acts, and why: a failure, so the errors alarm
    /// says so.
    Frozen(String),
    /// Make it name the AMI; `previous` is what it named.
    Publish { previous: Option<String> },
}

/// The action of a rollback's line in a region where the family has no AMI at all.
pub const ABSENT: &str = "absent";

/// The action of a line whose launch template is not in its region.
pub const NO_TEMPLATE: &str = "no_template";

/// A launch template found in none of the regions of the run is misconfigured (a misspelled
/// name, a deleted template): its lines are refused, so the run fails and the alarm says so.
/// Concluded only when the run looked for it in **every** region of `regions` (each has its
/// `no_template` line) and could read them all: a region where the family had nothing to
/// publish (a copy on its way, a test under way) may hold it, and a template lives in one
/// region, so one without it while another has it is only skipped. Callers pass every region
/// the deployment publishes in, never one event's region.
pub fn missing_templates(lines: &mut [PublishResult], regions: &[Region]) {
    // A region whose publishing could not even read its AMIs may hold the template.
    if regions.is_empty()
        || lines
            .iter()
            .any(|l| l.stage == Stage::Publish && l.image_id.is_empty())
    {
        return;
    }
    let key = |l: &PublishResult| (l.policy.clone(), l.target.clone());
    let mut missing_in: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.action == NO_TEMPLATE) {
        missing_in
            .entry(key(l))
            .or_default()
            .push(l.region.to_string());
    }
    for l in lines.iter_mut().filter(|l| l.action == NO_TEMPLATE) {
        let Some(searched) = missing_in.get(&key(l)) else {
            continue;
        };
        if !regions
            .iter()
            .all(|r| searched.iter().any(|s| s == r.as_str()))
        {
            continue;
        }
        l.outcome = PublishOutcome::Refused;
        l.reason = Some(format!(
            "no launch template `{}` in any region ({}): check `publish.launch_templates[].template` of policy `{}` (its id, or its name, in the region it is in)",
            l.target.as_deref().and_then(|t| t.strip_prefix(TEMPLATE_LABEL)).unwrap_or_default(),
            searched.join(", "),
            l.policy
        ));
    }
}

/// The destinations of every publishing policy in a region, each with the AMI it should name,
/// and a line for each that cannot get one.
///
/// The AMI is a sweep's choice ([`sweep_choice`]); with `pin` (a rollback) it is the pinned
/// AMI, or its copy in this region, for that policy and family only. A destination two
/// families (of one policy or of two) would both write is refused for all of them: an AMI of
/// one must never land where the other's consumers look.
pub fn targets<'a>(
    images: &'a [Image],
    document: &'a PolicyDocument,
    region: &Region,
    policies: Option<&[String]>,
    pin: Option<&PublishRequest>,
    now: DateTime<Utc>,
) -> (Vec<Target<'a>>, Vec<PublishResult>) {
    let mut lines = Vec::new();
    let scope = Scope {
        images,
        document,
        region,
    };
    let chosen = chosen::chosen(&scope, policies, pin, now, &mut lines);

    let families = owners::families(images, document);
    let owners = owners::parameter_owners(document, &families, region);
    let mut out = parameters::parameter_targets(&chosen, &owners, region, &mut lines);
    out.extend(templates::template_targets(
        &scope, &chosen, &families, &mut lines,
    ));
    (out, lines)
}

/// What every decision of a region reads: its AMIs, the document, the region.
pub struct Scope<'a, 'r> {
    pub images: &'a [Image],
    pub document: &'a PolicyDocument,
    pub region: &'r Region,
}

/// A line about a destination that keeps what it names (refused or skipped: the caller says).
fn keep_line(region: &Region, policy: &str, image: &str, family: Option<&str>) -> PublishResult {
    let mut l = PublishResult::new(Stage::Publish, image, region, policy);
    l.family = family.map(str::to_string);
    l.action = "keep";
    l
}

/// Whether to change a destination that names `current` now (none: nothing yet).
///
/// Without a pin, the destination never moves to an AMI older than the one it names, nor away
/// from a rollback's pin to an AMI created before the pin; unless the stack's own recall took
/// the AMI it names out of circulation (then it rolls back to the choice, older or not).
pub fn choose(target: &Target, current: Option<&str>, images: &[Image]) -> Choice {
    let image = target.image;
    if current == Some(image.id.as_str()) {
        return Choice::Unchanged;
    }
    let previous = current.map(str::to_string);
    if target.pinned {
        return Choice::Publish { previous };
    }
    let named = current.and_then(|c| images.iter().find(|i| i.id == c));
    if let Some(named) = named {
        if named.recall_proven() {
            // The stack's recall took what it names out of circulation: roll it back.
            return Choice::Publish { previous };
        }
        if named.tags.contains_key(tags::RECALLED) {
            return Choice::Frozen(format!(
                "{} carries a recall mark ({}) no seal of this stack proves (set by hand, altered, or not checkable now): what names it is kept until a person decides; send the recall again, or remove the tags",
                named.id,
                tags::RECALLED
            ));
        }
    }
    if target.recall_fallback {
        return Choice::Keep(format!(
            "{} is the family's way back from a recall only: it replaces a recalled AMI, nothing else",
            image.id
        ));
    }
    if let Some(named) = named {
        if named.made() > image.made() {
            return Choice::Keep(format!(
                "it names {}, newer than {}: never published backwards (a rollback pins an older AMI)",
                named.id, image.id
            ));
        }
        if named.tags.get(tags::PINNED_AT).map(String::as_str) == Some(tags::UNPROVEN) {
            return Choice::Frozen(format!(
                "{} carries a rollback pin ({}) no seal of this stack proves (set before seals, by hand, or not checkable now): what names it is kept until a person decides; remove the tag from {} to publish {} again, or roll back to an AMI whose verdict is sealed",
                named.id,
                tags::PINNED_AT,
                named.id,
                image.id
            ));
        }
        if let Some(pinned_at) = pinned_at(named) {
            if image.made().is_none_or(|c| c <= pinned_at) {
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
