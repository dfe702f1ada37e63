//! Property tests over arbitrary input: the trigger and policy parsers never panic, whatever
//! they are given, and every rejection names where the problem is.

use proptest::prelude::*;
use serde_json::Value;

use crate::policy::{Deployment, PolicyDocument};
use crate::trigger::Trigger;

/// Arbitrary JSON, biased towards the field names the parsers know.
fn json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "policies",
        "regions",
        "dry_run",
        "as_of",
        "image_ids",
        "register",
        "detail-type",
        "source",
        "detail",
        "region",
        "ImageId",
        "State",
        "instance-id",
        "state",
        "event",
        "result",
        "snapshot_id",
        "name",
        "select",
        "retain",
        "share",
        "copy",
        "build",
        "keep_latest",
        "max_age_days",
        "accounts",
        "tags",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "Scheduled Event",
            "aws.events",
            "aws.ec2",
            "EC2 AMI State Change",
            "us-east-1",
            "111122223333",
            "*",
            "ami-0123",
            "2027-01-01T00:00:00Z"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(names.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_trigger_parser_never_panics_and_names_the_field(value in json()) {
        if let Err(e) = Trigger::parse(value) {
            prop_assert!(e.to_string().contains("at `$"), "{}", e);
        }
    }

    #[test]
    fn the_policy_parser_never_panics_and_names_the_field(value in json()) {
        if let Err(e) = PolicyDocument::parse(&value.to_string(), Deployment::default()) {
            prop_assert!(e.to_string().contains("at `$"), "{}", e);
        }
    }

    #[test]
    fn mangled_documents_never_panic(cut in 0usize..2000, byte in any::<u8>(), at in 0usize..2000) {
        let text = include_str!("../../examples/policies.json");
        let mut bytes = text.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut.min(bytes.len()));
        let mangled = String::from_utf8_lossy(&bytes);
        let _ = PolicyDocument::parse(&mangled, Deployment::default());
        if let Ok(v) = serde_json::from_str::<Value>(&mangled) {
            let _ = Trigger::parse(v);
        }
    }
}
