//! Settings that accept a list in more than one spelling: a TOML table or array, flags, or
//! one comma-separated string (environment variables).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags: a TOML table, or `key=value` items (flags, or one comma-separated string).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Tags(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Map(BTreeMap<String, String>),
            List(Vec<String>),
            One(String),
        }
        let items: Vec<String> = match Either::deserialize(d)? {
            Either::Map(m) => return Ok(Tags(m)),
            Either::List(v) => v,
            Either::One(s) => s.split(',').map(str::to_owned).collect(),
        };
        let mut map = BTreeMap::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(serde::de::Error::custom(format!(
                    "tag {item:?} is not key=value (e.g. --tag zone=eu-1)"
                )));
            };
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(Tags(map))
    }
}

/// A list of addresses: a TOML array, or one comma-separated string (flags, environment).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct AddrList(pub Vec<String>);

impl<'de> Deserialize<'de> for AddrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        let items = match Either::deserialize(d)? {
            Either::One(s) => s.split(',').map(str::to_owned).collect(),
            Either::Many(v) => v,
        };
        Ok(AddrList(
            items
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        ))
    }
}
