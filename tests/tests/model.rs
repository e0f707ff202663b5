//! Property tests: random writer/reader operation sequences run on the real
//! endpoints and on the reference model (`vmbus_hostile_tests::model`) give
//! the same trace (every write's offset and size, every full/too-large with
//! its numbers, every packet's header fields and payload bytes, every signal
//! decision), and flat, paged, memfd-mapped and double-mapped ring memory end
//! with the same trace and the same ring bytes. Failures shrink to a minimal
//! op sequence.
//!
//! `PROPTEST_CASES=<n>` sets the cases per property (default 256).

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use vmbus_hostile_tests::model::{
    real_matches_model, ring_images_agree, run_model, Op, Outcome, WriteKind, MODEL_DATA_LEN,
};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn write_kind() -> impl Strategy<Value = WriteKind> {
    prop_oneof![
        Just(WriteKind::InBand),
        Just(WriteKind::Completion),
        Just(WriteKind::TransferPages),
        Just(WriteKind::GpaDirect),
    ]
}

/// Payload lengths: mostly small, some that fill a good part of a ring, a few
/// that cannot fit any ring used here.
fn payload_len() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => 0u16..64,
        3 => 0u16..2048,
        1 => 2048u16..8200,
        1 => 16_000u16..=u16::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let write = (write_kind(), payload_len(), prop_oneof![4 => 0u8..4, 1 => 0u8..=u8::MAX], any::<bool>()).prop_map(
        |(kind, payload_len, range_count, completion_requested)| Op::Write {
            kind,
            payload_len,
            range_count,
            completion_requested,
        },
    );
    prop_oneof![
        8 => write,
        4 => Just(Op::CommitWrite),
        1 => Just(Op::RevertWrite),
        8 => Just(Op::Read),
        4 => Just(Op::CommitRead),
        1 => Just(Op::RevertRead),
        1 => any::<bool>().prop_map(Op::SetInterruptMask),
        2 => (0u16..17_000).prop_map(Op::SetPendingSendSize),
        1 => Just(Op::ClearPendingSendSize),
        1 => prop_oneof![Just(0u16), Just(32), 0u16..9000].prop_map(Op::KeepFree),
        1 => prop_oneof![
            Just(4095u32), Just(8191), Just(16383), 0u32..17_000, any::<u32>()
        ].prop_map(Op::StorePendingSendSize),
        1 => Just(Op::PrepareToSleep),
    ]
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..max)
}

proptest! {
    #![proptest_config(Config::with_cases(cases()))]

    /// The real endpoints over flat memory behave as the model says, for
    /// rings of one, two and four pages.
    #[test]
    fn real_endpoints_match_the_model(pages in prop_oneof![Just(1usize), Just(2), Just(4)], ops in ops(160)) {
        real_matches_model(pages * 4096, &ops).map_err(TestCaseError::fail)?;
    }

    /// Every kind of ring memory gives the same trace and the same bytes.
    #[test]
    fn memory_kinds_agree(ops in ops(120)) {
        ring_images_agree(&ops).map_err(TestCaseError::fail)?;
    }
}

/// The model's traces are not trivial: across random sequences every
/// outcome kind shows up, so the properties above compare something.
#[test]
fn sequences_reach_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let mut seen = [false; 10];
    for _ in 0..200 {
        let ops = ops(160).new_tree(&mut runner).unwrap().current();
        for outcome in run_model(MODEL_DATA_LEN, &ops) {
            let slot = match outcome {
                Outcome::Written { .. } => 0,
                Outcome::Full { .. } => 1,
                Outcome::TooLarge { .. } => 2,
                Outcome::NoGpaRange => 3,
                Outcome::Packet(_) => 4,
                Outcome::Empty => 5,
                Outcome::Signal(true) => 6,
                Outcome::PendingSendSize { room: false } => 7,
                Outcome::Sleep(true) => 8,
                Outcome::Sleep(false) => 9,
                _ => continue,
            };
            seen[slot] = true;
        }
    }
    assert_eq!(seen, [true; 10], "outcomes never produced: {seen:?}");
}

/// The reader's signal after a commit that frees the space a blocked writer
/// asked for, in a hand-written sequence (a readable example of the traces).
#[test]
fn blocked_writer_is_signalled_once_on_the_crossing() {
    let big =
        |payload_len| Op::Write { kind: WriteKind::InBand, payload_len, range_count: 0, completion_requested: false };
    let ops = [
        big(3000),
        big(3000),
        Op::CommitWrite,
        big(3000),                    // 2 x 3024 used: 2136 free (8192 - 6048 - 8)
        Op::SetPendingSendSize(3024), // must wait
        Op::Read,
        Op::CommitRead, // frees 3024: 5160 >= 3024, crossing
        Op::Read,
        Op::CommitRead, // already above: no second signal
    ];
    let trace = run_model(MODEL_DATA_LEN, &ops);
    assert_eq!(trace[3], Outcome::Full { needed: 3024, free: 2136 });
    assert_eq!(trace[4], Outcome::PendingSendSize { room: false });
    assert_eq!(trace[6], Outcome::Signal(true));
    assert_eq!(trace[8], Outcome::Signal(false));
    real_matches_model(MODEL_DATA_LEN, &ops).unwrap();
    ring_images_agree(&ops).unwrap();
}

/// Shrinking works on these strategies: a property that fails as soon as a
/// write finds the ring full shrinks to a few writes and nothing else, none
/// of which can be left out (each one is needed to fill the ring).
#[test]
fn failures_shrink_to_a_minimal_sequence() {
    let config = Config { failure_persistence: None, ..Config::with_cases(1000) };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let finds_full = |ops: &[Op]| run_model(MODEL_DATA_LEN, ops).iter().any(|o| matches!(o, Outcome::Full { .. }));
    let result = runner.run(&ops(160), |ops| {
        prop_assert!(!finds_full(&ops));
        Ok(())
    });
    let Err(TestError::Fail(_, minimal)) = result else { panic!("expected a failure, got {result:?}") };
    assert!((2..=4).contains(&minimal.len()), "not shrunk: {minimal:?}");
    assert!(minimal.iter().all(|op| matches!(op, Op::Write { .. })), "not shrunk: {minimal:?}");
    for i in 0..minimal.len() {
        let mut fewer = minimal.clone();
        fewer.remove(i);
        assert!(!finds_full(&fewer), "op #{i} of {minimal:?} is not needed");
    }
}
