//! Identifiers that can only hold valid values ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An AWS account id: exactly 12 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);
string_newtype!(AccountId, "account id");

impl FromStr for AccountId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an AWS account id: it must be exactly 12 digits (it has {} characters)",
                s.chars().count()
            ))
        }
    }
}

/// Checks an EC2 resource id: `prefix-` (`ami`, `i`, `snap`, `subnet`, `sg`, `lt`) and 8 to 17
/// hexadecimal digits, as EC2 makes them; the error says what was expected.
pub fn check_resource_id(prefix: &str, id: &str) -> Result<(), String> {
    let hex = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or_default();
    if (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let what = match prefix {
        "ami" => "an AMI id",
        "i" => "an instance id",
        "snap" => "a snapshot id",
        "subnet" => "a subnet id",
        "sg" => "a security group id",
        "lt" => "a launch template id",
        _ => "an EC2 id",
    };
    Err(format!(
        "`{id}` is not {what} ({prefix}- and 8 to 17 hexadecimal digits)"
    ))
}

/// An AWS region name that this tool knows (`us-east-1`, `eu-west-1`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);
string_newtype!(Region, "region");

/// The regions EC2 serves today. A region launched later can be allowed without a release
/// through the `AMI_EXTRA_REGIONS` environment variable (comma-separated).
pub const KNOWN_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

impl FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if KNOWN_REGIONS.contains(&s) || extra_regions().iter().any(|r| r == s) {
            return Ok(Region(s.to_string()));
        }
        let shaped = {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() >= 3
                && parts[..parts.len() - 1]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
                && parts[parts.len() - 1].parse::<u8>().is_ok()
        };
        if shaped {
            Err(format!(
                "unknown region `{s}`: check the spelling (for example `us-east-1`), or allow a new region with AMI_EXTRA_REGIONS={s}"
            ))
        } else {
            Err(format!(
                "`{s}` is not a region name: expected something like `us-east-1` or `eu-west-1`"
            ))
        }
    }
}

impl Region {
    /// The partition the region belongs to: `aws-cn` for `cn-*`, `aws-us-gov` for
    /// `us-gov-*`, `aws` for the others (AMI_EXTRA_REGIONS are assumed commercial).
    pub fn partition(&self) -> &'static str {
        if self.0.starts_with("cn-") {
            "aws-cn"
        } else if self.0.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// The ARN of an AMI of this region: `arn:<partition>:ec2:<region>::image/<id>`.
    pub fn image_arn(&self, image_id: &str) -> String {
        format!("arn:{}:ec2:{}::image/{image_id}", self.partition(), self.0)
    }

    /// The ARN of an EBS snapshot of this region: `arn:<partition>:ec2:<region>::snapshot/<id>`.
    pub fn snapshot_arn(&self, snapshot_id: &str) -> String {
        format!(
            "arn:{}:ec2:{}::snapshot/{snapshot_id}",
            self.partition(),
            self.0
        )
    }
}

/// Regions newer than this release, which the deployment allows (`AMI_EXTRA_REGIONS`, set by
/// the wiring at cold start: the domain never reads the environment).
static EXTRA_REGIONS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Allows these regions besides the known ones (replacing any allowed before).
pub fn allow_regions(regions: Vec<String>) {
    *EXTRA_REGIONS.write().unwrap_or_else(|e| e.into_inner()) = regions;
}

fn extra_regions() -> Vec<String> {
    EXTRA_REGIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// An AWS Organizations organization ARN: `arn:aws:organizations::<account>:organization/o-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationArn(String);
string_newtype!(OrganizationArn, "organization ARN");

/// An organizational unit ARN: `arn:aws:organizations::<account>:ou/o-<id>/ou-<root>-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationalUnitArn(String);
string_newtype!(OrganizationalUnitArn, "organizational unit ARN");

fn lower_alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn org_id(s: &str) -> bool {
    s.strip_prefix("o-")
        .is_some_and(|id| lower_alnum(id, 10, 32))
}

/// Splits `arn:<partition>:organizations::<account>:<resource>` and returns the resource.
fn organizations_resource(s: &str) -> Option<&str> {
    let mut parts = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let valid = arn == "arn"
        && matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && service == "organizations"
        && region.is_empty()
        && account.parse::<AccountId>().is_ok();
    valid.then_some(resource)
}

impl FromStr for OrganizationArn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = organizations_resource(s)
            .and_then(|r| r.strip_prefix("organization/"))
            .is_some_and(org_id);
        if ok {
            Ok(OrganizationArn(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an organization ARN: expected arn:aws:organizations::<12-digit management account>:organization/o-<10 to 32 lowercase letters or digits>"
            ))
        }
    }
}

impl OrganizationalUnitArn {
    /// The OU's id (`ou-<root>-<id>`), as Organizations' `ParentId` takes it.
    pub fn id(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl FromStr for OrganizationalUnitArn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = organizations_resource(s)
            .and_then(|r| r.strip_prefix("ou/"))
            .is_some_and(|rest| {
                let mut it = rest.splitn(2, '/');
                let (org, ou) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                org_id(org)
                    && ou.strip_prefix("ou-").is_some_and(|id| {
                        let mut halves = id.splitn(2, '-');
                        let (root, unit) =
                            (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
                        lower_alnum(root, 4, 32) && lower_alnum(unit, 8, 32)
                    })
            });
        if ok {
            Ok(OrganizationalUnitArn(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an organizational unit ARN: expected arn:aws:organizations::<12-digit account>:ou/o-<org id>/ou-<root id>-<ou id>"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_id_is_exactly_twelve_digits() {
        assert!("111122223333".parse::<AccountId>().is_ok());
        let err = "1111222233334".parse::<AccountId>().unwrap_err();
        assert!(
            err.contains("exactly 12 digits") && err.contains("13 characters"),
            "{err}"
        );
        assert!("11112222333".parse::<AccountId>().is_err());
        assert!("11112222333a".parse::<AccountId>().is_err());
    }

    #[test]
    fn regions_are_checked_against_the_known_list() {
        assert!("eu-west-1".parse::<Region>().is_ok());
        assert!("us-gov-west-1".parse::<Region>().is_ok());
        let err = "us-est-1".parse::<Region>().unwrap_err();
        assert!(err.contains("unknown region"), "{err}");
        let err = "useast1".parse::<Region>().unwrap_err();
        assert!(err.contains("not a region name"), "{err}");
    }

    #[test]
    fn organization_and_ou_arns_are_validated() {
        assert!(
            "arn:aws:organizations::111122223333:organization/o-abcde12345"
                .parse::<OrganizationArn>()
                .is_ok()
        );
        assert!("arn:aws:organizations::111122223333:organization/o-abc"
            .parse::<OrganizationArn>()
            .is_err());
        assert!("arn:aws:iam::111122223333:organization/o-abcde12345"
            .parse::<OrganizationArn>()
            .is_err());
        assert!(
            "arn:aws:organizations::111122223333:ou/o-abcde12345/ou-ab12-cdefgh12"
                .parse::<OrganizationalUnitArn>()
                .is_ok()
        );
        assert!(
            "arn:aws:organizations::111122223333:ou/o-abcde12345/ou-ab12"
                .parse::<OrganizationalUnitArn>()
                .is_err()
        );
    }
}
