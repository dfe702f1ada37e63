//! Copy: each managed AMI into the destination regions of its policy, encrypted as the policy
//! says, with its lineage tagged on the copy and its snapshots. CopyImage is called in the
//! destination region with a `ClientToken` derived from (source image, destination), so a
//! repeated event or a retry never makes a second copy; an existing copy (found by its lineage
//! tag) is never copied again, and a copy is never copied.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;

use crate::app::{App, Deadline};
use crate::build::CREATED_BY_TAG;
use crate::ec2::{Ec2, ImageInventory, RetireImages};
use crate::error::{Error, Result};
use crate::ids::Region;
use crate::model::{Image, ImageState};
use crate::policy::{CopyDestination, FamilyBy, Policy, PolicyDocument, POLICY_TAG};
use crate::publish::event;
use crate::trigger::{RunRequest, Trigger};

/// The function's name in reports and events.
pub const FUNCTION: &str = "ami-copy";
/// Tag on a copy naming its source image.
pub const SOURCE_IMAGE_TAG: &str = "ami-automation:source-image";
/// Tag on a copy naming its source region.
pub const SOURCE_REGION_TAG: &str = "ami-automation:source-region";
/// CopyImage copies in flight at once per destination region (an EC2 quota).
pub const MAX_IN_FLIGHT: usize = 100;

/// Tag on a copy: which attempt made it (a copy that failed is copied again as attempt + 1).
pub const ATTEMPT_TAG: &str = "ami-automation:copy-attempt";

/// What a copy is made of: the client token derives from all of it.
#[derive(Debug, Clone, Copy)]
pub struct CopyKey<'a> {
    /// The source AMI.
    pub source: &'a str,
    /// The source region.
    pub source_region: &'a Region,
    /// The destination region.
    pub destination: &'a Region,
    /// The copy's name.
    pub name: &'a str,
    /// Encryption of the copy.
    pub how: &'a CopyDestination,
    /// 1 for the first copy, one more for each copy that failed.
    pub attempt: u32,
}

/// The idempotency token of a copy (at most 64 ASCII characters, as CopyImage requires). It
/// derives from the source, the destination, the copy's parameters and the attempt: a retry of
/// the same copy gets the same copy, while a copy again after a failure or after a policy change
/// gets a new token (reusing a token with other parameters is `IdempotentParameterMismatch`, and
/// after a failure it would answer the failed copy's id).
pub fn client_token(key: &CopyKey<'_>) -> String {
    // FNV-1a: stable across releases and platforms (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let fields = [
        key.source_region.as_str(),
        key.name,
        if key.how.encrypted {
            "encrypted"
        } else {
            "plain"
        },
        key.how.kms_key_id.as_deref().unwrap_or(""),
        &key.attempt.to_string(),
    ];
    for field in fields {
        for byte in field.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("ami-copy-{}-{}-{hash:016x}", key.source, key.destination)
}

/// Whether an AMI is itself a copy made by this tool (or any CopyImage): it is never copied.
pub fn is_copy(image: &Image) -> bool {
    image.tags.contains_key(SOURCE_IMAGE_TAG)
}

/// What happened to one (source, destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyOutcome {
    /// Dry run: it would be copied.
    Planned,
    /// CopyImage was called; the copy is pending.
    Started,
    /// The destination already has the copy: nothing was done.
    Exists,
    /// Left for the next run: the deadline, the in-flight quota or throttling.
    Deferred,
    /// Not copied, with the reason.
    Refused,
    /// Not copied, and nothing is wrong: a sweep passes over a disabled or failed source
    /// (age-out disables AMIs as a retirement stage; a sweep must not fail every run for it).
    Skipped,
    /// EC2 failed the call.
    Failed,
}

/// One line of the copy report.
#[derive(Debug, Clone, Serialize)]
pub struct CopyResult {
    /// The source AMI.
    pub source_image_id: String,
    /// Its region.
    pub source_region: Region,
    /// The destination region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Region>,
    /// The policy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// The copy's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_image_id: Option<String>,
    /// What happened.
    pub outcome: CopyOutcome,
    /// Why (refusals, deferrals, failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Copies found failed (and deregistered) before this copy was made again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_copies: Vec<FailedCopy>,
}

/// A copy that EC2 failed after accepting it.
#[derive(Debug, Clone, Serialize)]
pub struct FailedCopy {
    /// The failed copy (deregistered).
    pub image_id: String,
    /// EC2's StateReason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
}

/// The Lambda handler of `ami-copy`.
pub async fn handle(
    app: &App,
    invocation: LambdaEvent<crate::payload::Payload>,
) -> Result<serde_json::Value, Diagnostic> {
    let started = Instant::now();
    let deadline = Deadline::from_lambda(invocation.context.deadline, &app.settings);
    let trigger = Trigger::parse(invocation.payload)?;
    let kind = trigger.kind();
    let mut ignored = None;
    let request = match crate::respond::ami_request(app, trigger, FUNCTION)? {
        Ok(r) => Some(r),
        Err(why) => {
            ignored = Some(why);
            None
        }
    };
    let dry_run = request
        .as_ref()
        .and_then(|r| r.dry_run)
        .unwrap_or(app.document.dry_run);
    let mut results = Vec::new();
    if let Some(request) = &request {
        let regions = request
            .regions
            .clone()
            .unwrap_or_else(|| vec![app.settings.home_region.clone()]);
        let event_driven = matches!(kind, "EC2 AMI State Change");
        for region in &regions {
            results.extend(
                copy_from(
                    app,
                    region,
                    request,
                    dry_run,
                    deadline,
                    event_driven,
                    &mut ignored,
                )
                .await,
            );
        }
    }
    let events = if dry_run {
        Vec::new()
    } else {
        let failed = results.iter().flat_map(|r| {
            r.failed_copies.iter().map(move |f| {
                let region = r.destination.as_ref().unwrap_or(&r.source_region);
                event(
                    "AMI Copy Failed",
                    vec![
                        region.image_arn(&f.image_id),
                        r.source_region.image_arn(&r.source_image_id),
                    ],
                    serde_json::json!({"source_image_id": r.source_image_id,
                        "source_region": r.source_region, "destination": r.destination,
                        "copy_image_id": f.image_id, "state_reason": f.state_reason,
                        "policy": r.policy, "copied_again": r.outcome == CopyOutcome::Started}),
                )
            })
        });
        let started = results
            .iter()
            .filter(|r| r.outcome == CopyOutcome::Started)
            .map(|r| {
                event(
                    "AMI Copy Started",
                    r.copy_image_id
                        .iter()
                        .zip(r.destination.iter())
                        .map(|(id, region)| region.image_arn(id))
                        .chain(std::iter::once(
                            r.source_region.image_arn(&r.source_image_id),
                        ))
                        .collect(),
                    serde_json::to_value(r).unwrap_or_default(),
                )
            });
        failed.chain(started).collect()
    };
    let run = crate::respond::Run {
        function: FUNCTION,
        trigger: kind,
        dry_run,
        window: None,
        ignored,
        started,
    };
    run.finish(app, results, events).await
}

/// The policy that copies an image: the first that manages it, if it has `copy`.
fn copying_policy<'a>(document: &'a PolicyDocument, image: &Image) -> Option<&'a Policy> {
    image.policy_in(document).filter(|p| p.copy.is_some())
}

fn line(image_id: &str, region: &Region, policy: &str) -> CopyResult {
    CopyResult {
        source_image_id: image_id.to_string(),
        source_region: region.clone(),
        destination: None,
        policy: policy.to_string(),
        copy_image_id: None,
        outcome: CopyOutcome::Refused,
        reason: None,
        failed_copies: Vec::new(),
    }
}

async fn copy_from(
    app: &App,
    region: &Region,
    request: &RunRequest,
    dry_run: bool,
    deadline: Deadline,
    event_driven: bool,
    ignored: &mut Option<String>,
) -> Vec<CopyResult> {
    let ec2 = app.ec2(region);
    let images = match ec2.images(None).await {
        Ok(i) => i,
        Err(e) => {
            let mut r = line("", region, "");
            r.outcome = CopyOutcome::Failed;
            r.reason = Some(e.to_string());
            return vec![r];
        }
    };
    let mut results = Vec::new();
    let mut sources = Vec::new();
    match &request.image_ids {
        Some(ids) => {
            for id in ids {
                let Some(image) = images.iter().find(|i| &i.id == id) else {
                    let mut r = line(id, region, "");
                    r.reason = Some(format!(
                        "{id} is not an AMI of the account in {region}: only the account's own AMIs are copied (unknown, or owned by another account)"
                    ));
                    results.push(r);
                    continue;
                };
                if is_copy(image) {
                    // The `available` event of a copy arriving: never copy a copy.
                    *ignored = Some(format!(
                        "{id} is a copy (of {}): a copy is never copied",
                        image.tags[SOURCE_IMAGE_TAG]
                    ));
                    continue;
                }
                match copying_policy(&app.document, image) {
                    Some(p) => sources.push((image, p)),
                    None if event_driven => {
                        *ignored = Some(format!("no policy with `copy` manages {id}"))
                    }
                    None => {
                        let mut r = line(id, region, "");
                        r.reason = Some("no policy with `copy` manages this AMI".into());
                        results.push(r);
                    }
                }
            }
        }
        None => sources.extend(
            images
                .iter()
                .filter(|i| !is_copy(i))
                .filter_map(|i| copying_policy(&app.document, i).map(|p| (i, p))),
        ),
    }
    let wanted = |p: &Policy| {
        request
            .policies
            .as_ref()
            .is_none_or(|ps| ps.contains(&p.name))
    };
    let mut jobs = Vec::new();
    for (image, policy) in sources.into_iter().filter(|(_, p)| wanted(p)) {
        let Some(copy) = &policy.copy else { continue };
        if image.state != ImageState::Available {
            let mut r = line(&image.id, region, &policy.name);
            if image.state == ImageState::Pending {
                r.outcome = CopyOutcome::Deferred;
                r.reason = Some("pending: copied once it is available".into());
            } else if request.image_ids.is_none() {
                r.outcome = CopyOutcome::Skipped;
                r.reason = Some(format!(
                    "{}: a sweep copies only available AMIs",
                    image.state
                ));
            } else {
                r.reason = Some(format!(
                    "{} is {}: only available AMIs can be copied{}",
                    image.id,
                    image.state,
                    if image.state == ImageState::Disabled {
                        " (enable it first)"
                    } else {
                        ""
                    }
                ));
            }
            results.push(r);
            continue;
        }
        for (destination, how) in copy.regions.iter().filter(|(d, _)| *d != region) {
            jobs.push((image, policy, destination.clone(), how.clone()));
        }
    }
    // Group by destination: each destination has its own in-flight quota and client.
    let mut by_destination: BTreeMap<Region, Vec<_>> = BTreeMap::new();
    for job in jobs {
        by_destination.entry(job.2.clone()).or_default().push(job);
    }
    for (destination, jobs) in by_destination {
        let dest = app.ec2(&destination);
        let in_flight = if dry_run {
            Ok(0)
        } else {
            dest.pending_images().await
        };
        let room = match in_flight {
            Ok(n) => MAX_IN_FLIGHT.saturating_sub(n),
            Err(e) => {
                for (image, policy, _, _) in &jobs {
                    let mut r = line(&image.id, region, &policy.name);
                    r.destination = Some(destination.clone());
                    r.outcome = CopyOutcome::Failed;
                    r.reason = Some(explain_destination_error(&e, &destination));
                    results.push(r);
                }
                continue;
            }
        };
        let mut started = Vec::new();
        for (image, policy, _, how) in jobs {
            let mut r = line(&image.id, region, &policy.name);
            r.destination = Some(destination.clone());
            if deadline.passed() {
                r.outcome = CopyOutcome::Deferred;
                r.reason = Some("the run reached its deadline; the next sweep continues".into());
                results.push(r);
            } else if started.len() >= room {
                r.outcome = CopyOutcome::Deferred;
                r.reason = Some(format!(
                    "{MAX_IN_FLIGHT} copies are already in flight to {destination} (EC2's limit): the next sweep continues"
                ));
                results.push(r);
            } else {
                started.push((image, policy, how, r));
            }
        }
        let done: Vec<CopyResult> = futures::stream::iter(started)
            .map(|(image, policy, how, r)| copy_one(&dest, image, policy, region, how, dry_run, r))
            .buffer_unordered(app.settings.concurrency)
            .collect()
            .await;
        results.extend(done);
    }
    results.sort_by(|a, b| {
        (&a.source_image_id, &a.destination).cmp(&(&b.source_image_id, &b.destination))
    });
    results
}

fn explain_destination_error(e: &Error, destination: &Region) -> String {
    match e.code() {
        Some("OptInRequired" | "AuthFailure" | "UnauthorizedOperation" | "InvalidClientTokenId") => format!(
            "destination region {destination} is not enabled for the account (or not allowed): enable it, or remove it from the policy's copy.regions ({e})"
        ),
        _ => e.to_string(),
    }
}

fn copy_tags(policy: &Policy, image: &Image, source_region: &Region) -> BTreeMap<String, String> {
    let mut tags = policy
        .build
        .as_ref()
        .map(|b| b.tags.clone())
        .unwrap_or_default();
    if let FamilyBy::Tag(key) = &policy.family_by {
        if let Some(family) = image.tags.get(key) {
            tags.insert(key.clone(), family.clone());
        }
    }
    tags.insert(POLICY_TAG.into(), policy.name.clone());
    tags.insert(SOURCE_IMAGE_TAG.into(), image.id.clone());
    tags.insert(SOURCE_REGION_TAG.into(), source_region.to_string());
    tags.insert(CREATED_BY_TAG.into(), FUNCTION.into());
    tags
}

#[allow(clippy::too_many_arguments)]
async fn copy_one(
    dest: &Ec2,
    image: &Image,
    policy: &Policy,
    source_region: &Region,
    how: CopyDestination,
    dry_run: bool,
    mut r: CopyResult,
) -> CopyResult {
    let (attempt, failed_copies) = match dest.copies_of(&image.id).await {
        Ok(found) => {
            if let Some(existing) = found.iter().find(|c| c.state != ImageState::Failed) {
                r.outcome = CopyOutcome::Exists;
                r.copy_image_id = Some(existing.image_id.clone());
                return r;
            }
            // Only failed copies (CopyImage fails asynchronously, for example when the KMS key
            // cannot be used): they are not copies; copy again as the next attempt.
            (
                found.iter().map(|c| c.attempt + 1).max().unwrap_or(1),
                found,
            )
        }
        Err(e) => {
            r.outcome = if e.is_transient() {
                CopyOutcome::Deferred
            } else {
                CopyOutcome::Failed
            };
            r.reason = Some(explain_destination_error(&e, dest.region()));
            return r;
        }
    };
    if dry_run {
        r.outcome = CopyOutcome::Planned;
        if let Some(failed) = failed_copies.first() {
            r.reason = Some(format!(
                "the copy {} failed ({}): it would be deregistered and copied again",
                failed.image_id,
                failed.state_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        return r;
    }
    for failed in &failed_copies {
        r.failed_copies.push(FailedCopy {
            image_id: failed.image_id.clone(),
            state_reason: failed.state_reason.clone(),
        });
        // The failed copy holds the name: deregister it (and its snapshots) before copying again.
        if let Err(e) = dest.deregister(&failed.image_id).await {
            if !e.is_not_found() {
                r.outcome = if e.is_transient() {
                    CopyOutcome::Deferred
                } else {
                    CopyOutcome::Failed
                };
                r.reason = Some(format!(
                    "the failed copy {} could not be deregistered: {e}",
                    failed.image_id
                ));
                return r;
            }
        }
    }
    let mut tags = copy_tags(policy, image, source_region);
    if attempt > 1 {
        tags.insert(ATTEMPT_TAG.into(), attempt.to_string());
    }
    let token = client_token(&CopyKey {
        source: &image.id,
        source_region,
        destination: dest.region(),
        name: &image.name,
        how: &how,
        attempt,
    });
    match dest
        .copy_image(&image.id, source_region, &image.name, &how, &token, &tags)
        .await
    {
        Ok(id) => {
            r.outcome = CopyOutcome::Started;
            r.copy_image_id = Some(id);
        }
        Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => {
            r.outcome = CopyOutcome::Refused;
            r.reason = Some(format!(
                "{} already has an AMI named `{}` that is not a copy of {}: rename one of them",
                dest.region(),
                image.name,
                image.id
            ));
        }
        Err(e) if e.is_transient() => {
            r.outcome = CopyOutcome::Deferred;
            r.reason = Some(format!("{e}: the next sweep continues"));
        }
        Err(e) => {
            r.outcome = CopyOutcome::Failed;
            r.reason = Some(match e.code() {
                Some(c) if c.contains("KMS") || c.contains("Kms") => format!(
                    "the KMS key {:?} of {} is not usable for this copy: {e}",
                    how.kms_key_id,
                    dest.region()
                ),
                _ => explain_destination_error(&e, dest.region()),
            });
        }
    }
    r
}

impl crate::respond::Line for CopyResult {
    type Outcome = CopyOutcome;
    fn outcome(&self) -> &CopyOutcome {
        &self.outcome
    }
    fn failed(&self) -> bool {
        matches!(self.outcome, CopyOutcome::Refused | CopyOutcome::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_token_is_stable_fits_ec2s_limit_and_changes_with_every_copy_parameter() {
        let (source, dest): (Region, Region) = (
            "us-east-1".parse().expect("region"),
            "ap-southeast-7".parse().expect("region"),
        );
        let plain = CopyDestination::default();
        let keyed = CopyDestination {
            encrypted: true,
            kms_key_id: Some("alias/ami".into()),
        };
        let key = CopyKey {
            source: "ami-0123456789abcdef0",
            source_region: &source,
            destination: &dest,
            name: "web-20261125T030000Z",
            how: &plain,
            attempt: 1,
        };
        let a = client_token(&key);
        assert_eq!(a, client_token(&key), "the same copy gets the same token");
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
        let variants = [
            CopyKey {
                source: "ami-0123456789abcdef1",
                ..key
            },
            CopyKey {
                destination: &source,
                ..key
            },
            CopyKey {
                name: "web-other",
                ..key
            },
            CopyKey { how: &keyed, ..key },
            CopyKey { attempt: 2, ..key },
        ];
        for v in variants {
            assert_ne!(client_token(&v), a, "{v:?}");
        }
    }
}
