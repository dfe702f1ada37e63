//! `ami-build: CreateImage from tagged EBS-backed instances, on a schedule or when one stops, and RegisterImage from EBS snapshots.`
//!
//! The logic is in the `ami_lifecycle` library (`jobs`); this binary only serves it.

use ami_lifecycle::lambda::{serve, Function};

#[tokio::main]
async fn main() -> Result<(), ami_lifecycle::lambda_runtime::Error> {
    serve(Function::Build).await
}
