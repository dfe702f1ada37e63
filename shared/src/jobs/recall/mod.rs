//! Recall: take a bad image and everything made from it out of circulation. A run request
//! `{"recall": {"image_id", "reason"}}` to the age-out function (a dry run unless it says
//! `dry_run: false`) finds the tree of the account's images descended from it in every region
//! the run manages ([`tree`]), and for each: marks it recalled with the stack's seal (share,
//! copy and publish refuse it from then on, and no launch test starts for it), deprecates it
//! now, and with `disable: true` disables it once no launch template or SSM parameter names it
//! any more. ami-publish, told by the `AMI Recalled` events, moves its destinations that name
//! an image of the tree back to the newest promotable image of the family outside it.
//! `{"recall": {"image_id", "undo": true}}` removes the marks and what the recall set.
//! Each line lists what uses the image (DescribeImageReferences), so a team can tell them.

mod affected;
mod execute;
pub mod plan;
pub mod tree;

use serde::Serialize;

use crate::domain::event::{detail_type, event, Event};
use crate::jobs::Line;

pub use execute::run;
use plan::Step;
use tree::Member;

/// What became of one image of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecallOutcome {
    /// Dry run: the steps a real run takes.
    WouldRecall,
    /// Out of circulation now.
    Recalled,
    /// Marked, deprecated (and disabled) already: nothing to do.
    AlreadyRecalled,
    /// Dry run of an undo: the steps a real run takes.
    WouldUndo,
    /// Back in circulation (what names it was not moved back).
    Undone,
    /// Not marked by this recall: nothing to undo.
    NothingToUndo,
    /// Throttled or out of time: the same request finishes it.
    Deferred,
    /// EC2 or KMS refused a step; see `error`.
    Failed,
}

/// One image of the tree, with what the recall did to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallLine {
    #[serde(flatten)]
    pub member: Member,
    /// The steps, in order (for a dry run: those a real run takes).
    pub steps: Vec<Step>,
    pub outcome: RecallOutcome,
    /// What uses it: instances, launch templates, SSM parameters, Image Builder recipes (ARNs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// Other accounts that use it (`<account>: <n> <resource type>`), from `usage_report`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_accounts: Vec<String>,
    /// The AMI usage report `other_accounts` comes from, or what became of asking for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_report: Option<String>,
    /// What else a person should know (a disable left for later, consumers not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The error of the step that failed or was deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Line for RecallLine {
    type Outcome = RecallOutcome;
    fn outcome(&self) -> &RecallOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        self.outcome == RecallOutcome::Failed
    }
}

/// `AMI Recalled` for each image a real run took out of circulation, `AMI Recall Undone` for
/// each it gave back, with the line (its tree position, reason and consumers).
pub fn events(lines: &[RecallLine], reason: Option<&str>) -> Vec<Event> {
    lines
        .iter()
        .filter_map(|l| {
            let kind = match l.outcome {
                RecallOutcome::Recalled => detail_type::AMI_RECALLED,
                RecallOutcome::Undone => detail_type::AMI_RECALL_UNDONE,
                _ => return None,
            };
            let mut detail = serde_json::to_value(l).unwrap_or_default();
            if let (Some(reason), Some(map)) = (reason, detail.as_object_mut()) {
                map.insert("reason".into(), reason.into());
            }
            let resources = vec![l.member.region.image_arn(&l.member.image_id)];
            Some(event(kind, resources, detail))
        })
        .collect()
}

#[cfg(test)]
mod tests;
