//! The canonical byte form of a document: compact JSON with object keys sorted, so the
//! same content always has the same bytes and hash, whatever file format or key order it
//! was written in.

use ring::digest;
use serde_json::{Map, Value};

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Compact JSON with sorted keys.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    // Serializing a `Value` into memory cannot fail.
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

/// Hex SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_change_the_bytes() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 0, "c": 1}], "x": 2}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": 2, "y": [1, {"c": 1, "d": 0}]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
        assert_eq!(
            String::from_utf8(canonical_bytes(&a)).unwrap(),
            r#"{"a":{"x":2,"y":[1,{"c":1,"d":0}]},"b":1}"#
        );
        assert_eq!(content_hash(b"").len(), 64);
    }
}
