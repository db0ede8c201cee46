//! The free-range structure against the obvious model: a set of every free address.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::FreeRanges;

#[derive(Debug, Clone)]
enum Op {
    TakeLowest,
    Take(u128),
    Release(u128),
    TakeRange(u128, u128),
    ReleaseRange(u128, u128),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::TakeLowest),
        (0u128..70).prop_map(Op::Take),
        (0u128..70).prop_map(Op::Release),
        (0u128..70, 0u128..12).prop_map(|(s, n)| Op::TakeRange(s, s + n)),
        (0u128..70, 0u128..12).prop_map(|(s, n)| Op::ReleaseRange(s, s + n)),
    ]
}

/// The layout invariant: ordered, non-empty, neither overlapping nor adjacent.
fn assert_canonical(free: &FreeRanges) {
    let ranges: Vec<(u128, u128)> = free.ranges().collect();
    for (s, e) in &ranges {
        assert!(s <= e, "empty range in {ranges:?}");
    }
    for pair in ranges.windows(2) {
        assert!(pair[0].1 + 1 < pair[1].0, "unmerged ranges in {ranges:?}");
    }
}

proptest! {
    #[test]
    fn behaves_like_a_set_of_free_addresses(start in 0u128..8, len in 0u128..64, ops in proptest::collection::vec(op(), 0..80)) {
        let mut free = FreeRanges::spanning(start, start + len);
        let mut model: BTreeSet<u128> = (start..=start + len).collect();
        for op in ops {
            match op {
                Op::TakeLowest => {
                    let want = model.iter().next().copied();
                    if let Some(a) = want { model.remove(&a); }
                    prop_assert_eq!(free.take_lowest(), want);
                }
                Op::Take(a) => prop_assert_eq!(free.take(a), model.remove(&a)),
                Op::Release(a) => prop_assert_eq!(free.release(a), model.insert(a)),
                Op::TakeRange(s, e) => {
                    let before = model.len();
                    model.retain(|a| *a < s || *a > e);
                    prop_assert_eq!(free.take_range(s, e), (before - model.len()) as u128);
                }
                Op::ReleaseRange(s, e) => {
                    model.extend(s..=e);
                    free.release_range(s, e);
                }
            }
            assert_canonical(&free);
            prop_assert_eq!(free.count(), model.len() as u128);
            prop_assert_eq!(free.lowest(), model.iter().next().copied());
            for a in 0..90u128 {
                prop_assert_eq!(free.contains(a), model.contains(&a), "address {}", a);
            }
        }
    }
}

#[test]
fn the_ends_of_the_ipv6_space_do_not_overflow() {
    let mut free = FreeRanges::spanning(0, u128::MAX);
    assert_eq!(free.count(), u128::MAX, "saturates");
    assert!(free.take(u128::MAX));
    assert!(free.take(0));
    assert_eq!(free.lowest(), Some(1));
    assert!(free.release(u128::MAX));
    assert!(free.release(0));
    assert_eq!(free.fragments(), 1);
    assert_eq!(free.take_range(u128::MAX - 1, u128::MAX), 2);
    free.release_range(u128::MAX - 1, u128::MAX);
    assert_eq!(free.ranges().collect::<Vec<_>>(), vec![(0, u128::MAX)]);
}

#[test]
fn a_million_allocations_in_a_slash_8_cost_ranges_not_addresses() {
    // 10.0.0.0/8 without its network and broadcast addresses.
    let base: u128 = 10 << 24;
    let mut free = FreeRanges::spanning(base + 1, base + (1 << 24) - 2);
    for _ in 0..1_000_000 {
        assert!(free.take_lowest().is_some());
    }
    // Taken from the bottom: the free space is still one range.
    assert_eq!(free.fragments(), 1);
    assert_eq!(free.count(), (1 << 24) - 2 - 1_000_000);
    // Every other address released: one range per hole, nothing per free address beyond.
    for k in (0..1_000_000u128).step_by(2) {
        assert!(free.release(base + 1 + k));
    }
    assert_eq!(free.fragments(), 500_001);
    assert_eq!(free.take_lowest(), Some(base + 1));
}
