//! The policy document: one JSON document that drives every function.
//!
//! It is loaded once at cold start from `AMI_POLICIES` (inline JSON) or `AMI_POLICIES_FILE` (a
//! path). Unknown fields are errors (a typo must not silently disable a safety rule) and every
//! error names the JSON path of the bad field and what is allowed there.
//!
//! The document is split the way it reads: [`selection`] (which AMIs a policy manages and how
//! they fall into families), [`sections`] (what each stage does: build, share, copy, retain,
//! validate, publish), [`distribute`] (other accounts) and `validation` (what the types alone cannot check).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod distribute;
mod sections;
mod selection;
mod validation;

#[cfg(test)]
mod tests;

pub use distribute::*;
pub use sections::*;
pub use selection::*;

/// The whole document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The default of every run request's `dry_run`. Deleting is opt-in: true unless set.
    #[serde(default = "default_dry_run")]
    pub dry_run: bool,
    /// The policies, in order: an image that two policies select belongs to the first.
    pub policies: Vec<Policy>,
}

fn default_dry_run() -> bool {
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
    /// Other accounts that get the newest promotable AMI of each family: their own copy, SSM
    /// parameters naming it, or both.
    #[serde(default)]
    pub distribute: Option<Distribute>,
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
}
