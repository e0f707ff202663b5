//! Signal fds watched by a tokio runtime.
//!
//! The crate's one `unsafe` block is here: tokio's registration of an fd is
//! `unsafe` because it cannot know that the fd stays open.
#![allow(unsafe_code)]

use super::{FdWatch, Reactor};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;

/// A [`Reactor`] that registers signal fds with a tokio runtime's reactor
/// (`tokio::io::unix::AsyncFd`): waiting tasks are woken by the runtime's
/// own I/O driver, with no thread of this crate. Works with current-thread
/// and multi-thread runtimes; the runtime needs its I/O driver
/// (`enable_io`, or `enable_all`).
///
/// ```
/// use vmbus_channel::{ChannelFds, MemfdChannel, Queue, TokioReactor};
/// use vmbus_ring::{MappingLayout, OutgoingPacket};
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
/// runtime.block_on(async {
///     let reactor = TokioReactor::current()?;
///     let (host, guest) = ChannelFds::pair(4096)?;
///     let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, reactor.clone())?;
///     let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, reactor)?;
///     let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
///     let reader = tokio::spawn(async move { guest.reader_mut().read().await });
///     host.writer_mut().write(&OutgoingPacket::in_band(7), &[b"over tokio"]).await?;
///     let packet = reader.await??;
///     assert_eq!(&packet.payload[..10], b"over tokio");
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokioReactor {
    handle: Handle,
}

impl TokioReactor {
    /// The reactor of the runtime this is called from; fails with
    /// [`io::ErrorKind::Other`] outside one.
    pub fn current() -> io::Result<Self> {
        Handle::try_current().map(Self::new).map_err(io::Error::other)
    }

    /// The reactor of the runtime `handle` belongs to.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

impl Reactor for TokioReactor {
    fn watch(&self, fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
        let _runtime = self.handle.enter();
        // SAFETY: tokio requires the fd to stay open, and to be the same fd,
        // for as long as the `AsyncFd` lives. It owns `fd`, an
        // `Arc<OwnedFd>`: the fd closes only when the last `Arc` goes, which
        // is not before this `AsyncFd` drops its own, and an `OwnedFd`'s
        // number never changes. Nothing the peer does can close our fd.
        let register = || unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        // Tokio panics, rather than fail, on a runtime built without its I/O
        // driver: make that the error it is.
        let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(register)).map_err(|_| {
            io::Error::other("the tokio runtime has no I/O driver (build it with enable_io or enable_all)")
        })?;
        Ok(Box::new(TokioWatch(registered.map_err(io::Error::from)?)))
    }
}

#[derive(Debug)]
struct TokioWatch(AsyncFd<Arc<OwnedFd>>);

impl FdWatch for TokioWatch {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                // Cleared before the signal reads the fd: whatever arrives
                // after the read makes the fd ready again, so nothing is lost.
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}
