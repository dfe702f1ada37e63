//! The share's decisions, pure: which AMIs a run reconciles, the permissions a policy asks
//! for, the changes that reach them, and when public is refused.

use std::collections::BTreeSet;

use super::{ShareOutcome, ShareResult};
use crate::domain::grant::Grant;
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{Policy, PolicyDocument, Share};

/// The launch permissions a policy asks for. Public only when the deployment allows it too.
pub fn desired(share: &Share, allow_public: bool) -> BTreeSet<Grant> {
    let mut out: BTreeSet<Grant> = share
        .accounts
        .iter()
        .map(|a| Grant::Account(a.to_string()))
        .collect();
    out.extend(
        share
            .organizations
            .iter()
            .map(|o| Grant::Organization(o.to_string())),
    );
    out.extend(
        share
            .organizational_units
            .iter()
            .map(|o| Grant::OrganizationalUnit(o.to_string())),
    );
    if share.public && allow_public {
        out.insert(Grant::Public);
    }
    out
}

/// The createVolumePermission the snapshots get: the accounts of `wanted`, never public
/// (needed to copy the AMI into those accounts).
pub fn snapshot_grants(wanted: &BTreeSet<Grant>) -> BTreeSet<Grant> {
    wanted
        .iter()
        .filter(|g| matches!(g, Grant::Account(_)))
        .cloned()
        .collect()
}

/// The additions and removals that make `current` equal to `wanted`.
pub fn diff(current: &BTreeSet<Grant>, wanted: &BTreeSet<Grant>) -> (Vec<Grant>, Vec<Grant>) {
    (
        wanted.difference(current).cloned().collect(),
        current.difference(wanted).cloned().collect(),
    )
}

/// The policy that shares an image: the first that manages it, if it has `share`.
pub fn sharing_policy<'a>(document: &'a PolicyDocument, image: &Image) -> Option<&'a Policy> {
    image.policy_in(document).filter(|p| p.share.is_some())
}

/// The AMIs a run reconciles with their policies, and a line for each asked-for AMI that it
/// does not (not the account's, or no policy shares it).
pub fn select<'a>(
    images: &'a [Image],
    image_ids: Option<&[String]>,
    policies: Option<&[String]>,
    document: &'a PolicyDocument,
    region: &Region,
) -> (Vec<(&'a Image, &'a Policy)>, Vec<ShareResult>) {
    let mut lines = Vec::new();
    let mut work = Vec::new();
    match image_ids {
        Some(ids) => {
            for id in ids {
                match images.iter().find(|i| &i.id == id) {
                    Some(image) => match sharing_policy(document, image) {
                        Some(p) => work.push((image, p)),
                        None => lines.push(ShareResult::new(id, region, "").with(
                            ShareOutcome::Skipped,
                            "no policy with `share` manages this AMI".to_string(),
                        )),
                    },
                    None => lines.push(ShareResult::new(id, region, "").with(
                        ShareOutcome::Refused,
                        format!("{id} is not an AMI of the account in {region} (unknown, or owned by another account)"),
                    )),
                }
            }
        }
        None => work.extend(
            images
                .iter()
                .filter_map(|i| sharing_policy(document, i).map(|p| (i, p))),
        ),
    }
    work.retain(|(_, p)| policies.is_none_or(|ps| ps.contains(&p.name)));
    (work, lines)
}

/// Why an AMI in this state is not shared, if it is not: only available AMIs are.
pub fn state_skip(state: &ImageState) -> Option<String> {
    match state {
        ImageState::Available => None,
        ImageState::Disabled => {
            Some("disabled: a disabled AMI cannot be shared (enable it first)".into())
        }
        other => Some(format!("{other}: only available AMIs are shared")),
    }
}

/// The finding when reconciling removes public from an AMI.
pub fn public_finding(image_id: &str, policy: &str, policy_asks_public: bool) -> String {
    format!(
        "{image_id} is public but its policy `{policy}` does not allow it{}: made private",
        if policy_asks_public {
            " (the deployment does not allow public sharing)"
        } else {
            ""
        }
    )
}

/// Why EC2 would never make this AMI public, if it would not (ModifyImageAttribute refuses
/// encrypted AMIs and AMIs with product codes).
pub fn never_public(image: &Image) -> Option<String> {
    if image.encrypted {
        Some("it is encrypted (EC2 never makes an AMI with encrypted snapshots public)".into())
    } else if image.has_product_codes {
        Some("it has product codes (EC2 never makes such an AMI public)".into())
    } else {
        None
    }
}

/// Why an encrypted AMI cannot be shared: its key is AWS managed.
pub fn aws_managed_key_refusal(image_id: &str, key: &str) -> String {
    format!(
        "{image_id} is encrypted with the AWS managed key {key}, which cannot be shared: copy the AMI with a customer managed key granted to the target accounts (CopyImage with KmsKeyId) and share the copy"
    )
}
