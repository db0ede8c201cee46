//! Hooks: a program or a URL run when something this agent follows has changed (a peer
//! list, a configuration document, a role), with retries and backoff. Shared by the peer
//! sinks, the configuration sync and the roles.
//!
//! A crate of its own so that the roles and the peer publishing, which both run hooks, do
//! not depend on each other.

use std::time::{Duration, SystemTime};

use conclave_types::HookResult;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// A hook: `exec` (no shell; details in environment variables, and the JSON a `url` hook
/// would get on stdin) or `url` (a JSON POST).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Program and arguments (no shell); what changed arrives in `CONCLAVE_*` variables.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// POST a JSON description of the change here; 2xx is success.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before giving up on one publication.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First retry delay; doubles on each retry.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// More of the agent's environment variables the program gets, by name (never the
    /// agent's own `CONCLAVE_*` settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Run `hook` (retrying with backoff); `what` names it in logs. `shutdown` ends the retries,
/// never an attempt in progress.
pub async fn run(
    hook: &HookConfig,
    what: &str,
    env: &[(&str, String)],
    body: &serde_json::Value,
    shutdown: &CancellationToken,
) -> HookResult {
    let never = CancellationToken::new();
    run_attempts(
        hook,
        what,
        env,
        body,
        shutdown,
        &Stop::new(&never, Duration::ZERO),
    )
    .await
}

/// Run `hook` as [`run`] does until `stop` is cancelled; then the attempt in progress is
/// stopped (an `exec` hook gets SIGTERM, then SIGKILL once `grace` has passed) and no retry
/// follows. For a hook that may still be running when what it serves ends (a role's
/// `on_acquire` when the tenure ends).
pub async fn run_until(
    hook: &HookConfig,
    what: &str,
    env: &[(&str, String)],
    body: &serde_json::Value,
    stop: &CancellationToken,
    grace: Duration,
) -> HookResult {
    run_attempts(hook, what, env, body, stop, &Stop::new(stop, grace)).await
}

/// When an attempt in progress must be stopped, and how long it may take to exit.
struct Stop<'a> {
    token: &'a CancellationToken,
    grace: Duration,
}

impl<'a> Stop<'a> {
    fn new(token: &'a CancellationToken, grace: Duration) -> Self {
        Self { token, grace }
    }
}

async fn run_attempts(
    hook: &HookConfig,
    what: &str,
    env: &[(&str, String)],
    body: &serde_json::Value,
    shutdown: &CancellationToken,
    stop: &Stop<'_>,
) -> HookResult {
    let mut delay = hook.backoff;
    let mut detail = String::new();
    for attempt in 1..=hook.attempts.max(1) {
        match tokio::time::timeout(hook.timeout, once(hook, env, body, stop)).await {
            Ok(Ok(d)) => {
                tracing::info!(hook = %what, attempt, "hook ran");
                return HookResult {
                    at: now_rfc3339(),
                    ok: true,
                    detail: d,
                    attempts: attempt,
                };
            }
            Ok(Err(HookError::Stopped)) => {
                tracing::info!(hook = %what, attempt, "hook stopped");
                return HookResult {
                    at: now_rfc3339(),
                    ok: false,
                    detail: HookError::Stopped.to_string(),
                    attempts: attempt,
                };
            }
            Ok(Err(e)) => detail = e.to_string(),
            Err(_) => detail = format!("timed out after {:?}", hook.timeout),
        }
        tracing::warn!(hook = %what, attempt, %detail, "hook failed");
        if attempt < hook.attempts {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    }
    HookResult {
        at: now_rfc3339(),
        ok: false,
        detail,
        attempts: hook.attempts,
    }
}

/// Run `hook` as [`run`] does, but all attempts together within `budget`: a hook still
/// running then is stopped (its process killed) and reported as failed.
pub async fn run_within(
    hook: &HookConfig,
    what: &str,
    env: &[(&str, String)],
    body: &serde_json::Value,
    budget: Duration,
) -> HookResult {
    let never = CancellationToken::new();
    let attempts = run(hook, what, env, body, &never);
    match tokio::time::timeout(budget, attempts).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(hook = %what, ?budget, "hook did not finish in time; stopped");
            HookResult {
                at: now_rfc3339(),
                ok: false,
                detail: format!("did not finish within {budget:?}; stopped"),
                attempts: 1,
            }
        }
    }
}

/// Why one attempt of a hook failed.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("exec is empty")]
    EmptyExec,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited with {status}: {stderr_tail}")]
    Exited {
        program: String,
        status: std::process::ExitStatus,
        stderr_tail: String,
    },
    #[error("POST {url}: {source}")]
    Post { url: String, source: reqwest::Error },
    #[error("POST {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("the hook has neither exec nor url")]
    NoTarget,
    #[error("stopped before it finished (what it ran for has ended)")]
    Stopped,
}

/// Stop a child process politely: SIGTERM, then SIGKILL once `grace` has passed, and reap it.
pub async fn stop_child(child: &mut tokio::process::Child, grace: Duration) {
    // tokio can only SIGKILL; the polite signal goes through kill(2).
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The agent's environment variables a hook keeps: what a program needs to run, nothing
/// else. The agent's own environment holds the cluster token and the secrets that
/// configuration references (`${ENV}`), and a hook must not see them.
const INHERITED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"];

/// The environment a program the agent starts gets: what a program needs to run
/// (`PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TZ`, `TMPDIR`) plus the variables an
/// operator passes through by name, never a `CONCLAVE_*` one (the cluster token is one).
/// Hooks and exec health checks clear everything else.
pub fn child_env(passthrough: &[String]) -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            INHERITED.contains(&k.as_str())
                || k.starts_with("LC_")
                || (!k.starts_with("CONCLAVE_") && passthrough.iter().any(|p| p == k))
        })
        .collect()
}

/// One attempt: what it did, or why it failed.
async fn once(
    hook: &HookConfig,
    env: &[(&str, String)],
    body: &serde_json::Value,
    stop: &Stop<'_>,
) -> Result<String, HookError> {
    if let Some(argv) = &hook.exec {
        let (program, args) = argv.split_first().ok_or(HookError::EmptyExec)?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(child_env(&hook.env_passthrough))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HookError::Spawn {
                program: program.clone(),
                source,
            })?;
        // The same JSON a `url` hook is sent, on stdin; written aside, so a program that
        // never reads it neither blocks nor fails.
        if let Some(mut stdin) = child.stdin.take() {
            let input = serde_json::to_vec(body).unwrap_or_default();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&input).await;
            });
        }
        let mut stderr = child.stderr.take();
        let finished = tokio::select! {
            done = async {
                let mut tail = Vec::new();
                if let Some(e) = stderr.as_mut() {
                    let _ = e.read_to_end(&mut tail).await;
                }
                (child.wait().await, tail)
            } => Some(done),
            _ = stop.token.cancelled() => None,
        };
        let Some((status, stderr)) = finished else {
            stop_child(&mut child, stop.grace).await;
            return Err(HookError::Stopped);
        };
        let status = status.map_err(|source| HookError::Spawn {
            program: program.clone(),
            source,
        })?;
        if status.success() {
            Ok(format!("{program} exited 0"))
        } else {
            let stderr = String::from_utf8_lossy(&stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(HookError::Exited {
                program: program.clone(),
                status,
                stderr_tail: tail.trim().to_owned(),
            })
        }
    } else if let Some(url) = &hook.url {
        let resp = reqwest::Client::new()
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|source| HookError::Post {
                url: url.clone(),
                source,
            })?;
        if resp.status().is_success() {
            Ok(format!("POST {url}: {}", resp.status()))
        } else {
            Err(HookError::Status {
                url: url.clone(),
                status: resp.status(),
            })
        }
    } else {
        Err(HookError::NoTarget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NEVER: std::sync::LazyLock<CancellationToken> =
        std::sync::LazyLock::new(CancellationToken::new);

    fn no_stop() -> Stop<'static> {
        Stop::new(&NEVER, Duration::ZERO)
    }

    fn exec(argv: &[&str]) -> HookConfig {
        HookConfig {
            exec: Some(argv.iter().map(|s| s.to_string()).collect()),
            url: None,
            timeout: Duration::from_secs(5),
            attempts: 1,
            backoff: Duration::from_millis(1),
            env_passthrough: Vec::new(),
        }
    }

    #[tokio::test]
    async fn each_failure_says_what_failed() {
        let body = serde_json::json!({});
        let e = once(&exec(&[]), &[], &body, &no_stop()).await.unwrap_err();
        assert!(matches!(e, HookError::EmptyExec), "{e}");
        let e = once(&exec(&["/nonexistent/hook"]), &[], &body, &no_stop())
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/hook"),
            "{e}"
        );
        let e = once(
            &exec(&["sh", "-c", "echo broken >&2; exit 3"]),
            &[],
            &body,
            &no_stop(),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().ends_with(": broken"), "{e}");
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        let none = HookConfig {
            exec: None,
            ..exec(&[])
        };
        assert!(matches!(
            once(&none, &[], &body, &no_stop()).await,
            Err(HookError::NoTarget)
        ));
        let ok = run(&exec(&["true"]), "t", &[], &body, &CancellationToken::new()).await;
        assert!(ok.ok && ok.detail == "true exited 0", "{ok:?}");
    }

    /// A hook sees the variables it is given and the few a program needs, never the rest of
    /// the agent's environment (where the cluster token and referenced secrets live). The
    /// test process has CARGO_* variables; none may reach the hook.
    #[tokio::test]
    async fn a_hook_gets_a_cleared_environment() {
        let dir = std::env::temp_dir().join(format!("conclave-hook-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("env");
        let script = format!("env > {}", file.display());
        let body = serde_json::json!({});
        let given = [("CONCLAVE_ROLE", "gw".to_string())];
        once(&exec(&["sh", "-c", &script]), &given, &body, &no_stop())
            .await
            .unwrap();
        let seen = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
        assert!(seen.lines().any(|l| l == "CONCLAVE_ROLE=gw"), "{seen}");
        assert!(seen.lines().any(|l| l.starts_with("PATH=")), "{seen}");
        assert!(
            !seen.contains("CARGO"),
            "the agent's environment leaked: {seen}"
        );
    }

    #[tokio::test]
    async fn a_hook_that_overruns_its_budget_is_stopped_and_reported() {
        let started = std::time::Instant::now();
        let body = serde_json::json!({});
        let result = run_within(
            &exec(&["sleep", "5"]),
            "slow",
            &[],
            &body,
            Duration::from_millis(200),
        )
        .await;
        assert!(
            !result.ok && result.detail.contains("did not finish"),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A hook still running when what it serves ends gets SIGTERM (and the chance to stop
    /// cleanly); one that ignores it is killed once the grace has passed.
    #[tokio::test]
    async fn a_stopped_hook_gets_sigterm_then_sigkill_after_the_grace() {
        let dir = std::env::temp_dir().join(format!("conclave-hook-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("term");
        let body = serde_json::json!({});
        let polite = format!(
            "trap 'kill $!; echo term > {}; exit 0' TERM; sleep 30 & wait",
            marker.display()
        );
        for (script, grace, says_term) in [
            (polite.as_str(), Duration::from_secs(5), true),
            (
                "trap '' TERM; exec sleep 30",
                Duration::from_millis(300),
                false,
            ),
        ] {
            let _ = std::fs::remove_file(&marker);
            let stop = CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                trigger.cancel();
            });
            let started = std::time::Instant::now();
            let result =
                run_until(&exec(&["sh", "-c", script]), "t", &[], &body, &stop, grace).await;
            assert!(
                !result.ok && result.detail.contains("stopped"),
                "{result:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(4), "{script}");
            assert_eq!(marker.exists(), says_term, "{script}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
