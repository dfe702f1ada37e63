//! What each stage of a policy does: build, share, copy, retain, validate, publish.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::TagPattern;
use crate::domain::ids::{AccountId, OrganizationArn, OrganizationalUnitArn, Region};

/// CreateImage settings (the build function).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Instances carrying these tags are imaged.
    pub instance_tags: BTreeMap<String, TagPattern>,
    /// Image without rebooting the instance (the file systems may be inconsistent).
    #[serde(default = "default_no_reboot")]
    pub no_reboot: bool,
    /// Also image an instance when it stops (`EC2 Instance State-change Notification`).
    #[serde(default)]
    pub on_stop: bool,
    /// The AMI name: `{policy}`, `{instance_id}`, `{timestamp}`, `{date}` are replaced.
    #[serde(default = "default_name_template")]
    pub name_template: String,
    /// Tags put on the image and its snapshots at creation.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_name_template() -> String {
    "{policy}-{instance_id}-{timestamp}".into()
}

fn default_no_reboot() -> bool {
    true
}

/// Launch permissions (the share function).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// Accounts that may launch the AMI.
    #[serde(default)]
    pub accounts: BTreeSet<AccountId>,
    /// Organizations whose accounts may launch it.
    #[serde(default)]
    pub organizations: BTreeSet<OrganizationArn>,
    /// Organizational units whose accounts may launch it.
    #[serde(default)]
    pub organizational_units: BTreeSet<OrganizationalUnitArn>,
    /// Everyone may launch it: only when the deployment allows public sharing.
    #[serde(default)]
    pub public: bool,
    /// Also give the accounts createVolumePermission on the AMI's snapshots.
    #[serde(default)]
    pub snapshots: bool,
    /// For an AMI encrypted with a customer managed KMS key: give each target account a KMS
    /// grant on the key (the operations launching needs), and retire it when the account is no
    /// longer a target.
    #[serde(default)]
    pub kms_grants: bool,
}

/// Copies into other regions (the copy function).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyPolicy {
    /// Destination regions and how the copy there is encrypted.
    pub regions: BTreeMap<Region, CopyDestination>,
}

/// How a copy is made in one destination region.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyDestination {
    /// Encrypt the copy's snapshots.
    #[serde(default)]
    pub encrypted: bool,
    /// The KMS key (id, ARN or alias) of the destination region; the default EBS key when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// Retention (the age-out function).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retain {
    /// The newest N AMIs of each family are always kept.
    #[serde(default = "default_keep_latest")]
    pub keep_latest: u32,
    /// Deregister (with the snapshots) AMIs older than this.
    #[serde(default)]
    pub max_age_days: Option<u32>,
    /// Deprecate AMIs older than this.
    #[serde(default)]
    pub deprecate_after_days: Option<u32>,
    /// Disable AMIs older than this.
    #[serde(default)]
    pub disable_after_days: Option<u32>,
    /// An AMI with any of these tags is never retired.
    #[serde(default)]
    pub protect_tags: BTreeMap<String, TagPattern>,
    /// Keep AMIs shared with other accounts.
    #[serde(default)]
    pub exclude_shared: bool,
    /// Keep AMIs launched within this many days (EC2's `LastLaunchedTime`).
    #[serde(default)]
    pub exclude_launched_within_days: u32,
    /// What counts as "in use".
    #[serde(default)]
    pub in_use: InUse,
    /// Delete snapshots left behind by earlier deregistrations (else only reported).
    #[serde(default)]
    pub delete_orphan_snapshots: bool,
    /// Disable AMIs that are shared although the policy shares: DisableImage removes every
    /// launch permission, so by default such AMIs are kept until they are deregistered.
    #[serde(default)]
    pub disable_shared_images: bool,
    /// Allow `keep_latest: 0`, with which a family can lose its last AMI.
    #[serde(default)]
    pub allow_empty_family: bool,
    /// How old an AMI usage report may be and still prove that no other account uses a shared
    /// AMI (hours, 1 to 720; EC2 keeps reports 30 days). A shared AMI without such a report is
    /// kept from being disabled or deregistered (`consumer_usage_unknown`), and a report is
    /// requested for the next run.
    #[serde(default = "default_consumer_report_max_age_hours")]
    pub consumer_report_max_age_hours: u32,
    /// Turn deregistration protection on (with EC2's 24-hour cooldown) for the newest N
    /// launchable AMIs of each family, and off again for those it protected once they fall out
    /// of the newest N (0: off). While protected, nobody can deregister them.
    #[serde(default)]
    pub protect_latest: u32,
    /// Deregister an AMI only when the Recycle Bin will keep it and every snapshot deleted with
    /// it, so that the deregistration can be undone (else kept as `not_recoverable`).
    #[serde(default)]
    pub require_recoverable: bool,
}

fn default_keep_latest() -> u32 {
    1
}

/// The launch test (the publish function): each new AMI is launched once, and it passes when
/// the instance runs, both status checks are `ok` and (when set) the console output contains
/// `console_contains`, all within `timeout_minutes`. The instance is then terminated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// The test instance's type (`t3.micro`, ...), of the AMI's architecture.
    pub instance_type: String,
    /// The subnet (`subnet-...`) the test instance runs in.
    pub subnet_id: String,
    /// The security groups (`sg-...`, 1 to 5) of the test instance.
    pub security_group_ids: Vec<String>,
    /// The instance profile (name or ARN) the test instance runs with, if any.
    #[serde(default)]
    pub instance_profile: Option<String>,
    /// How long the test may take, from the launch (1 to 240 minutes).
    #[serde(default = "default_timeout_minutes")]
    pub timeout_minutes: u32,
    /// A string the boot console output must contain (GetConsoleOutput).
    #[serde(default)]
    pub console_contains: Option<String>,
}

fn default_timeout_minutes() -> u32 {
    15
}

/// Where the newest AMI of each family is published (the publish function).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// SSM parameter names; `{policy}`, `{family}` and `{region}` are replaced. Each is set
    /// (String, data type `aws:ec2:image`) in every region where the AMI or its copy is.
    #[serde(default)]
    pub ssm_parameters: Vec<String>,
    /// Launch templates that get a new version with the AMI.
    #[serde(default)]
    pub launch_templates: Vec<LaunchTemplateTarget>,
}

/// A launch template to publish to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateTarget {
    /// The template's id (`lt-...`) or name, in the region it is in.
    pub template: String,
    /// The family whose AMI it gets (needed when the policy has several families).
    #[serde(default)]
    pub family: Option<String>,
    /// Also make the new version the template's default.
    #[serde(default)]
    pub set_default: bool,
}

impl LaunchTemplateTarget {
    /// Whether `template` is an id (`lt-` and 17 hex digits) rather than a name.
    pub fn is_id(&self) -> bool {
        self.template
            .strip_prefix("lt-")
            .is_some_and(|h| h.len() == 17 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// The SSM parameter name a `publish.ssm_parameters` template gives.
pub fn render_parameter(template: &str, policy: &str, family: &str, region: &str) -> String {
    template
        .replace("{policy}", policy)
        .replace("{family}", family)
        .replace("{region}", region)
}

/// Why `name` is not a valid SSM parameter name, if it is not (SSM API reference,
/// PutParameter `Name`: 1 to 1011 characters of `a-zA-Z0-9_.-/`, a path starts with `/` and has
/// at most 15 levels, and no name begins with `aws` or `ssm`).
pub fn parameter_name_problem(name: &str) -> Option<String> {
    let bare = name.trim_start_matches('/').to_ascii_lowercase();
    if name.is_empty() || name.len() > 1011 {
        Some(format!(
            "{} characters: an SSM parameter name has 1 to 1011",
            name.len()
        ))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        Some(format!(
            "`{c}` is not allowed: use letters, digits, `_`, `.`, `-` and `/`"
        ))
    } else if name.contains('/') && !name.starts_with('/') {
        Some("a name with a path starts with `/` (`/ami/web/latest`)".into())
    } else if name.matches('/').count() > 15 {
        Some("more than 15 levels: SSM allows at most 15".into())
    } else if name.contains("//") || name.ends_with('/') {
        Some("an empty path level: remove the doubled or trailing `/`".into())
    } else if bare.starts_with("aws") || bare.starts_with("ssm") {
        Some("a name may not begin with `aws` or `ssm` (reserved by SSM)".into())
    } else {
        None
    }
}

fn default_consumer_report_max_age_hours() -> u32 {
    24
}

/// What counts as "in use" beyond running and stopped instances.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InUse {
    /// Which launch template versions protect the AMIs they name.
    #[serde(default)]
    pub launch_template_versions: TemplateDepth,
}

/// Launch template versions that count: `"all"`, `"default-and-latest"`, or a number N (the
/// newest N versions plus `$Default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemplateDepth {
    /// Every version.
    #[default]
    All,
    /// `$Default` and `$Latest` only.
    DefaultAndLatest,
    /// The newest N versions, plus `$Default`.
    Newest(u32),
}

impl TemplateDepth {
    /// The deeper of two depths (every version is deepest; `$Default` and `$Latest` shallowest).
    pub fn deeper(self, other: TemplateDepth) -> TemplateDepth {
        match (self, other) {
            (TemplateDepth::All, _) | (_, TemplateDepth::All) => TemplateDepth::All,
            (TemplateDepth::Newest(a), TemplateDepth::Newest(b)) => TemplateDepth::Newest(a.max(b)),
            (TemplateDepth::Newest(a), _) | (_, TemplateDepth::Newest(a)) => {
                TemplateDepth::Newest(a)
            }
            _ => TemplateDepth::DefaultAndLatest,
        }
    }

    /// The `version-depth` (1 to 10000, EC2's default 20) an AMI usage report needs for
    /// launch templates in other accounts to count as this depth says. Never fewer than EC2's
    /// default, since a consumer's `$Default` version may be older than its newest.
    pub fn consumer_report_depth(self) -> u32 {
        match self {
            TemplateDepth::All => 10_000,
            TemplateDepth::DefaultAndLatest => 20,
            TemplateDepth::Newest(n) => n.clamp(20, 10_000),
        }
    }
}

impl Serialize for TemplateDepth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            TemplateDepth::All => s.serialize_str("all"),
            TemplateDepth::DefaultAndLatest => s.serialize_str("default-and-latest"),
            TemplateDepth::Newest(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for TemplateDepth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "all" => Ok(TemplateDepth::All),
            serde_json::Value::String(s) if s == "default-and-latest" => Ok(TemplateDepth::DefaultAndLatest),
            serde_json::Value::Number(n) if n.as_u64().is_some_and(|n| (1..=u32::MAX as u64).contains(&n)) => {
                Ok(TemplateDepth::Newest(n.as_u64().unwrap_or(1) as u32))
            }
            other => Err(D::Error::custom(format!(
                "`{other}`: launch_template_versions is \"all\", \"default-and-latest\" or a number of newest versions (1 or more)"
            ))),
        }
    }
}
