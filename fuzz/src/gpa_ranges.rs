//! `gpa_ranges`: GPA range lists parsed and built, both ways round.
//!
//! # Input layout
//!
//! All integers little-endian; a record cut short by the end of the input
//! reads its missing bytes as zero. Byte 0 picks the mode: even = parse,
//! odd = build.
//!
//! **Parse** (byte 0 even): bytes 1..5 are the range count (`u32`), the rest
//! the words (`u64` each; a trailing partial word is dropped).
//! `GpaRanges::parse(words, count)` is run and checked against
//! [`oracle::parse_gpa`]: same verdict, a field the bad range breaks; it
//! allocates nothing (counted by [`CountingAlloc`](crate::alloc_count::CountingAlloc))
//! and its work is bounded by the words (a sound list has at most
//! `words / 2` ranges whatever the count says). A sound list rebuilt with
//! `GpaRangeBuf::push`, range by range, gives back the same words.
//!
//! **Build** (byte 0 odd): records until the input ends, each a tag byte
//! then, for an even tag, `push`: `byte_offset: u16`, `byte_count: u32`,
//! `n: u8`, then `n` page numbers (`u64`); for an odd tag,
//! `push_contiguous`: `gpa: u64`, `byte_count: u32` (only its low 16 bits
//! unless the tag is `0xff`, so that most lists stay small and quick to check). Each call must succeed
//! exactly when the rules allow it (non-empty, offset below 4096, one page
//! number per page spanned, at most `MAX_GPA_WORDS` words) and fail with an
//! error naming a broken rule otherwise. The list built must be word for
//! word the one the rules describe, parse back to itself, and survive a trip
//! through a GPA-direct packet in a ring.

use crate::alloc_count::count_allocations;
use crate::oracle::{self, GpaListModel, GpaRangeModel};
use crate::{take_u16, take_u32, take_u64, take_u8};
use vmbus_ring::wire::U64;
use vmbus_ring::{
    gpa_direct_size, pages_spanned, FlatRingMem, GpaRangeBuf, GpaRangeError, GpaRanges, IncomingRing, OutgoingPacket,
    OutgoingRing, OwnedPacketKind, WriteError, MAX_GPA_WORDS,
};
use zerocopy::FromBytes;

/// Byte 0 of a build-mode input.
pub const BUILD: u8 = 1;

/// The fuzz target's body.
pub fn run(bytes: &[u8]) {
    match bytes.split_first() {
        Some((mode, rest)) if mode & 1 == BUILD => build(rest),
        Some((_, rest)) => parse(rest),
        None => {}
    }
}

/// A parse-mode input.
pub fn encode_parse(count: u32, words: &[u64]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend(count.to_le_bytes());
    words.iter().for_each(|word| bytes.extend(word.to_le_bytes()));
    bytes
}

/// One build-mode call.
#[derive(Debug, Clone)]
pub enum BuildStep {
    /// `push(byte_offset, byte_count, gpns)`.
    Push {
        /// Offset into the first page.
        byte_offset: u16,
        /// Length in bytes.
        byte_count: u32,
        /// Page numbers (at most 255).
        gpns: Vec<u64>,
    },
    /// `push_contiguous(gpa, byte_count)`.
    Contiguous {
        /// Guest physical address of the first byte.
        gpa: u64,
        /// Length in bytes.
        byte_count: u32,
    },
}

/// A build-mode input.
pub fn encode_build(steps: &[BuildStep]) -> Vec<u8> {
    let mut bytes = vec![BUILD];
    for step in steps {
        match step {
            BuildStep::Push { byte_offset, byte_count, gpns } => {
                bytes.push(0);
                bytes.extend(byte_offset.to_le_bytes());
                bytes.extend(byte_count.to_le_bytes());
                bytes.push(u8::try_from(gpns.len()).expect("at most 255 page numbers a push"));
                gpns.iter().for_each(|gpn| bytes.extend(gpn.to_le_bytes()));
            }
            BuildStep::Contiguous { gpa, byte_count } => {
                bytes.push(if *byte_count > 0xffff { 0xff } else { 1 });
                bytes.extend(gpa.to_le_bytes());
                bytes.extend(byte_count.to_le_bytes());
            }
        }
    }
    bytes
}

fn parse(mut input: &[u8]) {
    let count = take_u32(&mut input);
    let whole = input.len() / 8 * 8;
    let words = <[U64]>::ref_from_bytes(&input[..whole]).expect("U64 is unaligned");

    let (parsed, allocations) = count_allocations(|| GpaRanges::parse(words, count));
    if let Some(allocations) = allocations {
        assert_eq!(allocations, 0, "GpaRanges::parse allocated");
    }

    let plain: Vec<u64> = words.iter().map(|word| word.get()).collect();
    match (oracle::parse_gpa(&plain, count), parsed) {
        (Ok(model), Ok(ranges)) => {
            assert!(count as usize <= words.len() / 2, "{count} ranges in {} words", words.len());
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges.is_empty(), count == 0);
            assert_eq!(ranges.words(), &words[..model.used_words]);
            check_ranges(ranges, &model);
            let rebuilt = model.to_buf();
            assert_eq!(rebuilt.words(), ranges.words(), "push did not rebuild the words parsed");
            assert_eq!(rebuilt.len(), ranges.len());
            assert_eq!(GpaRangeBuf::from(ranges), rebuilt);
        }
        (Err(fields), Err(error)) => assert!(fields.contains(&error.field), "parse blames {error}, rules {fields:?}"),
        (model, parsed) => panic!("count {count}, {} words: rules {model:?}, parse {parsed:?}", words.len()),
    }
}

/// `ranges` iterates to exactly the model's ranges.
fn check_ranges(ranges: GpaRanges<'_>, model: &GpaListModel) {
    let mut iter = ranges.iter();
    for expected in &model.ranges {
        let range = iter.next().expect("fewer ranges than counted");
        assert_eq!((range.byte_offset, range.byte_count), (expected.byte_offset, expected.byte_count));
        assert_eq!(range.page_numbers().collect::<Vec<_>>(), expected.gpns);
        assert_eq!(range.gpns.len() as u64, pages_spanned(range.byte_offset, range.byte_count));
    }
    assert!(iter.next().is_none(), "more ranges than counted");
}

fn build(mut input: &[u8]) {
    let mut buf = GpaRangeBuf::new();
    let mut model = GpaListModel { used_words: 0, ranges: Vec::new() };
    while !input.is_empty() {
        let tag = take_u8(&mut input);
        let (byte_offset, byte_count, gpns, result) = if tag & 1 == 0 {
            let byte_offset = u32::from(take_u16(&mut input));
            let byte_count = take_u32(&mut input);
            let n = usize::from(take_u8(&mut input));
            let gpns: Vec<u64> = (0..n).map(|_| take_u64(&mut input)).collect();
            let result = buf.push(byte_offset, byte_count, &gpns);
            (byte_offset, byte_count, gpns, result)
        } else {
            let gpa = take_u64(&mut input);
            let byte_count = take_u32(&mut input);
            // Lists of tens of thousands of words are slow to check: only
            // tag 0xff takes the count whole, so most lists stay small.
            let byte_count = if tag == 0xff { byte_count } else { byte_count & 0xffff };
            let result = buf.push_contiguous(gpa, byte_count);
            let byte_offset = (gpa % 4096) as u32;
            let pages = pages_spanned(byte_offset, byte_count);
            // The page numbers the call must have used; a range of more pages
            // than any list may hold must be refused as too long.
            let gpns: Vec<u64> = if pages as usize <= MAX_GPA_WORDS {
                (0..pages).map(|page| gpa / 4096 + page).collect()
            } else {
                Vec::new()
            };
            let result = match result {
                Err(GpaRangeError::TooLong) if pages as usize > MAX_GPA_WORDS => {
                    assert_eq!(buf.len(), model.ranges.len());
                    continue;
                }
                other => other,
            };
            (byte_offset, byte_count, gpns, result)
        };
        let pages = pages_spanned(byte_offset, byte_count);
        let mut broken = Vec::new();
        if byte_count == 0 {
            broken.push(GpaRangeError::Empty);
        }
        if byte_offset >= 4096 {
            broken.push(GpaRangeError::OffsetTooLarge(byte_offset));
        }
        if pages != gpns.len() as u64 {
            broken.push(GpaRangeError::PageCount { expected: pages, given: gpns.len() });
        }
        if model.used_words + 1 + gpns.len() > MAX_GPA_WORDS {
            broken.push(GpaRangeError::TooLong);
        }
        match result {
            Ok(()) => {
                assert!(broken.is_empty(), "push accepted a range breaking {broken:?}");
                model.used_words += 1 + gpns.len();
                model.ranges.push(GpaRangeModel { byte_offset, byte_count, gpns });
            }
            Err(error) => assert!(broken.contains(&error), "push refused with {error:?}, rules {broken:?}"),
        }
        assert_eq!(buf.len(), model.ranges.len());
    }

    // The list is word for word the rules' list, and parses back to itself.
    let words: Vec<u64> = buf.words().iter().map(|word| word.get()).collect();
    assert_eq!(words, model.words());
    let count = buf.len() as u32;
    let ranges = GpaRanges::parse(buf.words(), count).expect("a built list parses");
    assert_eq!(ranges, buf.ranges());
    check_ranges(ranges, &model);
    assert!(GpaRanges::parse(buf.words(), count + 1).is_err(), "parsed a range that is not there");
    assert_eq!(GpaRangeBuf::from(ranges), buf);

    // Through a ring: a GPA-direct packet carries the list intact.
    let needed = gpa_direct_size(buf.len(), words.len() - buf.len(), 0);
    let data_len = (needed + 8).next_multiple_of(4096);
    if data_len > 4 * 4096 {
        return; // long lists are the parse side's business; keep executions quick
    }
    let mem = FlatRingMem::new(data_len).unwrap();
    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    match writer.write(&OutgoingPacket::gpa_direct(7, buf.ranges()), &[]) {
        Err(WriteError::NoGpaRange) => assert!(buf.is_empty()),
        Err(WriteError::TooLarge { .. }) => assert!(needed > vmbus_ring::MAX_PACKET_SIZE),
        Err(error) => panic!("writing {needed} bytes to a {data_len}-byte ring: {error}"),
        Ok(_) => {
            let mut reader = IncomingRing::new(mem).unwrap();
            let mut batch = reader.read_batch();
            let packet = batch.next().expect("reading the GPA-direct packet back").expect("a packet");
            assert_eq!(batch.owned_kind(&packet), Ok(OwnedPacketKind::GpaDirect(buf)));
            let _ = batch.commit();
        }
    }
}
