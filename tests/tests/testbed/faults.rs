//! Throttling (testbed/faults.py): EC2's token buckets per region.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use e2e_tests::TestBed;

/// EC2's request buckets are per account and region (EC2 API throttling): one region's empty
/// bucket throttles no call in another. moto throttles nothing; the test bed's buckets
/// (`/_testbed/throttle`) keep one state per region.
#[tokio::test]
async fn a_throttle_bucket_empties_in_one_region_and_not_in_another() {
    let bed = TestBed::start();
    bed.throttle(serde_json::json!({"reads": {"actions": ["DescribeAvailabilityZones"], "size": 2, "refill": 0.001}}));
    let east = bed.ec2("us-east-1").await;
    for _ in 0..2 {
        east.describe_availability_zones()
            .send()
            .await
            .expect("within the bucket");
    }
    let refused = east
        .describe_availability_zones()
        .send()
        .await
        .expect_err("the bucket is empty");
    assert_eq!(refused.code(), Some("RequestLimitExceeded"));
    let west = bed.ec2("eu-west-1").await;
    for _ in 0..2 {
        west.describe_availability_zones()
            .send()
            .await
            .expect("eu-west-1 has its own bucket");
    }
}
