//! `ami-copy`: copies managed AMIs into the destination regions of their policy, encrypted,
//! with their lineage, idempotently. The logic is in `ami_lifecycle::copy`; this binary only
//! wires it to the Lambda runtime.

use ami_lifecycle::app::App;
use ami_lifecycle::lambda_runtime::{self, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ami_lifecycle::payload::Payload>| async move {
            ami_lifecycle::copy::handle(app, event).await
        },
    ))
    .await
}
