//! Packets as the endpoints hand them out and take them in, and their sizes.

use crate::batch_id::BatchId;
use crate::gpa::{GpaRangeBuf, GpaRanges};
use crate::wire::{PacketDescriptor, PacketFooter, TransferPageRange, PACKET_ALIGNMENT};
use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

/// Largest packet the descriptor can describe, footer included: `length8`
/// is a `u16` counting 8-byte words.
pub const MAX_PACKET_SIZE: usize = u16::MAX as usize * PACKET_ALIGNMENT + FOOTER_LEN;

const DESCRIPTOR_LEN: usize = size_of::<PacketDescriptor>();
const FOOTER_LEN: usize = size_of::<PacketFooter>();
/// Size of the transfer-pages and GPA-direct headers that follow the descriptor.
const TYPE_HEADER_LEN: usize = 8;

/// Where a packet's payload lies in the data area, as handed out by the
/// batch that read or reserved it. It may wrap around the end of the data
/// area; read or write it through that batch, which refuses ranges from any
/// other (an earlier batch's bytes may hold other packets by now).
///
/// Two ranges are equal when they cover the same bytes, whichever batch
/// they came from.
#[derive(Debug, Clone, Copy)]
pub struct PayloadRange {
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) batch: BatchId,
}

impl PartialEq for PayloadRange {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, self.len) == (other.offset, other.len)
    }
}

impl Eq for PayloadRange {}

impl Hash for PayloadRange {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.offset, self.len).hash(state)
    }
}

impl PayloadRange {
    /// The `len` bytes at data-area offset `offset`, belonging to no batch:
    /// for comparing with the ranges batches hand out (it equals one over
    /// the same bytes). Batches refuse to read or write through it.
    pub const fn new(offset: u32, len: u32) -> Self {
        Self { offset, len, batch: BatchId::NONE }
    }

    /// Data-area offset of the first payload byte.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Length in bytes. For a received packet this includes the sender's
    /// padding to a multiple of 8: the wire does not carry the exact length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a received packet's range list lies in the private copy its batch
/// keeps: read it with [`ReadBatch::gpa_ranges`](crate::ReadBatch::gpa_ranges)
/// or [`ReadBatch::transfer_page_ranges`](crate::ReadBatch::transfer_page_ranges)
/// while the batch lives.
///
/// The list is copied out of the ring (once, and validated) when the packet
/// is read, into storage the batch reuses, so a packet stays small and no
/// list is copied again unless asked for. Two lists are equal when they
/// have as many ranges at the same place of their batches' copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RangeList {
    /// First word of the list in the batch's copy.
    pub(crate) start: u32,
    /// Words the list takes.
    pub(crate) words: u32,
    /// Ranges in the list.
    pub(crate) count: u32,
}

impl RangeList {
    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no ranges (a transfer-pages packet may have none;
    /// a GPA-direct packet never does).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The transfer-pages part of a packet: ranges into a transfer page set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferPages {
    /// The transfer page set.
    pub set_id: u16,
    /// Whether the sender owns the set.
    pub sender_owns_set: bool,
    /// The ranges, read through the batch.
    pub ranges: RangeList,
}

/// What kind of packet was received, with its type-specific header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// In-band data.
    InBand,
    /// A completion; the transaction id echoes the request's.
    Completion,
    /// Data described by ranges into a transfer page set.
    TransferPages(TransferPages),
    /// Data described by guest-physical ranges, read through the batch.
    GpaDirect(RangeList),
}

/// A received packet's kind with its range list copied out of its batch,
/// to keep after the batch ends:
/// [`ReadBatch::owned_kind`](crate::ReadBatch::owned_kind) makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedPacketKind {
    /// In-band data.
    InBand,
    /// A completion.
    Completion,
    /// Data described by ranges into a transfer page set.
    TransferPages {
        /// The transfer page set.
        set_id: u16,
        /// Whether the sender owns the set.
        sender_owns_set: bool,
        /// The ranges.
        ranges: Vec<TransferPageRange>,
    },
    /// Data described by guest-physical ranges.
    GpaDirect(GpaRangeBuf),
}

/// A received packet, validated. The header fields are private copies; the
/// payload, and the range list of a transfer-pages or GPA-direct packet, are
/// read through the batch that read the packet.
///
/// Small (at most 48 bytes) and `Copy`, so that handing one out costs a few
/// register moves, whatever its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingPacket {
    /// Data-area offset where the packet starts.
    pub offset: u32,
    /// Transaction id.
    pub transaction_id: u64,
    /// Whether the sender asked for a completion.
    pub completion_requested: bool,
    /// Kind and type-specific header.
    pub kind: PacketKind,
    /// Where the payload lies.
    pub payload: PayloadRange,
}

const _: () = assert!(size_of::<IncomingPacket>() <= 48);

/// What kind of packet to send, with its type-specific header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingKind<'a> {
    /// In-band data.
    InBand,
    /// A completion; set the transaction id to the request's.
    Completion,
    /// Data described by ranges into a transfer page set.
    TransferPages {
        /// The transfer page set.
        set_id: u16,
        /// Whether the sender owns the set.
        sender_owns_set: bool,
        /// The ranges.
        ranges: &'a [TransferPageRange],
    },
    /// Data described by guest-physical ranges.
    GpaDirect(GpaRanges<'a>),
}

impl OutgoingKind<'_> {
    /// Bytes of type-specific header between the descriptor and the payload.
    pub fn header_len(&self) -> usize {
        match self {
            OutgoingKind::InBand | OutgoingKind::Completion => 0,
            OutgoingKind::TransferPages { ranges, .. } => TYPE_HEADER_LEN + size_of_val(*ranges),
            OutgoingKind::GpaDirect(ranges) => TYPE_HEADER_LEN + size_of_val(ranges.words()),
        }
    }
}

/// A packet to send: its kind, transaction id and flags. The payload is
/// given separately, to the batch's `write` or `reserve`.
///
/// ```
/// use vmbus_ring::OutgoingPacket;
/// let request = OutgoingPacket::in_band(7).with_completion_requested();
/// assert_eq!(request.size(100), 16 + 104 + 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingPacket<'a> {
    /// Transaction id.
    pub transaction_id: u64,
    /// Ask the receiver for a completion.
    pub completion_requested: bool,
    /// Kind and type-specific header.
    pub kind: OutgoingKind<'a>,
}

impl<'a> OutgoingPacket<'a> {
    /// An in-band data packet.
    pub fn in_band(transaction_id: u64) -> Self {
        Self { transaction_id, completion_requested: false, kind: OutgoingKind::InBand }
    }

    /// A completion of the request with `transaction_id`.
    pub fn completion(transaction_id: u64) -> Self {
        Self { transaction_id, completion_requested: false, kind: OutgoingKind::Completion }
    }

    /// A transfer-pages packet.
    pub fn transfer_pages(
        transaction_id: u64,
        set_id: u16,
        sender_owns_set: bool,
        ranges: &'a [TransferPageRange],
    ) -> Self {
        let kind = OutgoingKind::TransferPages { set_id, sender_owns_set, ranges };
        Self { transaction_id, completion_requested: false, kind }
    }

    /// A GPA-direct packet.
    pub fn gpa_direct(transaction_id: u64, ranges: GpaRanges<'a>) -> Self {
        Self { transaction_id, completion_requested: false, kind: OutgoingKind::GpaDirect(ranges) }
    }

    /// The same packet with the completion-requested flag set.
    pub fn with_completion_requested(self) -> Self {
        Self { completion_requested: true, ..self }
    }

    /// Exact bytes this packet takes in the ring with a payload of
    /// `payload_len` bytes, footer and padding included.
    pub fn size(&self, payload_len: usize) -> usize {
        packet_size(self.kind.header_len(), payload_len)
    }
}

/// Exact ring bytes of a packet with `header_len` bytes of type-specific
/// header and `payload_len` bytes of payload: descriptor, header, payload
/// padded to 8, footer. Saturates instead of overflowing.
pub const fn packet_size(header_len: usize, payload_len: usize) -> usize {
    let unpadded = DESCRIPTOR_LEN.saturating_add(header_len).saturating_add(payload_len);
    round_up8(unpadded).saturating_add(FOOTER_LEN)
}

/// Exact ring bytes of an in-band or completion packet.
pub const fn in_band_size(payload_len: usize) -> usize {
    packet_size(0, payload_len)
}

/// Exact ring bytes of a transfer-pages packet with `range_count` ranges.
pub const fn transfer_pages_size(range_count: usize, payload_len: usize) -> usize {
    packet_size(TYPE_HEADER_LEN.saturating_add(range_count.saturating_mul(8)), payload_len)
}

/// Exact ring bytes of a GPA-direct packet with `range_count` ranges spanning
/// `page_count` pages in all.
pub const fn gpa_direct_size(range_count: usize, page_count: usize, payload_len: usize) -> usize {
    let words = range_count.saturating_add(page_count);
    packet_size(TYPE_HEADER_LEN.saturating_add(words.saturating_mul(8)), payload_len)
}

pub(crate) const fn round_up8(len: usize) -> usize {
    match len.checked_next_multiple_of(PACKET_ALIGNMENT) {
        Some(rounded) => rounded,
        None => usize::MAX & !(PACKET_ALIGNMENT - 1),
    }
}
