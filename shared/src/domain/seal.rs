//! What the stack proves it made. What the stack acts on as its own (the continuation of an
//! age-out run, a launch test's `passed` verdict, a rollback's pin, a test instance's client
//! token) carries a seal: an HMAC, made by KMS with a key only the stack's roles may use
//! (`GenerateMac`/`VerifyMac`, HMAC_SHA_256), over the message's purpose (its first line, so a
//! seal of one kind never passes for another) and its content. Whoever can put an event on the
//! bus, tag a resource or invoke a function can copy such a seal, never make one for other
//! content; an altered message no longer verifies. A continuation also expires.
//!
//! The bytes sealed are written here, once, so the one that seals and the one that checks cannot
//! disagree on them.

use chrono::{DateTime, Duration, Utc};

use crate::domain::trigger::RunRequest;

/// How long a continuation's seal holds: Lambda keeps an asynchronous invocation at most this
/// long (the template's `MaximumEventAgeInSeconds`), and the rule delivers it at once.
pub const CONTINUATION_LIFETIME: Duration = Duration::hours(1);

/// The bytes a continuation's seal covers: its purpose, the function it is for, its expiry and
/// the SHA-256 of the next run's whole request (the chain's `run_id` and count included), which
/// keeps them within GenerateMac's 4,096 bytes whatever the request.
pub fn continuation(function: &str, request: &RunRequest, expires: DateTime<Utc>) -> Vec<u8> {
    use sha2::Digest;
    let request = serde_json::to_vec(request).unwrap_or_default();
    format!(
        "ami-automation continuation v1\nfunction={function}\nexpires={}\nrequest-sha256={}",
        expires.to_rfc3339(),
        hex::encode(sha2::Sha256::digest(&request))
    )
    .into_bytes()
}

/// The bytes a verdict's seal covers: its purpose, the AMI the launch test ran (a copy's
/// source), that AMI's region, the policy it was tested for (re-tagged to another policy, it is
/// no verdict there), the verdict and when it was given (RFC 3339, as the tag says). Each field
/// is on its own line; the ids, regions and policy names cannot hold a line break (they are
/// checked), and the time is the last field, so no field can pose as another.
pub fn verdict(image_id: &str, region: &str, policy: &str, verdict: &str, at: &str) -> Vec<u8> {
    format!(
        "ami-automation verdict v1\nimage={image_id}\nregion={region}\npolicy={policy}\nverdict={verdict}\nat={at}"
    )
    .into_bytes()
}

/// The bytes a launch test's RunInstances `ClientToken` seals: the AMI and the region. EC2
/// returns the token with the instance (DescribeInstances `ClientToken`) and only RunInstances
/// sets it, so an instance whose token is this seal was launched by the stack; one that is only
/// tagged like a test instance was not.
pub fn launch(image_id: &str, region: &str, attempt: u32) -> Vec<u8> {
    format!("ami-automation launch v1\nimage={image_id}\nregion={region}\nattempt={attempt}")
        .into_bytes()
}

/// The `ClientToken` of a launch test: its attempt and the seal of [`launch`] (EC2 keeps a
/// token for at least a day after the instance is gone, so a test run again needs another).
pub fn launch_token(attempt: u32, seal: &str) -> String {
    format!("{attempt}.{seal}")
}

/// The attempt and the seal of a launch test's `ClientToken`.
pub fn parse_launch_token(token: &str) -> Option<(u32, &str)> {
    let (attempt, seal) = token.split_once('.')?;
    Some((attempt.parse().ok()?, seal)).filter(|(_, seal)| !seal.is_empty())
}

/// The bytes a rollback's pin seals: the AMI pinned, its region and when (RFC 3339, as the tag
/// says). A pin moves what consumers launch back to an older AMI, so only the stack's own counts.
pub fn pin(image_id: &str, region: &str, at: &str) -> Vec<u8> {
    format!("ami-automation pin v1\nimage={image_id}\nregion={region}\nat={at}").into_bytes()
}

/// The bytes a recall's mark seals: the AMI marked, its region, the AMI recalled (itself or
/// an ancestor), what the recall changed (its undo puts back exactly that) and when (RFC 3339,
/// as the tag says). A recall moves consumers back to an older AMI and its undo changes the
/// AMI, so only the stack's own mark counts for either.
pub fn recall(image_id: &str, region: &str, recall_of: &str, set: &str, at: &str) -> Vec<u8> {
    format!("ami-automation recall v2\nimage={image_id}\nregion={region}\nrecall-of={recall_of}\nset={set}\nat={at}")
        .into_bytes()
}

/// How long a distribution unit's seal holds: a sweep's units are served within its period;
/// one found later (a replay, or a queue long stuck) is refused, and the next sweep queues anew.
pub const UNIT_LIFETIME: Duration = Duration::hours(6);

/// The bytes a distribution unit's seal covers: its purpose, the target account, the region,
/// the OU the sweep found the account in (empty when listed by id), whether it is a dry run and
/// its expiry. Only the stack queues units; a message anyone else puts on the queue (or one
/// altered) does not verify, and the function never acts on it.
pub fn unit(
    account: &str,
    region: &str,
    ou: &str,
    dry_run: bool,
    expires: DateTime<Utc>,
) -> Vec<u8> {
    format!(
        "ami-automation unit v2\naccount={account}\nregion={region}\nou={ou}\ndry-run={dry_run}\nexpires={}",
        expires.to_rfc3339()
    )
    .into_bytes()
}

/// The bytes the seal on a target account's copy covers (its
/// [`crate::domain::tags::DISTRIBUTED_SEAL`] tag, written at CopyImage): the target account,
/// the region and the source AMI. Only a copy whose seal verifies is retired by the stack:
/// anyone in the target account can write the lineage tags on any image, never this seal.
pub fn distributed(account: &str, region: &str, source: &str) -> Vec<u8> {
    format!("ami-automation distributed v1\naccount={account}\nregion={region}\nsource={source}")
        .into_bytes()
}

/// The value of a sealed tag ([`crate::domain::tags::VALIDATION_SEAL`],
/// [`crate::domain::tags::PINNED_AT`]): the time and the seal.
pub fn sealed_tag(at: &str, seal: &str) -> String {
    format!("{at} {seal}")
}

/// The time and the seal of a sealed tag's value.
pub fn parse_sealed_tag(value: &str) -> Option<(&str, &str)> {
    value
        .split_once(' ')
        .filter(|(at, seal)| !at.is_empty() && !seal.is_empty())
}

/// Why a sealed message is not accepted, before any seal is checked: it has expired, or it
/// claims a lifetime no seal of the stack has (`now` is the wall clock).
pub fn expired(expires: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    if expires <= now {
        return Some(format!(
            "it expired at {} (a continuation holds {} minutes)",
            expires.to_rfc3339(),
            CONTINUATION_LIFETIME.num_minutes()
        ));
    }
    if expires > now + CONTINUATION_LIFETIME + Duration::minutes(5) {
        return Some(format!(
            "it claims to hold until {}, longer than any continuation the stack makes",
            expires.to_rfc3339()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn every_part_of_a_continuation_is_in_what_its_seal_covers() {
        let expires = at("2026-12-04T13:00:00Z");
        let request = RunRequest {
            dry_run: Some(false),
            continuation: Some(1),
            run_id: Some("run-1".into()),
            ..RunRequest::default()
        };
        let sealed = continuation("ami-age-out", &request, expires);
        let dry = RunRequest {
            dry_run: Some(true),
            ..request.clone()
        };
        let later = RunRequest {
            as_of: Some(at("2100-01-01T00:00:00Z")),
            ..request.clone()
        };
        for other in [
            continuation("ami-age-out", &dry, expires),
            continuation("ami-age-out", &later, expires),
            continuation("ami-share", &request, expires),
            continuation("ami-age-out", &request, at("2026-12-04T13:00:01Z")),
        ] {
            assert_ne!(sealed, other);
        }
        assert_eq!(sealed, continuation("ami-age-out", &request, expires));
    }

    #[test]
    fn a_verdict_seal_covers_the_ami_its_region_the_verdict_and_the_time() {
        let at = "2026-12-04T12:00:00Z";
        let sealed = verdict("ami-1", "us-east-1", "web", "passed", at);
        for other in [
            verdict("ami-2", "us-east-1", "web", "passed", at),
            verdict("ami-1", "eu-west-1", "web", "passed", at),
            verdict("ami-1", "us-east-1", "api", "passed", at),
            verdict("ami-1", "us-east-1", "web", "failed", at),
            verdict(
                "ami-1",
                "us-east-1",
                "web",
                "passed",
                "2026-12-04T12:00:01Z",
            ),
            pin("ami-1", "us-east-1", at),
            launch("ami-1", "us-east-1", 1),
            launch("ami-1", "us-east-1", 2),
        ] {
            assert_ne!(sealed, other);
        }
        let tag = sealed_tag("2026-12-04T12:00:00Z", "c2VhbA==");
        assert_eq!(
            parse_sealed_tag(&tag),
            Some(("2026-12-04T12:00:00Z", "c2VhbA=="))
        );
        assert_eq!(parse_sealed_tag("c2VhbA=="), None);
        assert_eq!(parse_sealed_tag(" c2VhbA=="), None);
    }

    #[test]
    fn a_seal_is_held_only_within_its_lifetime() {
        let now = at("2026-12-04T12:00:00Z");
        assert!(expired(now + Duration::minutes(30), now).is_none());
        assert!(expired(now, now).is_some_and(|why| why.contains("expired")));
        assert!(expired(now + Duration::days(365), now).is_some_and(|why| why.contains("longer")));
    }
}
