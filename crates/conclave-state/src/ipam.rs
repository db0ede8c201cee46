//! IP address management on the replicated store (the IPAM seed's job): the pieces that
//! decide which address a request gets. They are pure, like the rest of the state machine,
//! so every node decides the same address from the same log.
//!
//! - [`free`]: the free addresses of one network as disjoint ranges, so taking the lowest
//!   free address, a given one, or giving one back costs O(log n) in the number of ranges,
//!   whatever the size of the network (a /8 or a /64), and its size grows with the
//!   allocations, never with the address space.

pub mod free;
