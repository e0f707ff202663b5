//! The message pipe: pipe framing with message boundaries kept.

use super::{check_message_len, data_header, Receiver};
use crate::{ChannelError, Queue, QueueCounters, QueueWriter, RawChannel, Signal};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use vmbus_ring::{OutgoingPacket, RingMem};
use zerocopy::IntoBytes;

/// One end of a message pipe: whole messages of 0 to 16384 bytes
/// ([`MAX_PAYLOAD`](vmbus_ring::wire::pipe::MAX_PAYLOAD)), delivered in
/// order with their boundaries.
///
/// A message can be received whole ([`recv`](Self::recv)) or in pieces
/// ([`recv_into`](Self::recv_into)): the unread rest of a message is kept in
/// the pipe and handed out by the next calls, before any later message.
///
/// ```
/// use vmbus_channel::{block_on, connected_pair, ChannelError, MessagePipe};
///
/// let (host, guest) = connected_pair(8 * 4096)?;
/// let (mut host, mut guest) = (MessagePipe::new(host), MessagePipe::new(guest));
/// block_on(async {
///     host.send(b"hello").await?;
///     host.send(b"").await?; // empty messages are messages too
///     host.send(b"a longer message").await?;
///     assert_eq!(guest.recv().await?, b"hello");
///     assert_eq!(guest.recv().await?, b"");
///
///     // A message larger than the buffer comes in pieces, nothing lost.
///     let mut buf = [0; 10];
///     assert_eq!(guest.recv_into(&mut buf).await?, 10);
///     assert_eq!(&buf, b"a longer m");
///     assert_eq!(guest.remaining(), 6);
///     assert_eq!(guest.recv_into(&mut buf).await?, 6);
///     assert_eq!(&buf[..6], b"essage");
///     assert_eq!(guest.remaining(), 0);
///
///     // Closing ends the peer's reads once it has everything.
///     host.send(b"bye").await?;
///     host.close();
///     assert_eq!(guest.recv().await?, b"bye");
///     assert_eq!(guest.recv().await, Err(ChannelError::Closed));
///     Ok::<_, ChannelError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MessagePipe<M, S> {
    receiver: Receiver<M, S>,
    writer: QueueWriter<M, S>,
    signal: Arc<S>,
    closed: bool,
}

impl<M: RingMem, S: Signal> MessagePipe<M, S> {
    /// A message pipe over `channel`, whose peer speaks the pipe framing.
    pub fn new(channel: RawChannel<M, S>) -> Self {
        let signal = channel.signal.clone();
        let (reader, writer) = Queue::new(channel).split();
        Self { receiver: Receiver::new(reader), writer, signal, closed: false }
    }

    /// Sends `message`, waiting for ring space as needed.
    ///
    /// A message above 16384 bytes, or too large for this ring, fails with
    /// [`ChannelError::Write`]`(`[`WriteError::TooLarge`](vmbus_ring::WriteError::TooLarge)`)`
    /// and nothing is written. Dropping the future before it completes
    /// leaves nothing written either. After either end closed, fails with
    /// [`ChannelError::Closed`].
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        poll_fn(|cx| self.poll_send(cx, message)).await
    }

    /// [`send`](Self::send) as a poll function: `Ready` once the message is
    /// committed to the ring; `Pending` leaves nothing written.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, message: &[u8]) -> Poll<Result<(), ChannelError>> {
        self.check_send(message)?;
        let header = data_header(message.len());
        let mut written = 0;
        self.writer.poll_write_batch(cx, &[(OutgoingPacket::in_band(0), &[header.as_bytes(), message])], &mut written)
    }

    /// Sends `message` without waiting; [`ChannelError::Full`] if the ring
    /// has no room for it now.
    ///
    /// ```
    /// use vmbus_channel::{connected_pair, ChannelError, MessagePipe};
    /// let (host, guest) = connected_pair(4096)?;
    /// let (mut host, mut guest) = (MessagePipe::new(host), MessagePipe::new(guest));
    /// host.try_send(&[7; 3000])?;
    /// assert!(matches!(host.try_send(&[7; 3000]), Err(ChannelError::Full { .. })));
    /// assert!(matches!(host.try_send(&[7; 16385]), Err(ChannelError::Write(_))));
    /// assert_eq!(guest.try_recv()?.map(|message| message.len()), Some(3000));
    /// assert_eq!(guest.try_recv()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        self.check_send(message)?;
        let header = data_header(message.len());
        self.writer.try_write(&OutgoingPacket::in_band(0), &[header.as_bytes(), message])
    }

    /// Receives the next message whole, waiting for it; if a message was
    /// partly read with [`recv_into`](Self::recv_into), its unread rest.
    ///
    /// Fails with [`ChannelError::Closed`] once the peer closed and every
    /// message it sent has been received, and with [`ChannelError::Pipe`]
    /// for a packet that breaks the pipe framing (that packet is dropped;
    /// the next call goes on with the following one).
    pub async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        if self.receiver.remaining() == 0 {
            poll_fn(|cx| self.receiver.poll_next(cx, &mut [])).await?;
        }
        Ok(self.receiver.take_rest())
    }

    /// [`recv`](Self::recv) without waiting: `Ok(None)` if no message is
    /// there; errors as for [`recv`](Self::recv), [`ChannelError::Closed`]
    /// included.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>, ChannelError> {
        if self.receiver.remaining() == 0 && self.receiver.try_next(&mut [])?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.receiver.take_rest()))
    }

    /// Receives into `buf`, waiting for a message if none is partly read;
    /// returns the bytes copied.
    ///
    /// Copies the unread rest of the current message if there is one,
    /// otherwise the start of the next message; never bytes of two messages.
    /// A message larger than `buf` is handed out over several calls, in
    /// order; [`remaining`](Self::remaining) tells how much of it is left
    /// (0 once it is all read). An empty message gives `Ok(0)`; an empty
    /// `buf` gives `Ok(0)` at once and reads nothing. Errors as for
    /// [`recv`](Self::recv).
    pub async fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        poll_fn(|cx| self.poll_recv_into(cx, buf)).await
    }

    /// [`recv_into`](Self::recv_into) as a poll function.
    pub fn poll_recv_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, ChannelError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.receiver.remaining() > 0 {
            return Poll::Ready(Ok(self.receiver.read_rest(buf)));
        }
        self.receiver.poll_next(cx, buf)
    }

    /// [`recv_into`](Self::recv_into) without waiting: `Ok(None)` if no
    /// message is there; errors as for [`recv`](Self::recv).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        if self.receiver.remaining() > 0 {
            return Ok(Some(self.receiver.read_rest(buf)));
        }
        self.receiver.try_next(buf)
    }

    /// Bytes of the current message not yet received: non-zero after a
    /// [`recv_into`](Self::recv_into) whose buffer was too small.
    pub fn remaining(&self) -> usize {
        self.receiver.remaining()
    }

    /// Tells the peer this end sends no more: once it has received every
    /// message sent before, its receives fail with [`ChannelError::Closed`].
    /// This end can still receive what the peer had sent; the peer's sends
    /// fail with [`ChannelError::Closed`] once it sees the close. Idempotent; dropping
    /// the pipe does it too.
    pub fn close(&mut self) {
        self.closed = true;
        self.signal.close();
    }

    /// The underlying queue's counters.
    pub fn counters(&self) -> QueueCounters {
        self.writer.counters()
    }

    fn check_send(&self, message: &[u8]) -> Result<(), ChannelError> {
        if self.closed {
            return Err(ChannelError::Closed);
        }
        check_message_len(message.len())
    }
}
