//! `cargo fuzz run commands` (from rust_core/): see ../harness.rs.
#![no_main]

include!("../harness.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
