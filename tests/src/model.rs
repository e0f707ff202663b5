//! A reference model of one ring with its two endpoints, and runners that
//! play the same [`Op`] sequence on the real endpoints and on the model.
//!
//! The model knows nothing of ring bytes: it keeps the packets the writer has
//! published in a queue, counts bytes with the 8-byte rule, and makes the
//! signal decisions exactly as the signalling rules (`vmbus_ring::signal`) state them. The real run opens an
//! [`OutgoingRing`] and an [`IncomingRing`] over one ring memory. Both return
//! a [`Trace`]: one [`Outcome`] per op, comparable with `==`.
//!
//! ```
//! use vmbus_hostile_tests::model::{run_model, run_real, Op, Outcome, WriteKind, MODEL_DATA_LEN};
//! use vmbus_ring::FlatRingMem;
//!
//! let ops = [
//!     Op::Write { kind: WriteKind::InBand, payload_len: 5, range_count: 0, completion_requested: true },
//!     Op::CommitWrite,
//!     Op::Read,
//!     Op::CommitRead,
//! ];
//! let real = run_real(FlatRingMem::new(MODEL_DATA_LEN).unwrap(), &ops);
//! assert_eq!(real, run_model(MODEL_DATA_LEN, &ops));
//! assert_eq!(real[0], Outcome::Written { offset: 0, size: 32 });
//! assert_eq!(real[1], Outcome::Signal(true)); // empty to non-empty
//! ```
//!
//! # Batches
//!
//! A `Write` opens a write batch if none is open, and `Read` a read batch;
//! the batch stays open across later ops until `CommitWrite`/`RevertWrite`
//! (`CommitRead`/`RevertRead`). The endpoint API cannot change its ring's
//! settings while one of its batches is open, so `SetPendingSendSize` and
//! `ClearPendingSendSize` first drop (revert) an open write batch, and
//! `SetInterruptMask` and `PrepareToSleep` an open read batch; model and real
//! run alike. A commit with no open batch commits an empty one.
//!
//! # Content
//!
//! Everything a packet carries is derived from its transaction id, which is
//! derived from the op's index in the sequence ([`transaction_id`]), so the
//! model knows each byte a reader must see, padding (zero) included.

use std::collections::VecDeque;
use std::fmt;
use vmbus_ring::{
    ring_image, ControlWord, FlatRingMem, GpaRangeBuf, HeapRingPages, IncomingRing, MappedRingMem, MappingLayout,
    OutgoingPacket, OutgoingRing, OwnedPacketKind, PagedRingMem, ReadBatch, RingMem, TransferPageRange, WriteBatch,
    WriteError,
};

/// Data-area size [`ring_images_agree`] uses: two pages, so packets wrap
/// and cross page boundaries of paged memory.
pub const MODEL_DATA_LEN: usize = 2 * 4096;

/// The kind of packet a [`Op::Write`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum WriteKind {
    /// In-band data (type 6).
    InBand,
    /// A completion (type 11).
    Completion,
    /// Transfer pages (type 7) with `range_count` ranges.
    TransferPages,
    /// GPA direct (type 9) with `range_count` ranges (0 is refused by the writer).
    GpaDirect,
}

/// One writer or reader operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum Op {
    /// Writes a packet into the open write batch (opening one if needed).
    Write {
        /// Packet type.
        kind: WriteKind,
        /// Payload bytes (before padding).
        payload_len: u16,
        /// Ranges, for transfer-pages and GPA-direct packets; ignored otherwise.
        range_count: u8,
        /// Sets the completion-requested flag.
        completion_requested: bool,
    },
    /// Commits the open write batch; the outcome is the reader-signal decision.
    CommitWrite,
    /// Reverts the open write batch.
    RevertWrite,
    /// Reads the next packet in the open read batch (opening one if needed).
    Read,
    /// Commits the open read batch; the outcome is the writer-signal decision.
    CommitRead,
    /// Reverts the open read batch.
    RevertRead,
    /// The reader sets (`true`) or clears the interrupt mask.
    SetInterruptMask(bool),
    /// The writer asks for this many free bytes (`OutgoingRing::set_pending_send_size`).
    SetPendingSendSize(u16),
    /// The writer withdraws its pending send size.
    ClearPendingSendSize,
    /// A foreign writer stores this raw pending send size in the control page
    /// (not rounded, possibly `data_len - 1` or larger than the ring).
    StorePendingSendSize(u32),
    /// The reader's check before sleeping (`IncomingRing::prepare_to_sleep`).
    PrepareToSleep,
    /// The writer keeps this many bytes free after every write
    /// (`OutgoingRing::keep_free`); ends the open write batch.
    KeepFree(u16),
}

/// What one op did, as seen from outside the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A packet was written at data-area offset `offset`, taking `size` bytes
    /// (footer and padding included).
    Written {
        /// Where the packet starts.
        offset: u32,
        /// Ring bytes it takes.
        size: u32,
    },
    /// `WriteError::Full`.
    Full {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes free at the batch's cursor.
        free: usize,
    },
    /// `WriteError::TooLarge` (a write, or a pending send size no ring state can meet).
    TooLarge {
        /// Bytes the packet needs.
        needed: usize,
        /// Largest packet the ring takes.
        max: usize,
    },
    /// `WriteError::NoGpaRange`.
    NoGpaRange,
    /// A packet was read.
    Packet(ReadPacket),
    /// Nothing to read: `ReadBatch::next` returned `Ok(None)`.
    Empty,
    /// A commit: whether the peer must be signalled.
    Signal(bool),
    /// A revert.
    Reverted,
    /// `set_pending_send_size` returned `Ok(room)`: `true` if the space was
    /// already there (the request is withdrawn), `false` if the writer must wait.
    PendingSendSize {
        /// Whether the space is already free.
        room: bool,
    },
    /// `prepare_to_sleep` returned `Ok(sleep)`.
    Sleep(bool),
    /// An op without a result (mask, clear or store of a pending send size).
    Done,
    /// Any other error (corruption, out-of-range payload access): never
    /// expected in these runs, recorded so a comparison shows it.
    Error(String),
}

/// A packet as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPacket {
    /// Data-area offset where the packet starts.
    pub offset: u32,
    /// Transaction id.
    pub transaction_id: u64,
    /// Completion-requested flag.
    pub completion_requested: bool,
    /// Kind and type-specific header.
    pub kind: ReadKind,
    /// The payload as read, padding to 8 bytes included.
    pub payload: Vec<u8>,
}

/// The kind of a read packet, with its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadKind {
    /// In-band data.
    InBand,
    /// A completion.
    Completion,
    /// Transfer pages.
    TransferPages {
        /// Transfer page set.
        set_id: u16,
        /// Whether the sender owns the set.
        sender_owns_set: bool,
        /// `(byte_count, byte_offset)` per range.
        ranges: Vec<(u32, u32)>,
    },
    /// GPA direct.
    GpaDirect {
        /// `(byte_count, byte_offset, page numbers)` per range.
        ranges: Vec<(u32, u32, Vec<u64>)>,
    },
}

/// One [`Outcome`] per op.
pub type Trace = Vec<Outcome>;

/// The transaction id of the packet written by the op at `op_index`: every
/// bit of the `u64` gets used.
pub fn transaction_id(op_index: usize) -> u64 {
    (op_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The `len` payload bytes of the packet with transaction id `id`.
pub fn payload_bytes(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id >> (8 * (i % 8))) as u8 ^ (i / 8) as u8).collect()
}

fn transfer_ranges(id: u64, count: u8) -> Vec<(u32, u32)> {
    (0..u32::from(count)).map(|j| ((id as u32).wrapping_add(j * 977), j * 4096 + (id as u32 & 0xfff))).collect()
}

fn gpa_ranges(id: u64, count: u8) -> Vec<(u32, u32, Vec<u64>)> {
    (0..u32::from(count))
        .map(|j| {
            let byte_offset = ((id as u32) >> 5).wrapping_add(j * 131) % 4096;
            let byte_count = 1 + ((id >> 40) as u32 + j * 2897) % 9000;
            let pages = (u64::from(byte_offset) + u64::from(byte_count)).div_ceil(4096);
            let gpns = (0..pages).map(|p| (id >> 12) ^ (u64::from(j) << 20) ^ p).collect();
            (byte_count, byte_offset, gpns)
        })
        .collect()
}

/// The packet a reader must see for a write op at `offset`.
fn expected_packet(
    offset: u32,
    id: u64,
    kind: WriteKind,
    payload_len: u16,
    ranges: u8,
    completion: bool,
) -> ReadPacket {
    let mut payload = payload_bytes(id, payload_len.into());
    payload.resize(round_up8(payload.len()), 0);
    let kind = match kind {
        WriteKind::InBand => ReadKind::InBand,
        WriteKind::Completion => ReadKind::Completion,
        WriteKind::TransferPages => ReadKind::TransferPages {
            set_id: id as u16,
            sender_owns_set: id & 1 != 0,
            ranges: transfer_ranges(id, ranges),
        },
        WriteKind::GpaDirect => ReadKind::GpaDirect { ranges: gpa_ranges(id, ranges) },
    };
    ReadPacket { offset, transaction_id: id, completion_requested: completion, kind, payload }
}

fn round_up8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

// ---------------------------------------------------------------------------
// The model.

/// A published packet: where it lies, how many bytes it takes, what a reader sees.
#[derive(Debug, Clone)]
struct ModelPacket {
    size: u32,
    read: ReadPacket,
}

#[derive(Debug)]
struct Model {
    data_len: u32,
    /// Packets the writer has committed and the reader has not yet committed.
    published: VecDeque<ModelPacket>,
    /// The open write batch's packets.
    write_batch: Option<Vec<ModelPacket>>,
    /// Packets read in the open read batch.
    read_batch: Option<usize>,
    /// Committed write and read offsets.
    write_index: u32,
    read_index: u32,
    interrupt_mask: bool,
    pending_send_size: u32,
    /// Bytes every write leaves free.
    kept_free: usize,
}

impl Model {
    fn used(&self) -> u32 {
        self.published.iter().map(|p| p.size).sum()
    }

    /// Free bytes for a packet, `batch` bytes already written: whatever is
    /// not used, less the 8 that keep a full ring from looking empty.
    fn free(&self, batch: u32) -> u32 {
        (self.data_len - self.used() - batch).saturating_sub(8)
    }

    fn max_packet(&self) -> usize {
        (self.data_len as usize).saturating_sub(8).min(vmbus_ring::MAX_PACKET_SIZE)
    }

    fn step(&mut self, index: usize, op: &Op) -> Outcome {
        match *op {
            Op::Write { kind, payload_len, range_count, completion_requested } => {
                let batch = self.write_batch.take().unwrap_or_default();
                let batch_bytes: u32 = batch.iter().map(|p| p.size).sum();
                let id = transaction_id(index);
                let header = match kind {
                    WriteKind::InBand | WriteKind::Completion => 0,
                    WriteKind::TransferPages => 8 + 8 * usize::from(range_count),
                    WriteKind::GpaDirect => {
                        8 + 8 * gpa_ranges(id, range_count).iter().map(|r| 1 + r.2.len()).sum::<usize>()
                    }
                };
                let needed = round_up8(16 + header + usize::from(payload_len)) + 8;
                let free = self.free(batch_bytes) as usize;
                let max = self.max_packet().min((self.data_len as usize - 8).saturating_sub(self.kept_free));
                let outcome = if kind == WriteKind::GpaDirect && range_count == 0 {
                    Outcome::NoGpaRange
                } else if needed > max {
                    Outcome::TooLarge { needed, max }
                } else if needed + self.kept_free > free {
                    Outcome::Full { needed: needed + self.kept_free, free }
                } else {
                    let offset = (self.write_index + batch_bytes) % self.data_len;
                    let read = expected_packet(offset, id, kind, payload_len, range_count, completion_requested);
                    let mut batch = batch;
                    batch.push(ModelPacket { size: needed as u32, read });
                    self.write_batch = Some(batch);
                    return Outcome::Written { offset, size: needed as u32 };
                };
                self.write_batch = Some(batch);
                outcome
            }
            Op::CommitWrite => {
                let batch = self.write_batch.take().unwrap_or_default();
                if batch.is_empty() {
                    return Outcome::Signal(false);
                }
                // Signal if the reader is not masked and had read everything
                // (the ring goes from empty to non-empty).
                let signal = !self.interrupt_mask && self.published.is_empty();
                for packet in batch {
                    self.write_index = (self.write_index + packet.size) % self.data_len;
                    self.published.push_back(packet);
                }
                Outcome::Signal(signal)
            }
            Op::RevertWrite => {
                self.write_batch = None;
                Outcome::Reverted
            }
            Op::Read => {
                let read = self.read_batch.get_or_insert(0);
                match self.published.get(*read) {
                    Some(packet) => {
                        *read += 1;
                        Outcome::Packet(packet.read.clone())
                    }
                    None => Outcome::Empty,
                }
            }
            Op::CommitRead => {
                let read = self.read_batch.take().unwrap_or(0);
                if read == 0 {
                    return Outcome::Signal(false);
                }
                let free_before = self.free(0);
                for packet in self.published.drain(..read) {
                    self.read_index = (self.read_index + packet.size) % self.data_len;
                }
                let free_after = self.free(0);
                // Signal if the writer waits for space and the free space
                // crossed what it waits for. Free space is a multiple of 8,
                // so the wait is rounded up to one, and capped at what an
                // empty ring has free (peers ask for `data_len - 1`).
                //
                // (Rounding a wait of 13 down to 8 would signal at 8 free, when the writer still
                // cannot write, and never again at 16: a lost wakeup. Up is
                // the rule that keeps the writer's promise.)
                let signal = self.pending_send_size != 0 && {
                    let wanted = round_up8(self.pending_send_size as usize)
                        .min((self.data_len as usize).saturating_sub(8)) as u32;
                    free_before < wanted && free_after >= wanted
                };
                Outcome::Signal(signal)
            }
            Op::RevertRead => {
                self.read_batch = None;
                Outcome::Reverted
            }
            Op::SetInterruptMask(masked) => {
                self.read_batch = None;
                self.interrupt_mask = masked;
                Outcome::Done
            }
            Op::SetPendingSendSize(size) => {
                self.write_batch = None;
                let wanted = round_up8(size.into());
                if wanted > self.max_packet() {
                    return Outcome::TooLarge { needed: wanted, max: self.max_packet() };
                }
                let room = self.free(0) as usize >= wanted;
                self.pending_send_size = if room { 0 } else { wanted as u32 };
                Outcome::PendingSendSize { room }
            }
            Op::ClearPendingSendSize => {
                self.write_batch = None;
                self.pending_send_size = 0;
                Outcome::Done
            }
            Op::StorePendingSendSize(raw) => {
                self.pending_send_size = raw;
                Outcome::Done
            }
            Op::PrepareToSleep => {
                self.read_batch = None;
                self.interrupt_mask = false;
                Outcome::Sleep(self.published.is_empty())
            }
            Op::KeepFree(bytes) => {
                self.write_batch = None;
                self.kept_free = round_up8(bytes.into()).min(self.data_len as usize);
                Outcome::Done
            }
        }
    }
}

/// Runs `ops` on the reference model of a ring with a `data_len`-byte data
/// area (a multiple of 4096 in real use; the model does not check).
pub fn run_model(data_len: usize, ops: &[Op]) -> Trace {
    let mut model = Model {
        data_len: data_len as u32,
        published: VecDeque::new(),
        write_batch: None,
        read_batch: None,
        write_index: 0,
        read_index: 0,
        interrupt_mask: false,
        pending_send_size: 0,
        kept_free: 0,
    };
    ops.iter().enumerate().map(|(index, op)| model.step(index, op)).collect()
}

// ---------------------------------------------------------------------------
// The real endpoints.

/// Runs `ops` on an [`OutgoingRing`] and an [`IncomingRing`] opened over
/// `mem` (which should be a zeroed ring). If the ring cannot be opened the
/// trace is that one error.
pub fn run_real<M: RingMem + Clone>(mem: M, ops: &[Op]) -> Trace {
    let mut writer = match OutgoingRing::new(mem.clone()) {
        Ok(writer) => writer,
        Err(error) => return vec![Outcome::Error(format!("open writer: {error}"))],
    };
    let mut reader = match IncomingRing::new(mem.clone()) {
        Ok(reader) => reader,
        Err(error) => return vec![Outcome::Error(format!("open reader: {error}"))],
    };
    let data_len = writer.data_len() as u32;
    // The open write batch, with the committed write index it started from.
    let mut write_batch: Option<(WriteBatch<'_, M>, u32)> = None;
    let mut read_batch: Option<ReadBatch<'_, M>> = None;
    let mut trace = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let outcome = match *op {
            Op::Write { kind, payload_len, range_count, completion_requested } => {
                if write_batch.is_none() {
                    let start = writer.write_index();
                    write_batch = Some((writer.write_batch(), start));
                }
                let Some((batch, start)) = write_batch.as_mut() else { unreachable!() };
                let before = batch.bytes() as u32;
                match write_packet(batch, index, kind, payload_len, range_count, completion_requested) {
                    Ok(()) => {
                        Outcome::Written { offset: (*start + before) % data_len, size: batch.bytes() as u32 - before }
                    }
                    Err(WriteError::Full { needed, free }) => Outcome::Full { needed, free },
                    Err(WriteError::TooLarge { needed, max }) => Outcome::TooLarge { needed, max },
                    Err(WriteError::NoGpaRange) => Outcome::NoGpaRange,
                    Err(error) => Outcome::Error(format!("write: {error}")),
                }
            }
            Op::CommitWrite => {
                if write_batch.is_none() {
                    write_batch = Some((writer.write_batch(), 0));
                }
                let Some((batch, _)) = write_batch.take() else { unreachable!() };
                Outcome::Signal(batch.commit())
            }
            Op::RevertWrite => {
                if let Some((batch, _)) = write_batch.take() {
                    batch.revert();
                }
                Outcome::Reverted
            }
            Op::Read => {
                if read_batch.is_none() {
                    read_batch = Some(reader.read_batch());
                }
                let Some(batch) = read_batch.as_mut() else { unreachable!() };
                match batch.next() {
                    Ok(Some(packet)) => read_packet(batch, packet),
                    Ok(None) => Outcome::Empty,
                    Err(error) => Outcome::Error(format!("read: {error}")),
                }
            }
            Op::CommitRead => {
                if read_batch.is_none() {
                    read_batch = Some(reader.read_batch());
                }
                let Some(batch) = read_batch.take() else { unreachable!() };
                Outcome::Signal(batch.commit())
            }
            Op::RevertRead => {
                if let Some(batch) = read_batch.take() {
                    batch.revert();
                }
                Outcome::Reverted
            }
            Op::SetInterruptMask(masked) => {
                read_batch = None;
                reader.set_interrupt_mask(masked);
                Outcome::Done
            }
            Op::SetPendingSendSize(size) => {
                write_batch = None;
                match writer.set_pending_send_size(size.into()) {
                    Ok(room) => Outcome::PendingSendSize { room },
                    Err(WriteError::TooLarge { needed, max }) => Outcome::TooLarge { needed, max },
                    Err(error) => Outcome::Error(format!("set pending send size: {error}")),
                }
            }
            Op::ClearPendingSendSize => {
                write_batch = None;
                writer.clear_pending_send_size();
                Outcome::Done
            }
            Op::StorePendingSendSize(raw) => {
                mem.store(ControlWord::PendingSendSize, raw, std::sync::atomic::Ordering::Relaxed);
                Outcome::Done
            }
            Op::PrepareToSleep => {
                read_batch = None;
                match reader.prepare_to_sleep() {
                    Ok(sleep) => Outcome::Sleep(sleep),
                    Err(error) => Outcome::Error(format!("prepare to sleep: {error}")),
                }
            }
            Op::KeepFree(bytes) => {
                write_batch = None;
                writer.keep_free(bytes.into());
                Outcome::Done
            }
        };
        trace.push(outcome);
    }
    trace
}

/// Writes one packet, through `write` with one or two pieces or through
/// `reserve` and `write_payload` (chosen by the op index), so every way of
/// writing a payload is covered and must give the same bytes.
fn write_packet<M: RingMem>(
    batch: &mut WriteBatch<'_, M>,
    index: usize,
    kind: WriteKind,
    payload_len: u16,
    range_count: u8,
    completion_requested: bool,
) -> Result<(), WriteError> {
    let id = transaction_id(index);
    let transfer: Vec<TransferPageRange> = transfer_ranges(id, range_count)
        .into_iter()
        .map(|(count, offset)| TransferPageRange::new(count, offset))
        .collect();
    let mut gpa = GpaRangeBuf::new();
    for (byte_count, byte_offset, gpns) in gpa_ranges(id, range_count) {
        gpa.push(byte_offset, byte_count, &gpns).expect("generated GPA ranges are valid");
    }
    let mut packet = match kind {
        WriteKind::InBand => OutgoingPacket::in_band(id),
        WriteKind::Completion => OutgoingPacket::completion(id),
        WriteKind::TransferPages => OutgoingPacket::transfer_pages(id, id as u16, id & 1 != 0, &transfer),
        WriteKind::GpaDirect => OutgoingPacket::gpa_direct(id, gpa.ranges()),
    };
    packet.completion_requested = completion_requested;
    let payload = payload_bytes(id, payload_len.into());
    let (head, tail) = payload.split_at(payload.len() / 3);
    match index % 3 {
        0 => batch.write(&packet, &[&payload]),
        1 => batch.write(&packet, &[head, tail]),
        _ => {
            let range = batch.reserve(&packet, payload.len())?;
            batch.write_payload(range, 0, head)?;
            batch.write_payload(range, head.len(), tail)?;
            Ok(())
        }
    }
}

/// Copies a read packet's header fields and payload out of the ring.
fn read_packet<M: RingMem>(batch: &ReadBatch<'_, M>, packet: vmbus_ring::IncomingPacket) -> Outcome {
    let mut payload = vec![0; packet.payload.len()];
    if let Err(error) = batch.read_payload(packet.payload, 0, &mut payload) {
        return Outcome::Error(format!("read payload: {error}"));
    }
    let owned = match batch.owned_kind(&packet) {
        Ok(owned) => owned,
        Err(error) => return Outcome::Error(format!("read ranges: {error}")),
    };
    let kind = match owned {
        OwnedPacketKind::InBand => ReadKind::InBand,
        OwnedPacketKind::Completion => ReadKind::Completion,
        OwnedPacketKind::TransferPages { set_id, sender_owns_set, ranges } => ReadKind::TransferPages {
            set_id,
            sender_owns_set,
            ranges: ranges.iter().map(|r| (r.byte_count.get(), r.byte_offset.get())).collect(),
        },
        OwnedPacketKind::GpaDirect(ranges) => ReadKind::GpaDirect {
            ranges: ranges.ranges().iter().map(|r| (r.byte_count, r.byte_offset, r.page_numbers().collect())).collect(),
        },
    };
    Outcome::Packet(ReadPacket {
        offset: packet.offset,
        transaction_id: packet.transaction_id,
        completion_requested: packet.completion_requested,
        kind,
        payload,
    })
}

// ---------------------------------------------------------------------------
// Comparisons.

/// Runs `ops` on the real endpoints over a zeroed [`FlatRingMem`] of
/// `data_len` bytes and on the model; `Err` names the first op whose
/// outcomes differ.
pub fn real_matches_model(data_len: usize, ops: &[Op]) -> Result<(), String> {
    let mem = FlatRingMem::new(data_len).map_err(|e| format!("flat ring of {data_len} bytes: {e}"))?;
    compare_traces(ops, ("real", &run_real(mem, ops)), ("model", &run_model(data_len, ops)))
}

/// Runs `ops` on the real endpoints over flat, paged, memfd-mapped and
/// double-mapped ring memory (each [`MODEL_DATA_LEN`] bytes); `Err` names
/// the first op whose outcomes differ, or the first ring byte that differs
/// at the end.
pub fn ring_images_agree(ops: &[Op]) -> Result<(), String> {
    let pages = MODEL_DATA_LEN / 4096;
    let flat = FlatRingMem::new(MODEL_DATA_LEN).map_err(|e| format!("flat ring: {e}"))?;
    let paged = PagedRingMem::new(&HeapRingPages::new(pages)).map_err(|e| format!("paged ring: {e}"))?;
    let (mapped, _fd) =
        MappedRingMem::create_memfd(MODEL_DATA_LEN, MappingLayout::Single).map_err(|e| format!("memfd ring: {e}"))?;
    let (double, _double_fd) = MappedRingMem::create_memfd(MODEL_DATA_LEN, MappingLayout::Double)
        .map_err(|e| format!("double-mapped memfd ring: {e}"))?;

    let reference = run_real(flat.clone(), ops);
    let reference_image = ring_image(&flat);
    let others = [
        ("paged", run_real(paged.clone(), ops), ring_image(&paged)),
        ("mapped", run_real(mapped.clone(), ops), ring_image(&mapped)),
        ("double-mapped", run_real(double.clone(), ops), ring_image(&double)),
    ];
    for (name, trace, image) in &others {
        compare_traces(ops, ("flat", &reference), (name, trace))?;
        if let Some(at) = reference_image.iter().zip(image).position(|(a, b)| a != b) {
            return Err(format!(
                "ring images differ at byte {at} ({}): flat has {:#04x}, {name} has {:#04x}",
                ImageOffset(at),
                reference_image[at],
                image[at]
            ));
        }
        if reference_image.len() != image.len() {
            return Err(format!("ring images differ in length: {} vs {}", reference_image.len(), image.len()));
        }
    }
    Ok(())
}

struct ImageOffset(usize);

impl fmt::Display for ImageOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_sub(4096) {
            None => write!(f, "control page offset {}", self.0),
            Some(data) => write!(f, "data offset {data}"),
        }
    }
}

fn compare_traces(ops: &[Op], (a_name, a): (&str, &Trace), (b_name, b): (&str, &Trace)) -> Result<(), String> {
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        return Err(format!("op #{i} {:?}: {a_name} gave {:?}, {b_name} gave {:?}", ops.get(i), a.get(i), b.get(i)));
    }
    Ok(())
}
