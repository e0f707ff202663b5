//! `ops`: writer and reader operations on flat, paged and mapped ring memory
//! side by side, and on the reference model (`vmbus_hostile_tests::model`).
//!
//! # Input
//!
//! A `Vec<Op>` taken through `arbitrary` (`Arbitrary::arbitrary_take_rest`,
//! as `fuzz_target!` does): each op is preceded by a byte whose bit 0 says
//! whether another op follows, an enum is a `u32` picking its variant, and
//! integers are little-endian. [`encode`] writes that encoding for the seed
//! corpus, and [`decode`] reads it back (the seed generator checks the two
//! agree, so a change of `arbitrary`'s format shows at once).
//!
//! # Checks
//!
//! - `ring_images_agree`: the real endpoints over flat, paged, memfd-mapped
//!   and double-mapped memory give the same outcome for every op (results,
//!   packets read, signal decisions) and leave byte-identical rings;
//! - `real_matches_model`: the real endpoints give, op for op, the outcomes
//!   of the reference model, which makes the signal decisions exactly as
//!   the signalling rules (`vmbus_ring::signal`) state them; run on the model's 2-page ring and on a
//!   1-page ring (which fills sooner).

use arbitrary::{Arbitrary, Unstructured};
use vmbus_hostile_tests::model::{real_matches_model, ring_images_agree, Op, WriteKind, MODEL_DATA_LEN};

/// The fuzz target's body.
pub fn run(ops: &[Op]) {
    if let Err(difference) = ring_images_agree(ops) {
        panic!("ring memories disagree: {difference}\nops: {ops:?}");
    }
    for data_len in [MODEL_DATA_LEN, 4096] {
        if let Err(difference) = real_matches_model(data_len, ops) {
            panic!("real endpoints and model disagree on a {data_len}-byte ring: {difference}\nops: {ops:?}");
        }
    }
}

/// The ops `fuzz_target!` makes of `bytes`.
pub fn decode(bytes: &[u8]) -> Option<Vec<Op>> {
    Vec::<Op>::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

/// Runs the body on raw input bytes, as the fuzz target does.
pub fn run_bytes(bytes: &[u8]) {
    if let Some(ops) = decode(bytes) {
        run(&ops);
    }
}

/// The bytes `arbitrary` decodes to `ops`.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for op in ops {
        bytes.push(1); // another element follows
        let (index, fields): (u64, Vec<u8>) = match *op {
            Op::Write { kind, payload_len, range_count, completion_requested } => {
                let kind = match kind {
                    WriteKind::InBand => 0,
                    WriteKind::Completion => 1,
                    WriteKind::TransferPages => 2,
                    WriteKind::GpaDirect => 3,
                };
                let mut fields = variant(kind, 4).to_vec();
                fields.extend(payload_len.to_le_bytes());
                fields.push(range_count);
                fields.push(completion_requested.into());
                (0, fields)
            }
            Op::CommitWrite => (1, vec![]),
            Op::RevertWrite => (2, vec![]),
            Op::Read => (3, vec![]),
            Op::CommitRead => (4, vec![]),
            Op::RevertRead => (5, vec![]),
            Op::SetInterruptMask(masked) => (6, vec![masked.into()]),
            Op::SetPendingSendSize(size) => (7, size.to_le_bytes().to_vec()),
            Op::ClearPendingSendSize => (8, vec![]),
            Op::StorePendingSendSize(raw) => (9, raw.to_le_bytes().to_vec()),
            Op::PrepareToSleep => (10, vec![]),
            Op::KeepFree(kept) => (11, kept.to_le_bytes().to_vec()),
        };
        bytes.extend(variant(index, 12));
        bytes.extend(fields);
    }
    bytes.push(0); // no more elements
    bytes
}

/// The `u32` that `#[derive(Arbitrary)]` maps to variant `index` of `count`:
/// it picks `(u32 * count) >> 32`.
fn variant(index: u64, count: u64) -> [u8; 4] {
    let value = (index << 32).div_ceil(count);
    (value as u32).to_le_bytes()
}
