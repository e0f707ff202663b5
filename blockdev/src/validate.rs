//! The host's checks of a request against guest memory and the disk.
//!
//! Nothing in a request is trusted: the header and the ranges come from the
//! guest. Every sum and product is checked, every byte of guest memory a
//! transfer touches is checked to exist, and the disk range to lie inside
//! the disk, before any I/O; a failed check is a [`Status`] for the guest.

use crate::request::{Op, Request, Status, MAX_TRANSFER, SECTOR_SIZE};
use vm_memory::{GuestAddress, GuestMemory, Permissions};
use vmbus_ring::wire::PAGE_SIZE;
use vmbus_ring::GpaRanges;

/// A piece of guest memory contiguous in guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Where it starts.
    pub address: GuestAddress,
    /// Bytes.
    pub len: usize,
}

/// Which way a transfer moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Disk to guest memory.
    Read,
    /// Guest memory to disk.
    Write,
}

/// A read or a write that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Which way.
    pub direction: Direction,
    /// Disk offset in bytes.
    pub offset: u64,
    /// Guest memory, in disk order; the lengths add up to the request's.
    pub segments: Vec<Segment>,
}

/// What the host is to do for a request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Move data.
    Transfer(Transfer),
    /// Make completed writes durable.
    Flush,
    /// Report the host's CPU time.
    Stats,
}

/// Checks `request` with its GPA `ranges` (`None`: the packet had none)
/// against `memory` and a disk of `disk_size` bytes.
pub fn plan<M: GuestMemory>(
    request: &Request,
    ranges: Option<GpaRanges<'_>>,
    memory: &M,
    disk_size: u64,
) -> Result<Plan, Status> {
    let direction = match request.op {
        Op::Read => Direction::Read,
        Op::Write => Direction::Write,
        Op::Flush | Op::Stats if request.length != 0 || ranges.is_some() => return Err(Status::LengthMismatch),
        Op::Flush => return Ok(Plan::Flush),
        Op::Stats => return Ok(Plan::Stats),
    };
    let length = request.length;
    if length == 0 || length > MAX_TRANSFER || u64::from(length) % SECTOR_SIZE != 0 {
        return Err(Status::BadLength);
    }
    let offset = request.sector.checked_mul(SECTOR_SIZE).ok_or(Status::OutOfRange)?;
    let end = offset.checked_add(u64::from(length)).ok_or(Status::OutOfRange)?;
    if end > disk_size {
        return Err(Status::OutOfRange);
    }
    let ranges = ranges.ok_or(Status::LengthMismatch)?;
    // Summed before any range is walked, so the work below is bounded by the
    // length (at most 1 MiB), whatever the ranges claim.
    let total = ranges.iter().try_fold(0u64, |sum, range| sum.checked_add(u64::from(range.byte_count)));
    if total != Some(u64::from(length)) {
        return Err(Status::LengthMismatch);
    }
    let segments = segments(ranges)?;
    // A read writes guest memory; a write reads it.
    let access = match direction {
        Direction::Read => Permissions::Write,
        Direction::Write => Permissions::Read,
    };
    if !segments.iter().all(|segment| memory.check_range(segment.address, segment.len, access)) {
        return Err(Status::BadGuestAddress);
    }
    Ok(Plan::Transfer(Transfer { direction, offset, segments }))
}

/// The ranges as guest-physically contiguous segments: each range's pages
/// in order, neighbours that touch merged.
fn segments(ranges: GpaRanges<'_>) -> Result<Vec<Segment>, Status> {
    let page = PAGE_SIZE as u64;
    let mut segments: Vec<Segment> = Vec::new();
    for range in ranges.iter() {
        let mut left = u64::from(range.byte_count);
        let mut in_page = u64::from(range.byte_offset);
        for gpn in range.page_numbers() {
            if left == 0 {
                break;
            }
            let base = gpn.checked_mul(page).ok_or(Status::BadGuestAddress)?;
            let take = (page - in_page).min(left);
            let address = base + in_page;
            // `take` is at most 4096, so it fits in usize.
            let len = take as usize;
            match segments.last_mut() {
                Some(last) if last.address.0.checked_add(last.len as u64) == Some(address) => last.len += len,
                _ => segments.push(Segment { address: GuestAddress(address), len }),
            }
            left -= take;
            in_page = 0;
        }
    }
    Ok(segments)
}
