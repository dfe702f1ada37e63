//! `ami-share: reconciles the launch permissions of managed AMIs (and their snapshots' createVolumePermission) to their policy.`
//!
//! The logic is in the `ami_lifecycle` library (`jobs`); this binary only serves it.

use ami_lifecycle::lambda::{serve, Function};

#[tokio::main]
async fn main() -> Result<(), ami_lifecycle::lambda_runtime::Error> {
    serve(Function::Share).await
}
