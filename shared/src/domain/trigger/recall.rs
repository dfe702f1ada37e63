//! `{"recall": {"image_id", "reason"}}`: take an AMI and everything made from it out of
//! circulation (the age-out function only). A dry run unless the request says `dry_run: false`.

use serde::{Deserialize, Serialize};

use super::check_id;
use super::request::RunRequest;
use crate::error::{Error, Result};

/// EC2 tag values hold at most 256 characters; the reason is written to a tag.
pub const MAX_REASON: usize = 256;

/// A recall, or its undo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallRequest {
    /// The bad AMI, in one of the regions the run manages.
    pub image_id: String,
    /// Why (written on every image of the tree, and in its events). Required for a recall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Also disable the tree's images once no launch template or SSM parameter names them
    /// (DisableImage removes their launch permissions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
    /// Undo: clear the recall's marks, the deprecation it set, and re-enable what it disabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
}

impl RecallRequest {
    /// A well-formed AMI id; a reason for a recall (one tag value); alone in its request.
    pub(super) fn check(&self, request: &RunRequest, root: &str) -> Result<()> {
        check_id("ami", &self.image_id, &format!("{root}.recall.image_id"))?;
        let reason = self.reason.as_deref().unwrap_or_default();
        if !self.undo && reason.trim().is_empty() {
            return Err(Error::event(
                format!("{root}.recall.reason"),
                "missing: say why the image is recalled (it is written on every image of the tree)",
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Error::event(
                format!("{root}.recall.reason"),
                format!("at most {MAX_REASON} characters (it is written to a tag)"),
            ));
        }
        if self.undo && self.disable {
            return Err(Error::event(
                format!("{root}.recall.disable"),
                "an undo re-enables what the recall disabled: leave `disable` out",
            ));
        }

        let others = [
            ("image_ids", request.image_ids.is_some()),
            ("restore", request.restore.is_some()),
            ("publish", request.publish.is_some()),
            ("register", request.register.is_some()),
            ("policies", request.policies.is_some()),
        ];
        if let Some((field, _)) = others.iter().find(|(_, set)| *set) {
            return Err(Error::event(
                format!("{root}.{field}"),
                "a recall names its AMI in `recall.image_id` and finds the rest itself: leave it out",
            ));
        }
        Ok(())
    }
}
