//! The message pipe: pipe framing with message boundaries kept.

use super::receiver::Receiver;
use super::sender::Sender;
use super::{check_message_len, data_header};
use crate::{ChannelError, Queue, QueueCounters, RawChannel, Signal};
use std::future::poll_fn;
use std::task::{Context, Poll};
use vmbus_ring::{OutgoingPacket, RingMem};
use zerocopy::IntoBytes;

/// One end of a message pipe: whole messages of 1 to 16384 bytes
/// ([`MAX_PAYLOAD`](vmbus_ring::wire::pipe::MAX_PAYLOAD)), delivered in
/// order with their boundaries.
///
/// A message can be received whole ([`recv`](Self::recv)) or in pieces
/// ([`recv_into`](Self::recv_into)): the unread rest of a message is kept in
/// the pipe and handed out by the next calls, before any later message.
///
/// [`shutdown`](Self::shutdown) ends this end's direction: the peer
/// receives every message sent before, then [`ChannelError::EndOfStream`],
/// while this end goes on receiving. [`close`](Self::close) ends the
/// direction too, then closes the channel; so does dropping the pipe,
/// without waiting. There are no empty messages: on the wire, a
/// zero-length message is the end of stream.
///
/// ```
/// use vmbus_channel::{block_on, connected_pair, ChannelError, MessagePipe};
///
/// let (host, guest) = connected_pair(8 * 4096)?;
/// let (mut host, mut guest) = (MessagePipe::new(host), MessagePipe::new(guest));
/// block_on(async {
///     host.send(b"hello").await?;
///     assert_eq!(host.send(b"").await, Err(ChannelError::EmptyMessage));
///     host.send(b"a longer message").await?;
///     assert_eq!(guest.recv().await?, b"hello");
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
///     // Shutting down ends the peer's receives once it has everything,
///     // and leaves the other direction open.
///     host.send(b"bye").await?;
///     host.shutdown().await?;
///     assert_eq!(guest.recv().await?, b"bye");
///     assert_eq!(guest.recv().await, Err(ChannelError::EndOfStream));
///     assert_eq!(host.send(b"more").await, Err(ChannelError::ShutDown));
///     guest.send(b"answer").await?;
///     guest.close().await?;
///     assert_eq!(host.recv().await?, b"answer");
///     assert_eq!(host.recv().await, Err(ChannelError::EndOfStream));
///     Ok::<_, ChannelError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MessagePipe<M: RingMem, S: Signal> {
    receiver: Receiver<M, S>,
    sender: Sender<M, S>,
}

impl<M: RingMem, S: Signal> MessagePipe<M, S> {
    /// A message pipe over `channel`, whose peer speaks the pipe framing.
    pub fn new(channel: RawChannel<M, S>) -> Self {
        let signal = channel.signal.clone();
        let (reader, writer) = Queue::new(channel).split();
        Self { receiver: Receiver::new(reader), sender: Sender::new(writer, signal) }
    }

    /// Sends `message`, waiting for ring space as needed.
    ///
    /// An empty message fails with [`ChannelError::EmptyMessage`]; one above
    /// 16384 bytes, or too large for this ring, with
    /// [`ChannelError::Write`]`(`[`WriteError::TooLarge`](vmbus_ring::WriteError::TooLarge)`)`;
    /// nothing is written then. Dropping the future before it completes
    /// leaves nothing written either. Fails with [`ChannelError::ShutDown`]
    /// once this end shut down or closed, and with [`ChannelError::Closed`]
    /// once the channel closed.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        poll_fn(|cx| self.poll_send(cx, message)).await
    }

    /// [`send`](Self::send) as a poll function: `Ready` once the message is
    /// committed to the ring; `Pending` leaves nothing written.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, message: &[u8]) -> Poll<Result<(), ChannelError>> {
        check_message_len(message.len())?;
        let header = data_header(message.len());
        let mut written = 0;
        let packet = [(OutgoingPacket::in_band(0), &[header.as_bytes(), message][..])];
        self.sender.data_writer()?.poll_write_batch(cx, &packet, &mut written)
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
        check_message_len(message.len())?;
        let header = data_header(message.len());
        self.sender.data_writer()?.try_write(&OutgoingPacket::in_band(0), &[header.as_bytes(), message])
    }

    /// Receives the next message whole, waiting for it; if a message was
    /// partly read with [`recv_into`](Self::recv_into), its unread rest.
    ///
    /// Fails with [`ChannelError::EndOfStream`] once the peer ended its
    /// direction (shut down or closed) and every message it sent before has
    /// been received, and from then on; with [`ChannelError::Closed`] once
    /// the channel closed without an end of stream (the peer died) and
    /// everything was received; and with [`ChannelError::Pipe`] for a packet
    /// that breaks the pipe framing (that packet is dropped; the next call
    /// goes on with the following one).
    pub async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        if self.receiver.remaining() == 0 {
            poll_fn(|cx| self.receiver.poll_next(cx, &mut [])).await?;
        }
        Ok(self.receiver.take_rest())
    }

    /// [`recv`](Self::recv) without waiting: `Ok(None)` if no message is
    /// there (or the read spent its work budget on packets a pipe is not
    /// handed; see [`QueueReader::try_read_batch`](crate::QueueReader::try_read_batch));
    /// errors as for [`recv`](Self::recv), [`ChannelError::Closed`]
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
    /// (0 once it is all read). An empty `buf` gives `Ok(0)` at once and
    /// reads nothing. Errors as for
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

    /// Ends this end's direction: once the peer has received every message
    /// sent before, its receives fail with [`ChannelError::EndOfStream`].
    /// Writes the end-of-stream packet once (later calls return at once),
    /// waiting for space only if the peer broke the ring's rules; the room
    /// for it is kept free. Receiving goes on. From the first call on, sends
    /// fail with [`ChannelError::ShutDown`]. [`ChannelError::Closed`] if the
    /// channel closed first.
    pub async fn shutdown(&mut self) -> Result<(), ChannelError> {
        poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// [`shutdown`](Self::shutdown) as a poll function.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.sender.poll_shutdown(cx)
    }

    /// Ends this end's direction as [`shutdown`](Self::shutdown) does, then
    /// closes the channel: the peer's sends fail with
    /// [`ChannelError::Closed`] once it sees the close. This end can still
    /// receive what the peer had sent before. Idempotent; dropping the pipe
    /// does it too, without waiting. (To keep receiving, shut down instead.)
    pub async fn close(&mut self) -> Result<(), ChannelError> {
        poll_fn(|cx| self.poll_close(cx)).await
    }

    /// [`close`](Self::close) as a poll function.
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.sender.poll_close(cx)
    }

    /// The underlying queue's counters.
    pub fn counters(&self) -> QueueCounters {
        self.sender.writer().counters()
    }
}
