//! See `conclave_storage::fuzzing::log_recovery_bytes` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_storage::fuzzing::log_recovery_bytes(data));
