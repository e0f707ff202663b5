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
//!
//! # End of stream
//!
//! A data message of length 0 ends the stream in its direction, as Linux's
//! `hv_sock` (AF_VSOCK over Hyper-V) speaks it. Each end can end its own
//! direction (`shutdown`) and go on receiving the other; closing ends it
//! too, then closes the channel. The end-of-stream packet goes out exactly
//! once, and data writes leave the last
//! [`END_OF_STREAM_SIZE`](vmbus_ring::wire::pipe::END_OF_STREAM_SIZE) bytes
//! of free space for it, so it fits even when the ring is full of data.
//!
//! A receiver stops at the end: it reads nothing after it, and reports end
//! of stream from then on. Whatever a broken peer sends after its end
//! (data, more ends) stays in the ring unread; it costs the receiver
//! nothing, and the peer's later writes wait for space as they would for
//! any reader that stopped.

mod bytes;
mod message;
mod receiver;
mod sender;

pub use bytes::BytePipe;
pub use message::MessagePipe;

use crate::{ChannelError, Payload};
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

/// Refuses a message the pipe framing cannot carry, before anything is
/// written: an empty one (it would read as end of stream) or one above the
/// pipe maximum.
fn check_message_len(len: usize) -> Result<(), ChannelError> {
    if len == 0 {
        return Err(ChannelError::EmptyMessage);
    }
    if len > MAX_PAYLOAD {
        return Err(ChannelError::Write(WriteError::TooLarge {
            needed: in_band_size(HEADER_LEN.saturating_add(len)),
            max: in_band_size(HEADER_LEN + MAX_PAYLOAD),
        }));
    }
    Ok(())
}

/// Validates a received packet's framing; returns the message length, 0
/// for the end of stream.
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
/// the rest into `rest` (empty on entry). Returns the bytes put in `buf`;
/// [`ChannelError::EndOfStream`] for the end-of-stream packet.
fn deliver<M: RingMem>(
    packet: &IncomingPacket,
    payload: &Payload<'_, M>,
    buf: &mut [u8],
    rest: &mut Vec<u8>,
) -> Result<usize, ChannelError> {
    let len = message_len(packet, payload)?;
    if len == 0 {
        return Err(ChannelError::EndOfStream);
    }
    let now = len.min(buf.len());
    rest.resize(len - now, 0);
    let copied = payload.read_at(HEADER_LEN, &mut buf[..now]).and_then(|()| payload.read_at(HEADER_LEN + now, rest));
    if copied.is_err() {
        rest.clear();
        return Err(ChannelError::Pipe("pipe message runs past the payload"));
    }
    Ok(now)
}
