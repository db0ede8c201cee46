//! Secret references: how a document names a secret without containing it.
//!
//! A document holds `"${ENV_NAME}"` (an environment variable of the agent that needs it) or
//! `"file:/absolute/path"` (a file on that node). The cluster stores and shows only the
//! reference; the value is read on the node that uses it, when it uses it, and is never
//! logged, returned or put in an error: [`Secret`]'s `Debug` prints a placeholder and errors
//! name the reference, not the value.
//!
//! Anyone who may write a document chooses the reference, so a reference resolves only
//! within what the node's *local* [`SecretPolicy`] allows: environment variables it lists
//! (never the agent's own `CONCLAVE_*` settings, the cluster token among them), and regular
//! files inside its secrets directory, read without blocking and size-capped. Otherwise one
//! PUT could make a node send any of its files or variables wherever the document says.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A parsed secret reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// A string that is not a secret reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAReference {
    #[error(
        "an inline secret is refused: store it in an environment variable of the agents and write \"${{NAME}}\", or in a file and write \"file:/path/to/secret\""
    )]
    Inline,
    #[error(
        "\"${{...}}\" needs a variable name of letters, digits and underscores, not starting with a digit"
    )]
    BadEnvName,
    #[error("\"file:\" needs an absolute path, like \"file:/etc/conclave/secret\"")]
    RelativePath,
}

/// Why a reference could not be resolved on this node (without the value, ever).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the environment variable {0} is not set on this node")]
    EnvMissing(String),
    #[error("the secret file {path} cannot be read on this node: {reason}")]
    File { path: String, reason: String },
    #[error("the secret {0} is empty on this node")]
    Empty(String),
    #[error(
        "{reference} is not allowed on this node: {why}. Allow it in the agent's [secrets] section (env = [\"NAME\" or \"PREFIX_*\"], dir = \"/path\")"
    )]
    NotAllowed { reference: String, why: String },
}

/// Why a reference is refused or unreadable, as said to the operator (never the value).
#[derive(Debug)]
struct Refused(String);

/// Largest secret file read (a token or key, not a data file).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// What secret references may resolve to on this node: the `[secrets]` section of the
/// agent's own configuration, which no document can change.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretPolicy {
    /// Environment variables `${NAME}` may read: exact names, or prefixes ending in `*`.
    /// Names starting with `CONCLAVE_` never resolve (they configure the agent itself).
    pub env: Vec<String>,
    /// The directory `file:` references must lie in (after resolving symlinks).
    pub dir: Option<PathBuf>,
}

impl SecretPolicy {
    fn allows_env(&self, name: &str) -> Result<(), Refused> {
        if name.starts_with("CONCLAVE_") {
            return Err(Refused(
                "CONCLAVE_* variables configure the agent and are never secrets for documents"
                    .into(),
            ));
        }
        let listed = self
            .env
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => allowed == name,
            });
        if listed {
            Ok(())
        } else {
            Err(Refused(format!("{name} is not in [secrets] env")))
        }
    }

    /// The canonical path of `path` if it lies inside the secrets directory.
    fn allows_file(&self, path: &Path) -> Result<PathBuf, Refused> {
        let Some(dir) = &self.dir else {
            return Err(Refused(
                "no [secrets] dir is set, so file: references are off".into(),
            ));
        };
        let dir = dir.canonicalize().map_err(|e| {
            Refused(format!(
                "the secrets dir {} is unusable: {}",
                dir.display(),
                e.kind()
            ))
        })?;
        let real = path
            .canonicalize()
            .map_err(|e| Refused(e.kind().to_string()))?;
        if real.starts_with(&dir) {
            Ok(real)
        } else {
            Err(Refused(format!(
                "it is outside the secrets dir {}",
                dir.display()
            )))
        }
    }
}

/// A resolved secret (one type for every secret in conclave; it never prints).
pub use conclave_types::Secret;

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<Self, NotAReference> {
        if let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
            return if valid_env_name(inner) {
                Ok(SecretRef::Env(inner.to_owned()))
            } else {
                Err(NotAReference::BadEnvName)
            };
        }
        if let Some(path) = text.strip_prefix("file:") {
            let path = PathBuf::from(path);
            return if path.is_absolute() {
                Ok(SecretRef::File(path))
            } else {
                Err(NotAReference::RelativePath)
            };
        }
        Err(NotAReference::Inline)
    }

    /// Read the secret on this node, within `policy`. Blocking (a file read): call it off
    /// the async runtime.
    pub fn resolve(&self, policy: &SecretPolicy) -> Result<Secret, ResolveError> {
        let not_allowed = |why: Refused| ResolveError::NotAllowed {
            reference: self.to_string(),
            why: why.0,
        };
        let value = match self {
            SecretRef::Env(name) => {
                policy.allows_env(name).map_err(not_allowed)?;
                std::env::var(name).map_err(|_| ResolveError::EnvMissing(name.clone()))?
            }
            SecretRef::File(path) => {
                let real = policy.allows_file(path).map_err(not_allowed)?;
                read_secret_file(&real).map_err(|reason| ResolveError::File {
                    path: path.display().to_string(),
                    reason: reason.0,
                })?
            }
        };
        if value.is_empty() {
            return Err(ResolveError::Empty(self.to_string()));
        }
        Ok(Secret::new(value))
    }
}

/// A regular file's text, at most [`MAX_SECRET_BYTES`]. Opened without following a symlink
/// and without blocking (a FIFO would otherwise hold the reader until a writer comes).
fn read_secret_file(path: &Path) -> Result<String, Refused> {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    const O_NOFOLLOW: i32 = 0o400000;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK | O_NOFOLLOW)
        .open(path)
        .map_err(|e| Refused(e.kind().to_string()))?;
    let meta = file.metadata().map_err(|e| Refused(e.kind().to_string()))?;
    if !meta.is_file() {
        return Err(Refused("not a regular file".into()));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(Refused(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Refused(e.kind().to_string()))?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(Refused(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${{{name}}}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_inline_secrets_are_refused_without_echo() {
        assert_eq!(
            SecretRef::parse("${GW_SECRET}"),
            Ok(SecretRef::Env("GW_SECRET".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/secret"),
            Ok(SecretRef::File("/run/secret".into()))
        );
        let err = SecretRef::parse("hunter2-very-secret").unwrap_err();
        assert_eq!(err, NotAReference::Inline);
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(SecretRef::parse("${1X}"), Err(NotAReference::BadEnvName));
        assert_eq!(
            SecretRef::parse("file:rel"),
            Err(NotAReference::RelativePath)
        );
    }

    #[test]
    fn resolved_secrets_do_not_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let policy = SecretPolicy {
            env: vec![],
            dir: Some(dir.path().to_owned()),
        };
        let secret = SecretRef::File(file).resolve(&policy).unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let policy = SecretPolicy {
            env: vec!["CONCLAVE_TEST_SURELY_*".into()],
            dir: None,
        };
        let missing = SecretRef::Env("CONCLAVE_TEST_SURELY_UNSET".into()).resolve(&policy);
        assert!(
            matches!(missing, Err(ResolveError::NotAllowed { .. })),
            "{missing:?}"
        );
        let policy = SecretPolicy {
            env: vec!["SURELY_UNSET_*".into()],
            dir: None,
        };
        let missing = SecretRef::Env("SURELY_UNSET_X".into()).resolve(&policy);
        assert!(
            matches!(missing, Err(ResolveError::EnvMissing(_))),
            "{missing:?}"
        );
    }

    #[test]
    fn references_outside_the_local_policy_never_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        let outside = dir.path().join("other");
        std::fs::write(&outside, "private").unwrap();
        std::os::unix::fs::symlink(&outside, secrets.join("link")).unwrap();
        std::fs::write(
            secrets.join("big"),
            vec![b'x'; MAX_SECRET_BYTES as usize + 1],
        )
        .unwrap();
        let fifo = secrets.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let policy = SecretPolicy {
            env: vec!["PATH".into()],
            dir: Some(secrets.clone()),
        };
        let refused = |r: SecretRef| {
            let e = r.resolve(&policy).expect_err("refused");
            assert!(!e.to_string().contains("private"), "{e}");
            e
        };
        // The cluster token and the agent's own settings, even when listed.
        let all = SecretPolicy {
            env: vec!["*".into()],
            dir: None,
        };
        assert!(matches!(
            SecretRef::Env("CONCLAVE_CLUSTER_TOKEN".into()).resolve(&all),
            Err(ResolveError::NotAllowed { .. })
        ));
        assert!(matches!(
            refused(SecretRef::Env("HOME".into())),
            ResolveError::NotAllowed { .. }
        ));
        assert!(matches!(
            refused(SecretRef::File(outside.clone())),
            ResolveError::NotAllowed { .. }
        ));
        assert!(matches!(
            refused(SecretRef::File("/dev/zero".into())),
            ResolveError::NotAllowed { .. }
        ));
        // A symlink inside the dir that leads out of it.
        assert!(matches!(
            refused(SecretRef::File(secrets.join("link"))),
            ResolveError::NotAllowed { .. }
        ));
        // A FIFO inside the dir: refused at once, not waited on.
        let started = std::time::Instant::now();
        assert!(matches!(
            refused(SecretRef::File(fifo)),
            ResolveError::File { .. }
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(
            refused(SecretRef::File(secrets.join("big"))),
            ResolveError::File { .. }
        ));
        // Without a dir, file: is off.
        let no_dir = SecretPolicy::default();
        assert!(matches!(
            SecretRef::File(outside).resolve(&no_dir),
            Err(ResolveError::NotAllowed { .. })
        ));
    }
}
