//! What must hold for *any* input, written once and run three ways: by the fuzz targets in
//! `fuzz/` (coverage-guided, arbitrary bytes), by this crate's property tests (arbitrary
//! commands), and by the regression tests that replay every input a fuzzer ever found
//! (`fuzz/regressions/`).
//!
//! Why in the library and not in the fuzz crate: the invariants are facts about the state
//! machine, so they live next to it and are compiled, linted and tested with it.

use crate::{Batch, Command, Outcome, SYSTEM_PREFIX, State, names, snapshot};

/// An invariant that did not hold, and for which input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Violation(String);

impl From<String> for Violation {
    fn from(what: String) -> Self {
        Violation(what)
    }
}

impl From<&str> for Violation {
    fn from(what: &str) -> Self {
        Violation(what.to_owned())
    }
}

/// Apply `commands` one by one to a fresh state and check, after each, what every applied
/// log must satisfy; `Err` says which command broke what.
///
/// - The revision never goes back, the outcome reports the revision after apply, and every
///   revision is exactly one change.
/// - A refused command changes nothing at all.
/// - The state holds only keys, documents and elections the naming rules allow.
/// - Applying the same commands again gives the same outcomes and the same state
///   (determinism: every node computes the same thing).
/// - The state survives a snapshot round trip unchanged.
pub fn check_apply(commands: &[Command]) -> Result<(), Violation> {
    let mut state = State::new();
    let mut outcomes = Vec::with_capacity(commands.len());
    for command in commands {
        let before_revision = state.revision();
        // Any command may be refused; the copy is what proves a refusal changed nothing.
        let before = state.clone();
        let outcome = state.apply(command);
        let after = state.revision();
        if after < before_revision {
            return Err(format!("the revision went back on {command:?}").into());
        }
        if outcome.revision() != after {
            return Err(format!(
                "{command:?} reported revision {} but the state is at {after}",
                outcome.revision()
            )
            .into());
        }
        let changes = state.take_changes();
        if changes.len() as u64 != after - before_revision {
            return Err(format!(
                "{command:?} made {} changes for {} revisions",
                changes.len(),
                after - before_revision
            )
            .into());
        }
        if matches!(outcome, Outcome::Refused { .. }) && (before != state || !changes.is_empty()) {
            return Err(format!("the refused {command:?} changed the state").into());
        }
        outcomes.push(outcome);
    }
    check_names(&state)?;

    let mut again = State::new();
    let replayed: Vec<Outcome> = commands.iter().map(|c| again.apply(c)).collect();
    if replayed != outcomes || again != state {
        return Err("applying the same commands twice gave different results".into());
    }
    let decoded = snapshot::decode(&snapshot::encode(&state)).map_err(|e| {
        Violation(format!(
            "a snapshot of a reachable state does not decode: {e}"
        ))
    })?;
    if decoded != state {
        return Err("a snapshot round trip changed the state".into());
    }
    Ok(())
}

/// The state holds only names the rules allow.
pub fn check_names(state: &State) -> Result<(), Violation> {
    let (keys, _) = state.list("", None, usize::MAX);
    for (key, _) in keys {
        if key.is_empty() || key.starts_with(SYSTEM_PREFIX) {
            return Err(format!("key {key:?} is stored").into());
        }
    }
    for (kind, name, _) in state.config_documents(None) {
        if names::check_kind_name(kind).is_err() || names::check_doc_name(name).is_err() {
            return Err(format!("document {kind:?}/{name:?} is stored").into());
        }
    }
    for (name, election) in state.elections() {
        if name.is_empty() {
            return Err("an election without a name is stored".into());
        }
        if election
            .holder
            .as_ref()
            .is_some_and(|h| h.candidate.is_empty())
        {
            return Err(format!("election {name:?} has a holder without a name").into());
        }
    }
    Ok(())
}

/// Fuzz target `apply`: the bytes as a log entry's batch (postcard, as entries arrive from
/// the leader), applied with [`check_apply`]. Bytes that are not a batch are ignored: the
/// decoder refusing them is all that may happen.
pub fn apply_bytes(bytes: &[u8]) {
    let Ok(batch) = postcard::from_bytes::<Batch>(bytes) else {
        return;
    };
    if let Err(broken) = check_apply(&batch.commands) {
        panic!("{broken}");
    }
}

/// Fuzz target `snapshot`: a snapshot decoder fed anything either refuses it or returns a
/// state that encodes and decodes back to itself, and that commands can be applied to.
pub fn snapshot_bytes(bytes: &[u8]) {
    let Ok(state) = snapshot::decode(bytes) else {
        return;
    };
    let again = snapshot::decode(&snapshot::encode(&state))
        .unwrap_or_else(|e| panic!("a decoded snapshot re-encodes to one that fails: {e}"));
    assert!(again == state, "a snapshot round trip changed the state");
    let mut state = state;
    let revision = state.revision();
    for command in [
        Command::ExpireLeases,
        Command::Delete {
            key: "a".into(),
            expected: None,
        },
    ] {
        let outcome = state.apply(&command);
        assert!(outcome.revision() >= revision, "the revision went back");
    }
}
