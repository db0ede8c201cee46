//! The cost of one IPAM allocation inside the state machine, as a network fills: how long
//! `State::apply` takes to hand out the next address of a /8 and of a /64 when the network
//! already holds 0, 10,000, 100,000 and 1,000,000 allocations, and how the snapshot grows.
//! This is the part of an allocation consensus does not add; the goal is a cost that does
//! not depend on how full the network is.
//!
//! `cargo run --release -p conclave-bench --bin ipam-apply` prints one JSON line per point.

use std::time::Instant;

use conclave_state::ipam::{AllocateRequest, IpamCommand, NetworkSpec};
use conclave_state::{Command, Outcome, State, snapshot};

const SAMPLE: usize = 20_000;

fn allocate(state: &mut State, network: &str, count: u32) {
    let command = Command::Ipam(IpamCommand::Allocate(AllocateRequest {
        network: network.into(),
        count,
        ..AllocateRequest::default()
    }));
    match state.apply(&command) {
        Outcome::Ipam { result, .. } if result.is_ok() => {}
        other => panic!("allocation failed: {other:?}"),
    }
    state.take_changes();
}

fn main() {
    for (network, cidr) in [("v4", "10.0.0.0/8"), ("v6", "fd00::/64")] {
        let mut state = State::new();
        let spec = NetworkSpec {
            id: Some(network.into()),
            cidr: cidr.parse().expect("cidr"),
            description: String::new(),
            tags: Default::default(),
            gateway: None,
            reserved: Vec::new(),
            pools: Vec::new(),
            parent: None,
        };
        state.apply(&Command::Ipam(IpamCommand::CreateNetwork(spec)));
        let mut held = 0usize;
        for target in [0usize, 10_000, 100_000, 1_000_000] {
            while held < target {
                allocate(&mut state, network, 1000);
                held += 1000;
            }
            let before = held;
            let started = Instant::now();
            for _ in 0..SAMPLE {
                allocate(&mut state, network, 1);
            }
            let per_op_ns = started.elapsed().as_nanos() as f64 / SAMPLE as f64;
            held += SAMPLE;
            let copied = Instant::now();
            let copy = state.clone();
            let clone_ms = copied.elapsed().as_secs_f64() * 1000.0;
            drop(copy);
            let encoded = Instant::now();
            let snapshot_bytes = snapshot::encode(&state).len();
            let encode_ms = encoded.elapsed().as_secs_f64() * 1000.0;
            println!(
                "{{\"network\":\"{cidr}\",\"allocations_before\":{before},\"apply_ns_per_allocation\":{per_op_ns:.0},\"snapshot_bytes\":{snapshot_bytes},\"bytes_per_allocation\":{:.1},\"free_fragments\":{},\"clone_ms\":{clone_ms:.1},\"encode_ms\":{encode_ms:.1}}}",
                snapshot_bytes as f64 / held as f64,
                state.ipam().free_fragments(network).unwrap_or(0)
            );
        }
    }
}
