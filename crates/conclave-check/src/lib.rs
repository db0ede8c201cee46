//! Is a recorded history linearizable? The fault suite's verdict.
//!
//! Clients of a key-value store record every operation with the time it was invoked and the
//! time its answer came (`None` when no answer came, or the answer was "indeterminate").
//! The history is linearizable when every operation can be placed at one instant between its
//! invocation and its answer such that the sequence, run against a single register per key,
//! gives exactly the answers the clients saw. An operation whose outcome is unknown may take
//! effect at any instant after its invocation, or never.
//!
//! The search is Wing and Gong's, with Lowe's memoisation (as Knossos' `wgl` and Porcupine
//! implement it): walk the events in time order, linearize a call as soon as the model
//! allows, backtrack when a return is reached whose call was not linearized, and never
//! revisit a (set of linearized operations, register state) pair known to fail. An
//! operation with an unknown outcome has no return before the end of time, so the search
//! may linearize it anywhere after its call, or leave it out (it never took effect) — which
//! keeps such operations from multiplying the configurations searched. Keys are
//! independent registers, so each key is checked alone (P-compositionality), which keeps the
//! search small.
//!
//! Why written here: the well-kept checkers are Go (Porcupine) and Clojure (Knossos); the
//! Rust ones found (e.g. `todc-utils`) take deterministic models only, and an indeterminate
//! write is the case a fault suite exists for. It is small, and tested below on histories
//! with known verdicts.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A register value. Writers make every value unique, so a read names the write it saw.
pub type Value = u64;

/// What a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Read,
    Write(Value),
    /// Set `to` only if the register holds `from` (`None`: the key is absent).
    Cas {
        from: Option<Value>,
        to: Value,
    },
}

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A read's value (`None`: absent).
    Read(Option<Value>),
    /// A write was acknowledged.
    Written,
    /// A compare-and-swap was applied (`true`) or refused because the value differed.
    Cas(bool),
    /// No certain answer (timeout, indeterminate): it may or may not have taken effect.
    Unknown,
}

/// One operation of one client, with its times (any monotonic clock, e.g. nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub client: u32,
    pub key: String,
    pub op: Op,
    pub outcome: Outcome,
    pub invoked: u64,
    /// When the answer came; `None` for [`Outcome::Unknown`] (it may take effect any time).
    pub completed: Option<u64>,
}

/// Why a history is not linearizable (or could not be decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// No order explains this key's history; `op` is the answer that stopped the longest
    /// order the search found.
    NotLinearizable { key: String, op: Record },
    /// A record contradicts itself (an answer before its invocation, an outcome of another
    /// kind of operation).
    Malformed { record: Record, why: &'static str },
    /// The search exceeded `steps` for this key.
    GaveUp { key: String, steps: u64 },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::NotLinearizable { key, op } => write!(
                f,
                "key {key:?} is not linearizable: no order explains client {}'s {:?} answered {:?} (invoked at {}, answered at {:?})",
                op.client, op.op, op.outcome, op.invoked, op.completed
            ),
            Violation::Malformed { record, why } => write!(f, "malformed record {record:?}: {why}"),
            Violation::GaveUp { key, steps } => {
                write!(f, "gave up on key {key:?} after {steps} search steps")
            }
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ops: usize,
    pub keys: usize,
    /// Search steps taken over all keys.
    pub steps: u64,
    pub violation: Option<Violation>,
}

impl Verdict {
    pub fn linearizable(&self) -> bool {
        self.violation.is_none()
    }
}

/// Most search steps per key before [`Violation::GaveUp`].
pub const DEFAULT_STEP_LIMIT: u64 = 50_000_000;

/// Check `history` (in any order), each key as its own register that starts absent.
pub fn check(history: &[Record]) -> Verdict {
    check_with_limit(history, DEFAULT_STEP_LIMIT)
}

pub fn check_with_limit(history: &[Record], step_limit: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in history {
        if let Some(why) = malformed(r) {
            return Verdict {
                ops: history.len(),
                keys: 0,
                steps: 0,
                violation: Some(Violation::Malformed {
                    record: r.clone(),
                    why,
                }),
            };
        }
        // A read nobody answered constrains nothing.
        if r.op == Op::Read && r.outcome == Outcome::Unknown {
            continue;
        }
        by_key.entry(&r.key).or_default().push(r);
    }
    let keys = by_key.len();
    let mut steps = 0;
    for records in by_key.into_values() {
        let (taken, result) = search(&records, step_limit);
        steps += taken;
        if let Err(violation) = result {
            return Verdict {
                ops: history.len(),
                keys,
                steps,
                violation: Some(violation),
            };
        }
    }
    Verdict {
        ops: history.len(),
        keys,
        steps,
        violation: None,
    }
}

fn malformed(r: &Record) -> Option<&'static str> {
    let matching = matches!(
        (r.op, r.outcome),
        (_, Outcome::Unknown)
            | (Op::Read, Outcome::Read(_))
            | (Op::Write(_), Outcome::Written)
            | (Op::Cas { .. }, Outcome::Cas(_))
    );
    if !matching {
        return Some("the outcome belongs to another kind of operation");
    }
    match r.completed {
        Some(c) if c < r.invoked => Some("answered before it was invoked"),
        None if r.outcome != Outcome::Unknown => Some("a certain outcome needs an answer time"),
        _ => None,
    }
}

/// The register's possible states after `op` answered `outcome` on `state` (none: illegal).
/// For an unknown outcome this is the state if it took effect; that it may never take effect
/// is the search's business (it need not linearize such an operation at all).
fn successors(state: Option<Value>, op: Op, outcome: Outcome) -> Vec<Option<Value>> {
    match (op, outcome) {
        (Op::Read, Outcome::Read(v)) => {
            if v == state {
                vec![state]
            } else {
                vec![]
            }
        }
        (Op::Write(v), Outcome::Written) => vec![Some(v)],
        (Op::Cas { from, to }, Outcome::Cas(true)) => {
            if state == from {
                vec![Some(to)]
            } else {
                vec![]
            }
        }
        (Op::Cas { from, .. }, Outcome::Cas(false)) => {
            if state != from {
                vec![state]
            } else {
                vec![]
            }
        }
        (Op::Write(v), Outcome::Unknown) => vec![Some(v)],
        (Op::Cas { from, to }, Outcome::Unknown) => {
            if state == from {
                vec![Some(to)]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

/// One event of the time-ordered list: an operation's call or its return.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// The event list as a doubly linked list over a vector; index 0 is the head sentinel.
struct Events {
    ev: Vec<Event>,
    /// For each operation, the indices of its call and return events.
    of_op: Vec<(usize, usize)>,
}

impl Events {
    fn new(records: &[&Record]) -> Self {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(records.len() * 2);
        for (i, r) in records.iter().enumerate() {
            // Calls sort before returns at the same instant: they count as concurrent.
            order.push((r.invoked, false, i));
            order.push((r.completed.unwrap_or(u64::MAX), true, i));
        }
        order.sort();
        let n = order.len();
        let mut ev = Vec::with_capacity(n + 1);
        ev.push(Event {
            op: usize::MAX,
            is_call: false,
            prev: 0,
            next: if n == 0 { usize::MAX } else { 1 },
        });
        let mut of_op = vec![(0, 0); records.len()];
        for (k, &(_, is_return, op)) in order.iter().enumerate() {
            let idx = k + 1;
            ev.push(Event {
                op,
                is_call: !is_return,
                prev: idx - 1,
                next: if idx == n { usize::MAX } else { idx + 1 },
            });
            if is_return {
                of_op[op].1 = idx;
            } else {
                of_op[op].0 = idx;
            }
        }
        Self { ev, of_op }
    }

    fn first(&self) -> usize {
        self.ev[0].next
    }

    fn unlink(&mut self, i: usize) {
        let Event { prev, next, .. } = self.ev[i];
        self.ev[prev].next = next;
        if next != usize::MAX {
            self.ev[next].prev = prev;
        }
    }

    /// Put `i` back where it was; events must be relinked in the reverse order of unlinking.
    fn relink(&mut self, i: usize) {
        let Event { prev, next, .. } = self.ev[i];
        self.ev[prev].next = i;
        if next != usize::MAX {
            self.ev[next].prev = i;
        }
    }

    fn lift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.relink(ret);
        self.relink(call);
    }
}

/// Wing–Gong–Lowe over one key's records: the steps taken and the verdict.
fn search(records: &[&Record], step_limit: u64) -> (u64, Result<(), Violation>) {
    let mut events = Events::new(records);
    let mut linearized = vec![0u64; records.len().div_ceil(64)];
    // Configurations known to lead nowhere: linearized set → register states tried.
    let mut seen: HashMap<Vec<u64>, Vec<Option<Value>>> = HashMap::new();
    // (operation, state before it, which successor was taken)
    let mut stack: Vec<(usize, Option<Value>, usize)> = Vec::new();
    let mut state: Option<Value> = None;
    let mut entry = events.first();
    let mut first_alternative = 0;
    let mut steps = 0u64;
    // The operation that stopped the longest partial linearization, for the report.
    let mut deepest = (0, usize::MAX);
    while entry != usize::MAX {
        steps += 1;
        if steps > step_limit {
            return (
                steps,
                Err(Violation::GaveUp {
                    key: records[0].key.clone(),
                    steps: step_limit,
                }),
            );
        }
        let Event { op, is_call, .. } = events.ev[entry];
        if is_call {
            let r = records[op];
            let next_states = successors(state, r.op, r.outcome);
            let mut taken = None;
            linearized[op / 64] |= 1 << (op % 64);
            for (alt, &next) in next_states.iter().enumerate().skip(first_alternative) {
                let known = seen
                    .get(linearized.as_slice())
                    .is_some_and(|states| states.contains(&next));
                if !known {
                    seen.entry(linearized.clone()).or_default().push(next);
                    taken = Some((alt, next));
                    break;
                }
            }
            first_alternative = 0;
            match taken {
                Some((alt, next)) => {
                    stack.push((op, state, alt));
                    state = next;
                    events.lift(op);
                    entry = events.first();
                }
                None => {
                    linearized[op / 64] &= !(1 << (op % 64));
                    entry = events.ev[entry].next;
                }
            }
        } else {
            if records[op].completed.is_none() {
                // Returns without an answer sort last, so every operation that was answered
                // is linearized: the unknown ones left never took effect.
                return (steps, Ok(()));
            }
            if deepest.1 == usize::MAX || stack.len() > deepest.0 {
                deepest = (stack.len(), op);
            }
            // A return whose call is not linearized yet: undo the latest choice.
            let Some((undo, before, alt)) = stack.pop() else {
                let stuck = records[deepest.1];
                return (
                    steps,
                    Err(Violation::NotLinearizable {
                        key: stuck.key.clone(),
                        op: stuck.clone(),
                    }),
                );
            };
            state = before;
            linearized[undo / 64] &= !(1 << (undo % 64));
            events.unlift(undo);
            entry = events.of_op[undo].0;
            first_alternative = alt + 1;
        }
    }
    (steps, Ok(()))
}

#[cfg(test)]
mod tests;
