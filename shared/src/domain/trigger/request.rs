//! Run requests: the JSON a schedule's `Input` or a person sends. Each part checks itself; the
//! error names the field under the request's root (`$`, or a continuation's
//! `$.detail.request`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{check_id, from_value, ACCEPTED};
use crate::domain::ids::Region;
use crate::domain::register::RegisterRequest;
use crate::error::{Error, Result};

/// At most this many AMI ids in one run request.
pub const MAX_IMAGE_IDS: usize = 1000;
/// At most this many policy names in one run request.
pub const MAX_POLICIES: usize = 100;

/// A request to run a function, sent by a schedule's `Input` or by a person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Policies to run (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Regions to run in (default: the function's own region); processed concurrently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<Region>>,
    /// Report what would be done and change nothing (default: the policy document's `dry_run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// The clock the planner uses (default: now), so ages can be tested without waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// Limit the run to these AMIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ids: Option<Vec<String>>,
    /// Register an AMI from an EBS snapshot (the build function only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterRequest>,
    /// Undo age-out for these AMIs (the age-out function only): restore them and their
    /// snapshots from the Recycle Bin, re-enable a disabled one, cancel a deprecation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRequest>,
    /// Publish this AMI of a family now, even if older than what is published: the rollback
    /// (the publish function only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Box<PublishRequest>>,
    /// Take this AMI and everything made from it out of circulation, or undo that (the
    /// age-out function only; a dry run unless `dry_run` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<Box<super::RecallRequest>>,
    /// Set by age-out on the run it starts when it stops at its deadline with work left: how
    /// many continuations came before this one (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<u32>,
    /// The invocation that started a chain of continuations, carried by each of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// `{"restore": {"image_ids": [...]}}`: the AMIs age-out should give back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The AMIs (1 to 100), each as it was before age-out acted.
    pub image_ids: Vec<String>,
}

/// `{"publish": {"policy", "family", "image_id"}}`: pin a family's published AMI (rollback).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The policy whose `publish` targets are set.
    pub policy: String,
    /// The family (as the policy's `family_by` names it).
    pub family: String,
    /// The AMI to publish, in the request's region (its copies in the other regions).
    pub image_id: String,
}

/// The fields of a run request, each of which may not be null.
pub const RUN_REQUEST_FIELDS: [&str; 11] = [
    "policies",
    "regions",
    "dry_run",
    "as_of",
    "image_ids",
    "register",
    "restore",
    "publish",
    "recall",
    "continuation",
    "run_id",
];

impl RunRequest {
    /// Parses and checks a run request at `root` (`$` for one sent as it is, the continuation's
    /// `$.detail.request`); the error names the field under `root`.
    pub(super) fn from_json(value: serde_json::Value, root: &str) -> Result<RunRequest> {
        if !value.is_object() {
            return Err(Error::event(
                root,
                format!("expected a JSON object: {ACCEPTED}"),
            ));
        }
        if let Some(field) = RUN_REQUEST_FIELDS
            .iter()
            .find(|f| value.get(**f).is_some_and(serde_json::Value::is_null))
        {
            return Err(Error::event(
                format!("{root}.{field}"),
                "null is not a value: leave the field out for its default, or give a value",
            ));
        }

        let request = from_value::<RunRequest>(value, root)?;
        request.check_sizes(root)?;
        check_unique_ids(
            request.image_ids.iter().flatten(),
            &format!("{root}.image_ids"),
        )?;
        request.check_run_id(root)?;
        if let Some(restore) = &request.restore {
            restore.check(&request, root)?;
        }
        if let Some(publish) = &request.publish {
            publish.check(&request, root)?;
        }
        if let Some(recall) = &request.recall {
            recall.check(&request, root)?;
        }
        Ok(request)
    }

    /// At most [`MAX_IMAGE_IDS`] AMIs, every known region once, [`MAX_POLICIES`] policies.
    fn check_sizes(&self, root: &str) -> Result<()> {
        let limits = [
            (
                "image_ids",
                self.image_ids.as_ref().map_or(0, Vec::len),
                MAX_IMAGE_IDS,
            ),
            (
                "regions",
                self.regions.as_ref().map_or(0, Vec::len),
                crate::domain::ids::KNOWN_REGIONS.len(),
            ),
            (
                "policies",
                self.policies.as_ref().map_or(0, Vec::len),
                MAX_POLICIES,
            ),
        ];
        for (field, len, max) in limits {
            if len > max {
                return Err(Error::event(
                    format!("{root}.{field}"),
                    format!(
                        "{len} entries: at most {max} in one request (split it, or run a sweep)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_run_id(&self, root: &str) -> Result<()> {
        if self
            .run_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 128)
        {
            return Err(Error::event(
                format!("{root}.run_id"),
                "1 to 128 characters: age-out sets it on the runs it continues",
            ));
        }
        Ok(())
    }
}

impl RestoreRequest {
    /// 1 to [`MAX_IMAGE_IDS`] well-formed AMI ids, each once, and no `image_ids` beside them.
    fn check(&self, request: &RunRequest, root: &str) -> Result<()> {
        if self.image_ids.is_empty() || self.image_ids.len() > MAX_IMAGE_IDS {
            return Err(Error::event(
                format!("{root}.restore.image_ids"),
                format!(
                    "{} entries: list 1 to {MAX_IMAGE_IDS} AMIs to restore",
                    self.image_ids.len()
                ),
            ));
        }
        if request.image_ids.is_some() {
            return Err(Error::event(
                format!("{root}.image_ids"),
                "a restore names its AMIs in `restore.image_ids`: leave `image_ids` out",
            ));
        }
        check_unique_ids(self.image_ids.iter(), &format!("{root}.restore.image_ids"))
    }
}

impl PublishRequest {
    /// A well-formed AMI id, a policy and a family, alone in its request and in one region.
    fn check(&self, request: &RunRequest, root: &str) -> Result<()> {
        check_id("ami", &self.image_id, &format!("{root}.publish.image_id"))?;
        for (field, value) in [("policy", &self.policy), ("family", &self.family)] {
            if value.is_empty() {
                return Err(Error::event(
                    format!("{root}.publish.{field}"),
                    format!("empty: name the {field} whose published AMI to pin"),
                ));
            }
        }

        if request.image_ids.is_some() || request.restore.is_some() {
            return Err(Error::event(format!("{root}.publish"),
                "a rollback names its AMI in `publish.image_id`: leave `image_ids` and `restore` out",
            ));
        }
        if request.regions.as_ref().is_some_and(|r| r.len() != 1) {
            return Err(Error::event(format!("{root}.regions"),
                "a rollback names the one region of `publish.image_id` (its copies elsewhere follow)",
            ));
        }
        Ok(())
    }
}

/// Every id of `ids` a well-formed AMI id, and none twice; `at` is the list's path.
fn check_unique_ids<'a>(ids: impl Iterator<Item = &'a String>, at: &str) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.enumerate() {
        let here = format!("{at}[{i}]");
        check_id("ami", id, &here)?;
        if !seen.insert(id) {
            return Err(Error::event(
                here,
                format!("`{id}` is listed twice: list each AMI once"),
            ));
        }
    }
    Ok(())
}
