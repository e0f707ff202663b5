//! Full and empty boundaries, exact packet sizes, the size limits, and the
//! back-pressure words of the control page (pending send size, interrupt
//! mask, feature bits) as a user of the endpoints sees them.

mod common;

use common::{endpoints_at, set_empty_at, AnyMem, PAGE};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use vmbus_ring::wire::FEATURE_PENDING_SEND_SIZE;
use vmbus_ring::{
    gpa_direct_size, in_band_size, transfer_pages_size, ControlPage, ControlWord, FlatRingMem, GpaRangeBuf,
    IncomingRing, OutgoingPacket, OutgoingRing, PacketKind, RingMem, RingState, TransferPageRange, WriteError,
    MAX_PACKET_SIZE,
};

/// A recognisable payload byte at position `i`.
fn pattern(i: usize, seed: u8) -> u8 {
    (i % 251) as u8 ^ seed
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| pattern(i, seed)).collect()
}

/// Bytes from `before` to `after`, going forward around a data area of `data_len` bytes.
fn forward(data_len: usize, before: u32, after: u32) -> usize {
    (after as usize + data_len - before as usize) % data_len
}

/// Reads one packet and copies its whole (padded) payload out.
fn read_one<M: RingMem>(reader: &mut IncomingRing<M>) -> (u64, PacketKind, Vec<u8>) {
    let mut batch = reader.read_batch();
    let packet = batch.next().unwrap().unwrap();
    let mut bytes = vec![0; packet.payload.len()];
    batch.read_payload(packet.payload, 0, &mut bytes).unwrap();
    let _ = batch.commit();
    (packet.transaction_id, packet.kind, bytes)
}

// ---------------------------------------------------------------------------
// Full: the ring is never completely full.
// ---------------------------------------------------------------------------

struct FillCase {
    name: &'static str,
    /// Both indices start here (the ring has already carried this much).
    start: u32,
    /// Payload lengths of the in-band packets already in the ring, unread.
    held: &'static [usize],
}

const DATA_LEN: usize = 4 * PAGE;

const FILL_CASES: &[FillCase] = &[
    FillCase { name: "empty ring at 0", start: 0, held: &[] },
    FillCase { name: "ring holding data", start: 0, held: &[100, 200, 0] },
    FillCase { name: "ring holding data, started mid-ring", start: 6000, held: &[1000] },
    // The held packet ends 32 bytes before the end of the data area, so the
    // filling packet wraps.
    FillCase { name: "write index near the wrap", start: (DATA_LEN - 64) as u32, held: &[8] },
    // Empty, but the filling packet starts 8 bytes before the end and wraps
    // round almost the whole data area.
    FillCase { name: "empty ring, index 8 before the end", start: (DATA_LEN - 8) as u32, held: &[] },
    FillCase { name: "held packet wraps", start: (DATA_LEN - 16) as u32, held: &[40, 3] },
];

#[test]
fn a_packet_of_exactly_the_unused_bytes_is_refused_and_one_8_smaller_fits() {
    for (mem_name, mem) in AnyMem::all(DATA_LEN) {
        for case in FILL_CASES {
            let name = format!("{mem_name}, {}", case.name);
            let (mut writer, mut reader) = endpoints_at(&mem, case.start);
            for (i, &len) in case.held.iter().enumerate() {
                writer.write(&OutgoingPacket::in_band(i as u64), &[&payload(len, 1)]).unwrap();
            }
            let used: usize = case.held.iter().map(|&len| in_band_size(len)).sum();
            assert_eq!(writer.state().bytes_used, Some(used as u32), "{name}");
            let unused = DATA_LEN - used;
            let before = writer.write_index();

            // Exactly the unused bytes: would make write == read, i.e. "empty".
            // In an empty ring that is the whole data area, which no packet
            // can ever take: too large rather than full.
            let refused = writer.write(&OutgoingPacket::in_band(100), &[&payload(unused - 24, 2)]);
            let expected = if used == 0 {
                WriteError::TooLarge { needed: unused, max: unused - 8 }
            } else {
                WriteError::Full { needed: unused, free: unused - 8 }
            };
            assert_eq!(refused, Err(expected), "{name}");
            assert_eq!(writer.write_index(), before, "{name}: a refused packet moves nothing");
            assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Relaxed), before, "{name}");
            assert!(!writer.can_write(unused).unwrap(), "{name}");
            assert!(writer.can_write(unused - 8).unwrap(), "{name}");

            // Eight bytes smaller fits, and leaves no room for anything.
            let big = payload(unused - 32, 3);
            assert_eq!(in_band_size(big.len()), unused - 8, "{name}");
            writer.write(&OutgoingPacket::in_band(101), &[&big]).unwrap();
            assert_eq!(forward(DATA_LEN, before, writer.write_index()), unused - 8, "{name}");
            let state = writer.state();
            assert_eq!((state.bytes_used, state.bytes_free), (Some(DATA_LEN as u32 - 8), Some(0)), "{name}");
            assert!(!writer.can_write(8).unwrap(), "{name}: a full ring takes not even 8 bytes");
            assert_eq!(
                writer.write(&OutgoingPacket::in_band(102), &[]),
                Err(WriteError::Full { needed: 24, free: 0 }),
                "{name}"
            );

            // Everything reads back intact, the filling packet included.
            for (i, &len) in case.held.iter().enumerate() {
                let (id, kind, bytes) = read_one(&mut reader);
                assert_eq!((id, kind), (i as u64, PacketKind::InBand), "{name}");
                assert_eq!(&bytes[..len], &payload(len, 1)[..], "{name}");
            }
            let (id, _, bytes) = read_one(&mut reader);
            assert_eq!(id, 101, "{name}");
            assert_eq!(bytes, big, "{name}: the filling packet is intact");
            assert_eq!(reader.read_batch().next(), Ok(None), "{name}");
        }
    }
}

/// A write batch counts the room it has left by the cached read index. When
/// that runs out, the same batch re-reads the read index, and the packets
/// after that are placed, and refused, exactly as the free space says, kept
/// bytes included.
#[test]
fn a_write_batch_finds_new_room_mid_batch_and_stops_exactly_at_full() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    let kilo = |id| OutgoingPacket::in_band(id); // with 1000 bytes: 1024 in the ring
    let mut batch = writer.write_batch();
    for id in 1..=3 {
        batch.write(&kilo(id), &[&[0; 1000]]).unwrap();
    }
    assert!(batch.commit());
    let mut batch = writer.write_batch();
    assert_eq!(batch.write(&kilo(4), &[&[0; 1000]]), Err(WriteError::Full { needed: 1024, free: 1016 }));
    // The reader frees two packets while the batch is open.
    let mut reads = reader.read_batch();
    for id in 1..=2 {
        assert_eq!(reads.next().unwrap().unwrap().transaction_id, id);
    }
    let _ = reads.commit();
    batch.write(&kilo(4), &[&[0; 1000]]).unwrap(); // re-reads the read index
    batch.write(&kilo(5), &[&[0; 1000]]).unwrap(); // fits the room counted then
    assert_eq!(batch.write(&kilo(6), &[&[0; 1000]]), Err(WriteError::Full { needed: 1024, free: 1016 }));
    batch.write(&OutgoingPacket::in_band(6), &[&[0; 968]]).unwrap(); // 992 bytes
    batch.write(&OutgoingPacket::in_band(7), &[]).unwrap(); // 24 bytes: the last free ones
    assert_eq!(batch.write(&OutgoingPacket::in_band(8), &[]), Err(WriteError::Full { needed: 24, free: 0 }));
    let _ = batch.commit();
    let mut reads = reader.read_batch();
    let ids: Vec<u64> = std::iter::from_fn(|| reads.next().unwrap()).map(|packet| packet.transaction_id).collect();
    assert_eq!(ids, [3, 4, 5, 6, 7]);
    let _ = reads.commit();

    // With bytes kept free, the room is what is left beside them.
    writer.keep_free(4000);
    let mut batch = writer.write_batch();
    for id in 0..3 {
        batch.write(&OutgoingPacket::in_band(id), &[]).unwrap(); // 24 bytes each
    }
    let free = PAGE - 8 - 3 * 24;
    assert_eq!(batch.write(&OutgoingPacket::in_band(3), &[]), Err(WriteError::Full { needed: 24 + 4000, free }));
}

/// A batch starts from the room the last commit left; bytes kept free from
/// then on still bind the next packet, and freeing them gives it room.
#[test]
fn bytes_kept_free_between_batches_bind_the_next_packet() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, _reader) = endpoints_at(&mem, 0);
    writer.write(&OutgoingPacket::in_band(1), &[]).unwrap(); // 24 bytes
    let free = PAGE - 8 - 24;
    writer.keep_free(free - 16);
    let full = writer.write(&OutgoingPacket::in_band(2), &[]);
    assert_eq!(full, Err(WriteError::Full { needed: 24 + free - 16, free }));
    writer.keep_free(free - 24);
    writer.write(&OutgoingPacket::in_band(2), &[]).unwrap();
    assert_eq!(writer.write_index() as usize, 48);
}

#[test]
fn full_error_counts_the_packets_already_in_the_batch() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(1), &[&[0; 1000]]).unwrap(); // 1024 bytes
    batch.write(&OutgoingPacket::in_band(2), &[&[0; 2000]]).unwrap(); // 2024 bytes
    let free = PAGE - 8 - 1024 - 2024;
    assert_eq!(batch.write(&OutgoingPacket::in_band(3), &[&[0; 1100]]), Err(WriteError::Full { needed: 1128, free }));
    // The batch is still usable after a refusal and commits the two packets.
    assert_eq!(batch.packets(), 2);
    assert_eq!(batch.bytes(), 3048);
    assert!(batch.commit());
    let mut batch = reader.read_batch();
    assert_eq!(batch.next().unwrap().unwrap().transaction_id, 1);
    assert_eq!(batch.next().unwrap().unwrap().transaction_id, 2);
    assert_eq!(batch.next(), Ok(None));
}

// ---------------------------------------------------------------------------
// Exact sizes: the helpers say what the ring consumes.
// ---------------------------------------------------------------------------

fn round_up8(len: usize) -> usize {
    len.div_ceil(8) * 8
}

#[test]
fn size_helpers_equal_the_bytes_each_packet_consumes() {
    // 16 KiB: the loop below writes far more than that, so packets wrap.
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);

    let transfer_ranges: Vec<TransferPageRange> = (0..4).map(|i| TransferPageRange::new(100 + i, 4096 * i)).collect();
    // (ranges, pages) lists for GPA direct.
    let mut gpa_lists = Vec::new();
    let mut one_page = GpaRangeBuf::new();
    one_page.push(0, 4096, &[1]).unwrap();
    gpa_lists.push((one_page, 1));
    let mut two_pages = GpaRangeBuf::new();
    two_pages.push(4000, 200, &[5, 9]).unwrap();
    gpa_lists.push((two_pages, 2));
    let mut three_ranges = GpaRangeBuf::new();
    three_ranges.push(0, 1, &[1]).unwrap();
    three_ranges.push_contiguous(0x1234_5678, 10_000).unwrap(); // offset 0x678 + 10000: 3 pages
    three_ranges.push(17, 8192, &[7, 8, 9]).unwrap();
    gpa_lists.push((three_ranges, 7));

    let mut check = |name: String, packet: OutgoingPacket<'_>, helper: usize, expected: usize, len: usize| {
        assert_eq!(helper, expected, "{name}: helper");
        assert_eq!(packet.size(len), expected, "{name}: OutgoingPacket::size");
        let before = writer.write_index();
        writer.write(&packet, &[&payload(len, 7)]).unwrap();
        assert_eq!(forward(DATA_LEN, before, writer.write_index()), expected, "{name}: write index delta");
        let read_before = reader.read_index();
        let (_, _, bytes) = read_one(&mut reader);
        assert_eq!(forward(DATA_LEN, read_before, reader.read_index()), expected, "{name}: read index delta");
        assert_eq!(bytes.len(), round_up8(len), "{name}: payload padded to 8");
        assert_eq!(&bytes[..len], &payload(len, 7)[..], "{name}: payload");
        assert!(bytes[len..].iter().all(|&b| b == 0), "{name}: padding is zero");
    };

    for len in 0..=64 {
        check(format!("in-band {len}"), OutgoingPacket::in_band(1), in_band_size(len), 24 + round_up8(len), len);
        check(format!("completion {len}"), OutgoingPacket::completion(1), in_band_size(len), 24 + round_up8(len), len);
        for count in 0..=transfer_ranges.len() {
            check(
                format!("transfer pages, {count} ranges, {len}"),
                OutgoingPacket::transfer_pages(1, 3, false, &transfer_ranges[..count]),
                transfer_pages_size(count, len),
                32 + 8 * count + round_up8(len),
                len,
            );
        }
        for (list, pages) in &gpa_lists {
            check(
                format!("GPA direct, {} ranges over {pages} pages, {len}", list.len()),
                OutgoingPacket::gpa_direct(1, list.ranges()),
                gpa_direct_size(list.len(), *pages, len),
                32 + 8 * (list.len() + pages) + round_up8(len),
                len,
            );
        }
    }
}

#[test]
fn size_helpers_saturate_instead_of_overflowing_on_huge_payloads() {
    assert_eq!(in_band_size(usize::MAX), usize::MAX);
    assert_eq!(in_band_size(usize::MAX - 20), usize::MAX);
    assert_eq!(OutgoingPacket::in_band(0).size(usize::MAX - 3), usize::MAX);
    assert_eq!(transfer_pages_size(1, usize::MAX), usize::MAX);
    assert_eq!(gpa_direct_size(1, 1, usize::MAX), usize::MAX);
}

#[test]
fn size_helpers_saturate_instead_of_overflowing_on_huge_range_counts() {
    // Debug builds panic with "attempt to add with overflow"; release builds
    // wrap and return 24, a size that would pass every "fits" check.
    assert_eq!(transfer_pages_size(usize::MAX, 0), usize::MAX);
    assert_eq!(transfer_pages_size(usize::MAX / 8, 0), usize::MAX);
    assert_eq!(gpa_direct_size(usize::MAX, 0, 0), usize::MAX);
    assert_eq!(gpa_direct_size(usize::MAX / 16, usize::MAX / 16, 0), usize::MAX);
    assert_eq!(vmbus_ring::packet_size(usize::MAX - 8, 0), usize::MAX);
}

// ---------------------------------------------------------------------------
// Too large.
// ---------------------------------------------------------------------------

#[test]
fn max_packet_size_is_the_smaller_of_the_ring_and_the_descriptor_limit() {
    assert_eq!(MAX_PACKET_SIZE, 65535 * 8 + 8);
    const CASES: &[(&str, usize, usize)] = &[
        ("one page", PAGE, PAGE - 8),
        ("two pages", 2 * PAGE, 2 * PAGE - 8),
        ("64 KiB", 16 * PAGE, 16 * PAGE - 8),
        ("512 KiB: the ring still binds", 128 * PAGE, 128 * PAGE - 8),
        ("516 KiB: length8 binds", 129 * PAGE, MAX_PACKET_SIZE),
        ("1 MiB", 256 * PAGE, MAX_PACKET_SIZE),
        ("4 MiB", 1024 * PAGE, MAX_PACKET_SIZE),
    ];
    for &(name, data_len, max) in CASES {
        let writer = OutgoingRing::new(FlatRingMem::new(data_len).unwrap()).unwrap();
        assert_eq!(writer.max_packet_size(), max, "{name}");
    }
}

#[test]
fn a_packet_larger_than_the_ring_is_too_large_not_full() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    let too_large = WriteError::TooLarge { needed: PAGE, max: PAGE - 8 };
    assert_eq!(writer.write(&OutgoingPacket::in_band(1), &[&[0; PAGE - 24]]), Err(too_large.clone()));
    assert_eq!(
        writer.write(&OutgoingPacket::in_band(1), &[&[0; 10_000]]),
        Err(WriteError::TooLarge { needed: in_band_size(10_000), max: PAGE - 8 })
    );
    assert_eq!(writer.write_index(), 0);

    // Even with data in the ring, "can never fit" is reported as such, so
    // a caller does not wait for space that will never come.
    writer.write(&OutgoingPacket::in_band(2), &[b"x"]).unwrap();
    assert_eq!(writer.write(&OutgoingPacket::in_band(1), &[&[0; PAGE - 24]]), Err(too_large));
    assert_eq!(writer.set_pending_send_size(PAGE), Err(WriteError::TooLarge { needed: PAGE, max: PAGE - 8 }));
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0, "a refused request is not stored");

    // Exactly the largest packet fits an empty ring.
    let _ = read_one(&mut reader);
    writer.write(&OutgoingPacket::in_band(3), &[&payload(PAGE - 32, 4)]).unwrap();
    let (id, _, bytes) = read_one(&mut reader);
    assert_eq!(id, 3);
    assert_eq!(bytes, payload(PAGE - 32, 4));

    // A reservation whose length overflows is too large, not a panic.
    let mut batch = writer.write_batch();
    assert_eq!(
        batch.reserve(&OutgoingPacket::in_band(4), usize::MAX),
        Err(WriteError::TooLarge { needed: usize::MAX, max: PAGE - 8 })
    );
    assert!(!batch.commit());
}

#[test]
fn on_a_large_ring_the_u16_length8_limit_binds() {
    let data_len = 1 << 20;
    let mem = FlatRingMem::new(data_len).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    assert_eq!(writer.max_packet_size(), MAX_PACKET_SIZE);

    // The largest payload: 16 + 524264 + 8 = 524288 bytes, length8 = 65535.
    let largest = MAX_PACKET_SIZE - 24;
    for len in [largest + 1, 524_281, 600_000, data_len - 1024] {
        assert_eq!(
            writer.write(&OutgoingPacket::in_band(1), &[&vec![0; len]]),
            Err(WriteError::TooLarge { needed: in_band_size(len), max: MAX_PACKET_SIZE }),
            "payload {len}"
        );
    }
    assert_eq!(writer.write_index(), 0);

    let big = payload(largest, 5);
    writer.write(&OutgoingPacket::in_band(2), &[&big]).unwrap();
    assert_eq!(writer.write_index() as usize, MAX_PACKET_SIZE);
    let mut length8 = [0; 2];
    mem.read_data(4, &mut length8);
    assert_eq!(u16::from_le_bytes(length8), u16::MAX);
    let (id, kind, bytes) = read_one(&mut reader);
    assert_eq!((id, kind), (2, PacketKind::InBand));
    assert_eq!(bytes, big);

    // One batch: the largest packet, then one of exactly the bytes left
    // (the room a batch counts never exceeds the largest packet, so the
    // second one is checked against the ring anew), then nothing more.
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(3), &[&big]).unwrap();
    let rest = payload(data_len - 8 - MAX_PACKET_SIZE - 24, 6);
    batch.write(&OutgoingPacket::in_band(4), &[&rest]).unwrap();
    assert!(matches!(batch.write(&OutgoingPacket::in_band(5), &[]), Err(WriteError::Full { needed: 24, free: 0 })));
    assert!(batch.commit());
    assert_eq!(read_one(&mut reader), (3, PacketKind::InBand, big));
    assert_eq!(read_one(&mut reader), (4, PacketKind::InBand, rest));
}

// ---------------------------------------------------------------------------
// Empty.
// ---------------------------------------------------------------------------

/// Ring memory that records every control-word store.
#[derive(Debug, Clone)]
struct Recording {
    mem: FlatRingMem,
    stores: Arc<Mutex<Vec<(ControlWord, u32, Ordering)>>>,
}

impl Recording {
    fn new(data_len: usize) -> Self {
        Self { mem: FlatRingMem::new(data_len).unwrap(), stores: Default::default() }
    }

    fn take(&self) -> Vec<(ControlWord, u32, Ordering)> {
        std::mem::take(&mut self.stores.lock().unwrap())
    }

    fn stores_of(stores: &[(ControlWord, u32, Ordering)], word: ControlWord) -> Vec<(u32, Ordering)> {
        stores.iter().filter(|store| store.0 == word).map(|store| (store.1, store.2)).collect()
    }
}

impl ControlPage for Recording {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.mem.load(word, order)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.stores.lock().unwrap().push((word, value, order));
        self.mem.store(word, value, order)
    }
    fn full_fence(&self) {
        self.mem.full_fence()
    }
}

impl RingMem for Recording {
    fn data_len(&self) -> usize {
        self.mem.data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.mem.read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.mem.write_control(offset, buf)
    }
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.mem.read_data(offset, buf)
    }
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.mem.write_data(offset, buf)
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.mem.zero_data(offset, len)
    }
}

#[test]
fn an_empty_ring_reads_nothing_and_an_empty_read_commit_stores_nothing() {
    let mem = Recording::new(PAGE);
    let (mut writer, mut reader) = endpoints_at(&mem, 512);
    mem.take();

    let mut batch = reader.read_batch();
    assert_eq!(batch.next(), Ok(None));
    assert_eq!(batch.next(), Ok(None), "still empty, still usable");
    assert_eq!(batch.packets(), 0);
    assert!(!batch.commit(), "nothing read: no signal");
    assert_eq!(mem.take(), [], "nothing read: no control word written");

    // Read everything, then a second commit with nothing new.
    writer.write(&OutgoingPacket::in_band(1), &[b"a"]).unwrap();
    let mut batch = reader.read_batch();
    batch.next().unwrap().unwrap();
    assert_eq!(batch.next(), Ok(None));
    let _ = batch.commit();
    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), 544);
    mem.take();
    let mut batch = reader.read_batch();
    assert_eq!(batch.next(), Ok(None));
    assert!(!batch.commit());
    assert_eq!(mem.take(), []);
    assert_eq!(reader.read_index(), 544);
}

#[test]
fn an_empty_write_batch_commit_stores_no_write_index() {
    let mem = Recording::new(PAGE);
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    mem.take();

    assert!(!writer.write_batch().commit(), "an empty batch needs no signal");
    assert_eq!(Recording::stores_of(&mem.take(), ControlWord::WriteIndex), []);

    // A batch whose only write was refused is empty too.
    let mut batch = writer.write_batch();
    assert!(batch.write(&OutgoingPacket::in_band(1), &[&[0; PAGE]]).is_err());
    assert!(!batch.commit());
    assert_eq!(Recording::stores_of(&mem.take(), ControlWord::WriteIndex), []);
    assert_eq!(reader.read_batch().next(), Ok(None));

    // A non-empty batch publishes with exactly one release store.
    let mut batch = writer.write_batch();
    for id in 0..3 {
        batch.write(&OutgoingPacket::in_band(id), &[b"abc"]).unwrap();
    }
    assert!(batch.commit());
    assert_eq!(Recording::stores_of(&mem.take(), ControlWord::WriteIndex), [(96, Ordering::Release)]);

    // The read side publishes its index the same way.
    let mut batch = reader.read_batch();
    for _ in 0..3 {
        batch.next().unwrap().unwrap();
    }
    let _ = batch.commit();
    assert_eq!(Recording::stores_of(&mem.take(), ControlWord::ReadIndex), [(96, Ordering::Release)]);
}

// ---------------------------------------------------------------------------
// Pending send size.
// ---------------------------------------------------------------------------

/// Payload of a 512-byte in-band packet.
const PACKET_512: usize = 512 - 24;

/// A 4096-byte ring holding seven 512-byte packets: 3584 used, 504 free.
fn nearly_full_ring() -> (FlatRingMem, OutgoingRing<FlatRingMem>, IncomingRing<FlatRingMem>) {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, reader) = endpoints_at(&mem, 0);
    let mut batch = writer.write_batch();
    for id in 0..7 {
        batch.write(&OutgoingPacket::in_band(id), &[&[0; PACKET_512]]).unwrap();
    }
    let _ = batch.commit();
    assert_eq!(writer.state().bytes_free, Some(504));
    (mem, writer, reader)
}

/// Reads and commits `count` packets; returns the commit's signal decision.
fn read_and_commit(reader: &mut IncomingRing<FlatRingMem>, count: usize) -> bool {
    let mut batch = reader.read_batch();
    for _ in 0..count {
        batch.next().unwrap().unwrap();
    }
    batch.commit()
}

#[test]
fn a_blocked_writer_is_signalled_once_when_its_space_arrives() {
    let (mem, mut writer, mut reader) = nearly_full_ring();
    let packet = OutgoingPacket::in_band(100);
    let needed = packet.size(1000);
    assert_eq!(needed, 1024);
    assert_eq!(writer.write(&packet, &[&[1; 1000]]), Err(WriteError::Full { needed, free: 504 }));

    assert_eq!(writer.set_pending_send_size(needed), Ok(false), "no room yet: wait");
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 1024);
    assert_eq!(RingState::read(&mem).pending_send_size, 1024);
    assert_eq!(reader.state().pending_send_size, 1024);

    assert!(!read_and_commit(&mut reader, 1), "free 1016: still short of 1024");
    assert!(read_and_commit(&mut reader, 1), "free 1528: crossed 1024");
    assert!(!read_and_commit(&mut reader, 1), "free 2040: already above");
    assert!(!read_and_commit(&mut reader, 0), "nothing read");
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 1024, "the reader leaves it alone");

    writer.write(&packet, &[&[1; 1000]]).unwrap();
    writer.clear_pending_send_size();
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0);
    assert_eq!(writer.state().pending_send_size, 0);
    // With the request withdrawn, freeing more space signals nobody.
    assert!(!read_and_commit(&mut reader, 4));
}

#[test]
fn pending_send_size_recheck_sees_space_freed_meanwhile_and_withdraws() {
    let (mem, mut writer, mut reader) = nearly_full_ring();
    assert_eq!(
        writer.write(&OutgoingPacket::in_band(1), &[&[0; 1000]]),
        Err(WriteError::Full { needed: 1024, free: 504 })
    );
    // The reader frees space before the writer announces its need; no one
    // was waiting, so no signal.
    assert!(!read_and_commit(&mut reader, 2));
    // The writer's re-check must see it (its cached read index is stale).
    assert_eq!(writer.set_pending_send_size(1024), Ok(true));
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0, "withdrawn");
    writer.write(&OutgoingPacket::in_band(1), &[&[0; 1000]]).unwrap();

    // Exactly enough also counts as room.
    let (mem, mut writer, _reader) = nearly_full_ring();
    assert_eq!(writer.set_pending_send_size(504), Ok(true));
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0);
    assert_eq!(writer.set_pending_send_size(512), Ok(false));
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 512);
    writer.clear_pending_send_size();
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0);
}

#[test]
fn a_writer_waiting_for_an_unaligned_size_is_woken() {
    // 24 bytes free; the writer wants 30 (so, in practice, 32).
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    writer.write(&OutgoingPacket::in_band(1), &[]).unwrap(); // 24 bytes
    writer.write(&OutgoingPacket::in_band(2), &[&[0; PAGE - 8 - 24 - 24 - 24]]).unwrap();
    assert_eq!(writer.state().bytes_free, Some(24));
    assert_eq!(writer.set_pending_send_size(30), Ok(false), "24 < 30: wait");
    // The reader frees 24 bytes: 48 free, enough for the writer. It must be
    // told, or it sleeps forever.
    assert!(read_and_commit(&mut reader, 1), "free went from 24 (< 30) to 48 (>= 30)");
}

#[test]
fn a_writer_waiting_for_fewer_than_8_bytes_is_woken() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    writer.write(&OutgoingPacket::in_band(1), &[]).unwrap(); // 24 bytes
    writer.write(&OutgoingPacket::in_band(2), &[&[0; PAGE - 8 - 24 - 24]]).unwrap();
    assert_eq!(writer.state().bytes_free, Some(0));
    assert_eq!(writer.set_pending_send_size(4), Ok(false), "0 < 4: wait");
    assert!(read_and_commit(&mut reader, 1), "free went from 0 (< 4) to 24 (>= 4)");
}

// ---------------------------------------------------------------------------
// Interrupt mask and sleeping.
// ---------------------------------------------------------------------------

#[test]
fn set_interrupt_mask_stores_one_and_zero() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (_writer, mut reader) = endpoints_at(&mem, 0);
    reader.set_interrupt_mask(true);
    assert_eq!(mem.load(ControlWord::InterruptMask, Ordering::Relaxed), 1);
    assert_eq!(reader.state().interrupt_mask, 1);
    reader.set_interrupt_mask(false);
    assert_eq!(mem.load(ControlWord::InterruptMask, Ordering::Relaxed), 0);
}

#[test]
fn prepare_to_sleep_unmasks_and_reports_whether_the_ring_is_empty() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 4000);

    reader.set_interrupt_mask(true);
    assert_eq!(reader.prepare_to_sleep(), Ok(true), "empty: sleep");
    assert_eq!(mem.load(ControlWord::InterruptMask, Ordering::Relaxed), 0, "and be signalled");

    // Data arrives while the reader is polling (masked): the writer does not
    // signal, so the reader must find it before sleeping.
    reader.set_interrupt_mask(true);
    assert!(!writer.write(&OutgoingPacket::in_band(1), &[&[0; 200]]).unwrap(), "masked: no signal");
    assert_eq!(reader.prepare_to_sleep(), Ok(false), "data arrived: keep reading");
    assert_eq!(mem.load(ControlWord::InterruptMask, Ordering::Relaxed), 0);

    // Read but not committed: the packet is still the reader's to consume.
    let mut batch = reader.read_batch();
    batch.next().unwrap().unwrap();
    batch.revert();
    assert_eq!(reader.prepare_to_sleep(), Ok(false));

    assert!(!read_and_commit(&mut reader, 1));
    assert_eq!(reader.prepare_to_sleep(), Ok(true), "drained: sleep");
    // Now unmasked and caught up: the next write signals.
    assert!(writer.write(&OutgoingPacket::in_band(2), &[]).unwrap());
}

#[test]
fn prepare_to_sleep_reports_a_corrupt_write_index() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (_writer, mut reader) = endpoints_at(&mem, 0);
    mem.store(ControlWord::WriteIndex, 12, Ordering::Relaxed);
    assert!(reader.prepare_to_sleep().is_err(), "a misaligned write index is corrupt, not 'data arrived'");
}

// ---------------------------------------------------------------------------
// RingState.
// ---------------------------------------------------------------------------

#[test]
fn ring_state_reports_the_control_page() {
    let mem = FlatRingMem::new(2 * PAGE).unwrap();
    set_empty_at(&mem, 8000);
    let state = RingState::read(&mem);
    assert_eq!(state.feature_bits, 0, "no writer has opened yet");

    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    let mut reader = IncomingRing::new(mem.clone()).unwrap();
    assert_eq!(RingState::read(&mem).feature_bits & FEATURE_PENDING_SEND_SIZE, FEATURE_PENDING_SEND_SIZE);

    // 200 + 300 payload: 224 + 328 bytes, wrapping past 8192.
    writer.write(&OutgoingPacket::in_band(1), &[&[0; 200]]).unwrap();
    writer.write(&OutgoingPacket::in_band(2), &[&[0; 300]]).unwrap();
    reader.set_interrupt_mask(true);
    mem.store(ControlWord::PendingSendSize, 4096, Ordering::Relaxed);
    let state = writer.state();
    assert_eq!(state, reader.state());
    assert_eq!(
        state,
        RingState {
            data_len: 8192,
            write_index: (8000 + 552) % 8192,
            read_index: 8000,
            interrupt_mask: 1,
            pending_send_size: 4096,
            feature_bits: FEATURE_PENDING_SEND_SIZE,
            bytes_used: Some(552),
            bytes_free: Some(8192 - 552 - 8),
        }
    );
    assert_eq!(
        state.to_string(),
        "write 0x168 read 0x1f40 used 552 free 7632 of 8192, mask 1, pending send 4096, features 0x1"
    );
    assert!(!state.to_string().contains('\n'), "one line");
}

#[test]
fn ring_state_has_no_used_or_free_when_an_index_is_corrupt() {
    const CASES: &[(&str, ControlWord, u32)] = &[
        ("misaligned write index", ControlWord::WriteIndex, 12),
        ("write index at data_len", ControlWord::WriteIndex, PAGE as u32),
        ("write index far out", ControlWord::WriteIndex, u32::MAX),
        ("misaligned read index", ControlWord::ReadIndex, 4),
        ("read index past data_len", ControlWord::ReadIndex, PAGE as u32 + 8),
    ];
    for &(name, word, value) in CASES {
        let mem = FlatRingMem::new(PAGE).unwrap();
        let (mut writer, _reader) = endpoints_at(&mem, 0);
        writer.write(&OutgoingPacket::in_band(1), &[]).unwrap();
        mem.store(word, value, Ordering::Relaxed);
        let state = RingState::read(&mem);
        assert_eq!((state.bytes_used, state.bytes_free), (None, None), "{name}");
        assert_eq!(state.data_len, PAGE as u32, "{name}");
        let raw = if word == ControlWord::WriteIndex { state.write_index } else { state.read_index };
        assert_eq!(raw, value, "{name}: the bad value is shown as found");
        let shown = state.to_string();
        assert!(shown.contains("used ? free ?"), "{name}: {shown}");
    }
}
