//! Checks on the ring files a peer process hands over, made before they
//! are mapped: two distinct files, of sizes the caller accepts.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;
use vmbus_ring::wire::{MAX_DATA_LEN, PAGE_SIZE};

/// What [`ChannelFds::receive_with`](crate::ChannelFds::receive_with)
/// accepts from a peer process.
///
/// ```
/// use std::time::Duration;
/// use vmbus_channel::ReceiveLimits;
/// let limits = ReceiveLimits { max_data_len: 1 << 20, timeout: Some(Duration::from_secs(5)) };
/// assert_eq!(ReceiveLimits::default().timeout, None);
/// # drop(limits);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    /// Largest data area either ring may have, in bytes. The peer's files
    /// pick the ring sizes: without a cap, a sparse sealed memfd of 2 GiB
    /// costs this process 4 GiB of address space once double-mapped. The
    /// files must be sealed against growing too (as those of
    /// [`ChannelFds::pair`](crate::ChannelFds::pair) are), so that the size
    /// checked is the size mapped. Default: the largest a ring can be (just
    /// under 4 GiB).
    pub max_data_len: usize,
    /// How long the whole receive may take; `None` (the default): the
    /// socket's own read timeout, if any. A peer that sends the fds and
    /// part of the message and then nothing would otherwise hold the
    /// receive for ever.
    pub timeout: Option<Duration>,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        Self { max_data_len: MAX_DATA_LEN, timeout: None }
    }
}

/// Refuses the same file as both rings: this end would read its own
/// packets back, and the peer would see none of them.
pub(crate) fn check_distinct(incoming: BorrowedFd<'_>, outgoing: BorrowedFd<'_>) -> io::Result<()> {
    let (a, b) = (rustix::fs::fstat(incoming)?, rustix::fs::fstat(outgoing)?);
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "both rings are the same file: this end would read back its own packets",
        ));
    }
    Ok(())
}

/// Refuses a ring file whose data area (its size less the control page)
/// is above `max_data_len`, or that is not sealed against growing (its
/// holder could grow it past the cap before it is mapped).
pub(crate) fn check_size(fd: BorrowedFd<'_>, max_data_len: usize, which: &str) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap_or(rustix::fs::SealFlags::empty());
    if !seals.contains(rustix::fs::SealFlags::GROW) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the {which} ring file is not sealed against growing: its size could change after this check"),
        ));
    }
    let size = rustix::fs::fstat(fd)?.st_size;
    let data_len = usize::try_from(size).unwrap_or(usize::MAX).saturating_sub(PAGE_SIZE);
    if data_len > max_data_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the {which} ring's data area is {data_len} bytes, above the {max_data_len} accepted"),
        ));
    }
    Ok(())
}
