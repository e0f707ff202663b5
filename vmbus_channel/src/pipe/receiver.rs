//! The receiving side both pipes share.

use super::deliver;
use crate::{ChannelError, QueueReader, Signal};
use std::task::{Context, Poll};
use vmbus_ring::RingMem;

/// The receiving side both pipes share: a queue reader and the unread rest
/// of the current message, kept here rather than rewritten into the ring.
#[derive(Debug)]
pub(super) struct Receiver<M, S> {
    reader: QueueReader<M, S>,
    rest: Vec<u8>,
    taken: usize,
    /// Whether the peer's end of stream has been received: nothing after
    /// it is read.
    ended: bool,
}

impl<M: RingMem, S: Signal> Receiver<M, S> {
    pub(super) fn new(reader: QueueReader<M, S>) -> Self {
        Self { reader, rest: Vec::new(), taken: 0, ended: false }
    }

    /// Bytes of the current message not yet handed out.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len() - self.taken
    }

    /// Hands out the next bytes of the current message.
    pub(super) fn read_rest(&mut self, buf: &mut [u8]) -> usize {
        let n = self.remaining().min(buf.len());
        buf[..n].copy_from_slice(&self.rest[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.rest.len() {
            self.rest.clear();
            self.taken = 0;
        }
        n
    }

    /// Hands out the whole unread rest of the current message.
    pub(super) fn take_rest(&mut self) -> Vec<u8> {
        let rest = if self.taken == 0 { std::mem::take(&mut self.rest) } else { self.rest[self.taken..].to_vec() };
        self.rest.clear();
        self.taken = 0;
        rest
    }

    /// Receives the next message without waiting, if there is one. Call only
    /// when the current message is used up. [`ChannelError::EndOfStream`]
    /// from the peer's end of stream on.
    pub(super) fn try_next(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        debug_assert_eq!(self.remaining(), 0);
        if self.ended {
            return Err(ChannelError::EndOfStream);
        }
        let Self { reader, rest, .. } = self;
        let mut outcome = None;
        reader.try_read_batch(1, |packet, payload| outcome = Some(deliver(packet, payload, buf, rest)))?;
        self.note_end(outcome.transpose())
    }

    /// Receives the next message, waiting for it. Call only when the current
    /// message is used up. [`ChannelError::EndOfStream`] from the peer's end
    /// of stream on; [`ChannelError::Closed`] once the channel closed without
    /// one and everything the peer sent has been received.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, ChannelError>> {
        debug_assert_eq!(self.remaining(), 0);
        if self.ended {
            return Poll::Ready(Err(ChannelError::EndOfStream));
        }
        let Self { reader, rest, .. } = self;
        let mut outcome = None;
        match reader.poll_read_batch(cx, 1, |packet, payload| outcome = Some(deliver(packet, payload, buf, rest))) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(_)) => match outcome {
                Some(outcome) => Poll::Ready(self.note_end(outcome)),
                // The read spent its budget on packets a pipe is not handed:
                // give the executor a turn.
                None => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }

    /// Remembers an end of stream in `outcome`, so nothing after it is read.
    fn note_end<T>(&mut self, outcome: Result<T, ChannelError>) -> Result<T, ChannelError> {
        if matches!(outcome, Err(ChannelError::EndOfStream)) {
            self.ended = true;
        }
        outcome
    }
}
