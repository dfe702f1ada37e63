//! AMI usage reports (testbed/usage_reports.py).

use e2e_tests::seed;

use crate::bed;

/// AMI usage reports (EC2 API reference, CreateImageUsageReport, DescribeImageUsageReports,
/// DescribeImageUsageReportEntries; EC2 User Guide "View your AMI usage"): a report is pending
/// until EC2 has built it, then lists per account and resource type how many resources use the
/// AMI; one report per AMI may be in progress; the same client token returns the same report.
/// Plain moto implements none of it.
#[tokio::test]
async fn usage_reports_are_built_asynchronously_one_at_a_time_per_ami() {
    use aws_sdk_ec2::types::ImageUsageResourceTypeRequest;
    for plain in [false, true] {
        let bed = bed(plain);
        let ec2 = bed.ec2("us-east-1").await;
        let builder = seed::instance(&ec2, 0, &[]).await;
        let image = seed::image(&ec2, &builder, "consumed", &[]).await;
        let create = |token: &str| {
            ec2.create_image_usage_report()
                .image_id(&image)
                .resource_types(
                    ImageUsageResourceTypeRequest::builder()
                        .resource_type("ec2:Instance")
                        .build(),
                )
                .client_token(token)
                .send()
        };
        let first = create("t-1").await;
        if plain {
            assert!(
                first.is_err(),
                "plain moto does not implement CreateImageUsageReport"
            );
            continue;
        }
        let report = first
            .expect("CreateImageUsageReport")
            .report_id()
            .unwrap_or_default()
            .to_string();
        assert!(report.starts_with("amiur-"), "{report}");
        let again = create("t-1").await.expect("the same token");
        assert_eq!(
            again.report_id(),
            Some(report.as_str()),
            "same token, same report"
        );
        let second = create("t-2").await;
        assert!(
            second.is_err(),
            "a second report while one is in progress is refused"
        );
        let described = ec2
            .describe_image_usage_reports()
            .image_ids(&image)
            .send()
            .await
            .expect("DescribeImageUsageReports");
        let states: Vec<&str> = described
            .image_usage_reports()
            .iter()
            .filter_map(|r| r.state())
            .collect();
        assert_eq!(states, vec!["pending"]);

        let completed = bed.complete_usage_report(
            "us-east-1",
            &image,
            serde_json::json!({"entries": [
                {"account_id": "210987654321", "resource_type": "ec2:Instance", "usage_count": 3}]}),
        );
        assert_eq!(completed, report);
        let entries = ec2
            .describe_image_usage_report_entries()
            .report_ids(&report)
            .send()
            .await
            .expect("DescribeImageUsageReportEntries");
        let got: Vec<(Option<&str>, Option<i64>)> = entries
            .image_usage_report_entries()
            .iter()
            .map(|e| (e.account_id(), e.usage_count()))
            .collect();
        assert_eq!(got, vec![(Some("210987654321"), Some(3))]);
        create("t-3")
            .await
            .expect("a new report once none is in progress");
    }
}
