//! Single fetch: every value the endpoints take from shared memory is read
//! once and used from a private copy, so a peer that changes it between two
//! reads (a double fetch, "TOCTOU") cannot make a check and a use disagree.
//!
//! [`Spy`] is a `RingMem` over a flat ring that counts the loads of each
//! control word and the reads of each data-area byte, and can run a hook
//! after each access: the hook plays a peer that changes memory right after
//! the endpoint fetched it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use vmbus_ring::{
    load_image, ring_image, ControlPage, ControlWord, FlatRingMem, GpaRangeBuf, IncomingPacket, IncomingRing,
    OutgoingPacket, OutgoingRing, PacketKind, ReadError, RingMem, TransferPageRange,
};

const DATA_LEN: usize = 4096;
const WORDS: [ControlWord; 5] = [
    ControlWord::WriteIndex,
    ControlWord::ReadIndex,
    ControlWord::InterruptMask,
    ControlWord::PendingSendSize,
    ControlWord::FeatureBits,
];

fn slot(word: ControlWord) -> usize {
    WORDS.iter().position(|&w| w == word).unwrap()
}

/// An access an endpoint made, as the hook sees it (after the access).
#[derive(Debug, Clone, Copy)]
enum Access {
    Load(ControlWord),
    ReadData { offset: usize, len: usize },
}

type Hook = Box<dyn FnMut(&FlatRingMem, Access)>;

#[derive(Default)]
struct Counts {
    loads: [u32; 5],
    stores: [u32; 5],
    fences: u32,
    /// Reads of each data-area byte.
    data_reads: Vec<u32>,
    data_writes: u32,
}

/// A ring memory that counts every access and may run a hook after each.
#[derive(Clone)]
struct Spy {
    inner: FlatRingMem,
    counts: Rc<RefCell<Counts>>,
    hook: Rc<RefCell<Option<Hook>>>,
}

impl Spy {
    fn new(inner: FlatRingMem) -> Self {
        let counts = Counts { data_reads: vec![0; inner.data_len()], ..Counts::default() };
        Self { inner, counts: Rc::new(RefCell::new(counts)), hook: Rc::default() }
    }

    fn reset(&self) {
        let mut counts = self.counts.borrow_mut();
        *counts = Counts { data_reads: vec![0; self.inner.data_len()], ..Counts::default() };
    }

    fn loads(&self, word: ControlWord) -> u32 {
        self.counts.borrow().loads[slot(word)]
    }

    fn stores(&self, word: ControlWord) -> u32 {
        self.counts.borrow().stores[slot(word)]
    }

    /// Loads of every word, by name, for assertion messages.
    fn load_table(&self) -> String {
        let counts = self.counts.borrow();
        WORDS.iter().map(|w| format!("{w:?}={} ", counts.loads[slot(*w)])).collect()
    }

    /// Reads of the `len` data bytes starting at `offset` (wrapping).
    fn reads_of(&self, offset: u32, len: usize) -> Vec<u32> {
        let counts = self.counts.borrow();
        (0..len).map(|i| counts.data_reads[(offset as usize + i) % DATA_LEN]).collect()
    }

    fn total_data_reads(&self) -> u32 {
        self.counts.borrow().data_reads.iter().sum()
    }

    fn set_hook(&self, hook: impl FnMut(&FlatRingMem, Access) + 'static) {
        *self.hook.borrow_mut() = Some(Box::new(hook));
    }

    fn after(&self, access: Access) {
        if let Some(hook) = self.hook.borrow_mut().as_mut() {
            hook(&self.inner, access);
        }
    }
}

impl ControlPage for Spy {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        let value = self.inner.load(word, order);
        self.counts.borrow_mut().loads[slot(word)] += 1;
        self.after(Access::Load(word));
        value
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.counts.borrow_mut().stores[slot(word)] += 1;
        self.inner.store(word, value, order)
    }
    fn full_fence(&self) {
        self.counts.borrow_mut().fences += 1;
        self.inner.full_fence()
    }
}

impl RingMem for Spy {
    fn data_len(&self) -> usize {
        self.inner.data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.inner.read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.inner.write_control(offset, buf)
    }
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.inner.read_data(offset, buf);
        {
            let mut counts = self.counts.borrow_mut();
            for i in 0..buf.len() {
                counts.data_reads[(offset + i) % DATA_LEN] += 1;
            }
        }
        self.after(Access::ReadData { offset, len: buf.len() });
    }
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.counts.borrow_mut().data_writes += 1;
        self.inner.write_data(offset, buf)
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.counts.borrow_mut().data_writes += 1;
        self.inner.zero_data(offset, len)
    }
}

/// The packets under test, one of each kind the reader parses.
struct Sample {
    name: &'static str,
    transfer: Vec<TransferPageRange>,
    gpa: GpaRangeBuf,
    payload: Vec<u8>,
}

impl Sample {
    fn all() -> Vec<Sample> {
        let mut gpa = GpaRangeBuf::new();
        gpa.push_contiguous(0x1234_5010, 6000).unwrap();
        gpa.push(7, 1, &[0x99]).unwrap();
        let transfer =
            vec![TransferPageRange::new(1500, 0), TransferPageRange::new(900, 4096), TransferPageRange::new(1, 2)];
        let payload = b"payload that is not a multiple of 8".to_vec();
        ["in-band", "completion", "transfer pages", "GPA direct"]
            .into_iter()
            .map(|name| Sample { name, transfer: transfer.clone(), gpa: gpa.clone(), payload: payload.clone() })
            .collect()
    }

    fn packet(&self) -> OutgoingPacket<'_> {
        let packet = match self.name {
            "in-band" => OutgoingPacket::in_band(0x1111_2222_3333_4444),
            "completion" => OutgoingPacket::completion(0x5555),
            "transfer pages" => OutgoingPacket::transfer_pages(0x6666, 9, true, &self.transfer),
            _ => OutgoingPacket::gpa_direct(0x7777, self.gpa.ranges()),
        };
        packet.with_completion_requested()
    }

    /// Bytes from the packet start to its payload: descriptor and header.
    fn header_len(&self) -> usize {
        16 + self.packet().kind.header_len()
    }
}

/// A ring holding `sample` at data offset `at` (8-aligned), committed, with
/// a reader opened before the write (so its first `next` must refresh the
/// write index). Filler packets move both indices to `at` first.
fn ring_with(sample: &Sample, at: u32) -> (Spy, IncomingRing<Spy>, u32) {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    let mut reader = IncomingRing::new(spy.clone()).unwrap();
    let mut filled = 0;
    while filled < at {
        let chunk = (at - filled).min(2048) as usize;
        let _ = writer.write(&OutgoingPacket::in_band(0), &[&vec![0xAA; chunk - 24]]).unwrap();
        filled += chunk as u32;
    }
    let mut batch = reader.read_batch();
    while let Ok(Some(_)) = batch.next() {}
    let _ = batch.commit();
    assert_eq!(reader.read_index(), at);
    let _ = writer.write(&sample.packet(), &[&sample.payload]).unwrap();
    spy.reset();
    (spy, reader, at)
}

/// Offsets to put the packet at: the start, the middle, and straddling the
/// end of the data area (descriptor, header and payload each wrapped).
fn offsets(sample: &Sample) -> Vec<u32> {
    let mut offsets = vec![0, 2048];
    for into in [8, 16 + 8, sample.header_len() as u32 + 8] {
        offsets.push(DATA_LEN as u32 - into.next_multiple_of(8));
    }
    offsets.retain(|&at| at == 0 || at >= 24);
    offsets
}

#[test]
fn reading_a_packet_fetches_each_header_byte_once() {
    for sample in Sample::all() {
        for at in offsets(&sample) {
            let (spy, mut reader, at) = ring_with(&sample, at);
            let what = format!("{} at {at}", sample.name);
            let mut batch = reader.read_batch();
            let packet = batch.next().unwrap().unwrap();
            let header_len = sample.header_len();
            let payload_len = packet.payload.len();
            assert_eq!(spy.reads_of(at, header_len), vec![1; header_len], "{what}: descriptor and header bytes");
            assert_eq!(
                spy.reads_of(at + header_len as u32, payload_len + 8),
                vec![0; payload_len + 8],
                "{what}: payload and footer are not read by next()"
            );
            assert_eq!(spy.total_data_reads(), header_len as u32, "{what}: no other byte read");
            assert_eq!(spy.loads(ControlWord::WriteIndex), 1, "{what}: {}", spy.load_table());
            for word in [ControlWord::ReadIndex, ControlWord::InterruptMask, ControlWord::PendingSendSize] {
                assert_eq!(spy.loads(word), 0, "{what}: {}", spy.load_table());
            }

            let mut payload = vec![0; payload_len];
            batch.read_payload(packet.payload, 0, &mut payload).unwrap();
            assert_eq!(&payload[..sample.payload.len()], &sample.payload[..]);
            let payload_reads = spy.reads_of(at + header_len as u32, payload_len);
            assert_eq!(payload_reads, vec![1; payload_len], "{what}: payload bytes read once by read_payload");
            let _ = batch.commit();
        }
    }
}

/// A spied ring with three committed in-band packets (ids 0 to 2), and a
/// reader over it that has read none.
fn three_packets_written() -> (Spy, IncomingRing<Spy>) {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    let reader = IncomingRing::new(spy.clone()).unwrap();
    let mut batch = writer.write_batch();
    for id in 0..3 {
        batch.write(&OutgoingPacket::in_band(id), &[b"x"]).unwrap();
    }
    let _ = batch.commit();
    (spy, reader)
}

#[test]
fn a_read_batch_refreshes_the_write_index_only_when_it_runs_out() {
    let (spy, mut reader) = three_packets_written();
    spy.reset();
    let mut batch = reader.read_batch();
    for id in 0..3 {
        assert_eq!(batch.next().unwrap().unwrap().transaction_id, id);
        assert_eq!(spy.loads(ControlWord::WriteIndex), 1, "one refresh serves all three packets");
    }
    assert_eq!(batch.next(), Ok(None));
    assert_eq!(spy.loads(ControlWord::WriteIndex), 2, "one more refresh to find the ring empty");
    assert_eq!(spy.loads(ControlWord::ReadIndex), 0, "the reader never loads its own index");
}

/// A batch that starts where an earlier one stopped, with packets the cached
/// write index still shows, reads them without loading it.
#[test]
fn a_read_batch_starts_from_the_packets_the_last_one_left() {
    let (spy, mut reader) = three_packets_written();
    let mut batch = reader.read_batch();
    assert_eq!(batch.next().unwrap().unwrap().transaction_id, 0);
    let _ = batch.commit();
    spy.reset();
    let mut batch = reader.read_batch();
    for id in 1..3 {
        assert_eq!(batch.next().unwrap().unwrap().transaction_id, id);
        assert_eq!(spy.loads(ControlWord::WriteIndex), 0, "the cached write index still shows packets");
    }
    assert_eq!(batch.next(), Ok(None));
    assert_eq!(spy.loads(ControlWord::WriteIndex), 1, "one refresh to find the ring empty");
}

#[test]
fn writer_commit_loads_mask_and_read_index_once() {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    spy.reset();
    let mut batch = writer.write_batch();
    for sample in Sample::all() {
        batch.write(&sample.packet(), &[&sample.payload]).unwrap();
    }
    assert_eq!(spy.loads(ControlWord::ReadIndex), 0, "the cached read index leaves room: no refresh");
    let signal = batch.commit();
    assert!(signal);
    assert_eq!(spy.loads(ControlWord::InterruptMask), 1, "{}", spy.load_table());
    assert_eq!(spy.loads(ControlWord::ReadIndex), 1, "{}", spy.load_table());
    assert_eq!(spy.loads(ControlWord::WriteIndex), 0, "the writer never loads its own index");
    assert_eq!(spy.loads(ControlWord::PendingSendSize), 0);
    assert_eq!(spy.stores(ControlWord::WriteIndex), 1, "one publication per batch");
    assert_eq!(spy.counts.borrow().fences, 1);
    assert_eq!(spy.total_data_reads(), 0, "the writer never reads ring data back");
}

#[test]
fn writer_refreshes_the_read_index_once_when_short() {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    let mut reader = IncomingRing::new(spy.clone()).unwrap();
    let _ = writer.write(&OutgoingPacket::in_band(1), &[&[0; 3000]]).unwrap();
    let mut batch = reader.read_batch();
    batch.next().unwrap().unwrap();
    let _ = batch.commit();
    spy.reset();
    // The cached read index (0) leaves too little room: one refresh finds the space.
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(2), &[&[0; 2000]]).unwrap();
    assert_eq!(spy.loads(ControlWord::ReadIndex), 1);
    // A packet that does not fit even after the refresh: one load, then Full.
    assert!(batch.write(&OutgoingPacket::in_band(3), &[&[0; 3000]]).is_err());
    assert_eq!(spy.loads(ControlWord::ReadIndex), 2);
    batch.revert();
}

#[test]
fn reader_commit_loads_pending_send_size_and_write_index_at_most_once() {
    for pending in [0, 64, 4000] {
        let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
        let mut writer = OutgoingRing::new(spy.clone()).unwrap();
        let mut reader = IncomingRing::new(spy.clone()).unwrap();
        let _ = writer.write(&OutgoingPacket::in_band(1), &[&[0; 3000]]).unwrap();
        spy.store(ControlWord::PendingSendSize, pending, Ordering::Relaxed);
        let mut batch = reader.read_batch();
        batch.next().unwrap().unwrap();
        spy.reset();
        let signal = batch.commit();
        assert_eq!(signal, pending == 4000, "pending {pending}");
        assert_eq!(spy.loads(ControlWord::PendingSendSize), 1, "pending {pending}: {}", spy.load_table());
        assert!(spy.loads(ControlWord::WriteIndex) <= 1, "pending {pending}: {}", spy.load_table());
        assert_eq!(spy.loads(ControlWord::ReadIndex), 0);
        assert_eq!(spy.stores(ControlWord::ReadIndex), 1);
        assert_eq!(spy.total_data_reads(), 0, "a commit reads no ring data");
    }
}

#[test]
fn sleep_and_pending_send_size_checks_load_once() {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    let mut reader = IncomingRing::new(spy.clone()).unwrap();
    spy.reset();
    assert!(reader.prepare_to_sleep().unwrap());
    assert_eq!(spy.loads(ControlWord::WriteIndex), 1, "{}", spy.load_table());
    assert_eq!(spy.stores(ControlWord::InterruptMask), 1);
    spy.reset();
    assert!(writer.set_pending_send_size(100).unwrap());
    assert_eq!(spy.loads(ControlWord::ReadIndex), 1, "{}", spy.load_table());
}

// ---------------------------------------------------------------------------
// A peer that changes what was just fetched.

/// What the peer writes over the descriptor and header once they are read.
fn replacements(sample: &Sample) -> Vec<(&'static str, Vec<u8>)> {
    let len = sample.header_len();
    // The header bytes of a different, valid packet: another type, id,
    // lengths and range list.
    let other = FlatRingMem::new(DATA_LEN).unwrap();
    let mut gpa = GpaRangeBuf::new();
    gpa.push_contiguous(0xFFFF_F000, 20_000).unwrap();
    let _ =
        OutgoingRing::new(other.clone()).unwrap().write(&OutgoingPacket::gpa_direct(0xBAD, gpa.ranges()), &[&[0; 9]]);
    let mut valid = vec![0; len];
    other.read_data(0, &mut valid);
    vec![("0xff bytes", vec![0xFF; len]), ("zero bytes", vec![0; len]), ("another valid packet", valid)]
}

#[test]
fn a_descriptor_changed_after_its_first_read_does_not_change_the_packet() {
    for sample in Sample::all() {
        for at in offsets(&sample) {
            for (change, bytes) in replacements(&sample) {
                let (spy, mut reader, at) = ring_with(&sample, at);
                let what = format!("{} at {at}, replaced by {change}", sample.name);
                // What an undisturbed reader parses, from a copy of the ring.
                let copy = load_image(&ring_image(&spy.inner)).unwrap();
                copy.store(ControlWord::ReadIndex, at, Ordering::Relaxed);
                let expected = IncomingRing::new(copy).unwrap().read_batch().next().unwrap().unwrap();

                let header_len = bytes.len();
                let replacement = bytes.clone();
                spy.set_hook(move |mem, access| {
                    if let Access::ReadData { offset, len } = access {
                        // The peer rewrites each descriptor or header byte
                        // the reader has just read: reading it again would
                        // see the replacement.
                        for i in 0..len {
                            let byte = (offset + i) % DATA_LEN;
                            let into_packet = (byte + DATA_LEN - at as usize) % DATA_LEN;
                            if into_packet < header_len {
                                mem.write_data(byte, &bytes[into_packet..=into_packet]);
                            }
                        }
                    }
                });
                let mut batch = reader.read_batch();
                let packet: IncomingPacket = batch.next().unwrap_or_else(|e| panic!("{what}: {e}")).expect("a packet");
                assert_eq!(packet, expected, "{what}");
                assert_eq!(spy.reads_of(at, header_len), vec![1; header_len], "{what}: re-read after the change");
                let mut now = vec![0; header_len];
                spy.inner.read_data(at as usize, &mut now);
                assert_eq!(now, replacement, "{what}: the peer did change every byte the reader fetched");
                if let PacketKind::GpaDirect(_) = packet.kind {
                    let ranges = batch.gpa_ranges(&packet).expect("the packet's own ranges");
                    assert_eq!(GpaRangeBuf::from(ranges), sample.gpa, "{what}");
                }
            }
        }
    }
}

#[test]
fn a_write_index_changed_after_its_load_does_not_change_the_read() {
    let sample = &Sample::all()[0];
    let (spy, mut reader, _) = ring_with(sample, 0);
    // Right after the reader loads the write index, the peer makes it corrupt.
    spy.set_hook(|mem, access| {
        if let Access::Load(ControlWord::WriteIndex) = access {
            mem.store(ControlWord::WriteIndex, 0x1235, Ordering::Relaxed);
        }
    });
    let mut batch = reader.read_batch();
    let packet = batch.next().expect("the packet below the write index as loaded").expect("a packet");
    assert_eq!(packet.transaction_id, 0x1111_2222_3333_4444);
    assert_eq!(spy.loads(ControlWord::WriteIndex), 1);
    // The next refresh loads the corrupt value, and says so.
    let Err(ReadError::Corrupt(error)) = batch.next() else { panic!("expected a corrupt write index") };
    assert_eq!(error.value, 0x1235);
}

#[test]
fn a_read_index_changed_after_its_load_does_not_change_the_signal() {
    let spy = Spy::new(FlatRingMem::new(DATA_LEN).unwrap());
    let mut writer = OutgoingRing::new(spy.clone()).unwrap();
    spy.reset();
    // Right after the writer loads the read index, the peer moves it.
    spy.set_hook(|mem, access| {
        if let Access::Load(ControlWord::ReadIndex) = access {
            mem.store(ControlWord::ReadIndex, 0x800, Ordering::Relaxed);
        }
    });
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(1), &[b"x"]).unwrap();
    assert!(batch.commit(), "the read index as loaded (0) equals the batch start: signal");
    assert_eq!(spy.loads(ControlWord::ReadIndex), 1);
}
