//! Distribution into other accounts (the distribute function): which accounts get a policy's
//! newest promotable AMI of each family, and what each does with it, as EC2 Image Builder's
//! distribution settings do (`targetAccountIds`, SSM parameters in the target account).
//!
//! Each target account runs the role of `target-role.yaml` (deployed over the organization's
//! OUs by a CloudFormation StackSet); the stack assumes it with the deployment's ExternalId.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::LaunchTemplateTarget;
use crate::domain::ids::{AccountId, OrganizationalUnitArn};

/// The accounts a policy distributes to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribute {
    /// Groups of accounts, each with what its accounts get.
    pub targets: Vec<DistributionTarget>,
}

/// Accounts that get the same thing: their own copy, SSM parameters naming the AMI (or their
/// copy), or both.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionTarget {
    /// The target accounts (12 digits each); each is also in the policy's `share.accounts`,
    /// since a target launches or copies the AMI shared with it.
    #[serde(default)]
    pub accounts: BTreeSet<AccountId>,
    /// Organizational units whose accounts are targets, each listed at every sweep through
    /// Organizations (ListAccountsForParent: the OU's own accounts, active ones); each is also in
    /// `share.organizational_units`. Not with `copy`: snapshots are shared with accounts only.
    #[serde(default)]
    pub organizational_units: BTreeSet<OrganizationalUnitArn>,
    /// The target owns its own copy (CopyImage in the target account, encrypted with the
    /// target's key, tagged with its lineage); absent: the target uses the shared AMI.
    #[serde(default)]
    pub copy: Option<TargetCopy>,
    /// SSM parameters in the target account, in each region of the AMI; `{policy}`, `{family}`
    /// and `{region}` are replaced. Each names the target's copy (once available) or, without
    /// `copy`, the shared AMI.
    #[serde(default)]
    pub ssm_parameters: Vec<String>,
    /// Launch templates in the target account, in each region of the AMI, that get a new
    /// version naming the target's copy (once available) or, without `copy`, the shared AMI;
    /// each opts in with the tag `ami-automation:publish` (the target role may change no other).
    #[serde(default)]
    pub launch_templates: Vec<LaunchTemplateTarget>,
}

/// How a target account's copy is made: always encrypted, in the target account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCopy {
    /// The target account's KMS key (id, ARN or alias in the target account); its default EBS
    /// key when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

impl Distribute {
    /// What `account` gets, if the policy distributes to it: by its id, or as a member of
    /// `ou` (the OU a sweep found it in).
    pub fn target(&self, account: &AccountId, ou: Option<&str>) -> Option<&DistributionTarget> {
        self.targets
            .iter()
            .find(|t| t.accounts.contains(account))
            .or_else(|| {
                let ou = ou?;
                self.targets
                    .iter()
                    .find(|t| t.organizational_units.iter().any(|o| o.as_str() == ou))
            })
    }
}

impl super::PolicyDocument {
    /// Every OU some policy distributes to.
    pub fn target_units(&self) -> BTreeSet<OrganizationalUnitArn> {
        self.policies
            .iter()
            .filter_map(|p| p.distribute.as_ref())
            .flat_map(|d| {
                d.targets
                    .iter()
                    .flat_map(|t| t.organizational_units.iter().cloned())
            })
            .collect()
    }

    /// Every account some policy distributes to by its id.
    pub fn target_accounts(&self) -> BTreeSet<AccountId> {
        self.policies
            .iter()
            .filter_map(|p| p.distribute.as_ref())
            .flat_map(|d| d.targets.iter().flat_map(|t| t.accounts.iter().cloned()))
            .collect()
    }
}
