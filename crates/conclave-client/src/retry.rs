//! The retry contract: which failures a client may repeat, where, and for how long.
//!
//! A request is repeated only when it certainly did not take effect, or when repeating it is
//! harmless:
//! - nothing accepted the connection (the agent is down or restarting): never sent;
//! - `503 no_leader`, `503 no_quorum`, `503 not_ready`: the cluster refused before doing
//!   anything (an election, a leader cut off from its voters, a node catching up);
//! - a read (GET) that timed out or met `503 unavailable`: reads change nothing.
//!
//! A write that timed out or answered `503 indeterminate` is never repeated: it may have been
//! applied, and only the caller knows whether applying it twice is harmless (a
//! compare-and-swap makes it so). Each repeat goes to the next endpoint, after a backoff that
//! doubles from 25 ms to 500 ms, until the budget is spent. When every endpoint in turn refused
//! the connection there is no agent to wait for, and the refusal is returned at once.
//!
//! The decision is a pure function ([`decide`]), unit-tested below; `Client::send` carries it
//! out.

use std::time::Duration;

use conclave_types::ErrorCode;

/// How long a client keeps repeating a request; `Client::with_retry` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most time spent on one request, repeats and backoff included.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(10),
        }
    }
}

/// How one attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused: the request was never sent.
    Refused,
    /// Sent, no answer in time.
    TimedOut,
    /// The agent answered with an error.
    Answered { status: u16, code: ErrorCode },
    /// Anything else (a broken connection mid-request, a bad URL).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again on the next endpoint after this pause.
    Retry {
        after: Duration,
    },
    GiveUp,
}

/// Whether `failure` certainly left nothing done, or repeating the request is harmless.
pub fn repeatable(failure: Failure, idempotent: bool) -> bool {
    match failure {
        Failure::Refused => true,
        Failure::Answered { status: 503, code } => match code {
            ErrorCode::NoLeader | ErrorCode::NoQuorum | ErrorCode::NotReady => true,
            ErrorCode::Unavailable => idempotent,
            _ => false,
        },
        Failure::TimedOut => idempotent,
        Failure::Answered { .. } | Failure::Other => false,
    }
}

/// What to do after attempt number `attempt` (0 for the first) failed with `failure`, having
/// spent `elapsed`, with `refused_in_a_row` consecutive refused connections over `endpoints`.
pub fn decide(
    policy: &RetryPolicy,
    failure: Failure,
    idempotent: bool,
    attempt: u32,
    elapsed: Duration,
    refused_in_a_row: usize,
    endpoints: usize,
) -> Decision {
    if !repeatable(failure, idempotent) {
        return Decision::GiveUp;
    }
    if failure == Failure::Refused && refused_in_a_row >= endpoints {
        return Decision::GiveUp;
    }
    // A refused connection costs nothing: the next endpoint is tried at once.
    let after = if failure == Failure::Refused {
        Duration::ZERO
    } else {
        backoff(attempt)
    };
    if elapsed + after >= policy.budget {
        return Decision::GiveUp;
    }
    Decision::Retry { after }
}

/// 25 ms, doubling, at most 500 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(25u64.saturating_mul(1 << attempt.min(5)).min(500))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        budget: Duration::from_secs(10),
    };

    fn answered(status: u16, code: ErrorCode) -> Failure {
        Failure::Answered { status, code }
    }

    #[test]
    fn only_what_certainly_did_nothing_is_repeated_for_a_write() {
        for code in [
            ErrorCode::NoLeader,
            ErrorCode::NoQuorum,
            ErrorCode::NotReady,
        ] {
            assert!(repeatable(answered(503, code), false), "{code}");
        }
        assert!(repeatable(Failure::Refused, false));
        for f in [
            answered(503, ErrorCode::Indeterminate),
            answered(503, ErrorCode::Unavailable),
            Failure::TimedOut,
            Failure::Other,
            answered(409, ErrorCode::CasConflict),
            answered(400, ErrorCode::BadRequest),
            answered(500, ErrorCode::NoLeader),
        ] {
            assert!(!repeatable(f, false), "{f:?}");
        }
    }

    #[test]
    fn a_read_is_also_repeated_after_a_timeout_or_unavailable() {
        assert!(repeatable(Failure::TimedOut, true));
        assert!(repeatable(answered(503, ErrorCode::Unavailable), true));
        assert!(!repeatable(answered(404, ErrorCode::KeyNotFound), true));
        assert!(!repeatable(answered(503, ErrorCode::Indeterminate), true));
    }

    #[test]
    fn backoff_doubles_up_to_half_a_second_within_the_budget() {
        let d = |attempt, elapsed| {
            decide(
                &P,
                answered(503, ErrorCode::NoLeader),
                false,
                attempt,
                Duration::from_millis(elapsed),
                0,
                3,
            )
        };
        let ms = |m| Decision::Retry {
            after: Duration::from_millis(m),
        };
        assert_eq!(d(0, 0), ms(25));
        assert_eq!(d(1, 0), ms(50));
        assert_eq!(d(4, 0), ms(400));
        assert_eq!(d(5, 0), ms(500));
        assert_eq!(d(30, 0), ms(500));
        assert_eq!(d(3, 9_700), ms(200));
        assert_eq!(d(3, 9_800), Decision::GiveUp);
    }

    #[test]
    fn refused_connections_move_on_at_once_until_every_endpoint_refused() {
        let d = |in_a_row| decide(&P, Failure::Refused, false, 0, Duration::ZERO, in_a_row, 3);
        assert_eq!(
            d(1),
            Decision::Retry {
                after: Duration::ZERO
            }
        );
        assert_eq!(
            d(2),
            Decision::Retry {
                after: Duration::ZERO
            }
        );
        assert_eq!(d(3), Decision::GiveUp);
        // One endpoint that refuses: no agent, say so at once.
        assert_eq!(
            decide(&P, Failure::Refused, true, 0, Duration::ZERO, 1, 1),
            Decision::GiveUp
        );
    }
}
