//! See `conclave_raft::fuzzing::handshake_bytes` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_raft::fuzzing::handshake_bytes(data));
