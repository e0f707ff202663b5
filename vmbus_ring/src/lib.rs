//! The VMBus ring-buffer transport: the shared-memory packet rings through
//! which a Hyper-V style guest and its host exchange packets.
//!
//! A ring is a 4096-byte control page followed by a data area. One side
//! writes packets with an [`OutgoingRing`], the other reads them with an
//! [`IncomingRing`]. The peer is not trusted: every value read from the ring
//! is copied once, validated, and used from the private copy, and a
//! malformed ring is reported as a [`CorruptError`] naming the bad field,
//! never a panic.
//!
//! ```
//! use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, PacketKind};
//!
//! // Both endpoints share one ring's memory (here a heap allocation).
//! let mem = FlatRingMem::new(4 * 4096)?;
//! let mut writer = OutgoingRing::new(mem.clone())?;
//! let mut reader = IncomingRing::new(mem)?;
//!
//! // Write a batch, then publish it with one commit.
//! let mut batch = writer.write_batch();
//! batch.write(&OutgoingPacket::in_band(1).with_completion_requested(), &[b"request"])?;
//! batch.write(&OutgoingPacket::completion(0), &[b"done"])?;
//! let signal_reader = batch.commit();
//! assert!(signal_reader); // the ring went from empty to non-empty
//!
//! // Read the batch, copy the payloads out, hand the space back.
//! let mut batch = reader.read_batch();
//! let request = batch.next()?.ok_or("no packet")?;
//! assert!(request.completion_requested);
//! let mut bytes = vec![0; request.payload.len()];
//! batch.read_payload(request.payload, 0, &mut bytes)?;
//! assert_eq!(&bytes[..7], b"request"); // payloads are padded to 8 bytes
//! assert_eq!(batch.next()?.ok_or("no packet")?.kind, PacketKind::Completion);
//! let signal_writer = batch.commit();
//! assert!(!signal_writer); // the writer was not waiting for space
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout of the crate
//!
//! - [`wire`]: the on-ring structures and constants.
//! - [`RingMem`] and its implementations [`FlatRingMem`], [`PagedRingMem`]
//!   and [`MappedRingMem`]: where the ring lives. All shared-memory access
//!   goes through [`SharedRegion`], the crate's only unsafe code.
//! - [`OutgoingRing`] / [`WriteBatch`] and [`IncomingRing`] / [`ReadBatch`]:
//!   the endpoints. Batches are cursors: several packets, one commit. A
//!   received [`IncomingPacket`] is a small `Copy` header; its payload stays
//!   in the ring and a transfer-pages or GPA-direct range list in the
//!   batch's private copy, both read through the batch
//!   ([`ReadBatch::read_payload`], [`ReadBatch::gpa_ranges`],
//!   [`ReadBatch::transfer_page_ranges`], or [`ReadBatch::owned_kind`] to
//!   keep one).
//! - [`signal`]: the signalling decisions, usable from a control page alone.
//! - [`GpaRanges`] and [`GpaRangeBuf`]: guest-physical range lists.
//! - [`RingState`]: a snapshot of the control page for logs and inspection.
//! - [`ring_image`], [`load_image`] and [`RingDump`]: ring images for
//!   debugging, and their decoding (the `ringdump` example prints one).
//!
//! # Signalling
//!
//! Commits return whether the peer must be signalled; delivering the signal
//! is the caller's job (an eventfd, an interrupt, a condition variable). A
//! reader that wants to sleep calls [`IncomingRing::prepare_to_sleep`]
//! first; a writer that finds the ring full calls
//! [`OutgoingRing::set_pending_send_size`] and sleeps only if it returns
//! `false`.
//!
//! # Features
//!
//! - `std` (default): `std::error::Error` for the errors, and on Linux
//!   [`MappedRingMem::create_memfd`] and [`MappedRingMem::open_fd`]. Without
//!   it the crate is `no_std` and needs only `alloc`.
//! - `valuable` (default): [`RingState`] implements `valuable::Valuable`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

mod batch_id;
mod error;
mod gpa;
mod image;
mod incoming;
mod index;
mod memory;
mod outgoing;
mod packet;
mod range_copies;
pub mod signal;
mod state;
pub mod wire;

pub use error::{
    CorruptError, Field, GpaRangeError, OpenError, PayloadError, ReadError, UnsupportedPacket, WriteError,
};
pub use gpa::{pages_spanned, GpaRange, GpaRangeBuf, GpaRangeIter, GpaRanges, MAX_GPA_WORDS};
pub use image::{load_image, ring_image, DumpEnd, PacketRecord, RingDump};
pub use incoming::{IncomingRing, ReadBatch};
pub use memory::{
    ControlPage, ControlWord, FlatRingMem, HeapRingPages, MappedRingMem, MappingLayout, PagedRingMem, RingMem,
    RingPages, SharedRegion, REGION_ALIGNMENT,
};
pub use outgoing::{OutgoingRing, WriteBatch};
pub use packet::{
    gpa_direct_size, in_band_size, packet_size, transfer_pages_size, IncomingPacket, OutgoingKind, OutgoingPacket,
    OwnedPacketKind, PacketKind, PayloadRange, RangeList, TransferPages, MAX_PACKET_SIZE,
};
pub use state::RingState;
pub use wire::TransferPageRange;

/// The example in the README, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
