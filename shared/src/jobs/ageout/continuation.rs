//! Continuation: a run that reaches its deadline with work left, held back only by EC2's
//! request rate, starts its own next run at once instead of waiting a whole schedule period.
//! The next run plans again from the account, so no state is carried and none can be stale.
//!
//! The run announces `Policy Run Continued` with the next run's request in the detail, sealed
//! with the stack's HMAC key; a rule on the tool's bus delivers the event to age-out (the
//! template's `Continue` event, an asynchronous invocation), which runs the request only when the
//! seal verifies and the deployment's dry-run switches still say real. The announcement and the
//! continuation are one call, so neither can happen without the other.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::execute::Outcome;
use super::Report;
use crate::domain::event::detail_type;
use crate::domain::trigger::RunRequest;
use crate::domain::Decision;

/// What became of the continuation of a run that did not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Continued {
    /// The next run's continuation count, when one was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
    /// Why none was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// What decides whether a finished run continues, whichever request it ran (an age-out sweep,
/// a recall): it stopped with work left (`remaining`), is real, had no failures and made progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub complete: bool,
    pub remaining: usize,
    pub dry_run: bool,
    pub failed: bool,
    pub progressed: bool,
}

impl Progress {
    /// An age-out run's: its failures, evidence gaps that will not pass by themselves, and the
    /// actions it carried out.
    pub fn of(report: &Report) -> Progress {
        let failed = !report.failed.is_empty()
            || report
                .regions
                .iter()
                .any(|r| r.error.is_some() || r.evidence_gaps.iter().any(|g| !g.transient));
        let progressed = report.plan.iter().any(|a| {
            matches!(
                a.outcome,
                Outcome::Done | Outcome::AlreadyDone | Outcome::DeletedWithImage
            )
        });
        Progress {
            complete: report.complete,
            remaining: report.remaining,
            dry_run: report.dry_run,
            failed,
            progressed,
        }
    }
}

/// Whether a finished run continues itself, and with which count: only a real run that stopped
/// with work left, had no failures, made progress, and has not used up `max` continuations.
pub fn next(progress: &Progress, request: &RunRequest, max: u32) -> Decision<u32> {
    if progress.complete {
        return Decision::Ignore("the work is done".into());
    }
    if progress.dry_run {
        return Decision::Ignore("a dry run changes nothing, so it never continues".into());
    }
    if progress.failed {
        return Decision::Ignore(
            "the run had failures: the next scheduled run plans again, after someone looks".into(),
        );
    }
    if !progress.progressed {
        return Decision::Ignore(
            "no progress: continuing would only repeat this run; the next scheduled run goes on"
                .into(),
        );
    }
    let count = request.continuation.unwrap_or(0);
    if count >= max {
        return Decision::Ignore(format!(
            "{count} continuations already (AMI_MAX_CONTINUATIONS {max}): the next scheduled run goes on"
        ));
    }
    Decision::Act(count + 1)
}

/// The request of the next run: the same request, its count, and the chain's `run_id`.
pub fn request_for(request: &RunRequest, count: u32, run_id: &str) -> RunRequest {
    RunRequest {
        continuation: Some(count),
        run_id: Some(request.run_id.clone().unwrap_or_else(|| run_id.to_string())),
        ..request.clone()
    }
}

/// A continuation's seal: the key that made it (the template's rule delivers to this stack only
/// the continuations of its own key), until when it holds, and the seal.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key: String,
    pub expires: DateTime<Utc>,
    pub seal: String,
}

/// The `Policy Run Continued` event: the next run's request (the template's rule delivers the
/// whole event to age-out), its count, what is left, and the seal that proves the stack made it
/// ([`crate::domain::seal::continuation`]) until `expires`.
pub fn event(remaining: usize, next: &RunRequest, sealed: &Sealed) -> crate::domain::event::Event {
    crate::domain::event::event(
        detail_type::POLICY_RUN_CONTINUED,
        Vec::new(),
        serde_json::json!({
            "function": super::FUNCTION,
            "continuation": next.continuation,
            "run_id": next.run_id,
            "remaining": remaining,
            "request": next,
            "key": sealed.key,
            "expires": sealed.expires,
            "seal": sealed.seal,
        }),
    )
}
