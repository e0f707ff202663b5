//! The signal decisions of the signalling rules (`vmbus_ring::signal`), as tables: each
//! case is checked through real endpoints and through the pure functions in
//! `vmbus_ring::signal`, which must agree.

mod common;

use common::{endpoints_at, PAGE};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use vmbus_ring::signal::{reader_needs_signal, reader_signal_due, writer_needs_signal, writer_signal_due};
use vmbus_ring::{ControlPage, ControlWord, FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};

// ---------------------------------------------------------------------------
// Writer side: signal the reader when the ring went from empty to non-empty
// and the reader is not masking interrupts.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Before {
    /// Nothing was ever written.
    Fresh,
    /// Packets were written, read and committed: empty again.
    Drained,
    /// Packets were read but the read index is not committed yet.
    ReadNotCommitted,
    /// Packets are waiting, unread.
    Unread,
}

struct ReaderSignalCase {
    name: &'static str,
    /// The interrupt-mask word the reader stores.
    mask: u32,
    before: Before,
    expected: bool,
}

const READER_SIGNAL_CASES: &[ReaderSignalCase] = &[
    ReaderSignalCase { name: "unmasked, fresh ring", mask: 0, before: Before::Fresh, expected: true },
    ReaderSignalCase { name: "unmasked, drained ring", mask: 0, before: Before::Drained, expected: true },
    ReaderSignalCase {
        name: "unmasked, read not committed",
        mask: 0,
        before: Before::ReadNotCommitted,
        expected: false,
    },
    ReaderSignalCase { name: "unmasked, unread data", mask: 0, before: Before::Unread, expected: false },
    ReaderSignalCase { name: "masked, fresh ring", mask: 1, before: Before::Fresh, expected: false },
    ReaderSignalCase { name: "masked, drained ring", mask: 1, before: Before::Drained, expected: false },
    ReaderSignalCase { name: "masked, unread data", mask: 1, before: Before::Unread, expected: false },
    // Any non-zero mask means "polling", not just 1.
    ReaderSignalCase { name: "mask 0x8000_0000, drained", mask: 0x8000_0000, before: Before::Drained, expected: false },
    ReaderSignalCase { name: "mask u32::MAX, fresh ring", mask: u32::MAX, before: Before::Fresh, expected: false },
];

/// Prepares the ring as `before` says, starting both indices at `start`.
fn prepare(before: Before, start: u32) -> (FlatRingMem, OutgoingRing<FlatRingMem>, IncomingRing<FlatRingMem>) {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, start);
    match before {
        Before::Fresh => {}
        Before::Drained | Before::ReadNotCommitted | Before::Unread => {
            let _ = writer.write(&OutgoingPacket::in_band(1), &[b"earlier"]).unwrap();
            let _ = writer.write(&OutgoingPacket::in_band(2), &[b"packets"]).unwrap();
        }
    }
    match before {
        Before::Drained => {
            let mut batch = reader.read_batch();
            batch.next().unwrap().unwrap();
            batch.next().unwrap().unwrap();
            let _ = batch.commit();
        }
        Before::ReadNotCommitted => {
            let mut batch = reader.read_batch();
            batch.next().unwrap().unwrap();
            batch.next().unwrap().unwrap();
            batch.revert();
        }
        Before::Fresh | Before::Unread => {}
    }
    (mem, writer, reader)
}

#[test]
fn writer_signals_only_an_unmasked_caught_up_reader() {
    // Several starting offsets, so "index 0" is nothing special and batches wrap.
    for start in [0, 2048, PAGE as u32 - 16] {
        for case in READER_SIGNAL_CASES {
            let name = format!("{} (start {start})", case.name);
            let (mem, mut writer, _reader) = prepare(case.before, start);
            mem.store(ControlWord::InterruptMask, case.mask, Ordering::Relaxed);

            // The pure decision, from the control words as the writer sees them.
            let batch_start = writer.write_index();
            let read_index = mem.load(ControlWord::ReadIndex, Ordering::Relaxed);
            assert_eq!(reader_signal_due(case.mask, read_index, batch_start), case.expected, "{name}: pure");

            // The endpoint's decision.
            let mut batch = writer.write_batch();
            batch.write(&OutgoingPacket::in_band(3), &[b"new"]).unwrap();
            assert_eq!(batch.commit(), case.expected, "{name}: endpoint");
        }
    }
}

#[test]
fn one_signal_per_batch_not_per_packet() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 1000);

    let mut batch = writer.write_batch();
    for id in 0..5 {
        batch.write(&OutgoingPacket::in_band(id), &[&[id as u8; 40]]).unwrap();
    }
    assert_eq!(batch.packets(), 5);
    assert!(batch.commit(), "the batch made the ring non-empty: one signal");

    // The reader has not read: it will find the new packets without a signal.
    let first_batch_end = writer.write_index();
    let mut batch = writer.write_batch();
    for id in 5..10 {
        batch.write(&OutgoingPacket::in_band(id), &[&[id as u8; 40]]).unwrap();
    }
    assert!(!batch.commit(), "the ring was not empty: no signal");
    assert!(!reader_signal_due(0, 1000, first_batch_end));
    assert!(!writer.write(&OutgoingPacket::in_band(10), &[]).unwrap(), "single writes follow the same rule");

    // Once the reader has caught up, the next batch signals again.
    let mut batch = reader.read_batch();
    for id in 0..11 {
        assert_eq!(batch.next().unwrap().unwrap().transaction_id, id);
    }
    let _ = batch.commit();
    let mut batch = writer.write_batch();
    for id in 11..16 {
        batch.write(&OutgoingPacket::in_band(id), &[]).unwrap();
    }
    assert!(batch.commit());
}

// ---------------------------------------------------------------------------
// Reader side: signal the writer when the free space crosses its pending
// send size.
// ---------------------------------------------------------------------------

/// Ring size for the reader-side cases, and its packets.
const DATA_LEN: u32 = PAGE as u32;
const PACKET: u32 = 512;
const PACKETS: u32 = 7;
/// Free bytes with all seven packets in the ring: 4096 - 3584 - 8.
const FREE_FULL: u32 = DATA_LEN - PACKETS * PACKET - 8;

struct WriterSignalCase {
    name: &'static str,
    /// Pending send size the writer (or a foreign peer) stores.
    pending_send_size: u32,
    /// Store 0 to the feature bits after the writer opened.
    clear_features: bool,
    /// Packets read and committed before the pending send size is set.
    read_before: u32,
    /// Packets read in the commit under test.
    read: u32,
    expected: bool,
}

const fn free_after(packets_read: u32) -> u32 {
    FREE_FULL + packets_read * PACKET
}

const WRITER_SIGNAL_CASES: &[WriterSignalCase] = &[
    WriterSignalCase {
        name: "pending send size 0: writer not waiting",
        pending_send_size: 0,
        clear_features: false,
        read_before: 0,
        read: PACKETS,
        expected: false,
    },
    WriterSignalCase {
        name: "free stays below pending send size",
        pending_send_size: free_after(2) + 8,
        clear_features: false,
        read_before: 0,
        read: 2,
        expected: false,
    },
    WriterSignalCase {
        name: "free crosses to above",
        pending_send_size: 1000,
        clear_features: false,
        read_before: 0,
        read: 1,
        expected: true,
    },
    WriterSignalCase {
        name: "free crosses to exactly pending send size",
        pending_send_size: free_after(1),
        clear_features: false,
        read_before: 0,
        read: 1,
        expected: true,
    },
    WriterSignalCase {
        name: "free crosses in a later commit",
        pending_send_size: free_after(3),
        clear_features: false,
        read_before: 2,
        read: 1,
        expected: true,
    },
    WriterSignalCase {
        name: "free crosses in a commit of several packets",
        pending_send_size: free_after(5),
        clear_features: false,
        read_before: 0,
        read: 6,
        expected: true,
    },
    WriterSignalCase {
        name: "already above before the commit",
        pending_send_size: 1000,
        clear_features: false,
        read_before: 1,
        read: 1,
        expected: false,
    },
    WriterSignalCase {
        name: "already exactly at pending send size before the commit",
        pending_send_size: free_after(1),
        clear_features: false,
        read_before: 1,
        read: 1,
        expected: false,
    },
    WriterSignalCase {
        name: "already enough room with nothing read",
        pending_send_size: 8,
        clear_features: false,
        read_before: 0,
        read: 1,
        expected: false,
    },
    WriterSignalCase {
        name: "feature bit cleared, crossing: still signals",
        pending_send_size: 1000,
        clear_features: true,
        read_before: 0,
        read: 1,
        expected: true,
    },
    WriterSignalCase {
        name: "feature bit cleared, no crossing",
        pending_send_size: 3000,
        clear_features: true,
        read_before: 0,
        read: 1,
        expected: false,
    },
    WriterSignalCase {
        name: "data_len - 1, partly drained",
        pending_send_size: DATA_LEN - 1,
        clear_features: false,
        read_before: 0,
        read: PACKETS - 1,
        expected: false,
    },
    WriterSignalCase {
        name: "data_len - 1, drained to empty in one commit",
        pending_send_size: DATA_LEN - 1,
        clear_features: false,
        read_before: 0,
        read: PACKETS,
        expected: true,
    },
    WriterSignalCase {
        name: "data_len - 1, last packet drained in a later commit",
        pending_send_size: DATA_LEN - 1,
        clear_features: false,
        read_before: PACKETS - 1,
        read: 1,
        expected: true,
    },
    WriterSignalCase {
        name: "data_len - 8: what an empty ring frees",
        pending_send_size: DATA_LEN - 8,
        clear_features: false,
        read_before: 0,
        read: PACKETS,
        expected: true,
    },
    WriterSignalCase {
        name: "data_len: capped to what an empty ring frees",
        pending_send_size: DATA_LEN,
        clear_features: false,
        read_before: 0,
        read: PACKETS,
        expected: true,
    },
    WriterSignalCase {
        name: "u32::MAX: capped to what an empty ring frees",
        pending_send_size: u32::MAX,
        clear_features: false,
        read_before: 0,
        read: PACKETS,
        expected: true,
    },
];

#[test]
fn reader_signals_a_blocked_writer_on_the_crossing_only() {
    for start in [0, 1024, DATA_LEN - 8] {
        for case in WRITER_SIGNAL_CASES {
            let name = format!("{} (start {start})", case.name);
            let mem = FlatRingMem::new(DATA_LEN as usize).unwrap();
            let (mut writer, mut reader) = endpoints_at(&mem, start);
            let mut batch = writer.write_batch();
            for id in 0..PACKETS {
                batch.write(&OutgoingPacket::in_band(id.into()), &[&[0; (PACKET - 24) as usize]]).unwrap();
            }
            let _ = batch.commit();
            assert_eq!(writer.state().bytes_free, Some(FREE_FULL), "{name}");

            let mut batch = reader.read_batch();
            for _ in 0..case.read_before {
                batch.next().unwrap().unwrap();
            }
            assert!(!batch.commit(), "{name}: no pending send size yet");

            mem.store(ControlWord::PendingSendSize, case.pending_send_size, Ordering::Relaxed);
            if case.clear_features {
                mem.store(ControlWord::FeatureBits, 0, Ordering::Relaxed);
            }

            // The pure decision.
            let old_read = reader.read_index();
            let new_read = (old_read + case.read * PACKET) % DATA_LEN;
            let write = writer.write_index();
            let pure = writer_signal_due(DATA_LEN, case.pending_send_size, write, old_read, new_read);
            assert_eq!(pure, case.expected, "{name}: pure");

            // The endpoint's decision.
            let mut batch = reader.read_batch();
            for _ in 0..case.read {
                batch.next().unwrap().unwrap();
            }
            assert_eq!(batch.commit(), case.expected, "{name}: endpoint");
            assert_eq!(reader.read_index(), new_read, "{name}");
        }
    }
}

#[test]
fn writer_signal_due_honours_an_unaligned_pending_send_size() {
    // Free space is always a multiple of 8, so a writer waiting for 30 bytes
    // waits for 32; one waiting for 4 waits for 8.
    // 4096-byte data area, writer at 4064: free goes from 24 (< 30) to 48.
    assert!(writer_signal_due(4096, 30, 4064, 0, 24), "free 24 -> 48 crosses 30");
    // Writer at 4088: free goes from 0 (< 4) to 24.
    assert!(writer_signal_due(4096, 4, 4088, 0, 24), "free 0 -> 24 crosses 4");
}

struct CorruptIndexCase {
    name: &'static str,
    data_len: u32,
    write: u32,
    old_read: u32,
    new_read: u32,
}

const CORRUPT_INDEX_CASES: &[CorruptIndexCase] = &[
    CorruptIndexCase { name: "misaligned write index", data_len: 4096, write: 4001, old_read: 0, new_read: 2000 },
    CorruptIndexCase { name: "write index at data_len", data_len: 4096, write: 4096, old_read: 0, new_read: 2000 },
    CorruptIndexCase { name: "write index u32::MAX", data_len: 4096, write: u32::MAX, old_read: 0, new_read: 8 },
    CorruptIndexCase { name: "misaligned old read", data_len: 4096, write: 4000, old_read: 3, new_read: 2000 },
    CorruptIndexCase { name: "old read past data_len", data_len: 4096, write: 4000, old_read: 8192, new_read: 0 },
    CorruptIndexCase { name: "misaligned new read", data_len: 4096, write: 4000, old_read: 0, new_read: 2001 },
    CorruptIndexCase { name: "new read at data_len", data_len: 4096, write: 0, old_read: 0, new_read: 4096 },
    CorruptIndexCase { name: "data_len 0", data_len: 0, write: 0, old_read: 0, new_read: 0 },
    CorruptIndexCase {
        name: "everything u32::MAX",
        data_len: u32::MAX,
        write: u32::MAX,
        old_read: u32::MAX,
        new_read: 0,
    },
];

#[test]
fn writer_signal_due_signals_when_indices_cannot_be_trusted() {
    for case in CORRUPT_INDEX_CASES {
        for pending in [1, 8, 1000, 4095, u32::MAX] {
            assert!(
                writer_signal_due(case.data_len, pending, case.write, case.old_read, case.new_read),
                "{}, pending send size {pending}: a spare signal beats a lost one",
                case.name
            );
        }
        assert!(
            !writer_signal_due(case.data_len, 0, case.write, case.old_read, case.new_read),
            "{}: nobody waiting, nobody to signal",
            case.name
        );
    }
}

#[test]
fn writer_signal_due_never_panics() {
    const VALUES: [u32; 10] = [0, 1, 7, 8, 4088, 4095, 4096, 4104, u32::MAX - 7, u32::MAX];
    let valid = |value: u32, data_len: u32| value.is_multiple_of(8) && value < data_len;
    let mut calls = 0;
    for data_len in VALUES {
        for pending in VALUES {
            for write in VALUES {
                for old_read in VALUES {
                    for new_read in VALUES {
                        let due = writer_signal_due(data_len, pending, write, old_read, new_read);
                        calls += 1;
                        if pending == 0 {
                            assert!(!due, "{data_len} {pending} {write} {old_read} {new_read}");
                        } else if ![write, old_read, new_read].iter().all(|&v| valid(v, data_len)) {
                            assert!(due, "{data_len} {pending} {write} {old_read} {new_read}");
                        } else if old_read == new_read {
                            assert!(!due, "nothing freed: {data_len} {pending} {write} {old_read}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(calls, 100_000);
}

// ---------------------------------------------------------------------------
// The control-page helpers on a bare control page.
// ---------------------------------------------------------------------------

/// A control page and nothing else, as an interrupt path or a debugger holds.
#[derive(Default)]
struct BarePage {
    write_index: AtomicU32,
    read_index: AtomicU32,
    interrupt_mask: AtomicU32,
    pending_send_size: AtomicU32,
    feature_bits: AtomicU32,
    fences: AtomicUsize,
}

impl BarePage {
    fn new(write_index: u32, read_index: u32, interrupt_mask: u32, pending_send_size: u32) -> Self {
        let page = Self::default();
        page.store(ControlWord::WriteIndex, write_index, Ordering::Relaxed);
        page.store(ControlWord::ReadIndex, read_index, Ordering::Relaxed);
        page.store(ControlWord::InterruptMask, interrupt_mask, Ordering::Relaxed);
        page.store(ControlWord::PendingSendSize, pending_send_size, Ordering::Relaxed);
        page
    }

    fn word(&self, word: ControlWord) -> &AtomicU32 {
        match word {
            ControlWord::WriteIndex => &self.write_index,
            ControlWord::ReadIndex => &self.read_index,
            ControlWord::InterruptMask => &self.interrupt_mask,
            ControlWord::PendingSendSize => &self.pending_send_size,
            ControlWord::FeatureBits => &self.feature_bits,
        }
    }
}

impl ControlPage for BarePage {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.word(word).load(order)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.word(word).store(value, order)
    }
    fn full_fence(&self) {
        self.fences.fetch_add(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

struct BareReaderCase {
    name: &'static str,
    mask: u32,
    read_index: u32,
    batch_start: u32,
    expected: bool,
}

const BARE_READER_CASES: &[BareReaderCase] = &[
    BareReaderCase { name: "caught up, unmasked", mask: 0, read_index: 64, batch_start: 64, expected: true },
    BareReaderCase { name: "caught up, masked", mask: 1, read_index: 64, batch_start: 64, expected: false },
    BareReaderCase { name: "behind, unmasked", mask: 0, read_index: 0, batch_start: 64, expected: false },
    BareReaderCase { name: "behind, masked", mask: 1, read_index: 0, batch_start: 64, expected: false },
];

#[test]
fn reader_needs_signal_on_a_bare_control_page() {
    for case in BARE_READER_CASES {
        // The write index already holds the batch's end, as after a publish.
        let page = BarePage::new(case.batch_start + 32, case.read_index, case.mask, 0);
        assert_eq!(reader_needs_signal(&page, case.batch_start), case.expected, "{}", case.name);
        assert!(page.fences.load(Ordering::Relaxed) >= 1, "{}: a full fence before the loads", case.name);
        assert_eq!(
            reader_signal_due(case.mask, case.read_index, case.batch_start),
            case.expected,
            "{}: pure",
            case.name
        );
    }
}

struct BareWriterCase {
    name: &'static str,
    pending_send_size: u32,
    write_index: u32,
    old_read: u32,
    new_read: u32,
    expected: bool,
}

// 4096-byte data area, writer at 4000: free goes from 88 (read at 0) to 2088 (read at 2000).
const BARE_WRITER_CASES: &[BareWriterCase] = &[
    BareWriterCase {
        name: "not waiting",
        pending_send_size: 0,
        write_index: 4000,
        old_read: 0,
        new_read: 2000,
        expected: false,
    },
    BareWriterCase {
        name: "crossed",
        pending_send_size: 1000,
        write_index: 4000,
        old_read: 0,
        new_read: 2000,
        expected: true,
    },
    BareWriterCase {
        name: "still below",
        pending_send_size: 3000,
        write_index: 4000,
        old_read: 0,
        new_read: 2000,
        expected: false,
    },
    BareWriterCase {
        name: "already above",
        pending_send_size: 80,
        write_index: 4000,
        old_read: 0,
        new_read: 2000,
        expected: false,
    },
    BareWriterCase {
        name: "corrupt write index",
        pending_send_size: 3000,
        write_index: 4001,
        old_read: 0,
        new_read: 2000,
        expected: true,
    },
];

#[test]
fn writer_needs_signal_on_a_bare_control_page() {
    for case in BARE_WRITER_CASES {
        // The read index word holds the reader's new index, as after a commit;
        // the decision must use the arguments, not that word, for the old one.
        let page = BarePage::new(case.write_index, case.new_read, 0, case.pending_send_size);
        let got = writer_needs_signal(&page, 4096, case.old_read, case.new_read);
        assert_eq!(got, case.expected, "{}", case.name);
        assert!(page.fences.load(Ordering::Relaxed) >= 1, "{}: a full fence before the loads", case.name);
        let pure = writer_signal_due(4096, case.pending_send_size, case.write_index, case.old_read, case.new_read);
        assert_eq!(pure, case.expected, "{}: pure", case.name);
    }
}
