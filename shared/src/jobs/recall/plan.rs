//! What a recall, or its undo, does to each image of the tree: pure, from the image as EC2
//! lists it (and its marks as the stack proved them) and the request.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::domain::model::{Image, ImageState};
use crate::domain::tags;

/// In [`tags::RECALL_SET`]: the recall deprecated an image that had no deprecation.
pub const SET_DEPRECATION: &str = "deprecation";
/// In [`tags::RECALL_SET`], before the time: the recall deprecated an image whose own
/// deprecation was later; its undo puts that time back.
pub const SET_DEPRECATION_WAS: &str = "deprecation-was:";
/// In [`tags::RECALL_SET`]: the recall disabled the image.
pub const SET_DISABLE: &str = "disable";

/// One step of a recall or its undo, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// CreateTags: the recall's sealed mark, with what it changes (the gate refuses the image
    /// from then on).
    Mark,
    /// EnableImageDeprecation now.
    Deprecate,
    /// DisableImage, once no launch template or SSM parameter launches it.
    Disable,
    /// EnableImage (the undo of what the recall disabled).
    Enable,
    /// DisableImageDeprecation (the undo of the deprecation the recall set).
    CancelDeprecation,
    /// EnableImageDeprecation at the time the image had before the recall.
    RestoreDeprecation,
    /// DeleteTags of the recall's marks.
    Unmark,
}

/// The deprecation time a recall sets: the next whole minute after `now`, the wall clock when
/// the call is made (EC2 rounds `DeprecateAt` to the minute and refuses a time in the past: EC2
/// API reference, EnableImageDeprecation).
pub fn deprecate_at(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::minutes(1)).unwrap_or(now) + Duration::minutes(1)
}

/// The steps that take `image` out of circulation (`disable`: also DisableImage), and the
/// set of changes its mark records. No steps when a mark the stack proves says so already and
/// the image is deprecated (and disabled) as asked.
pub fn recall_steps(image: &Image, disable: bool, now: DateTime<Utc>) -> (Vec<Step>, Vec<String>) {
    let mut steps = Vec::new();
    let mut set: Vec<String> = if image.recall_proven() {
        recall_set(image).into_iter().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    if image.deprecation_time.is_none_or(|t| t > deprecate_at(now)) {
        steps.push(Step::Deprecate);
        if !set.iter().any(|s| s.starts_with(SET_DEPRECATION)) {
            set.push(match image.deprecation_time {
                Some(t) => format!("{SET_DEPRECATION_WAS}{}", t.to_rfc3339()),
                None => SET_DEPRECATION.to_string(),
            });
        }
    }
    if disable && image.state != ImageState::Disabled {
        steps.push(Step::Disable);
        if !set.iter().any(|s| s == SET_DISABLE) {
            set.push(SET_DISABLE.to_string());
        }
    }
    let recorded: Vec<&str> = recall_set(image);
    if !image.recall_proven() || set.iter().map(String::as_str).ne(recorded.iter().copied()) {
        steps.insert(0, Step::Mark);
    }
    (steps, set)
}

/// The steps that undo the recall of `recall_of` on `image`: what its proven mark says the
/// recall changed, then the marks. A mark the stack cannot prove (forged, altered) is only
/// removed: what it claims the recall changed is not believed. An image another recall marked
/// (another `recall-of`) is left to that recall's undo.
pub fn undo_steps(image: &Image, recall_of: &str, now: DateTime<Utc>) -> Vec<Step> {
    if image.tags.get(tags::RECALL_OF).map(String::as_str) != Some(recall_of) {
        return Vec::new();
    }
    if !image.recall_proven() {
        return vec![Step::Unmark];
    }
    let set = recall_set(image);
    let mut out = Vec::new();
    if set.contains(&SET_DISABLE) && image.state == ImageState::Disabled {
        out.push(Step::Enable);
    }
    if set.contains(&SET_DEPRECATION) && image.deprecation_time.is_some() {
        out.push(Step::CancelDeprecation);
    }
    if deprecation_was(image).is_some_and(|t| t > now) {
        out.push(Step::RestoreDeprecation);
    }
    out.push(Step::Unmark);
    out
}

/// What the recall recorded it changed on the image.
pub fn recall_set(image: &Image) -> Vec<&str> {
    image
        .tags
        .get(tags::RECALL_SET)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// The deprecation time the image had before the recall, when it had a later one.
pub fn deprecation_was(image: &Image) -> Option<DateTime<Utc>> {
    recall_set(image)
        .iter()
        .find_map(|s| s.strip_prefix(SET_DEPRECATION_WAS))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a reference (an ARN from DescribeImageReferences) is an SSM parameter: it names one
/// AMI, so it launches the image for as long as it names it.
pub fn is_parameter(reference: &str) -> bool {
    reference.contains(":parameter/")
}

/// The launch template id of a reference, if it is one (`...:launch-template/lt-...`).
pub fn template_of(reference: &str) -> Option<&str> {
    reference.split_once(":launch-template/").map(|(_, id)| id)
}
