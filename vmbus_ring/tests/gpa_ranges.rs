//! GPA range lists: building, the wire layout, parsing back, the limits, and
//! a GPA-direct packet carrying a list through a ring.

mod common;

use common::{endpoints_at, PAGE};
use vmbus_ring::wire::GpaRangeHeader;
use vmbus_ring::{
    gpa_direct_size, pages_spanned, Field, FlatRingMem, GpaRangeBuf, GpaRangeError, GpaRanges, OutgoingPacket,
    OwnedPacketKind, RingMem, WriteError, MAX_GPA_WORDS, MAX_PACKET_SIZE,
};
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

#[derive(Debug)]
struct Range {
    offset: u32,
    count: u32,
    gpns: &'static [u64],
}

const fn range(offset: u32, count: u32, gpns: &'static [u64]) -> Range {
    Range { offset, count, gpns }
}

const LISTS: &[(&str, &[Range])] = &[
    ("single whole page", &[range(0, 4096, &[10])]),
    ("a few bytes inside a page", &[range(100, 50, &[7])]),
    ("last byte of a page", &[range(4095, 1, &[0xffff_ffff_ffff])]),
    ("offset + count crossing into a second page", &[range(4000, 200, &[5, 6])]),
    ("unaligned, three pages", &[range(1, 8192, &[1, 2, 3])]),
    ("page numbers need not be contiguous", &[range(0, 3 * 4096, &[9, 3, u64::MAX])]),
    (
        "several ranges",
        &[range(0, 4096, &[1]), range(2048, 4096, &[2, 3]), range(4095, 4098, &[4, 5, 6]), range(8, 8, &[7])],
    ),
];

fn build(ranges: &[Range]) -> GpaRangeBuf {
    let mut buf = GpaRangeBuf::new();
    for range in ranges {
        buf.push(range.offset, range.count, range.gpns).unwrap();
    }
    buf
}

/// A list of `n` ranges of different shapes.
fn many(n: u32) -> GpaRangeBuf {
    let mut buf = GpaRangeBuf::new();
    for i in 0..n {
        let offset = (i * 577) % 4096;
        let count = 1 + i * 1000;
        let gpns: Vec<u64> = (0..pages_spanned(offset, count)).map(|p| u64::from(i) << 20 | p).collect();
        buf.push(offset, count, &gpns).unwrap();
    }
    buf
}

/// The ranges of a list, as plain values.
fn contents(ranges: GpaRanges<'_>) -> Vec<(u32, u32, Vec<u64>)> {
    ranges.iter().map(|r| (r.byte_offset, r.byte_count, r.page_numbers().collect())).collect()
}

#[test]
fn built_lists_parse_back_to_the_same_ranges() {
    let mut lists: Vec<(String, GpaRangeBuf, Option<&[Range]>)> =
        LISTS.iter().map(|(name, ranges)| (name.to_string(), build(ranges), Some(*ranges))).collect();
    lists.push(("40 ranges".into(), many(40), None));
    for (name, buf, ranges) in &lists {
        let parsed = GpaRanges::parse(buf.words(), buf.len() as u32).unwrap();
        assert_eq!(parsed.len(), buf.len(), "{name}");
        assert!(!parsed.is_empty(), "{name}");
        assert_eq!(parsed.words(), buf.words(), "{name}: every word used");
        assert_eq!(parsed, buf.ranges(), "{name}");
        assert_eq!(contents(parsed), contents(buf.ranges()), "{name}");
        if let Some(ranges) = ranges {
            let expected: Vec<_> = ranges.iter().map(|r| (r.offset, r.count, r.gpns.to_vec())).collect();
            assert_eq!(contents(parsed), expected, "{name}");
        }
        for range in parsed {
            assert_eq!(range.gpns.len() as u64, pages_spanned(range.byte_offset, range.byte_count), "{name}");
        }
        assert_eq!(&GpaRangeBuf::from(parsed), buf, "{name}: From<GpaRanges>");
    }
    assert_eq!(lists.last().unwrap().1.len(), 40);
}

#[test]
fn pages_spanned_at_the_boundaries() {
    const CASES: &[(&str, u32, u32, u64)] = &[
        ("empty", 0, 0, 0),
        ("one byte", 0, 1, 1),
        ("offset 0, one page", 0, 4096, 1),
        ("offset 0, one page and a byte", 0, 4097, 2),
        ("offset 1, one page", 1, 4096, 2),
        ("offset 4095, one byte", 4095, 1, 1),
        ("offset 4095, two bytes", 4095, 2, 2),
        ("offset 4095, a page", 4095, 4096, 2),
        ("offset 4095, a page and a byte: ends on a page boundary", 4095, 4097, 2),
        ("offset 4095, a page and two bytes", 4095, 4098, 3),
        ("offset 0, u32::MAX", 0, u32::MAX, 1 << 20),
        ("offset 4095, u32::MAX: no overflow", 4095, u32::MAX, (1 << 20) + 1),
        ("offset u32::MAX, u32::MAX: no overflow", u32::MAX, u32::MAX, (2 * u32::MAX as u64).div_ceil(4096)),
    ];
    for &(name, offset, count, pages) in CASES {
        assert_eq!(pages_spanned(offset, count), pages, "{name}");
    }
}

#[test]
fn words_are_header_then_page_numbers() {
    let mut buf = GpaRangeBuf::new();
    buf.push(0x123, 0x1f00, &[0xa, 0xb, 0xc]).unwrap(); // 0x123 + 0x1f00 bytes: 3 pages
    buf.push(0, 1, &[0xd]).unwrap();
    let words: Vec<u64> = buf.words().iter().map(|w| w.get()).collect();
    assert_eq!(words, [0x1f00 | 0x123 << 32, 0xa, 0xb, 0xc, 1, 0xd]);
    assert_eq!(words[0], 0x0000_0123_0000_1f00);

    // The header word is the wire's GpaRangeHeader: byte_count first, little-endian.
    let bytes = buf.words().as_bytes();
    assert_eq!(&bytes[..8], &[0x00, 0x1f, 0, 0, 0x23, 0x01, 0, 0]);
    let header = GpaRangeHeader::read_from_bytes(&bytes[..8]).unwrap();
    assert_eq!((header.byte_count.get(), header.byte_offset.get()), (0x1f00, 0x123));
    assert_eq!(&bytes[8..16], &0xa_u64.to_le_bytes());
}

#[test]
fn push_contiguous_splits_an_address_into_offset_and_pages() {
    const CASES: &[(&str, u64, u32, u32, &[u64])] = &[
        ("one byte at 0", 0, 1, 0, &[0]),
        ("a page-aligned page", 5 * 4096, 4096, 0, &[5]),
        ("last byte of a page and the next", 5 * 4096 + 4095, 2, 4095, &[5, 6]),
        ("unaligned, three pages", 0x5_0010, 8192, 0x10, &[0x50, 0x51, 0x52]),
        ("top of the address space", u64::MAX - 4095 + 100, 100, 100, &[(1 << 52) - 1]),
    ];
    for &(name, gpa, count, offset, gpns) in CASES {
        let mut buf = GpaRangeBuf::new();
        buf.push_contiguous(gpa, count).unwrap();
        assert_eq!(contents(buf.ranges()), [(offset, count, gpns.to_vec())], "{name}");
        let mut by_hand = GpaRangeBuf::new();
        by_hand.push(offset, count, gpns).unwrap();
        assert_eq!(buf, by_hand, "{name}");
    }
    let mut buf = GpaRangeBuf::new();
    assert_eq!(buf.push_contiguous(0x1000, 0), Err(GpaRangeError::Empty));
    assert!(buf.is_empty());
}

#[test]
fn push_rejects_malformed_ranges_and_keeps_the_list() {
    let mut buf = GpaRangeBuf::new();
    buf.push(0, 10, &[1]).unwrap();
    let before = buf.clone();
    const CASES: &[(&str, u32, u32, &[u64], GpaRangeError)] = &[
        ("empty range", 0, 0, &[], GpaRangeError::Empty),
        ("empty range with a page", 10, 0, &[1], GpaRangeError::Empty),
        ("offset 4096", 4096, 1, &[1], GpaRangeError::OffsetTooLarge(4096)),
        ("offset u32::MAX", u32::MAX, 1, &[1], GpaRangeError::OffsetTooLarge(u32::MAX)),
        ("too few page numbers", 4095, 2, &[1], GpaRangeError::PageCount { expected: 2, given: 1 }),
        ("too many page numbers", 0, 4096, &[1, 2], GpaRangeError::PageCount { expected: 1, given: 2 }),
    ];
    for &(name, offset, count, gpns, error) in CASES {
        assert_eq!(buf.push(offset, count, gpns), Err(error), "{name}");
        assert_eq!(buf, before, "{name}: a refused range leaves the list as it was");
    }
    buf.clear();
    assert!(buf.is_empty());
    assert!(buf.words().is_empty());
    assert_eq!(buf, GpaRangeBuf::new());
}

#[test]
fn parse_ignores_words_after_the_last_range() {
    let buf = build(LISTS[6].1);
    let mut words = buf.words().to_vec();
    // Garbage that would be corrupt if it were read as a range.
    words.extend([U64::new(0), U64::new(u64::MAX), U64::new(0xdead_beef)]);
    let parsed = GpaRanges::parse(&words, 4).unwrap();
    assert_eq!(parsed.words(), buf.words());
    assert_eq!(GpaRangeBuf::from(parsed), buf);

    // Fewer ranges than the words hold: the rest is ignored too.
    let first_two = GpaRanges::parse(&words, 2).unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two.words().len(), 2 + 1 + 2);
    assert_eq!(contents(first_two), contents(buf.ranges())[..2]);

    let none = GpaRanges::parse(&words, 0).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.iter().count(), 0);
    assert!(none.words().is_empty());
}

#[test]
fn parse_rejects_malformed_lists() {
    let header = |count: u64, offset: u64| U64::new(count | offset << 32);
    let cases: Vec<(&str, Vec<U64>, u32, Field, u64)> = vec![
        ("no words for the range", vec![], 1, Field::RangeCount, 1),
        ("count beyond the words", vec![header(8, 0), U64::new(1)], 2, Field::RangeCount, 2),
        ("count u32::MAX", vec![header(8, 0), U64::new(1)], u32::MAX, Field::RangeCount, u32::MAX.into()),
        ("zero byte_count", vec![header(0, 0), U64::new(1)], 1, Field::GpaByteCount, 0),
        ("byte_offset 4096", vec![header(1, 4096), U64::new(1)], 1, Field::GpaByteOffset, 4096),
        (
            "byte_offset u32::MAX",
            vec![header(1, u32::MAX.into()), U64::new(1)],
            1,
            Field::GpaByteOffset,
            u32::MAX.into(),
        ),
        ("page numbers missing", vec![header(4097, 0), U64::new(1)], 1, Field::GpaPageCount, 2),
        ("huge range, few words", vec![header(u32::MAX.into(), 4095)], 1, Field::GpaPageCount, (1 << 20) + 1),
        (
            "second range bad",
            vec![header(8, 0), U64::new(1), header(8, 5000), U64::new(2)],
            2,
            Field::GpaByteOffset,
            5000,
        ),
    ];
    for (name, words, count, field, value) in cases {
        let error = GpaRanges::parse(&words, count).unwrap_err();
        assert_eq!((error.field, error.value), (field, value), "{name}");
    }
}

#[test]
fn a_list_longer_than_max_gpa_words_is_too_long() {
    // The descriptor's data_offset8 is a u16 of 8-byte words; the descriptor
    // and the GPA-direct header take three.
    assert_eq!(MAX_GPA_WORDS, 65535 - 3);

    // One range filling the limit exactly: a header and MAX_GPA_WORDS - 1 pages.
    let mut buf = GpaRangeBuf::new();
    buf.push_contiguous(0, (MAX_GPA_WORDS as u32 - 1) * 4096).unwrap();
    assert_eq!(buf.words().len(), MAX_GPA_WORDS);
    let full = buf.clone();
    assert_eq!(buf.push(0, 1, &[1]), Err(GpaRangeError::TooLong));
    assert_eq!(buf.push_contiguous(0, 1), Err(GpaRangeError::TooLong));
    assert_eq!(buf, full, "a refused range leaves the list as it was");

    // One word over, in one range.
    let mut buf = GpaRangeBuf::new();
    assert_eq!(buf.push_contiguous(0, MAX_GPA_WORDS as u32 * 4096), Err(GpaRangeError::TooLong));
    let gpns: Vec<u64> = (0..MAX_GPA_WORDS as u64).collect();
    assert_eq!(buf.push(0, MAX_GPA_WORDS as u32 * 4096, &gpns), Err(GpaRangeError::TooLong));
    // Far over: the page count alone is refused without building the list.
    assert_eq!(buf.push_contiguous(4095, u32::MAX), Err(GpaRangeError::TooLong));
    assert!(buf.is_empty());

    // One word over, across many small ranges.
    let mut buf = GpaRangeBuf::new();
    for i in 0..MAX_GPA_WORDS / 2 {
        buf.push(0, 1, &[i as u64]).unwrap();
    }
    assert_eq!(buf.words().len(), MAX_GPA_WORDS);
    assert_eq!(buf.push(0, 1, &[0]), Err(GpaRangeError::TooLong));
    assert_eq!(buf.len(), MAX_GPA_WORDS / 2);
}

// ---------------------------------------------------------------------------
// Through a ring.
// ---------------------------------------------------------------------------

#[test]
fn a_gpa_direct_packet_reads_back_equal() {
    let mut lists: Vec<(String, GpaRangeBuf)> =
        LISTS.iter().map(|(name, ranges)| (name.to_string(), build(ranges))).collect();
    lists.push(("40 ranges".into(), many(40)));
    let mem = FlatRingMem::new(4 * PAGE).unwrap();
    // Start near the end so packets wrap, headers and range lists included.
    let (mut writer, mut reader) = endpoints_at(&mem, (4 * PAGE - 40) as u32);
    for round in 0..3 {
        for (i, (name, buf)) in lists.iter().enumerate() {
            let name = format!("{name}, round {round}");
            let id = (round * 100 + i) as u64;
            let payload: Vec<u8> = (0..(i * 13) % 50).map(|b| b as u8 ^ 0x5a).collect();
            let packet = OutgoingPacket::gpa_direct(id, buf.ranges()).with_completion_requested();
            let pages = buf.ranges().iter().map(|r| r.gpns.len()).sum();
            assert_eq!(packet.size(payload.len()), gpa_direct_size(buf.len(), pages, payload.len()), "{name}");
            let start = writer.write_index();
            writer.write(&packet, &[&payload]).unwrap();

            let mut batch = reader.read_batch();
            let got = batch.next().unwrap().unwrap();
            assert_eq!(got.offset, start, "{name}");
            assert_eq!(got.transaction_id, id, "{name}");
            assert!(got.completion_requested, "{name}");
            assert_eq!(batch.owned_kind(&got), Ok(OwnedPacketKind::GpaDirect(buf.clone())), "{name}");
            let mut bytes = vec![0; got.payload.len()];
            batch.read_payload(got.payload, 0, &mut bytes).unwrap();
            assert_eq!(&bytes[..payload.len()], &payload[..], "{name}");
            let _ = batch.commit();
        }
    }
}

#[test]
fn a_gpa_direct_packet_with_the_longest_list_fits_a_large_ring() {
    let mem = FlatRingMem::new(1 << 20).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    let mut buf = GpaRangeBuf::new();
    buf.push_contiguous(0x10_0000_0000, (MAX_GPA_WORDS as u32 - 1) * 4096).unwrap();
    let packet = OutgoingPacket::gpa_direct(7, buf.ranges());
    assert_eq!(packet.size(0), MAX_PACKET_SIZE, "descriptor + header + words + footer");
    assert_eq!(
        writer.write(&packet, &[b"x"]),
        Err(WriteError::TooLarge { needed: MAX_PACKET_SIZE + 8, max: MAX_PACKET_SIZE })
    );
    writer.write(&packet, &[]).unwrap();
    let mut descriptor = [0; 6];
    mem.read_data(0, &mut descriptor);
    assert_eq!(u16::from_le_bytes([descriptor[2], descriptor[3]]), u16::MAX, "data_offset8");
    assert_eq!(u16::from_le_bytes([descriptor[4], descriptor[5]]), u16::MAX, "length8");
    let mut batch = reader.read_batch();
    let got = batch.next().unwrap().unwrap();
    assert_eq!(batch.owned_kind(&got), Ok(OwnedPacketKind::GpaDirect(buf)));
    assert!(got.payload.is_empty());
}

#[test]
fn the_writer_never_sends_a_gpa_direct_packet_its_reader_rejects() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0);
    let empty = GpaRangeBuf::new();
    // The wire rules: a GPA-direct packet carries at least one range: the
    // writer refuses, and nothing reaches the reader.
    let refused = writer.write(&OutgoingPacket::gpa_direct(1, empty.ranges()), &[b"payload"]);
    assert_eq!(refused, Err(WriteError::NoGpaRange));
    assert_eq!(reader.read_batch().next(), Ok(None));
}
