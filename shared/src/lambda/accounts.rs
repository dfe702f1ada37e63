//! The stack's reach into its target accounts: the assumed role of each, and the queue a
//! distribution sweep fans out on.

use crate::adapters::sts::{self, Target};
use crate::domain::function::Function;
use crate::domain::ids::AccountId;
use crate::error::{Error, Result};
use crate::ports::Accounts;

use super::app::App;
use super::settings::{DISTRIBUTE_QUEUE, TARGET_EXTERNAL_ID};

impl Accounts for App {
    type Target = Target;

    async fn assume(&self, account: &AccountId) -> Result<Target> {
        let d = &self.settings.distribution;
        let external_id = d.external_id.as_deref().ok_or_else(|| {
            Error::config(
                TARGET_EXTERNAL_ID.name,
                "not set: the target roles require an ExternalId (the template sets it from TargetExternalId)",
            )
        })?;
        let sdk = sts::assume(
            self.sdk(),
            &self.settings.home_region,
            account,
            &d.role_name,
            external_id,
            Function::Distribute.name(),
        )
        .await?;
        Ok(Target::new(sdk))
    }

    async fn accounts_in(&self, ou_id: &str) -> Result<Vec<AccountId>> {
        let client = self.organizations().await?;
        crate::adapters::organizations::accounts_in(&client, ou_id).await
    }

    async fn parent_of(&self, account: &AccountId) -> Result<Option<String>> {
        let client = self.organizations().await?;
        crate::adapters::organizations::parent_of(&client, account).await
    }

    async fn queue_units(&self, bodies: Vec<String>) -> Result<Vec<String>> {
        let url = self.settings.distribution.queue_url.as_deref().ok_or_else(|| {
            Error::config(
                DISTRIBUTE_QUEUE.name,
                "not set: a sweep sends its units to the distribution queue (the template sets it to its DistributeQueue)",
            )
        })?;
        let client = aws_sdk_sqs::Client::new(self.sdk());
        crate::adapters::sqs::send_all(&client, url, bodies).await
    }
}

impl App {
    /// Organizations at its endpoint: here when the stack runs in the management or a delegated
    /// administrator account, else through the role the deployment names.
    async fn organizations(&self) -> Result<aws_sdk_organizations::Client> {
        let region = crate::adapters::organizations::endpoint_region(&self.settings.home_region);
        let sdk = match &self.settings.distribution.organizations_role {
            Some(role) => sts::assume_plain(self.sdk(), role, Function::Distribute.name()).await?,
            None => self.sdk().clone(),
        };
        let config = aws_sdk_organizations::config::Builder::from(&sdk)
            .region(aws_config::Region::new(region))
            .build();
        Ok(aws_sdk_organizations::Client::from_conf(config))
    }
}
