//! A target account's launch templates: each gets a new version naming the target's AMI (its
//! copy once available, or the shared AMI), as publishing does in the stack's own account
//! ([`crate::jobs::templates`]): a consumer's hold on the default, a template that names its
//! AMI through SSM, and a run that stopped before it set the default are handled the same way.

use super::execute::On;
use super::plan::{self, TemplateFor, Want};
use super::{Action, DistributeLine, Outcome};
use crate::domain::naming::TEMPLATE_VERSION_PREFIX;
use crate::domain::policy::LaunchTemplateTarget;
use crate::domain::tags;
use crate::error::Result;
use crate::jobs::templates;
use crate::ports::LaunchTemplates;

/// Each launch template of the wants' targets names the AMI `named` gives its want (none while
/// the copy is pending); a line for each.
pub async fn publish<E: LaunchTemplates>(
    ec2: &E,
    (wants, named): (&[Want<'_>], &[Option<String>]),
    on: &On<'_>,
    lines: &mut Vec<DistributeLine>,
) {
    for entry in plan::templates(wants, named) {
        let (index, template) = entry.at();
        let mut line = on.line(&wants[index], Action::LaunchTemplate);
        line.launch_template = Some(template.template.clone());
        if let Some(why) = entry.refusal() {
            if matches!(entry, TemplateFor::Ambiguous(..)) {
                line.family = String::new();
            }
            lines.push(line.with(Outcome::Refused, why));
            continue;
        }
        line.image_id = named.get(index).cloned().flatten();
        let Some(image_id) = line.image_id.clone() else {
            let why = "its copy is not available yet: the next sweep publishes it".to_string();
            lines.push(line.with(Outcome::Waiting, why));
            continue;
        };
        let target = (&wants[index], template, image_id.as_str());
        lines.push(match one(ec2, target, on, &mut line).await {
            Ok((outcome, why)) => line.with(outcome, why),
            Err(e) => line.with(
                Outcome::Failed,
                format!(
                    "{} failed: {e}",
                    e.operation().unwrap_or("the launch template call")
                ),
            ),
        });
    }
}

/// One template: what it names now decides whether a version is made.
async fn one<E: LaunchTemplates>(
    ec2: &E,
    (want, template, image_id): (&Want<'_>, &LaunchTemplateTarget, &str),
    on: &On<'_>,
    line: &mut DistributeLine,
) -> Result<(Outcome, Option<String>)> {
    let set_default = template.set_default;
    let Some(state) = ec2.launch_template(&template.template).await? else {
        let why = format!(
            "the account has no launch template `{}` in {}: nothing to publish to here",
            template.template, on.region
        );
        return Ok((Outcome::Unchanged, Some(why)));
    };
    if !state.opted_in {
        let why = format!("the account's team has not opted it in: tag it {} (any value) for the stack to publish to it", tags::PUBLISH_OPT_IN);
        return Ok((Outcome::Refused, Some(why)));
    }
    if let Some(why) = templates::held_by_consumer(&state, set_default) {
        return Ok((Outcome::Kept, Some(why)));
    }
    let current = templates::current(&state, set_default);
    if let Some(alias) = templates::through_parameter(current) {
        let why = format!("it names its AMI through an SSM parameter ({alias}): list that parameter in ssm_parameters instead");
        return Ok((Outcome::Kept, Some(why)));
    }
    if current == Some(image_id) {
        return Ok((Outcome::Unchanged, None));
    }
    if on.dry_run {
        return Ok((Outcome::Planned, None));
    }

    let description = format!(
        "{TEMPLATE_VERSION_PREFIX} {image_id} of {}/{} (distributed from {})",
        want.policy.name, want.family, want.image.id
    );
    let version =
        templates::write_version(ec2, &state, set_default, image_id, &description).await?;
    line.version = Some(version);
    Ok((Outcome::Published, None))
}
