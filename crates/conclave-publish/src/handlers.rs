//! `[[event_handler]]`: programs run on membership events, as Serf's event handlers are:
//! `events = ["member-join", "member-failed"]`, `exec = [...]`. The member arrives in
//! `CONCLAVE_*` variables and, as a `MemberEvent` JSON, on stdin.
//!
//! Events are `conclave_membership::events::diff` of consecutive views (the same as
//! `GET /v1/members/watch`). Each handler runs its events one at a time, in order; a
//! handler that falls more than [`QUEUE`] events behind drops the newest and says so.

use std::time::{Duration, SystemTime};

use conclave_hook::HookConfig;
use conclave_membership::Membership;
use conclave_types::InvalidSetting;
use conclave_types::member_events::{MemberEvent, MemberEventKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events a handler may have waiting.
pub const QUEUE: usize = 1024;

/// One `[[event_handler]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventHandlerConfig {
    /// `member-join`, `member-update`, `member-suspect`, `member-failed`, `member-leave`,
    /// `member-reap` (or `join`, `update`, `suspect`, `dead`, `left`, `reaped`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Program and arguments (no shell).
    pub exec: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// More of the agent's environment the program gets, by name (never `CONCLAVE_*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl EventHandlerConfig {
    /// The kinds it runs on, or the entry it does not know.
    pub fn kinds(&self) -> Result<Vec<MemberEventKind>, InvalidSetting> {
        if self.exec.is_empty() {
            return Err(InvalidSetting::new(
                "event_handler.exec",
                "must name a program",
            ));
        }
        if self.events.is_empty() {
            return Ok(MemberEventKind::ALL.to_vec());
        }
        self.events
            .iter()
            .map(|e| {
                MemberEventKind::parse(e).ok_or_else(|| {
                    InvalidSetting::new(
                        "event_handler.events",
                        format!(
                            "{e:?} is not an event; use {}",
                            MemberEventKind::ALL
                                .map(MemberEventKind::serf_name)
                                .join(", ")
                        ),
                    )
                })
            })
            .collect()
    }

    fn hook(&self) -> HookConfig {
        HookConfig {
            exec: Some(self.exec.clone()),
            url: None,
            timeout: self.timeout,
            attempts: 1,
            backoff: Duration::from_secs(1),
            env_passthrough: self.env_passthrough.clone(),
        }
    }
}

/// The variables a handler gets for `event`.
pub fn event_env(event: &MemberEvent) -> Vec<(&'static str, String)> {
    let m = &event.member;
    vec![
        ("CONCLAVE_EVENT", event.kind.serf_name().to_owned()),
        ("CONCLAVE_MEMBER_ID", m.id.to_string()),
        ("CONCLAVE_MEMBER_ROLE", m.role.clone()),
        (
            "CONCLAVE_MEMBER_STATE",
            serde_json::to_value(m.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        ("CONCLAVE_MEMBER_RPC_ADDR", m.rpc_addr.clone()),
        ("CONCLAVE_MEMBER_API_ADDR", m.api_addr.clone()),
        (
            "CONCLAVE_MEMBER_TAGS",
            m.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}

/// The running event handlers, replaced as a whole by [`Handlers::replace`] (a config
/// reload): events seen after the reload go to the new set.
#[derive(Clone)]
pub struct Handlers {
    inner: std::sync::Arc<std::sync::Mutex<(Vec<EventHandlerConfig>, CancellationToken)>>,
    membership: Membership,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Handlers {
    /// Run `handlers` on this agent's membership events until `shutdown`.
    pub fn spawn(
        handlers: Vec<EventHandlerConfig>,
        membership: Membership,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Self, InvalidSetting> {
        let generation = shutdown.child_token();
        spawn(
            handlers.clone(),
            membership.clone(),
            generation.clone(),
            tasks,
        )?;
        Ok(Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new((handlers, generation))),
            membership,
            shutdown,
            tasks: tasks.clone(),
        })
    }

    /// Run exactly `handlers` from now on; `Ok(false)` when they are the ones running. The
    /// old set stops as at shutdown (a program still running for an event is stopped).
    pub fn replace(&self, handlers: Vec<EventHandlerConfig>) -> Result<bool, InvalidSetting> {
        for h in &handlers {
            h.kinds()?;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.0 == handlers {
            return Ok(false);
        }
        inner.1.cancel();
        let generation = self.shutdown.child_token();
        spawn(
            handlers.clone(),
            self.membership.clone(),
            generation.clone(),
            &self.tasks,
        )?;
        *inner = (handlers, generation);
        Ok(true)
    }
}

/// Run `handlers` on this agent's membership events until `shutdown`.
fn spawn(
    handlers: Vec<EventHandlerConfig>,
    membership: Membership,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<(), InvalidSetting> {
    if handlers.is_empty() {
        return Ok(());
    }
    let mut queues = Vec::new();
    for (i, handler) in handlers.into_iter().enumerate() {
        let kinds = handler.kinds()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(run_handler(i, handler, rx, shutdown.clone()));
        queues.push((i, kinds, tx));
    }
    tasks.spawn(async move {
        let mut views = membership.subscribe();
        let mut last = views.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = views.changed() => if changed.is_err() { return },
            }
            let now = views.borrow_and_update().clone();
            let seen_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            for event in conclave_membership::events::events(&last.members, &now.members, &seen_at)
            {
                for (i, kinds, tx) in &queues {
                    if kinds.contains(&event.kind) && tx.try_send(event.clone()).is_err() {
                        tracing::warn!(
                            handler = i,
                            event = event.kind.serf_name(),
                            "an event handler is {QUEUE} events behind; this event is dropped"
                        );
                    }
                }
            }
            last = now;
        }
    });
    Ok(())
}

async fn run_handler(
    index: usize,
    handler: EventHandlerConfig,
    mut events: mpsc::Receiver<MemberEvent>,
    shutdown: CancellationToken,
) {
    let hook = handler.hook();
    let what = format!("event_handler[{index}]");
    while let Some(event) = tokio::select! {
        _ = shutdown.cancelled() => None,
        e = events.recv() => e,
    } {
        let env = event_env(&event);
        let body = serde_json::to_value(&event).unwrap_or_default();
        conclave_hook::run(&hook, &what, &env, &body, &shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(events: &[&str]) -> EventHandlerConfig {
        EventHandlerConfig {
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            exec: vec!["/bin/true".into()],
            timeout: default_timeout(),
            env_passthrough: vec![],
        }
    }

    #[test]
    fn events_are_named_as_serf_names_them_or_as_conclave_does() {
        assert_eq!(
            handler(&["member-failed", "join"]).kinds().unwrap(),
            vec![MemberEventKind::Dead, MemberEventKind::Join]
        );
        assert_eq!(handler(&[]).kinds().unwrap().len(), 6);
        let e = handler(&["member-fail"]).kinds().unwrap_err();
        assert!(e.to_string().contains("member-failed"), "{e}");
        let mut no_exec = handler(&[]);
        no_exec.exec.clear();
        assert!(no_exec.kinds().is_err());
    }
}
