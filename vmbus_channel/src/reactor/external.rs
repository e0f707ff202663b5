//! Signal fds watched by the caller's own event loop.

use super::{FdWatch, Reactor};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A [`Reactor`] for a caller that watches the signal's fd itself (an epoll
/// or `event-manager` loop, a poll-mode driver's idle wait): nothing is
/// registered anywhere, and a waiting call just returns `Pending`. When the
/// fd ([`AsFd`](std::os::fd::AsFd) on the signal) becomes readable, the
/// loop polls the queue again, with any waker (a no-op one will do): the
/// poll reads the fd and carries on.
///
/// ```
/// use rustix::event::{poll, PollFd, PollFlags};
/// use std::os::fd::AsFd;
/// use std::task::{Context, Poll, Waker};
/// use vmbus_channel::{ExternalReactor, Queue, RawChannel, SocketSignal};
/// use vmbus_ring::{FlatRingMem, OutgoingPacket};
///
/// let (a_to_b, b_to_a) = (FlatRingMem::new(4096)?, FlatRingMem::new(4096)?);
/// let (a, b) = SocketSignal::pair()?;
/// let b = b.with_reactor(ExternalReactor);
/// let fd = b.as_fd().try_clone_to_owned()?; // what the loop watches
/// let mut a = Queue::new(RawChannel::new(b_to_a.clone(), a_to_b.clone(), a)?);
/// let mut b = Queue::new(RawChannel::new(a_to_b, b_to_a, b)?);
///
/// let waker = Waker::from(std::sync::Arc::new(NoWake));
/// let mut cx = Context::from_waker(&waker);
/// let mut received = 0;
/// assert!(b.reader_mut().poll_read_batch(&mut cx, 16, |_, _| received += 1).is_pending());
/// a.writer_mut().write_blocking(&OutgoingPacket::in_band(1), &[b"wake up"])?;
/// // The event loop: wait until the signal's fd is readable, then poll again.
/// poll(&mut [PollFd::new(&fd, PollFlags::IN)], None)?;
/// assert_eq!(b.reader_mut().poll_read_batch(&mut cx, 16, |_, _| received += 1), Poll::Ready(Ok(1)));
/// assert_eq!(received, 1);
/// # struct NoWake;
/// # impl std::task::Wake for NoWake { fn wake(self: std::sync::Arc<Self>) {} }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalReactor;

impl Reactor for ExternalReactor {
    fn watch(&self, _fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
        Ok(Box::new(ExternalWatch))
    }
}

#[derive(Debug)]
struct ExternalWatch;

impl FdWatch for ExternalWatch {
    fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}
