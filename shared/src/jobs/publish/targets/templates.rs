//! The launch templates each chosen family publishes to: the family the entry names, or the
//! policy's only family in the region.

use super::chosen::Chosen;
use super::owners::Families;
use super::{keep_line, Destination, Scope, Target};
use crate::domain::policy::{LaunchTemplateTarget, Policy};
use crate::jobs::publish::{PublishOutcome, PublishResult};

/// Each launch template entry of a policy with a chosen family, as a target; a refused line
/// for an entry without a family when the policy has several in the region.
pub fn template_targets<'a>(
    scope: &Scope<'a, '_>,
    chosen: &[Chosen<'a>],
    families: &Families<'_>,
    lines: &mut Vec<PublishResult>,
) -> Vec<Target<'a>> {
    let mut out = Vec::new();
    for policy in &scope.document.policies {
        let mine: Vec<&Chosen<'a>> = chosen
            .iter()
            .filter(|c| std::ptr::eq(c.policy, policy))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let families: Vec<&String> = families
            .get(policy.name.as_str())
            .into_iter()
            .flatten()
            .collect();
        for entry in policy.publish.iter().flat_map(|p| &p.launch_templates) {
            let Some(bound) = bound_family(scope, policy, entry, &families, lines) else {
                continue;
            };
            if let Some(c) = mine.iter().find(|c| c.family == bound) {
                out.push(Target {
                    policy: c.policy,
                    family: c.family.clone(),
                    destination: Destination::Template {
                        template: entry.template.clone(),
                        set_default: entry.set_default,
                    },
                    image: c.image,
                    pinned: c.pinned,
                    recall_fallback: c.recall_fallback,
                });
            }
        }
    }
    out
}

/// The family a launch template entry gets: the one it names, or the policy's only family in
/// the region; with several and none named, the line refusing it.
fn bound_family<'f>(
    scope: &Scope<'_, '_>,
    policy: &Policy,
    entry: &'f LaunchTemplateTarget,
    families: &[&'f String],
    lines: &mut Vec<PublishResult>,
) -> Option<&'f str> {
    match (&entry.family, families) {
        (Some(f), _) => Some(f.as_str()),
        (None, [only]) => Some(only.as_str()),
        (None, _) => {
            let region = scope.region;
            let mut l = keep_line(region, &policy.name, "", None);
            l.target = Some(format!("launch-template:{}", entry.template));
            let names: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
            lines.push(l.with(
                PublishOutcome::Refused,
                format!(
                    "policy `{}` has {} families in {region} ({}): name the family this template gets",
                    policy.name,
                    names.len(),
                    names.join(", ")
                ),
            ));
            None
        }
    }
}
