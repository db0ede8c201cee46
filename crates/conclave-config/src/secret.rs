//! Secret references: how a document names a secret without containing it.
//!
//! A document holds `"${ENV_NAME}"` (an environment variable of the agent that needs it) or
//! `"file:/absolute/path"` (a file on that node). The cluster stores and shows only the
//! reference; the value is read on the node that uses it, when it uses it, and is never
//! logged, returned or put in an error: [`Secret`]'s `Debug` prints a placeholder and errors
//! name the reference, not the value.

use std::fmt;
use std::path::PathBuf;

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

    /// Read the secret on this node.
    pub fn resolve(&self) -> Result<Secret, ResolveError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| ResolveError::EnvMissing(name.clone()))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ResolveError::File {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(ResolveError::Empty(self.to_string()));
        }
        Ok(Secret::new(value))
    }
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
        let dir = std::env::temp_dir().join(format!("conclave-secret-{}", std::process::id()));
        std::fs::write(&dir, "s3cr3t\n").unwrap();
        let secret = SecretRef::File(dir.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        std::fs::remove_file(&dir).unwrap();
        let missing = SecretRef::Env("CONCLAVE_TEST_SURELY_UNSET".into()).resolve();
        assert!(matches!(missing, Err(ResolveError::EnvMissing(_))));
    }
}
