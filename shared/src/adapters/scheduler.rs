//! The dead-man switch of a launch test: a one-time EventBridge Scheduler schedule whose
//! universal target calls EC2 `TerminateInstances` on the test instance at its deadline, whether
//! or not ami-publish runs then (EventBridge Scheduler API reference: CreateSchedule with
//! `at(yyyy-mm-ddThh:mm:ss)`, `FlexibleTimeWindow` `OFF`, `ActionAfterCompletion` `DELETE`;
//! "Using universal targets": `arn:aws:scheduler:::aws-sdk:ec2:terminateInstances` with the API's
//! request as `Input`). Removed once the verdict is in.

use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use aws_sdk_scheduler::Client;
use chrono::{DateTime, Utc};

use crate::domain::ids::Region;
use crate::error::{Error, Result};
use crate::ports::DeadMan;

/// EventBridge Scheduler in one region, with the role its schedules act as and their group.
#[derive(Debug, Clone)]
pub struct Scheduler {
    client: Client,
    region: Region,
    role_arn: String,
    group: String,
}

impl Scheduler {
    /// An adapter over a client configured for `region`.
    pub fn new(client: Client, region: Region, role_arn: String, group: String) -> Self {
        Scheduler {
            client,
            region,
            role_arn,
            group,
        }
    }
}

/// The schedule of a test instance (1 to 64 of `[0-9a-zA-Z-_.]`).
fn name(instance_id: &str) -> String {
    format!("ami-publish-{instance_id}")
}

impl DeadMan for Scheduler {
    async fn arm(&self, instance_id: &str, at: DateTime<Utc>) -> Result<()> {
        let input = serde_json::json!({ "InstanceIds": [instance_id] }).to_string();
        let target = Target::builder()
            .arn(format!(
                "arn:{}:scheduler:::aws-sdk:ec2:terminateInstances",
                self.region.partition()
            ))
            .role_arn(&self.role_arn)
            .input(input)
            .build()
            .map_err(|e| Error::Refused(format!("a dead-man schedule's target: {e}")))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| Error::Refused(format!("a dead-man schedule's window: {e}")))?;
        let sent = self
            .client
            .create_schedule()
            .name(name(instance_id))
            .group_name(&self.group)
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .description(format!(
                "Terminates launch-test instance {instance_id} if ami-publish has not"
            ))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Armed already (a re-delivered event launched the same instance).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::aws("CreateSchedule", self.region.as_str(), e)),
        }
    }

    async fn disarm(&self, instance_id: &str) -> Result<()> {
        let sent = self
            .client
            .delete_schedule()
            .name(name(instance_id))
            .group_name(&self.group)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::aws("DeleteSchedule", self.region.as_str(), e)),
        }
    }
}
