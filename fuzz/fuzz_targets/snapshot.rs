//! See `conclave_state::fuzzing::snapshot_bytes` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_state::fuzzing::snapshot_bytes(data));
