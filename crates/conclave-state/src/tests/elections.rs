//! Elections: leases on the cluster clock, epochs, planned handovers.

use super::*;

#[test]
fn an_election_is_held_by_one_candidate_until_its_lease_ends() {
    let mut s = State::new();
    s.apply(&clock(1, 1_000));
    let a = s.apply(&campaign("gw", "a", 5_000));
    assert_eq!(epoch_of(&a), 1);
    s.apply(&clock(1, 2_000));
    assert!(matches!(
        s.apply(&campaign("gw", "b", 5_000)),
        Outcome::Busy { ref holder, epoch: 1, expires_at_ms: 6_000, .. } if holder == "a"
    ));
    // A keepalive from the holder extends the lease from the current clock.
    s.apply(&clock(1, 5_500));
    assert!(matches!(
        s.apply(&keepalive("gw", "a", 1)),
        Outcome::Renewed {
            expires_at_ms: 10_500,
            ..
        }
    ));
    // After the deadline the keepalive is refused, even before ExpireLeases ran.
    s.apply(&clock(1, 10_500));
    assert!(matches!(
        s.apply(&keepalive("gw", "a", 1)),
        Outcome::NotHolder { .. }
    ));
    // The next grant has a new epoch, also when the same candidate wins again.
    let again = s.apply(&campaign("gw", "a", 5_000));
    assert_eq!(epoch_of(&again), 2);
}

#[test]
fn epochs_are_never_reused_after_resign_and_expiry() {
    let mut s = State::new();
    s.apply(&clock(1, 0));
    let mut seen = Vec::new();
    for round in 0..5u64 {
        let who = if round % 2 == 0 { "a" } else { "b" };
        let e = epoch_of(&s.apply(&campaign("job", who, 1_000)));
        seen.push(e);
        if round % 2 == 0 {
            assert!(matches!(
                s.apply(&resign("job", who, e)),
                Outcome::Resigned { .. }
            ));
        } else {
            s.apply(&clock(1, (round + 1) * 10_000));
            assert!(matches!(
                s.apply(&Command::ExpireLeases),
                Outcome::Expired { ended: 1, .. }
            ));
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    // Resigning a stale epoch is refused.
    assert!(matches!(
        s.apply(&resign("job", "a", 1)),
        Outcome::NotHolder { .. }
    ));
}

#[test]
fn a_new_leader_extends_leases_and_the_clock_never_goes_back() {
    let mut s = State::new();
    s.apply(&clock(1, 10_000));
    s.apply(&campaign("gw", "a", 3_000));
    // The new leader's clock is ahead by 2.5 s: without the extension the lease would end at
    // once in its eyes.
    s.apply(&clock(2, 12_500));
    let h = s.election("gw").unwrap().holder.clone().unwrap();
    assert_eq!(h.expires_at_ms, 15_500);
    // A clock stamp from behind does not move the clock back.
    s.apply(&clock(2, 11_000));
    assert_eq!(s.clock().now_ms, 12_500);
    assert!(matches!(
        s.apply(&campaign("gw", "b", 3_000)),
        Outcome::Busy { .. }
    ));
}

#[test]
fn a_planned_handover_reserves_the_election_for_its_target_until_its_window_closes() {
    let mut s = State::new();
    s.apply(&clock(1, 0));
    assert_eq!(epoch_of(&s.apply(&campaign("gw", "a", 5_000))), 1);
    // Only the live holder's epoch can be handed over, and not to itself.
    assert!(matches!(
        s.apply(&handover("gw", "b", 7, 3_000)),
        Outcome::NotHolder { epoch: 1, .. }
    ));
    assert!(matches!(
        s.apply(&handover("gw", "a", 1, 3_000)),
        Outcome::NotHolder { .. }
    ));
    assert!(matches!(
        s.apply(&handover("nope", "b", 1, 3_000)),
        Outcome::NotHolder { epoch: 0, .. }
    ));
    let before = s.revision();
    assert!(matches!(
        s.apply(&handover("gw", "b", 1, 3_000)),
        Outcome::HandoverPlanned { until_ms: 3_000, revision } if revision == before + 1
    ));
    let changes = s.take_changes();
    let asked: ElectionEvent = serde_json::from_slice(changes[1].value.as_ref().unwrap()).unwrap();
    assert_eq!(asked.transition, Transition::HandoverRequested);
    assert_eq!((asked.epoch, asked.target.as_deref()), (1, Some("b")));
    // The request ends no lease: the holder keeps it until it resigns.
    assert!(matches!(
        s.apply(&keepalive("gw", "a", 1)),
        Outcome::Renewed { .. }
    ));
    s.apply(&resign("gw", "a", 1));
    // Free, but reserved for b: neither c nor the old holder gets it.
    s.apply(&clock(1, 1_000));
    for other in ["c", "a"] {
        assert!(matches!(
            s.apply(&campaign("gw", other, 5_000)),
            Outcome::Reserved { ref target, until_ms: 3_000, now_ms: 1_000, .. } if target == "b"
        ));
    }
    assert_eq!(epoch_of(&s.apply(&campaign("gw", "b", 5_000))), 2);
    assert_eq!(s.election("gw").unwrap().handover, None);

    // A handover whose target never campaigns stops blocking when its window closes.
    s.apply(&handover("gw", "c", 2, 2_000));
    s.apply(&resign("gw", "b", 2));
    s.apply(&clock(1, 2_999));
    assert!(matches!(
        s.apply(&campaign("gw", "a", 5_000)),
        Outcome::Reserved { .. }
    ));
    s.apply(&clock(1, 3_000));
    assert_eq!(epoch_of(&s.apply(&campaign("gw", "a", 5_000))), 3);
    // The planned handover is part of the replicated state, snapshots included.
    s.apply(&handover("gw", "b", 3, 2_000));
    let restored = snapshot::decode(&snapshot::encode(&s)).unwrap();
    assert_eq!(restored, s);
    assert!(
        restored
            .election("gw")
            .unwrap()
            .pending_handover(3_500)
            .is_some()
    );
}
