//! Architecture rules that a review could miss, checked on every test run: which crate may
//! depend on what, what the pure state machine may touch, who may call whom, and how long
//! a file may grow (see ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The names of a crate's normal (not dev) dependencies.
fn dependencies(krate: &str) -> BTreeSet<String> {
    let path = workspace().join("crates").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("valid Cargo.toml");
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every `.rs` file under `dir`, with its text.
fn rust_files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("source");
            out.push((p, text));
        }
    }
}

/// Every `.rs` file under a crate's `src`, with its text.
fn sources(krate: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    rust_files(
        &workspace().join("crates").join(krate).join("src"),
        &mut out,
    );
    assert!(!out.is_empty(), "no sources for {krate}");
    out
}

const IO_ASYNC_CLOCK_RANDOM: &[&str] = &[
    "tokio",
    "tokio-util",
    "futures",
    "async-trait",
    "rand",
    "openraft",
    "foca",
    "reqwest",
    "hyper",
    "axum",
    "tempfile",
    "rustix",
    "humantime",
];

const HTTP: &[&str] = &[
    "axum",
    "hyper",
    "hyper-util",
    "http",
    "http-body-util",
    "reqwest",
    "tower",
    "tower-http",
];

#[test]
fn the_state_machine_depends_on_no_io_async_clock_or_randomness() {
    let deps = dependencies("conclave-state");
    for banned in IO_ASYNC_CLOCK_RANDOM {
        assert!(
            !deps.contains(*banned),
            "conclave-state depends on {banned}"
        );
    }
    for (path, text) in sources("conclave-state") {
        for needle in [
            "std::time",
            "SystemTime",
            "Instant::",
            "std::fs",
            // Addresses are values (IPAM); sockets and name lookups are IO.
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "ToSocketAddrs",
            "std::thread",
            "std::env",
        ] {
            assert!(
                !text.contains(needle),
                "{} uses {needle}: apply() must be pure",
                path.display()
            );
        }
    }
}

/// The checker is test tooling: pure (so its verdicts are reproducible), and no part of the
/// agent depends on it.
#[test]
fn the_linearizability_checker_is_pure_and_outside_the_agent() {
    assert_eq!(
        dependencies("conclave-check"),
        BTreeSet::from(["serde".to_string()])
    );
    for (path, text) in sources("conclave-check") {
        for needle in [
            "std::time",
            "Instant::",
            "std::fs",
            "std::net",
            "std::thread",
        ] {
            assert!(!text.contains(needle), "{} uses {needle}", path.display());
        }
    }
    for krate in [
        "conclave-state",
        "conclave-storage",
        "conclave-raft",
        "conclave-coord",
        "conclave-api",
        "conclave",
    ] {
        assert!(
            !dependencies(krate).contains("conclave-check"),
            "{krate} depends on conclave-check"
        );
    }
}

#[test]
fn consensus_and_storage_know_no_http() {
    for krate in ["conclave-raft", "conclave-storage", "conclave-state"] {
        let deps = dependencies(krate);
        for banned in HTTP {
            assert!(!deps.contains(*banned), "{krate} depends on {banned}");
        }
        for (path, text) in sources(krate) {
            for needle in ["StatusCode", "/v1/", "?force="] {
                assert!(
                    !text.contains(needle),
                    "{} mentions {needle:?}: HTTP belongs to conclave-api",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_cluster_token_is_a_secret_everywhere_it_is_held() {
    // The agent's configuration and the two places that use the token hold it as a
    // `Secret`, whose Debug, Display and Serialize redact (tested in conclave-types).
    for (krate, file, field) in [
        (
            "conclave",
            "src/config.rs",
            "pub cluster_token: Option<conclave_types::Secret>",
        ),
        (
            "conclave-raft",
            "src/lib.rs",
            "pub cluster_token: Option<Secret>",
        ),
        (
            "conclave-membership",
            "src/lib.rs",
            "pub token: Option<conclave_types::Secret>",
        ),
    ] {
        let (_, text) = sources(krate)
            .into_iter()
            .find(|(p, _)| p.ends_with(file))
            .expect("file");
        assert!(text.contains(field), "{krate}/{file} must hold {field}");
    }
}

/// Files that still build `/v1/` URLs themselves: the load generator (raw hyper, one
/// keep-alive connection per simulated client, to measure the server and not a client).
/// The list may only shrink: a file listed here that no longer builds a URL fails too.
const STILL_BUILDING_URLS: &[&str] =
    &["conclave-bench/src/main.rs", "conclave-bench/src/fanout.rs"];

#[test]
fn only_the_api_and_its_client_spell_api_routes() {
    let crates = workspace().join("crates");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&crates).expect("crates").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "conclave-api" || name == "conclave-client" {
            continue;
        }
        for (path, text) in sources(&name) {
            let code_lines = text
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"));
            if code_lines
                .into_iter()
                .any(|l| l.contains("\"/v1/") || l.contains("/v1/{") || l.contains("}/v1/"))
            {
                let rel = path.strip_prefix(&crates).unwrap_or(&path);
                found.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let allowed: BTreeSet<String> = STILL_BUILDING_URLS.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = found.difference(&allowed).collect();
    assert!(
        new.is_empty(),
        "these files build /v1/ URLs; use conclave-client instead: {new:?}"
    );
    let stale: Vec<_> = allowed.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "remove from STILL_BUILDING_URLS: {stale:?}"
    );
}

#[test]
fn roles_and_publishing_are_independent() {
    // Both run hooks (conclave-hook) and reach the cluster through conclave-coord.
    let roles = dependencies("conclave-roles");
    assert!(
        !roles.contains("conclave-publish"),
        "conclave-roles depends on conclave-publish"
    );
    assert!(roles.contains("conclave-hook") && roles.contains("conclave-coord"));
    assert!(!dependencies("conclave-publish").contains("conclave-roles"));
}

#[test]
fn background_loops_do_not_call_their_own_agent_over_http() {
    // Roles, configuration sync and the seed importer call conclave-coord in process (a
    // client agent's coordinator forwards to a member); none holds an HTTP client of the
    // agent's own API.
    for krate in ["conclave-roles", "conclave-publish"] {
        assert!(
            !dependencies(krate).contains("conclave-client"),
            "{krate} depends on conclave-client: call conclave-coord instead"
        );
    }
    let seed =
        std::fs::read_to_string(workspace().join("crates/conclave/src/seed.rs")).expect("seed.rs");
    assert!(
        !seed.contains("conclave_client") && !seed.contains("crate::client"),
        "the seed importer uses an HTTP client: call conclave-coord instead"
    );
    let agent = std::fs::read_to_string(workspace().join("crates/conclave/src/agent.rs"))
        .expect("agent.rs");
    assert!(
        !agent.contains("own_api"),
        "the agent builds a client of its own API again"
    );
}

/// A file longer than this is doing more than one job: split it by what it does.
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates"))
        .expect("crates")
        .flatten()
    {
        for part in ["src", "tests", "benches"] {
            let dir = entry.path().join(part);
            if dir.is_dir() {
                rust_files(&dir, &mut files);
            }
        }
    }
    assert!(
        files.len() > 50,
        "the walk found too few files: {}",
        files.len()
    );
    let long: Vec<_> = files
        .iter()
        .map(|(p, text)| (p, text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

#[test]
fn library_crates_return_typed_errors_not_strings() {
    // The binary and the load generator may end in anyhow or a message; a library's caller
    // must be able to tell its failures apart.
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates"))
        .expect("crates")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "conclave" || name == "conclave-bench" {
            continue;
        }
        for (path, text) in sources(&name) {
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if !code.starts_with("//") && code.contains("Result<") && code.contains(", String>")
                {
                    found.push(format!("{}:{}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> in: {found:?}");
}
