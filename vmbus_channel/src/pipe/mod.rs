//! Pipes: messages and byte streams over the pipe framing.
//!
//! A pipe-mode channel carries only in-band packets whose payload starts with
//! a [`PipeHeader`] `{packet_type, len}` followed by `len` message bytes
//! (the ring pads the payload to 8 bytes; `len` gives the exact length). Only
//! [`DATA`] messages are accepted from the peer: [`PARTIAL`] is a local
//! bookkeeping type and never legal on the wire, and GPA-direct set-up and
//! tear-down are not supported. Every framing violation is reported as
//! [`ChannelError::Pipe`]; the bad packet has been consumed by then, so the
//! pipe stays usable.
//!
//! - [`MessagePipe`] keeps message boundaries.
//! - [`BytePipe`] is a byte stream implementing `futures_io::AsyncRead` and
//!   `futures_io::AsyncWrite`.

mod bytes;
mod message;

pub use bytes::BytePipe;
pub use message::MessagePipe;

use crate::{ChannelError, Payload, QueueReader, Signal};
use std::task::{Context, Poll};
use vmbus_ring::wire::pipe::{DATA, MAX_PAYLOAD, PARTIAL, SETUP_GPA_DIRECT, TEARDOWN_GPA_DIRECT};
use vmbus_ring::wire::{PipeHeader, U32};
use vmbus_ring::{in_band_size, IncomingPacket, PacketKind, RingMem, WriteError};
use zerocopy::{FromZeros, IntoBytes};

/// Bytes of [`PipeHeader`] at the start of every pipe packet's payload.
const HEADER_LEN: usize = size_of::<PipeHeader>();

/// The header of a data message of `len` bytes, as it goes on the wire.
fn data_header(len: usize) -> PipeHeader {
    PipeHeader { packet_type: U32::new(DATA), len: U32::new(len as u32) }
}

/// Refuses a message the pipe framing cannot carry, before anything is written.
fn check_message_len(len: usize) -> Result<(), ChannelError> {
    if len > MAX_PAYLOAD {
        return Err(ChannelError::Write(WriteError::TooLarge {
            needed: in_band_size(HEADER_LEN.saturating_add(len)),
            max: in_band_size(HEADER_LEN + MAX_PAYLOAD),
        }));
    }
    Ok(())
}

/// Validates a received packet's framing; returns the message length.
fn message_len<M: RingMem>(packet: &IncomingPacket, payload: &Payload<'_, M>) -> Result<usize, ChannelError> {
    match packet.kind {
        PacketKind::InBand => {}
        PacketKind::Completion => {
            return Err(ChannelError::Pipe("completion packet on a pipe: pipes carry in-band data only"))
        }
        PacketKind::TransferPages(_) => {
            return Err(ChannelError::Pipe("transfer-pages packet on a pipe: pipes carry in-band data only"))
        }
        PacketKind::GpaDirect(_) => {
            return Err(ChannelError::Pipe("GPA-direct packet on a pipe: pipes carry in-band data only"))
        }
    }
    if payload.len() < HEADER_LEN {
        return Err(ChannelError::Pipe("in-band payload shorter than the 8-byte pipe header"));
    }
    let mut header = PipeHeader::new_zeroed();
    payload.read_at(0, header.as_mut_bytes()).map_err(|_| ChannelError::Pipe("pipe header runs past the payload"))?;
    match header.packet_type.get() {
        DATA => {}
        PARTIAL => return Err(ChannelError::Pipe("partial pipe header from the peer (partial is only ever local)")),
        SETUP_GPA_DIRECT => return Err(ChannelError::Pipe("set-up-GPA-direct pipe packets are not supported")),
        TEARDOWN_GPA_DIRECT => return Err(ChannelError::Pipe("tear-down-GPA-direct pipe packets are not supported")),
        _ => return Err(ChannelError::Pipe("unknown pipe packet type")),
    }
    let len = header.len.get() as usize;
    if len > MAX_PAYLOAD {
        return Err(ChannelError::Pipe("pipe message length above the 16384-byte maximum"));
    }
    if len > payload.len() - HEADER_LEN {
        return Err(ChannelError::Pipe("pipe message length runs past the packet's payload"));
    }
    Ok(len)
}

/// Copies a validated message out of the ring: its first bytes into `buf`,
/// the rest into `rest` (empty on entry). Returns the bytes put in `buf`.
fn deliver<M: RingMem>(
    packet: &IncomingPacket,
    payload: &Payload<'_, M>,
    buf: &mut [u8],
    rest: &mut Vec<u8>,
) -> Result<usize, ChannelError> {
    let len = message_len(packet, payload)?;
    let now = len.min(buf.len());
    rest.resize(len - now, 0);
    let copied = payload.read_at(HEADER_LEN, &mut buf[..now]).and_then(|()| payload.read_at(HEADER_LEN + now, rest));
    if copied.is_err() {
        rest.clear();
        return Err(ChannelError::Pipe("pipe message runs past the payload"));
    }
    Ok(now)
}

/// The receiving side both pipes share: a queue reader and the unread rest
/// of the current message, kept here rather than rewritten into the ring.
#[derive(Debug)]
struct Receiver<M, S> {
    reader: QueueReader<M, S>,
    rest: Vec<u8>,
    taken: usize,
}

impl<M: RingMem, S: Signal> Receiver<M, S> {
    fn new(reader: QueueReader<M, S>) -> Self {
        Self { reader, rest: Vec::new(), taken: 0 }
    }

    /// Bytes of the current message not yet handed out.
    fn remaining(&self) -> usize {
        self.rest.len() - self.taken
    }

    /// Hands out the next bytes of the current message.
    fn read_rest(&mut self, buf: &mut [u8]) -> usize {
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
    fn take_rest(&mut self) -> Vec<u8> {
        let rest = if self.taken == 0 { std::mem::take(&mut self.rest) } else { self.rest[self.taken..].to_vec() };
        self.rest.clear();
        self.taken = 0;
        rest
    }

    /// Receives the next message without waiting, if there is one. Call only
    /// when the current message is used up.
    fn try_next(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        debug_assert_eq!(self.remaining(), 0);
        let Self { reader, rest, .. } = self;
        let mut outcome = None;
        reader.try_read_batch(1, |packet, payload| outcome = Some(deliver(packet, payload, buf, rest)))?;
        outcome.transpose()
    }

    /// Receives the next message, waiting for it. Call only when the current
    /// message is used up. [`ChannelError::Closed`] once the peer closed and
    /// everything it sent has been received.
    fn poll_next(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, ChannelError>> {
        debug_assert_eq!(self.remaining(), 0);
        loop {
            let Self { reader, rest, .. } = self;
            let mut outcome = None;
            match reader.poll_read_batch(cx, 1, |packet, payload| outcome = Some(deliver(packet, payload, buf, rest))) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {
                    if let Some(outcome) = outcome {
                        return Poll::Ready(outcome);
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
    }
}
