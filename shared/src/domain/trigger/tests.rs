use super::*;
use serde_json::json;

#[test]
fn a_run_request_is_parsed_with_all_fields() {
    let t = Trigger::parse(
        json!({"policies": ["web"], "regions": ["us-east-1", "eu-west-1"],
        "dry_run": true, "as_of": "2027-01-01T00:00:00Z"}),
    )
    .expect("parses");
    let Trigger::Run(r) = t else {
        panic!("not a run request")
    };
    assert_eq!(r.regions.map(|v| v.len()), Some(2));
    assert_eq!(
        r.as_of.map(|t| t.to_rfc3339()),
        Some("2027-01-01T00:00:00+00:00".into())
    );
}

#[test]
fn an_empty_object_is_a_run_of_everything() {
    assert_eq!(
        Trigger::parse(json!({})).expect("parses"),
        Trigger::Run(RunRequest::default())
    );
}

#[test]
fn bad_fields_are_named() {
    let err = Trigger::parse(json!({"regions": ["us-east-1", "mars-1"]})).unwrap_err();
    assert!(err.to_string().contains("$.regions[1]"), "{err}");
    let err = Trigger::parse(json!({"dryrun": true})).unwrap_err();
    assert!(err.to_string().contains("unknown field `dryrun`"), "{err}");
    let err = Trigger::parse(json!({"as_of": "yesterday"})).unwrap_err();
    assert!(err.to_string().contains("$.as_of"), "{err}");
}

#[test]
fn an_unknown_detail_type_lists_what_is_accepted() {
    let err =
        Trigger::parse(json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}))
            .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("unsupported event `Object Created`") && text.contains("Scheduled Event"),
        "{text}"
    );
}

/// Every file in `events/`, which are at once the samples users send and these fixtures.
const SAMPLES: &[(&str, &str)] = &[
    (
        "age-out-dry-run.json",
        include_str!("../../../../events/age-out-dry-run.json"),
    ),
    (
        "age-out-real-run.json",
        include_str!("../../../../events/age-out-real-run.json"),
    ),
    (
        "age-out-two-regions-as-of.json",
        include_str!("../../../../events/age-out-two-regions-as-of.json"),
    ),
    (
        "age-out-scheduled.json",
        include_str!("../../../../events/age-out-scheduled.json"),
    ),
    (
        "age-out-restore.json",
        include_str!("../../../../events/age-out-restore.json"),
    ),
    (
        "age-out-recall.json",
        include_str!("../../../../events/age-out-recall.json"),
    ),
    (
        "age-out-recall-undo.json",
        include_str!("../../../../events/age-out-recall-undo.json"),
    ),
    (
        "publish-ami-recalled.json",
        include_str!("../../../../events/publish-ami-recalled.json"),
    ),
    (
        "build-scheduled.json",
        include_str!("../../../../events/build-scheduled.json"),
    ),
    (
        "build-dry-run.json",
        include_str!("../../../../events/build-dry-run.json"),
    ),
    (
        "build-instance-stopped.json",
        include_str!("../../../../events/build-instance-stopped.json"),
    ),
    (
        "build-register-snapshot.json",
        include_str!("../../../../events/build-register-snapshot.json"),
    ),
    (
        "build-snapshot-created.json",
        include_str!("../../../../events/build-snapshot-created.json"),
    ),
    (
        "build-ami-failed.json",
        include_str!("../../../../events/build-ami-failed.json"),
    ),
    (
        "share-ami-available.json",
        include_str!("../../../../events/share-ami-available.json"),
    ),
    (
        "share-sweep-dry-run.json",
        include_str!("../../../../events/share-sweep-dry-run.json"),
    ),
    (
        "share-images.json",
        include_str!("../../../../events/share-images.json"),
    ),
    (
        "copy-ami-available.json",
        include_str!("../../../../events/copy-ami-available.json"),
    ),
    (
        "copy-sweep.json",
        include_str!("../../../../events/copy-sweep.json"),
    ),
    (
        "copy-sweep-dry-run.json",
        include_str!("../../../../events/copy-sweep-dry-run.json"),
    ),
    (
        "distribute-sweep.json",
        include_str!("../../../../events/distribute-sweep.json"),
    ),
    (
        "share-ami-validated.json",
        include_str!("../../../../events/share-ami-validated.json"),
    ),
    (
        "publish-ami-available.json",
        include_str!("../../../../events/publish-ami-available.json"),
    ),
    (
        "publish-test-instance-running.json",
        include_str!("../../../../events/publish-test-instance-running.json"),
    ),
    (
        "publish-scheduled.json",
        include_str!("../../../../events/publish-scheduled.json"),
    ),
    (
        "publish-dry-run.json",
        include_str!("../../../../events/publish-dry-run.json"),
    ),
    (
        "publish-rollback.json",
        include_str!("../../../../events/publish-rollback.json"),
    ),
    (
        "share-ami-restored.json",
        include_str!("../../../../events/share-ami-restored.json"),
    ),
];

#[test]
fn every_sample_event_parses() {
    for (name, text) in SAMPLES {
        let value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let trigger = Trigger::parse(value).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = match *name {
            n if n.contains("scheduled") => "Scheduled Event",
            n if n.contains("stopped") || n.contains("instance-running") => {
                "EC2 Instance State-change Notification"
            }
            n if n.contains("ami-validated") => "AMI Validated",
            n if n.contains("ami-restored") => "AMI Restored",
            n if n.contains("ami-recalled") => "AMI Recalled",
            n if n.contains("snapshot-created") => "EBS Snapshot Notification",
            n if n.contains("ami-failed") || n.contains("ami-available") => "EC2 AMI State Change",
            _ => "run request",
        };
        assert_eq!(trigger.kind().as_str(), expected, "{name}");
    }
}

#[test]
fn every_file_in_events_is_a_tested_sample() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    for entry in std::fs::read_dir(dir).expect("events/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        let is_event = name.ends_with(".json");
        assert!(
            !is_event || SAMPLES.iter().any(|(n, _)| *n == name),
            "events/{name} has no parse test"
        );
    }
}

#[test]
fn the_ec2_envelopes_parse_with_typed_details() {
    let ami = json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": "us-east-1",
        "detail": {"RequestId": "r", "ImageId": "ami-0123456789abcdef0", "State": "available", "ErrorMessage": ""}});
    let Trigger::AmiState { detail, .. } = Trigger::parse(ami).expect("ami") else {
        panic!("ami state")
    };
    assert_eq!(detail.image_id, "ami-0123456789abcdef0");
    let stop = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
        "detail": {"instance-id": "i-0123456789abcdef0", "state": "stopped"}});
    let Trigger::InstanceState { detail, .. } = Trigger::parse(stop).expect("stop") else {
        panic!("instance")
    };
    assert_eq!(detail.state, "stopped");
    let snap = json!({"source": "aws.ec2", "detail-type": "EBS Snapshot Notification",
        "detail": {"event": "createSnapshot", "result": "succeeded",
                   "snapshot_id": "arn:aws:ec2::us-east-1:snapshot/snap-0123456789abcdef0", "source": "arn:aws:ec2::us-east-1:volume/vol-1"}});
    let Trigger::Snapshot { detail, .. } = Trigger::parse(snap).expect("snapshot") else {
        panic!("snapshot")
    };
    assert_eq!(detail.snapshot(), "snap-0123456789abcdef0");
    let missing = json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "detail": {"State": "available"}});
    let err = Trigger::parse(missing).unwrap_err().to_string();
    assert!(err.contains("$.detail") && err.contains("ImageId"), "{err}");
}

#[test]
fn a_json_array_is_refused() {
    let err = Trigger::parse(json!([1, 2])).unwrap_err();
    assert!(err.to_string().contains("expected a JSON object"), "{err}");
}
