//! Launch and create-volume permissions, as the policy names them and EC2 reports them.

use std::fmt;

use serde::Serialize;

/// One launch (or create-volume) permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    /// An account id.
    Account(String),
    /// An organization ARN.
    Organization(String),
    /// An organizational unit ARN.
    OrganizationalUnit(String),
    /// Everyone (`group: all`).
    Public,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Account(a) => write!(f, "account:{a}"),
            Grant::Organization(o) => write!(f, "organization:{o}"),
            Grant::OrganizationalUnit(o) => write!(f, "ou:{o}"),
            Grant::Public => f.write_str("public"),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
