//! `ami-copy: copies managed AMIs into their policy's regions, encrypted and idempotent.`
//!
//! The logic is in the `ami_lifecycle` library (`jobs`); this binary only serves it.

use ami_lifecycle::lambda::{serve, Function};

#[tokio::main]
async fn main() -> Result<(), ami_lifecycle::lambda_runtime::Error> {
    serve(Function::Copy).await
}
