//! Every input the fuzzers kept (`fuzz/corpus/<target>/`, the inputs that reached new code)
//! and every input that once broke a target (`fuzz/regressions/<target>/`) is replayed
//! through the target's checks on every test run, so a fixed crash stays fixed without
//! cargo-fuzz installed. The checks themselves are the library crates' `fuzzing` modules.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The checks of one target: panics when an invariant breaks.
type Check = fn(&[u8]);

/// Each fuzz target and the function its `fuzz/fuzz_targets/<name>.rs` calls.
const TARGETS: &[(&str, Check)] = &[
    ("apply", conclave_state::fuzzing::apply_bytes),
    ("snapshot", conclave_state::fuzzing::snapshot_bytes),
    (
        "log_recovery",
        conclave_storage::fuzzing::log_recovery_bytes,
    ),
    ("handshake", conclave_raft::fuzzing::handshake_bytes),
    ("sealed", conclave_raft::fuzzing::sealed_bytes),
    ("messages", conclave_raft::fuzzing::messages_bytes),
];

/// A committed corpus smaller than this means it was lost, not that all is well.
const MIN_CORPUS: usize = 20;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"));
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus_and_a_binary() {
    for (name, _) in TARGETS {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= MIN_CORPUS,
            "fuzz/corpus/{name} holds {} inputs; run `fuzz/run` and commit the corpus",
            corpus.len()
        );
    }
}

#[test]
fn every_kept_and_every_once_failing_input_still_passes() {
    let mut failed = Vec::new();
    for (name, check) in TARGETS {
        for kind in ["corpus", "regressions"] {
            for path in inputs(&fuzz_dir().join(kind).join(name)) {
                let bytes = std::fs::read(&path).expect("reading a fuzz input");
                if catch_unwind(AssertUnwindSafe(|| check(&bytes))).is_err() {
                    failed.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that break their target: {failed:#?}"
    );
}
