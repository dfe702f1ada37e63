//! JSON read strictly: a key given twice in one object is found, with its JSON path.
//!
//! RFC 8259 leaves duplicate keys undefined and readers disagree on which one wins
//! (`serde_json::Value` keeps the last). A safety switch must never depend on that:
//! `{"dry_run": true, "dry_run": false}` is refused, not run for real. [`Payload`] is what the
//! Lambda runtime deserialises an invocation into; it reads the whole document (so the runtime
//! never fails on it) and records the first duplicate key for the parser to refuse.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// An invocation payload: the JSON value, and the path of the first key given twice, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The document (for a duplicate key, the last value, as serde_json keeps it).
    pub value: Value,
    /// `$.policies[0].name`: the first key that appears twice in its object.
    pub duplicate: Option<String>,
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload {
            value,
            duplicate: None,
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = RefCell::new(None);
        let value = Strict {
            path: "$".into(),
            duplicate: &found,
        }
        .deserialize(deserializer)?;
        Ok(Payload {
            value,
            duplicate: found.into_inner(),
        })
    }
}

impl Payload {
    /// Reads a JSON text strictly (the policy document).
    pub fn from_json(text: &str) -> serde_json::Result<Payload> {
        serde_json::from_str(text)
    }
}

/// Builds a `Value` and records the first duplicate key, with the path of the value at hand.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, out.len()),
            duplicate: self.duplicate,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if out.contains_key(&key) {
                let mut first = self.duplicate.borrow_mut();
                if first.is_none() {
                    *first = Some(path.clone());
                }
            }
            let value = map.next_value_seed(Strict {
                path,
                duplicate: self.duplicate,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_found_with_its_path_at_any_depth() {
        let table = [
            (r#"{"dry_run": true, "dry_run": false}"#, Some("$.dry_run")),
            (
                r#"{"policies": ["a"], "policies": ["b"]}"#,
                Some("$.policies"),
            ),
            (
                r#"{"policies": [{"name": "a"}, {"name": "b", "retain": {"keep_latest": 1, "keep_latest": 0}}]}"#,
                Some("$.policies[1].retain.keep_latest"),
            ),
            (
                r#"{"detail": {"ImageId": "ami-1", "ImageId": "ami-2"}}"#,
                Some("$.detail.ImageId"),
            ),
            (r#"{"a": {"b": 1}, "c": {"b": 2}}"#, None),
            (r#"[{"a": 1}, {"a": 2}]"#, None),
        ];
        for (text, want) in table {
            let payload = Payload::from_json(text).expect("valid JSON");
            assert_eq!(payload.duplicate.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn without_duplicates_the_value_is_what_serde_json_reads() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "u": 18446744073709551615}"#;
        let strict = Payload::from_json(text).expect("json");
        let plain: Value = serde_json::from_str(text).expect("json");
        assert_eq!(strict.value, plain);
        assert_eq!(strict.duplicate, None);
    }
}
