//! The reading endpoint of a ring.

use crate::batch_id::{BatchId, BatchIds};
use crate::error::{PayloadError, UnsupportedPacket};
use crate::gpa::{GpaRangeBuf, GpaRanges};
use crate::memory::{check_data_len, ControlWord, RingMem};
use crate::packet::{IncomingPacket, OwnedPacketKind, PacketKind, PayloadRange, RangeList, TransferPages};
use crate::range_copies::RangeCopies;
use crate::wire::{
    packet_type, GpaDirectHeader, PacketDescriptor, PacketFooter, TransferPageHeader, TransferPageRange,
    FLAG_COMPLETION_REQUESTED, KNOWN_FLAGS, PACKET_ALIGNMENT,
};
use crate::{index, signal, CorruptError, Field, OpenError, ReadError, RingState};
use core::sync::atomic::Ordering;
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

const DESCRIPTOR_LEN: u32 = size_of::<PacketDescriptor>() as u32;
const TYPE_HEADER_LEN: u32 = 8;

/// The reading end of a ring.
///
/// The read index is private to this endpoint: read (and validated) once
/// when the ring is opened and published only by a commit. The peer's write
/// index is cached and re-read only when the cached one shows no more data.
///
/// ```
/// use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, PacketKind};
/// let mem = FlatRingMem::new(4096).unwrap();
/// let mut writer = OutgoingRing::new(mem.clone()).unwrap();
/// let mut reader = IncomingRing::new(mem).unwrap();
/// writer.write(&OutgoingPacket::in_band(9), &[b"ping"]).unwrap();
///
/// let mut batch = reader.read_batch();
/// let packet = batch.next().unwrap().expect("a packet");
/// assert_eq!(packet.transaction_id, 9);
/// assert_eq!(packet.kind, PacketKind::InBand);
/// let mut bytes = [0; 4];
/// batch.read_payload(packet.payload, 0, &mut bytes).unwrap();
/// assert_eq!(&bytes, b"ping");
/// assert_eq!(batch.next(), Ok(None)); // nothing more, for now
/// let signal_writer = batch.commit();
/// assert!(!signal_writer); // the writer is not waiting for space
/// ```
#[derive(Debug)]
pub struct IncomingRing<M> {
    mem: M,
    data_len: u32,
    read_index: u32,
    write_index: u32,
    /// Whether every commit that frees space asks for a signal; see
    /// [`signal_every_commit`](Self::signal_every_commit).
    signal_every_commit: bool,
    batch_ids: BatchIds,
    /// The range lists of the packets the current batch has read.
    range_copies: RangeCopies,
}

impl<M: RingMem> IncomingRing<M> {
    /// Opens the reading end over `mem`, validating the data-area size and
    /// both indices.
    pub fn new(mem: M) -> Result<Self, OpenError> {
        check_data_len(mem.data_len())?;
        let data_len = mem.data_len() as u32;
        let read_index = index::check(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), data_len, Field::ReadIndex)?;
        let write_index =
            index::check(mem.load(ControlWord::WriteIndex, Ordering::Acquire), data_len, Field::WriteIndex)?;
        Ok(Self {
            mem,
            data_len,
            read_index,
            write_index,
            signal_every_commit: false,
            batch_ids: BatchIds::new(),
            range_copies: RangeCopies::default(),
        })
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Size of the data area in bytes.
    pub fn data_len(&self) -> usize {
        self.data_len as usize
    }

    /// The committed read index.
    pub fn read_index(&self) -> u32 {
        self.read_index
    }

    /// Starts a batch of reads at the committed read index.
    #[inline]
    pub fn read_batch(&mut self) -> ReadBatch<'_, M> {
        let cursor = self.read_index;
        let id = self.batch_ids.next();
        self.range_copies.clear();
        let available = index::used(self.data_len, self.write_index, cursor);
        ReadBatch { ring: self, cursor, available, packets: 0, id }
    }

    /// Treats the writer as one that does not honour pending send size:
    /// every commit that frees space then asks for a signal, whether or not
    /// the writer asked for that much room.
    ///
    /// For peers that advertise pending-send-size support but mishandle it
    /// (FreeBSD before 1400097; Linux before 3.11 under some AIO patterns):
    /// a writer that waits for space without a pending send size the reader
    /// can see would wait for ever. The cost is a signal per commit that
    /// freed space, where an honest writer needs one per wait.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    /// let mut reader = IncomingRing::new(mem).unwrap();
    /// writer.write(&OutgoingPacket::in_band(1), &[b"a"]).unwrap();
    /// writer.write(&OutgoingPacket::in_band(2), &[b"b"]).unwrap();
    /// let mut batch = reader.read_batch();
    /// batch.next().unwrap().unwrap();
    /// assert!(!batch.commit()); // the writer asked for nothing
    /// reader.signal_every_commit(true);
    /// let mut batch = reader.read_batch();
    /// batch.next().unwrap().unwrap();
    /// assert!(batch.commit()); // signalled anyway
    /// ```
    pub fn signal_every_commit(&mut self, on: bool) {
        self.signal_every_commit = on;
    }

    /// Whether the writer should be awake now but may be asleep: it asked
    /// for room (a pending send size) that is free. Fences, then loads the
    /// pending send size and the write index. A reader that finds this true
    /// should signal the writer: its signal may have been lost.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingRing};
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    /// let reader = IncomingRing::new(mem).unwrap();
    /// assert!(!reader.writer_missed_signal());
    /// // A writer that asks for room it already has, and (wrongly) waits.
    /// use vmbus_ring::{ControlPage, ControlWord};
    /// reader.memory().store(ControlWord::PendingSendSize, 64, std::sync::atomic::Ordering::Relaxed);
    /// assert!(reader.writer_missed_signal());
    /// # drop(writer);
    /// ```
    pub fn writer_missed_signal(&self) -> bool {
        // Not a signalling rule: an unstick check, off the per-packet path.
        // It orders this end's earlier stores (its read index) before the
        // loads, so that what it compares is no older than what it did.
        self.mem.full_fence();
        let pending = self.mem.load(ControlWord::PendingSendSize, Ordering::Relaxed);
        let write = self.mem.load(ControlWord::WriteIndex, Ordering::Relaxed);
        signal::writer_missed_signal(self.data_len, pending, write, self.read_index)
    }

    /// Sets or clears the interrupt mask. Set it while draining the ring
    /// to spare the writer its signals; clear it with
    /// [`prepare_to_sleep`](Self::prepare_to_sleep) before waiting.
    pub fn set_interrupt_mask(&mut self, masked: bool) {
        self.mem.store(ControlWord::InterruptMask, masked.into(), Ordering::Relaxed);
    }

    /// The check to make before sleeping: clears the interrupt mask, fences,
    /// and re-reads the write index. `Ok(true)`: the ring is empty and the
    /// writer will signal when it is not, so sleep. `Ok(false)`: packets
    /// arrived meanwhile, so read them instead.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut reader = IncomingRing::new(mem.clone()).unwrap();
    /// assert!(reader.prepare_to_sleep().unwrap());
    /// OutgoingRing::new(mem).unwrap().write(&OutgoingPacket::in_band(1), &[]).unwrap();
    /// assert!(!reader.prepare_to_sleep().unwrap());
    /// ```
    pub fn prepare_to_sleep(&mut self) -> Result<bool, CorruptError> {
        self.set_interrupt_mask(false);
        // Rule "a reader about to sleep": orders the mask store before the
        // write-index load, against the writer's publish (store, fence,
        // mask load in `signal::reader_needs_signal`).
        self.mem.full_fence();
        self.refresh_write_index()?;
        Ok(self.write_index == self.read_index)
    }

    /// Whether the writer has published packets this endpoint has not read
    /// yet: re-reads the write index. For a reader that polls instead of
    /// sleeping, with the interrupt mask set (see
    /// [`set_interrupt_mask`](Self::set_interrupt_mask)) so that the writer
    /// does not signal it meanwhile.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut reader = IncomingRing::new(mem.clone()).unwrap();
    /// reader.set_interrupt_mask(true);
    /// assert!(!reader.has_data().unwrap());
    /// let signal = OutgoingRing::new(mem).unwrap().write(&OutgoingPacket::in_band(1), &[]).unwrap();
    /// assert!(!signal); // the reader is polling
    /// assert!(reader.has_data().unwrap());
    /// ```
    #[inline]
    pub fn has_data(&mut self) -> Result<bool, CorruptError> {
        self.refresh_write_index()?;
        Ok(self.write_index != self.read_index)
    }

    /// A snapshot of the control page.
    pub fn state(&self) -> RingState {
        RingState::read(&self.mem)
    }

    fn refresh_write_index(&mut self) -> Result<(), CorruptError> {
        let write = self.mem.load(ControlWord::WriteIndex, Ordering::Acquire);
        self.write_index = index::check(write, self.data_len, Field::WriteIndex)?;
        Ok(())
    }

    /// Bytes readable from `cursor`, a batch's cursor that has caught up
    /// with the cached write index: re-reads the write index.
    ///
    /// A writer writes only into space this reader has committed, so in
    /// ring order from the committed read index the write index never lies
    /// before a batch's cursor. One that does has gone round the ring into
    /// bytes the batch has read and not committed: it is corrupt. (Taken
    /// for the truth, it would let one batch read round and round the ring,
    /// without end.)
    #[inline]
    fn available_after_refresh(&mut self, cursor: u32) -> Result<u32, CorruptError> {
        self.refresh_write_index()?;
        // In ring order from the cursor, the write index must come
        // before the committed read index (or be the cursor itself).
        let ahead = index::used(self.data_len, self.write_index, cursor);
        if ahead >= self.data_len - index::used(self.data_len, cursor, self.read_index) {
            return Err(self.write_index_laps(cursor));
        }
        Ok(ahead)
    }

    /// The error of a write index that went round the ring past the
    /// committed read index into the batch at `cursor`; the cached write
    /// index goes back to the cursor (a valid index the batch reached), so
    /// that every later read looks again and fails the same way.
    #[cold]
    #[inline(never)]
    fn write_index_laps(&mut self, cursor: u32) -> CorruptError {
        let write = self.write_index;
        self.write_index = cursor;
        CorruptError::new(Field::WriteIndex, write.into())
    }

    #[inline]
    fn read_into(&self, at: u32, buf: &mut [u8]) {
        self.mem.read_data(at as usize, buf);
    }

    /// Reads and checks the descriptor of the packet at `at`, which has
    /// `available` readable bytes, for the batch `batch`: what every packet
    /// has, whatever its type.
    #[inline]
    fn frame(&self, at: u32, available: u32, batch: BatchId) -> Result<Framing, CorruptError> {
        let corrupt = |field, value: u64| CorruptError::new(field, value).in_packet(at);
        // Read as the writer writes it, a word at a time: a 16-byte load of
        // two 8-byte stores still in flight cannot be forwarded from them,
        // and a reader right behind its writer (a packet read as soon as it
        // is committed) would stall on it.
        let [head, second] = self.mem.read_data_word_pair(at as usize);
        let descriptor: PacketDescriptor = zerocopy::transmute!([head.to_le_bytes(), second.to_le_bytes()]);
        let data_offset8 = descriptor.data_offset8.get();
        let length8 = descriptor.length8.get();
        let size = u32::from(length8) * PACKET_ALIGNMENT as u32 + size_of::<PacketFooter>() as u32;
        if size > available {
            return Err(corrupt(Field::Length8, length8.into()));
        }
        if data_offset8 < 2 || data_offset8 > length8 {
            return Err(corrupt(Field::DataOffset8, data_offset8.into()));
        }
        let flags = descriptor.flags.get();
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(Field::Flags, flags.into()));
        }
        let data_offset = u32::from(data_offset8) * PACKET_ALIGNMENT as u32;
        // `at` and `size` are below `data_len` (`at` is a valid index, and
        // `size` fits `available`), so a packet that does not wrap (almost
        // every one) has its parts located by plain additions.
        let wraps = size > self.data_len - at;
        let offset_of = |offset| if wraps { index::advance(self.data_len, at, offset) } else { at + offset };
        Ok(Framing {
            at,
            packet_type: descriptor.packet_type.get(),
            transaction_id: descriptor.transaction_id.get(),
            completion_requested: flags & FLAG_COMPLETION_REQUESTED != 0,
            size,
            payload: PayloadRange {
                offset: offset_of(data_offset),
                len: (u32::from(length8) - u32::from(data_offset8)) * PACKET_ALIGNMENT as u32,
                batch,
            },
            header_at: offset_of(DESCRIPTOR_LEN),
            header_room: data_offset - DESCRIPTOR_LEN,
        })
    }

    /// Reads a transfer-pages header from the `room` bytes at `at`, and its
    /// ranges into the batch's copy. Meant to be inlined into `next`, as
    /// [`gpa_direct`](Self::gpa_direct) is (so each copy of `next` carries
    /// both): out of line, the call, its saved registers and its result
    /// going through memory cost a transfer-pages packet 30 instructions,
    /// and inlined they cost an in-band one 2.
    #[inline]
    fn transfer_pages(&mut self, at: u32, room: u32) -> Result<TransferPages, CorruptError> {
        let header: TransferPageHeader = zerocopy::transmute!(self.type_header(at, room)?);
        let count = header.range_count.get();
        let ranges_len = u64::from(count) * size_of::<TransferPageRange>() as u64;
        if ranges_len > u64::from(room - TYPE_HEADER_LEN) {
            return Err(CorruptError::new(Field::RangeCount, count.into()));
        }
        // One 8-byte word per range (`TransferPageRange` is 8 bytes).
        let start = self.copy_range_words(index::advance(self.data_len, at, TYPE_HEADER_LEN), count);
        let ranges = RangeList { start, words: count, count };
        Ok(TransferPages { set_id: header.set_id.get(), sender_owns_set: header.sender_owns_set != 0, ranges })
    }

    /// Reads a GPA-direct header from the `room` bytes at `at`, and its
    /// ranges into the batch's copy, where they are validated.
    #[inline]
    fn gpa_direct(&mut self, at: u32, room: u32) -> Result<RangeList, CorruptError> {
        let header: GpaDirectHeader = zerocopy::transmute!(self.type_header(at, room)?);
        let count = header.range_count.get();
        if count == 0 {
            return Err(CorruptError::new(Field::RangeCount, 0));
        }
        let word_count = (room - TYPE_HEADER_LEN) / size_of::<u64>() as u32;
        let start = self.copy_range_words(index::advance(self.data_len, at, TYPE_HEADER_LEN), word_count);
        let copied = self.range_copies.get(start as usize, word_count as usize).unwrap_or_default();
        let parsed = GpaRanges::parse(copied, count).map(|ranges| ranges.words().len());
        // Words after the last range are padding, and a list that does not
        // parse is nobody's: drop them from the copy (a caller that reads a
        // corrupt packet again and again must not grow it).
        self.range_copies.truncate(start as usize + *parsed.as_ref().unwrap_or(&0));
        let words = parsed?;
        // `words` is at most `word_count`, a `u32`.
        Ok(RangeList { start, words: words as u32, count })
    }

    /// Copies `count` 8-byte words from `at` to the end of the batch's copy
    /// of range lists; returns where they start there. The words lie within
    /// one packet, and a batch reads less than the data area holds (its
    /// cursor never passes the committed read index: see
    /// `available_after_refresh`), so it never copies more than that, under
    /// 4 GiB: the positions fit a `u32`. Inlined into both its callers: a
    /// call would cost more than the copy of a short list.
    #[inline(always)]
    fn copy_range_words(&mut self, at: u32, count: u32) -> u32 {
        let (start, words) = self.range_copies.append(count as usize);
        self.mem.read_data(at as usize, words.as_mut_bytes());
        start as u32
    }

    /// Reads the 8-byte type-specific header at `at` (right after the
    /// descriptor, so a whole word), which must fit in `room`.
    fn type_header(&self, at: u32, room: u32) -> Result<[u8; 8], CorruptError> {
        if room < TYPE_HEADER_LEN {
            let data_offset8 = (DESCRIPTOR_LEN + room) / PACKET_ALIGNMENT as u32;
            return Err(CorruptError::new(Field::DataOffset8, data_offset8.into()));
        }
        Ok(self.mem.read_data_word(at as usize).to_le_bytes())
    }
}

/// A packet's descriptor, read once and checked: where the packet and its
/// parts lie, and its header fields.
#[derive(Clone, Copy)]
struct Framing {
    /// Data-area offset of the packet.
    at: u32,
    packet_type: u16,
    transaction_id: u64,
    completion_requested: bool,
    /// Bytes the packet takes, footer included.
    size: u32,
    payload: PayloadRange,
    /// Where a type-specific header starts, and the bytes it and its range
    /// list may take (those before the payload).
    header_at: u32,
    header_room: u32,
}

impl Framing {
    /// The packet, of kind `kind`.
    #[inline(always)]
    fn packet(&self, kind: PacketKind) -> IncomingPacket {
        let Framing { at, transaction_id, completion_requested, payload, .. } = *self;
        IncomingPacket { offset: at, transaction_id, completion_requested, kind, payload }
    }
}

/// The error of a packet whose type this crate does not parse. Cold, out of
/// line and given scalars: built where every packet is, this error (laid out
/// otherwise than a packet) cost every packet a dozen register moves.
#[cold]
#[inline(never)]
fn unsupported(packet_type: u16, transaction_id: u64, offset: u32, payload: PayloadRange) -> ReadError {
    ReadError::Unsupported(UnsupportedPacket { packet_type, transaction_id, offset, payload })
}

/// Packets read since the last commit. Their space is handed back to the
/// writer only by [`commit`](Self::commit); dropping the batch (or
/// [`revert`](Self::revert)) leaves them in the ring to be read again.
#[derive(Debug)]
#[must_use = "a batch frees no space until it is committed"]
pub struct ReadBatch<'a, M> {
    ring: &'a mut IncomingRing<M>,
    cursor: u32,
    /// Bytes readable from `cursor` by the cached write index: a packet
    /// costs a subtraction here, and the write index is re-read only when
    /// this runs out.
    available: u32,
    packets: usize,
    /// What the payload ranges of the packets this batch reads carry.
    id: BatchId,
}

impl<M: RingMem> ReadBatch<'_, M> {
    /// Reads and validates the next packet: `Ok(None)` when there is none
    /// (yet: the peer may write more).
    ///
    /// [`ReadError::Unsupported`] for a well-formed packet of a type this
    /// crate does not parse, which is skipped (the next call reads the
    /// packet after it); [`ReadError::Corrupt`] when the ring breaks the
    /// wire rules, after which every call fails the same way until the ring
    /// is reset.
    #[allow(clippy::should_implement_trait)]
    // Always inlined: LLVM outlines it once a program calls it from two
    // places, and then every packet goes back through memory (a batched
    // 64-byte round trip took 40% longer that way).
    #[inline(always)]
    pub fn next(&mut self) -> Result<Option<IncomingPacket>, ReadError> {
        if self.available == 0 {
            self.available = self.ring.available_after_refresh(self.cursor)?;
            if self.available == 0 {
                return Ok(None);
            }
        }
        let framing = self.ring.frame(self.cursor, self.available, self.id)?;
        let (header_at, room) = (framing.header_at, framing.header_room);
        let in_packet = |error: CorruptError| ReadError::from(error.in_packet(framing.at));
        let kind = match framing.packet_type {
            packet_type::DATA_IN_BAND => PacketKind::InBand,
            packet_type::COMPLETION => PacketKind::Completion,
            packet_type::DATA_TRANSFER_PAGES => {
                PacketKind::TransferPages(self.ring.transfer_pages(header_at, room).map_err(in_packet)?)
            }
            packet_type::DATA_GPA_DIRECT => {
                PacketKind::GpaDirect(self.ring.gpa_direct(header_at, room).map_err(in_packet)?)
            }
            _ => {
                self.step(framing.size);
                let Framing { packet_type, transaction_id, at, payload, .. } = framing;
                return Err(unsupported(packet_type, transaction_id, at, payload));
            }
        };
        self.step(framing.size);
        Ok(Some(framing.packet(kind)))
    }

    /// Moves past a packet of `size` bytes, at most the available ones.
    #[inline(always)]
    fn step(&mut self, size: u32) {
        self.cursor = index::advance(self.ring.data_len, self.cursor, size);
        self.available -= size;
        self.packets += 1;
    }

    /// Copies payload bytes starting `offset` bytes into `payload` into
    /// `buf`. [`PayloadError::NotFromThisBatch`] for the payload of a packet
    /// read by another batch: once that batch is committed, its bytes may
    /// hold newer packets.
    #[inline]
    pub fn read_payload(&self, payload: PayloadRange, offset: usize, buf: &mut [u8]) -> Result<(), PayloadError> {
        if payload.batch != self.id {
            return Err(PayloadError::NotFromThisBatch);
        }
        let out_of_bounds = PayloadError::OutOfBounds { offset, len: buf.len(), payload_len: payload.len() };
        let end = offset.checked_add(buf.len()).ok_or(out_of_bounds)?;
        let data_len = self.ring.data_len;
        // A range this batch handed out lies within the data area; checking
        // it costs two comparisons and keeps even a range of another ring
        // whose batch identity collided (see `BatchId`) from a panic.
        if end > payload.len() || payload.offset >= data_len || payload.len > data_len {
            return Err(out_of_bounds);
        }
        let at = index::advance(data_len, payload.offset, offset as u32);
        self.ring.read_into(at, buf);
        Ok(())
    }

    /// The GPA ranges of `packet`, a GPA-direct packet this batch read: a
    /// view of the batch's private copy, validated when the packet was read.
    ///
    /// [`PayloadError::NotFromThisBatch`] for a packet another batch read,
    /// [`PayloadError::NoSuchRanges`] for one of another kind.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, GpaRangeBuf, IncomingRing, OutgoingPacket, OutgoingRing};
    /// let mem = FlatRingMem::new(4096).unwrap();
    /// let mut ranges = GpaRangeBuf::new();
    /// ranges.push_contiguous(0x12_3400, 512).unwrap();
    /// OutgoingRing::new(mem.clone()).unwrap().write(&OutgoingPacket::gpa_direct(5, ranges.ranges()), &[]).unwrap();
    ///
    /// let mut reader = IncomingRing::new(mem).unwrap();
    /// let mut batch = reader.read_batch();
    /// let packet = batch.next().unwrap().unwrap();
    /// let range = batch.gpa_ranges(&packet).unwrap().iter().next().unwrap();
    /// assert_eq!((range.byte_offset, range.byte_count), (0x400, 512));
    /// assert_eq!(range.page_numbers().collect::<Vec<_>>(), [0x123]);
    /// ```
    #[inline]
    pub fn gpa_ranges(&self, packet: &IncomingPacket) -> Result<GpaRanges<'_>, PayloadError> {
        let PacketKind::GpaDirect(list) = packet.kind else {
            return Err(PayloadError::NoSuchRanges);
        };
        let words = self.range_words(packet, list)?;
        Ok(GpaRanges::parsed_before(words, list.count))
    }

    /// The ranges of `packet`, a transfer-pages packet this batch read: a
    /// view of the batch's private copy. Errors as for
    /// [`gpa_ranges`](Self::gpa_ranges).
    #[inline]
    pub fn transfer_page_ranges(&self, packet: &IncomingPacket) -> Result<&[TransferPageRange], PayloadError> {
        let PacketKind::TransferPages(pages) = packet.kind else {
            return Err(PayloadError::NoSuchRanges);
        };
        let words = self.range_words(packet, pages.ranges)?;
        // Both are 8 bytes without alignment needs, so this cannot fail.
        <[TransferPageRange]>::ref_from_bytes(words.as_bytes()).map_err(|_| PayloadError::NotFromThisBatch)
    }

    /// `packet`'s kind with its range list copied, to keep after the batch.
    /// Errors as for [`gpa_ranges`](Self::gpa_ranges), except that every
    /// kind has an owned form.
    pub fn owned_kind(&self, packet: &IncomingPacket) -> Result<OwnedPacketKind, PayloadError> {
        Ok(match packet.kind {
            PacketKind::InBand => OwnedPacketKind::InBand,
            PacketKind::Completion => OwnedPacketKind::Completion,
            PacketKind::TransferPages(pages) => OwnedPacketKind::TransferPages {
                set_id: pages.set_id,
                sender_owns_set: pages.sender_owns_set,
                ranges: self.transfer_page_ranges(packet)?.to_vec(),
            },
            PacketKind::GpaDirect(_) => OwnedPacketKind::GpaDirect(GpaRangeBuf::from(self.gpa_ranges(packet)?)),
        })
    }

    /// The words of `list`, a list of `packet`, from this batch's copy.
    /// A packet from another batch, or one whose list was changed after it
    /// was read, finds no words there (or not its own: the caller's own
    /// mistake, never an access outside the copy).
    #[inline]
    fn range_words(&self, packet: &IncomingPacket, list: RangeList) -> Result<&[U64], PayloadError> {
        if packet.payload.batch != self.id {
            return Err(PayloadError::NotFromThisBatch);
        }
        self.ring.range_copies.get(list.start as usize, list.words as usize).ok_or(PayloadError::NotFromThisBatch)
    }

    /// Packets read in this batch (skipped unsupported ones included).
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Hands the space of every packet read in this batch back to the writer:
    /// one release store of the read index. Returns whether the writer must
    /// be signalled (the free space crossed its pending send size).
    #[must_use = "signal the writer when this returns true"]
    #[inline]
    pub fn commit(self) -> bool {
        let ring = self.ring;
        if self.cursor == ring.read_index {
            return false;
        }
        let old_read = ring.read_index;
        ring.mem.store(ControlWord::ReadIndex, self.cursor, Ordering::Release);
        ring.read_index = self.cursor;
        if ring.signal_every_commit {
            return true;
        }
        signal::writer_needs_signal(&ring.mem, ring.data_len, old_read, self.cursor)
    }

    /// Leaves every packet of this batch in the ring, to be read again.
    pub fn revert(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlatRingMem, GpaRangeBuf, OutgoingPacket, OutgoingRing};

    #[test]
    fn a_write_index_that_laps_the_batch_is_corrupt_and_stays_so() {
        use crate::{ControlPage, ControlWord, TransferPageRange};
        let mem = FlatRingMem::new(4096).unwrap();
        let mut writer = OutgoingRing::new(mem.clone()).unwrap();
        let ranges = [TransferPageRange::new(100, 0); 8];
        let packet = OutgoingPacket::transfer_pages(1, 0, false, &ranges);
        let size = packet.size(0) as u32;
        writer.write(&packet, &[]).unwrap();
        let mut reader = IncomingRing::new(mem.clone()).unwrap();
        let mut batch = reader.read_batch();
        batch.next().unwrap().unwrap();
        // The writer claims to have gone round the ring and stopped short of
        // the first packet again: bytes the batch has read and not freed.
        // Taken for the truth, the batch would read on round the ring, and a
        // writer that kept this up would have it read (and copy the range
        // lists of) packets without end.
        mem.store(ControlWord::WriteIndex, size - 8, core::sync::atomic::Ordering::Release);
        for _ in 0..3 {
            let Err(ReadError::Corrupt(error)) = batch.next() else { panic!("a lapping write index was accepted") };
            assert_eq!((error.field, error.value), (Field::WriteIndex, u64::from(size - 8)));
        }
        assert_eq!(batch.ring.range_copies.used(), 8, "only the first packet's list was copied");
    }

    #[test]
    fn a_corrupt_range_list_read_again_and_again_does_not_grow_the_copies() {
        let mem = FlatRingMem::new(4096).unwrap();
        let mut ranges = GpaRangeBuf::new();
        ranges.push_contiguous(0x10_0000, 16384).unwrap();
        OutgoingRing::new(mem.clone()).unwrap().write(&OutgoingPacket::gpa_direct(1, ranges.ranges()), &[]).unwrap();
        // The range's byte offset (the high half of its header word, after
        // the 16-byte descriptor and the 8-byte GPA-direct header) past a page.
        mem.write_data(28, &5000u32.to_le_bytes());
        let mut reader = IncomingRing::new(mem).unwrap();
        let mut batch = reader.read_batch();
        for _ in 0..1000 {
            assert!(matches!(batch.next(), Err(ReadError::Corrupt(error)) if error.field == Field::GpaByteOffset));
        }
        assert_eq!(batch.ring.range_copies.used(), 0, "the corrupt list's words were dropped each time");
    }
}
