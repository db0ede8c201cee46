//! How client commands report: JSON when `-o json` is given (errors too, so a script parses
//! one format), else human text; and the exit code for each kind of failure.

use std::io::Write;
use std::process::ExitCode;

use conclave_client::ClientError;

/// Print a line to stdout. A closed stdout (e.g. `conclave status | head -1`) is not an
/// error worth a panic: the reader has what it wanted.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Bytes to stdout as they are (a value, a rendered configuration).
pub fn out_raw(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// Pretty JSON to stdout.
pub fn print_json(v: &serde_json::Value) {
    out!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// `s` as one shell word (quoted when it holds anything but plain characters).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether the command line asks for JSON output (`-o json`, `--output json`,
/// `--output=json`, `-ojson`), looking no further than a `--` (what follows is a child's).
pub fn json_requested<I: IntoIterator<Item = String>>(args: I) -> bool {
    let mut prev_is_flag = false;
    for arg in args {
        if arg == "--" {
            return false;
        }
        if (prev_is_flag && arg == "json") || arg == "--output=json" || arg == "-ojson" {
            return true;
        }
        prev_is_flag = arg == "-o" || arg == "--output";
    }
    false
}

/// The exit code for a failed client command: 2 for a usage error, else 1.
pub fn exit_code(e: &ClientError) -> ExitCode {
    match e {
        ClientError::Usage(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// The error as the API shapes errors, `{"error": {"code", "message", "hint"}}`, with the
/// HTTP status when an agent answered; CLI-side failures have codes of their own.
pub fn error_json(e: &ClientError) -> serde_json::Value {
    let (code, status, message, hint) = match e {
        ClientError::Api(a) => (
            a.code.as_str(),
            Some(a.status),
            a.message.clone(),
            a.hint.clone().unwrap_or_default(),
        ),
        ClientError::NoAgent(addr) => (
            "no_agent",
            None,
            e.to_string(),
            format!("start one with `conclave agent`, or point --addr elsewhere (now {addr})"),
        ),
        ClientError::TimedOut(addr) => (
            "timed_out",
            None,
            e.to_string(),
            format!(
                "the agent at {addr} may be overloaded or cut off; a write may or may not have been applied: read before retrying"
            ),
        ),
        ClientError::Usage(_) => ("usage", None, e.to_string(), "see --help".into()),
        ClientError::Local(_) => ("failed", None, e.to_string(), String::new()),
    };
    let mut error = serde_json::json!({ "code": code, "message": message, "hint": hint });
    if let Some(s) = status {
        error["status"] = s.into();
    }
    if let ClientError::Api(a) = e
        && !a.conflicts.is_empty()
    {
        error["conflicts"] = serde_json::to_value(&a.conflicts).unwrap_or_default();
    }
    serde_json::json!({ "error": error })
}

/// Report a failed client command: JSON on stdout when asked for, else `error: ...` on stderr.
pub fn report(e: &ClientError, json: bool) -> ExitCode {
    if json {
        let text = serde_json::to_string_pretty(&error_json(e)).unwrap_or_default();
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{text}\n").as_bytes());
    } else {
        eprintln!("error: {e}");
    }
    exit_code(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_client::ApiError;
    use conclave_types::ErrorCode;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn json_is_asked_for_in_every_spelling_but_not_after_a_double_dash() {
        for yes in [
            "kv get k -o json",
            "-o json status",
            "status --output json",
            "status --output=json",
            "status -ojson",
        ] {
            assert!(json_requested(args(yes)), "{yes}");
        }
        for no in [
            "kv get k",
            "kv get json",
            "elect e -- cmd -o json",
            "status -o human",
        ] {
            assert!(!json_requested(args(no)), "{no}");
        }
    }

    #[test]
    fn errors_keep_the_apis_shape_and_codes() {
        let e = ClientError::Api(ApiError {
            status: 404,
            code: ErrorCode::KeyNotFound,
            message: "key \"k\" does not exist".into(),
            hint: Some("h".into()),
            conflicts: Vec::new(),
        });
        let v = error_json(&e);
        assert_eq!(v["error"]["code"], "key_not_found");
        assert_eq!(v["error"]["status"], 404);
        assert_eq!(v["error"]["hint"], "h");
        assert_eq!(exit_code(&e), ExitCode::FAILURE);
        let u = ClientError::Usage("bad".into());
        assert_eq!(error_json(&u)["error"]["code"], "usage");
        assert_eq!(exit_code(&u), ExitCode::from(2));
    }
}
