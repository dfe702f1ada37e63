//! The policy document: one JSON document that drives every function.
//!
//! It is loaded once at cold start from `AMI_POLICIES` (inline JSON) or `AMI_POLICIES_FILE` (a
//! path). Unknown fields are errors (a typo must not silently disable a safety rule) and every
//! error names the JSON path of the bad field and what is allowed there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::ids::{AccountId, OrganizationArn, OrganizationalUnitArn, Region};
use crate::error::{Error, Result};

/// The whole document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The default of every run request's `dry_run`. Deleting is opt-in: true unless set.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// The policies, in order: an image that two policies select belongs to the first.
    pub policies: Vec<Policy>,
}

fn yes() -> bool {
    true
}

/// One policy: which AMIs it selects and what each stage does with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A unique name: letters, digits, `-` and `_`, at most 64 characters.
    pub name: String,
    /// Which AMIs the policy manages (besides those tagged `ami-automation:policy=<name>`).
    #[serde(default)]
    pub select: Select,
    /// How AMIs are grouped into families for retention.
    #[serde(default)]
    pub family_by: FamilyBy,
    /// CreateImage / RegisterImage settings.
    #[serde(default)]
    pub build: Option<Build>,
    /// Launch and snapshot permissions.
    #[serde(default)]
    pub share: Option<Share>,
    /// Copies into other regions.
    #[serde(default)]
    pub copy: Option<CopyPolicy>,
    /// Deprecation, disabling and deregistration.
    #[serde(default)]
    pub retain: Option<Retain>,
    /// The launch test a new AMI passes before it is shared, copied or published.
    #[serde(default)]
    pub validate: Option<Validate>,
    /// Where the newest (validated) AMI of each family is published: SSM parameters and
    /// launch templates.
    #[serde(default)]
    pub publish: Option<Publish>,
}

/// What AMIs a policy selects. Every field given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Tags the AMI must carry; a value of `*` means any value, `prefix*` any value with that prefix.
    #[serde(default)]
    pub tags: BTreeMap<String, TagPattern>,
    /// The AMI name, with `*` (any run of characters) and `?` (one character) as wildcards.
    #[serde(default)]
    pub name_pattern: Option<NamePattern>,
    /// Architectures (`i386`, `x86_64`, `arm64`); empty means any.
    #[serde(default)]
    pub architectures: Vec<Architecture>,
    /// `linux` or `windows`.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// `ebs` or `instance-store`.
    #[serde(default)]
    pub root_device_type: Option<RootDeviceType>,
    /// `hvm` or `paravirtual`.
    #[serde(default)]
    pub virtualization_type: Option<VirtualizationType>,
}

impl Select {
    /// Whether the select names anything that narrows the AMIs (tags or a name pattern). A policy
    /// without either manages only the AMIs tagged with its name.
    pub fn narrows(&self) -> bool {
        !self.tags.is_empty() || self.name_pattern.is_some()
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] #[doc = $text] $variant),+
        }
        impl $name {
            /// The value as EC2 spells it.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// An AMI architecture.
    Architecture { I386 = "i386", X86_64 = "x86_64", Arm64 = "arm64" }
);
string_enum!(
    /// An AMI platform (EC2 reports `windows`, or nothing for Linux/UNIX).
    Platform { Linux = "linux", Windows = "windows" }
);
string_enum!(
    /// Where the AMI's root device lives.
    RootDeviceType { Ebs = "ebs", InstanceStore = "instance-store" }
);
string_enum!(
    /// The AMI's virtualization type.
    VirtualizationType { Hvm = "hvm", Paravirtual = "paravirtual" }
);

/// A tag value to match: any value (`*`), a prefix (`web-*`) or an exact value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TagPattern {
    /// `*`: the tag must exist, with any value.
    Any,
    /// `prefix*`: the value starts with the prefix.
    Prefix(String),
    /// The value is exactly this.
    Exact(String),
}

impl TagPattern {
    /// Whether a tag value matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TagPattern::Any => true,
            TagPattern::Prefix(p) => value.starts_with(p.as_str()),
            TagPattern::Exact(v) => value == v,
        }
    }
}

impl TryFrom<String> for TagPattern {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.find('*') {
            None => Ok(TagPattern::Exact(s)),
            Some(_) if s == "*" => Ok(TagPattern::Any),
            Some(i) if i == s.len() - 1 => Ok(TagPattern::Prefix(s[..i].to_string())),
            Some(_) => Err(format!(
                "`{s}`: a tag value takes `*` only alone (any value) or at the end (`prefix*`)"
            )),
        }
    }
}

impl From<TagPattern> for String {
    fn from(p: TagPattern) -> String {
        match p {
            TagPattern::Any => "*".into(),
            TagPattern::Prefix(p) => format!("{p}*"),
            TagPattern::Exact(v) => v,
        }
    }
}

/// An AMI name pattern with `*` and `?` wildcards, as EC2's `name` filter takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(String);

impl NamePattern {
    /// Whether a name matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl TryFrom<String> for NamePattern {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err(format!("`{s}`: a name pattern has 1 to 128 characters"));
        }
        Ok(NamePattern(s))
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.0
    }
}

/// How a policy groups its AMIs into families: `tag:<Key>` (the tag's value; AMIs without the
/// tag fall back to the name prefix) or `name_prefix` (the name without its trailing
/// timestamp or build-number segments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FamilyBy {
    /// The value of this tag.
    Tag(String),
    /// The name without its trailing date/number segments.
    #[default]
    NamePrefix,
}

impl TryFrom<String> for FamilyBy {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.strip_prefix("tag:") {
            Some(key) if !key.is_empty() && !key.contains('*') => {
                Ok(FamilyBy::Tag(key.to_string()))
            }
            _ if s == "name_prefix" => Ok(FamilyBy::NamePrefix),
            _ => Err(format!(
                "`{s}`: family_by is `tag:<TagKey>` or `name_prefix`"
            )),
        }
    }
}

impl From<FamilyBy> for String {
    fn from(f: FamilyBy) -> String {
        match f {
            FamilyBy::Tag(k) => format!("tag:{k}"),
            FamilyBy::NamePrefix => "name_prefix".into(),
        }
    }
}

/// The family key of an AMI name: the name without its trailing segments made only of digits
/// (and the `T`/`Z` of a timestamp), so `web-20260101T120000Z` and `web-42` are both `web`.
pub fn name_prefix(name: &str) -> &str {
    let mut end = name.len();
    loop {
        let head = &name[..end];
        let Some(cut) = head.rfind(['-', '_', '.', ' ']) else {
            break;
        };
        let segment = &head[cut + 1..];
        let stamp = !segment.is_empty()
            && segment.starts_with(|c: char| c.is_ascii_digit())
            && segment
                .chars()
                .all(|c| c.is_ascii_digit() || c == 'T' || c == 'Z');
        if !stamp || cut == 0 {
            break;
        }
        end = cut;
    }
    &name[..end]
}

/// CreateImage settings (the build function).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Instances carrying these tags are imaged.
    pub instance_tags: BTreeMap<String, TagPattern>,
    /// Image without rebooting the instance (the file systems may be inconsistent).
    #[serde(default = "yes")]
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
    #[serde(default = "one")]
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
    #[serde(default = "one_day")]
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

fn one() -> u32 {
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
    #[serde(default = "fifteen")]
    pub timeout_minutes: u32,
    /// A string the boot console output must contain (GetConsoleOutput).
    #[serde(default)]
    pub console_contains: Option<String>,
}

fn fifteen() -> u32 {
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

fn one_day() -> u32 {
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

/// Settings of the deployment that constrain the document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deployment {
    /// `ALLOW_PUBLIC_SHARING=true`: policies may make AMIs public.
    pub allow_public_sharing: bool,
    /// The partition of the deployment's region (`aws`, `aws-cn`, `aws-us-gov`); `None` is
    /// read as `aws`. CopyImage does not cross partitions.
    pub partition: Option<&'static str>,
}

impl PolicyDocument {
    /// Parses and validates a document; the error names the JSON path of the bad field.
    pub fn parse(json: &str, deployment: Deployment) -> Result<Self> {
        // A key given twice is refused before anything else reads the document: which of the
        // two a reader keeps is undefined, and a safety switch must not depend on it.
        if let Ok(crate::domain::payload::Payload {
            duplicate: Some(path),
            ..
        }) = crate::domain::payload::Payload::from_json(json)
        {
            return Err(Error::config(
                path,
                "this key is given twice in its object: give each key once",
            ));
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let doc: PolicyDocument = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            Error::config(
                if path == "." {
                    "$".into()
                } else {
                    format!("$.{path}")
                },
                e.into_inner().to_string(),
            )
        })?;
        doc.validate(deployment)?;
        Ok(doc)
    }

    /// The policy with this name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Checks what the types alone cannot: unique names, contradictions, public sharing.
    fn validate(&self, deployment: Deployment) -> Result<()> {
        if self.policies.is_empty() {
            return Err(Error::config(
                "$.policies",
                "the policy list is empty: add at least one policy",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = |field: &str| format!("$.policies[{i}].{field}");
            let valid_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(Error::config(
                    at("name"),
                    format!(
                        "`{}`: a policy name has 1 to 64 letters, digits, `-` or `_`",
                        p.name
                    ),
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(Error::config(
                    at("name"),
                    format!("`{}` names two policies: names are unique", p.name),
                ));
            }
            if let Some(key) = p
                .select
                .tags
                .keys()
                .chain(p.retain.iter().flat_map(|r| r.protect_tags.keys()))
                .find(|k| k.contains('*') || k.is_empty())
            {
                return Err(Error::config(
                    at("select.tags"),
                    format!("`{key}`: a tag key is literal: no `*`, not empty"),
                ));
            }
            if p.build.is_none()
                && p.share.is_none()
                && p.copy.is_none()
                && p.retain.is_none()
                && p.validate.is_none()
                && p.publish.is_none()
            {
                return Err(Error::config(
                    format!("$.policies[{i}]"),
                    "the policy does nothing: add at least one of build, share, copy, retain, validate, publish",
                ));
            }
            if let Some(v) = &p.validate {
                validate_validate(v, &at)?;
            }
            if let Some(publish) = &p.publish {
                validate_publish(publish, &p.name, &at)?;
            }
            if let Some(build) = &p.build {
                let longest = "i-0123456789abcdef0";
                let sample = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
                crate::domain::naming::render_name(&build.name_template, &p.name, longest, sample)
                    .map_err(|m| Error::config(at("build.name_template"), m))?;
                if let Some(key) = build
                    .tags
                    .keys()
                    .find(|k| k.starts_with(crate::domain::tags::RESERVED_PREFIX))
                {
                    return Err(Error::config(
                        at(&format!("build.tags.{key}")),
                        format!(
                            "`{key}`: keys beginning with `{}` are the tool's own state (verdicts, lineage, pins) and cannot be set by a policy: choose another key",
                            crate::domain::tags::RESERVED_PREFIX
                        ),
                    ));
                }
                if build.instance_tags.is_empty() {
                    return Err(Error::config(
                        at("build.instance_tags"),
                        "empty: name at least one tag, so that only the instances meant to be imaged are",
                    ));
                }
                for (key, pattern) in &build.instance_tags {
                    if key.is_empty() || key.contains('*') {
                        return Err(Error::config(
                            at("build.instance_tags"),
                            format!("`{key}`: a tag key is literal (no `*`, not empty): a wildcard key would image every instance of the account"),
                        ));
                    }
                    if *pattern == TagPattern::Exact(String::new()) {
                        return Err(Error::config(
                            at(&format!("build.instance_tags.{key}")),
                            "an empty value: give the value (or `*` for any value of this tag)",
                        ));
                    }
                }
            }
            if let Some(share) = &p.share {
                if share.public && !deployment.allow_public_sharing {
                    return Err(Error::config(
                        at("share.public"),
                        "public sharing is not allowed by this deployment: set public to false, or deploy with AllowPublicSharing=true (ALLOW_PUBLIC_SHARING=true)",
                    ));
                }
            }
            if let Some(copy) = &p.copy {
                validate_copy(copy, p.share.is_some(), deployment, &at)?;
            }
            if let Some(r) = &p.retain {
                validate_retain(r, &at)?;
            }
        }
        Ok(())
    }
}

fn validate_copy(
    copy: &CopyPolicy,
    shares: bool,
    deployment: Deployment,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    let home = deployment.partition.unwrap_or("aws");
    for (region, how) in &copy.regions {
        let here = |field: &str| at(&format!("copy.regions.{region}{field}"));
        if region.partition() != home {
            return Err(Error::config(
                here(""),
                format!(
                    "`{region}` is in the {} partition and this deployment in {home}: CopyImage does not cross partitions (use CreateStoreImageTask, or deploy the stack in that partition)",
                    region.partition()
                ),
            ));
        }
        if how.kms_key_id.is_some() && !how.encrypted {
            return Err(Error::config(
                here(".kms_key_id"),
                "a KMS key with encrypted false: set encrypted to true, or remove kms_key_id",
            ));
        }
        if how.encrypted && how.kms_key_id.is_none() && shares {
            return Err(Error::config(
                here(".kms_key_id"),
                "missing: the policy shares its AMIs, and a copy encrypted with the AWS managed key (the default) cannot be shared; set a customer managed key of that region",
            ));
        }
    }
    Ok(())
}

fn validate_validate(v: &Validate, at: &dyn Fn(&str) -> String) -> Result<()> {
    let family_size = v.instance_type.split_once('.');
    let well_formed = family_size.is_some_and(|(f, s)| {
        !f.is_empty()
            && !s.is_empty()
            && v.instance_type.len() <= 64
            && v.instance_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    if !well_formed {
        return Err(Error::config(
            at("validate.instance_type"),
            format!(
                "`{}` is not an instance type: give family and size, as `t3.micro` or `m7g.large`",
                v.instance_type
            ),
        ));
    }
    crate::domain::ids::check_resource_id("subnet", &v.subnet_id)
        .map_err(|m| Error::config(at("validate.subnet_id"), m))?;
    if v.security_group_ids.is_empty() || v.security_group_ids.len() > 5 {
        return Err(Error::config(
            at("validate.security_group_ids"),
            format!(
                "{} entries: give 1 to 5 security groups (`sg-...`) of the subnet's VPC",
                v.security_group_ids.len()
            ),
        ));
    }
    for (j, sg) in v.security_group_ids.iter().enumerate() {
        crate::domain::ids::check_resource_id("sg", sg)
            .map_err(|m| Error::config(at(&format!("validate.security_group_ids[{j}]")), m))?;
    }
    if let Some(profile) = &v.instance_profile {
        let name = profile.rsplit('/').next().unwrap_or(profile);
        let arn_ok = !profile.starts_with("arn:")
            || (profile.contains(":iam::") && profile.contains(":instance-profile/"));
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b));
        if !arn_ok || !name_ok {
            return Err(Error::config(
                at("validate.instance_profile"),
                format!("`{profile}`: give an instance profile name (1 to 128 of letters, digits and +=,.@-_) or its ARN (arn:aws:iam::<account>:instance-profile/<name>)"),
            ));
        }
    }
    if !(1..=240).contains(&v.timeout_minutes) {
        return Err(Error::config(
            at("validate.timeout_minutes"),
            format!(
                "{} is out of range: set 1 to 240 minutes (status checks take a few minutes after boot)",
                v.timeout_minutes
            ),
        ));
    }
    if let Some(text) = &v.console_contains {
        if text.is_empty() || text.len() > 1024 {
            return Err(Error::config(
                at("validate.console_contains"),
                "give 1 to 1024 characters that the boot console output must contain, or leave it out",
            ));
        }
    }
    Ok(())
}

fn validate_publish(p: &Publish, policy: &str, at: &dyn Fn(&str) -> String) -> Result<()> {
    if p.ssm_parameters.is_empty() && p.launch_templates.is_empty() {
        return Err(Error::config(
            at("publish"),
            "publishes nowhere: list ssm_parameters or launch_templates (or remove publish)",
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, template) in p.ssm_parameters.iter().enumerate() {
        let here = at(&format!("publish.ssm_parameters[{j}]"));
        if let Some(bad) = template
            .match_indices('{')
            .map(|(k, _)| &template[k..])
            .find(|rest| {
                !["{policy}", "{family}", "{region}"]
                    .iter()
                    .any(|v| rest.starts_with(v))
            })
        {
            return Err(Error::config(
                here,
                format!(
                    "`{}`: only {{policy}}, {{family}} and {{region}} are replaced",
                    bad.split('}').next().unwrap_or(bad)
                ),
            ));
        }
        // The longest family and region a name can get must still make a valid name.
        let sample = render_parameter(template, policy, &"f".repeat(128), "ap-southeast-5");
        if let Some(problem) = parameter_name_problem(&sample) {
            return Err(Error::config(here, format!("`{template}`: {problem}")));
        }
        if !seen.insert(template) {
            return Err(Error::config(
                here,
                format!("`{template}` is listed twice: list each parameter once"),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (j, target) in p.launch_templates.iter().enumerate() {
        let here = at(&format!("publish.launch_templates[{j}].template"));
        let t = &target.template;
        let name_ok = t.len() >= 3
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"()./_-".contains(&b));
        if t.starts_with("lt-") && !target.is_id() || !name_ok {
            return Err(Error::config(
                here,
                format!("`{t}`: give a launch template id (`lt-` and 17 hex digits) or name (3 to 128 of letters, digits and ()./_-)"),
            ));
        }
        if !seen.insert((t, target.family.as_deref())) {
            return Err(Error::config(
                here,
                format!("`{t}` is listed twice for the same family: list it once"),
            ));
        }
        if target.family.as_ref().is_some_and(|f| f.is_empty()) {
            return Err(Error::config(
                at(&format!("publish.launch_templates[{j}].family")),
                "empty: name the family, or leave it out when the policy has one family",
            ));
        }
    }
    Ok(())
}

fn validate_retain(r: &Retain, at: &dyn Fn(&str) -> String) -> Result<()> {
    if r.keep_latest == 0 && !r.allow_empty_family {
        return Err(Error::config(
            at("retain.keep_latest"),
            "0 lets a family lose its last AMI: set keep_latest to 1 or more, or set \"allow_empty_family\": true if that is what you want",
        ));
    }
    if r.keep_latest == 0
        && r.max_age_days.is_none()
        && r.deprecate_after_days.is_none()
        && r.disable_after_days.is_none()
    {
        return Err(Error::config(
            at("retain"),
            "keep_latest is 0 and no age is set: set keep_latest to 1 or more, or one of max_age_days, deprecate_after_days, disable_after_days",
        ));
    }
    for (field, days) in [
        ("deprecate_after_days", r.deprecate_after_days),
        ("disable_after_days", r.disable_after_days),
        ("max_age_days", r.max_age_days),
    ] {
        if days == Some(0) {
            return Err(Error::config(
                at(&format!("retain.{field}")),
                "0 days would retire every AMI on the first run: set 1 or more, or leave the field out",
            ));
        }
    }
    if r.protect_latest > r.keep_latest {
        return Err(Error::config(
            at("retain.protect_latest"),
            format!(
                "{} is more than keep_latest ({}): an AMI would be protected and retired at once; set protect_latest to keep_latest or less",
                r.protect_latest, r.keep_latest
            ),
        ));
    }
    if r.protect_latest > 100 {
        return Err(Error::config(
            at("retain.protect_latest"),
            format!(
                "{} is more than 100: protect the newest few AMIs of a family (0 turns it off)",
                r.protect_latest
            ),
        ));
    }
    if !(1..=720).contains(&r.consumer_report_max_age_hours) {
        return Err(Error::config(
            at("retain.consumer_report_max_age_hours"),
            format!(
                "{} is out of range: set 1 to 720 hours (EC2 deletes usage reports after 30 days)",
                r.consumer_report_max_age_hours
            ),
        ));
    }
    let stages = [
        ("deprecate_after_days", r.deprecate_after_days),
        ("disable_after_days", r.disable_after_days),
        ("max_age_days", r.max_age_days),
    ];
    for (i, (early, a)) in stages.iter().enumerate() {
        for (late, b) in &stages[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if a > b {
                    return Err(Error::config(
                        at(&format!("retain.{early}")),
                        format!("{early} ({a}) is greater than {late} ({b}): the stages run deprecate, then disable, then deregister"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"dry_run": true,
     "policies": [{
      "name": "web",
      "select": {"tags": {"Family": "*"}, "name_pattern": "web-*", "architectures": ["x86_64", "arm64"],
                 "platform": "linux", "root_device_type": "ebs", "virtualization_type": "hvm"},
      "family_by": "tag:Family",
      "build":  {"instance_tags": {"ami-automation:build": "web"}, "no_reboot": true, "on_stop": false,
                 "name_template": "{policy}-{instance_id}-{timestamp}", "tags": {"Team": "platform"}},
      "share":  {"accounts": ["111122223333"], "organizations": [], "organizational_units": [],
                 "public": false, "snapshots": true},
      "copy":   {"regions": {"eu-west-1": {"encrypted": true, "kms_key_id": "alias/ami"}}},
      "retain": {"keep_latest": 3, "max_age_days": 90, "deprecate_after_days": 30, "disable_after_days": 60,
                 "protect_tags": {"Retain": "true"}, "exclude_shared": false, "exclude_launched_within_days": 0,
                 "in_use": {"launch_template_versions": "all"}}
     }]}"#;

    fn parse(json: &str) -> Result<PolicyDocument> {
        PolicyDocument::parse(json, Deployment::default())
    }

    fn config_error(json: &str) -> (String, String) {
        match parse(json) {
            Err(Error::Config { path, message }) => (path, message),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn copies_that_could_not_be_shared_or_made_at_all_are_refused_at_load() {
        let policy = |share: &str, copy: &str| {
            format!(
                r#"{{"policies":[{{"name":"a","select":{{"tags":{{"F":"*"}}}}{share},"copy":{{"regions":{copy}}}}}]}}"#
            )
        };
        let share = r#","share":{"accounts":["111122223333"]}"#;
        // Encrypted with the AWS managed key (no kms_key_id) while the policy shares.
        let (path, message) = config_error(&policy(share, r#"{"eu-west-1":{"encrypted":true}}"#));
        assert_eq!(path, "$.policies[0].copy.regions.eu-west-1.kms_key_id");
        assert!(message.contains("AWS managed key"), "{message}");
        // The same copy without sharing is fine; with a customer managed key it is fine too.
        parse(&policy("", r#"{"eu-west-1":{"encrypted":true}}"#)).expect("no sharing");
        parse(&policy(
            share,
            r#"{"eu-west-1":{"encrypted":true,"kms_key_id":"alias/k"}}"#,
        ))
        .expect("customer managed key");
        // A key without encryption.
        let (path, message) =
            config_error(&policy("", r#"{"eu-west-1":{"kms_key_id":"alias/k"}}"#));
        assert_eq!(path, "$.policies[0].copy.regions.eu-west-1.kms_key_id");
        assert!(message.contains("encrypted"), "{message}");
        // Another partition.
        for region in ["cn-north-1", "us-gov-west-1"] {
            let (path, message) = config_error(&policy("", &format!(r#"{{"{region}":{{}}}}"#)));
            assert_eq!(path, format!("$.policies[0].copy.regions.{region}"));
            assert!(message.contains("partition"), "{message}");
        }
        let gov = Deployment {
            partition: Some("aws-us-gov"),
            ..Deployment::default()
        };
        PolicyDocument::parse(&policy("", r#"{"us-gov-east-1":{}}"#), gov).expect("same partition");
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = parse(EXAMPLE).expect("example parses");
        let web = doc.policy("web").expect("policy web");
        assert_eq!(web.family_by, FamilyBy::Tag("Family".into()));
        assert_eq!(web.retain.as_ref().map(|r| r.keep_latest), Some(3));
        assert_eq!(web.select.tags.get("Family"), Some(&TagPattern::Any));
    }

    #[test]
    fn the_example_policy_file_parses() {
        let doc =
            parse(include_str!("../../../examples/policies.json")).expect("examples/policies.json");
        assert_eq!(doc.policies.len(), 2);
    }

    #[test]
    fn dry_run_defaults_to_true() {
        let doc =
            parse(r#"{"policies":[{"name":"a","retain":{"keep_latest":2}}]}"#).expect("parses");
        assert!(doc.dry_run);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_path() {
        let (path, message) = config_error(&EXAMPLE.replace("\"keep_latest\"", "\"keep_lastest\""));
        assert_eq!(path, "$.policies[0].retain.keep_lastest");
        assert!(
            message.contains("unknown field `keep_lastest`"),
            "{message}"
        );
    }

    #[test]
    fn a_thirteen_digit_account_is_refused() {
        let (path, message) = config_error(&EXAMPLE.replace("111122223333", "1111222233334"));
        assert_eq!(path, "$.policies[0].share.accounts[0]");
        assert!(message.contains("exactly 12 digits"), "{message}");
    }

    #[test]
    fn a_bad_region_is_refused() {
        let (path, message) = config_error(&EXAMPLE.replace("eu-west-1", "eu-wets-1"));
        assert_eq!(path, "$.policies[0].copy.regions.eu-wets-1");
        assert!(message.contains("unknown region `eu-wets-1`"), "{message}");
    }

    #[test]
    fn a_wildcard_in_the_wrong_place_is_refused() {
        let (path, message) =
            config_error(&EXAMPLE.replace(r#""Retain": "true""#, r#""Retain": "t*ue""#));
        assert_eq!(path, "$.policies[0].retain.protect_tags.Retain");
        assert!(message.contains("only alone"), "{message}");
        let (path, _) = config_error(&EXAMPLE.replace(r#""Family": "*""#, r#""Fam*": "*""#));
        assert_eq!(path, "$.policies[0].select.tags");
    }

    #[test]
    fn an_empty_policy_list_is_refused() {
        let (path, message) = config_error(r#"{"policies": []}"#);
        assert_eq!(path, "$.policies");
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn contradicting_ages_are_refused() {
        let (path, message) = config_error(&EXAMPLE.replace(
            "\"deprecate_after_days\": 30",
            "\"deprecate_after_days\": 120",
        ));
        assert_eq!(path, "$.policies[0].retain.deprecate_after_days");
        assert!(
            message.contains("greater than disable_after_days"),
            "{message}"
        );
        let (path, _) = config_error(
            r#"{"policies":[{"name":"a","retain":{"keep_latest":0,"allow_empty_family":true}}]}"#,
        );
        assert_eq!(path, "$.policies[0].retain");
    }

    #[test]
    fn a_policy_that_would_delete_everything_or_image_everything_is_refused() {
        let retain = |r: &str| format!(r#"{{"policies":[{{"name":"a","retain":{r}}}]}}"#);
        // keep_latest 0 only with an explicit allow_empty_family.
        let (path, message) = config_error(&retain(r#"{"keep_latest":0,"max_age_days":30}"#));
        assert_eq!(path, "$.policies[0].retain.keep_latest");
        assert!(message.contains("allow_empty_family"), "{message}");
        parse(&retain(
            r#"{"keep_latest":0,"allow_empty_family":true,"max_age_days":30}"#,
        ))
        .expect("explicitly allowed");
        // Ages of 0 days.
        for field in ["max_age_days", "disable_after_days", "deprecate_after_days"] {
            let (path, message) = config_error(&retain(&format!(r#"{{"{field}":0}}"#)));
            assert_eq!(path, format!("$.policies[0].retain.{field}"));
            assert!(message.contains("1 or more"), "{message}");
        }
        // A wildcard or empty key, or an empty value, in build.instance_tags.
        let build = |tags: &str| {
            format!(r#"{{"policies":[{{"name":"a","build":{{"instance_tags":{tags}}}}}]}}"#)
        };
        for tags in [r#"{"*":"*"}"#, r#"{"Team*":"web"}"#, r#"{"":"x"}"#] {
            let (path, message) = config_error(&build(tags));
            assert_eq!(path, "$.policies[0].build.instance_tags", "{tags}");
            assert!(message.contains("every instance"), "{message}");
        }
        let (path, _) = config_error(&build(r#"{"Team":""}"#));
        assert_eq!(path, "$.policies[0].build.instance_tags.Team");
        parse(&build(r#"{"ami-automation:build":"*"}"#)).expect("any value of a named tag");
    }

    #[test]
    fn a_build_tag_with_a_reserved_key_is_refused_naming_it() {
        for key in [
            "ami-automation:validation",
            "ami-automation:policy",
            "ami-automation:x",
        ] {
            let (path, message) = config_error(&format!(
                r#"{{"policies":[{{"name":"a","build":{{"instance_tags":{{"Build":"yes"}},"tags":{{"{key}":"passed"}}}}}}]}}"#
            ));
            assert_eq!(path, format!("$.policies[0].build.tags.{key}"));
            assert!(message.contains("tool's own state"), "{message}");
        }
        parse(r#"{"policies":[{"name":"a","build":{"instance_tags":{"Build":"yes"},"tags":{"Team":"web"}}}]}"#)
            .expect("a tag of the team's own");
    }

    #[test]
    fn a_key_given_twice_in_the_document_is_refused_naming_it() {
        let (path, message) = config_error(
            r#"{"dry_run": false, "policies": [{"name": "a", "retain": {"keep_latest": 2}}], "dry_run": true}"#,
        );
        assert_eq!(path, "$.dry_run");
        assert!(message.contains("given twice"), "{message}");
        let (path, _) = config_error(
            r#"{"policies": [{"name": "a", "retain": {"max_age_days": 90, "max_age_days": 1}}]}"#,
        );
        assert_eq!(path, "$.policies[0].retain.max_age_days");
    }

    #[test]
    fn public_sharing_needs_the_deployment_switch() {
        let public = EXAMPLE.replace("\"public\": false", "\"public\": true");
        let (path, message) = config_error(&public);
        assert_eq!(path, "$.policies[0].share.public");
        assert!(message.contains("AllowPublicSharing"), "{message}");
        assert!(PolicyDocument::parse(
            &public,
            Deployment {
                allow_public_sharing: true,
                ..Deployment::default()
            }
        )
        .is_ok());
    }

    #[test]
    fn a_bad_organization_arn_is_refused() {
        let bad = EXAMPLE.replace(
            r#""organizations": []"#,
            r#""organizations": ["arn:aws:organizations::111122223333:organization/o-x"]"#,
        );
        let (path, _) = config_error(&bad);
        assert_eq!(path, "$.policies[0].share.organizations[0]");
    }

    #[test]
    fn name_patterns_match_like_ec2_name_filters() {
        let p = NamePattern::try_from("web-*-2026??".to_string()).expect("pattern");
        assert!(p.matches("web-i-123-202601"));
        assert!(!p.matches("web-i-123-2026011"));
        assert!(!p.matches("api-1-202601"));
    }

    #[test]
    fn the_family_of_a_name_drops_trailing_timestamps_and_numbers() {
        assert_eq!(name_prefix("web-20260101T120000Z"), "web");
        assert_eq!(name_prefix("web-i-0abc12-20260101T120000Z"), "web-i-0abc12");
        assert_eq!(name_prefix("base_2026.01.02"), "base");
        assert_eq!(name_prefix("plain"), "plain");
        assert_eq!(name_prefix("2026-01-01"), "2026");
    }

    #[test]
    fn bad_validate_and_publish_sections_name_their_json_path_and_the_fix() {
        let policy = |section: &str| format!(r#"{{"policies":[{{"name":"web",{section}}}]}}"#);
        let v = |fields: &str| {
            policy(&format!(
                r#""validate":{{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]{fields}}}"#
            ))
        };
        assert!(parse(&v("")).is_ok());
        let cases: [(String, &str, &str); 12] = [
            (
                v(r#","timeout_minutes":0"#),
                "$.policies[0].validate.timeout_minutes",
                "1 to 240",
            ),
            (
                v(r#","console_contains":"""#),
                "$.policies[0].validate.console_contains",
                "1 to 1024",
            ),
            (
                v(r#","instance_profile":"arn:aws:iam::123456789012:role/x""#),
                "$.policies[0].validate.instance_profile",
                "instance-profile",
            ),
            (
                policy(
                    r#""validate":{"instance_type":"micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]}"#,
                ),
                "$.policies[0].validate.instance_type",
                "t3.micro",
            ),
            (
                policy(
                    r#""validate":{"instance_type":"t3.micro","subnet_id":"vpc-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]}"#,
                ),
                "$.policies[0].validate.subnet_id",
                "not a subnet id",
            ),
            (
                policy(
                    r#""validate":{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":[]}"#,
                ),
                "$.policies[0].validate.security_group_ids",
                "1 to 5",
            ),
            (
                policy(
                    r#""validate":{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-1","sg-0123456789abcdef0"]}"#,
                ),
                "$.policies[0].validate.security_group_ids[0]",
                "security group id",
            ),
            (
                policy(r#""publish":{}"#),
                "$.policies[0].publish",
                "publishes nowhere",
            ),
            (
                policy(r#""publish":{"ssm_parameters":["/ami/{name}"]}"#),
                "$.policies[0].publish.ssm_parameters[0]",
                "only {policy}, {family} and {region}",
            ),
            (
                policy(r#""publish":{"ssm_parameters":["ami/{family}"]}"#),
                "$.policies[0].publish.ssm_parameters[0]",
                "starts with `/`",
            ),
            (
                policy(r#""publish":{"ssm_parameters":["/aws/{family}"]}"#),
                "$.policies[0].publish.ssm_parameters[0]",
                "may not begin with `aws`",
            ),
            (
                policy(r#""publish":{"launch_templates":[{"template":"lt-12"}]}"#),
                "$.policies[0].publish.launch_templates[0].template",
                "17 hex digits",
            ),
        ];
        for (json, path, fix) in cases {
            let (got_path, message) = config_error(&json);
            assert_eq!(got_path, path, "{json}");
            assert!(message.contains(fix), "{json}: {message}");
        }
        // An unknown field (a typo, or cross-account publishing this version lacks) is named.
        let (path, _) = config_error(&policy(
            r#""publish":{"ssm_parameters":["/ami/{family}"],"accounts":["arn:aws:iam::123456789012:role/p"]}"#,
        ));
        assert_eq!(path, "$.policies[0].publish.accounts");
    }
}
