//! The VMBus ring wire format: on-ring structures and constants.
//!
//! Every structure is little-endian and derives `zerocopy` traits, so it is
//! converted to and from bytes without hand-written shuffling. Sizes are
//! checked at compile time against the wire facts.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Little-endian integers as they lie on the wire; `.get()` gives the value.
pub use zerocopy::little_endian::{U16, U32, U64};

/// Size of the control page and of every data page, in bytes.
pub const PAGE_SIZE: usize = 4096;

/// Every packet, and every ring index, is a multiple of this many bytes.
pub const PACKET_ALIGNMENT: usize = 8;

/// Largest data area a ring can have: offsets on the wire are `u32`.
pub const MAX_DATA_LEN: usize = (u32::MAX as usize / PAGE_SIZE) * PAGE_SIZE;

/// Byte offsets of the control words within the control page.
pub mod control {
    /// Data-area offset where the writer will put the next packet.
    pub const WRITE_INDEX: usize = 0;
    /// Data-area offset of the next packet the reader will read.
    pub const READ_INDEX: usize = 4;
    /// Non-zero while the reader polls and does not want signals.
    pub const INTERRUPT_MASK: usize = 8;
    /// Non-zero while the writer is blocked needing this many free bytes.
    pub const PENDING_SEND_SIZE: usize = 12;
    /// Feature bits the writer advertises.
    pub const FEATURE_BITS: usize = 64;
}

/// Feature bit 0: the writer supports pending-send-size signalling.
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// Packet types (the descriptor's `type` field).
pub mod packet_type {
    /// Invalid (never sent).
    pub const INVALID: u16 = 0;
    /// Synchronisation packet (historic).
    pub const SYNCH: u16 = 1;
    /// Add a transfer page set (historic).
    pub const ADD_TRANSFER_PAGE_SET: u16 = 2;
    /// Remove a transfer page set (historic).
    pub const REMOVE_TRANSFER_PAGE_SET: u16 = 3;
    /// Establish a GPADL (historic).
    pub const ESTABLISH_GPADL: u16 = 4;
    /// Tear down a GPADL (historic).
    pub const TEARDOWN_GPADL: u16 = 5;
    /// In-band data: the payload follows the descriptor.
    pub const DATA_IN_BAND: u16 = 6;
    /// Transfer pages: a range list into a transfer page set, then the payload.
    pub const DATA_TRANSFER_PAGES: u16 = 7;
    /// Data using a GPADL (historic).
    pub const DATA_USING_GPADL: u16 = 8;
    /// GPA direct: a list of guest-physical ranges, then the payload.
    pub const DATA_GPA_DIRECT: u16 = 9;
    /// Cancel a request (historic).
    pub const CANCEL_REQUEST: u16 = 10;
    /// Completion of a request; the transaction id echoes the request's.
    pub const COMPLETION: u16 = 11;
    /// Additional data, in-band (historic).
    pub const DATA_USING_ADDITIONAL_PACKET: u16 = 12;
    /// Additional data (historic).
    pub const ADDITIONAL_DATA: u16 = 13;

    /// The name of a packet type, or `None` for a value never defined.
    pub const fn name(packet_type: u16) -> Option<&'static str> {
        Some(match packet_type {
            INVALID => "invalid",
            SYNCH => "synch",
            ADD_TRANSFER_PAGE_SET => "add transfer page set",
            REMOVE_TRANSFER_PAGE_SET => "remove transfer page set",
            ESTABLISH_GPADL => "establish GPADL",
            TEARDOWN_GPADL => "teardown GPADL",
            DATA_IN_BAND => "in-band data",
            DATA_TRANSFER_PAGES => "transfer pages",
            DATA_USING_GPADL => "data using GPADL",
            DATA_GPA_DIRECT => "GPA direct",
            CANCEL_REQUEST => "cancel request",
            COMPLETION => "completion",
            DATA_USING_ADDITIONAL_PACKET => "data using additional packet",
            ADDITIONAL_DATA => "additional data",
            _ => return None,
        })
    }
}

/// Descriptor flag bit 0: the sender wants a completion for this packet.
pub const FLAG_COMPLETION_REQUESTED: u16 = 1;

/// Every flag bit this crate knows; any other bit set is corrupt.
pub const KNOWN_FLAGS: u16 = FLAG_COMPLETION_REQUESTED;

/// The 16-byte descriptor that starts every packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct PacketDescriptor {
    /// Packet type (see [`packet_type`]).
    pub packet_type: U16,
    /// Payload offset from the packet start, in units of 8 bytes.
    pub data_offset8: U16,
    /// Packet length excluding the footer, in units of 8 bytes.
    pub length8: U16,
    /// Flags (see [`FLAG_COMPLETION_REQUESTED`]).
    pub flags: U16,
    /// Transaction id; a completion echoes its request's.
    pub transaction_id: U64,
}

/// The 8-byte footer that ends every packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct PacketFooter {
    /// Always zero (the low half of the footer word).
    pub reserved: U32,
    /// Data-area offset at which the packet started.
    pub start_offset: U32,
}

/// Header of a transfer-pages packet, after the descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TransferPageHeader {
    /// The transfer page set the ranges index into.
    pub set_id: U16,
    /// Non-zero when the sender owns the set.
    pub sender_owns_set: u8,
    /// Ignored on read, zero on write.
    pub reserved: u8,
    /// Number of [`TransferPageRange`] entries that follow.
    pub range_count: U32,
}

/// One range of a transfer-pages packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct TransferPageRange {
    /// Length of the range in bytes.
    pub byte_count: U32,
    /// Offset of the range within the transfer page set.
    pub byte_offset: U32,
}

impl TransferPageRange {
    /// A range of `byte_count` bytes at `byte_offset` in the transfer page set.
    pub fn new(byte_count: u32, byte_offset: u32) -> Self {
        Self { byte_count: byte_count.into(), byte_offset: byte_offset.into() }
    }
}

/// Header of a GPA-direct packet, after the descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct GpaDirectHeader {
    /// Ignored on read, zero on write.
    pub reserved: U32,
    /// Number of GPA ranges that follow.
    pub range_count: U32,
}

/// Header of one GPA range; one `u64` page number per spanned page follows.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct GpaRangeHeader {
    /// Length of the range in bytes; never zero.
    pub byte_count: U32,
    /// Offset of the range within its first page; below 4096.
    pub byte_offset: U32,
}

/// The header pipe-mode channels put before each in-band payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct PipeHeader {
    /// One of the [`pipe`] packet types.
    pub packet_type: U32,
    /// Payload length; for partial packets the high 16 bits count consumed bytes.
    pub len: U32,
}

/// Pipe framing constants.
///
/// A [`DATA`](pipe::DATA) message whose `len` is 0 is not a message: it ends the
/// stream in its direction (a half-close). Linux's `hv_sock` writes it
/// once when a socket shuts down or closes, and never lets data use the
/// last [`END_OF_STREAM_SIZE`](pipe::END_OF_STREAM_SIZE) bytes of free space, so that it always fits.
pub mod pipe {
    /// A data message; with `len` 0, end of stream.
    pub const DATA: u32 = 1;
    /// A partially consumed data message (only ever written locally).
    pub const PARTIAL: u32 = 2;
    /// Set up GPA direct.
    pub const SETUP_GPA_DIRECT: u32 = 3;
    /// Tear down GPA direct.
    pub const TEARDOWN_GPA_DIRECT: u32 = 4;
    /// Largest payload of one pipe message, in bytes.
    pub const MAX_PAYLOAD: usize = 16384;
    /// Ring bytes of the end-of-stream packet: descriptor, pipe header and
    /// footer. Pipe writers keep this much free for it.
    pub const END_OF_STREAM_SIZE: usize = 32;
}

const _: () = {
    assert!(core::mem::size_of::<PacketDescriptor>() == 16);
    assert!(core::mem::size_of::<PacketFooter>() == 8);
    assert!(core::mem::size_of::<TransferPageHeader>() == 8);
    assert!(core::mem::size_of::<TransferPageRange>() == 8);
    assert!(core::mem::size_of::<GpaDirectHeader>() == 8);
    assert!(core::mem::size_of::<GpaRangeHeader>() == 8);
    assert!(core::mem::size_of::<PipeHeader>() == 8);
    assert!(crate::packet::in_band_size(core::mem::size_of::<PipeHeader>()) == pipe::END_OF_STREAM_SIZE);
    assert!(control::FEATURE_BITS + 4 <= PAGE_SIZE);
};
