//! Sleeping on several channels' signal fds at once: the event loop's wait.

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Sleeps until one of `fds` is readable (a signal or a hang-up) or
/// `timeout` passes. Returns whether one was readable.
///
/// Call it only after every channel's read returned `Pending`: that armed
/// the ring's interrupt mask and checked the ring once more, so a packet
/// that arrives after the check signals the fd and no wake-up is lost.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<bool> {
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let timeout = Timespec::try_from(timeout).map_err(io::Error::other)?;
    loop {
        match poll(&mut polled, Some(&timeout)) {
            Ok(ready) => return Ok(ready > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}
