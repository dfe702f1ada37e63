//! The copy's decisions, pure: which AMIs a run copies and where, how many copies a
//! destination can take, whether a copy exists or must be made again, and the copy's tags.

use std::collections::BTreeMap;

use super::{is_copy, CopyOutcome, CopyResult, FUNCTION, MAX_IN_FLIGHT};
use crate::domain::ids::Region;
use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{CopyDestination, Policy, PolicyDocument};
use crate::domain::tags;
use crate::error::Error;
pub use crate::jobs::copies::{step, Step};

/// The policy that copies an image: the first that manages it, if it has `copy`.
pub fn copying_policy<'a>(document: &'a PolicyDocument, image: &Image) -> Option<&'a Policy> {
    image.policy_in(document).filter(|p| p.copy.is_some())
}

/// One copy to make: a source AMI, its policy, a destination and how it is encrypted there.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The source AMI.
    pub image: &'a Image,
    pub policy: &'a Policy,
    /// The destination region.
    pub destination: Region,
    /// Encryption of the copy.
    pub how: CopyDestination,
}

/// What a run copies from one region.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// The copies to make.
    pub jobs: Vec<Job<'a>>,
    /// A line for each asked-for AMI that is not copied, with the reason.
    pub lines: Vec<CopyResult>,
    /// Why an event needs no work (a copy's own `available`, an AMI no policy copies).
    pub ignored: Option<String>,
}

/// The copies a run makes from `region`: of the account's own AMIs (never of a copy), that a
/// policy with `copy` manages, that are available, into each destination but the source's.
/// `event_driven`: the run answers an AMI's `available` event, so an AMI no policy copies is
/// acknowledged rather than refused.
pub fn select<'a>(
    images: &'a [Image],
    image_ids: Option<&[String]>,
    policies: Option<&[String]>,
    document: &'a PolicyDocument,
    region: &Region,
    event_driven: bool,
) -> Selection<'a> {
    let mut out = Selection::default();
    let mut sources = Vec::new();
    match image_ids {
        Some(ids) => {
            for id in ids {
                let Some(image) = images.iter().find(|i| &i.id == id) else {
                    out.lines.push(CopyResult::new(id, region, "").with(
                        CopyOutcome::Refused,
                        format!("{id} is not an AMI of the account in {region}: only the account's own AMIs are copied (unknown, or owned by another account)"),
                    ));
                    continue;
                };
                if is_copy(image) {
                    // The `available` event of a copy arriving: never copy a copy.
                    out.ignored = Some(format!(
                        "{id} is a copy (of {}): a copy is never copied",
                        image.tags[tags::SOURCE_IMAGE]
                    ));
                    continue;
                }
                match copying_policy(document, image) {
                    Some(p) => sources.push((image, p)),
                    None if event_driven => {
                        out.ignored = Some(format!("no policy with `copy` manages {id}"))
                    }
                    None => out.lines.push(CopyResult::new(id, region, "").with(
                        CopyOutcome::Refused,
                        "no policy with `copy` manages this AMI".to_string(),
                    )),
                }
            }
        }
        None => sources.extend(
            images
                .iter()
                .filter(|i| !is_copy(i))
                .filter_map(|i| copying_policy(document, i).map(|p| (i, p))),
        ),
    }
    let sweep = image_ids.is_none();
    for (image, policy) in sources
        .into_iter()
        .filter(|(_, p)| policies.is_none_or(|ps| ps.contains(&p.name)))
    {
        let Some(copy) = &policy.copy else { continue };
        if image.state != ImageState::Available {
            out.lines
                .push(not_available(image, region, &policy.name, sweep));
            continue;
        }
        if let Some(why) = image.held_by_gate(policy) {
            // An AMI's `available` event comes before its launch test: `AMI Validated` (or the
            // next sweep) brings it back once it passed.
            out.lines
                .push(CopyResult::new(&image.id, region, &policy.name).with(
                    CopyOutcome::Skipped,
                    format!("held by the promotion gate: {why}"),
                ));
            continue;
        }
        for (destination, how) in copy.regions.iter().filter(|(d, _)| *d != region) {
            out.jobs.push(Job {
                image,
                policy,
                destination: destination.clone(),
                how: how.clone(),
            });
        }
    }
    out
}

/// The line of a source that is not available: pending waits; a sweep passes over the rest,
/// a request for it is refused.
fn not_available(image: &Image, region: &Region, policy: &str, sweep: bool) -> CopyResult {
    let r = CopyResult::new(&image.id, region, policy);
    if image.state == ImageState::Pending {
        r.with(
            CopyOutcome::Deferred,
            "pending: copied once it is available".to_string(),
        )
    } else if sweep {
        r.with(
            CopyOutcome::Skipped,
            format!("{}: a sweep copies only available AMIs", image.state),
        )
    } else {
        r.with(
            CopyOutcome::Refused,
            format!(
                "{} is {}: only available AMIs can be copied{}",
                image.id,
                image.state,
                if image.state == ImageState::Disabled {
                    " (enable it first)"
                } else {
                    ""
                }
            ),
        )
    }
}

/// How many more copies a destination takes, with `in_flight` pending there (EC2's quota).
pub fn room(in_flight: usize) -> usize {
    MAX_IN_FLIGHT.saturating_sub(in_flight)
}

/// Why a copy that did not fit is deferred.
pub fn no_room(destination: &Region) -> String {
    format!(
        "{MAX_IN_FLIGHT} copies are already in flight to {destination} (EC2's limit): the next sweep continues"
    )
}

/// The tags of a copy and its snapshots: the policy's build tags, the family, the policy, the
/// lineage, the tool and, after a failure, the attempt.
pub fn copy_tags(
    policy: &Policy,
    image: &Image,
    source_region: &Region,
    attempt: u32,
) -> BTreeMap<String, String> {
    let mut out = tags::managed(policy, |key| image.tags.get(key).cloned(), FUNCTION);
    out.insert(tags::SOURCE_IMAGE.into(), image.id.clone());
    out.insert(tags::SOURCE_REGION.into(), source_region.to_string());
    if let Some(created) = image.created {
        out.insert(
            tags::SOURCE_CREATED.into(),
            created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    // Copies are validated in the source region only: each carries its source's verdict.
    if let Some(verdict) = image.verdict() {
        out.insert(tags::VALIDATION.into(), verdict.to_string());
    }
    // With the seal, which holds for the copy once EC2 records it as a copy of this AMI.
    if let Some(sealed) = image.tags.get(tags::VALIDATION_SEAL) {
        out.insert(tags::VALIDATION_SEAL.into(), sealed.clone());
    }
    if attempt > 1 {
        out.insert(tags::COPY_ATTEMPT.into(), attempt.to_string());
    }
    out
}

/// An error in a destination region, explained: a KMS key the role may not use names the
/// deployment's key lists; a region not enabled says so.
pub fn explain_destination_error(e: &Error, destination: &Region) -> String {
    let message = e.to_string();
    if e.code() == Some("UnauthorizedOperation") && message.contains("kms:") {
        return format!(
            "the copy role may not use a KMS key this copy needs in {destination}: list the source AMI's customer managed keys in CopySourceKmsKeyArns and the copies' keys in CopyKmsKeyArns ({message})"
        );
    }
    match e.code() {
        Some("OptInRequired" | "AuthFailure" | "InvalidClientTokenId") => format!(
            "destination region {destination} is not enabled for the account (or not allowed): enable it, or remove it from the policy's copy.regions ({e})"
        ),
        Some("UnauthorizedOperation") => format!(
            "not allowed in {destination}: the region is not enabled for the account (enable it, or remove it from copy.regions), or the copy role may not use a KMS key the copy needs (list the source AMI's customer managed keys in CopySourceKmsKeyArns, the copies' keys in CopyKmsKeyArns) ({e})"
        ),
        _ => e.to_string(),
    }
}

/// What a CopyImage refusal means for the line.
pub fn copy_refused(
    e: &Error,
    image: &Image,
    how: &CopyDestination,
    destination: &Region,
) -> (CopyOutcome, String) {
    if e.code() == Some("InvalidAMIName.Duplicate") {
        return (
            CopyOutcome::Refused,
            format!(
                "{destination} already has an AMI named `{}` that is not a copy of {}: rename one of them",
                image.name, image.id
            ),
        );
    }
    match e.disposition().into() {
        CopyOutcome::Deferred => (
            CopyOutcome::Deferred,
            format!("{e}: the next sweep continues"),
        ),
        outcome => (
            outcome,
            match e.code() {
                Some(c) if c.contains("KMS") || c.contains("Kms") => format!(
                    "the KMS key {:?} of {destination} is not usable for this copy: {e}",
                    how.kms_key_id
                ),
                _ => explain_destination_error(e, destination),
            },
        ),
    }
}
