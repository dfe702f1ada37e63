//! What a recall, or its undo, does to each image of the tree: pure, from the image as EC2
//! lists it (and its marks as the stack proved them) and the request.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::domain::model::{Image, ImageState};
use crate::domain::tags;

/// What the recall records in [`tags::RECALL_SET`] when it deprecated the image.
pub const SET_DEPRECATION: &str = "deprecation";
/// What the recall records in [`tags::RECALL_SET`] when it disabled the image.
pub const SET_DISABLE: &str = "disable";

/// One step of a recall or its undo, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// CreateTags: the recall's sealed mark (the gate refuses the image from then on).
    Mark,
    /// EnableImageDeprecation now.
    Deprecate,
    /// DisableImage, once no launch template or SSM parameter names it.
    Disable,
    /// EnableImage (the undo of what the recall disabled).
    Enable,
    /// DisableImageDeprecation (the undo of the deprecation the recall set).
    CancelDeprecation,
    /// DeleteTags of the recall's marks.
    Unmark,
}

/// The deprecation time a recall sets: the next whole minute (EC2 rounds `DeprecateAt` to the
/// minute and refuses a time in the past: EC2 API reference, EnableImageDeprecation).
pub fn deprecate_at(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::minutes(1)).unwrap_or(now) + Duration::minutes(1)
}

/// The steps that take `image` out of circulation (`disable`: also DisableImage). None when a
/// recall the stack proves marked it already and it is deprecated (and disabled) as asked.
pub fn recall_steps(image: &Image, disable: bool, now: DateTime<Utc>) -> Vec<Step> {
    let mut out = Vec::new();
    if !image.recall_proven() {
        out.push(Step::Mark);
    }
    if image.deprecation_time.is_none_or(|t| t > deprecate_at(now)) {
        out.push(Step::Deprecate);
    }
    if disable && image.state != ImageState::Disabled {
        out.push(Step::Disable);
    }
    out
}

/// The steps that undo the recall of `recall_of` on `image`: what it set, then its marks. An
/// image another recall marked (another `recall-of`) is left to that recall's undo.
pub fn undo_steps(image: &Image, recall_of: &str) -> Vec<Step> {
    if image.tags.get(tags::RECALL_OF).map(String::as_str) != Some(recall_of) {
        return Vec::new();
    }
    let set = recall_set(image);
    let mut out = Vec::new();
    if set.contains(&SET_DISABLE) && image.state == ImageState::Disabled {
        out.push(Step::Enable);
    }
    if set.contains(&SET_DEPRECATION) && image.deprecation_time.is_some() {
        out.push(Step::CancelDeprecation);
    }
    out.push(Step::Unmark);
    out
}

/// What the recall recorded it set on the image.
pub fn recall_set(image: &Image) -> Vec<&str> {
    image
        .tags
        .get(tags::RECALL_SET)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Whether a reference (an ARN from DescribeImageReferences) is a consumer a recall rolls back
/// before it disables: a launch template or an SSM parameter.
pub fn names_it_for_launches(reference: &str) -> bool {
    reference.contains(":launch-template/") || reference.contains(":parameter/")
}
