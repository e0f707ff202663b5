//! Packets round-trip through a ring intact, over every kind of ring memory.
//!
//! The single-packet round trips start at every 8-byte offset in the last 64
//! bytes of the data area, so across the cases the descriptor, the
//! type-specific header, the payload and the footer each straddle (or end
//! exactly at) the wrap. The data area is filled with garbage first, so the
//! checks also show that padding is written as zeros, never left stale.
//! Then: batches, reverted batches, `reserve` + `write_payload`, and
//! unsupported packet types skipped without losing the reader's place.

mod common;

use common::{endpoints_at, set_empty_at, AnyMem, PAGE};
use std::sync::atomic::Ordering;
use vmbus_ring::{
    ControlPage, ControlWord, FlatRingMem, GpaRangeBuf, IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket,
    PacketKind, PayloadError, PayloadRange, ReadBatch, ReadError, RingMem, RingState, TransferPageRange,
};

const DATA_LEN: usize = 2 * PAGE;
/// What the data area holds before each case, so stale bytes show.
const GARBAGE: u8 = 0xee;
const SET_ID: u16 = 0xbeef;

/// GPA ranges as `(byte_offset, byte_count, page numbers)`; all but one
/// span several pages, and the page numbers are far from contiguous.
const GPA: &[(u32, u32, &[u64])] = &[
    (100, 3 * 4096, &[0x10_0000, 0x20_0007, 0x3, 0xdead_beef_0000]),
    (0, 4096, &[0x42]),
    (4095, 2, &[0x7fff_ffff_ffff, 0x1]),
    (2048, 8192, &[0x9, 0x8, 0x7]),
];
/// Header words of the GPA list above: one per range plus one per page.
const GPA_WORDS: usize = 4 + 4 + 1 + 2 + 3;

fn transfer_ranges() -> Vec<TransferPageRange> {
    vec![TransferPageRange::new(100, 0), TransferPageRange::new(8192, 4096), TransferPageRange::new(13, 0xffff_fff0)]
}

fn gpa_ranges() -> GpaRangeBuf {
    let mut buf = GpaRangeBuf::new();
    for &(byte_offset, byte_count, gpns) in GPA {
        buf.push(byte_offset, byte_count, gpns).unwrap();
    }
    buf
}

/// The type-specific headers the packets borrow.
struct Headers {
    transfer: Vec<TransferPageRange>,
    gpa: GpaRangeBuf,
}

impl Headers {
    fn new() -> Self {
        Self { transfer: transfer_ranges(), gpa: gpa_ranges() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    InBand,
    Completion,
    TransferPages,
    GpaDirect,
}

const SHAPES: [Shape; 4] = [Shape::InBand, Shape::Completion, Shape::TransferPages, Shape::GpaDirect];

/// One packet to send and what the reader must see.
#[derive(Debug, Clone)]
struct Spec {
    shape: Shape,
    transaction_id: u64,
    completion_requested: bool,
    sender_owns_set: bool,
    payload: Vec<u8>,
}

impl Spec {
    fn new(shape: Shape, transaction_id: u64, payload: Vec<u8>) -> Self {
        Self { shape, transaction_id, completion_requested: false, sender_owns_set: false, payload }
    }

    fn packet<'a>(&self, headers: &'a Headers) -> OutgoingPacket<'a> {
        let kind = match self.shape {
            Shape::InBand => OutgoingKind::InBand,
            Shape::Completion => OutgoingKind::Completion,
            Shape::TransferPages => OutgoingKind::TransferPages {
                set_id: SET_ID,
                sender_owns_set: self.sender_owns_set,
                ranges: &headers.transfer,
            },
            Shape::GpaDirect => OutgoingKind::GpaDirect(headers.gpa.ranges()),
        };
        OutgoingPacket { transaction_id: self.transaction_id, completion_requested: self.completion_requested, kind }
    }

    /// Ring bytes the packet takes, footer included.
    fn size(&self, headers: &Headers) -> usize {
        self.packet(headers).size(self.payload.len())
    }

    /// The descriptor's `type`, per the wire facts.
    fn wire_type(&self) -> u16 {
        match self.shape {
            Shape::InBand => 6,
            Shape::TransferPages => 7,
            Shape::GpaDirect => 9,
            Shape::Completion => 11,
        }
    }

    /// The descriptor's `data_offset8`: descriptor, then the type header.
    fn data_offset8(&self) -> u16 {
        match self.shape {
            Shape::InBand | Shape::Completion => 2,
            Shape::TransferPages => 2 + 1 + transfer_ranges().len() as u16,
            Shape::GpaDirect => 2 + 1 + GPA_WORDS as u16,
        }
    }
}

/// Recognisable, mostly non-zero bytes.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i as u8).wrapping_mul(37)) | 1).collect()
}

fn wrap(offset: usize) -> u32 {
    (offset % DATA_LEN) as u32
}

fn scribble(mem: &impl RingMem) {
    mem.write_data(0, &vec![GARBAGE; mem.data_len()]);
}

fn gpa_description(buf: &GpaRangeBuf) -> Vec<(u32, u32, Vec<u64>)> {
    buf.ranges().iter().map(|range| (range.byte_offset, range.byte_count, range.page_numbers().collect())).collect()
}

/// The whole received payload, padding included.
fn payload_of<M: RingMem>(batch: &ReadBatch<'_, M>, packet: &IncomingPacket) -> Vec<u8> {
    let mut bytes = vec![GARBAGE; packet.payload.len()];
    batch.read_payload(packet.payload, 0, &mut bytes).unwrap();
    bytes
}

/// Checks a received packet against what was sent from `start`.
fn check_packet<M: RingMem>(
    ctx: &str,
    batch: &ReadBatch<'_, M>,
    packet: &IncomingPacket,
    spec: &Spec,
    start: u32,
    headers: &Headers,
) {
    assert_eq!(packet.offset, start, "{ctx}: packet offset");
    assert_eq!(packet.transaction_id, spec.transaction_id, "{ctx}: transaction id");
    assert_eq!(packet.completion_requested, spec.completion_requested, "{ctx}: completion requested");
    match (&packet.kind, spec.shape) {
        (PacketKind::InBand, Shape::InBand) | (PacketKind::Completion, Shape::Completion) => {}
        (PacketKind::TransferPages(pages), Shape::TransferPages) => {
            assert_eq!(pages.set_id, SET_ID, "{ctx}: set id");
            assert_eq!(pages.sender_owns_set, spec.sender_owns_set, "{ctx}: sender owns set");
            let ranges = batch.transfer_page_ranges(packet).unwrap();
            assert_eq!(ranges, &headers.transfer[..], "{ctx}: transfer ranges");
        }
        (PacketKind::GpaDirect(list), Shape::GpaDirect) => {
            let ranges = GpaRangeBuf::from(batch.gpa_ranges(packet).unwrap());
            let expected: Vec<_> = GPA.iter().map(|&(offset, count, gpns)| (offset, count, gpns.to_vec())).collect();
            assert_eq!((list.len(), ranges.len()), (GPA.len(), GPA.len()), "{ctx}: GPA range count");
            assert_eq!(gpa_description(&ranges), expected, "{ctx}: GPA ranges");
            assert_eq!(ranges, headers.gpa, "{ctx}: GPA range list");
        }
        (kind, shape) => panic!("{ctx}: sent {shape:?}, received {kind:?}"),
    }
    let len = spec.payload.len();
    let payload_at = wrap(start as usize + usize::from(spec.data_offset8()) * 8);
    assert_eq!(packet.payload.offset(), payload_at, "{ctx}: payload offset");
    assert_eq!(packet.payload.len(), len.next_multiple_of(8), "{ctx}: payload length (padded)");
    let bytes = payload_of(batch, packet);
    assert_eq!(&bytes[..len], &spec.payload[..], "{ctx}: payload bytes");
    assert!(bytes[len..].iter().all(|&b| b == 0), "{ctx}: padding not zeroed: {:?}", &bytes[len..]);
}

/// Checks the bytes the writer put on the ring against the wire facts:
/// descriptor fields, type-header reserved fields, footer.
fn check_wire(ctx: &str, mem: &impl RingMem, start: u32, spec: &Spec, size: usize) {
    let mut descriptor = [0u8; 24];
    mem.read_data(start as usize, &mut descriptor);
    let u16_at = |i: usize| u16::from_le_bytes([descriptor[i], descriptor[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(descriptor[i..i + 4].try_into().unwrap());
    assert_eq!(u16_at(0), spec.wire_type(), "{ctx}: wire type");
    assert_eq!(u16_at(2), spec.data_offset8(), "{ctx}: data_offset8");
    assert_eq!(usize::from(u16_at(4)) * 8 + 8, size, "{ctx}: length8");
    assert_eq!(u16_at(6), u16::from(spec.completion_requested), "{ctx}: flags");
    assert_eq!(u64::from_le_bytes(descriptor[8..16].try_into().unwrap()), spec.transaction_id, "{ctx}: id");
    match spec.shape {
        Shape::InBand | Shape::Completion => {}
        Shape::TransferPages => {
            assert_eq!(u16_at(16), SET_ID, "{ctx}: set id");
            assert_eq!(descriptor[18], u8::from(spec.sender_owns_set), "{ctx}: sender_owns_set");
            assert_eq!(descriptor[19], 0, "{ctx}: transfer header reserved byte");
            assert_eq!(u32_at(20), 3, "{ctx}: transfer range count");
        }
        Shape::GpaDirect => {
            assert_eq!(u32_at(16), 0, "{ctx}: GPA header reserved word");
            assert_eq!(u32_at(20), GPA.len() as u32, "{ctx}: GPA range count");
        }
    }
    let mut footer = [0u8; 8];
    mem.read_data(wrap(start as usize + size - 8) as usize, &mut footer);
    assert_eq!(u64::from_le_bytes(footer), u64::from(start) << 32, "{ctx}: footer");
}

fn round_trip_one(ctx: &str, mem: &AnyMem, start: u32, spec: &Spec, headers: &Headers) {
    scribble(mem);
    let (mut writer, mut reader) = endpoints_at(mem, start);
    let size = spec.size(headers);
    let signal = writer.write(&spec.packet(headers), &[spec.payload.as_slice()]).unwrap();
    assert!(signal, "{ctx}: an empty, unmasked reader must be signalled");
    let end = wrap(start as usize + size);
    assert_eq!(writer.write_index(), end, "{ctx}: writer's index");
    assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Acquire), end, "{ctx}: published write index");
    check_wire(ctx, mem, start, spec, size);

    let mut batch = reader.read_batch();
    let packet = batch.next().unwrap_or_else(|e| panic!("{ctx}: {e}")).expect("a packet");
    check_packet(ctx, &batch, &packet, spec, start, headers);
    assert_eq!(batch.next(), Ok(None), "{ctx}");
    assert!(!batch.commit(), "{ctx}: the writer was not waiting for space");
    assert_eq!(reader.read_index(), end, "{ctx}: reader's index");
    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Acquire), end, "{ctx}: published read index");
}

#[test]
fn every_packet_type_round_trips_at_every_offset_near_the_wrap() {
    let headers = Headers::new();
    for (name, mem) in AnyMem::all(DATA_LEN) {
        for shape in SHAPES {
            for payload_len in [0, 13, 100] {
                for back in (8..=64).step_by(8) {
                    let start = (DATA_LEN - back) as u32;
                    let spec = Spec {
                        shape,
                        transaction_id: 0x0123_4567_0000_0000 | u64::from(start) << 8 | payload_len as u64,
                        completion_requested: back % 16 == 0,
                        sender_owns_set: back % 24 == 0,
                        payload: pattern(start as u8 ^ payload_len as u8, payload_len),
                    };
                    let ctx = format!("{name}: {shape:?} with {payload_len}-byte payload at {start:#x}");
                    round_trip_one(&ctx, &mem, start, &spec, &headers);
                }
            }
        }
    }
}

#[test]
fn a_mixed_batch_signals_once_and_reads_back_in_order() {
    let headers = Headers::new();
    let mut specs = vec![
        Spec::new(Shape::InBand, 1, pattern(1, 13)),
        Spec::new(Shape::Completion, 2, Vec::new()),
        Spec::new(Shape::TransferPages, 3, pattern(3, 100)),
        Spec::new(Shape::GpaDirect, 4, pattern(4, 13)),
        Spec::new(Shape::InBand, 5, pattern(5, 100)),
    ];
    specs[0].completion_requested = true;
    specs[2].sender_owns_set = true;
    let extra = Spec::new(Shape::Completion, 6, pattern(6, 7));
    for (name, mem) in AnyMem::all(DATA_LEN) {
        for start in [0, DATA_LEN - 40] {
            let ctx = format!("{name} at {start:#x}");
            scribble(&mem);
            let (mut writer, mut reader) = endpoints_at(&mem, start as u32);
            // Empty batches publish nothing and signal no one.
            assert!(!writer.write_batch().commit(), "{ctx}: an empty write batch");
            assert!(!reader.read_batch().commit(), "{ctx}: an empty read batch");
            assert_eq!(RingState::read(&mem).write_index, start as u32, "{ctx}");
            let mut starts = Vec::new();
            let mut at = start;
            let mut batch = writer.write_batch();
            for spec in &specs {
                starts.push(wrap(at));
                batch.write(&spec.packet(&headers), &[spec.payload.as_slice()]).unwrap();
                at += spec.size(&headers);
            }
            assert_eq!(batch.packets(), specs.len(), "{ctx}");
            assert_eq!(batch.bytes(), at - start, "{ctx}");
            // Nothing is visible before the commit, even to a fresh look at the write index.
            assert_eq!(reader.prepare_to_sleep(), Ok(true), "{ctx}");
            assert_eq!(reader.read_batch().next(), Ok(None), "{ctx}");
            assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Acquire), start as u32, "{ctx}");
            assert!(batch.commit(), "{ctx}: the batch's one commit signals the reader");
            assert_eq!(writer.write_index(), wrap(at), "{ctx}");

            // The reader has not caught up, so a further batch needs no signal.
            starts.push(wrap(at));
            assert!(!writer.write(&extra.packet(&headers), &[extra.payload.as_slice()]).unwrap(), "{ctx}");

            let mut batch = reader.read_batch();
            for (spec, &start) in specs.iter().chain([&extra]).zip(&starts) {
                let packet = batch.next().unwrap_or_else(|e| panic!("{ctx}: {e}")).expect("a packet");
                check_packet(&ctx, &batch, &packet, spec, start, &headers);
            }
            assert_eq!(batch.next(), Ok(None), "{ctx}");
            assert_eq!(batch.packets(), specs.len() + 1, "{ctx}");
            assert!(!batch.commit(), "{ctx}");
            assert_eq!(reader.read_index(), writer.write_index(), "{ctx}");
            assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Acquire), writer.write_index(), "{ctx}");
        }
    }
}

#[test]
fn a_reverted_or_dropped_write_batch_is_invisible_and_its_space_reused() {
    let headers = Headers::new();
    let start = (DATA_LEN - 32) as u32;
    for (name, mem) in AnyMem::all(DATA_LEN) {
        for revert in [true, false] {
            let ctx = format!("{name}, {}", if revert { "reverted" } else { "dropped" });
            scribble(&mem);
            let (mut writer, mut reader) = endpoints_at(&mem, start);
            let mut batch = writer.write_batch();
            batch.write(&OutgoingPacket::in_band(1), &[&[0x11; 100]]).unwrap();
            batch.write(&OutgoingPacket::completion(2).with_completion_requested(), &[&[0x22; 50]]).unwrap();
            if revert {
                batch.revert();
            } else {
                drop(batch);
            }
            assert_eq!(writer.write_index(), start, "{ctx}");
            assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Acquire), start, "{ctx}");
            assert_eq!(reader.prepare_to_sleep(), Ok(true), "{ctx}: the ring must still look empty");
            assert_eq!(reader.read_batch().next(), Ok(None), "{ctx}");

            // The next batch starts where the discarded one did, over its bytes.
            let spec = Spec::new(Shape::InBand, 3, pattern(3, 13));
            assert!(writer.write(&spec.packet(&headers), &[spec.payload.as_slice()]).unwrap(), "{ctx}");
            let mut batch = reader.read_batch();
            let packet = batch.next().unwrap().unwrap();
            check_packet(&ctx, &batch, &packet, &spec, start, &headers);
            assert_eq!(batch.next(), Ok(None), "{ctx}: nothing of the discarded batch shows");
            assert!(!batch.commit());
            assert_eq!(reader.read_index(), writer.write_index(), "{ctx}");
        }
    }
}

#[test]
fn a_reverted_or_dropped_read_batch_yields_the_same_packets_again() {
    let headers = Headers::new();
    let start = (DATA_LEN - 48) as u32;
    let specs = [
        Spec::new(Shape::GpaDirect, 10, pattern(10, 13)),
        Spec::new(Shape::TransferPages, 11, pattern(11, 100)),
        Spec::new(Shape::InBand, 12, Vec::new()),
    ];
    for (name, mem) in AnyMem::all(DATA_LEN) {
        for revert in [true, false] {
            let ctx = format!("{name}, {}", if revert { "reverted" } else { "dropped" });
            scribble(&mem);
            let (mut writer, mut reader) = endpoints_at(&mem, start);
            let mut batch = writer.write_batch();
            for spec in &specs {
                batch.write(&spec.packet(&headers), &[spec.payload.as_slice()]).unwrap();
            }
            assert!(batch.commit());
            let used = RingState::read(&mem).bytes_used;

            let mut batch = reader.read_batch();
            let first: Vec<_> = (0..2)
                .map(|_| {
                    let packet = batch.next().unwrap().unwrap();
                    let payload = payload_of(&batch, &packet);
                    (packet, payload)
                })
                .collect();
            assert_eq!(batch.packets(), 2);
            if revert {
                batch.revert();
            } else {
                drop(batch);
            }
            assert_eq!(reader.read_index(), start, "{ctx}");
            assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Acquire), start, "{ctx}");
            assert_eq!(RingState::read(&mem).bytes_used, used, "{ctx}: no space handed back");

            let mut batch = reader.read_batch();
            let mut at = start as usize;
            for (i, spec) in specs.iter().enumerate() {
                let packet = batch.next().unwrap().unwrap();
                check_packet(&ctx, &batch, &packet, spec, wrap(at), &headers);
                if let Some(earlier) = first.get(i) {
                    assert_eq!((&packet, &payload_of(&batch, &packet)), (&earlier.0, &earlier.1), "{ctx}");
                }
                at += spec.size(&headers);
            }
            assert_eq!(batch.next(), Ok(None), "{ctx}");
            assert!(!batch.commit());
            assert_eq!(reader.read_index(), writer.write_index(), "{ctx}");
        }
    }
}

#[test]
fn reserve_then_write_payload_round_trips_a_wrapping_payload() {
    let headers = Headers::new();
    let mut spec = Spec::new(Shape::InBand, 0x5150, pattern(0x40, 21));
    spec.completion_requested = true;
    let len = spec.payload.len();
    // Descriptor split by the wrap; payload starting at 0; payload split
    // after 8 bytes; payload split after 16 bytes.
    for (name, mem) in AnyMem::all(DATA_LEN) {
        for back in [8, 16, 24, 32] {
            let start = (DATA_LEN - back) as u32;
            let ctx = format!("{name} at {start:#x}");
            scribble(&mem);
            let (mut writer, mut reader) = endpoints_at(&mem, start);
            let mut batch = writer.write_batch();
            let range = batch.reserve(&spec.packet(&headers), len).unwrap();
            assert_eq!(range.offset(), wrap(start as usize + 16), "{ctx}");
            assert_eq!(range.len(), len, "{ctx}");
            // Filled out of order, in pieces; one piece straddles the wrap.
            batch.write_payload(range, 10, &spec.payload[10..]).unwrap();
            batch.write_payload(range, 0, &spec.payload[..10]).unwrap();
            assert_eq!(
                batch.write_payload(range, 15, &[0; 7]),
                Err(PayloadError::OutOfBounds { offset: 15, len: 7, payload_len: len }),
                "{ctx}"
            );
            assert_eq!(
                batch.write_payload(range, usize::MAX, &[0; 2]),
                Err(PayloadError::OutOfBounds { offset: usize::MAX, len: 2, payload_len: len }),
                "{ctx}"
            );
            assert!(batch.commit(), "{ctx}");
            assert_eq!(writer.write_index(), wrap(start as usize + spec.size(&headers)), "{ctx}");
            check_wire(&ctx, &mem, start, &spec, spec.size(&headers));

            let mut batch = reader.read_batch();
            let packet = batch.next().unwrap().unwrap();
            check_packet(&ctx, &batch, &packet, &spec, start, &headers);
            // A read from the middle of the payload, across the wrap.
            let mut middle = [0; 11];
            batch.read_payload(packet.payload, 5, &mut middle).unwrap();
            assert_eq!(&middle[..], &spec.payload[5..16], "{ctx}");
            assert_eq!(batch.next(), Ok(None), "{ctx}");
            assert!(!batch.commit());
        }
    }
}

#[test]
fn write_payload_refuses_a_range_from_another_batch() {
    let start = (DATA_LEN - 16) as u32;
    for (name, mem) in AnyMem::all(DATA_LEN) {
        let (mut writer, mut reader) = endpoints_at(&mem, start);

        // A payload from a committed batch is no longer writable.
        let mut batch = writer.write_batch();
        let committed = batch.reserve(&OutgoingPacket::in_band(1), 8).unwrap();
        batch.write_payload(committed, 0, b"original").unwrap();
        assert!(batch.commit());
        let mut batch = writer.write_batch();
        let refused = Err(PayloadError::NotFromThisBatch);
        assert_eq!(batch.write_payload(committed, 0, b"scribble"), refused, "{name}");

        // Nor is one from a reverted batch, even where its bytes are now
        // this batch's: the reverted payload starts where this batch's first
        // (empty) packet has its footer, followed by the second's descriptor.
        let mut reverted = writer.write_batch();
        let discarded = reverted.reserve(&OutgoingPacket::in_band(2), 100).unwrap();
        reverted.revert();
        let mut batch = writer.write_batch();
        let first = batch.reserve(&OutgoingPacket::in_band(3), 0).unwrap();
        let second = batch.reserve(&OutgoingPacket::in_band(4), 80).unwrap();
        assert_eq!(discarded.offset(), first.offset(), "{name}: the reverted payload covers this batch's frames");
        assert_eq!(batch.write_payload(discarded, 0, &[0xff; 16]), refused, "{name}");
        // Nor one made up from an offset and a length.
        assert_eq!(batch.write_payload(PayloadRange::new(second.offset(), 80), 0, b"made up!"), refused, "{name}");
        batch.write_payload(second, 0, &[7; 80]).unwrap();
        assert!(!batch.commit(), "{name}: the reader has not caught up");

        let mut batch = reader.read_batch();
        for (id, expected) in [(1, &b"original"[..]), (3, &[]), (4, &[7; 80])] {
            let packet = batch.next().unwrap().unwrap();
            assert_eq!(packet.transaction_id, id, "{name}");
            assert_eq!(payload_of(&batch, &packet), expected, "{name}");
        }
        assert_eq!(batch.next(), Ok(None), "{name}");
        assert!(!batch.commit());
    }
}

#[test]
fn read_payload_refuses_a_range_from_another_batch() {
    for (name, mem) in AnyMem::all(DATA_LEN) {
        let (mut writer, mut reader) = endpoints_at(&mem, 0);
        writer.write(&OutgoingPacket::in_band(1), &[b"first!!!"]).unwrap();
        let mut batch = reader.read_batch();
        let old = batch.next().unwrap().unwrap();
        assert!(!batch.commit());

        // A packet filling the rest of the ring, read and freed, so that the
        // next one lands where the first was: the first packet's range now
        // covers bytes of the new one.
        let filler = DATA_LEN - OutgoingPacket::in_band(1).size(8) - OutgoingPacket::in_band(1).size(0);
        writer.write(&OutgoingPacket::in_band(2), &[&vec![0x77; filler]]).unwrap();
        let mut batch = reader.read_batch();
        assert_eq!(batch.next().unwrap().unwrap().payload.len(), filler, "{name}");
        assert!(!batch.commit());
        assert_eq!(writer.write_index(), 0, "{name}: the ring went round");
        writer.write(&OutgoingPacket::in_band(3), &[b"second!!"]).unwrap();

        let mut batch = reader.read_batch();
        let new = batch.next().unwrap().unwrap();
        assert_eq!(new.payload, old.payload, "{name}: the same bytes");
        let mut buf = [0; 8];
        let refused = Err(PayloadError::NotFromThisBatch);
        assert_eq!(batch.read_payload(old.payload, 0, &mut buf), refused, "{name}: a committed batch's range");
        assert_eq!(batch.read_payload(PayloadRange::new(0, 8), 0, &mut buf), refused, "{name}: a made-up range");
        let other = FlatRingMem::new(DATA_LEN).unwrap();
        let (mut other_writer, mut other_reader) = endpoints_at(&other, 0);
        other_writer.write(&OutgoingPacket::in_band(4), &[b"another!"]).unwrap();
        let foreign = other_reader.read_batch().next().unwrap().unwrap();
        assert_eq!(batch.read_payload(foreign.payload, 0, &mut buf), refused, "{name}: another ring's range");
        batch.read_payload(new.payload, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"second!!", "{name}");
        batch.revert();

        // Nor is a reverted batch's range valid in the batch that reads the
        // same packet again.
        let mut again = reader.read_batch();
        assert_eq!(again.read_payload(new.payload, 0, &mut buf), refused, "{name}: a reverted batch's range");
        let reread = again.next().unwrap().unwrap();
        again.read_payload(reread.payload, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"second!!", "{name}");
    }
}

/// A packet encoded by hand from the wire facts: descriptor with
/// `data_offset8 = 2`, `body` (a multiple of 8 bytes), footer.
fn encode(packet_type: u16, flags: u16, transaction_id: u64, body: &[u8], start: u32) -> Vec<u8> {
    assert_eq!(body.len() % 8, 0);
    let length8 = ((16 + body.len()) / 8) as u16;
    let mut bytes = Vec::new();
    bytes.extend(packet_type.to_le_bytes());
    bytes.extend(2u16.to_le_bytes());
    bytes.extend(length8.to_le_bytes());
    bytes.extend(flags.to_le_bytes());
    bytes.extend(transaction_id.to_le_bytes());
    bytes.extend(body);
    bytes.extend((u64::from(start) << 32).to_le_bytes());
    bytes
}

#[test]
fn unsupported_packet_types_are_reported_and_skipped_in_place() {
    // Every historic type the design lists, and one never defined.
    let types = [0u16, 1, 2, 3, 4, 5, 8, 10, 12, 13, 0x1234];
    let first_body = *b"first!!!";
    let third_body = pattern(0x33, 16);
    for (name, mem) in AnyMem::all(DATA_LEN) {
        // No packet straddling the wrap; the unsupported one's descriptor,
        // then its payload, straddling it; the third one's descriptor
        // straddling it.
        for start in [0, DATA_LEN - 40, DATA_LEN - 64, DATA_LEN - 88] {
            for packet_type in types {
                for commit_between in [false, true] {
                    let ctx = format!("{name}: type {packet_type} at {start:#x}, commit between: {commit_between}");
                    set_empty_at(&mem, start as u32);
                    let second_body = pattern(packet_type as u8, 24);
                    let second_id = 0x4444_0000 + u64::from(packet_type);
                    let first = encode(6, 0, 0x11, &first_body, start as u32);
                    let second_at = wrap(start + first.len());
                    let second = encode(packet_type, 0, second_id, &second_body, second_at);
                    let third_at = wrap(second_at as usize + second.len());
                    let third = encode(6, 1, 0x33, &third_body, third_at);
                    let end = wrap(third_at as usize + third.len());
                    mem.write_data(start, &first);
                    mem.write_data(second_at as usize, &second);
                    mem.write_data(third_at as usize, &third);
                    mem.store(ControlWord::WriteIndex, end, Ordering::Release);

                    let mut reader = IncomingRing::new(mem.clone()).unwrap();
                    let mut batch = reader.read_batch();
                    let packet = batch.next().unwrap_or_else(|e| panic!("{ctx}: {e}")).expect("a packet");
                    assert_eq!((packet.offset, packet.transaction_id), (start as u32, 0x11), "{ctx}");
                    assert_eq!(packet.kind, PacketKind::InBand, "{ctx}");
                    assert_eq!(payload_of(&batch, &packet), first_body, "{ctx}");
                    match batch.next() {
                        Err(ReadError::Unsupported(skipped)) => {
                            assert_eq!(skipped.packet_type, packet_type, "{ctx}");
                            assert_eq!(skipped.transaction_id, second_id, "{ctx}");
                            assert_eq!(skipped.offset, second_at, "{ctx}");
                            assert_eq!(skipped.payload.offset(), wrap(second_at as usize + 16), "{ctx}");
                            assert_eq!(skipped.payload.len(), 24, "{ctx}");
                            let mut body = vec![0; 24];
                            batch.read_payload(skipped.payload, 0, &mut body).unwrap();
                            assert_eq!(body, second_body, "{ctx}: the skipped packet's payload");
                        }
                        other => panic!("{ctx}: expected an unsupported packet, got {other:?}"),
                    }
                    if commit_between {
                        assert_eq!(batch.packets(), 2, "{ctx}");
                        assert!(!batch.commit());
                        assert_eq!(reader.read_index(), third_at, "{ctx}: the commit passes the skipped packet");
                        batch = reader.read_batch();
                    }
                    let packet = batch.next().unwrap_or_else(|e| panic!("{ctx}: {e}")).expect("a packet");
                    assert_eq!((packet.offset, packet.transaction_id), (third_at, 0x33), "{ctx}");
                    assert_eq!(packet.kind, PacketKind::InBand, "{ctx}");
                    assert!(packet.completion_requested, "{ctx}");
                    assert_eq!(payload_of(&batch, &packet), third_body, "{ctx}");
                    assert_eq!(batch.next(), Ok(None), "{ctx}");
                    assert!(!batch.commit());
                    assert_eq!(reader.read_index(), end, "{ctx}");
                    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Acquire), end, "{ctx}");
                }
            }
        }
    }
}
