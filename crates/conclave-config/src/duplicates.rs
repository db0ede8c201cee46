//! Duplicate keys in a JSON document.
//!
//! Why: JSON parsers disagree on `{"a": 1, "a": 2}` (serde_json keeps the last value, others
//! the first or refuse), so a document two tools read differently could pass review in one
//! and apply in the other. A document with a repeated key is refused with its path.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The JSON Pointer of the first key that appears twice in one object of `bytes`, if any.
/// `Err` when `bytes` is not JSON at all.
pub fn first_duplicate_key(bytes: &[u8]) -> Result<Option<String>, serde_json::Error> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// `~` and `/` escaped as RFC 6901 says.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Walk<'a> {
    path: String,
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}/{}", self.path, pointer_token(&key));
            if !seen.insert(key) && self.found.is_none() {
                *self.found = Some(path.clone());
            }
            map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(Walk {
                path: format!("{}/{i}", self.path),
                found: &mut *self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_repeated_key_is_named_by_its_path() {
        assert_eq!(
            first_duplicate_key(br#"{"a": 1, "b": [1, {"c": 2}]}"#).unwrap(),
            None
        );
        assert_eq!(
            first_duplicate_key(br#"{"a": 1, "a": 2}"#)
                .unwrap()
                .as_deref(),
            Some("/a")
        );
        assert_eq!(
            first_duplicate_key(
                br#"{"peers": [{"x": 1}, {"node_id": "a", "n/o~": 1, "n/o~": 2}]}"#
            )
            .unwrap()
            .as_deref(),
            Some("/peers/1/n~1o~0")
        );
        // The same key in different objects is fine.
        assert_eq!(
            first_duplicate_key(br#"[{"a": 1}, {"a": 1}]"#).unwrap(),
            None
        );
        assert!(first_duplicate_key(b"{not json").is_err());
        assert!(first_duplicate_key(b"{} trailing").is_err());
    }
}
