//! `POST /v1/agent/reload` (and SIGHUP): what re-reading the agent's configuration changed.

use serde::{Deserialize, Serialize};

/// One part of the configuration that a reload changes while the agent runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LiveSetting {
    /// `[[check]]`
    Check,
    /// `[[publish]]`
    Publish,
    /// `[[event_handler]]`
    EventHandler,
    /// `tags`
    Tags,
    /// `log_level`
    LogLevel,
    /// The TLS files (read again; their paths take a restart).
    TlsFiles,
}

impl LiveSetting {
    /// The setting's key in the config file.
    pub fn key(self) -> &'static str {
        match self {
            LiveSetting::Check => "check",
            LiveSetting::Publish => "publish",
            LiveSetting::EventHandler => "event_handler",
            LiveSetting::Tags => "tags",
            LiveSetting::LogLevel => "log_level",
            LiveSetting::TlsFiles => "tls",
        }
    }
}

/// A live setting that changed, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedChange {
    pub setting: LiveSetting,
    /// What changed, for a person: "started api; stopped peers.json".
    pub detail: String,
}

/// The answer to a reload: nothing in it is a secret (settings by name only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Live settings that changed and are now in effect.
    #[serde(default)]
    pub applied: Vec<AppliedChange>,
    /// Settings (top-level keys) whose new value takes effect only after a restart; the
    /// agent goes on with the old value until then.
    #[serde(default)]
    pub needs_restart: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_empty_and_full() {
        for report in [
            ReloadReport::default(),
            ReloadReport {
                applied: vec![AppliedChange {
                    setting: LiveSetting::Publish,
                    detail: "started peers.json".into(),
                }],
                needs_restart: vec!["raft".into(), "http_addr".into()],
            },
        ] {
            let json = serde_json::to_string(&report).unwrap();
            assert_eq!(serde_json::from_str::<ReloadReport>(&json).unwrap(), report);
        }
        // An older agent's answer without the lists still reads.
        assert_eq!(
            serde_json::from_str::<ReloadReport>("{}").unwrap(),
            ReloadReport::default()
        );
        assert_eq!(
            serde_json::to_value(LiveSetting::EventHandler).unwrap(),
            "event_handler"
        );
    }
}
