//! A hostile peer's rings: every malformed case is the named error, never a
//! panic.
//!
//! Packets are crafted by hand (raw bytes through `RingMem::write_data`, the
//! write index through `ControlPage::store`), so nothing here depends on the
//! crate's own writer getting the format right.

mod common;

use common::{Rng, PAGE};
use std::sync::atomic::Ordering;
use vmbus_ring::{
    pages_spanned, ControlPage, ControlWord, CorruptError, Field, FlatRingMem, GpaRangeBuf, GpaRangeError, GpaRanges,
    IncomingPacket, IncomingRing, OpenError, OutgoingPacket, OutgoingRing, PacketKind, ReadBatch, ReadError, RingMem,
    UnsupportedPacket, WriteError,
};
use zerocopy::little_endian::U64;

/// Data area of the rings in these tests: two pages.
const DATA_LEN: usize = 2 * PAGE;

fn ring() -> FlatRingMem {
    FlatRingMem::new(DATA_LEN).unwrap()
}

fn le16(value: u16) -> [u8; 2] {
    value.to_le_bytes()
}

/// A packet: descriptor, `body` (type header, ranges, payload) zero-padded
/// to `length8 * 8` bytes, then a footer naming start offset 0.
fn packet(packet_type: u16, data_offset8: u16, length8: u16, flags: u16, transaction_id: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&le16(packet_type));
    bytes.extend_from_slice(&le16(data_offset8));
    bytes.extend_from_slice(&le16(length8));
    bytes.extend_from_slice(&le16(flags));
    bytes.extend_from_slice(&transaction_id.to_le_bytes());
    let body_len = usize::from(length8) * 8 - 16;
    assert!(body.len() <= body_len, "test setup: body longer than length8 allows");
    bytes.extend_from_slice(body);
    bytes.resize(16 + body_len, 0);
    bytes.extend_from_slice(&[0; 8]);
    bytes
}

/// A well-formed in-band packet with an 8-byte payload (32 bytes in all).
fn good_packet(transaction_id: u64) -> Vec<u8> {
    packet(6, 2, 3, 0, transaction_id, b"payload!")
}

/// A transfer-pages header.
fn transfer_header(set_id: u16, range_count: u32) -> Vec<u8> {
    let mut bytes = le16(set_id).to_vec();
    bytes.extend_from_slice(&[1, 0xEE]); // sender_owns_set, reserved (garbage: ignored)
    bytes.extend_from_slice(&range_count.to_le_bytes());
    bytes
}

/// A transfer-page range.
fn transfer_range(byte_count: u32, byte_offset: u32) -> Vec<u8> {
    [byte_count.to_le_bytes(), byte_offset.to_le_bytes()].concat()
}

/// A GPA-direct header, its reserved word garbage (which must be ignored).
fn gpa_header(range_count: u32) -> Vec<u8> {
    [0xDEAD_BEEFu32.to_le_bytes(), range_count.to_le_bytes()].concat()
}

/// A GPA range header word.
fn gpa_range(byte_count: u32, byte_offset: u32) -> Vec<u8> {
    [byte_count.to_le_bytes(), byte_offset.to_le_bytes()].concat()
}

fn gpn(page: u64) -> Vec<u8> {
    page.to_le_bytes().to_vec()
}

/// Writes `bytes` at data offset `at` and publishes the write index `write_index`.
fn publish_at(mem: &impl RingMem, at: u32, bytes: &[u8], write_index: u32) {
    mem.write_data(at as usize, bytes);
    mem.store(ControlWord::WriteIndex, write_index, Ordering::Release);
}

/// Writes `bytes` at offset 0 and publishes exactly them.
fn publish(mem: &impl RingMem, bytes: &[u8]) {
    publish_at(mem, 0, bytes, bytes.len() as u32);
}

fn corrupt(field: Field, value: u64, packet_offset: u32) -> ReadError {
    ReadError::Corrupt(CorruptError { field, value, packet_offset: Some(packet_offset) })
}

/// Opens a reader over `mem` (read index 0) and checks the first packet is
/// corrupt as expected, that asking again gives the same error (the reader
/// has not moved), and that committing frees nothing.
#[track_caller]
fn assert_corrupt(mem: &FlatRingMem, expected: ReadError) {
    let mut reader = IncomingRing::new(mem.clone()).unwrap();
    let mut batch = reader.read_batch();
    assert_eq!(batch.next(), Err(expected.clone()));
    assert_eq!(batch.next(), Err(expected.clone()), "the reader must not move past a corrupt packet");
    assert!(!batch.commit());
    assert_eq!(reader.read_index(), 0);
    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), 0);
    assert_eq!(reader.read_batch().next(), Err(expected), "a new batch sees the same corruption");
}

/// Publishes `bytes` at offset 0 on a fresh ring and checks the reader
/// reports `field` holding `value` in the packet at offset 0.
#[track_caller]
fn assert_packet_corrupt(bytes: &[u8], field: Field, value: u64) {
    let mem = ring();
    publish(&mem, bytes);
    assert_corrupt(&mem, corrupt(field, value, 0));
}

// --- descriptor framing ---

#[test]
fn data_offset8_below_2_is_corrupt() {
    for data_offset8 in [0, 1] {
        assert_packet_corrupt(&packet(6, data_offset8, 3, 0, 1, b""), Field::DataOffset8, data_offset8.into());
    }
}

#[test]
fn data_offset8_beyond_length8_is_corrupt() {
    assert_packet_corrupt(&packet(6, 4, 3, 0, 1, b""), Field::DataOffset8, 4);
    assert_packet_corrupt(&packet(11, u16::MAX, 3, 0, 1, b""), Field::DataOffset8, u16::MAX.into());
}

#[test]
fn length8_beyond_the_bytes_available_is_corrupt() {
    let bytes = packet(6, 2, 3, 0, 1, b"payload!"); // 24 bytes and an 8-byte footer
    let cases = [
        (8, "only part of the descriptor is published"),
        (16, "only the descriptor is published"),
        (24, "the body is published but not the footer"),
    ];
    for (write_index, what) in cases {
        let mem = ring();
        publish_at(&mem, 0, &bytes, write_index);
        let mut reader = IncomingRing::new(mem).unwrap();
        assert_eq!(reader.read_batch().next(), Err(corrupt(Field::Length8, 3, 0)), "{what}");
    }
}

#[test]
fn length8_larger_than_the_ring_is_corrupt() {
    let mut bytes = good_packet(1);
    bytes[4..6].copy_from_slice(&le16(u16::MAX));
    assert_packet_corrupt(&bytes, Field::Length8, u16::MAX.into());
    // Also when the whole rest of the ring is published.
    let mem = ring();
    publish_at(&mem, 0, &bytes, DATA_LEN as u32 - 8);
    assert_corrupt(&mem, corrupt(Field::Length8, u16::MAX.into(), 0));
}

#[test]
fn length8_reaching_past_the_write_index_after_wrapping_is_corrupt() {
    // A packet starting 16 bytes before the end claims 48 bytes; only 40 are
    // published (16 before the wrap, 24 after it).
    let mem = ring();
    let start = DATA_LEN as u32 - 16;
    common::set_empty_at(&mem, start);
    publish_at(&mem, start, &packet(6, 2, 5, 0, 1, b""), 24);
    let mut reader = IncomingRing::new(mem).unwrap();
    assert_eq!(reader.read_batch().next(), Err(corrupt(Field::Length8, 5, start)));
}

#[test]
fn unknown_flag_bits_are_corrupt() {
    for flags in [0x2, 0x3, 0x8000, 0xFFFF] {
        assert_packet_corrupt(&packet(6, 2, 3, flags, 1, b""), Field::Flags, flags.into());
    }
}

// --- control-page indices ---

#[test]
fn write_index_not_a_multiple_of_8_is_corrupt() {
    let mem = ring();
    let mut reader = IncomingRing::new(mem.clone()).unwrap();
    mem.write_data(0, &good_packet(1));
    mem.store(ControlWord::WriteIndex, 13, Ordering::Release);
    let expected = ReadError::Corrupt(CorruptError::new(Field::WriteIndex, 13));
    let mut batch = reader.read_batch();
    assert_eq!(batch.next(), Err(expected.clone()));
    assert_eq!(batch.next(), Err(expected));
    drop(batch);
    assert_eq!(reader.prepare_to_sleep(), Err(CorruptError::new(Field::WriteIndex, 13)));
    // Opening a reader over the same ring fails the same way.
    let opened = IncomingRing::new(mem).map(drop);
    assert_eq!(opened, Err(OpenError::Corrupt(CorruptError::new(Field::WriteIndex, 13))));
}

#[test]
fn write_index_at_or_beyond_the_data_size_is_corrupt() {
    for bad in [DATA_LEN as u32, DATA_LEN as u32 + 8, 0xFFFF_FFF8] {
        let mem = ring();
        let mut reader = IncomingRing::new(mem.clone()).unwrap();
        mem.store(ControlWord::WriteIndex, bad, Ordering::Release);
        let expected = CorruptError::new(Field::WriteIndex, bad.into());
        assert_eq!(reader.read_batch().next(), Err(ReadError::Corrupt(expected)), "write index {bad:#x}");
        let opened = IncomingRing::new(mem.clone()).map(drop);
        assert_eq!(opened, Err(OpenError::Corrupt(expected)), "write index {bad:#x}");
        let opened = OutgoingRing::new(mem).map(drop);
        assert_eq!(opened, Err(OpenError::Corrupt(expected)), "write index {bad:#x}");
    }
}

#[test]
fn write_index_moved_after_a_packet_was_read_is_checked_again() {
    let mem = ring();
    publish(&mem, &good_packet(1));
    let mut reader = IncomingRing::new(mem.clone()).unwrap();
    let mut batch = reader.read_batch();
    assert_eq!(batch.next().unwrap().unwrap().transaction_id, 1);
    mem.store(ControlWord::WriteIndex, 33, Ordering::Release);
    assert_eq!(batch.next(), Err(ReadError::Corrupt(CorruptError::new(Field::WriteIndex, 33))));
    // The good packet can still be handed back.
    let _ = batch.commit();
    assert_eq!(reader.read_index(), 32);
}

#[test]
fn read_index_invalid_at_open_is_corrupt_for_both_endpoints() {
    for bad in [4, 12, DATA_LEN as u32, 0xFFFF_FFF8, u32::MAX] {
        let mem = ring();
        mem.store(ControlWord::ReadIndex, bad, Ordering::Relaxed);
        let expected = Err(OpenError::Corrupt(CorruptError::new(Field::ReadIndex, bad.into())));
        assert_eq!(IncomingRing::new(mem.clone()).map(drop), expected, "read index {bad:#x}");
        assert_eq!(OutgoingRing::new(mem).map(drop), expected, "read index {bad:#x}");
    }
}

#[test]
fn read_index_corrupted_after_open_is_seen_when_the_writer_next_needs_room() {
    for bad in [12, DATA_LEN as u32] {
        let mem = ring();
        let mut writer = OutgoingRing::new(mem.clone()).unwrap();
        // 16 + 6000 + 8 bytes: 2160 bytes stay free by the cached read index.
        writer.write(&OutgoingPacket::in_band(1), &[&[0; 6000]]).unwrap();
        assert_eq!(writer.write_index(), 6024);
        mem.store(ControlWord::ReadIndex, bad, Ordering::Release);
        let expected = CorruptError::new(Field::ReadIndex, bad.into());

        // The cached read index leaves room for this one: no re-read.
        writer.write(&OutgoingPacket::in_band(2), &[&[0; 100]]).unwrap();
        assert_eq!(writer.write_index(), 6024 + 128);

        // This one needs more than the cached room: the re-read finds the corruption.
        let result = writer.write(&OutgoingPacket::in_band(3), &[&[0; 3000]]);
        assert_eq!(result, Err(WriteError::Corrupt(expected)), "read index {bad:#x}");
        assert_eq!(writer.can_write(4000), Err(expected));
        // Setting a pending send size always re-reads.
        assert_eq!(writer.set_pending_send_size(64), Err(WriteError::Corrupt(expected)));
        // Nothing was published by the failed write.
        assert_eq!(writer.write_index(), 6152);
        assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Relaxed), 6152);
    }
}

// --- packet types ---

#[test]
fn unsupported_and_unknown_types_are_reported_and_skipped() {
    for packet_type in [0, 1, 2, 3, 4, 5, 8, 10, 12, 13, 14, 200, u16::MAX] {
        let mem = ring();
        // 40 bytes: descriptor, 8 bytes before the payload, 8 bytes of payload, footer.
        let mut bytes = packet(packet_type, 3, 4, 0, 0x77, &[0xCC; 16]);
        bytes.extend(good_packet(0x88));
        publish(&mem, &bytes);
        let mut reader = IncomingRing::new(mem.clone()).unwrap();
        let mut batch = reader.read_batch();
        match batch.next() {
            Err(ReadError::Unsupported(UnsupportedPacket { packet_type: found, transaction_id, offset, payload })) => {
                assert_eq!((found, transaction_id, offset), (packet_type, 0x77, 0), "type {packet_type}");
                assert_eq!((payload.offset(), payload.len()), (24, 8), "type {packet_type}");
            }
            other => panic!("type {packet_type}: expected Unsupported, got {other:?}"),
        }
        let next = batch.next().unwrap().unwrap();
        assert_eq!((next.offset, next.transaction_id, next.kind), (40, 0x88, PacketKind::InBand));
        assert_eq!(batch.next(), Ok(None));
        assert_eq!(batch.packets(), 2);
        let _ = batch.commit();
        assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), 72, "type {packet_type}");
    }
}

#[test]
fn an_unsupported_type_with_bad_framing_is_corrupt_not_skipped() {
    // The framing is checked before the type: a reader cannot skip a packet
    // whose length it cannot trust.
    assert_packet_corrupt(&packet(200, 1, 3, 0, 1, b""), Field::DataOffset8, 1);
    assert_packet_corrupt(&packet(4, 2, 3, 0x10, 1, b""), Field::Flags, 0x10);
}

// --- GPA direct ---

#[test]
fn gpa_direct_with_no_ranges_is_corrupt() {
    let body = [gpa_header(0), b"payload!".to_vec()].concat();
    assert_packet_corrupt(&packet(9, 3, 4, 0, 1, &body), Field::RangeCount, 0);
}

#[test]
fn gpa_range_offset_outside_the_first_page_is_corrupt() {
    for byte_offset in [4096, 4097, u32::MAX] {
        let body = [gpa_header(1), gpa_range(1, byte_offset), gpn(7), gpn(8)].concat();
        assert_packet_corrupt(&packet(9, 6, 6, 0, 1, &body), Field::GpaByteOffset, byte_offset.into());
    }
}

#[test]
fn gpa_range_of_zero_bytes_is_corrupt() {
    let body = [gpa_header(1), gpa_range(0, 0), gpn(7)].concat();
    assert_packet_corrupt(&packet(9, 5, 5, 0, 1, &body), Field::GpaByteCount, 0);
    // Also when it is the second range.
    let body = [gpa_header(2), gpa_range(10, 0), gpn(7), gpa_range(0, 10), gpn(8)].concat();
    assert_packet_corrupt(&packet(9, 7, 7, 0, 1, &body), Field::GpaByteCount, 0);
}

#[test]
fn gpa_range_needing_more_page_numbers_than_fit_before_the_payload_is_corrupt() {
    // 200 bytes at offset 4000 span two pages; only one page number fits
    // before the payload offset. The payload holds what would be the second.
    let body = [gpa_header(1), gpa_range(200, 4000), gpn(7), gpn(8)].concat();
    assert_packet_corrupt(&packet(9, 5, 6, 0, 1, &body), Field::GpaPageCount, 2);
    // A range claiming (almost) 4 GiB needs 1048577 page numbers.
    let body = [gpa_header(1), gpa_range(u32::MAX, 4095), gpn(7)].concat();
    assert_packet_corrupt(&packet(9, 5, 5, 0, 1, &body), Field::GpaPageCount, 1_048_577);
}

#[test]
fn gpa_range_count_too_large_for_the_header_area_is_corrupt() {
    // Room for exactly one one-page range before the payload.
    for count in [2, 1000, u32::MAX] {
        let body = [gpa_header(count), gpa_range(8, 0), gpn(7), b"payload!".to_vec()].concat();
        assert_packet_corrupt(&packet(9, 5, 6, 0, 1, &body), Field::RangeCount, count.into());
    }
}

#[test]
fn gpa_direct_without_room_for_its_header_is_corrupt() {
    // data_offset8 == 2: the payload starts right after the descriptor. What
    // follows would parse as a valid header and range, but it is payload.
    let body = [gpa_header(1), gpa_range(8, 0), gpn(7)].concat();
    assert_packet_corrupt(&packet(9, 2, 5, 0, 1, &body), Field::DataOffset8, 2);
}

#[test]
fn valid_gpa_direct_is_read_with_its_ranges() {
    // The control case for the GPA tests above: the same shapes, valid.
    let body = [gpa_header(2), gpa_range(100, 0x10), gpn(0xABC), gpa_range(200, 4000), gpn(7), gpn(8)].concat();
    let mem = ring();
    publish(&mem, &packet(9, 8, 9, 0, 1, &body));
    let mut reader = IncomingRing::new(mem).unwrap();
    let batch = &mut reader.read_batch();
    let packet = batch.next().unwrap().unwrap();
    let ranges = batch.gpa_ranges(&packet).unwrap_or_else(|e| panic!("not GPA direct ({e}): {:?}", packet.kind));
    let ranges: Vec<_> =
        ranges.iter().map(|r| (r.byte_count, r.byte_offset, r.page_numbers().collect::<Vec<_>>())).collect();
    assert_eq!(ranges, [(100, 0x10, vec![0xABC]), (200, 4000, vec![7, 8])]);
    assert_eq!((packet.payload.offset(), packet.payload.len()), (64, 8));
}

// --- transfer pages ---

#[test]
fn transfer_page_range_count_too_large_for_the_header_area_is_corrupt() {
    // Room for exactly two ranges before the payload.
    for count in [3, 1000, u32::MAX] {
        let body = [transfer_header(1, count), transfer_range(1, 2), transfer_range(3, 4)].concat();
        assert_packet_corrupt(&packet(7, 5, 5, 0, 1, &body), Field::RangeCount, count.into());
    }
}

#[test]
fn transfer_page_ranges_overrunning_into_the_payload_are_corrupt() {
    // Room for one range; the second would be the first payload bytes.
    let body = [transfer_header(1, 2), transfer_range(1, 2), transfer_range(3, 4), vec![0x55; 40]].concat();
    assert_packet_corrupt(&packet(7, 4, 10, 0, 1, &body), Field::RangeCount, 2);
}

#[test]
fn transfer_pages_without_room_for_its_header_is_corrupt() {
    let body = [transfer_header(1, 0), b"payload!".to_vec()].concat();
    assert_packet_corrupt(&packet(7, 2, 4, 0, 1, &body), Field::DataOffset8, 2);
}

#[test]
fn valid_transfer_pages_is_read_with_its_ranges() {
    let body = [transfer_header(0x1234, 2), transfer_range(1, 2), transfer_range(3, 4)].concat();
    let mem = ring();
    publish(&mem, &packet(7, 5, 5, 0, 1, &body));
    let mut reader = IncomingRing::new(mem).unwrap();
    let batch = &mut reader.read_batch();
    let packet = batch.next().unwrap().unwrap();
    let PacketKind::TransferPages(pages) = packet.kind else { panic!("not transfer pages: {:?}", packet.kind) };
    assert_eq!((pages.set_id, pages.sender_owns_set), (0x1234, true));
    let ranges: Vec<_> = batch
        .transfer_page_ranges(&packet)
        .unwrap()
        .iter()
        .map(|r| (r.byte_count.get(), r.byte_offset.get()))
        .collect();
    assert_eq!(ranges, [(1, 2), (3, 4)]);
    assert!(packet.payload.is_empty());
}

// --- where the reader stands after an error ---

#[test]
fn a_corrupt_packet_after_a_good_one_leaves_the_good_one_readable_and_committable() {
    let mem = ring();
    let bytes = [good_packet(1), packet(6, 0, 3, 0, 2, b"")].concat();
    publish(&mem, &bytes);
    let mut reader = IncomingRing::new(mem.clone()).unwrap();
    let mut batch = reader.read_batch();
    let good = batch.next().unwrap().unwrap();
    assert_eq!((good.offset, good.transaction_id), (0, 1));
    let mut payload = [0; 8];
    batch.read_payload(good.payload, 0, &mut payload).unwrap();
    assert_eq!(&payload, b"payload!");
    let expected = corrupt(Field::DataOffset8, 0, 32);
    assert_eq!(batch.next(), Err(expected.clone()));
    assert_eq!(batch.next(), Err(expected.clone()));
    let _ = batch.commit();
    assert_eq!(reader.read_index(), 32);
    assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), 32);
    assert_eq!(reader.read_batch().next(), Err(expected));
}

#[test]
fn a_reverted_batch_rereads_the_same_corruption() {
    let mem = ring();
    publish(&mem, &[good_packet(1), packet(6, 2, 3, 0x4, 2, b"")].concat());
    let mut reader = IncomingRing::new(mem).unwrap();
    for _ in 0..2 {
        let mut batch = reader.read_batch();
        assert_eq!(batch.next().unwrap().unwrap().transaction_id, 1);
        assert_eq!(batch.next(), Err(corrupt(Field::Flags, 4, 32)));
        batch.revert();
    }
    assert_eq!(reader.read_index(), 0);
}

// --- GPA range lists on their own ---

fn words(values: &[u64]) -> Vec<U64> {
    values.iter().map(|&v| U64::new(v)).collect()
}

fn range_word(byte_count: u32, byte_offset: u32) -> u64 {
    u64::from(byte_count) | u64::from(byte_offset) << 32
}

#[test]
fn gpa_ranges_parse_zero_count_is_empty_whatever_follows() {
    let ranges = GpaRanges::parse(&[], 0).unwrap();
    assert!(ranges.is_empty());
    let garbage = words(&[u64::MAX, 0, 12345]);
    let ranges = GpaRanges::parse(&garbage, 0).unwrap();
    assert_eq!((ranges.len(), ranges.words().len(), ranges.iter().count()), (0, 0, 0));
}

#[test]
fn gpa_ranges_parse_keeps_only_the_counted_words() {
    let list = words(&[range_word(10, 0), 7, range_word(5000, 100), 8, 9, u64::MAX]);
    let ranges = GpaRanges::parse(&list, 2).unwrap();
    assert_eq!(ranges.words().len(), 5);
    assert_eq!(ranges.iter().map(|r| r.page_numbers().collect::<Vec<_>>()).collect::<Vec<_>>(), [vec![7], vec![8, 9]]);
}

#[test]
fn gpa_ranges_parse_count_larger_than_the_words_is_corrupt() {
    let one = words(&[range_word(10, 0), 7]);
    assert_eq!(GpaRanges::parse(&one, 2), Err(CorruptError::new(Field::RangeCount, 2)));
    assert_eq!(GpaRanges::parse(&[], 1), Err(CorruptError::new(Field::RangeCount, 1)));
    assert_eq!(GpaRanges::parse(&[], u32::MAX), Err(CorruptError::new(Field::RangeCount, u32::MAX.into())));
    // Many valid ranges, still fewer than claimed: the work is bounded by the words.
    let many: Vec<U64> = (0..10_000u64).flat_map(|page| words(&[range_word(1, 0), page])).collect();
    assert_eq!(GpaRanges::parse(&many, u32::MAX), Err(CorruptError::new(Field::RangeCount, u32::MAX.into())));
    assert_eq!(GpaRanges::parse(&many, 10_000).unwrap().len(), 10_000);
}

#[test]
fn gpa_ranges_parse_rejects_hostile_ranges() {
    let cases = [
        (range_word(0, 0), CorruptError::new(Field::GpaByteCount, 0)),
        (range_word(1, 4096), CorruptError::new(Field::GpaByteOffset, 4096)),
        (range_word(1, u32::MAX), CorruptError::new(Field::GpaByteOffset, u32::MAX.into())),
        (range_word(u32::MAX, 0), CorruptError::new(Field::GpaPageCount, 1 << 20)),
        (range_word(u32::MAX, 4095), CorruptError::new(Field::GpaPageCount, (1 << 20) + 1)),
        (range_word(4097, 0), CorruptError::new(Field::GpaPageCount, 2)),
    ];
    for (header, expected) in cases {
        let list = words(&[header, 1]);
        assert_eq!(GpaRanges::parse(&list, 1), Err(expected), "header {header:#x}");
    }
    assert_eq!(pages_spanned(4095, u32::MAX), (1 << 20) + 1);
}

#[test]
fn gpa_range_buf_rejects_bad_ranges_and_stays_unchanged() {
    let mut buf = GpaRangeBuf::new();
    buf.push(0, 10, &[1]).unwrap();
    let before = buf.clone();
    assert_eq!(buf.push(0, 0, &[]), Err(GpaRangeError::Empty));
    assert_eq!(buf.push(0, 0, &[1]), Err(GpaRangeError::Empty));
    assert_eq!(buf.push(4096, 1, &[1]), Err(GpaRangeError::OffsetTooLarge(4096)));
    assert_eq!(buf.push(u32::MAX, 1, &[1]), Err(GpaRangeError::OffsetTooLarge(u32::MAX)));
    assert_eq!(buf.push(0, 4097, &[1]), Err(GpaRangeError::PageCount { expected: 2, given: 1 }));
    assert_eq!(buf.push(4095, 1, &[1, 2]), Err(GpaRangeError::PageCount { expected: 1, given: 2 }));
    assert_eq!(buf.push(1, 4096, &[]), Err(GpaRangeError::PageCount { expected: 2, given: 0 }));
    assert_eq!(buf.push_contiguous(0x1000, 0), Err(GpaRangeError::Empty));
    assert_eq!(buf.push_contiguous(0, u32::MAX), Err(GpaRangeError::TooLong));
    assert_eq!(buf, before);
    assert_eq!(buf.len(), 1);
}

// --- random rings ---

const RANDOM_DATA_LEN: usize = PAGE;

/// Writes `bytes` into `data` at `at`, wrapping.
fn put(data: &mut [u8], at: usize, bytes: &[u8]) {
    for (i, &byte) in bytes.iter().enumerate() {
        data[(at + i) % data.len()] = byte;
    }
}

/// Writes a plausible-looking (often valid, often not) packet at `at`;
/// returns the size its descriptor claims.
fn plant_packet(rng: &mut Rng, data: &mut [u8], at: usize) -> usize {
    let any_type = rng.next() as u16;
    let packet_type = rng.pick(&[6, 11, 7, 9, 7, 9, 0, 1, 4, 8, 10, 12, 200, any_type]);
    // The type header and ranges, mostly well-formed.
    let count = if rng.below(16) == 0 { rng.next() as u32 } else { rng.below(4) as u32 + 1 };
    let mut header = Vec::new();
    match packet_type {
        7 => {
            header.extend(transfer_header(rng.next() as u16, count));
            for _ in 0..count.min(6) {
                header.extend(transfer_range(rng.next() as u32, rng.next() as u32));
            }
        }
        9 => {
            header.extend(gpa_header(count));
            for _ in 0..count.min(4) {
                let byte_offset = rng.pick(&[0, 100, 4000, 4095, 4095, 4096]);
                let byte_count = rng.pick(&[0, 1, 96, 96, 4096, 9000]);
                header.extend(gpa_range(byte_count, byte_offset));
                let pages = pages_spanned(byte_offset, byte_count);
                let pages = match rng.below(8) {
                    0 => pages + 1,
                    1 => pages.saturating_sub(1),
                    _ => pages,
                };
                for _ in 0..pages {
                    header.extend(gpn(rng.next()));
                }
            }
        }
        _ => {}
    }
    put(data, at + 16, &header);
    // The descriptor: often with a data offset just past that header.
    let fitting = (16 + header.len()) / 8;
    let data_offset8 = match rng.below(8) {
        0 => rng.next() as u16,
        1..=4 => (fitting + rng.below(2)) as u16,
        _ => rng.below(24) as u16,
    };
    let length8 = match rng.below(8) {
        0 => rng.next() as u16,
        1..=5 => data_offset8.saturating_add(rng.below(6) as u16),
        _ => rng.below(24) as u16,
    };
    let any_flags = rng.next() as u16;
    let flags = rng.pick(&[0, 0, 0, 1, 1, 2, any_flags]);
    let mut descriptor = Vec::new();
    for field in [packet_type, data_offset8, length8, flags] {
        descriptor.extend_from_slice(&field.to_le_bytes());
    }
    descriptor.extend_from_slice(&rng.next().to_le_bytes());
    put(data, at, &descriptor);
    usize::from(length8) * 8 + 8
}

/// Checks a payload range the reader handed out: inside the data area, after
/// the descriptor, and with the footer inside the `remaining` bytes from
/// `packet_at`. Returns its distance from the packet start.
#[track_caller]
fn check_payload(offset: u32, len: usize, packet_at: usize, remaining: usize) -> usize {
    let offset = offset as usize;
    assert!(offset < RANDOM_DATA_LEN, "payload offset {offset:#x} outside the data area");
    let distance = (offset + RANDOM_DATA_LEN - packet_at) % RANDOM_DATA_LEN;
    assert!(distance >= 16, "payload at {offset:#x} overlaps the descriptor at {packet_at:#x}");
    assert!(distance + len + 8 <= remaining, "payload {offset:#x}+{len} runs past the {remaining} bytes available");
    distance
}

fn check_kind<M: RingMem>(batch: &ReadBatch<'_, M>, packet: &IncomingPacket, data_offset: usize) {
    match &packet.kind {
        PacketKind::InBand | PacketKind::Completion => {}
        PacketKind::TransferPages(_) => {
            let ranges = batch.transfer_page_ranges(packet).expect("the packet's own ranges");
            assert!(16 + 8 + ranges.len() * 8 <= data_offset);
        }
        PacketKind::GpaDirect(_) => {
            let ranges = batch.gpa_ranges(packet).expect("the packet's own ranges");
            assert!(!ranges.is_empty());
            assert!(16 + 8 + ranges.words().len() * 8 <= data_offset);
            for range in ranges.iter() {
                assert!(range.byte_count > 0 && range.byte_offset < 4096);
                assert_eq!(range.gpns.len() as u64, pages_spanned(range.byte_offset, range.byte_count));
            }
        }
    }
}

#[derive(Debug, Default)]
struct Outcomes {
    packets: usize,
    transfer_pages: usize,
    gpa_direct: usize,
    unsupported: usize,
    drained: usize,
    corrupt: usize,
}

#[test]
fn random_rings_never_panic_and_never_hand_out_bytes_past_the_write_index() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mem = FlatRingMem::new(RANDOM_DATA_LEN).unwrap();
    let mut outcomes = Outcomes::default();
    for iteration in 0..2000 {
        let mut data = vec![0u8; RANDOM_DATA_LEN];
        data.iter_mut().for_each(|byte| *byte = rng.next() as u8);
        let read = rng.below(RANDOM_DATA_LEN / 8) * 8;
        let mut write = rng.below(RANDOM_DATA_LEN / 8) * 8;
        let mut at = read;
        for _ in 0..rng.below(8) {
            at = (at + plant_packet(&mut rng, &mut data, at)) % RANDOM_DATA_LEN;
        }
        if rng.below(2) == 0 {
            // Publish exactly the planted packets (when their sizes allow).
            write = at;
        }
        mem.write_data(0, &data);
        mem.store(ControlWord::ReadIndex, read as u32, Ordering::Relaxed);
        mem.store(ControlWord::WriteIndex, write as u32, Ordering::Release);

        let available = (write + RANDOM_DATA_LEN - read) % RANDOM_DATA_LEN;
        let mut reader = IncomingRing::new(mem.clone()).unwrap();
        let mut batch = reader.read_batch();
        let mut cursor = read;
        let mut consumed = 0;
        let mut finished = false;
        // Every packet takes at least 24 bytes, so this bounds a correct drain.
        for _ in 0..RANDOM_DATA_LEN / 24 + 2 {
            let remaining = available - consumed;
            let (packet_at, payload) = match batch.next() {
                Ok(Some(packet)) => {
                    let distance = check_payload(packet.payload.offset(), packet.payload.len(), cursor, remaining);
                    check_kind(&batch, &packet, distance);
                    outcomes.packets += 1;
                    match packet.kind {
                        PacketKind::TransferPages(_) => outcomes.transfer_pages += 1,
                        PacketKind::GpaDirect(_) => outcomes.gpa_direct += 1,
                        _ => {}
                    }
                    (packet.offset, packet.payload)
                }
                Err(ReadError::Unsupported(unsupported)) => {
                    check_payload(unsupported.payload.offset(), unsupported.payload.len(), cursor, remaining);
                    outcomes.unsupported += 1;
                    (unsupported.offset, unsupported.payload)
                }
                Ok(None) => {
                    assert_eq!(remaining, 0, "iteration {iteration}: empty with bytes left");
                    outcomes.drained += 1;
                    finished = true;
                    break;
                }
                Err(ReadError::Corrupt(error)) => {
                    assert_eq!(error.packet_offset, Some(cursor as u32), "iteration {iteration}: {error}");
                    assert_eq!(batch.next(), Err(ReadError::Corrupt(error)), "iteration {iteration}");
                    outcomes.corrupt += 1;
                    finished = true;
                    break;
                }
                Err(other) => panic!("iteration {iteration}: {other}"),
            };
            assert_eq!(packet_at as usize, cursor, "iteration {iteration}");
            // The payload is exactly the ring bytes there.
            let mut bytes = vec![0; payload.len()];
            batch.read_payload(payload, 0, &mut bytes).unwrap();
            let start = payload.offset() as usize;
            let expected: Vec<u8> = (0..payload.len()).map(|i| data[(start + i) % RANDOM_DATA_LEN]).collect();
            assert_eq!(bytes, expected, "iteration {iteration}");
            // Move past it by the size its descriptor claims.
            let mut length8 = [0; 2];
            put(&mut length8, 0, &[data[(cursor + 4) % RANDOM_DATA_LEN], data[(cursor + 5) % RANDOM_DATA_LEN]]);
            let size = usize::from(u16::from_le_bytes(length8)) * 8 + 8;
            assert!(size <= remaining, "iteration {iteration}: packet of {size} bytes with {remaining} available");
            consumed += size;
            cursor = (cursor + size) % RANDOM_DATA_LEN;
        }
        assert!(finished, "iteration {iteration}: the drain did not end");
        let _ = batch.commit();
        assert_eq!(reader.read_index() as usize, cursor, "iteration {iteration}");
    }
    // Every outcome occurred, so the checks above were exercised.
    assert!(
        outcomes.packets > 100
            && outcomes.transfer_pages > 10
            && outcomes.gpa_direct > 10
            && outcomes.unsupported > 10
            && outcomes.drained > 10
            && outcomes.corrupt > 100,
        "{outcomes:?}"
    );
}
