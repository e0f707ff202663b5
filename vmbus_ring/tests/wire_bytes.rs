//! The exact bytes a writer puts in the ring.
//!
//! Every expectation here is built by hand from the wire facts (little-endian
//! integers pushed into a `Vec<u8>`), never from the crate's wire structs or
//! size helpers, so a mistake in those cannot hide itself.

mod common;

use common::{endpoints_at, ring_image, AnyMem, PAGE};
use vmbus_ring::{FlatRingMem, GpaRangeBuf, OutgoingKind, OutgoingPacket, OutgoingRing, RingMem, TransferPageRange};

/// The data area used by every test: one page.
const DATA_LEN: usize = PAGE;

/// A little-endian byte builder for expected images.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }
    fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn zeros(mut self, len: usize) -> Self {
        self.0.resize(self.0.len() + len, 0);
        self
    }
    /// The footer: zero low half, start offset in the high half.
    fn footer(self, start: u32) -> Self {
        self.u32(0).u32(start)
    }
    /// The 16-byte descriptor.
    fn descriptor(self, packet_type: u16, data_offset8: u16, length8: u16, flags: u16, transaction_id: u64) -> Self {
        self.u16(packet_type).u16(data_offset8).u16(length8).u16(flags).u64(transaction_id)
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

// The four sample packets: what is written, and the bytes expected for it
// when it starts at data-area offset `start`.

const IN_BAND_ID: u64 = 0x1122_3344_5566_7788;
const IN_BAND_PAYLOAD: &[u8] = b"hello";

/// 16 descriptor + 5 payload + 3 padding + 8 footer = 32 bytes.
fn in_band_bytes(start: u32) -> Vec<u8> {
    Bytes::default().descriptor(6, 2, 3, 0, IN_BAND_ID).raw(b"hello").zeros(3).footer(start).done()
}

const COMPLETION_ID: u64 = 0xFEDC_BA98_7654_3210;
const COMPLETION_PAYLOAD: &[u8] = b"completed!!!";

/// 16 descriptor + 12 payload + 4 padding + 8 footer = 40 bytes.
fn completion_bytes(start: u32) -> Vec<u8> {
    Bytes::default().descriptor(11, 2, 4, 1, COMPLETION_ID).raw(b"completed!!!").zeros(4).footer(start).done()
}

const TRANSFER_ID: u64 = 0x0A0B_0C0D;
const TRANSFER_SET: u16 = 0x1234;
const TRANSFER_PAYLOAD: &[u8] = b"xyz";

fn transfer_ranges() -> [TransferPageRange; 2] {
    [TransferPageRange::new(0x100, 0x2000), TransferPageRange::new(0x7FF, 0x10_0000)]
}

/// 16 descriptor + 8 header + 2 x 8 ranges + 3 payload + 5 padding + 8 footer = 56 bytes.
fn transfer_bytes(start: u32) -> Vec<u8> {
    Bytes::default()
        .descriptor(7, 5, 6, 0, TRANSFER_ID)
        .u16(0x1234) // set_id
        .u8(1) // sender_owns_set
        .u8(0) // reserved
        .u32(2) // range_count
        .u32(0x100) // byte_count
        .u32(0x2000) // byte_offset
        .u32(0x7FF)
        .u32(0x10_0000)
        .raw(b"xyz")
        .zeros(5)
        .footer(start)
        .done()
}

fn transfer_packet(ranges: &[TransferPageRange]) -> OutgoingPacket<'_> {
    OutgoingPacket {
        transaction_id: TRANSFER_ID,
        completion_requested: false,
        kind: OutgoingKind::TransferPages { set_id: TRANSFER_SET, sender_owns_set: true, ranges },
    }
}

const GPA_ID: u64 = 42;
const GPA_PAYLOAD: &[u8] = b"0123456789abcdef";

/// One range of 100 bytes at offset 0x10 in page 0xABC, and one of 200 bytes
/// at offset 4000 that spans pages 0x1000 and 0x1001.
fn gpa_ranges() -> GpaRangeBuf {
    let mut ranges = GpaRangeBuf::new();
    ranges.push(0x10, 100, &[0xABC]).unwrap();
    ranges.push(4000, 200, &[0x1000, 0x1001]).unwrap();
    ranges
}

/// 16 descriptor + 8 header + 5 x 8 range words + 16 payload + 8 footer = 88 bytes.
fn gpa_bytes(start: u32) -> Vec<u8> {
    Bytes::default()
        .descriptor(9, 8, 10, 0, GPA_ID)
        .u32(0) // reserved
        .u32(2) // range_count
        .u32(100) // byte_count
        .u32(0x10) // byte_offset
        .u64(0xABC)
        .u32(200)
        .u32(4000)
        .u64(0x1000)
        .u64(0x1001)
        .raw(b"0123456789abcdef")
        .footer(start)
        .done()
}

/// The whole expected ring image: a control page holding the two indices and
/// feature bit 0, then a data area of `fill` bytes with `packets` placed at
/// their offsets (wrapping at the end of the data area).
fn expected_image(write_index: u32, read_index: u32, fill: u8, packets: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut image = vec![0u8; PAGE];
    image[0..4].copy_from_slice(&write_index.to_le_bytes());
    image[4..8].copy_from_slice(&read_index.to_le_bytes());
    image[64..68].copy_from_slice(&1u32.to_le_bytes());
    let mut data = vec![fill; DATA_LEN];
    for (start, bytes) in packets {
        for (i, &byte) in bytes.iter().enumerate() {
            data[(*start as usize + i) % DATA_LEN] = byte;
        }
    }
    image.extend_from_slice(&data);
    image
}

/// Compares two ring images, naming the first differing byte.
#[track_caller]
fn assert_image_eq(actual: &[u8], expected: &[u8]) {
    assert_image_eq_in("flat", actual, expected)
}

/// [`assert_image_eq`] for the memory kind `name`.
#[track_caller]
fn assert_image_eq_in(name: &str, actual: &[u8], expected: &[u8]) {
    assert_eq!(actual.len(), expected.len(), "{name}: image length");
    if let Some(at) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        let (area, offset) = if at < PAGE { ("control page", at) } else { ("data area", at - PAGE) };
        let from = at.saturating_sub(8) & !7;
        let to = (from + 24).min(actual.len());
        panic!(
            "{name}: first difference in the {area} at offset {offset:#x}: found {:#04x}, expected {:#04x}\n\
             found    {:02x?}\nexpected {:02x?}",
            actual[at],
            expected[at],
            &actual[from..to],
            &expected[from..to],
        );
    }
}

fn fresh_writer() -> (FlatRingMem, OutgoingRing<FlatRingMem>) {
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    let writer = OutgoingRing::new(mem.clone()).unwrap();
    (mem, writer)
}

#[test]
fn opening_a_writer_sets_only_feature_bit_0() {
    let (mem, _writer) = fresh_writer();
    assert_image_eq(&ring_image(&mem), &expected_image(0, 0, 0, &[]));
}

#[test]
fn in_band_packet_bytes() {
    let (mem, mut writer) = fresh_writer();
    assert!(writer.write(&OutgoingPacket::in_band(IN_BAND_ID), &[IN_BAND_PAYLOAD]).unwrap());
    assert_image_eq(&ring_image(&mem), &expected_image(32, 0, 0, &[(0, in_band_bytes(0))]));
}

#[test]
fn completion_packet_bytes_carry_completion_requested_flag() {
    let (mem, mut writer) = fresh_writer();
    let packet = OutgoingPacket::completion(COMPLETION_ID).with_completion_requested();
    writer.write(&packet, &[COMPLETION_PAYLOAD]).unwrap();
    assert_image_eq(&ring_image(&mem), &expected_image(40, 0, 0, &[(0, completion_bytes(0))]));
}

#[test]
fn transfer_pages_packet_bytes() {
    let (mem, mut writer) = fresh_writer();
    let ranges = transfer_ranges();
    writer.write(&transfer_packet(&ranges), &[TRANSFER_PAYLOAD]).unwrap();
    assert_image_eq(&ring_image(&mem), &expected_image(56, 0, 0, &[(0, transfer_bytes(0))]));
}

#[test]
fn gpa_direct_packet_bytes() {
    let (mem, mut writer) = fresh_writer();
    let ranges = gpa_ranges();
    writer.write(&OutgoingPacket::gpa_direct(GPA_ID, ranges.ranges()), &[GPA_PAYLOAD]).unwrap();
    assert_image_eq(&ring_image(&mem), &expected_image(88, 0, 0, &[(0, gpa_bytes(0))]));
}

/// Writes the four sample packets in one batch and commits it.
fn write_all_four<M: RingMem>(writer: &mut OutgoingRing<M>) {
    let transfer = transfer_ranges();
    let gpa = gpa_ranges();
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(IN_BAND_ID), &[IN_BAND_PAYLOAD]).unwrap();
    batch.write(&OutgoingPacket::completion(COMPLETION_ID).with_completion_requested(), &[COMPLETION_PAYLOAD]).unwrap();
    batch.write(&transfer_packet(&transfer), &[TRANSFER_PAYLOAD]).unwrap();
    batch.write(&OutgoingPacket::gpa_direct(GPA_ID, gpa.ranges()), &[GPA_PAYLOAD]).unwrap();
    let _ = batch.commit();
}

/// The four sample packets back to back from `start`: (offset, bytes) each,
/// and the offset after the last.
fn all_four_bytes(start: u32) -> (Vec<(u32, Vec<u8>)>, u32) {
    let mut at = start;
    let mut packets = Vec::new();
    for make in [in_band_bytes, completion_bytes, transfer_bytes, gpa_bytes] {
        let bytes = make(at);
        let len = bytes.len() as u32;
        packets.push((at, bytes));
        at = (at + len) % DATA_LEN as u32;
    }
    (packets, at)
}

#[test]
fn one_batch_of_each_type_lies_back_to_back_with_footers_naming_each_start() {
    let (mem, mut writer) = fresh_writer();
    write_all_four(&mut writer);
    let (packets, end) = all_four_bytes(0);
    assert_eq!(end, 32 + 40 + 56 + 88);
    // Spelled out: the packets start at 0, 32, 72 and 128.
    assert_eq!(packets.iter().map(|(at, _)| *at).collect::<Vec<_>>(), [0, 32, 72, 128]);
    assert_image_eq(&ring_image(&mem), &expected_image(end, 0, 0, &packets));
}

#[test]
fn packet_at_a_nonzero_offset_has_that_offset_in_its_footer() {
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    let (mut writer, _reader) = endpoints_at(&mem, 0x238);
    let ranges = gpa_ranges();
    writer.write(&OutgoingPacket::gpa_direct(GPA_ID, ranges.ranges()), &[GPA_PAYLOAD]).unwrap();
    let expected = gpa_bytes(0x238);
    // The footer is the last 8 bytes: low half zero, high half the start.
    assert_eq!(expected[80..], [0, 0, 0, 0, 0x38, 0x02, 0, 0]);
    assert_image_eq(&ring_image(&mem), &expected_image(0x238 + 88, 0x238, 0, &[(0x238, expected)]));
}

#[test]
fn packets_wrapping_the_end_of_the_data_area_continue_at_its_start() {
    // Starting 48 bytes before the end: the in-band packet (32) fits, the
    // completion (40) wraps in its payload, the rest follow from offset 24.
    let start = (DATA_LEN - 48) as u32;
    for (name, mem) in AnyMem::all(DATA_LEN) {
        let (mut writer, _reader) = endpoints_at(&mem, start);
        write_all_four(&mut writer);
        let (packets, end) = all_four_bytes(start);
        assert_eq!(end, 32 + 40 + 56 + 88 - 48, "{name}");
        assert_image_eq_in(name, &ring_image(&mem), &expected_image(end, start, 0, &packets));
    }
}

#[test]
fn stale_ring_bytes_never_show_through_padding_reserved_fields_or_footers() {
    let (mem, mut writer) = fresh_writer();
    mem.write_data(0, &[0xAA; DATA_LEN]);
    write_all_four(&mut writer);
    let (packets, end) = all_four_bytes(0);
    assert_image_eq(&ring_image(&mem), &expected_image(end, 0, 0xAA, &packets));
}

#[test]
fn stale_bytes_are_zeroed_in_a_wrapping_packet_too() {
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    mem.write_data(0, &[0xAA; DATA_LEN]);
    // The transfer-pages packet from 16 bytes before the end: its header
    // (with the reserved byte) and everything after it wrap.
    let start = (DATA_LEN - 16) as u32;
    let (mut writer, _reader) = endpoints_at(&mem, start);
    let ranges = transfer_ranges();
    writer.write(&transfer_packet(&ranges), &[TRANSFER_PAYLOAD]).unwrap();
    assert_image_eq(&ring_image(&mem), &expected_image(40, start, 0xAA, &[(start, transfer_bytes(start))]));
}

#[test]
fn empty_and_split_payloads() {
    let (mem, mut writer) = fresh_writer();
    let mut batch = writer.write_batch();
    // No payload: descriptor and footer only, data_offset8 == length8 == 2.
    batch.write(&OutgoingPacket::in_band(1), &[]).unwrap();
    // A payload in pieces is their concatenation; 8 bytes need no padding.
    batch.write(&OutgoingPacket::in_band(2), &[b"ab", b"", b"cdefgh"]).unwrap();
    let _ = batch.commit();
    let empty = Bytes::default().descriptor(6, 2, 2, 0, 1).footer(0).done();
    let split = Bytes::default().descriptor(6, 2, 3, 0, 2).raw(b"abcdefgh").footer(24).done();
    assert_image_eq(&ring_image(&mem), &expected_image(56, 0, 0, &[(0, empty), (24, split)]));
}

#[test]
fn reserved_payload_is_padded_with_zeros_and_filled_in_place() {
    let (mem, mut writer) = fresh_writer();
    mem.write_data(0, &[0xAA; DATA_LEN]);
    let mut batch = writer.write_batch();
    let payload = batch.reserve(&OutgoingPacket::in_band(IN_BAND_ID), 5).unwrap();
    batch.write_payload(payload, 0, b"he").unwrap();
    batch.write_payload(payload, 2, b"llo").unwrap();
    let _ = batch.commit();
    assert_image_eq(&ring_image(&mem), &expected_image(32, 0, 0xAA, &[(0, in_band_bytes(0))]));
}
