//! Document kinds and names.
//!
//! Built-in kinds have a schema compiled into conclave and rules of their own:
//! - `remote-peers`: the peers a gateway connects to (seed 000's table), with OAuth2
//!   client credentials given as secret references;
//! - `schema`: a JSON Schema registered by the operator; `schema/<kind>` makes `<kind>` a
//!   new document kind validated by it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kind whose documents are JSON Schemas for other kinds.
pub const SCHEMA_KIND: &str = "schema";
pub const REMOTE_PEERS_KIND: &str = "remote-peers";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinKind {
    RemotePeers,
    Schema,
}

impl BuiltinKind {
    pub fn of(kind: &str) -> Option<Self> {
        match kind {
            REMOTE_PEERS_KIND => Some(Self::RemotePeers),
            SCHEMA_KIND => Some(Self::Schema),
            _ => None,
        }
    }
}

// The naming rules are the replicated state's: `apply` refuses a name that breaks them too.
pub use conclave_state::names::{BadName, check_doc_name, check_kind_name};

/// A `remote-peers` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemotePeers {
    pub peers: Vec<RemotePeer>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerType {
    #[default]
    Static,
    Cloud,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemotePeer {
    pub node_id: String,
    pub address: String,
    #[serde(default, rename = "type")]
    pub peer_type: PeerType,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
}

fn enabled_by_default() -> bool {
    true
}

/// OAuth2 client-credentials settings of a remote peer; `client_secret` is a reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The JSON Schema of `remote-peers`; the kind's own rules (secret references, unique node
/// ids, addresses) are checked after it in [`crate::validate`].
pub fn remote_peers_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": ["peers"],
        "additionalProperties": false,
        "properties": {
            "peers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["node_id", "address"],
                    "additionalProperties": false,
                    "properties": {
                        "node_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "address": {"type": "string", "minLength": 1, "maxLength": 512},
                        "type": {"enum": ["static", "cloud"]},
                        "enabled": {"type": "boolean"},
                        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                        "oauth2": {
                            "type": "object",
                            "required": ["token_url", "client_id", "client_secret"],
                            "additionalProperties": false,
                            "properties": {
                                "token_url": {"type": "string", "minLength": 1},
                                "client_id": {"type": "string", "minLength": 1},
                                "client_secret": {"type": "string"},
                                "scope": {"type": "string"}
                            }
                        }
                    }
                }
            }
        }
    })
}
