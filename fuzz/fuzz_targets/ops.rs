#![no_main]
//! Operation sequences on three ring memories and the reference model; see `vmbus_fuzz::ops`.

use vmbus_hostile_tests::model::Op;

libfuzzer_sys::fuzz_target!(|ops: Vec<Op>| vmbus_fuzz::ops::run(&ops));
