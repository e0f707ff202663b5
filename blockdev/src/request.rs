//! The device's own request and completion format.
//!
//! A request is one packet whose payload starts with a [`RequestHeader`]
//! (24 bytes); a read or a write is a GPA-direct packet whose ranges name the
//! guest's data buffers, a flush or a stats request is an in-band packet
//! without ranges. The completion carries the request's transaction id and a
//! [`CompletionHeader`] (16 bytes). All integers are little-endian.
//!
//! ```
//! use vmbus_blockdev::request::{CompletionHeader, Op, Request, RequestHeader, Status};
//! use zerocopy::IntoBytes;
//!
//! let header = RequestHeader::new(Op::Read, 8, 4096);
//! let request = Request::parse(header.as_bytes())?;
//! assert_eq!((request.op, request.sector, request.length), (Op::Read, 8, 4096));
//! assert_eq!(Request::parse(&[0; 3]), Err(Status::Malformed)); // too short
//! assert_eq!(CompletionHeader::new(Status::OutOfRange, 0).status(), Status::OutOfRange);
//! # Ok::<(), Status>(())
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes in a sector, the unit of [`RequestHeader::sector`].
pub const SECTOR_SIZE: u64 = 512;

/// Most bytes one read or write moves.
pub const MAX_TRANSFER: u32 = 1 << 20;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read `length` bytes at `sector` into the packet's GPA ranges.
    Read = 1,
    /// Write `length` bytes at `sector` from the packet's GPA ranges.
    Write = 2,
    /// Make every write completed before it durable (`fdatasync`).
    Flush = 3,
    /// The host process's CPU time so far, in nanoseconds (for the report).
    Stats = 4,
}

impl Op {
    const ALL: [Op; 4] = [Op::Read, Op::Write, Op::Flush, Op::Stats];

    fn from_wire(op: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|known| *known as u32 == op)
    }
}

/// How a request ended, as the completion carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Status {
    /// Done.
    #[error("ok")]
    Ok = 0,
    /// The payload is shorter than a request header.
    #[error("malformed request")]
    Malformed = 1,
    /// An operation this device does not know.
    #[error("unsupported operation")]
    Unsupported = 2,
    /// A range names guest memory that does not exist.
    #[error("a range is outside guest memory")]
    BadGuestAddress = 3,
    /// The request reaches past the end of the disk.
    #[error("past the end of the disk")]
    OutOfRange = 4,
    /// The ranges do not add up to the length, or a flush or stats request
    /// carries data.
    #[error("length and ranges disagree")]
    LengthMismatch = 5,
    /// The length is zero, not a multiple of the sector size, or above
    /// [`MAX_TRANSFER`].
    #[error("bad length")]
    BadLength = 6,
    /// The host's file I/O failed.
    #[error("I/O error on the host")]
    IoError = 7,
}

impl Status {
    const ALL: [Status; 8] = [
        Status::Ok,
        Status::Malformed,
        Status::Unsupported,
        Status::BadGuestAddress,
        Status::OutOfRange,
        Status::LengthMismatch,
        Status::BadLength,
        Status::IoError,
    ];

    /// Unknown values read as [`Status::Malformed`].
    fn from_wire(status: u32) -> Self {
        Self::ALL.into_iter().find(|known| *known as u32 == status).unwrap_or(Status::Malformed)
    }
}

/// The request header on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RequestHeader {
    /// [`Op`] as a number.
    pub op: U32,
    /// Zero.
    pub reserved: U32,
    /// Disk address in 512-byte sectors.
    pub sector: U64,
    /// Bytes to move; the ranges' byte counts add up to it.
    pub length: U32,
    /// Zero.
    pub reserved2: U32,
}

impl RequestHeader {
    /// A header for `op` of `length` bytes at `sector`.
    pub fn new(op: Op, sector: u64, length: u32) -> Self {
        Self {
            op: U32::new(op as u32),
            reserved: U32::ZERO,
            sector: U64::new(sector),
            length: U32::new(length),
            reserved2: U32::ZERO,
        }
    }
}

/// The completion on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CompletionHeader {
    /// [`Status`] as a number.
    pub status: U32,
    /// Zero.
    pub reserved: U32,
    /// Bytes moved, or for [`Op::Stats`] the host's CPU nanoseconds.
    pub value: U64,
}

impl CompletionHeader {
    /// A completion with `status` and `value`.
    pub fn new(status: Status, value: u64) -> Self {
        Self { status: U32::new(status as u32), reserved: U32::ZERO, value: U64::new(value) }
    }

    /// Reads a completion from the start of `bytes`; a short one reads as
    /// [`Status::Malformed`].
    pub fn parse(bytes: &[u8]) -> Self {
        Self::read_from_prefix(bytes).map_or(Self::new(Status::Malformed, 0), |(header, _)| header)
    }

    /// The status, unknown values read as [`Status::Malformed`].
    pub fn status(&self) -> Status {
        Status::from_wire(self.status.get())
    }
}

/// A request header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// Disk address in sectors.
    pub sector: u64,
    /// Bytes to move.
    pub length: u32,
}

impl Request {
    /// Decodes the header at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Self, Status> {
        let (header, _) = RequestHeader::read_from_prefix(payload).map_err(|_| Status::Malformed)?;
        let op = Op::from_wire(header.op.get()).ok_or(Status::Unsupported)?;
        Ok(Self { op, sector: header.sector.get(), length: header.length.get() })
    }
}
