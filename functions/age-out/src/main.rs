//! `ami-age-out: deprecates, disables and deregisters AMIs and deletes their snapshots, by policy, never one in use.`
//!
//! The logic is in the `ami_lifecycle` library (`jobs`); this binary only serves it.

use ami_lifecycle::lambda::{serve, Function};

#[tokio::main]
async fn main() -> Result<(), ami_lifecycle::lambda_runtime::Error> {
    serve(Function::AgeOut).await
}
