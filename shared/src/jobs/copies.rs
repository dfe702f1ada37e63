//! What every CopyImage of the stack shares, into another region (copy) or another account
//! (distribute): its idempotency token, and whether a copy exists or must be made again.

use crate::domain::ids::Region;
use crate::domain::model::{CopyFound, ImageState};
use crate::domain::policy::CopyDestination;

/// What a copy is made of: the client token derives from all of it.
#[derive(Debug, Clone, Copy)]
pub struct CopyKey<'a> {
    /// The source AMI.
    pub source: &'a str,
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

/// What to do about one (source, destination), given the copies of the source found there.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A copy that has not failed exists: nothing to do.
    Exists(String),
    /// Copy, as attempt `attempt`, after deregistering the failed copies (which hold the name).
    Copy {
        /// 1 for the first copy, one more than the highest failed attempt otherwise.
        attempt: u32,
        /// Copies that EC2 failed after accepting them.
        failed: Vec<CopyFound>,
    },
}

/// The step for a destination where `found` are the source's copies (CopyImage fails
/// asynchronously, for example when the KMS key cannot be used: a failed copy is no copy).
pub fn step(found: Vec<CopyFound>) -> Step {
    if let Some(existing) = found.iter().find(|c| c.state != ImageState::Failed) {
        return Step::Exists(existing.image_id.clone());
    }
    Step::Copy {
        attempt: found.iter().map(|c| c.attempt + 1).max().unwrap_or(1),
        failed: found,
    }
}
