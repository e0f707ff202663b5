//! Data buffers laid out the way a guest's may be: off page boundaries and
//! in several pieces, each piece one GPA range.

use crate::memory::Memory;
use crate::request::SECTOR_SIZE;
use crate::validate::Segment;
use vm_memory::{Bytes, GuestAddress};

/// Most pieces a buffer is cut into.
pub const MAX_PIECES: u64 = 3;
/// Most bytes a buffer starts past its slot's start (a page minus a sector).
const MAX_SKEW: u64 = 4096 - SECTOR_SIZE;

/// `len` bytes (a multiple of 512, at most 1 MiB) of slot memory starting
/// at `slot`, cut into one to three pieces at sector boundaries, starting
/// off a page boundary by a random number of sectors, with a sector's gap
/// between pieces. Fits in [`SLOT_SIZE`](crate::memory::SLOT_SIZE).
pub fn scatter(rng: &mut fastrand::Rng, slot: GuestAddress, len: usize) -> Vec<Segment> {
    let sectors = len as u64 / SECTOR_SIZE;
    let pieces = rng.u64(1..=MAX_PIECES.min(sectors.max(1)));
    let mut cuts: Vec<u64> = (1..pieces).map(|_| rng.u64(1..sectors.max(2))).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(sectors);
    let mut at = slot.0 + rng.u64(0..=MAX_SKEW / SECTOR_SIZE) * SECTOR_SIZE;
    let mut done = 0;
    let mut segments = Vec::with_capacity(cuts.len());
    for cut in cuts {
        let len = ((cut - done) * SECTOR_SIZE) as usize;
        segments.push(Segment { address: GuestAddress(at), len });
        at += len as u64 + SECTOR_SIZE;
        done = cut;
    }
    segments
}

/// Copies `data` into the segments, in order.
pub fn write_into(memory: &Memory, segments: &[Segment], data: &[u8]) -> Result<(), vm_memory::GuestMemoryError> {
    let mut at = 0;
    for segment in segments {
        let piece = data.get(at..at + segment.len).unwrap_or_default();
        memory.write_slice(piece, segment.address)?;
        at += segment.len;
    }
    Ok(())
}

/// Copies the segments, in order, into `data`.
pub fn read_from(memory: &Memory, segments: &[Segment], data: &mut [u8]) -> Result<(), vm_memory::GuestMemoryError> {
    let mut at = 0;
    for segment in segments {
        if let Some(piece) = data.get_mut(at..at + segment.len) {
            memory.read_slice(piece, segment.address)?;
        }
        at += segment.len;
    }
    Ok(())
}
