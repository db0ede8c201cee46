//! See `conclave_raft::fuzzing::messages_bytes` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_raft::fuzzing::messages_bytes(data));
