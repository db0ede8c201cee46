//! The check a node runs on a command a peer forwarded ([`conclave_raft::ProposalGate`]):
//! exactly what this crate checks before proposing a command that entered here (sizes and
//! reserved keys by [`Limits`], kind and name rules, a document validated against the
//! built-in rules or the registered schema, content canonical and hashed as stored), so a
//! peer that speaks node RPC directly gets no further than a client of the HTTP API.

use conclave_config::kinds;
use conclave_raft::{ProposalGate, RejectReason};
use conclave_state::{Command, Limits};
use conclave_storage::StateHandle;
use serde_json::Value;

use crate::CoordError;
use crate::local::{registered_schema, validated};

pub struct ForwardedProposals {
    limits: Limits,
    state: StateHandle,
}

impl ForwardedProposals {
    pub fn new(limits: Limits, state: StateHandle) -> Self {
        Self { limits, state }
    }

    fn check(&self, command: &Command) -> Result<(), CoordError> {
        self.limits.check(command)?;
        match command {
            Command::ConfigPut {
                kind,
                name,
                content,
                hash,
                ..
            } => {
                let value: Value = serde_json::from_slice(content).map_err(|e| {
                    CoordError::Internal(format!("the document's content is not JSON: {e}"))
                })?;
                let schema = self.state.read(|a| registered_schema(&a.state, kind));
                let checked = validated(kind, name, &value, schema.as_ref())?;
                if checked.canonical != *content || checked.hash != *hash {
                    return Err(CoordError::Internal(
                        "the document's content is not canonical or its hash does not match it"
                            .into(),
                    ));
                }
                Ok(())
            }
            Command::ConfigDelete { kind, name, .. } => {
                kinds::check_kind_name(kind)?;
                kinds::check_doc_name(name)?;
                Ok(())
            }
            // The wrapped command passes the same checks as on its own.
            Command::Audited { command, .. } => self.check(command),
            _ => Ok(()),
        }
    }
}

impl ProposalGate for ForwardedProposals {
    fn admit(&self, command: &Command) -> Result<(), RejectReason> {
        self.check(command).map_err(|e| RejectReason::Inadmissible {
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_storage::StateMachineStore;
    use serde_json::json;

    fn gate(dir: &std::path::Path) -> ForwardedProposals {
        let sm = StateMachineStore::open_with(dir, Default::default()).unwrap();
        ForwardedProposals::new(Limits::default(), sm.handle())
    }

    fn put_doc(kind: &str, name: &str, content: &Value) -> Command {
        let canonical = conclave_config::canonical_bytes(content);
        Command::ConfigPut {
            kind: kind.into(),
            name: name.into(),
            hash: conclave_config::content_hash(&canonical),
            content: canonical,
            author: None,
            expected: None,
        }
    }

    fn refused(g: &ForwardedProposals, c: &Command) -> String {
        match g.admit(c) {
            Err(RejectReason::Inadmissible { reason }) => reason,
            other => panic!("{c:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn what_the_http_api_refuses_a_peer_cannot_propose_either() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let doc = json!({"peers": [{"node_id": "n", "address": "a:1", "type": "static"}]});
        assert_eq!(g.admit(&put_doc("remote-peers", "default", &doc)), Ok(()));
        // Names that would steer config sync outside its directory.
        refused(&g, &put_doc("", "/abs/path", &doc));
        refused(&g, &put_doc("remote-peers", "../../etc", &doc));
        // A document its kind's rules refuse.
        assert!(
            refused(&g, &put_doc("remote-peers", "x", &json!({"peers": 3}))).contains("not valid")
        );
        // A key under the system prefix, through the KV command.
        refused(
            &g,
            &Command::Put {
                key: "_conclave/config/x/../../..".into(),
                value: b"{}".to_vec(),
                expected: None,
            },
        );
        // Content that is not what its hash says.
        let mut forged = put_doc("remote-peers", "default", &doc);
        if let Command::ConfigPut { hash, .. } = &mut forged {
            *hash = "0".repeat(64);
        }
        assert!(refused(&g, &forged).contains("hash"));
        // Wrapped for the audit log, it is checked all the same.
        let wrapped = Command::Audited {
            meta: conclave_state::audit::AuditMeta::agent(),
            command: Box::new(forged),
        };
        assert!(refused(&g, &wrapped).contains("hash"));
        refused(
            &g,
            &Command::ConfigDelete {
                kind: "remote-peers".into(),
                name: "/abs".into(),
                expected: None,
                author: None,
            },
        );
    }
}
