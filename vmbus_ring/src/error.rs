//! Error types. A full ring is an ordinary condition, kept apart from
//! corruption (an empty one is no error at all: `ReadBatch::next` returns
//! `Ok(None)`); a corrupt error names the field and the value found.

use core::fmt;
use thiserror::Error;

/// A field of the ring or of a packet that can hold a corrupt value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The control page's write index.
    WriteIndex,
    /// The control page's read index.
    ReadIndex,
    /// A descriptor's `data_offset8`.
    DataOffset8,
    /// A descriptor's `length8`, against the bytes available.
    Length8,
    /// A descriptor's flags.
    Flags,
    /// A range count (transfer pages or GPA direct).
    RangeCount,
    /// A GPA range's `byte_count`.
    GpaByteCount,
    /// A GPA range's `byte_offset`.
    GpaByteOffset,
    /// The page numbers a GPA range needs, against the words left for them.
    GpaPageCount,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::WriteIndex => "write index",
            Field::ReadIndex => "read index",
            Field::DataOffset8 => "data_offset8",
            Field::Length8 => "length8",
            Field::Flags => "flags",
            Field::RangeCount => "range count",
            Field::GpaByteCount => "GPA range byte_count",
            Field::GpaByteOffset => "GPA range byte_offset",
            Field::GpaPageCount => "GPA range page count",
        })
    }
}

/// A value read from the ring (or from a GPA range list) that breaks the wire rules.
///
/// Once an endpoint reports corruption it cannot tell where the next packet
/// starts; the ring must be reset by the two sides before it is used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("corrupt {field}: found {value:#x}{}", Location(*.packet_offset))]
pub struct CorruptError {
    /// Which field held the bad value.
    pub field: Field,
    /// The value found.
    pub value: u64,
    /// Data-area offset of the packet the field belongs to, if it belongs to one.
    pub packet_offset: Option<u32>,
}

impl CorruptError {
    /// A corrupt control word or stand-alone value.
    pub const fn new(field: Field, value: u64) -> Self {
        Self { field, value, packet_offset: None }
    }

    /// The same error, located in the packet starting at `offset`.
    pub const fn in_packet(self, offset: u32) -> Self {
        Self { packet_offset: Some(offset), ..self }
    }
}

struct Location(Option<u32>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offset) => write!(f, " in the packet at data offset {offset:#x}"),
            None => Ok(()),
        }
    }
}

/// Why a ring could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data area is not a non-zero multiple of 4096 bytes below 4 GiB.
    #[error("data area of {data_len} bytes is not a non-zero multiple of 4096 below 4 GiB")]
    InvalidSize {
        /// The data area size found.
        data_len: usize,
    },
    /// The memory does not start on an 8-byte boundary.
    #[error("ring memory is not 8-byte aligned")]
    Misaligned,
    /// A page of a paged ring is shorter than 4096 bytes.
    #[error("page {index} of the ring is {len} bytes, not 4096")]
    PageTooSmall {
        /// Page index: 0 is the control page, 1 the first data page.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The control page holds an invalid index.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
}

/// A packet type the reader does not parse. The reader has moved past it, so
/// the next read returns the following packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedPacket {
    /// The type value found.
    pub packet_type: u16,
    /// The packet's transaction id.
    pub transaction_id: u64,
    /// Data-area offset where the packet starts.
    pub offset: u32,
    /// The packet's payload (everything after its data offset).
    pub payload: crate::PayloadRange,
}

impl fmt::Display for UnsupportedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::wire::packet_type::name(self.packet_type) {
            Some(name) => write!(f, "unsupported packet type {} ({name})", self.packet_type)?,
            None => write!(f, "unknown packet type {}", self.packet_type)?,
        }
        write!(f, " at data offset {:#x}", self.offset)
    }
}

/// Why reading the next packet failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A packet of a type the reader does not parse; it has been skipped.
    #[error("{0}")]
    Unsupported(UnsupportedPacket),
    /// The ring or the packet breaks the wire rules.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
}

/// Why writing a packet failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Not enough free space now; retry once the reader frees some.
    #[error("the ring is full: the packet needs {needed} bytes, {free} are free")]
    Full {
        /// Bytes the packet needs, footer included, plus any the ring
        /// keeps free ([`OutgoingRing::keep_free`](crate::OutgoingRing::keep_free)).
        needed: usize,
        /// Bytes a packet may use right now.
        free: usize,
    },
    /// The packet can never fit this ring, or its length does not fit the descriptor.
    #[error("the packet needs {needed} bytes, more than the largest packet this ring takes ({max})")]
    TooLarge {
        /// Bytes the packet needs, footer included.
        needed: usize,
        /// Largest packet this ring takes, footer included (less any bytes
        /// it keeps free).
        max: usize,
    },
    /// A GPA-direct packet must carry at least one range.
    #[error("a GPA-direct packet needs at least one range")]
    NoGpaRange,
    /// A payload write through a reserved range failed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The peer's read index is corrupt.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
}

/// Why building a GPA range list failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GpaRangeError {
    /// A range must cover at least one byte.
    #[error("a GPA range must not be empty")]
    Empty,
    /// The offset must lie within the first page.
    #[error("GPA range byte_offset {0} is not below 4096")]
    OffsetTooLarge(u32),
    /// The number of page numbers does not match the pages the range spans.
    #[error("GPA range spans {expected} pages but {given} page numbers were given")]
    PageCount {
        /// Pages spanned by `byte_offset + byte_count`.
        expected: u64,
        /// Page numbers given.
        given: usize,
    },
    /// The range list would not fit in a packet header.
    #[error("the GPA range list is too long for one packet")]
    TooLong,
}

/// Why a payload read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The access runs past the payload's end.
    #[error("{len} bytes at payload offset {offset} run past the payload's {payload_len} bytes")]
    OutOfBounds {
        /// Offset within the payload.
        offset: usize,
        /// Bytes to access.
        len: usize,
        /// The payload's length.
        payload_len: usize,
    },
    /// The range was not handed out by the batch it was used on: it comes
    /// from an earlier batch (whose bytes may hold other packets by now),
    /// from another ring, or from [`PayloadRange::new`](crate::PayloadRange::new).
    #[error("the payload range was not handed out by this batch")]
    NotFromThisBatch,
    /// The packet carries no range list of the kind asked for: GPA ranges
    /// of a packet that is not GPA-direct, say.
    #[error("the packet carries no range list of that kind")]
    NoSuchRanges,
}
