//! Every tag key the tool reads or writes. A tag is the tool's only state in the account: the
//! policy that manages an AMI, where it came from, and which attempt made a copy.

/// Every key the tool reads or writes begins with this: the tool's own state, never a policy's
/// tag (a policy's `build.tags` with it could pose as a verdict, a lineage or a pin).
pub const RESERVED_PREFIX: &str = "ami-automation:";

/// The policy that manages an AMI (set by build and copy; read by every job).
pub const POLICY: &str = "ami-automation:policy";
/// The tool function that made the AMI (`ami-build`, `ami-copy`). The copy role may deregister
/// only AMIs carrying it (its IAM condition), so it must stay on every copy.
pub const CREATED_BY: &str = "ami-automation:created-by";
/// The instance an AMI was made from (CreateImage).
pub const SOURCE_INSTANCE: &str = "ami-automation:source-instance";
/// The snapshot an AMI was registered from (RegisterImage).
pub const SOURCE_SNAPSHOT: &str = "ami-automation:source-snapshot";
/// On a snapshot: register it as an AMI of this policy when it is created.
pub const REGISTER: &str = "ami-automation:register";
/// On a snapshot to register: the AMI's architecture (`x86_64` when absent).
pub const ARCHITECTURE: &str = "ami-automation:architecture";
/// On a snapshot to register: the root device name (`/dev/xvda` when absent).
pub const ROOT_DEVICE_NAME: &str = "ami-automation:root-device-name";
/// On a copy: its source AMI. An AMI with it is a copy, and a copy is never copied.
pub const SOURCE_IMAGE: &str = "ami-automation:source-image";
/// On a copy in a target account: the account that owns its source (the distributing stack's).
pub const SOURCE_ACCOUNT: &str = "ami-automation:source-account";
/// On a copy in a target account: the stack's seal over the account, region and source
/// ([`crate::domain::seal::distributed`]); the stack retires only a copy whose seal verifies.
pub const DISTRIBUTED_SEAL: &str = "ami-automation:distributed-seal";
/// On a copy in a target account: the policy that distributed it.
pub const SOURCE_POLICY: &str = "ami-automation:source-policy";
/// On a copy: its source region.
pub const SOURCE_REGION: &str = "ami-automation:source-region";
/// On a copy: its source's CreationDate (RFC 3339). A copy is as new as what it copies, not as
/// the moment it arrived: a rollback's pin in a copy region is not undone by the copy of the AMI
/// rolled back from arriving after the pin.
pub const SOURCE_CREATED: &str = "ami-automation:source-created";
/// On a copy: which attempt made it (a copy that failed is copied again as attempt + 1).
pub const COPY_ATTEMPT: &str = "ami-automation:copy-attempt";
/// On an AMI: age-out turned its deregistration protection on (`retain.protect_latest`), so
/// age-out may turn it off again; a protection without it was set by someone else and stays.
pub const PROTECTED_BY: &str = "ami-automation:protected-by";
/// When ami-share last gave the AMI to a new target (RFC 3339): age-out takes it as a notice no
/// older than that, since a new consumer was told nothing by an earlier deprecation. Anyone who
/// may tag the AMI can move it later, which only keeps the AMI longer.
pub const SHARED_AT: &str = "ami-automation:shared-at";
/// On a launch template: its team lets the stack publish to it (any value; the roles' IAM
/// allows CreateLaunchTemplateVersion and ModifyLaunchTemplate only on templates that carry it).
pub const PUBLISH_OPT_IN: &str = "ami-automation:publish";
/// The value of [`PROTECTED_BY`]: the function that turns the protection on and off.
pub const PROTECTED_BY_AGE_OUT: &str = super::function::Function::AgeOut.name();

/// On a test instance: the AMI it launch-tests (set by the publish function at RunInstances;
/// the only instances it ever terminates carry it).
pub const VALIDATES: &str = "ami-automation:validates";
/// The function that launch-tests AMIs (the [`CREATED_BY`] of its test instances).
pub const VALIDATOR: &str = super::function::Function::Publish.name();
/// On an AMI: the launch test's verdict, [`PASSED`] or [`FAILED`]. A copy carries its source's.
pub const VALIDATION: &str = "ami-automation:validation";
/// The value of [`VALIDATION`] when the launch test passed.
pub const PASSED: &str = "passed";
/// The value of [`VALIDATION`] when it failed.
pub const FAILED: &str = "failed";
/// On an AMI with a `passed` verdict: the verdict's seal, `<time> <HMAC, base64>`, made by
/// ami-publish with the stack's key over the AMI, its region, the verdict and the time
/// ([`crate::domain::seal::verdict`]). A copy carries its source's. A `passed` without a seal
/// that verifies is not a verdict the gate accepts.
pub const VALIDATION_SEAL: &str = "ami-automation:validation-seal";
/// What the gate reads instead of a `passed` verdict it cannot prove the stack wrote (never
/// written to the account: the jobs' view of a tag set by hand, copied, or written before
/// seals). It is no verdict: the launch test runs (again).
pub const UNPROVEN: &str = "unproven";
/// What the gate reads instead of a `passed` verdict whose seal KMS could not check this run
/// (never written to the account). It holds the AMI, and it is still a verdict: nothing is
/// tested again or failed because KMS did not answer.
pub const UNCHECKED: &str = "unchecked";
/// On a launch template: the default version the tool set last. The tool moves the default
/// only while it is still that version (or the tag is absent): a default someone else chose
/// (a consumer's own rollback) stops it until they set it back or remove the tag.
pub const DEFAULT_VERSION: &str = "ami-automation:default-version";
/// On an AMI: pinned by a rollback, `<time> <HMAC, base64>` (RFC 3339, and the stack's seal
/// over the AMI, its region and the time: [`crate::domain::seal::pin`]). While a target names
/// it, only an AMI created after the pin replaces it. A pin no seal proves is no pin.
pub const PINNED_AT: &str = "ami-automation:pinned-at";
/// On an AMI: out of circulation by a recall, `<time> <HMAC, base64>` (RFC 3339, and the
/// stack's seal over the AMI, its region, the recalled AMI and the time:
/// [`crate::domain::seal::recall`]). Any value holds the AMI at the gate (fail closed); only a
/// sealed one moves a destination that names it back to an older AMI.
pub const RECALLED: &str = "ami-automation:recalled";
/// On a recalled AMI: the AMI whose recall took it out of circulation (itself or an ancestor).
pub const RECALL_OF: &str = "ami-automation:recall-of";
/// On a recalled AMI: why, as the recall request said.
pub const RECALL_REASON: &str = "ami-automation:recall-reason";
/// On a recalled AMI: what the recall changed beyond its marks, for its undo: `deprecation`
/// (it was not deprecated before), `disable` (it disabled it), comma-separated.
pub const RECALL_SET: &str = "ami-automation:recall-set";
/// The tags a recall writes, which its undo removes.
pub const RECALL_TAGS: [&str; 4] = [RECALLED, RECALL_OF, RECALL_REASON, RECALL_SET];

/// The tags every AMI the tool makes carries (and its snapshots): the policy's build tags, the
/// family under a `family_by` tag (`family` answers it for the tag key, none: not tagged), the
/// policy, and the function that made it. Build and copy add their lineage on top.
pub fn managed(
    policy: &crate::domain::policy::Policy,
    family: impl FnOnce(&str) -> Option<String>,
    created_by: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out = policy
        .build
        .as_ref()
        .map(|b| b.tags.clone())
        .unwrap_or_default();
    if let crate::domain::policy::FamilyBy::Tag(key) = &policy.family_by {
        if let Some(family) = family(key) {
            out.insert(key.clone(), family);
        }
    }
    out.insert(POLICY.into(), policy.name.clone());
    out.insert(CREATED_BY.into(), created_by.into());
    out
}
