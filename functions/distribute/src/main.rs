//! `ami-distribute: the newest AMIs into the target accounts (their own copies, their SSM parameters), one queued unit per account and region.`
//!
//! The logic is in the `ami_lifecycle` library (`jobs`); this binary only serves it.

// The job's future, instantiated here (`serve` is generic over the job so that the binary
// links only its own job), nests deeper than the compiler's default layout depth.
#![recursion_limit = "256"]

use ami_lifecycle::lambda::{serve, DistributeJob};

#[tokio::main]
async fn main() -> Result<(), ami_lifecycle::lambda_runtime::Error> {
    serve(DistributeJob).await
}
