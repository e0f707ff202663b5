#![no_main]
//! An arbitrary ring read to the end; see `vmbus_fuzz::parse` for the input layout and the checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmbus_fuzz::parse::run(data));
