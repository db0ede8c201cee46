//! Configuration documents: what may be stored under `/v1/config/{kind}/{name}`.
//!
//! Why this crate exists: a document is checked in three places — by the agent before it is
//! proposed, by `conclave config validate` offline, and by `conclave apply` before it talks
//! to the cluster — and all three must give the same verdict with the same JSON paths. The
//! state machine stores documents as opaque canonical bytes with a hash; the rules for
//! their content live here. No IO except [`secret::SecretRef::resolve`] (within the node's
//! local [`secret::SecretPolicy`]), which only the
//! node that needs a secret calls.
//!
//! - [`kinds`]: the built-in kinds (`remote-peers`, `schema`) and name rules.
//! - [`validate`]: JSON Schema validation (built-in or operator-registered) plus each kind's
//!   own rules, giving every violation with its JSON path.
//! - [`secret`]: secret *references* (`${ENV}`, `file:/path`); inline secrets are refused.
//! - [`files`]: documents read from TOML, YAML or JSON files, several per file.
//! - [`canonical`]: one byte form per document (sorted keys) and its SHA-256.

pub mod canonical;
pub mod duplicates;
pub mod files;
pub mod kinds;
pub mod secret;
pub mod validate;

pub use canonical::{canonical_bytes, content_hash};
pub use kinds::{BuiltinKind, RemotePeer, RemotePeers};
pub use secret::{SecretPolicy, SecretRef};
pub use validate::{Validated, Violation};
