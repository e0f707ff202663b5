#![no_main]
//! Pipe framing and partial reads; see `vmbus_fuzz::pipe` for the input layout and the checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmbus_fuzz::pipe::run(data));
