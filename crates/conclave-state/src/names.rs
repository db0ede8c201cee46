//! The names the replicated state holds, and the rules they follow.
//!
//! Why here: these rules are checked twice — by every entry point before proposing (through
//! [`crate::Limits`] and `conclave-config`) and by [`crate::State::apply`] itself, which
//! refuses a command whose key or name breaks them (defence in depth: a command that slipped
//! past an entry point is refused the same way on every node, never applied). The rules are
//! constants, not settings, so every node decides alike. Document names also become file
//! names under the configuration-sync directory, so they never contain a path separator or
//! start with a dot.

use crate::{Command, SYSTEM_PREFIX};

/// A kind or document name that breaks the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error(
        "kind {0:?} is not a valid kind name: use lowercase letters, digits and dashes, starting with a letter, at most 63 characters"
    )]
    Kind(String),
    #[error(
        "document name {0:?} is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
    )]
    Document(String),
}

/// Kind names: lowercase letters, digits and dashes, starting with a letter, ≤ 63 bytes.
pub fn check_kind_name(kind: &str) -> Result<(), BadName> {
    let ok = kind.len() <= 63
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BadName::Kind(kind.to_owned()))
    }
}

/// Document names: letters, digits, `.`, `_` and `-`, starting with a letter or digit,
/// ≤ 128 bytes.
pub fn check_doc_name(name: &str) -> Result<(), BadName> {
    let ok = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BadName::Document(name.to_owned()))
    }
}

/// Why [`crate::State::apply`] refused a command: it breaks a rule every entry point checks
/// before proposing, so only a command that bypassed them (or a bug) gets here.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error,
)]
pub enum Refusal {
    #[error("the key is empty")]
    EmptyKey,
    #[error("keys under {SYSTEM_PREFIX:?} are reserved for conclave")]
    ReservedKey,
    #[error("the document kind breaks the kind naming rules")]
    BadKind,
    #[error("the document name breaks the document naming rules")]
    BadDocumentName,
    #[error("an election or candidate name is empty")]
    EmptyElectionName,
    #[error("a clock stamp from an earlier leader term than the cluster clock's")]
    StaleClock,
    /// The revision reached [`crate::MAX_REVISION`] (only a corrupt snapshot gets there: at
    /// a million writes a second the limit is 146,000 years away); nothing more is applied,
    /// so no counter can wrap.
    #[error("the store's revisions are exhausted")]
    RevisionsExhausted,
    /// An `Audited` around another `Audited`, a `Note` or a leader-only command.
    #[error("this command cannot be wrapped for the audit log")]
    NotAuditable,
    #[error("the node name breaks the node naming rules")]
    BadNodeName,
}

/// Whether `apply` may apply `command` to a state at `revision` whose cluster clock is at
/// `clock_term`.
pub(crate) fn admissible(command: &Command, clock_term: u64, revision: u64) -> Result<(), Refusal> {
    if revision >= crate::MAX_REVISION {
        return Err(Refusal::RevisionsExhausted);
    }
    match command {
        Command::Put { key, .. } | Command::Delete { key, .. } => {
            if key.is_empty() {
                Err(Refusal::EmptyKey)
            } else if key.starts_with(SYSTEM_PREFIX) {
                Err(Refusal::ReservedKey)
            } else {
                Ok(())
            }
        }
        Command::ConfigPut { kind, name, .. } | Command::ConfigDelete { kind, name, .. } => {
            check_kind_name(kind).map_err(|_| Refusal::BadKind)?;
            check_doc_name(name).map_err(|_| Refusal::BadDocumentName)
        }
        Command::Campaign {
            election,
            candidate,
            ..
        }
        | Command::Keepalive {
            election,
            candidate,
            ..
        }
        | Command::Resign {
            election,
            candidate,
            ..
        }
        | Command::Handover {
            election,
            target: candidate,
            ..
        } => {
            if election.is_empty() || candidate.is_empty() {
                Err(Refusal::EmptyElectionName)
            } else {
                Ok(())
            }
        }
        Command::NameNode { name, .. } => {
            crate::node_names::check_node_name(name).map_err(|_| Refusal::BadNodeName)
        }
        // Log terms never go down, so a stamp of an earlier term was not made by a leader.
        Command::Clock { term, .. } if *term < clock_term => Err(Refusal::StaleClock),
        Command::Audited { command, .. } => {
            if command.is_leader_only()
                || matches!(**command, Command::Audited { .. } | Command::Note { .. })
            {
                Err(Refusal::NotAuditable)
            } else {
                admissible(command, clock_term, revision)
            }
        }
        // Token and policy rules are the ACL state's own (`acl::AclState::apply`), IPAM's
        // are `ipam::validate` (answered as an IPAM refusal); a note is a record and
        // nothing else.
        Command::Clock { .. }
        | Command::ExpireLeases
        | Command::Acl(_)
        | Command::Note { .. }
        | Command::Ipam(_)
        | Command::ForgetNode { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_document_name_can_leave_a_directory() {
        for bad in ["", "..", ".hidden", "a/b", "/abs", "a\\b", "a b", "é"] {
            assert!(check_doc_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "gateway.prod", "A_1-b", "0"] {
            assert!(check_doc_name(good).is_ok(), "{good:?} refused");
        }
        assert!(check_doc_name(&"a".repeat(128)).is_ok());
        assert!(check_doc_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn kind_names_are_lowercase_words() {
        for bad in ["", "Peers", "1peers", "a_b", "a/b", "..", &"a".repeat(64)] {
            assert!(check_kind_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["remote-peers", "schema", "x1"] {
            assert!(check_kind_name(good).is_ok(), "{good:?} refused");
        }
    }
}
