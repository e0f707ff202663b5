//! The host's answer to one request: check it, do it, say how it went.

use crate::disk::Disk;
use crate::memory::Memory;
use crate::request::{CompletionHeader, Request, RequestHeader, Status};
use crate::validate::{plan, Plan};
use rustix::time::{clock_gettime, ClockId};
use vmbus_channel::Payload;
use vmbus_ring::RingMem;
use zerocopy::FromZeros;

/// Serves one request packet (its payload and ranges, read through the
/// batch) against `memory` and `disk`; the completion to send back. Never
/// panics, whatever the packet holds.
pub fn respond<M: RingMem>(memory: &Memory, disk: &mut Disk, payload: &Payload<'_, M>) -> CompletionHeader {
    let mut header = RequestHeader::new_zeroed();
    if payload.read_at(0, zerocopy::IntoBytes::as_mut_bytes(&mut header)).is_err() {
        return CompletionHeader::new(Status::Malformed, 0);
    }
    let checked = Request::parse(zerocopy::IntoBytes::as_bytes(&header))
        .and_then(|request| plan(&request, payload.gpa_ranges(), memory, disk.size()));
    let done = match checked {
        Err(status) => return CompletionHeader::new(status, 0),
        Ok(Plan::Transfer(transfer)) => {
            let moved = transfer.segments.iter().map(|segment| segment.len as u64).sum();
            disk.transfer(memory, &transfer).map(|()| moved)
        }
        Ok(Plan::Flush) => disk.flush().map(|()| 0),
        Ok(Plan::Stats) => Ok(process_cpu_nanos()),
    };
    match done {
        Ok(value) => CompletionHeader::new(Status::Ok, value),
        Err(_) => CompletionHeader::new(Status::IoError, 0),
    }
}

/// CPU time this process has used, in nanoseconds.
pub fn process_cpu_nanos() -> u64 {
    let time = clock_gettime(ClockId::ProcessCPUTime);
    (time.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec as u64)
}
