//! `ami-build`: CreateImage from tagged EBS-backed instances, on a schedule or when one stops,
//! and RegisterImage from EBS snapshots. The logic is in `ami_lifecycle::build`; this binary
//! only wires it to the Lambda runtime.

use ami_lifecycle::app::App;
use ami_lifecycle::lambda_runtime::{self, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ami_lifecycle::payload::Payload>| async move {
            ami_lifecycle::build::handle(app, event).await
        },
    ))
    .await
}
