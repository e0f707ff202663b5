//! `parse`: an arbitrary control page and data area, read to the end.
//!
//! # Input layout
//!
//! All integers little-endian; bytes past the end of the input read as zero.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | config: bits 0–1 data pages − 1 (1 to 4 pages); bits 2–3 ring memory (0 flat, 1 paged, 2 mapped, 3 double-mapped memfd on Linux, flat elsewhere); bit 4 raw indices |
//! | 1..5 | write index |
//! | 5..9 | read index |
//! | 9..13 | interrupt mask |
//! | 13..17 | pending send size |
//! | 17..21 | feature bits |
//! | 21.. | data bytes (at most a data area's worth) |
//!
//! Without the raw-indices bit each index is made valid as
//! `(value % data_len) & !7`, so most inputs open and the fuzzer spends its
//! time on packets; with it the indices are stored as given. The data bytes
//! are written into the data area starting at the (made-valid) read index
//! and wrapping at its end, so a short input can still hold a wrapping
//! packet; the rest of the data area is zero.
//!
//! # Checks
//!
//! The ring is opened with an `IncomingRing` and read packet by packet until
//! empty or an error, in a loop bounded by the most packets the data area
//! can hold. Every verdict is compared with [`oracle::packet_at`]:
//!
//! - no panic; the ring opens exactly when both indices are valid;
//! - every packet handed out (supported or not) lies inside the data area
//!   (payload offset below the data size, length at most the data size) and
//!   inside the bytes between the read and the write index, and is exactly
//!   the packet the wire rules describe; `read_payload` of its whole payload
//!   succeeds and gives the ring's bytes, and one byte past it fails;
//! - reading stops at the first corrupt packet, naming a field the packet
//!   breaks and the packet's offset; the next call returns the same error,
//!   as does a new reader opened after the good packets are committed;
//! - the commit publishes the position after the last good packet and
//!   signals the writer exactly when the free space crosses its pending
//!   send size;
//! - `RingDump::decode` of the same memory lists the same packets and stops
//!   where and how the reader stopped.

use crate::oracle::{self, Expected, ExpectedPacket};
use std::sync::atomic::Ordering;
use vmbus_ring::{
    ring_image, ControlWord, DumpEnd, FlatRingMem, HeapRingPages, IncomingRing, MappedRingMem, MappingLayout,
    OpenError, OwnedPacketKind, PagedRingMem, ReadError, RingDump, RingMem, SharedRegion,
};

/// Bytes before the data bytes.
pub const HEADER_LEN: usize = 21;
/// Bits of the config byte.
pub const RAW_INDICES: u8 = 1 << 4;

/// Which ring memory a `parse` input is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `FlatRingMem`.
    Flat = 0,
    /// `PagedRingMem` over heap pages.
    Paged = 1,
    /// `MappedRingMem` over one region, data area mapped once.
    Mapped = 2,
    /// `MappedRingMem` over a memfd with the data area mapped twice (Linux).
    DoubleMapped = 3,
}

/// A decoded `parse` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInput<'a> {
    /// Data pages, 1 to 4.
    pub data_pages: usize,
    /// The ring memory to use.
    pub backend: Backend,
    /// Store the indices as given instead of making them valid.
    pub raw_indices: bool,
    /// The control words.
    pub write_index: u32,
    /// The control words.
    pub read_index: u32,
    /// The control words.
    pub interrupt_mask: u32,
    /// The control words.
    pub pending_send_size: u32,
    /// The control words.
    pub feature_bits: u32,
    /// Data-area bytes from the read index on.
    pub data: &'a [u8],
}

impl<'a> RingInput<'a> {
    /// Reads the layout above from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Self {
        let word = |at| u32::from_le_bytes(crate::le_bytes(bytes, at));
        let config = bytes.first().copied().unwrap_or(0);
        Self {
            data_pages: 1 + usize::from(config & 3),
            backend: match (config >> 2) & 3 {
                0 => Backend::Flat,
                1 => Backend::Paged,
                2 => Backend::Mapped,
                _ => Backend::DoubleMapped,
            },
            raw_indices: config & RAW_INDICES != 0,
            write_index: word(1),
            read_index: word(5),
            interrupt_mask: word(9),
            pending_send_size: word(13),
            feature_bits: word(17),
            data: bytes.get(HEADER_LEN..).unwrap_or(&[]),
        }
    }

    /// The input's bytes.
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=4).contains(&self.data_pages));
        let config = (self.data_pages - 1) as u8 | (self.backend as u8) << 2 | u8::from(self.raw_indices) << 4;
        let mut bytes = vec![config];
        for word in [self.write_index, self.read_index, self.interrupt_mask, self.pending_send_size, self.feature_bits]
        {
            bytes.extend(word.to_le_bytes());
        }
        bytes.extend(self.data);
        bytes
    }

    /// Size of the data area.
    pub fn data_len(&self) -> u32 {
        self.data_pages as u32 * oracle::PAGE
    }

    fn index(&self, value: u32) -> u32 {
        if self.raw_indices {
            value
        } else {
            (value % self.data_len()) & !7
        }
    }

    /// Where the data bytes start: the read index, made valid.
    fn placement(&self) -> u32 {
        (self.read_index % self.data_len()) & !7
    }

    /// The data area this input describes.
    pub fn data_area(&self) -> Vec<u8> {
        let data_len = self.data_len() as usize;
        let mut area = vec![0; data_len];
        let start = self.placement() as usize;
        for (i, &byte) in self.data.iter().take(data_len).enumerate() {
            area[(start + i) % data_len] = byte;
        }
        area
    }

    /// Stores the control words and the data into `mem` (zeroed, of this
    /// input's size).
    fn store_into(&self, mem: &impl RingMem) {
        mem.store(ControlWord::WriteIndex, self.index(self.write_index), Ordering::Relaxed);
        mem.store(ControlWord::ReadIndex, self.index(self.read_index), Ordering::Relaxed);
        mem.store(ControlWord::InterruptMask, self.interrupt_mask, Ordering::Relaxed);
        mem.store(ControlWord::PendingSendSize, self.pending_send_size, Ordering::Relaxed);
        mem.store(ControlWord::FeatureBits, self.feature_bits, Ordering::Relaxed);
        let data = &self.data[..self.data.len().min(mem.data_len())];
        if !data.is_empty() {
            mem.write_data(self.placement() as usize, data);
        }
    }
}

/// The `parse` input for a ring image (a control page, then a data area of
/// 1 to 4 pages), read through `backend`. The image's control words other
/// than the five are dropped.
pub fn encode_image(image: &[u8], backend: Backend) -> Vec<u8> {
    let data_len = image.len() - oracle::PAGE as usize;
    assert!(data_len.is_multiple_of(4096) && (1..=4).contains(&(data_len / 4096)), "not a 1-4 page ring image");
    let word = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
    let (write_index, read_index) = (word(0), word(4));
    let raw_indices =
        !(oracle::index_valid(write_index, data_len as u32) && oracle::index_valid(read_index, data_len as u32));
    let start = ((read_index % data_len as u32) & !7) as usize;
    let area = &image[oracle::PAGE as usize..];
    let mut data: Vec<u8> = area[start..].iter().chain(&area[..start]).copied().collect();
    while data.last() == Some(&0) {
        data.pop();
    }
    RingInput {
        data_pages: data_len / 4096,
        backend,
        raw_indices,
        write_index,
        read_index,
        interrupt_mask: word(8),
        pending_send_size: word(12),
        feature_bits: word(64),
        data: &data,
    }
    .encode()
}

/// The fuzz target's body.
pub fn run(bytes: &[u8]) {
    let input = RingInput::decode(bytes);
    let data_len = input.data_len() as usize;
    match input.backend {
        Backend::Flat => check(FlatRingMem::new(data_len).unwrap(), &input),
        Backend::Paged => check(PagedRingMem::new(&HeapRingPages::new(input.data_pages)).unwrap(), &input),
        Backend::Mapped => {
            let region = SharedRegion::new_zeroed(oracle::PAGE as usize + data_len);
            check(MappedRingMem::new(region, MappingLayout::Single).unwrap(), &input)
        }
        Backend::DoubleMapped => {
            #[cfg(target_os = "linux")]
            if let Ok((mem, _fd)) = MappedRingMem::create_memfd(data_len, MappingLayout::Double) {
                return check(mem, &input);
            }
            check(FlatRingMem::new(data_len).unwrap(), &input)
        }
    }
}

/// What ended a read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Empty,
    Corrupt(vmbus_ring::CorruptError),
}

fn check<M: RingMem + Clone>(mem: M, input: &RingInput<'_>) {
    input.store_into(&mem);
    let data_len = input.data_len();
    let area = input.data_area();
    let mut image = ring_image(&mem);
    assert_eq!(image.split_off(oracle::PAGE as usize), area, "the input did not land in the ring as laid out");

    let write = input.index(input.write_index);
    let read = input.index(input.read_index);
    let dump = RingDump::decode(&mem);
    let _ = dump.to_string();
    let _ = format!("{:?} {}", dump.state, dump.state);

    let mut ring = match IncomingRing::new(mem.clone()) {
        Ok(ring) => ring,
        Err(error) => {
            assert!(
                !(oracle::index_valid(write, data_len) && oracle::index_valid(read, data_len)),
                "valid indices {write:#x}/{read:#x} refused: {error}"
            );
            assert!(matches!(error, OpenError::Corrupt(_)), "{error:?}");
            assert_eq!(dump.end, DumpEnd::CorruptControl(error));
            assert!(dump.packets.is_empty());
            return;
        }
    };
    assert!(oracle::index_valid(write, data_len) && oracle::index_valid(read, data_len));
    assert_eq!(ring.read_index(), read);
    let readable = oracle::used(data_len, write, read);

    // Every packet takes at least 24 bytes, and fewer than `data_len` bytes
    // are readable: a reader that does not stop by then never will.
    let bound = data_len as usize / 24 + 2;
    let mut cursor = read;
    let mut consumed = 0u32;
    let mut seen: Vec<(u32, Option<OwnedPacketKind>)> = Vec::new();
    let mut batch = ring.read_batch();
    let stop = loop {
        assert!(seen.len() < bound, "the reader handed out {} packets from {readable} bytes", seen.len());
        let got = batch.next();
        match (oracle::packet_at(&area, write, cursor), &got) {
            (Expected::Empty, Ok(None)) => {
                assert_eq!(consumed, readable);
                assert_eq!(batch.next(), Ok(None), "empty, then not");
                break Stop::Empty;
            }
            (Expected::Corrupt(fields), Err(ReadError::Corrupt(error))) => {
                assert!(fields.contains(&error.field), "at {cursor:#x}: reader blames {error}, rules break {fields:?}");
                assert_eq!(error.packet_offset, Some(cursor), "{error}");
                assert_eq!(batch.next(), got, "a corrupt packet read twice gave two answers");
                break Stop::Corrupt(*error);
            }
            (Expected::Packet { result, size }, _) => {
                let payload = match (&result, &got) {
                    (Ok(expected), Ok(Some(packet))) => {
                        let kind = batch.owned_kind(packet).expect("a packet's own range list");
                        assert_eq!(&ExpectedPacket::read(packet, kind.clone()), expected, "at {cursor:#x}");
                        seen.push((packet.offset, Some(kind)));
                        packet.payload
                    }
                    (Err(expected), Err(ReadError::Unsupported(packet))) => {
                        assert_eq!(packet, expected, "at {cursor:#x}");
                        seen.push((packet.offset, None));
                        packet.payload
                    }
                    _ => panic!("at {cursor:#x}: the rules say {result:?}, the reader {got:?}"),
                };
                assert!(payload.offset() < data_len && payload.len() <= data_len as usize, "{payload:?}");
                assert!(consumed + size <= readable, "packet at {cursor:#x} runs past the write index");
                let mut bytes = vec![0; payload.len()];
                batch.read_payload(payload, 0, &mut bytes).expect("reading a whole payload");
                assert_eq!(bytes, oracle::wrapped(&area, payload.offset(), payload.len()));
                assert!(batch.read_payload(payload, payload.len(), &mut [0]).is_err(), "read past a payload");
                consumed += size;
                cursor = (cursor + size) % data_len;
            }
            (expected, _) => panic!("at {cursor:#x}: the rules say {expected:?}, the reader {got:?}"),
        }
    };
    assert_eq!(batch.packets(), seen.len());

    // The dump saw what the reader saw.
    assert_eq!(dump.packets.len(), seen.len());
    for (record, (offset, kind)) in dump.packets.iter().zip(&seen) {
        assert_eq!((record.offset, &record.kind), (*offset, kind));
    }
    match (&dump.end, &stop) {
        (DumpEnd::Clean, Stop::Empty) => {}
        (DumpEnd::CorruptPacket { offset, error }, Stop::Corrupt(stopped)) => {
            assert_eq!((*offset, error), (cursor, stopped));
        }
        (end, stop) => panic!("dump ended {end:?}, the reader {stop:?}"),
    }

    // Committing hands back exactly the good packets, and signals the
    // writer exactly when the free space crossed its pending send size.
    let signal = batch.commit();
    assert_eq!(ring.read_index(), cursor);
    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), cursor);
    let pending = u64::from(input.pending_send_size);
    let wanted = pending.next_multiple_of(8).min(u64::from(data_len - 8));
    let (before, after) = (oracle::free(data_len, write, read), oracle::free(data_len, write, cursor));
    let crossed = pending != 0 && u64::from(before) < wanted && u64::from(after) >= wanted;
    assert_eq!(signal, cursor != read && crossed, "pending {pending}, free {before} -> {after}");

    // A new reader starts where the commit left off and stops the same way.
    let mut again = IncomingRing::new(mem.clone()).expect("reopening after a commit");
    let mut batch = again.read_batch();
    match stop {
        Stop::Empty => assert_eq!(batch.next(), Ok(None)),
        Stop::Corrupt(error) => assert_eq!(batch.next(), Err(ReadError::Corrupt(error))),
    }
    batch.revert();
    let empty = again.prepare_to_sleep().expect("valid indices");
    assert_eq!(empty, cursor == write);
    assert_eq!(mem.load(ControlWord::InterruptMask, Ordering::Relaxed), 0);
}
