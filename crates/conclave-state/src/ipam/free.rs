//! The free part of a network's address space, as disjoint inclusive ranges.
//!
//! Why hand-written: the allocator must find the lowest free address of a /64 holding a
//! million allocations in O(log n), and a snapshot must grow with the allocations, not with
//! the address space; a bitmap or a per-address set (what an IP-math crate offers) does
//! neither. Addresses are `u128` (an IPv4 address is its 32-bit value), so one structure
//! serves both families.

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

/// Disjoint, non-adjacent inclusive ranges `start -> end` of free addresses.
///
/// Invariant: for consecutive entries `(s1, e1)`, `(s2, e2)`: `s1 <= e1` and `e1 + 1 < s2`
/// (adjacent ranges are always merged, so one layout stands for one set of addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeRanges {
    ranges: OrdMap<u128, u128>,
}

impl FreeRanges {
    /// No free address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every address from `start` to `end` inclusive free (none when `start > end`).
    pub fn spanning(start: u128, end: u128) -> Self {
        let mut free = Self::new();
        free.release_range(start, end);
        free
    }

    /// How many addresses are free (saturating at `u128::MAX`: a whole IPv6 space).
    pub fn count(&self) -> u128 {
        self.ranges.iter().fold(0u128, |n, (s, e)| {
            n.saturating_add((e - s).saturating_add(1))
        })
    }

    /// How many ranges hold the free space (what a snapshot stores).
    pub fn fragments(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `addr` is free.
    pub fn contains(&self, addr: u128) -> bool {
        self.containing(addr).is_some()
    }

    /// The lowest free address, without taking it.
    pub fn lowest(&self) -> Option<u128> {
        self.ranges.keys().next().copied()
    }

    /// The range `(start, end)` holding `addr`, if it is free.
    fn containing(&self, addr: u128) -> Option<(u128, u128)> {
        let (&start, &end) = self.ranges.range(..=addr).next_back()?;
        (addr <= end).then_some((start, end))
    }

    /// Take the lowest free address.
    pub fn take_lowest(&mut self) -> Option<u128> {
        let addr = self.lowest()?;
        self.take(addr);
        Some(addr)
    }

    /// Take `addr`; false (and nothing changes) when it was not free.
    pub fn take(&mut self, addr: u128) -> bool {
        let Some((start, end)) = self.containing(addr) else {
            return false;
        };
        self.ranges.remove(&start);
        if start < addr {
            self.ranges.insert(start, addr - 1);
        }
        if addr < end {
            self.ranges.insert(addr + 1, end);
        }
        true
    }

    /// Take every free address from `start` to `end` inclusive (a reservation); returns how
    /// many were free. Costs O(log n + ranges overlapped).
    pub fn take_range(&mut self, start: u128, end: u128) -> u128 {
        if start > end {
            return 0;
        }
        let first = match self.containing(start) {
            Some((s, _)) => s,
            None => start,
        };
        let overlapped: Vec<(u128, u128)> = self
            .ranges
            .range(first..=end)
            .map(|(s, e)| (*s, *e))
            .collect();
        let mut taken = 0u128;
        for (s, e) in overlapped {
            self.ranges.remove(&s);
            if s < start {
                self.ranges.insert(s, start - 1);
            }
            if e > end {
                self.ranges.insert(end + 1, e);
            }
            taken = taken.saturating_add((e.min(end) - s.max(start)).saturating_add(1));
        }
        taken
    }

    /// Give `addr` back; false (and nothing changes) when it was already free.
    pub fn release(&mut self, addr: u128) -> bool {
        if self.contains(addr) {
            return false;
        }
        self.release_range(addr, addr);
        true
    }

    /// Make every address from `start` to `end` inclusive free, merging with the ranges
    /// around it. Costs O(log n + ranges absorbed).
    pub fn release_range(&mut self, start: u128, end: u128) {
        if start > end {
            return;
        }
        let mut new_start = start;
        let mut new_end = end;
        // A range that ends at or right before `start` absorbs into this one.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e.checked_add(1).is_none_or(|after| after >= start)
        {
            new_start = s;
            new_end = new_end.max(e);
        }
        // Ranges that start inside, or right after, the new one.
        let reach = new_end.saturating_add(1);
        let absorbed: Vec<(u128, u128)> = self
            .ranges
            .range(new_start..=reach)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in absorbed {
            self.ranges.remove(&s);
            new_end = new_end.max(e);
        }
        self.ranges.insert(new_start, new_end);
    }

    /// The free ranges in address order.
    pub fn ranges(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }
}

#[cfg(test)]
mod tests;
