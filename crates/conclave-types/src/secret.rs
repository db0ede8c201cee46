//! A secret value (the cluster token, a resolved OAuth2 client secret) that cannot be
//! printed by accident: `Debug`, `Display` and `Serialize` all show `<redacted>`. The one way
//! to the value is [`Secret::expose`], which the code that uses it calls by name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every rendering of a secret shows.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that uses it (an HMAC key, a token request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serialized redacted: a configuration printed or sent anywhere never carries the value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rendering_shows_the_value() {
        let s = Secret::new("hunter2");
        let wrapped = Some(s.clone());
        for text in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{wrapped:?}"),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains(REDACTED), "{text}");
        }
        assert_eq!(s.expose(), "hunter2");
        let back: Secret = serde_json::from_str("\"v\"").unwrap();
        assert_eq!(back.expose(), "v");
    }
}
