//! Keeping a number of requests in flight on a guest: the loop both the
//! report and the verify run use.

use crate::error::DeviceError;
use crate::guest::{Done, Guest, IoRequest};

/// A source of requests and a sink of their completions.
pub trait Workload {
    /// The next request to send under `tag` (whose data buffer is slot
    /// `tag`), or `None` when the workload has sent all it wants.
    fn next(&mut self, guest: &Guest, tag: usize) -> Result<Option<IoRequest>, DeviceError>;

    /// A request finished. Returning `true` asks the loop to kill the host
    /// now, with the other requests in flight.
    fn finished(&mut self, guest: &Guest, done: &Done) -> Result<bool, DeviceError>;
}

/// Runs `workload` on `guest` with up to `depth` requests in flight (tags
/// `0..depth`) until it has no more requests and all have finished.
pub fn drive(guest: &mut Guest, depth: usize, workload: &mut impl Workload) -> Result<(), DeviceError> {
    let mut more = true;
    for tag in 0..depth {
        match workload.next(guest, tag)? {
            Some(request) => guest.submit(tag, request)?,
            None => {
                more = false;
                break;
            }
        }
    }
    let mut done = Vec::with_capacity(depth);
    while guest.in_flight() > 0 {
        guest.complete(&mut done)?;
        for finished in done.drain(..) {
            if workload.finished(guest, &finished)? {
                guest.kill_host();
            }
            if more {
                match workload.next(guest, finished.tag)? {
                    Some(request) => guest.submit(finished.tag, request)?,
                    None => more = false,
                }
            }
        }
    }
    Ok(())
}
