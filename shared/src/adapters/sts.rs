//! The target accounts' role: `sts:AssumeRole` with the deployment's ExternalId and a session
//! tag naming the function (STS API reference, AssumeRole: `ExternalId` 2 to 1224 characters,
//! `RoleSessionName` 2 to 64, session tags need `sts:TagSession` in the trust policy).
//!
//! The credentials are asked for explicitly, once per unit of work, so that a target without
//! the role (or one that denies it) is said at once, naming the role, and never surfaces later
//! as a failing EC2 call.

use aws_config::SdkConfig;
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_sts::types::Tag;

use crate::adapters::ec2::Ec2;
use crate::adapters::ssm::Ssm;
use crate::domain::ids::{AccountId, Region};
use crate::error::{Error, Result};
use crate::ports::TargetAccount;

/// The session tag every assumed session carries: which function of the stack it is.
pub const SESSION_TAG: &str = "ami-lifecycle-function";

/// How long a unit's credentials live (AssumeRole's minimum is 900 s; a unit ends well within).
const SESSION_SECONDS: i32 = 900;

/// The role `role_name` in `account`, in the partition of `region`.
pub fn role_arn(account: &AccountId, role_name: &str, region: &Region) -> String {
    format!("arn:{}:iam::{account}:role/{role_name}", region.partition())
}

/// Assumes the target role in `account`; the SDK configuration of the session.
pub async fn assume(
    sdk: &SdkConfig,
    home: &Region,
    account: &AccountId,
    role_name: &str,
    external_id: &str,
    function: &str,
) -> Result<SdkConfig> {
    let arn = role_arn(account, role_name, home);
    let tag = Tag::builder()
        .key(SESSION_TAG)
        .value(function)
        .build()
        .map_err(|e| Error::Refused(format!("the session tag could not be made: {e}")))?;
    let out = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(&arn)
        .role_session_name(function)
        .external_id(external_id)
        .duration_seconds(SESSION_SECONDS)
        .tags(tag)
        .send()
        .await
        .map_err(|e| Error::aws("AssumeRole", home.as_str(), e))?;
    session(sdk, &out, &arn, "ami-lifecycle-target")
}

/// Assumes `role_arn` (the operator's role that reads the organization, in its management or
/// a delegated administrator account); the SDK configuration of the session.
pub async fn assume_plain(sdk: &SdkConfig, role_arn: &str, function: &str) -> Result<SdkConfig> {
    let out = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(function)
        .duration_seconds(SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| Error::aws("AssumeRole", "", e))?;
    session(sdk, &out, role_arn, "ami-lifecycle-organizations")
}

/// The SDK configuration of the session AssumeRole answered.
fn session(
    sdk: &SdkConfig,
    out: &aws_sdk_sts::operation::assume_role::AssumeRoleOutput,
    role_arn: &str,
    provider: &'static str,
) -> Result<SdkConfig> {
    let c = out.credentials().ok_or_else(|| {
        Error::Refused(format!("AssumeRole of {role_arn} answered no credentials"))
    })?;
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        provider,
    );
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build())
}

/// A target account through its assumed role.
#[derive(Debug, Clone)]
pub struct Target {
    sdk: SdkConfig,
}

impl Target {
    /// The account whose session `sdk` holds.
    pub fn new(sdk: SdkConfig) -> Self {
        Target { sdk }
    }
}

impl TargetAccount for Target {
    type Ec2 = Ec2;
    type Params = Ssm;

    fn ec2(&self, region: &Region) -> Ec2 {
        let config = aws_sdk_ec2::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Ec2::new(aws_sdk_ec2::Client::from_conf(config), region.clone())
    }

    fn parameters(&self, region: &Region) -> Ssm {
        let config = aws_sdk_ssm::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Ssm::new(aws_sdk_ssm::Client::from_conf(config), region.clone())
    }
}
