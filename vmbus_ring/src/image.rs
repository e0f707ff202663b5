//! Ring images and their decoding, for people debugging rings.
//!
//! A ring image is a ring's bytes as they lie in memory: the 4096-byte
//! control page, then the data area. [`ring_image`] takes one from any
//! [`RingMem`]; [`load_image`] turns one (read from a file, say) back into
//! ring memory; [`RingDump::decode`] lists the control state and every packet
//! between the read and the write index, validated exactly as an
//! [`IncomingRing`] reader validates them. The `ringdump` example prints the
//! dump of an image file.

use crate::incoming::IncomingRing;
use crate::index;
use crate::memory::{ControlPage, ControlWord, RingMem};
use crate::packet::OwnedPacketKind;
use crate::state::OrCorrupt;
use crate::wire::{
    packet_type, PacketDescriptor, PacketFooter, FLAG_COMPLETION_REQUESTED, PACKET_ALIGNMENT, PAGE_SIZE,
};
use crate::{CorruptError, FlatRingMem, OpenError, ReadError, RingState};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;
use zerocopy::{FromZeros, IntoBytes};

const DESCRIPTOR_LEN: u32 = size_of::<PacketDescriptor>() as u32;
const FOOTER_LEN: u32 = size_of::<PacketFooter>() as u32;

/// The ring's bytes: the 4096-byte control page, then the data area.
///
/// The bytes are copied as they are, control words included, through atomic
/// loads of the sizes the endpoints store with (4-byte control words, 8-byte
/// data words). The copy is not a snapshot: for a ring in use, quiesce the
/// peer for an exact image. A writer on another thread of this process is
/// no data race, but its packets may be caught half written, and its
/// per-byte payload copies may overlap this copy's word loads, a mix of
/// access sizes Rust's memory model leaves undefined: quiesce it too.
///
/// ```
/// use vmbus_ring::{ring_image, FlatRingMem, OutgoingPacket, OutgoingRing};
/// let mem = FlatRingMem::new(4096).unwrap();
/// OutgoingRing::new(mem.clone()).unwrap().write(&OutgoingPacket::in_band(1), &[b"hi"]).unwrap();
/// let image = ring_image(&mem);
/// assert_eq!(image.len(), 4096 + 4096);
/// assert_eq!(image[..4], 32u32.to_le_bytes()); // the write index: one 32-byte packet
/// ```
pub fn ring_image(mem: &impl RingMem) -> Vec<u8> {
    let mut image = vec![0; PAGE_SIZE + mem.data_len()];
    let (control, data) = image.split_at_mut(PAGE_SIZE);
    mem.read_control(0, control);
    read_data_words(mem, 0, data);
    image
}

/// Copies the data area's bytes at `offset` (a multiple of 8, as is
/// `buf.len()`) into `buf` through 8-byte word loads, the size the endpoints
/// store descriptors and headers with, so that a dump of a live ring does not
/// mix access sizes with them.
fn read_data_words(mem: &impl RingMem, offset: usize, buf: &mut [u8]) {
    for (at, word) in (offset..).step_by(8).zip(buf.chunks_exact_mut(8)) {
        word.copy_from_slice(&mem.read_data_word(at).to_le_bytes());
    }
}

/// Ring memory holding a copy of `image` (a control page, then the data
/// area), for decoding an image or opening endpoints over it.
///
/// The image must be 4096 bytes plus a valid data-area size (a non-zero
/// multiple of 4096 below 4 GiB); otherwise the error is
/// [`OpenError::InvalidSize`] with the data-area length found (0 for an
/// image shorter than the control page). The control words are not checked
/// here: a ring image may be corrupt, and decoding it says how.
///
/// ```
/// use vmbus_ring::{load_image, ring_image, FlatRingMem, OpenError};
/// let mem = FlatRingMem::new(8192).unwrap();
/// let image = ring_image(&mem);
/// assert_eq!(ring_image(&load_image(&image).unwrap()), image);
/// assert_eq!(load_image(&image[..4096 + 100]).unwrap_err(), OpenError::InvalidSize { data_len: 100 });
/// assert_eq!(load_image(&image[..10]).unwrap_err(), OpenError::InvalidSize { data_len: 0 });
/// ```
pub fn load_image(image: &[u8]) -> Result<FlatRingMem, OpenError> {
    let (control, data) = image.split_at_checked(PAGE_SIZE).ok_or(OpenError::InvalidSize { data_len: 0 })?;
    let mem = FlatRingMem::new(data.len())?;
    mem.write_control(0, control);
    mem.write_data(0, data);
    Ok(mem)
}

/// A decoded ring: its control state, the packets between the read and the
/// write index, and how decoding ended.
///
/// Built by [`decode`](Self::decode). Its [`Display`](fmt::Display) is the
/// text the `ringdump` example prints; the format is stable:
///
/// - the control block, one `name: value` line each: `data area: N bytes`,
///   `write index: 0x..`, `read index: 0x..`, `interrupt mask: 0x..`,
///   `pending send size: N`, `feature bits: 0x..`, `bytes used: N` and
///   `bytes free: N` (`?` when an index is corrupt);
/// - one line per packet, in ring order (see [`PacketRecord`]'s `Display`);
/// - the last line: `end: N packets` when every byte up to the write index
///   decoded, `stopped at data offset 0x..: REASON` when the packet at that
///   offset is corrupt (the packets before it are listed), or
///   `stopped at control page: REASON` when the ring cannot be opened (a
///   corrupt index; no packets are listed). `REASON` is the error's
///   `Display`.
///
/// Lines are separated by `\n`, with none after the last.
///
/// ```
/// use vmbus_ring::{FlatRingMem, GpaRangeBuf, OutgoingPacket, OutgoingRing, RingDump, TransferPageRange};
/// let mem = FlatRingMem::new(4096)?;
/// let mut writer = OutgoingRing::new(mem.clone())?;
/// let mut batch = writer.write_batch();
/// batch.write(&OutgoingPacket::in_band(1).with_completion_requested(), &[b"request"])?;
/// batch.write(&OutgoingPacket::completion(0x20), &[])?;
/// let ranges = [TransferPageRange::new(1500, 0), TransferPageRange::new(900, 0x1000)];
/// batch.write(&OutgoingPacket::transfer_pages(2, 7, true, &ranges), &[b"hdr"])?;
/// let mut gpa = GpaRangeBuf::new();
/// gpa.push_contiguous(0x1234_5010, 6000)?;
/// batch.write(&OutgoingPacket::gpa_direct(3, gpa.ranges()), &[])?;
/// let _ = batch.commit();
///
/// let dump = RingDump::decode(&mem);
/// assert!(dump.is_clean());
/// assert_eq!(dump.to_string(), "\
/// data area: 4096 bytes
/// write index: 0xa8
/// read index: 0x0
/// interrupt mask: 0x0
/// pending send size: 0
/// feature bits: 0x1
/// bytes used: 168
/// bytes free: 3920
/// 0x0: in-band data (type 6), tid 0x1, flags 0x1 (completion requested), data_offset8 2, length8 3 (header 0, payload 8 bytes)
/// 0x20: completion (type 11), tid 0x20, flags 0x0, data_offset8 2, length8 2 (header 0, payload 0 bytes)
/// 0x38: transfer pages (type 7), tid 0x2, flags 0x0, data_offset8 5, length8 6 (header 24, payload 8 bytes), set 7 (sender owns it), ranges [1500 bytes at 0x0, 900 bytes at 0x1000]
/// 0x70: GPA direct (type 9), tid 0x3, flags 0x0, data_offset8 6, length8 6 (header 32, payload 0 bytes), ranges [6000 bytes at 0x10 on pages 0x12345 0x12346]
/// end: 4 packets");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingDump {
    /// The control state, each control word read once.
    pub state: RingState,
    /// The packets from the read index on, in ring order, up to the write
    /// index or the first corrupt packet.
    pub packets: Vec<PacketRecord>,
    /// How decoding ended.
    pub end: DumpEnd,
}

/// How decoding a ring ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpEnd {
    /// Every packet up to the write index decoded (unsupported types included).
    Clean,
    /// The packet starting at data offset `offset` breaks the wire rules; the
    /// reader cannot tell where the next one starts, so decoding stopped.
    CorruptPacket {
        /// Data-area offset of the corrupt packet.
        offset: u32,
        /// What is wrong, as the reader reports it.
        error: CorruptError,
    },
    /// The ring cannot be opened: an index in the control page is corrupt
    /// (or the memory's data-area size is invalid). No packet was decoded.
    CorruptControl(OpenError),
}

impl RingDump {
    /// Decodes the ring in `mem`.
    ///
    /// The ring is first copied into private memory (control words by
    /// acquire loads, then the data area), and the copy is read with an
    /// [`IncomingRing`] whose batch is never committed: `mem` is not written,
    /// every check is exactly the reader's, and a peer still writing to
    /// `mem` cannot make the dump contradict itself. Packets the peer
    /// overwrites while the copy is taken may show as corrupt; quiesce the
    /// peer for an exact dump. The peer may be in another process or a VM
    /// meanwhile. A writer on another thread of this process should be
    /// quiesced too: no access is a data race (every shared access is
    /// atomic, see [`SharedRegion`](crate::SharedRegion)), but its per-byte
    /// payload copies may overlap this copy's word loads, a mix of access
    /// sizes Rust's memory model leaves undefined.
    ///
    /// A packet of a type the reader does not parse is listed (with
    /// [`PacketRecord::kind`] `None`) and decoding goes on after it; a corrupt
    /// packet ends the dump with [`DumpEnd::CorruptPacket`].
    ///
    /// ```
    /// use vmbus_ring::{ControlPage, ControlWord, DumpEnd, FlatRingMem, OutgoingPacket, OutgoingRing, RingDump, RingMem};
    /// use std::sync::atomic::Ordering;
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    /// writer.write(&OutgoingPacket::in_band(1), &[b"first"]).unwrap();
    /// writer.write(&OutgoingPacket::in_band(2), &[b"second"]).unwrap();
    /// mem.write_data(0x20 + 2, &1u16.to_le_bytes()); // the second packet's data_offset8
    ///
    /// let dump = RingDump::decode(&mem);
    /// assert_eq!(dump.packets.len(), 1);
    /// let DumpEnd::CorruptPacket { offset, error } = dump.end else { panic!() };
    /// assert_eq!(offset, 0x20);
    /// assert_eq!(error.to_string(), "corrupt data_offset8: found 0x1 in the packet at data offset 0x20");
    ///
    /// mem.store(ControlWord::WriteIndex, 0x44, Ordering::Relaxed); // not a multiple of 8
    /// let dump = RingDump::decode(&mem);
    /// assert!(dump.packets.is_empty());
    /// assert!(dump.to_string().ends_with("\nstopped at control page: corrupt write index: found 0x44"));
    /// ```
    pub fn decode(mem: &impl RingMem) -> Self {
        match snapshot(mem) {
            Ok(copy) => Self::decode_private(copy),
            Err(error) => {
                Self { state: RingState::read(mem), packets: Vec::new(), end: DumpEnd::CorruptControl(error) }
            }
        }
    }

    /// Whether every packet up to the write index decoded.
    pub fn is_clean(&self) -> bool {
        self.end == DumpEnd::Clean
    }

    /// Decodes `copy`, which nothing else writes.
    fn decode_private(copy: FlatRingMem) -> Self {
        let state = RingState::read(&copy);
        let mut ring = match IncomingRing::new(copy.clone()) {
            Ok(ring) => ring,
            Err(error) => return Self { state, packets: Vec::new(), end: DumpEnd::CorruptControl(error) },
        };
        let data_len = ring.data_len() as u32;
        let mut cursor = ring.read_index();
        let mut packets = Vec::new();
        let mut batch = ring.read_batch();
        let end = loop {
            let (offset, kind) = match batch.next() {
                // The copy is private and the packet this batch's own, so
                // its range list is there.
                Ok(Some(packet)) => (packet.offset, batch.owned_kind(&packet).ok()),
                Err(ReadError::Unsupported(packet)) => (packet.offset, None),
                Ok(None) => break DumpEnd::Clean,
                Err(ReadError::Corrupt(error)) => break DumpEnd::CorruptPacket { offset: cursor, error },
            };
            // The reader validated this descriptor; the copy is private, so
            // reading it again gives the same bytes.
            let mut descriptor = PacketDescriptor::new_zeroed();
            copy.read_data(offset as usize, descriptor.as_mut_bytes());
            let record = PacketRecord::new(offset, &descriptor, kind, data_len);
            cursor = index::advance(data_len, offset, record.size());
            packets.push(record);
        };
        // Never commit: the dump leaves the ring as it found it.
        batch.revert();
        Self { state, packets, end }
    }
}

/// Copies `mem` into a private ring: the control page, its words again by
/// acquire loads (so the data copied after them is at least as new), then
/// the data area page by page.
fn snapshot(mem: &impl RingMem) -> Result<FlatRingMem, OpenError> {
    let copy = FlatRingMem::new(mem.data_len())?;
    let mut page = vec![0; PAGE_SIZE];
    mem.read_control(0, &mut page);
    copy.write_control(0, &page);
    for word in [
        ControlWord::WriteIndex,
        ControlWord::ReadIndex,
        ControlWord::InterruptMask,
        ControlWord::PendingSendSize,
        ControlWord::FeatureBits,
    ] {
        copy.store(word, mem.load(word, Ordering::Acquire), Ordering::Relaxed);
    }
    for offset in (0..mem.data_len()).step_by(PAGE_SIZE) {
        read_data_words(mem, offset, &mut page);
        copy.write_data(offset, &page);
    }
    Ok(copy)
}

/// One packet of a [`RingDump`], as the reader accepted it: its descriptor
/// fields as on the wire and, for the types the reader parses, its
/// type-specific header.
///
/// Its [`Display`](fmt::Display) is one line:
/// `OFFSET: NAME (type T[, unsupported]), tid 0x.., flags 0x..[ (completion requested)],
/// data_offset8 D, length8 L (header H, payload P bytes)[, wraps]`, then for
/// transfer pages `, set S[ (sender owns it)], ranges [N bytes at 0x.., ...]`
/// and for GPA direct `, ranges [N bytes at 0x.. on pages 0x.. 0x.., ...]`.
/// `NAME` is the type's name, or `unknown` for a value never defined;
/// `wraps` marks a packet that runs past the end of the data area to its start.
///
/// ```
/// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing, OwnedPacketKind, RingDump};
/// let mem = FlatRingMem::new(4096).unwrap();
/// OutgoingRing::new(mem.clone()).unwrap().write(&OutgoingPacket::completion(9), &[&[0; 20]]).unwrap();
/// let record = &RingDump::decode(&mem).packets[0];
/// assert_eq!(record.kind, Some(OwnedPacketKind::Completion));
/// assert_eq!((record.header_len(), record.payload_len(), record.size()), (0, 24, 48));
/// assert_eq!(
///     record.to_string(),
///     "0x0: completion (type 11), tid 0x9, flags 0x0, data_offset8 2, length8 5 (header 0, payload 24 bytes)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRecord {
    /// Data-area offset where the packet starts.
    pub offset: u32,
    /// The descriptor's type.
    pub packet_type: u16,
    /// The descriptor's `data_offset8`: the payload offset in 8-byte units.
    pub data_offset8: u16,
    /// The descriptor's `length8`: the length without the footer in 8-byte units.
    pub length8: u16,
    /// The descriptor's flags.
    pub flags: u16,
    /// The transaction id.
    pub transaction_id: u64,
    /// The kind and type-specific header, as the reader parsed them; `None`
    /// for a type the reader does not parse (listed and skipped).
    pub kind: Option<OwnedPacketKind>,
    /// Whether the packet, footer included, runs past the end of the data
    /// area and continues at its start.
    pub wraps: bool,
}

impl PacketRecord {
    fn new(offset: u32, descriptor: &PacketDescriptor, kind: Option<OwnedPacketKind>, data_len: u32) -> Self {
        let mut record = Self {
            offset,
            packet_type: descriptor.packet_type.get(),
            data_offset8: descriptor.data_offset8.get(),
            length8: descriptor.length8.get(),
            flags: descriptor.flags.get(),
            transaction_id: descriptor.transaction_id.get(),
            kind,
            wraps: false,
        };
        record.wraps = u64::from(offset) + u64::from(record.size()) > u64::from(data_len);
        record
    }

    /// The type's name (see [`packet_type::name`]), `None` for a value never defined.
    pub fn type_name(&self) -> Option<&'static str> {
        packet_type::name(self.packet_type)
    }

    /// Whether the reader parses this type.
    pub fn is_supported(&self) -> bool {
        self.kind.is_some()
    }

    /// Whether the sender asked for a completion.
    pub fn completion_requested(&self) -> bool {
        self.flags & FLAG_COMPLETION_REQUESTED != 0
    }

    /// Bytes of type-specific header between the descriptor and the payload.
    pub fn header_len(&self) -> u32 {
        (u32::from(self.data_offset8) * PACKET_ALIGNMENT as u32).saturating_sub(DESCRIPTOR_LEN)
    }

    /// Payload bytes, the sender's padding included.
    pub fn payload_len(&self) -> u32 {
        u32::from(self.length8.saturating_sub(self.data_offset8)) * PACKET_ALIGNMENT as u32
    }

    /// Ring bytes the packet takes, footer included.
    pub fn size(&self) -> u32 {
        u32::from(self.length8) * PACKET_ALIGNMENT as u32 + FOOTER_LEN
    }
}

impl fmt::Display for PacketRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.type_name().unwrap_or("unknown");
        let unsupported = if self.is_supported() { "" } else { ", unsupported" };
        write!(f, "{:#x}: {name} (type {}{unsupported})", self.offset, self.packet_type)?;
        write!(f, ", tid {:#x}, flags {:#x}", self.transaction_id, self.flags)?;
        if self.completion_requested() {
            f.write_str(" (completion requested)")?;
        }
        write!(
            f,
            ", data_offset8 {}, length8 {} (header {}, payload {} bytes)",
            self.data_offset8,
            self.length8,
            self.header_len(),
            self.payload_len()
        )?;
        if self.wraps {
            f.write_str(", wraps")?;
        }
        match &self.kind {
            Some(OwnedPacketKind::TransferPages { set_id, sender_owns_set, ranges }) => {
                write!(f, ", set {set_id}")?;
                if *sender_owns_set {
                    f.write_str(" (sender owns it)")?;
                }
                f.write_str(", ranges [")?;
                for (i, range) in ranges.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    write!(f, "{separator}{} bytes at {:#x}", range.byte_count.get(), range.byte_offset.get())?;
                }
                f.write_str("]")
            }
            Some(OwnedPacketKind::GpaDirect(ranges)) => {
                f.write_str(", ranges [")?;
                for (i, range) in ranges.ranges().iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    let pages = if range.gpns.len() == 1 { "page" } else { "pages" };
                    write!(f, "{separator}{} bytes at {:#x} on {pages}", range.byte_count, range.byte_offset)?;
                    for gpn in range.page_numbers() {
                        write!(f, " {gpn:#x}")?;
                    }
                }
                f.write_str("]")
            }
            Some(OwnedPacketKind::InBand | OwnedPacketKind::Completion) | None => Ok(()),
        }
    }
}

impl fmt::Display for RingDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.state;
        writeln!(f, "data area: {} bytes", state.data_len)?;
        writeln!(f, "write index: {:#x}", state.write_index)?;
        writeln!(f, "read index: {:#x}", state.read_index)?;
        writeln!(f, "interrupt mask: {:#x}", state.interrupt_mask)?;
        writeln!(f, "pending send size: {}", state.pending_send_size)?;
        writeln!(f, "feature bits: {:#x}", state.feature_bits)?;
        writeln!(f, "bytes used: {}", OrCorrupt(state.bytes_used))?;
        writeln!(f, "bytes free: {}", OrCorrupt(state.bytes_free))?;
        for packet in &self.packets {
            writeln!(f, "{packet}")?;
        }
        match &self.end {
            DumpEnd::Clean => write!(f, "end: {} packets", self.packets.len()),
            DumpEnd::CorruptPacket { offset, error } => write!(f, "stopped at data offset {offset:#x}: {error}"),
            DumpEnd::CorruptControl(error) => write!(f, "stopped at control page: {error}"),
        }
    }
}
