//! Documents read from files for `conclave apply` and `conclave config validate`.
//!
//! A file holds one or more documents, each `{kind, name, content}`:
//! - JSON: one such object, or an array of them;
//! - YAML: one per YAML document (`---` between them), or a list;
//! - TOML: `[[document]]` tables with `kind`, `name` and a `content` table.
//!
//! The format comes from the extension (`.json`, `.yaml`/`.yml`, `.toml`).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One document from a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDocument {
    pub kind: String,
    pub name: String,
    pub content: Value,
}

impl FileDocument {
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: unknown file type; use .json, .yaml, .yml or .toml")]
    UnknownFormat { path: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {id} appears more than once; a file may hold each document once")]
    Duplicate { path: String, id: String },
    #[error("{path}: holds no documents")]
    Empty { path: String },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<FileDocument>),
    One(FileDocument),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    document: Vec<FileDocument>,
}

/// Read every document of `path`.
pub fn read(path: &Path) -> Result<Vec<FileDocument>, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    parse(&text, &ext, &shown)
}

/// Parse `text` in the format of extension `ext`; `shown` names it in errors.
pub fn parse(text: &str, ext: &str, shown: &str) -> Result<Vec<FileDocument>, FileError> {
    let parse_err = |reason: String| FileError::Parse {
        path: shown.to_owned(),
        reason,
    };
    let docs = match ext {
        "json" => match serde_json::from_str::<OneOrMany>(text) {
            Ok(OneOrMany::Many(d)) => d,
            Ok(OneOrMany::One(d)) => vec![d],
            Err(e) => {
                return Err(parse_err(format!(
                    "{e}; expected {{\"kind\", \"name\", \"content\"}} or a list of them"
                )));
            }
        },
        "yaml" | "yml" => {
            let parts: Vec<OneOrMany> = serde_saphyr::from_multiple(text).map_err(|e| {
                parse_err(format!(
                    "{e}; expected documents with kind, name and content"
                ))
            })?;
            parts
                .into_iter()
                .flat_map(|p| match p {
                    OneOrMany::Many(d) => d,
                    OneOrMany::One(d) => vec![d],
                })
                .collect()
        }
        "toml" => {
            toml::from_str::<TomlFile>(text)
                .map_err(|e| {
                    parse_err(format!(
                        "{e}expected [[document]] tables with kind, name and a content table"
                    ))
                })?
                .document
        }
        _ => {
            return Err(FileError::UnknownFormat {
                path: shown.to_owned(),
            });
        }
    };
    if docs.is_empty() {
        return Err(FileError::Empty {
            path: shown.to_owned(),
        });
    }
    let mut seen = BTreeSet::new();
    for d in &docs {
        if !seen.insert(d.id()) {
            return Err(FileError::Duplicate {
                path: shown.to_owned(),
                id: d.id(),
            });
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_give_the_same_documents() {
        let json = r#"[{"kind": "remote-peers", "name": "default",
                        "content": {"peers": [{"node_id": "a", "address": "h:1"}]}},
                       {"kind": "schema", "name": "x", "content": {"type": "object"}}]"#;
        let yaml = "kind: remote-peers\nname: default\ncontent:\n  peers:\n    - node_id: a\n      address: h:1\n---\nkind: schema\nname: x\ncontent:\n  type: object\n";
        let toml = "[[document]]\nkind = \"remote-peers\"\nname = \"default\"\n[[document.content.peers]]\nnode_id = \"a\"\naddress = \"h:1\"\n\n[[document]]\nkind = \"schema\"\nname = \"x\"\n[document.content]\ntype = \"object\"\n";
        let a = parse(json, "json", "a.json").unwrap();
        let b = parse(yaml, "yaml", "b.yaml").unwrap();
        let c = parse(toml, "toml", "c.toml").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn duplicates_and_unknown_formats_are_refused() {
        let dup = r#"[{"kind": "k", "name": "n", "content": {}}, {"kind": "k", "name": "n", "content": {}}]"#;
        assert!(matches!(
            parse(dup, "json", "d.json"),
            Err(FileError::Duplicate { .. })
        ));
        assert!(matches!(
            parse("{}", "ini", "d.ini"),
            Err(FileError::UnknownFormat { .. })
        ));
        let err = parse("kind: [", "yaml", "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml:"), "{err}");
    }
}
