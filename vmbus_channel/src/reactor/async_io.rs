//! Signal fds watched by async-io's reactor (smol, async-std).

use super::{FdWatch, Reactor};
use async_io::Async;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A [`Reactor`] that registers signal fds with async-io's global reactor,
/// the one smol and async-std run: under `smol::block_on` or
/// `async_io::block_on` the waiting thread drives it itself; otherwise
/// async-io's own thread does.
///
/// ```
/// use vmbus_channel::{AsyncIoReactor, ChannelFds, MemfdChannel, Queue};
/// use vmbus_ring::{MappingLayout, OutgoingPacket};
///
/// let (host, guest) = ChannelFds::pair(4096)?;
/// let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, AsyncIoReactor)?;
/// let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, AsyncIoReactor)?;
/// let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
/// async_io::block_on(async {
///     host.writer_mut().write(&OutgoingPacket::in_band(7), &[b"over async-io"]).await?;
///     let packet = guest.reader_mut().read().await?;
///     assert_eq!(&packet.payload[..13], b"over async-io");
///     Ok::<_, vmbus_channel::ChannelError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIoReactor;

impl Reactor for AsyncIoReactor {
    fn watch(&self, fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
        // The signal reads its fd without waiting whatever the fd's flags,
        // and a peer's eventfd may be shared: leave its flags alone.
        Ok(Box::new(AsyncIoWatch(Async::new_nonblocking(fd)?)))
    }
}

#[derive(Debug)]
struct AsyncIoWatch(Async<Arc<OwnedFd>>);

impl FdWatch for AsyncIoWatch {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_readable(cx)
    }
}
