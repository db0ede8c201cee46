//! `/v1/gossip/keys`: the gossip keyring, listed and changed on every agent at once.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of these messages.
pub const KEYS_VERSION: u32 = 1;

/// A change of the keyring. `key` is a key in base64 (`install`), or a key or the
/// 8-hex-digit id of one held (`use`, `remove`). Never shown: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyOp {
    /// Open datagrams sealed with this key too.
    Install {
        #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
        key: String,
    },
    /// Seal with this key from now on.
    Use {
        #[schema(pattern = "^([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=|[0-9a-f]{8})$")]
        key: String,
    },
    /// Stop opening datagrams sealed with this key (never the one in use).
    Remove {
        #[schema(pattern = "^([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=|[0-9a-f]{8})$")]
        key: String,
    },
}

impl KeyOp {
    pub fn key(&self) -> &str {
        match self {
            KeyOp::Install { key } | KeyOp::Use { key } | KeyOp::Remove { key } => key,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            KeyOp::Install { .. } => "install",
            KeyOp::Use { .. } => "use",
            KeyOp::Remove { .. } => "remove",
        }
    }
}

impl fmt::Debug for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyOp::{}({})", self.name(), crate::secret::REDACTED)
    }
}

/// A key as listed: its id (the first 4 bytes of its SHA-256), never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GossipKey {
    pub id: String,
    /// The key this agent seals with.
    pub primary: bool,
}

/// One agent's keyring, or why it could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeKeys {
    pub api_addr: String,
    #[serde(default)]
    pub keys: Vec<GossipKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `GET` and `POST /v1/gossip/keys`: every agent asked (every alive member,
/// or this agent alone with `?scope=local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyringAnswer {
    pub version: u32,
    pub nodes: BTreeMap<u64, NodeKeys>,
    /// Agents that did not answer or refused.
    pub failed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_empty_and_full_and_keys_never_show() {
        for op in [
            KeyOp::Install { key: "k1".into() },
            KeyOp::Use { key: "k2".into() },
            KeyOp::Remove { key: "k3".into() },
        ] {
            let json = serde_json::to_string(&op).unwrap();
            assert!(json.contains(&format!("\"op\":\"{}\"", op.name())));
            assert_eq!(serde_json::from_str::<KeyOp>(&json).unwrap(), op);
            assert!(!format!("{op:?}").contains(op.key()));
        }
        assert!(serde_json::from_str::<KeyOp>(r#"{"op":"install","key":"k","x":1}"#).is_err());
        for answer in [
            KeyringAnswer {
                version: KEYS_VERSION,
                nodes: BTreeMap::new(),
                failed: 0,
            },
            KeyringAnswer {
                version: KEYS_VERSION,
                nodes: BTreeMap::from([
                    (
                        7,
                        NodeKeys {
                            api_addr: "10.0.0.7:7410".into(),
                            keys: vec![GossipKey {
                                id: "0a1b2c3d".into(),
                                primary: true,
                            }],
                            error: None,
                        },
                    ),
                    (
                        8,
                        NodeKeys {
                            api_addr: "10.0.0.8:7410".into(),
                            keys: vec![],
                            error: Some("no answer".into()),
                        },
                    ),
                ]),
                failed: 1,
            },
        ] {
            let json = serde_json::to_string(&answer).unwrap();
            assert_eq!(
                serde_json::from_str::<KeyringAnswer>(&json).unwrap(),
                answer
            );
        }
    }
}
