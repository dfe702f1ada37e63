//! Property tests over arbitrary input: the trigger and policy parsers never panic, whatever
//! they are given, and every rejection names where the problem is.

use proptest::prelude::*;
use serde_json::Value;

use crate::domain::payload::Payload;
use crate::domain::policy::{Deployment, PolicyDocument};
use crate::domain::trigger::Trigger;

/// `value` as JSON text, with the first key of its `target`-th non-empty object (in document
/// order) written twice; returns the text and the path of the duplicated key, if one was.
fn with_duplicate(value: &Value, target: usize) -> (String, Option<String>) {
    fn render(
        v: &Value,
        path: &str,
        left: &mut Option<usize>,
        found: &mut Option<String>,
    ) -> String {
        match v {
            Value::Object(map) if !map.is_empty() => {
                let mut parts = Vec::new();
                if *left == Some(0) {
                    *left = None;
                    if let Some((k, first)) = map.iter().next() {
                        *found = Some(format!("{path}.{k}"));
                        parts.push(format!("{}:{}", Value::from(k.as_str()), first));
                    }
                } else if let Some(n) = left.as_mut() {
                    *n -= 1;
                }
                for (k, item) in map {
                    let inner = render(item, &format!("{path}.{k}"), left, found);
                    parts.push(format!("{}:{inner}", Value::from(k.as_str())));
                }
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| render(item, &format!("{path}[{i}]"), left, found))
                    .collect();
                format!("[{}]", inner.join(","))
            }
            other => other.to_string(),
        }
    }
    let mut found = None;
    let text = render(value, "$", &mut Some(target), &mut found);
    (text, found)
}

/// Arbitrary JSON, biased towards the field names the parsers know.
fn json() -> impl Strategy<Value = Value> {
    let mut names = crate::domain::trigger::RUN_REQUEST_FIELDS.to_vec();
    names.extend([
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
    let names = prop::sample::select(names);
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
    fn a_key_given_twice_is_refused_wherever_it_is_naming_its_path(value in json(), target in 0usize..8) {
        let (text, found) = with_duplicate(&value, target);
        let payload = Payload::from_json(&text);
        prop_assert!(payload.is_ok(), "the text is JSON: {}", text);
        let Ok(payload) = payload else { return Ok(()) };
        prop_assert_eq!(&payload.duplicate, &found);
        if let Some(path) = found {
            let want = format!("at `{path}`: this key is given twice");
            let err = Trigger::parse(payload).expect_err("a duplicate key is refused");
            prop_assert!(err.to_string().contains(&want), "{} / {}", err, want);
            let err = PolicyDocument::parse(&text, Deployment::default()).expect_err("refused");
            prop_assert!(err.to_string().contains(&want), "{} / {}", err, want);
        }
    }

    #[test]
    fn a_null_on_a_run_request_field_is_refused_naming_it(
        value in json(),
        field in prop::sample::select(vec!["policies", "regions", "dry_run", "as_of", "image_ids", "register"]),
    ) {
        let mut object = match value {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        for key in ["detail-type", "source", "policies", "regions", "dry_run", "as_of", "image_ids", "register"] {
            object.remove(key);
        }
        object.insert(field.to_string(), Value::Null);
        let err = Trigger::parse(Value::Object(object)).expect_err("null is refused");
        let want = format!("at `$.{field}`: null is not a value");
        prop_assert!(err.to_string().contains(&want), "{}", err);
    }

    #[test]
    fn mangled_documents_never_panic(cut in 0usize..2000, byte in any::<u8>(), at in 0usize..2000) {
        let text = include_str!("../../../examples/policies.json");
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
