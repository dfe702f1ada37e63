//! The planner: table-driven cases and property tests of the safety rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use crate::domain::model::{
    EvidenceGap, Image, ImageState, ReportState, Snapshot, TemplateUse, Usage, UsageReport,
};
use crate::domain::policy::{Deployment, PolicyDocument};
use crate::jobs::ageout::plan::{plan, ActionKind, KeepReason, Plan, PlanInput};

const ME: &str = "111111111111";
const OTHER: &str = "222222222222";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .expect("date")
}

fn doc(retain: &str) -> PolicyDocument {
    let json = format!(
        r#"{{"policies": [{{"name": "web", "select": {{"tags": {{"Family": "*"}}}}, "family_by": "tag:Family", "retain": {retain}}}]}}"#
    );
    PolicyDocument::parse(&json, Deployment::default()).expect("policy")
}

fn image(id: &str, family: &str, days: i64) -> Image {
    let mut i = Image::new(
        id,
        &format!("{family}-{id}"),
        ME,
        now() - Duration::days(days),
    );
    i.tags.insert("Family".into(), family.into());
    i.snapshot_ids = vec![format!("snap-{id}")];
    // Private unless a test says otherwise (the scan leaves it unknown until looked up).
    i.shared = Some(false);
    i
}

fn snapshots_of(images: &[Image]) -> Vec<Snapshot> {
    images
        .iter()
        .flat_map(|i| i.snapshot_ids.iter().map(move |s| (s, i)))
        .map(|(s, i)| Snapshot {
            id: s.clone(),
            owner_id: i.owner_id.clone(),
            for_an_image: true,
            started: i.created,
            tags: Default::default(),
            size: Default::default(),
        })
        .collect()
}

fn run(document: &PolicyDocument, images: &[Image], usage: &Usage) -> Plan {
    run_with(document, images, &snapshots_of(images), usage)
}

fn run_with(
    document: &PolicyDocument,
    images: &[Image],
    snapshots: &[Snapshot],
    usage: &Usage,
) -> Plan {
    plan(PlanInput {
        account_id: ME,
        images,
        snapshots,
        usage,
        document,
        policies: None,
        image_ids: None,
        as_of: now(),
        recycle_bin: None,
    })
}

fn action_of(p: &Plan, id: &str) -> Option<ActionKind> {
    p.actions
        .iter()
        .find(|a| a.image_id.as_deref() == Some(id) && a.kind != ActionKind::DeleteSnapshot)
        .map(|a| a.kind)
}

fn deleted_snapshots(p: &Plan) -> BTreeSet<&str> {
    p.actions
        .iter()
        .filter(|a| a.kind == ActionKind::DeleteSnapshot)
        .filter_map(|a| a.snapshot_id.as_deref())
        .collect()
}

fn kept_for(p: &Plan, id: &str) -> Option<KeepReason> {
    p.kept.iter().find(|k| k.image_id == id).map(|k| k.reason)
}

const STAGES: &str = r#"{"keep_latest": 1, "deprecate_after_days": 30, "disable_after_days": 60, "max_age_days": 90, "protect_tags": {"Retain": "true"}}"#;

fn report(id: &str, hours: i64, state: ReportState, users: &[(&str, &str, u64)]) -> UsageReport {
    let mut accounts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (account, kind, n) in users {
        accounts
            .entry(account.to_string())
            .or_default()
            .insert(kind.to_string(), *n);
    }
    UsageReport {
        report_id: id.into(),
        state,
        created: now() - Duration::hours(hours),
        accounts,
        all_accounts: true,
        resource_types: BTreeMap::from([
            ("ec2:Instance".to_string(), None),
            ("ec2:LaunchTemplate".to_string(), Some(10_000)),
            ("imagebuilder:ImageRecipe".to_string(), None),
            ("imagebuilder:ContainerRecipe".to_string(), None),
        ]),
    }
}

fn sharing_doc(extra: &str) -> PolicyDocument {
    let json = format!(
        r#"{{"policies": [{{"name": "web", "select": {{"tags": {{"Family": "*"}}}}, "family_by": "tag:Family",
            "share": {{"accounts": ["210987654321"]}},
            "retain": {{"keep_latest": 1, "disable_after_days": 60, "max_age_days": 90{extra}}}}}]}}"#
    );
    PolicyDocument::parse(&json, Deployment::default()).expect("policy")
}

mod plan;
mod properties;
mod restore;
mod rounds;
mod run;
mod usage;
