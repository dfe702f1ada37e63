//! The Recycle Bin's retention rules (Recycle Bin API reference, ListRules and GetRule; EBS User
//! Guide, "Recycle Bin"): what a deregistered AMI or a deleted snapshot becomes. A rule retains
//! the resources of its type that carry any of its tags; a rule without tags (region-level)
//! retains every resource of its type except those carrying one of its exclusion tags; when
//! several rules retain a resource, the longest retention applies. An AMI in the bin can be
//! restored only while the snapshots it needs can be restored too.

use crate::domain::model::Tags;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// What a rule retains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinResource {
    /// `EC2_IMAGE`: deregistered AMIs.
    Image,
    /// `EBS_SNAPSHOT`: deleted snapshots.
    Snapshot,
}

/// A tag a rule names: a key, and the value it must have (any value when none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTag {
    /// The tag key.
    pub key: String,
    /// The value; `None` matches any.
    pub value: Option<String>,
}

impl RuleTag {
    fn on(&self, tags: &Tags) -> bool {
        tags.get(&self.key)
            .is_some_and(|v| self.value.as_ref().is_none_or(|want| want == v))
    }
}

/// One retention rule of a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionRule {
    /// Its identifier.
    pub id: String,
    /// What it retains.
    pub resource: BinResource,
    /// How long a resource stays in the bin.
    pub days: u32,
    /// A tag-level rule's tags (empty: a region-level rule).
    pub tags: Vec<RuleTag>,
    /// A region-level rule's exclusion tags.
    pub exclude_tags: Vec<RuleTag>,
    /// Only an `available` rule retains anything (a new one is `pending` for a while).
    pub available: bool,
    /// A locked rule cannot be changed or deleted until it is unlocked and its unlock delay
    /// has passed, so what it retains stays retained.
    pub locked: bool,
}

impl RetentionRule {
    /// Whether the rule retains a resource of its type carrying `tags`.
    pub fn retains(&self, tags: &Tags) -> bool {
        if !self.available {
            return false;
        }
        if self.tags.is_empty() {
            !self.exclude_tags.iter().any(|t| t.on(tags))
        } else {
            self.tags.iter().any(|t| t.on(tags))
        }
    }
}

/// A region's retention rules, as read at the start of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecycleBin {
    /// Every rule for AMIs and snapshots.
    pub rules: Vec<RetentionRule>,
}

/// Whether an AMI the plan deregisters can be restored from the Recycle Bin, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// The AMI and every snapshot deleted with it stay in the bin at least as long as the AMI.
    pub recoverable: bool,
    /// Until when it can be restored (from the run's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Days the AMI stays in the bin (none: no rule retains it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_days: Option<u32>,
    /// Days the shortest-kept of its deleted snapshots stays in the bin (none: one is not
    /// retained; absent when no snapshot is deleted with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_days: Option<u32>,
    /// Why it is not recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    /// A locked rule keeps the AMI and each snapshot deleted with it: nobody can shorten that
    /// retention or delete the rule meanwhile.
    pub locked: bool,
}

impl Recovery {
    /// An AMI the Recycle Bin never keeps, and why.
    pub fn never(why: &str) -> Recovery {
        Recovery {
            recoverable: false,
            until: None,
            image_days: None,
            snapshot_days: None,
            why_not: Some(why.to_string()),
            locked: false,
        }
    }
}

impl RecycleBin {
    /// The longest retention of the rules that retain a resource of `kind` with `tags`.
    pub fn retention(&self, kind: BinResource, tags: &Tags) -> Option<u32> {
        self.retaining(kind, tags).map(|r| r.days).max()
    }

    fn retaining<'a>(
        &'a self,
        kind: BinResource,
        tags: &'a Tags,
    ) -> impl Iterator<Item = &'a RetentionRule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.resource == kind && r.retains(tags))
    }

    /// Whether an AMI with `image_tags` whose deleted snapshots carry `snapshot_tags` can be
    /// restored, as of `as_of`. It is when a rule retains the AMI and every deleted snapshot is
    /// retained at least as long: an AMI in the bin without its snapshots cannot be restored.
    pub fn recovery<'a>(
        &self,
        image_tags: &Tags,
        snapshot_tags: impl IntoIterator<Item = &'a Tags>,
        as_of: DateTime<Utc>,
    ) -> Recovery {
        let image_days = self.retention(BinResource::Image, image_tags);
        let mut any = false;
        let mut snapshot_days: Option<u32> = Some(u32::MAX);
        let mut locked = self
            .retaining(BinResource::Image, image_tags)
            .any(|r| r.locked);
        for tags in snapshot_tags {
            any = true;
            locked &= self
                .retaining(BinResource::Snapshot, tags)
                .any(|r| r.locked);
            snapshot_days = match (snapshot_days, self.retention(BinResource::Snapshot, tags)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
        let snapshot_days = if any { snapshot_days } else { None };
        let why_not = match (image_days, snapshot_days) {
            (None, _) => Some("no Recycle Bin rule retains the AMI".to_string()),
            (Some(_), None) if any => {
                Some("no Recycle Bin rule retains every snapshot deleted with it".to_string())
            }
            (Some(i), Some(s)) if s < i => Some(format!(
                "its snapshots stay {s} days in the Recycle Bin, the AMI {i}: it could not be restored after {s}"
            )),
            _ => None,
        };
        Recovery {
            recoverable: why_not.is_none(),
            until: image_days
                .filter(|_| why_not.is_none())
                .map(|d| as_of + Duration::days(i64::from(d))),
            image_days,
            snapshot_days,
            locked: locked && why_not.is_none(),
            why_not,
        }
    }
}

/// An AMI in the Recycle Bin (ListImagesInRecycleBin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinImage {
    pub image_id: String,
    /// When it leaves the bin for good.
    pub exit: Option<DateTime<Utc>>,
}

/// A snapshot in the Recycle Bin (ListSnapshotsInRecycleBin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinSnapshot {
    pub snapshot_id: String,
    /// EC2's description: `Created by CreateImage(i-...) for ami-...` or
    /// `Copied for DestinationAmi ami-... from SourceAmi ...` for the snapshots of an AMI.
    pub description: String,
}

impl BinSnapshot {
    /// Whether EC2 made it for `image_id` (by its description).
    pub fn made_for(&self, image_id: &str) -> bool {
        self.description
            .strip_prefix("Created by CreateImage(")
            .and_then(|rest| rest.split_once(") for "))
            .is_some_and(|(_, ami)| ami.split_whitespace().next() == Some(image_id))
            || self
                .description
                .strip_prefix("Copied for DestinationAmi ")
                .is_some_and(|rest| rest.split_whitespace().next() == Some(image_id))
    }
}
