//! A setting an operator must fix, named: what is wrong and where (`check "web"`,
//! `gossip.interval_ms`), for the validators of every crate's configuration section.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The setting or section, as the operator wrote it.
    pub what: String,
    /// What is wrong with it, and how to fix it where that is not obvious.
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.problem)
    }
}

impl std::error::Error for InvalidSetting {}
