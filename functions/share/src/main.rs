//! `ami-share`: makes every managed AMI's launch permissions (and its snapshots'
//! createVolumePermission) equal to its policy, and no wider. The logic is in
//! `ami_lifecycle::share`; this binary only wires it to the Lambda runtime.

use ami_lifecycle::app::App;
use ami_lifecycle::lambda_runtime::{self, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ami_lifecycle::payload::Payload>| async move {
            ami_lifecycle::share::handle(app, event).await
        },
    ))
    .await
}
