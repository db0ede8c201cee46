//! Histories with known verdicts, small enough to check by hand, plus the cases a fault
//! suite produces: unknown outcomes, many keys, long sequential runs.

use super::*;

fn rec(client: u32, op: Op, outcome: Outcome, invoked: u64, completed: Option<u64>) -> Record {
    Record {
        client,
        key: "k".into(),
        op,
        outcome,
        invoked,
        completed,
    }
}

fn w(client: u32, v: Value, t0: u64, t1: u64) -> Record {
    rec(client, Op::Write(v), Outcome::Written, t0, Some(t1))
}

fn r(client: u32, v: Option<Value>, t0: u64, t1: u64) -> Record {
    rec(client, Op::Read, Outcome::Read(v), t0, Some(t1))
}

fn cas(client: u32, from: Option<Value>, to: Value, ok: bool, t0: u64, t1: u64) -> Record {
    rec(client, Op::Cas { from, to }, Outcome::Cas(ok), t0, Some(t1))
}

fn unknown_write(client: u32, v: Value, t0: u64) -> Record {
    rec(client, Op::Write(v), Outcome::Unknown, t0, None)
}

fn ok(history: &[Record]) -> bool {
    check(history).linearizable()
}

#[test]
fn an_empty_history_is_linearizable() {
    let v = check(&[]);
    assert!(v.linearizable());
    assert_eq!((v.ops, v.keys), (0, 0));
}

#[test]
fn sequential_reads_see_the_last_write() {
    assert!(ok(&[r(1, None, 0, 1), w(1, 1, 2, 3), r(2, Some(1), 4, 5)]));
    // A read after a write completed cannot see the older state.
    assert!(!ok(&[w(1, 1, 0, 1), r(2, None, 2, 3)]));
    // A read of a value nobody wrote.
    assert!(!ok(&[w(1, 1, 0, 1), r(2, Some(7), 2, 3)]));
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    // Porcupine's example: the put overlaps both gets.
    let put = w(0, 100, 0, 100);
    assert!(ok(&[
        put.clone(),
        r(1, Some(100), 10, 60),
        r(2, None, 20, 30)
    ]));
    assert!(ok(&[put.clone(), r(1, None, 10, 60)]));
    // Its counterpart: a get that saw the new value ends before one that saw the old
    // value begins, so no order explains both.
    assert!(!ok(&[put, r(1, Some(100), 10, 20), r(2, None, 30, 40)]));
}

#[test]
fn stale_reads_after_a_newer_read_are_caught() {
    // Two writes in sequence; a reader sees 2, then a later reader sees 1: a stale read.
    let h = [
        w(1, 1, 0, 10),
        w(1, 2, 20, 30),
        r(2, Some(2), 40, 50),
        r(3, Some(1), 60, 70),
    ];
    let v = check(&h);
    match v.violation {
        Some(Violation::NotLinearizable { key, op }) => {
            assert_eq!(key, "k");
            assert_eq!(op.client, 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn compare_and_swap_follows_the_register() {
    assert!(ok(&[
        cas(1, None, 1, true, 0, 1),
        cas(2, None, 2, false, 2, 3),
        cas(2, Some(1), 2, true, 4, 5),
        r(1, Some(2), 6, 7),
    ]));
    // Two CAS from the same value both succeeding: one of them must have failed.
    assert!(!ok(&[
        w(1, 1, 0, 1),
        cas(2, Some(1), 2, true, 2, 10),
        cas(3, Some(1), 3, true, 3, 11),
    ]));
    // A CAS that failed although the register held its expected value, alone.
    assert!(!ok(&[w(1, 1, 0, 1), cas(2, Some(1), 2, false, 2, 3)]));
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // Never: later reads see the old value.
    assert!(ok(&[
        w(1, 1, 0, 1),
        unknown_write(2, 2, 2),
        r(3, Some(1), 10, 11)
    ]));
    // Late: long after the client gave up, a read sees it.
    assert!(ok(&[
        w(1, 1, 0, 1),
        unknown_write(2, 2, 2),
        r(3, Some(1), 10, 11),
        r(3, Some(2), 1_000, 1_001),
    ]));
    // But once seen it cannot be undone: seeing 1 after 2 is a violation, unless a write of
    // 1 could come after.
    assert!(!ok(&[
        w(1, 1, 0, 1),
        unknown_write(2, 2, 2),
        r(3, Some(2), 10, 11),
        r(3, Some(1), 20, 21),
    ]));
    // And it cannot take effect before it was invoked.
    assert!(!ok(&[
        w(1, 1, 0, 1),
        r(3, Some(2), 2, 3),
        unknown_write(2, 2, 5)
    ]));
}

#[test]
fn an_unknown_cas_takes_effect_only_from_its_expected_value() {
    let unknown_cas = rec(
        2,
        Op::Cas {
            from: Some(9),
            to: 2,
        },
        Outcome::Unknown,
        2,
        None,
    );
    // The register never held 9, so the CAS cannot explain a read of 2.
    assert!(!ok(&[
        w(1, 1, 0, 1),
        unknown_cas.clone(),
        r(3, Some(2), 10, 11)
    ]));
    let from_one = rec(
        2,
        Op::Cas {
            from: Some(1),
            to: 2,
        },
        Outcome::Unknown,
        2,
        None,
    );
    assert!(ok(&[w(1, 1, 0, 1), from_one, r(3, Some(2), 10, 11)]));
}

#[test]
fn keys_are_independent_registers() {
    let mut a = w(1, 1, 0, 10);
    a.key = "a".into();
    let mut b = r(2, None, 20, 30);
    b.key = "b".into();
    let v = check(&[a, b]);
    assert!(v.linearizable(), "{v:?}");
    assert_eq!(v.keys, 2);
}

#[test]
fn unanswered_reads_are_ignored_and_malformed_records_refused() {
    let lost_read = rec(1, Op::Read, Outcome::Unknown, 0, None);
    assert!(ok(&[lost_read, w(1, 1, 1, 2)]));
    let backwards = w(1, 1, 10, 5);
    assert!(matches!(
        check(&[backwards]).violation,
        Some(Violation::Malformed { .. })
    ));
    let mismatched = rec(1, Op::Read, Outcome::Written, 0, Some(1));
    assert!(matches!(
        check(&[mismatched]).violation,
        Some(Violation::Malformed { .. })
    ));
    let unanswered_but_certain = rec(1, Op::Write(1), Outcome::Written, 0, None);
    assert!(matches!(
        check(&[unanswered_but_certain]).violation,
        Some(Violation::Malformed { .. })
    ));
}

/// A long history of several concurrent clients against a real (mutex-protected) register,
/// with some unknown outcomes, is linearizable and checked quickly; the same history with
/// one read altered to a value the register held earlier is not.
#[test]
fn long_concurrent_histories_are_decided() {
    let mut history = Vec::new();
    let mut register: Option<Value> = None;
    let mut next_value = 1;
    let clients = 6u32;
    // Each round every client's operation overlaps the others'; they take effect in the
    // order of a rotating permutation, at distinct instants within the round.
    for round in 0..500u64 {
        let base = round * 100;
        for slot in 0..clients {
            let client = (slot + round as u32) % clients;
            let invoked = base + u64::from(client);
            let completed = base + 50 + u64::from(client);
            let (op, outcome) = match (round + u64::from(slot)) % 4 {
                0 | 1 => (Op::Read, Outcome::Read(register)),
                2 => {
                    let v = next_value;
                    next_value += 1;
                    register = Some(v);
                    (Op::Write(v), Outcome::Written)
                }
                _ => {
                    let v = next_value;
                    next_value += 1;
                    let from = register;
                    register = Some(v);
                    (Op::Cas { from, to: v }, Outcome::Cas(true))
                }
            };
            history.push(rec(client, op, outcome, invoked, Some(completed)));
        }
    }
    // Unknown writes that never took effect, sprinkled in.
    let mut with_unknowns = history.clone();
    for i in 0..8 {
        with_unknowns.push(unknown_write(9, 1_000_000 + i, i * 6_000));
    }
    let v = check(&with_unknowns);
    assert!(v.linearizable(), "{v:?}");
    assert!(v.steps < 100_000, "{} steps", v.steps);

    // Alter a late read to a value from long before: the search must backtrack through
    // every round before it can say no.
    let late_read = history
        .iter()
        .rposition(|h| matches!(h.outcome, Outcome::Read(Some(_))))
        .unwrap();
    history[late_read].outcome = Outcome::Read(Some(1));
    let v = check(&history);
    assert!(
        matches!(&v.violation, Some(Violation::NotLinearizable { op, .. }) if op.invoked == history[late_read].invoked),
        "{v:?}"
    );
}

#[test]
fn the_step_limit_is_reported() {
    let h = [w(1, 1, 0, 10), w(2, 2, 0, 10), r(3, Some(1), 20, 30)];
    assert!(matches!(
        check_with_limit(&h, 2).violation,
        Some(Violation::GaveUp { .. })
    ));
}

#[test]
fn records_round_trip_as_json() {
    let h = vec![
        w(1, 1, 0, 10),
        unknown_write(2, 2, 5),
        cas(3, None, 4, false, 1, 2),
        r(4, None, 3, 4),
    ];
    let text = serde_json::to_string(&h).unwrap();
    let back: Vec<Record> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, h);
}
