//! The writing endpoint of a ring.

use crate::batch_id::{BatchId, BatchIds};
use crate::error::PayloadError;
use crate::memory::{check_data_len, ControlWord, RingMem};
use crate::packet::{packet_size, round_up8, OutgoingKind, OutgoingPacket, PayloadRange, MAX_PACKET_SIZE};
use crate::wire::{
    packet_type, GpaDirectHeader, PacketDescriptor, PacketFooter, TransferPageHeader, FEATURE_PENDING_SEND_SIZE,
    FLAG_COMPLETION_REQUESTED, PACKET_ALIGNMENT,
};
use crate::{index, signal, CorruptError, Field, OpenError, RingState, WriteError};
use core::sync::atomic::Ordering;
use zerocopy::IntoBytes;

const DESCRIPTOR_LEN: usize = size_of::<PacketDescriptor>();
/// Size of the transfer-pages and GPA-direct headers.
const TYPE_HEADER_LEN: usize = size_of::<TransferPageHeader>();

/// The writing end of a ring.
///
/// The write index is private to this endpoint: it is read (and validated)
/// once when the ring is opened and published only by a commit, so nothing
/// the peer writes to it is ever trusted. The peer's read index is cached and
/// re-read only when the cached value leaves too little room.
///
/// ```
/// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing};
/// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
/// let mut batch = ring.write_batch();
/// batch.write(&OutgoingPacket::in_band(1), &[b"hello, "]).unwrap();
/// batch.write(&OutgoingPacket::in_band(2), &[b"wor", b"ld"]).unwrap();
/// let signal_reader = batch.commit();
/// assert!(signal_reader); // the ring was empty and the reader is not polling
/// ```
#[derive(Debug)]
pub struct OutgoingRing<M> {
    mem: M,
    data_len: u32,
    /// [`max_packet_size`](Self::max_packet_size), worked out once at open.
    max_packet: u32,
    write_index: u32,
    read_index: u32,
    /// Bytes every write leaves free; see [`keep_free`](Self::keep_free).
    kept_free: u32,
    /// The room at the write index (see `room_at`) as last worked out, or
    /// less: the read index only moves forward, so a value from an older
    /// read index never claims room that is not there. A batch starts from
    /// it instead of working it out again. It holds because only a commit
    /// moves the write index and only `keep_free` changes the kept bytes,
    /// and both set it; anything else that changes either must too.
    room: u32,
    batch_ids: BatchIds,
}

impl<M: RingMem> OutgoingRing<M> {
    /// Opens the writing end over `mem`, validating the data-area size and
    /// both indices, and advertises pending-send-size support.
    pub fn new(mem: M) -> Result<Self, OpenError> {
        check_data_len(mem.data_len())?;
        let data_len = mem.data_len() as u32;
        let write_index =
            index::check(mem.load(ControlWord::WriteIndex, Ordering::Relaxed), data_len, Field::WriteIndex)?;
        let read_index = index::check(mem.load(ControlWord::ReadIndex, Ordering::Acquire), data_len, Field::ReadIndex)?;
        mem.store(ControlWord::FeatureBits, FEATURE_PENDING_SEND_SIZE, Ordering::Relaxed);
        // Below 4 GiB: `data_len` is a `u32` and `MAX_PACKET_SIZE` is smaller.
        let max_packet = (data_len as usize - PACKET_ALIGNMENT).min(MAX_PACKET_SIZE) as u32;
        let mut ring = Self {
            mem,
            data_len,
            max_packet,
            write_index,
            read_index,
            kept_free: 0,
            room: 0,
            batch_ids: BatchIds::new(),
        };
        ring.room = ring.room_at(write_index);
        Ok(ring)
    }

    /// The ring memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Size of the data area in bytes.
    pub fn data_len(&self) -> usize {
        self.data_len as usize
    }

    /// The committed write index.
    pub fn write_index(&self) -> u32 {
        self.write_index
    }

    /// Largest packet this ring takes, footer included: what an empty ring
    /// can hold, and what a descriptor can describe.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingRing};
    /// let ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// assert_eq!(ring.max_packet_size(), 4088);
    /// ```
    pub fn max_packet_size(&self) -> usize {
        self.max_packet as usize
    }

    /// Makes every later write leave at least `bytes` free (rounded up to
    /// a multiple of 8), for a packet that must always fit when its time
    /// comes: a pipe keeps room this way for its end-of-stream packet.
    /// `0`, the default, uses the whole ring. Writes that would leave less
    /// fail with [`WriteError::Full`], whose `needed` then counts the kept
    /// bytes too (so [`set_pending_send_size`](Self::set_pending_send_size)
    /// waits for them); a packet that could fit only in the kept bytes fails
    /// with [`WriteError::TooLarge`], whose `max` is what is left. Lower the
    /// setting to write the packet the room was kept for.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing, WriteError};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// ring.keep_free(32);
    /// ring.write(&OutgoingPacket::in_band(1), &[&[0; 4000]]).unwrap();
    /// // 4024 bytes used, 64 left: a 40-byte packet would leave 24.
    /// let full = ring.write(&OutgoingPacket::in_band(2), &[&[0; 16]]);
    /// assert!(matches!(full, Err(WriteError::Full { needed: 72, free: 64 })));
    /// ring.keep_free(0);
    /// ring.write(&OutgoingPacket::in_band(2), &[&[0; 16]]).unwrap();
    /// ```
    pub fn keep_free(&mut self, bytes: usize) {
        self.kept_free = round_up8(bytes).min(self.data_len as usize) as u32;
        self.room = self.room_at(self.write_index);
    }

    /// Bytes every write leaves free, as set by [`keep_free`](Self::keep_free).
    pub fn kept_free(&self) -> usize {
        self.kept_free as usize
    }

    /// Starts a batch of writes at the committed write index.
    #[inline]
    pub fn write_batch(&mut self) -> WriteBatch<'_, M> {
        let (cursor, room) = (self.write_index, self.room);
        debug_assert!(room <= self.room_at(cursor), "the cached room is more than there is");
        let id = self.batch_ids.next();
        WriteBatch { ring: self, cursor, room, packets: 0, id }
    }

    /// Writes one packet and commits it; returns whether to signal the reader.
    pub fn write(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<bool, WriteError> {
        let mut batch = self.write_batch();
        batch.write(packet, payload)?;
        Ok(batch.commit())
    }

    /// Whether a packet of `packet_size` bytes (see [`OutgoingPacket::size`])
    /// fits now, leaving the [`kept_free`](Self::kept_free) bytes. Re-reads
    /// the peer's read index if the cached one is not enough.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingRing};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// assert!(ring.can_write(4088).unwrap());
    /// assert!(!ring.can_write(4096).unwrap()); // a ring is never completely full
    /// ```
    pub fn can_write(&mut self, packet_size: usize) -> Result<bool, CorruptError> {
        let wanted = packet_size.saturating_add(self.kept_free as usize);
        Ok(self.free_from(self.write_index, wanted)? >= wanted)
    }

    /// Bytes packets starting at `cursor` may take, by the cached read
    /// index, with the kept-free bytes left over; no more than the largest
    /// packet. That cap is what keeps a packet that passes the room check
    /// within what a descriptor's `length8` can describe.
    #[inline]
    fn room_at(&self, cursor: u32) -> u32 {
        index::free(self.data_len, cursor, self.read_index).saturating_sub(self.kept_free).min(self.max_packet)
    }

    /// The slow path of [`WriteBatch::reserve`]'s room check: refuses a
    /// packet too large for the ring, refreshes the cached read index, and
    /// reports a full ring with what it found free.
    #[inline(never)]
    fn make_room(&mut self, cursor: u32, needed: usize) -> Result<(), WriteError> {
        let kept = self.kept_free as usize;
        // What a descriptor can describe, and what an empty ring holds
        // beside the kept bytes.
        let max = self.max_packet_size().min((self.data_len as usize - PACKET_ALIGNMENT).saturating_sub(kept));
        if needed > max {
            return Err(WriteError::TooLarge { needed, max });
        }
        let wanted = needed + kept;
        let free = self.free_from(cursor, wanted)?;
        if free < wanted {
            return Err(WriteError::Full { needed: wanted, free });
        }
        Ok(())
    }

    /// Bytes free for packets starting at `cursor`, refreshing the cached read
    /// index first if the cached one leaves less than `wanted`.
    fn free_from(&mut self, cursor: u32, wanted: usize) -> Result<usize, CorruptError> {
        let free = index::free(self.data_len, cursor, self.read_index) as usize;
        if free >= wanted {
            return Ok(free);
        }
        self.refresh_read_index()?;
        Ok(index::free(self.data_len, cursor, self.read_index) as usize)
    }

    /// Re-reads the peer's read index. A reader only moves forward, and
    /// never past what was committed: a read index outside the span from the
    /// cached one to the committed write index would free bytes of unread
    /// packets or of the open batch, so it is corrupt.
    fn refresh_read_index(&mut self) -> Result<(), CorruptError> {
        let raw = self.mem.load(ControlWord::ReadIndex, Ordering::Acquire);
        let read = index::check(raw, self.data_len, Field::ReadIndex)?;
        let unread = |read| index::used(self.data_len, self.write_index, read);
        if unread(read) > unread(self.read_index) {
            return Err(CorruptError::new(Field::ReadIndex, raw.into()));
        }
        self.read_index = read;
        Ok(())
    }

    /// Tells the reader this writer is blocked until `packet_size` bytes are
    /// free (rounded up to a multiple of 8), then re-checks: returns
    /// `Ok(true)` (with the request withdrawn) if the space is there already,
    /// `Ok(false)` if the caller should wait for the reader's signal. Call
    /// [`clear_pending_send_size`](Self::clear_pending_send_size) once the
    /// write has gone through.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingRing};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// assert!(ring.set_pending_send_size(64).unwrap()); // an empty ring has room: no wait
    /// assert!(ring.set_pending_send_size(8192).is_err()); // can never fit
    /// ```
    pub fn set_pending_send_size(&mut self, packet_size: usize) -> Result<bool, WriteError> {
        let wanted = round_up8(packet_size);
        self.check_fits_ring(wanted)?;
        self.mem.store(ControlWord::PendingSendSize, wanted as u32, Ordering::Relaxed);
        // Rule "a blocked writer": orders the pending-send-size store before
        // the read-index load, against the reader's free (store, fence,
        // pending load in `signal::writer_needs_signal`).
        self.mem.full_fence();
        if let Err(corrupt) = self.refresh_read_index() {
            self.clear_pending_send_size();
            return Err(corrupt.into());
        }
        let room = index::free(self.data_len, self.write_index, self.read_index) as usize >= wanted;
        if room {
            self.clear_pending_send_size();
        }
        Ok(room)
    }

    /// Withdraws a pending send size.
    pub fn clear_pending_send_size(&mut self) {
        self.mem.store(ControlWord::PendingSendSize, 0, Ordering::Relaxed);
    }

    /// Whether the reader should be awake now but may be asleep: packets it
    /// has not read are committed and it has not masked interrupts. Fences,
    /// then loads the mask and the read index. A writer that finds this true
    /// should signal the reader: its signal may have been lost.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// assert!(!ring.reader_missed_signal());
    /// let _signalled = ring.write(&OutgoingPacket::in_band(1), &[b"x"]).unwrap();
    /// assert!(ring.reader_missed_signal()); // whether or not that signal arrived
    /// ```
    pub fn reader_missed_signal(&self) -> bool {
        // Not a signalling rule: an unstick check, off the per-packet path
        // (see `IncomingRing::writer_missed_signal`).
        self.mem.full_fence();
        let mask = self.mem.load(ControlWord::InterruptMask, Ordering::Relaxed);
        let read = self.mem.load(ControlWord::ReadIndex, Ordering::Relaxed);
        signal::reader_missed_signal(mask, read, self.write_index)
    }

    /// A snapshot of the control page.
    pub fn state(&self) -> RingState {
        RingState::read(&self.mem)
    }

    fn check_fits_ring(&self, packet_size: usize) -> Result<(), WriteError> {
        let max = self.max_packet_size();
        if packet_size > max {
            return Err(WriteError::TooLarge { needed: packet_size, max });
        }
        Ok(())
    }
}

/// Packets written since the last commit: invisible to the reader until
/// [`commit`](Self::commit); dropping the batch (or [`revert`](Self::revert))
/// discards them.
#[derive(Debug)]
#[must_use = "a batch publishes nothing until it is committed"]
pub struct WriteBatch<'a, M> {
    ring: &'a mut OutgoingRing<M>,
    cursor: u32,
    /// Bytes the batch may still write at `cursor` by the cached read index
    /// (or fewer), kept-free bytes left over, and at most the largest
    /// packet: a packet that fits costs one comparison and one subtraction
    /// here.
    room: u32,
    packets: usize,
    /// What the payload ranges this batch reserves carry.
    id: BatchId,
}

impl<M: RingMem> WriteBatch<'_, M> {
    /// Writes a packet whose payload is the concatenation of `payload`.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing, WriteError};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// let mut batch = ring.write_batch();
    /// batch.write(&OutgoingPacket::in_band(1), &[&[0; 3000]]).unwrap();
    /// let full = batch.write(&OutgoingPacket::in_band(2), &[&[0; 3000]]);
    /// assert!(matches!(full, Err(WriteError::Full { needed: 3024, .. })));
    /// ```
    // Always inlined, as `ReadBatch::next` is and for the same reason.
    #[inline(always)]
    pub fn write(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<(), WriteError> {
        // One piece, the common case: one copy, no length sum or cursor to keep.
        if let [piece] = payload {
            let range = self.reserve(packet, piece.len())?;
            if !piece.is_empty() {
                self.ring.mem.write_data(range.offset as usize, piece);
            }
            return Ok(());
        }
        let payload_len = payload.iter().try_fold(0usize, |sum, piece| sum.checked_add(piece.len()));
        let range = self.reserve(packet, payload_len.unwrap_or(usize::MAX))?;
        let mut at = range.offset;
        for piece in payload.iter().filter(|piece| !piece.is_empty()) {
            self.ring.mem.write_data(at as usize, piece);
            at = index::advance(self.ring.data_len, at, piece.len() as u32);
        }
        Ok(())
    }

    /// Writes a packet's descriptor, header, padding and footer, and returns
    /// where its `payload_len` payload bytes go, for the caller to fill with
    /// [`write_payload`](Self::write_payload) before the commit.
    ///
    /// ```
    /// use vmbus_ring::{FlatRingMem, OutgoingPacket, OutgoingRing};
    /// let mut ring = OutgoingRing::new(FlatRingMem::new(4096).unwrap()).unwrap();
    /// let mut batch = ring.write_batch();
    /// let payload = batch.reserve(&OutgoingPacket::in_band(1), 12).unwrap();
    /// batch.write_payload(payload, 0, b"hello").unwrap();
    /// batch.write_payload(payload, 5, b", world").unwrap();
    /// assert!(batch.write_payload(payload, 10, b"overrun").is_err());
    /// batch.commit();
    /// ```
    // Always inlined, as `write` (its caller) is.
    #[inline(always)]
    pub fn reserve(&mut self, packet: &OutgoingPacket<'_>, payload_len: usize) -> Result<PayloadRange, WriteError> {
        if matches!(packet.kind, OutgoingKind::GpaDirect(ranges) if ranges.is_empty()) {
            return Err(WriteError::NoGpaRange);
        }
        let header_len = packet.kind.header_len();
        let needed = packet_size(header_len, payload_len);
        let start = self.cursor;
        if needed > self.room as usize {
            self.ring.make_room(start, needed)?;
            self.room = self.ring.room_at(start);
        }
        // `needed` is at most the room, which is capped at the largest
        // packet (see `room_at`), or `make_room` checked it against that: it
        // fits the ring and a descriptor, so the lengths below fit their
        // fields.
        let data_offset = size_of::<PacketDescriptor>() + header_len;
        let length = needed - size_of::<PacketFooter>();
        let descriptor = PacketDescriptor {
            packet_type: wire_type(&packet.kind).into(),
            data_offset8: ((data_offset / PACKET_ALIGNMENT) as u16).into(),
            length8: ((length / PACKET_ALIGNMENT) as u16).into(),
            flags: if packet.completion_requested { FLAG_COMPLETION_REQUESTED } else { 0 }.into(),
            transaction_id: packet.transaction_id.into(),
        };
        let data_len = self.ring.data_len;
        let frame = Frame { descriptor, kind: &packet.kind, start, payload_len, data_offset, length };
        // `start` is below `data_len`, and `needed` fits the ring: a packet
        // that ends before the end of the data area, as almost all do, has
        // its parts located by plain additions; one that wraps goes through
        // the wrapping arithmetic, in a copy of the code of its own.
        let payload_at = if needed < (data_len - start) as usize {
            frame.write(&self.ring.mem, true, |offset| start as usize + offset)
        } else {
            frame.write(&self.ring.mem, false, |offset| index::advance(data_len, start, offset as u32) as usize)
        };
        self.cursor = index::advance(data_len, start, needed as u32);
        // At least `needed` (checked above, or found by `make_room`).
        self.room -= needed as u32;
        self.packets += 1;
        Ok(PayloadRange { offset: payload_at as u32, len: payload_len as u32, batch: self.id })
    }

    /// Copies `bytes` into a payload reserved in this batch, at `offset`
    /// within it. [`PayloadError::NotFromThisBatch`] for a range reserved in
    /// another batch (a committed or reverted one, whose bytes may now be
    /// this batch's descriptors).
    #[inline]
    pub fn write_payload(&mut self, payload: PayloadRange, offset: usize, bytes: &[u8]) -> Result<(), PayloadError> {
        if payload.batch != self.id {
            return Err(PayloadError::NotFromThisBatch);
        }
        let out_of_bounds = PayloadError::OutOfBounds { offset, len: bytes.len(), payload_len: payload.len() };
        let end = offset.checked_add(bytes.len()).ok_or(out_of_bounds)?;
        let data_len = self.ring.data_len;
        // As in `ReadBatch::read_payload`: a range of this batch lies within
        // the data area, and checking it keeps a collided identity from a panic.
        if end > payload.len() || payload.offset >= data_len || payload.len > data_len {
            return Err(out_of_bounds);
        }
        let at = index::advance(data_len, payload.offset, offset as u32);
        self.ring.mem.write_data(at as usize, bytes);
        Ok(())
    }

    /// Packets written in this batch.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Bytes written in this batch.
    pub fn bytes(&self) -> usize {
        index::used(self.ring.data_len, self.cursor, self.ring.write_index) as usize
    }

    /// Publishes the batch: one release store of the write index. Returns
    /// whether the reader must be signalled (it was caught up and is not
    /// polling); an empty batch publishes nothing and needs no signal.
    #[must_use = "signal the reader when this returns true"]
    #[inline]
    pub fn commit(self) -> bool {
        let ring = self.ring;
        if self.packets == 0 {
            return false;
        }
        let batch_start = ring.write_index;
        ring.mem.store(ControlWord::WriteIndex, self.cursor, Ordering::Release);
        ring.write_index = self.cursor;
        ring.room = self.room;
        signal::reader_needs_signal(&ring.mem, batch_start)
    }

    /// Discards the batch; the reader never sees it.
    pub fn revert(self) {}
}

/// The parts of a packet that [`WriteBatch::reserve`] writes: everything
/// but the payload.
struct Frame<'k, 'a> {
    descriptor: PacketDescriptor,
    kind: &'k OutgoingKind<'a>,
    start: u32,
    payload_len: usize,
    data_offset: usize,
    /// Bytes before the footer.
    length: usize,
}

impl Frame<'_, '_> {
    /// Writes the descriptor, type header, padding and footer, placing each
    /// part with `at` (an offset within the packet to a data-area offset),
    /// and returns the data-area offset of the payload. `contiguous` says
    /// that the packet does not wrap, so its descriptor and footer go in
    /// with one bounds check.
    #[inline(always)]
    fn write(&self, mem: &impl RingMem, contiguous: bool, at: impl Fn(usize) -> usize) -> usize {
        // Fixed-size parts go in as whole words taken from registers (see
        // `word`), each at an 8-aligned offset, where no word wraps.
        let [head, transaction_id]: [[u8; PACKET_ALIGNMENT]; 2] = zerocopy::transmute!(self.descriptor);
        let footer = PacketFooter { reserved: 0.into(), start_offset: self.start.into() };
        let footer = word(zerocopy::transmute!(footer));
        if contiguous {
            let head = [word(head), word(transaction_id)];
            mem.write_frame_words(self.start as usize, self.length + size_of::<PacketFooter>(), head, footer);
        } else {
            mem.write_data_word(self.start as usize, word(head));
            mem.write_data_word(at(PACKET_ALIGNMENT), word(transaction_id));
            mem.write_data_word(at(self.length), footer);
        }
        if !matches!(self.kind, OutgoingKind::InBand | OutgoingKind::Completion) {
            write_type_header(mem, self.kind, at(DESCRIPTOR_LEN), at(DESCRIPTOR_LEN + TYPE_HEADER_LEN));
        }
        // The padding, as a whole word: when the payload does not end on a
        // word, its last word is zeroed here, and the payload, copied over
        // the word's head afterwards, leaves the padding zero. That word
        // belongs to the payload (which is not empty if it needs padding), so
        // no descriptor or header byte is touched.
        if !self.payload_len.is_multiple_of(PACKET_ALIGNMENT) {
            mem.write_data_word(at(self.length - PACKET_ALIGNMENT), 0);
        }
        at(self.data_offset)
    }
}

/// Writes the type-specific header of a transfer-pages or GPA-direct packet
/// at data-area offset `header_at` and its range list at `ranges_at`. Out of
/// line, so that the in-band path `write` inlines stays small enough to be
/// inlined wherever it is called.
#[inline(never)]
fn write_type_header(mem: &impl RingMem, kind: &OutgoingKind<'_>, header_at: usize, ranges_at: usize) {
    match *kind {
        OutgoingKind::InBand | OutgoingKind::Completion => {}
        OutgoingKind::TransferPages { set_id, sender_owns_set, ranges } => {
            let header = TransferPageHeader {
                set_id: set_id.into(),
                sender_owns_set: sender_owns_set.into(),
                reserved: 0,
                range_count: (ranges.len() as u32).into(),
            };
            mem.write_data_word(header_at, word(zerocopy::transmute!(header)));
            mem.write_data(ranges_at, ranges.as_bytes());
        }
        OutgoingKind::GpaDirect(ranges) => {
            let header = GpaDirectHeader { reserved: 0.into(), range_count: (ranges.len() as u32).into() };
            mem.write_data_word(header_at, word(zerocopy::transmute!(header)));
            mem.write_data(ranges_at, ranges.words().as_bytes());
        }
    }
}

/// An 8-byte wire structure's bytes (transmuted to an array) as the
/// little-endian word [`RingMem::write_data_word`] stores. Going through the
/// integer keeps the value in a register: copied straight from the
/// structure, its bytes would be stored field by field on the stack and
/// loaded back as one word, a load the CPU cannot forward from the narrower
/// stores (a stall of a dozen cycles or more).
#[inline]
fn word(bytes: [u8; PACKET_ALIGNMENT]) -> u64 {
    u64::from_le_bytes(bytes)
}

#[inline]
fn wire_type(kind: &OutgoingKind<'_>) -> u16 {
    match kind {
        OutgoingKind::InBand => packet_type::DATA_IN_BAND,
        OutgoingKind::Completion => packet_type::COMPLETION,
        OutgoingKind::TransferPages { .. } => packet_type::DATA_TRANSFER_PAGES,
        OutgoingKind::GpaDirect(_) => packet_type::DATA_GPA_DIRECT,
    }
}
