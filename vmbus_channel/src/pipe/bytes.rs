//! The byte pipe: a byte stream over the pipe framing.

use super::receiver::Receiver;
use super::sender::Sender;
use super::{data_header, HEADER_LEN};
use crate::{ChannelError, PacketWithPayload, Queue, QueueCounters, RawChannel, Signal};
use futures_io::{AsyncRead, AsyncWrite};
use smallvec::SmallVec;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use vmbus_ring::wire::pipe::MAX_PAYLOAD;
use vmbus_ring::wire::PipeHeader;
use vmbus_ring::wire::PACKET_ALIGNMENT;
use vmbus_ring::{in_band_size, OutgoingPacket, RingMem};
use zerocopy::IntoBytes;

/// Packets one `poll_write` writes at most (and commits together).
const PACKETS_PER_WRITE: usize = 4;

/// Messages one `poll_read` takes at most once it has some bytes, so a busy
/// peer cannot keep a read going.
const MESSAGES_PER_READ: usize = 16;

/// One end of a byte pipe: a byte stream over the pipe framing, through
/// `futures_io`'s [`AsyncRead`] and [`AsyncWrite`].
///
/// Writes are cut into messages of at most 16384 bytes, and at most half
/// the ring so that the two sides can work at once; a write may take only a
/// prefix of the buffer and say so. Written bytes are committed to the ring
/// before the write returns, so flushing has nothing to do. Reads return
/// bytes across message boundaries.
///
/// [`shutdown`](Self::shutdown) ends this end's direction, as
/// `shutdown(SHUT_WR)` does a socket's: the peer reads every byte written
/// before, then end-of-file (`Ok(0)`), while this end goes on reading what
/// the peer sends. Closing ([`AsyncWrite::poll_close`]) ends the direction
/// too, then closes the channel; so does dropping the pipe, without waiting.
///
/// The pipe needs no particular executor: it waits through the channel's
/// signal. Any executor, or [`block_on`](crate::block_on), drives it.
///
/// ```
/// use futures_io::{AsyncRead, AsyncWrite};
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use vmbus_channel::{block_on, connected_pair, BytePipe};
///
/// let (host, guest) = connected_pair(4 * 4096)?;
/// let (mut host, mut guest) = (BytePipe::new(host), BytePipe::new(guest));
/// block_on(async {
///     // (With `futures::io::AsyncWriteExt` this is `host.write(..).await`.)
///     let n = poll_fn(|cx| Pin::new(&mut host).poll_write(cx, b"hello, ")).await?;
///     assert_eq!(n, 7);
///     poll_fn(|cx| Pin::new(&mut host).poll_write(cx, b"world")).await?;
///     host.shutdown().await?;
///
///     // Reads cross message boundaries, then end with end-of-file.
///     let mut received = Vec::new();
///     let mut buf = [0; 5];
///     loop {
///         let n = poll_fn(|cx| Pin::new(&mut guest).poll_read(cx, &mut buf)).await?;
///         if n == 0 {
///             break;
///         }
///         received.extend_from_slice(&buf[..n]);
///     }
///     assert_eq!(received, b"hello, world");
///
///     // The other direction is still open: the guest answers, then closes.
///     poll_fn(|cx| Pin::new(&mut guest).poll_write(cx, b"bye")).await?;
///     poll_fn(|cx| Pin::new(&mut guest).poll_close(cx)).await?;
///     let n = poll_fn(|cx| Pin::new(&mut host).poll_read(cx, &mut buf)).await?;
///     assert_eq!(&buf[..n], b"bye");
///     assert_eq!(poll_fn(|cx| Pin::new(&mut host).poll_read(cx, &mut buf)).await?, 0);
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BytePipe<M: RingMem, S: Signal> {
    receiver: Receiver<M, S>,
    sender: Sender<M, S>,
    /// Largest message this end writes.
    chunk: usize,
    /// An error met after a read had already got bytes, for the next read.
    read_error: Option<ChannelError>,
}

impl<M: RingMem, S: Signal> BytePipe<M, S> {
    /// A byte pipe over `channel`, whose peer speaks the pipe framing.
    pub fn new(channel: RawChannel<M, S>) -> Self {
        let signal = channel.signal.clone();
        let chunk = message_size(channel.outgoing.max_packet_size());
        let (reader, writer) = Queue::new(channel).split();
        Self { receiver: Receiver::new(reader), sender: Sender::new(writer, signal), chunk, read_error: None }
    }

    /// Ends this end's direction: the peer reads every byte written before,
    /// then end-of-file. Writes the end-of-stream packet once (later calls
    /// return at once), waiting for space only if the peer broke the ring's
    /// rules; the room for it is kept free. Reading goes on. From the first
    /// call on, writes fail with [`io::ErrorKind::BrokenPipe`] wrapping
    /// [`ChannelError::ShutDown`].
    pub async fn shutdown(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// [`shutdown`](Self::shutdown) as a poll function.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.sender.poll_shutdown(cx).map_err(io_error)
    }

    /// The largest message this end writes, in bytes: 16384, or less for a
    /// small ring.
    ///
    /// ```
    /// let (host, _guest) = vmbus_channel::connected_pair(4096).unwrap();
    /// assert_eq!(vmbus_channel::BytePipe::new(host).message_size(), 2008);
    /// ```
    pub fn message_size(&self) -> usize {
        self.chunk
    }

    /// The underlying queue's counters.
    pub fn counters(&self) -> QueueCounters {
        self.sender.writer().counters()
    }

    fn poll_read_inner(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, ChannelError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(error) = self.read_error.take() {
            return Poll::Ready(Err(error));
        }
        let mut n = self.receiver.read_rest(buf);
        if n == 0 {
            // Messages are never empty, so a message gives bytes: only the
            // end of stream, or a channel closed without one, gives none.
            n = match self.receiver.poll_next(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(ChannelError::EndOfStream | ChannelError::Closed)) => return Poll::Ready(Ok(0)),
                Poll::Ready(result) => result?,
            };
        }
        // Top the buffer up with messages already there, without waiting.
        for _ in 0..MESSAGES_PER_READ {
            if n == buf.len() || self.receiver.remaining() > 0 {
                break;
            }
            match self.receiver.try_next(&mut buf[n..]) {
                Ok(Some(got)) => n += got,
                // The next read finds the end again and reports end-of-file.
                Ok(None) | Err(ChannelError::EndOfStream | ChannelError::Closed) => break,
                Err(error) => {
                    self.read_error = Some(error);
                    break;
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, ChannelError>> {
        let writer = self.sender.data_writer()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let chunks: SmallVec<[&[u8]; PACKETS_PER_WRITE]> = buf.chunks(self.chunk).take(PACKETS_PER_WRITE).collect();
        let headers: SmallVec<[PipeHeader; PACKETS_PER_WRITE]> =
            chunks.iter().map(|chunk| data_header(chunk.len())).collect();
        let pieces: SmallVec<[[&[u8]; 2]; PACKETS_PER_WRITE]> =
            chunks.iter().zip(&headers).map(|(chunk, header)| [header.as_bytes(), chunk]).collect();
        let packets: SmallVec<[PacketWithPayload<'_>; PACKETS_PER_WRITE]> =
            pieces.iter().map(|pieces| (OutgoingPacket::in_band(0), &pieces[..])).collect();
        // Packets written before a `Pending` or an error are committed: report
        // them as written rather than keep a count across calls, since the
        // next call may bring a different buffer.
        let mut written = 0;
        let outcome = writer.poll_write_batch(cx, &packets, &mut written);
        let bytes = chunks[..written].iter().map(|chunk| chunk.len()).sum();
        match outcome {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(bytes)),
            _ if written > 0 => Poll::Ready(Ok(bytes)),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<M: RingMem + Unpin, S: Signal> AsyncRead for BytePipe<M, S> {
    /// Reads bytes, across message boundaries. `Ok(0)` is end-of-file, from
    /// then on: the peer ended its direction (or the channel closed) and
    /// everything it wrote before has been read. A packet that
    /// breaks the pipe framing is an [`io::ErrorKind::InvalidData`] error
    /// wrapping [`ChannelError::Pipe`]; the stream goes on after it.
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_inner(cx, buf).map_err(io_error)
    }
}

impl<M: RingMem + Unpin, S: Signal> AsyncWrite for BytePipe<M, S> {
    /// Writes a prefix of `buf` (at least one message's worth when there is
    /// room) and returns its length; the bytes are committed to the ring.
    /// Fails with [`io::ErrorKind::BrokenPipe`] once this end shut down
    /// ([`ChannelError::ShutDown`]) or the channel closed
    /// ([`ChannelError::Closed`]).
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_inner(cx, buf).map_err(io_error)
    }

    /// Ready at once: writes commit their packets before they return.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends this end's direction as [`shutdown`](BytePipe::shutdown) does,
    /// then closes the channel: the peer reads what was written, then
    /// end-of-file, and its writes fail once it sees the close. This end can
    /// still read what the peer had written before. Idempotent. (To keep
    /// receiving, shut down instead.)
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().sender.poll_close(cx).map_err(io_error)
    }
}

/// The message size for a ring whose largest packet is `max_packet`: the
/// pipe maximum, or what fits in half the ring.
fn message_size(max_packet: usize) -> usize {
    let half = max_packet / 2 / PACKET_ALIGNMENT * PACKET_ALIGNMENT;
    let overhead = in_band_size(HEADER_LEN);
    half.saturating_sub(overhead).clamp(1, MAX_PAYLOAD)
}

fn io_error(error: ChannelError) -> io::Error {
    let kind = match error {
        ChannelError::Closed | ChannelError::ShutDown => io::ErrorKind::BrokenPipe,
        ChannelError::Pipe(_) | ChannelError::Corrupt(_) => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}
