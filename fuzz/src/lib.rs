//! The bodies of the vmbus-ring fuzz targets, their input layouts, and the
//! seed corpus.
//!
//! Each fuzz target in `fuzz_targets/` is one line calling `run` of the
//! module with its name, so the same bodies also run as ordinary tests
//! (`tests/corpus.rs`) over the generated seeds, on the stable toolchain
//! without libFuzzer.
//!
//! The inputs of `parse`, `gpa_ranges` and `pipe` are raw bytes with a small
//! documented layout (see each module), not `arbitrary` structures: the seed
//! generator ([`seeds`]) writes valid rings, range lists and pipe streams in
//! that layout directly, so the fuzzer starts from deep, valid inputs.
//! `ops` takes its input through `arbitrary` (a `Vec<Op>` of the reference
//! model), and its seeds are the encodings of hand-picked op sequences
//! ([`ops::encode`]).
//!
//! - [`parse`]: an arbitrary ring read to the end, against an independent
//!   parser written from the wire rules, and against `RingDump::decode`.
//! - [`ops`]: writer and reader operations on flat, paged and mapped memory
//!   side by side and on the reference model.
//! - [`gpa_ranges`]: GPA range lists: parse (no allocation, bounded work)
//!   and build, both ways round, and through a GPA-direct packet.
//! - [`pipe`]: the pipe framing and partial reads, through `MessagePipe`
//!   and `BytePipe`.
//! - [`oracle`]: the independent parser `parse` and `gpa_ranges` check against.
//! - [`alloc_count`]: a global allocator that counts one thread's allocations.
//! - [`seeds`]: the seed corpus, generated.

pub mod alloc_count;
pub mod gpa_ranges;
pub mod ops;
pub mod oracle;
pub mod parse;
pub mod pipe;
pub mod seeds;

/// Reads a little-endian integer of `N` bytes at `at`, missing bytes as zero.
fn le_bytes<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(available) = bytes.get(at..) {
        let n = available.len().min(N);
        out[..n].copy_from_slice(&available[..n]);
    }
    out
}

/// Splits the next `len` bytes off the front of `input` (fewer if it is shorter).
fn take<'a>(input: &mut &'a [u8], len: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(len.min(input.len()));
    *input = tail;
    head
}

fn take_u8(input: &mut &[u8]) -> u8 {
    le_bytes::<1>(take(input, 1), 0)[0]
}

fn take_u16(input: &mut &[u8]) -> u16 {
    u16::from_le_bytes(le_bytes(take(input, 2), 0))
}

fn take_u32(input: &mut &[u8]) -> u32 {
    u32::from_le_bytes(le_bytes(take(input, 4), 0))
}

fn take_u64(input: &mut &[u8]) -> u64 {
    u64::from_le_bytes(le_bytes(take(input, 8), 0))
}
