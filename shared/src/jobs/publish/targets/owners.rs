//! Who owns each destination. Decided over every publishing policy and every family with an
//! AMI in the region, whatever this run's filter, pin or promotable AMIs: a destination that two
//! families could write is refused even while only one of them has an AMI to publish (a sweep
//! must not flip between publishing and refusing it, and a rollback or a filtered run must not
//! write what another family's consumers read).

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::{render_parameter, PolicyDocument};

/// Each publishing policy's families with an AMI in the region, by policy name.
pub type Families<'a> = BTreeMap<&'a str, BTreeSet<String>>;

/// A family of a policy that writes a destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner<'a> {
    pub policy: &'a str,
    pub family: &'a str,
}

/// Each publishing policy's families with an AMI in the region.
pub fn families<'a>(images: &[Image], document: &'a PolicyDocument) -> Families<'a> {
    let mut out: Families<'a> = BTreeMap::new();
    for image in images {
        if let Some(policy) = image.policy_in(document).filter(|p| p.publish.is_some()) {
            out.entry(policy.name.as_str())
                .or_default()
                .insert(image.family(&policy.family_by));
        }
    }
    out
}

/// Each SSM parameter name the region's families render, with every family that writes it.
pub fn parameter_owners<'a>(
    document: &'a PolicyDocument,
    families: &'a Families<'a>,
    region: &Region,
) -> BTreeMap<String, Vec<Owner<'a>>> {
    let mut owners: BTreeMap<String, Vec<Owner<'a>>> = BTreeMap::new();
    for policy in document.policies.iter().filter(|p| p.publish.is_some()) {
        for family in families.get(policy.name.as_str()).into_iter().flatten() {
            for template in policy.publish.iter().flat_map(|p| &p.ssm_parameters) {
                let name = render_parameter(template, &policy.name, family, region.as_str());
                owners.entry(name).or_default().push(Owner {
                    policy: policy.name.as_str(),
                    family: family.as_str(),
                });
            }
        }
    }
    owners
}
