//! The SSM parameters each chosen family publishes to, refusing a parameter another family
//! also writes.

use std::collections::BTreeMap;

use super::chosen::Chosen;
use super::owners::Owner;
use super::{keep_line, Destination, Target};
use crate::domain::ids::Region;
use crate::domain::policy::render_parameter;
use crate::jobs::publish::{PublishOutcome, PublishResult};

/// Each chosen family's parameters as targets; a refused line for a parameter with two owners.
pub fn parameter_targets<'a>(
    chosen: &[Chosen<'a>],
    owners: &BTreeMap<String, Vec<Owner<'_>>>,
    region: &Region,
    lines: &mut Vec<PublishResult>,
) -> Vec<Target<'a>> {
    let mut out = Vec::new();
    for c in chosen {
        for template in c.policy.publish.iter().flat_map(|p| &p.ssm_parameters) {
            let name = render_parameter(template, &c.policy.name, &c.family, region.as_str());
            let who = owners.get(&name).map(Vec::as_slice).unwrap_or_default();
            if who.len() > 1 {
                lines.push(shared_parameter(c, name, who, region));
                continue;
            }
            out.push(Target {
                policy: c.policy,
                family: c.family.clone(),
                destination: Destination::Parameter(name),
                image: c.image,
                pinned: c.pinned,
                recall_fallback: c.recall_fallback,
            });
        }
    }
    out
}

/// The line refusing a parameter that several families would write.
fn shared_parameter(c: &Chosen, name: String, who: &[Owner], region: &Region) -> PublishResult {
    let mut l = keep_line(region, &c.policy.name, &c.image.id, Some(&c.family));
    l.target = Some(Destination::Parameter(name).label());
    let names: Vec<String> = who
        .iter()
        .map(|o| format!("`{}` of policy `{}`", o.family, o.policy))
        .collect();
    l.with(
        PublishOutcome::Refused,
        format!(
            "families {} would all write this parameter: put {{family}} (and {{policy}}) in its name",
            names.join(", ")
        ),
    )
}
