//! `CONCLAVE_*` variables that are not agent settings.
//!
//! The environment is shared: `conclave elect` sets `CONCLAVE_ELECTION_EPOCH` for its child,
//! a user's scripts may set `CONCLAVE_BIN`, the CLI reads `CONCLAVE_ADDR`. Refusing to start
//! over such a variable would make the agent fragile for no gain, so a variable whose first
//! segment names no setting is ignored and reported by name (with the nearest setting when
//! it looks like a typo). A variable that does name a setting is still parsed strictly.

use std::collections::BTreeSet;

/// The prefix of every agent setting in the environment.
pub const PREFIX: &str = "CONCLAVE_";
/// Variables of the CLI (or flags of both), not settings; silently not reported.
const CLI_VARS: &[&str] = &[
    "addr",
    "mtls_ca_file",
    "mtls_cert_file",
    "mtls_key_file",
    "token",
];

/// The setting a variable's key (after the prefix, lower-cased) would set: its first segment.
pub fn section(key: &str) -> String {
    key.split("__").next().unwrap_or("").to_ascii_lowercase()
}

/// One warning per `CONCLAVE_*` variable in `vars` that names no setting in `known`.
pub fn unknown<I>(vars: I, known: &BTreeSet<String>) -> Vec<String>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut out = Vec::new();
    for (name, _) in vars {
        let Some(key) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let section = section(key);
        if known.contains(&section) || CLI_VARS.contains(&section.as_str()) {
            continue;
        }
        let nearest = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(k, &section), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min();
        out.push(match nearest {
            Some((_, k)) => format!(
                "ignoring {name}: it is not an agent setting; did you mean {PREFIX}{}?",
                k.to_ascii_uppercase()
            ),
            None => format!("ignoring {name}: it is not an agent setting"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["cluster_token", "raft", "data_dir", "join"]
            .map(String::from)
            .into()
    }

    fn vars(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), "x".into())).collect()
    }

    #[test]
    fn settings_and_cli_variables_are_not_reported() {
        let v = vars(&[
            "CONCLAVE_CLUSTER_TOKEN",
            "CONCLAVE_RAFT__HEARTBEAT_MS",
            "CONCLAVE_ADDR",
            "PATH",
        ]);
        assert!(unknown(v, &known()).is_empty());
    }

    #[test]
    fn foreign_variables_are_named_and_typos_get_a_suggestion() {
        let w = unknown(
            vars(&[
                "CONCLAVE_ELECTION_EPOCH",
                "CONCLAVE_CLUSTER_TOKNE",
                "CONCLAVE_BIN",
            ]),
            &known(),
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("CONCLAVE_ELECTION_EPOCH") && !w[0].contains("did you mean"));
        assert!(
            w[1].contains("did you mean CONCLAVE_CLUSTER_TOKEN?"),
            "{}",
            w[1]
        );
        assert!(w[2].contains("CONCLAVE_BIN"));
    }
}
