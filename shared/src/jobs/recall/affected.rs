//! Who a recall affects: what in the account uses each image of the tree
//! (DescribeImageReferences), and the other accounts that use it (AMI usage reports: EC2 API
//! reference, CreateImageUsageReport and DescribeImageUsageReports; a report is built
//! asynchronously, so one is requested when none is fresh, and the same request sent again
//! reads it).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::plan;
use super::tree::Member;
use crate::domain::ids::Region;
use crate::domain::model::{ReportState, UsageReport};
use crate::domain::policy::TemplateDepth;
use crate::jobs::Context;
use crate::ports::{
    Cloud, ConsumerUsage, ImageInventory, LaunchTemplateState, LaunchTemplates,
    IMAGE_REFERENCES_MAX_IDS, USAGE_REPORT_MAX_IDS,
};

/// A usage report younger than this says who uses an image now; an older one is replaced.
pub const FRESH_REPORT: Duration = Duration::hours(24);

/// `(image id, region)`.
pub type Key = (String, String);

/// The key of a member of the tree.
pub fn key(member: &Member) -> Key {
    (member.image_id.clone(), member.region.to_string())
}

/// What one image of the tree is used by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Affected {
    /// In the account: instances, launch templates, SSM parameters, recipes (ARNs).
    pub used_by: Vec<String>,
    /// DescribeImageReferences could not be read.
    pub unread: bool,
    /// What launches it now, which a disable waits for: the SSM parameters that name it, and
    /// the launch templates whose `$Default` or `$Latest` does (or that could not be read).
    pub launched_by: Vec<String>,
    /// Other accounts that use it (`<account>: <n> <resource type>`), from `report`.
    pub other_accounts: Vec<String>,
    /// Which usage report says so, or what became of asking for one.
    pub report: Option<String>,
}

/// The tree's images by region, for the calls that take several.
fn by_region(members: &[Member]) -> BTreeMap<&Region, Vec<String>> {
    let mut out: BTreeMap<&Region, Vec<String>> = BTreeMap::new();
    for m in members {
        out.entry(&m.region).or_default().push(m.image_id.clone());
    }
    out
}

/// What uses each image of the tree; with `request` (a real run), a usage report is requested
/// for each image that has no fresh one.
pub async fn affected<C: Cloud>(
    ctx: &Context<'_, C>,
    members: &[Member],
    request: bool,
    now: DateTime<Utc>,
) -> HashMap<Key, Affected> {
    let mut out: HashMap<Key, Affected> = HashMap::new();
    for (region, ids) in by_region(members) {
        let ec2 = ctx.cloud.ec2(region);
        let mut templates = Templates::new();
        for chunk in ids.chunks(IMAGE_REFERENCES_MAX_IDS) {
            let found = ec2.image_references(chunk, TemplateDepth::All).await;
            for id in chunk {
                let entry = out.entry((id.clone(), region.to_string())).or_default();
                match &found {
                    Ok(refs) => {
                        entry.used_by = refs.get(id).into_iter().flatten().cloned().collect()
                    }
                    Err(_) => entry.unread = true,
                }
                entry.launched_by = launched_by(&ec2, id, &entry.used_by, &mut templates).await;
            }
        }

        for chunk in ids.chunks(USAGE_REPORT_MAX_IDS) {
            let reports = ec2.usage_reports(chunk).await;
            for id in chunk {
                let entry = out.entry((id.clone(), region.to_string())).or_default();
                let newest = match &reports {
                    Ok(r) => fresh(r.get(id).map(Vec::as_slice).unwrap_or_default(), now),
                    Err(e) => Err(format!("usage reports could not be read: {e}")),
                };
                *entry = with_report(&ec2, id, entry.clone(), newest, request, now).await;
            }
        }
    }
    out
}

/// Launch templates read in a region, by id: each is read once however many images it names.
type Templates = HashMap<String, Result<Option<LaunchTemplateState>, String>>;

/// What of `used_by` launches `image_id` now: SSM parameters, and launch templates whose
/// `$Default` or `$Latest` names it; a template that cannot be read counts (fail closed).
/// Older versions of a template are history, not what launches: a rollback leaves them.
async fn launched_by<E: LaunchTemplates>(
    ec2: &E,
    image_id: &str,
    used_by: &[String],
    templates: &mut Templates,
) -> Vec<String> {
    let mut out = Vec::new();
    for reference in used_by {
        if plan::is_parameter(reference) {
            out.push(reference.clone());
            continue;
        }
        let Some(template) = plan::template_of(reference) else {
            continue;
        };
        if !templates.contains_key(template) {
            let read = ec2
                .launch_template(template)
                .await
                .map_err(|e| e.to_string());
            templates.insert(template.to_string(), read);
        }
        match &templates[template] {
            Ok(Some(state))
                if state.default_image.as_deref() != Some(image_id)
                    && state.latest_image.as_deref() != Some(image_id) => {}
            Ok(None) => {}
            Ok(Some(_)) => out.push(reference.clone()),
            Err(e) => out.push(format!("{reference} (could not be read: {e})")),
        }
    }
    out
}

/// The newest report that covers every account and is fresh (`Ok(None)`: none is).
fn fresh(reports: &[UsageReport], now: DateTime<Utc>) -> Result<Option<&UsageReport>, String> {
    Ok(reports.iter().find(|r| {
        r.all_accounts && r.state == ReportState::Available && now - r.created < FRESH_REPORT
    }))
}

async fn with_report<E: ConsumerUsage>(
    ec2: &E,
    image_id: &str,
    mut entry: Affected,
    newest: Result<Option<&UsageReport>, String>,
    request: bool,
    now: DateTime<Utc>,
) -> Affected {
    match newest {
        Ok(Some(report)) => {
            // The account's own use is listed by DescribeImageReferences; the owner is not one
            // of the "other" accounts. An empty owner filters nothing it should not.
            entry.other_accounts = report.consumers("");
            entry.report = Some(format!(
                "{} of {}",
                report.report_id,
                report.created.to_rfc3339()
            ));
        }
        Ok(None) if !request => {
            entry.report = Some("no fresh usage report: a real run requests one".into())
        }
        Ok(None) => {
            let token = format!("{image_id}-recall-{}", now.format("%Y%m%d%H"));
            entry.report = Some(
                match ec2
                    .request_usage_report(image_id, &token, TemplateDepth::All)
                    .await
                {
                    Ok(id) => format!(
                        "requested {id}: EC2 builds it; send the same request again to read it"
                    ),
                    Err(e) => format!("a usage report could not be requested: {e}"),
                },
            );
        }
        Err(why) => entry.report = Some(why),
    }
    entry
}
