//! EventBridge Scheduler (testbed/scheduler.py): one-time schedules run when due.

use aws_sdk_ec2::types::InstanceType;
use e2e_tests::seed;

use crate::bed;
use crate::instances::launch;

#[tokio::test]
async fn a_one_time_schedule_that_terminates_an_instance_runs_at_its_time() {
    use aws_sdk_scheduler::types::{
        ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
    };
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let (subnet, _) = seed::network(&ec2).await;
        let id = launch(&ec2, &subnet, "dead-man", InstanceType::T3Micro)
            .await
            .expect("RunInstances");
        let at = chrono::Utc::now() + chrono::Duration::minutes(10);
        bed.scheduler("us-east-1")
            .await
            .create_schedule()
            .name(format!("ami-publish-{id}"))
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .expect("window"),
            )
            .target(
                Target::builder()
                    .arn("arn:aws:scheduler:::aws-sdk:ec2:terminateInstances")
                    .role_arn(e2e_tests::dead_man_role())
                    .input(serde_json::json!({ "InstanceIds": [id] }).to_string())
                    .build()
                    .expect("target"),
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await
            .expect("CreateSchedule");
        let state = |ec2: aws_sdk_ec2::Client, id: String| async move {
            ec2.describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("DescribeInstances")
                .reservations()[0]
                .instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default()
        };
        assert!(bed.advance_scheduler(9).is_empty(), "not before its time");
        assert_eq!(state(ec2.clone(), id.clone()).await, "running");
        let run = bed.advance_scheduler(2);
        if plain {
            assert!(run.is_empty(), "plain moto is expected to run no schedule");
            assert_eq!(state(ec2.clone(), id.clone()).await, "running");
            continue;
        }
        assert_eq!(run.len(), 1, "{run:?}");
        assert_eq!(state(ec2.clone(), id.clone()).await, "terminated");
        let left = bed
            .scheduler("us-east-1")
            .await
            .list_schedules()
            .send()
            .await
            .expect("ListSchedules");
        assert!(left.schedules().is_empty(), "deleted after it ran");
    }
}
