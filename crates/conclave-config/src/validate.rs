//! Validation of a document: every violation, each with the JSON path of the bad field.
//!
//! Error messages never contain the offending value (jsonschema's messages are *masked*):
//! a secret pasted into the wrong field must not come back in a 422.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::kinds::{self, BuiltinKind};
use crate::secret::SecretRef;
use crate::{canonical_bytes, content_hash};

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON Pointer of the field (`""` is the whole document), e.g. `/peers/0/oauth2`.
    pub path: String,
    pub message: String,
}

impl Violation {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A document that passed: its canonical bytes and their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub canonical: Vec<u8>,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    BadName(#[from] kinds::BadName),
    #[error(
        "kind {0:?} is unknown: it is not built in (remote-peers, schema) and no schema is registered for it"
    )]
    UnknownKind(String),
    #[error("the document has {} problem(s)", .0.len())]
    Invalid(Vec<Violation>),
}

/// What a generic kind's documents are checked against: its registered JSON Schema.
pub type RegisteredSchema<'a> = Option<&'a Value>;

/// Validate `content` as document `kind/name`. `registered` is the content of the
/// `schema/<kind>` document when one exists (ignored for built-in kinds).
pub fn validate(
    kind: &str,
    name: &str,
    content: &Value,
    registered: RegisteredSchema<'_>,
) -> Result<Validated, ValidateError> {
    kinds::check_kind_name(kind)?;
    kinds::check_doc_name(name)?;
    let violations = match BuiltinKind::of(kind) {
        Some(BuiltinKind::RemotePeers) => {
            let mut v = schema_violations(remote_peers_validator(), content);
            if v.is_empty() {
                v.extend(remote_peer_rules(content));
            }
            v
        }
        Some(BuiltinKind::Schema) => schema_document_rules(name, content),
        None => {
            let Some(schema) = registered else {
                return Err(ValidateError::UnknownKind(kind.to_owned()));
            };
            match jsonschema::validator_for(schema) {
                Ok(validator) => schema_violations(&validator, content),
                Err(e) => vec![Violation::new(
                    "",
                    format!(
                        "the registered schema/{kind} does not compile: {}",
                        e.masked()
                    ),
                )],
            }
        }
    };
    if !violations.is_empty() {
        return Err(ValidateError::Invalid(violations));
    }
    let canonical = canonical_bytes(content);
    let hash = content_hash(&canonical);
    Ok(Validated { canonical, hash })
}

fn remote_peers_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // The built-in schema is a constant known to compile (unit-tested).
        jsonschema::validator_for(&kinds::remote_peers_schema())
            .unwrap_or_else(|e| panic!("the built-in remote-peers schema is invalid: {e}"))
    })
}

fn schema_violations(validator: &jsonschema::Validator, content: &Value) -> Vec<Violation> {
    validator
        .iter_errors(content)
        .map(|e| Violation::new(e.instance_path().as_str(), e.masked().to_string()))
        .collect()
}

/// `schema/<kind>`: `<kind>` must be a free kind name and the content a JSON Schema.
fn schema_document_rules(name: &str, content: &Value) -> Vec<Violation> {
    if let Err(e) = kinds::check_kind_name(name) {
        return vec![Violation::new("", e.to_string())];
    }
    if BuiltinKind::of(name).is_some() {
        return vec![Violation::new(
            "",
            format!("{name} is a built-in kind; its schema cannot be replaced"),
        )];
    }
    if !content.is_object() && !content.is_boolean() {
        return vec![Violation::new(
            "",
            "a JSON Schema is an object (or true/false)",
        )];
    }
    match jsonschema::validator_for(content) {
        Ok(_) => Vec::new(),
        Err(e) => vec![Violation::new(
            e.instance_path().as_str(),
            format!("not a valid JSON Schema: {}", e.masked()),
        )],
    }
}

fn valid_address(address: &str) -> bool {
    if let Some((scheme, rest)) = address.split_once("://") {
        return !scheme.is_empty() && !rest.is_empty() && !rest.contains(char::is_whitespace);
    }
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// The rules of `remote-peers` beyond its schema (run only on a schema-valid document).
fn remote_peer_rules(content: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let peers = content["peers"].as_array().map_or(&[][..], Vec::as_slice);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, peer) in peers.iter().enumerate() {
        let at = |field: &str| format!("/peers/{i}/{field}");
        let node_id = peer["node_id"].as_str().unwrap_or_default();
        if let Some(first) = seen.insert(node_id, i) {
            out.push(Violation::new(
                at("node_id"),
                format!(
                    "node_id {node_id:?} is also used by /peers/{first}; node ids must be unique"
                ),
            ));
        }
        let address = peer["address"].as_str().unwrap_or_default();
        if !valid_address(address) {
            out.push(Violation::new(
                at("address"),
                "expected host:port (e.g. remote.example.com:9000) or a URL",
            ));
        }
        if peer["type"].as_str() == Some("cloud") && peer.get("oauth2").is_none() {
            out.push(Violation::new(
                format!("/peers/{i}"),
                "a cloud peer needs oauth2 settings (token_url, client_id, client_secret)",
            ));
        }
        if let Some(oauth2) = peer.get("oauth2") {
            let url = oauth2["token_url"].as_str().unwrap_or_default();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                out.push(Violation::new(
                    at("oauth2/token_url"),
                    "expected an http:// or https:// URL",
                ));
            }
            if let Err(e) = SecretRef::parse(oauth2["client_secret"].as_str().unwrap_or_default()) {
                out.push(Violation::new(at("oauth2/client_secret"), e.to_string()));
            }
        }
    }
    out
}

/// Every secret reference in a `remote-peers` document, with its JSON path, for checks that
/// the references resolve where they will be used.
pub fn secret_references(content: &Value) -> Vec<(String, SecretRef)> {
    let peers = content["peers"].as_array().map_or(&[][..], Vec::as_slice);
    peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let text = p.get("oauth2")?.get("client_secret")?.as_str()?;
            Some((
                format!("/peers/{i}/oauth2/client_secret"),
                SecretRef::parse(text).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn violations(kind: &str, content: Value, schema: Option<&Value>) -> Vec<Violation> {
        match validate(kind, "default", &content, schema) {
            Err(ValidateError::Invalid(v)) => v,
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_good_remote_peers_document_passes_with_a_stable_hash() {
        let doc = json!({"peers": [{
            "node_id": "cloud-node-1", "address": "remote.example.com:9000", "type": "cloud",
            "oauth2": {"token_url": "https://id.example.com/token", "client_id": "lan",
                       "client_secret": "${GW_SECRET}", "scope": "sync"}
        }]});
        let a = validate("remote-peers", "default", &doc, None).unwrap();
        let b = validate("remote-peers", "default", &doc, None).unwrap();
        assert_eq!(a, b);
        assert_eq!(secret_references(&doc).len(), 1);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path_and_no_secret_is_echoed() {
        let doc = json!({"peers": [
            {"node_id": "a", "address": "nope", "oauth2": {"token_url": "ftp://x",
             "client_id": "c", "client_secret": "hunter2-inline"}},
            {"node_id": "a", "address": "h:1", "type": "cloud"}
        ]});
        let v = violations("remote-peers", doc, None);
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/peers/0/address",
                "/peers/0/oauth2/token_url",
                "/peers/0/oauth2/client_secret",
                "/peers/1/node_id",
                "/peers/1"
            ]
        );
        assert!(!format!("{v:?}").contains("hunter2"));
        // Schema errors: wrong types, unknown fields, missing fields, each with a path, and
        // the masked message does not repeat the value.
        let v = violations(
            "remote-peers",
            json!({"peers": [{"node_id": 5, "address": "h:1", "extra": true,
                              "oauth2": {"token_url": "https://t", "client_id": "c", "client_secret": 12345678}}]}),
            None,
        );
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/peers/0/node_id"), "{v:?}");
        assert!(paths.contains(&"/peers/0"), "{v:?}");
        assert!(paths.contains(&"/peers/0/oauth2/client_secret"), "{v:?}");
        assert!(!format!("{v:?}").contains("12345678"));
    }

    #[test]
    fn generic_kinds_need_a_registered_schema() {
        let schema = json!({"type": "object", "required": ["port"],
                            "properties": {"port": {"type": "integer", "maximum": 65535}}});
        assert!(validate("schema", "gateway-settings", &schema, None).is_ok());
        assert_eq!(
            validate("gateway-settings", "default", &json!({"port": 1}), None),
            Err(ValidateError::UnknownKind("gateway-settings".into()))
        );
        assert!(
            validate(
                "gateway-settings",
                "default",
                &json!({"port": 1}),
                Some(&schema)
            )
            .is_ok()
        );
        let v = violations("gateway-settings", json!({"port": 70000}), Some(&schema));
        assert_eq!(v[0].path, "/port");
        // Built-in kinds cannot be redefined; schemas must be schemas.
        assert!(validate("schema", "remote-peers", &json!({}), None).is_err());
        assert!(validate("schema", "x", &json!({"type": 12}), None).is_err());
        assert!(matches!(
            validate("Bad Kind", "n", &json!({}), None),
            Err(ValidateError::BadName(_))
        ));
    }
}
