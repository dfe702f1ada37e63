//! Age-out's continuations: accepting a `Policy Run Continued` (only the stack's own, proven by
//! its seal) and starting the next run of a run cut by its deadline.

use super::app::App;
use super::metrics;
use crate::domain::function::Function;
use crate::domain::seal;
use crate::domain::trigger::{ContinuedDetail, RunRequest};
use crate::domain::Decision;
use crate::error::{Error, Result};
use crate::jobs::ageout;
use crate::ports::{Cloud, Seal};

/// Whether a `Policy Run Continued` is run: only by age-out, only when its seal proves the stack
/// made it (checked before anything else happens), and only while the deployment's dry-run
/// switches say real ([`App::kill_switch`]). A refusal changes nothing, is an error naming the
/// reason, and counts in the `RefusedMessages` metric, which the template alarms on.
pub async fn accept(
    app: &App,
    function: Function,
    detail: ContinuedDetail,
) -> Result<Decision<RunRequest>> {
    if function != Function::AgeOut || detail.function != ageout::FUNCTION {
        return Err(Error::event(
            "$.detail.function",
            format!(
                "`{}`: only ami-age-out continues its runs, and {} runs no continuation",
                detail.function,
                function.name()
            ),
        ));
    }
    if let Some(why) = authenticate(app, &detail).await? {
        tracing::warn!(reason = %why, run_id = %detail.run_id, "continuation refused");
        metrics::emit(&[metrics::line(
            chrono::Utc::now().timestamp_millis(),
            &[("Function", function.name().to_string())],
            &[("RefusedMessages", "Count", 1.0)],
        )]);
        return Err(Error::Refused(format!(
            "`Policy Run Continued` refused, nothing was done: {why}"
        )));
    }
    // A recall is a person's explicit real request: its continuation finishes it whatever the
    // deployment's dry-run switches say of sweeps.
    if let Some(why) = app
        .kill_switch()
        .filter(|_| detail.request.recall.is_none())
    {
        return Ok(Decision::Ignore(format!(
            "the chain stops here: {why}; nothing was done"
        )));
    }
    Ok(Decision::Act(detail.request))
}

/// Why a continuation is not the stack's own, if it is not: expired, no key to check it with,
/// or a seal that does not verify. A seal KMS could not check (throttled, unavailable) is an
/// error of its own: nothing is run, Lambda delivers the event again, and it is not counted as
/// a forgery.
async fn authenticate(app: &App, detail: &ContinuedDetail) -> Result<Option<String>> {
    if let Some(why) = seal::expired(detail.expires, chrono::Utc::now()) {
        return Ok(Some(why));
    }
    let Some(mac) = app.sealer() else {
        return Ok(Some(
            "this deployment has no signing key (AMI_SIGNING_KEY_ARN), so no continuation can be proven"
                .into(),
        ));
    };
    let message = seal::continuation(&detail.function, &detail.request, detail.expires);
    if mac.verify(message, &detail.seal).await? {
        return Ok(None);
    }
    Ok(Some(
        "its seal does not verify: the stack did not make it, or it was altered".into(),
    ))
}

/// Starts the next run of an age-out run that stopped with work left, when
/// [`ageout::continuation::next`] allows it: announces `Policy Run Continued` carrying the next
/// request, which the template's rule delivers back to age-out.
pub async fn continue_run(
    app: &App,
    progress: &ageout::continuation::Progress,
    request: &RunRequest,
    run_id: &str,
) -> ageout::continuation::Continued {
    use ageout::continuation::{self, Continued};
    let count = match continuation::next(progress, request, app.settings.max_continuations) {
        Decision::Act(count) => count,
        Decision::Ignore(why) => {
            return Continued {
                next: None,
                why_not: Some(why),
            }
        }
    };
    let stop = |why: String| Continued {
        next: None,
        why_not: Some(why),
    };
    if let Some(why) = app.kill_switch().filter(|_| request.recall.is_none()) {
        return stop(format!(
            "{why}: a chain continues for real only while the deployment's dry-run switches are off"
        ));
    }
    let Some(mac) = app.sealer() else {
        return stop(
            "no signing key (AMI_SIGNING_KEY_ARN) to seal a continuation with: the next scheduled run goes on"
                .into(),
        );
    };
    let next = continuation::request_for(request, count, run_id);
    let expires = chrono::Utc::now() + seal::CONTINUATION_LIFETIME;
    let sealed = match mac
        .seal(seal::continuation(ageout::FUNCTION, &next, expires))
        .await
    {
        Ok(sealed) => sealed,
        Err(e) => {
            return stop(format!(
                "the continuation could not be sealed ({e}): the next scheduled run goes on"
            ))
        }
    };
    let sealed = continuation::Sealed {
        key: app.settings.signing_key.clone().unwrap_or_default(),
        expires,
        seal: sealed,
    };
    let published = app
        .events()
        .publish_now(vec![continuation::event(
            progress.remaining,
            &next,
            &sealed,
        )])
        .await;
    if published.published == 1 {
        tracing::info!(
            continuation = count,
            remaining = progress.remaining,
            "age-out continues"
        );
        Continued {
            next: Some(count),
            why_not: None,
        }
    } else {
        Continued {
            next: None,
            why_not: Some(format!(
                "`Policy Run Continued` could not be published ({}): the next scheduled run goes on",
                published.failed.join("; ")
            )),
        }
    }
}
