//! The sending side both pipes share, and its end of stream.

use super::data_header;
use crate::{ChannelError, PacketWithPayload, QueueWriter, Signal};
use std::sync::Arc;
use std::task::{Context, Poll};
use vmbus_ring::wire::pipe::END_OF_STREAM_SIZE;
use vmbus_ring::{OutgoingPacket, RingMem};
use zerocopy::IntoBytes;

/// Where a pipe end's sending direction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Data can be sent.
    Open,
    /// Shut down; the end-of-stream packet is not written yet.
    Ending,
    /// The end-of-stream packet is in the ring.
    Ended,
}

/// A queue writer that keeps room for the end-of-stream packet, and sends
/// that packet once.
#[derive(Debug)]
pub(super) struct Sender<M: RingMem, S: Signal> {
    writer: QueueWriter<M, S>,
    signal: Arc<S>,
    direction: Direction,
}

impl<M: RingMem, S: Signal> Sender<M, S> {
    pub(super) fn new(mut writer: QueueWriter<M, S>, signal: Arc<S>) -> Self {
        writer.keep_free(END_OF_STREAM_SIZE);
        Self { writer, signal, direction: Direction::Open }
    }

    /// The writer, for data; [`ChannelError::ShutDown`] once this direction
    /// is shut down.
    pub(super) fn data_writer(&mut self) -> Result<&mut QueueWriter<M, S>, ChannelError> {
        match self.direction {
            Direction::Open => Ok(&mut self.writer),
            Direction::Ending | Direction::Ended => Err(ChannelError::ShutDown),
        }
    }

    /// The writer, for counters.
    pub(super) fn writer(&self) -> &QueueWriter<M, S> {
        &self.writer
    }

    /// Ends this direction: writes the end-of-stream packet, waiting for
    /// space if a misbehaving peer left none, unless it is written already.
    /// From the first call on, data sends fail with [`ChannelError::ShutDown`].
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        if self.direction == Direction::Ended {
            return Poll::Ready(Ok(()));
        }
        self.start_ending();
        let header = data_header(0);
        let packet: [PacketWithPayload<'_>; 1] = [(OutgoingPacket::in_band(0), &[header.as_bytes()])];
        let written = self.writer.poll_write_batch(cx, &packet, &mut 0);
        if let Poll::Ready(Ok(())) = written {
            self.direction = Direction::Ended;
        }
        written
    }

    /// Ends this direction, then closes the channel: the peer's sends fail
    /// once it sees the close. A channel the peer closed already needs no end
    /// of stream, so that is no error.
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let ended = std::task::ready!(self.poll_shutdown(cx));
        self.signal.close();
        Poll::Ready(match ended {
            Err(ChannelError::Closed) => Ok(()),
            other => other,
        })
    }

    /// Stops data sends and frees the room kept for the end of stream.
    fn start_ending(&mut self) {
        if self.direction == Direction::Open {
            self.direction = Direction::Ending;
            self.writer.keep_free(0);
        }
    }
}

impl<M: RingMem, S: Signal> Drop for Sender<M, S> {
    /// Dropping a pipe ends its direction as closing does, without waiting:
    /// the room kept for the end of stream means it fits unless the peer
    /// broke the ring's rules.
    fn drop(&mut self) {
        if self.direction == Direction::Ended {
            return;
        }
        self.start_ending();
        let header = data_header(0);
        let _ = self.writer.try_write(&OutgoingPacket::in_band(0), &[header.as_bytes()]);
    }
}
