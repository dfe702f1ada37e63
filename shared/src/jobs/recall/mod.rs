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
use crate::domain::ids::Region;
use crate::domain::policy::PolicyDocument;
use crate::domain::trigger::{RecallRequest, RunRequest};
use crate::jobs::{Line, PAST_DEADLINE};

pub use execute::run;

/// The lines the run's deadline left, which a continuation of the same request takes.
pub fn left_for_later(lines: &[RecallLine]) -> usize {
    lines
        .iter()
        .filter(|l| {
            l.outcome == RecallOutcome::Deferred && l.error.as_deref() == Some(PAST_DEADLINE)
        })
        .count()
}

/// Says of each line the deadline left why no continuation takes it: send the request again.
pub fn not_continued(lines: &mut [RecallLine], why: &str) {
    for line in lines {
        if line.outcome == RecallOutcome::Deferred && line.error.as_deref() == Some(PAST_DEADLINE) {
            line.note = Some(format!(
                "no continuation ({why}): send the same request again"
            ));
        }
    }
}

/// Says of each line the deadline left that the continuation takes it.
pub fn continued(lines: &mut [RecallLine]) {
    for line in lines {
        if line.outcome == RecallOutcome::Deferred && line.error.as_deref() == Some(PAST_DEADLINE) {
            line.outcome = RecallOutcome::Continues;
        }
    }
}
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
    /// Out of time, and the continuation this run started takes it.
    Continues,
    /// Its link to the recalled AMI is only claimed by lineage tags: listed, not acted on.
    Unconfirmed,
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
    /// A recall left unfinished (deferred) is a failure too: nothing continues it but the same
    /// request sent again, so the alarm must say so.
    fn failed(&self) -> bool {
        matches!(
            self.outcome,
            RecallOutcome::Failed | RecallOutcome::Deferred | RecallOutcome::Unconfirmed
        )
    }
}

/// One `AMI Recalled` for a real run that took images out of circulation (one, so that
/// ami-publish sweeps once), one `AMI Recall Undone` for an undo that gave some back: the
/// recalled AMI, its region when it is the account's, the reason, and the lines of those images
/// (their place in the tree, steps and consumers).
pub fn events(lines: &[RecallLine], recall: &RecallRequest) -> Vec<Event> {
    [
        (RecallOutcome::Recalled, detail_type::AMI_RECALLED),
        (RecallOutcome::Undone, detail_type::AMI_RECALL_UNDONE),
    ]
    .into_iter()
    .filter_map(|(outcome, kind)| {
        let done: Vec<&RecallLine> = lines.iter().filter(|l| l.outcome == outcome).collect();
        if done.is_empty() {
            return None;
        }
        let root = lines
            .iter()
            .find(|l| l.member.depth == 0 && l.member.image_id == recall.image_id);
        let resources = done
            .iter()
            .map(|l| l.member.region.image_arn(&l.member.image_id))
            .collect();
        let detail = serde_json::json!({
            "image_id": recall.image_id,
            "region": root.map(|l| l.member.region.clone()),
            "reason": recall.reason,
            "images": done,
        });
        Some(event(kind, resources, detail))
    })
    .collect()
}

/// Where a recall looks: the regions its request names, or the function's own region and every
/// region a policy of the document copies into (where copies of the tree may be).
pub fn regions(document: &PolicyDocument, home: &Region, request: &RunRequest) -> Vec<Region> {
    if let Some(regions) = &request.regions {
        return regions.clone();
    }
    let mut out = vec![home.clone()];
    for region in document
        .policies
        .iter()
        .flat_map(|p| p.copy.iter().flat_map(|c| c.regions.keys()))
    {
        if !out.contains(region) {
            out.push(region.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
