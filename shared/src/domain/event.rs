//! The events the tool announces on EventBridge: source `ami.automation`, one detail type per
//! action. Publishing them is a port ([`crate::ports::EventSink`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `source` of every event this tool publishes.
pub const SOURCE: &str = "ami.automation";

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `AMI Deprecated`, `AMI Deregistered`, `Policy Run Completed`, ...
    pub detail_type: String,
    /// The ARNs the event is about (rules can match on them).
    pub resources: Vec<String>,
    /// The JSON detail.
    pub detail: serde_json::Value,
}

/// What publishing achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Published {
    /// Events accepted by EventBridge.
    pub published: usize,
    /// Events that could not be published, with the error: lost (the invocation fails).
    pub failed: Vec<String>,
    /// Events EventBridge did not take, kept in the outbox for the next run to send.
    #[serde(skip_serializing_if = "is_zero")]
    pub parked: usize,
    /// Events an earlier run could not publish, sent by this one from the outbox.
    #[serde(skip_serializing_if = "is_zero")]
    pub resent: usize,
    /// What went wrong with the outbox (it is not this run's failure: an event refused again
    /// goes to the failure queue, whose alarm fires).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The largest detail an event carries. PutEvents takes at most 256 KB per request (entries
/// of a batch together: EventBridge API reference, PutEvents; "Amazon EventBridge quotas"), so
/// a detail above this has its long lists shortened, with a `truncated` note saying by how much.
pub const MAX_DETAIL_BYTES: usize = 64 * 1024;

/// Items kept of each long list of a detail or a report that had to be shortened.
pub const KEPT_ITEMS: usize = 20;

/// Builds an event; a detail over [`MAX_DETAIL_BYTES`] keeps the first [`KEPT_ITEMS`] of each
/// list and says how many it left out (`truncated`: JSON path → items omitted).
pub fn event(detail_type: &str, resources: Vec<String>, detail: serde_json::Value) -> Event {
    let mut detail = detail;
    if detail.to_string().len() > MAX_DETAIL_BYTES {
        let omitted = shorten_lists(&mut detail, KEPT_ITEMS);
        let counts: serde_json::Map<String, serde_json::Value> = omitted
            .into_iter()
            .map(|(path, items)| (path, items.len().into()))
            .collect();
        if let Some(object) = detail.as_object_mut() {
            object.insert("truncated".into(), counts.into());
        }
    }
    Event {
        detail_type: detail_type.to_string(),
        resources,
        detail,
    }
}

impl Event {
    /// Its size as PutEvents counts it: the UTF-8 bytes of source, detail type, detail and
    /// resources.
    pub fn entry_size(&self) -> usize {
        SOURCE.len()
            + self.detail_type.len()
            + self.detail.to_string().len()
            + self.resources.iter().map(String::len).sum::<usize>()
    }
}

/// Shortens every array of `value` longer than `keep` to its first `keep` items, depth first;
/// returns the items left out, by the JSON path of their array (`$.plan`, `$.regions[0].kept`).
pub fn shorten_lists(
    value: &mut serde_json::Value,
    keep: usize,
) -> Vec<(String, Vec<serde_json::Value>)> {
    fn walk(
        value: &mut serde_json::Value,
        path: String,
        keep: usize,
        out: &mut Vec<(String, Vec<serde_json::Value>)>,
    ) {
        match value {
            serde_json::Value::Array(items) => {
                if items.len() > keep {
                    let rest = items.split_off(keep);
                    out.push((path.clone(), rest));
                }
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, format!("{path}[{i}]"), keep, out);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    walk(v, format!("{path}.{k}"), keep, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "$".into(), keep, &mut out);
    out
}

/// Converts a serialisable value to JSON, which cannot fail for the plain structs of this crate.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::Refused(format!("cannot encode the report: {e}")))
}

/// The detail-types the stack publishes, all with source [`SOURCE`]: the one place they are
/// written. `docs/events.md` lists exactly these (a unit test checks).
pub mod detail_type {
    /// `AMI Build Started`.
    pub const AMI_BUILD_STARTED: &str = "AMI Build Started";
    /// `AMI Available`.
    pub const AMI_AVAILABLE: &str = "AMI Available";
    /// `AMI Build Failed`.
    pub const AMI_BUILD_FAILED: &str = "AMI Build Failed";
    /// `AMI Shared`.
    pub const AMI_SHARED: &str = "AMI Shared";
    /// `AMI Unshared`.
    pub const AMI_UNSHARED: &str = "AMI Unshared";
    /// `AMI Copy Started`.
    pub const AMI_COPY_STARTED: &str = "AMI Copy Started";
    /// `AMI Copy Failed`.
    pub const AMI_COPY_FAILED: &str = "AMI Copy Failed";
    /// `AMI Validated`.
    pub const AMI_VALIDATED: &str = "AMI Validated";
    /// `AMI Validation Failed`.
    pub const AMI_VALIDATION_FAILED: &str = "AMI Validation Failed";
    /// `AMI Published`.
    pub const AMI_PUBLISHED: &str = "AMI Published";
    /// `AMI Publish Held`.
    pub const AMI_PUBLISH_HELD: &str = "AMI Publish Held";
    /// `AMI Deprecated`.
    pub const AMI_DEPRECATED: &str = "AMI Deprecated";
    /// `AMI Retirement Scheduled`.
    pub const AMI_RETIREMENT_SCHEDULED: &str = "AMI Retirement Scheduled";
    /// `AMI Disabled`.
    pub const AMI_DISABLED: &str = "AMI Disabled";
    /// `AMI Deregistered`.
    pub const AMI_DEREGISTERED: &str = "AMI Deregistered";
    /// `AMI Snapshot Deleted`.
    pub const AMI_SNAPSHOT_DELETED: &str = "AMI Snapshot Deleted";
    /// `AMI Deregistration Protection Enabled`.
    pub const AMI_DEREGISTRATION_PROTECTION_ENABLED: &str = "AMI Deregistration Protection Enabled";
    /// `AMI Deregistration Protection Disabled`.
    pub const AMI_DEREGISTRATION_PROTECTION_DISABLED: &str =
        "AMI Deregistration Protection Disabled";
    /// `AMI Restored`.
    pub const AMI_RESTORED: &str = "AMI Restored";
    /// `AMI Recalled`.
    pub const AMI_RECALLED: &str = "AMI Recalled";
    /// `AMI Recall Undone`.
    pub const AMI_RECALL_UNDONE: &str = "AMI Recall Undone";
    /// `AMI Distributed`: one unit (a target account and region) served.
    pub const AMI_DISTRIBUTED: &str = "AMI Distributed";
    /// `AMI Distribution Failed`: a unit could not be served (no role, denied, ...).
    pub const AMI_DISTRIBUTION_FAILED: &str = "AMI Distribution Failed";
    /// `Policy Run Completed`.
    pub const POLICY_RUN_COMPLETED: &str = "Policy Run Completed";
    /// `Policy Run Continued`.
    pub const POLICY_RUN_CONTINUED: &str = "Policy Run Continued";

    /// Every detail-type, in the order `docs/events.md` lists them.
    pub const ALL: [&str; 25] = [
        AMI_BUILD_STARTED,
        AMI_AVAILABLE,
        AMI_BUILD_FAILED,
        AMI_SHARED,
        AMI_UNSHARED,
        AMI_COPY_STARTED,
        AMI_COPY_FAILED,
        AMI_VALIDATED,
        AMI_VALIDATION_FAILED,
        AMI_PUBLISHED,
        AMI_PUBLISH_HELD,
        AMI_DEPRECATED,
        AMI_RETIREMENT_SCHEDULED,
        AMI_DISABLED,
        AMI_DEREGISTERED,
        AMI_SNAPSHOT_DELETED,
        AMI_DEREGISTRATION_PROTECTION_ENABLED,
        AMI_DEREGISTRATION_PROTECTION_DISABLED,
        AMI_RESTORED,
        AMI_RECALLED,
        AMI_RECALL_UNDONE,
        AMI_DISTRIBUTED,
        AMI_DISTRIBUTION_FAILED,
        POLICY_RUN_COMPLETED,
        POLICY_RUN_CONTINUED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_too_large_for_put_events_keeps_the_first_items_and_says_what_it_left_out() {
        let ids: Vec<String> = (0..50_000).map(|n| format!("ami-{n:017x}")).collect();
        let e = event(
            "Policy Run Completed",
            Vec::new(),
            serde_json::json!({"complete": false, "evidence_gaps": [{"call": "DescribeImageReferences", "images": ids}]}),
        );
        assert!(e.entry_size() <= MAX_DETAIL_BYTES, "{}", e.entry_size());
        assert_eq!(e.detail["complete"], false, "scalars stay");
        assert_eq!(
            e.detail["evidence_gaps"][0]["images"]
                .as_array()
                .map(Vec::len),
            Some(KEPT_ITEMS)
        );
        assert_eq!(
            e.detail["truncated"]["$.evidence_gaps[0].images"],
            50_000 - KEPT_ITEMS
        );
        // A small detail is untouched.
        let small = event(
            "AMI Deregistered",
            Vec::new(),
            serde_json::json!({"images": vec!["ami-1"; 30]}),
        );
        assert!(small.detail.get("truncated").is_none());
        assert_eq!(small.detail["images"].as_array().map(Vec::len), Some(30));
    }
}
