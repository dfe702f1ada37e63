//! Which AMIs a policy selects, and how they fall into families.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
