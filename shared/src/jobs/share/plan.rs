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

/// Why an AMI is not shared at all, if it is not: its state, or the promotion gate holds it
/// (nothing is granted before the launch test passed, and nothing already granted is taken
/// away: holding is not unsharing; `AMI Validated` brings the AMI back).
pub fn skip(image: &Image, policy: &Policy) -> Option<String> {
    if let Some(why) = state_skip(&image.state) {
        return Some(why);
    }
    image
        .held_by_gate(policy)
        .map(|why| format!("held by the promotion gate: {why}"))
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

/// Whether a target needs no key policy to use the AMI's customer managed keys: public (EC2
/// never makes an encrypted AMI public) or an account the share grants the keys to.
pub fn granted_or_public(share: &Share, target: &Grant) -> bool {
    let granted = share.kms_grants && matches!(target, Grant::Account(_));
    granted || *target == Grant::Public
}

/// Why an encrypted AMI cannot be shared: its key is AWS managed.
pub fn aws_managed_key_refusal(image_id: &str, key: &str) -> String {
    format!(
        "{image_id} is encrypted with the AWS managed key {key}, which cannot be shared: copy the AMI with a customer managed key granted to the target accounts (CopyImage with KmsKeyId) and share the copy"
    )
}

/// The name of the share's KMS grant for a policy's target account: unique per policy and
/// account, so that policies sharing one key never retire each other's grants, and CreateGrant
/// with it is idempotent.
pub fn grant_name(policy: &str, account: &str) -> String {
    format!("{}{account}", grant_prefix(policy))
}

/// The prefix of every KMS grant the share makes for a policy (`:` cannot be in a policy
/// name, so policy `web` never reads policy `web-prod`'s grants as its own).
pub fn grant_prefix(policy: &str) -> String {
    format!("ami-share:{policy}:")
}

/// The grants to make (accounts) and to retire (grants) on one key, for a policy whose target
/// accounts are `accounts`; `existing` are the key's grants with the policy's prefix.
pub fn grant_diff(
    policy: &str,
    accounts: &BTreeSet<String>,
    existing: &[crate::ports::KeyGrant],
) -> (Vec<String>, Vec<crate::ports::KeyGrant>) {
    let prefix = grant_prefix(policy);
    // Only a grant the share made: its name ends in the account id, its grantee is that
    // account's root.
    let account_of = |g: &crate::ports::KeyGrant| -> Option<String> {
        let account = g.name.strip_prefix(prefix.as_str())?;
        let ours = account.parse::<crate::domain::ids::AccountId>().is_ok()
            && g.grantee.ends_with(&format!(":iam::{account}:root"));
        ours.then(|| account.to_string())
    };
    let granted: BTreeSet<String> = existing.iter().filter_map(account_of).collect();
    let add = accounts
        .iter()
        .filter(|a| !granted.contains(*a))
        .cloned()
        .collect();
    let retire = existing
        .iter()
        .filter(|g| account_of(g).is_some_and(|a| !accounts.contains(&a)))
        .cloned()
        .collect();
    (add, retire)
}

/// The organization id (`o-…`) and, for an OU, its id (`ou-…`), of an organization or OU ARN.
fn org_parts(arn: &str) -> (Option<&str>, Option<&str>) {
    let path = arn.rsplit(':').next().unwrap_or_default();
    let mut parts = path.split('/').skip(1);
    (parts.next(), parts.next())
}

/// The key policy statement that lets an organization's (or an OU's) accounts launch AMIs
/// encrypted with the key: KMS grants cannot name organizations, a key policy can
/// (`aws:PrincipalOrgID`, `aws:PrincipalOrgPaths`).
pub fn org_key_statement(target: &Grant) -> Option<serde_json::Value> {
    let actions = [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncrypt*",
    ];
    let condition = match target {
        Grant::Organization(arn) => {
            serde_json::json!({"StringEquals": {"aws:PrincipalOrgID": org_parts(arn).0?}})
        }
        Grant::OrganizationalUnit(arn) => {
            let (org, ou) = org_parts(arn);
            serde_json::json!({"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [format!("{}/*/{}/*", org?, ou?)]}})
        }
        _ => return None,
    };
    Some(serde_json::json!({
        "Sid": "LaunchSharedAmis",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": "*",
        "Condition": condition,
    }))
}

/// Whether a key policy already lets `target` use the key to launch: an `Allow` statement with
/// `kms:Decrypt` and `kms:CreateGrant` (or a wildcard covering them) for the account (its root
/// or its id as principal), or conditioned on the organization or OU.
pub fn key_policy_allows(policy: &str, target: &Grant) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return false;
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(s) => s.clone(),
        single @ serde_json::Value::Object(_) => vec![single.clone()],
        _ => return false,
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    statements.iter().any(|st| {
        let actions = strings(&st["Action"]);
        let covers = |wanted: &str| {
            actions
                .iter()
                .any(|a| a == "kms:*" || a == "*" || a.eq_ignore_ascii_case(wanted))
        };
        if st["Effect"] != "Allow" || !covers("kms:Decrypt") || !covers("kms:CreateGrant") {
            return false;
        }
        let principals = strings(&st["Principal"]["AWS"]);
        let condition = st["Condition"].to_string();
        match target {
            Grant::Account(account) => principals
                .iter()
                .any(|p| p == account || p.ends_with(&format!(":{account}:root"))),
            Grant::Organization(arn) => org_parts(arn).0.is_some_and(|org| {
                condition.contains("aws:PrincipalOrgID") && condition.contains(org)
            }),
            Grant::OrganizationalUnit(arn) => {
                let (org, ou) = org_parts(arn);
                (org.is_some_and(|o| {
                    condition.contains("aws:PrincipalOrgID") && condition.contains(o)
                })) || ou.is_some_and(|ou| {
                    condition.contains("aws:PrincipalOrgPaths") && condition.contains(ou)
                })
            }
            Grant::Public => false,
        }
    })
}
