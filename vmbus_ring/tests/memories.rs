//! The ring memory kinds are interchangeable: flat, paged, mapped and
//! double-mapped memories hold the same bytes after the same operations,
//! copy into and out of the data area with the same single wrap, reject bad
//! shapes with the right error, and (on Linux) two mappings of one memfd
//! share a ring.

mod common;

use common::{ring_image, AnyMem, Rng, PAGE};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use vmbus_ring::{
    FlatRingMem, GpaRangeBuf, IncomingPacket, IncomingRing, MappedRingMem, MappingLayout, OpenError, OutgoingKind,
    OutgoingPacket, OutgoingRing, PacketKind, PagedRingMem, ReadError, RingMem, RingPages, SharedRegion,
    TransferPageRange, WriteError,
};

/// Panics naming the first byte where two ring images differ.
fn assert_same_image(ctx: &str, name: &str, image: &[u8], reference: &[u8]) {
    assert_eq!(image.len(), reference.len(), "{ctx}: {name} image length");
    if let Some(at) = image.iter().zip(reference).position(|(a, b)| a != b) {
        let (area, offset) = if at < PAGE { ("control page", at) } else { ("data area", at - PAGE) };
        panic!(
            "{ctx}: {name} differs from the flat ring at {area} offset {offset:#x}: {:#04x} instead of {:#04x}",
            image[at], reference[at]
        );
    }
}

fn assert_all_same_images(ctx: &str, mems: &[(&'static str, AnyMem)]) {
    let reference = ring_image(&mems[0].1);
    for (name, mem) in &mems[1..] {
        assert_same_image(ctx, name, &ring_image(mem), &reference);
    }
}

// ---------------------------------------------------------------------------
// The same operations give the same ring images.

#[derive(Debug, Clone)]
struct PacketSpec {
    /// 0 in-band, 1 completion, 2 transfer pages, 3 GPA direct.
    shape: usize,
    transaction_id: u64,
    completion_requested: bool,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    /// One write batch, committed.
    Write(Vec<PacketSpec>),
    /// Read up to `count` packets, then commit or revert.
    Read {
        count: usize,
        commit: bool,
    },
    Mask(bool),
    PendingSendSize(usize),
    ClearPendingSendSize,
}

/// What an operation returned; must be the same for every memory kind.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Wrote { written: usize, error: Option<WriteError>, signal: bool },
    Read { packets: Vec<(IncomingPacket, Vec<u8>)>, stop: Option<ReadError>, signal: Option<bool> },
    Pending(Result<bool, WriteError>),
    Done,
}

struct Rig {
    writer: OutgoingRing<AnyMem>,
    reader: IncomingRing<AnyMem>,
}

struct Headers {
    transfer: Vec<TransferPageRange>,
    gpa: GpaRangeBuf,
}

impl Headers {
    fn packet(&self, spec: &PacketSpec) -> OutgoingPacket<'_> {
        let kind = match spec.shape {
            0 => OutgoingKind::InBand,
            1 => OutgoingKind::Completion,
            2 => OutgoingKind::TransferPages { set_id: 7, sender_owns_set: true, ranges: &self.transfer },
            _ => OutgoingKind::GpaDirect(self.gpa.ranges()),
        };
        OutgoingPacket { transaction_id: spec.transaction_id, completion_requested: spec.completion_requested, kind }
    }
}

fn shape_of(kind: &PacketKind) -> usize {
    match kind {
        PacketKind::InBand => 0,
        PacketKind::Completion => 1,
        PacketKind::TransferPages(_) => 2,
        PacketKind::GpaDirect(_) => 3,
    }
}

fn apply(rig: &mut Rig, op: &Op, headers: &Headers) -> Outcome {
    match op {
        Op::Write(specs) => {
            let mut batch = rig.writer.write_batch();
            let mut error = None;
            for spec in specs {
                if let Err(e) = batch.write(&headers.packet(spec), &[spec.payload.as_slice()]) {
                    error = Some(e);
                    break;
                }
            }
            let written = batch.packets();
            Outcome::Wrote { written, error, signal: batch.commit() }
        }
        Op::Read { count, commit } => {
            let mut batch = rig.reader.read_batch();
            let mut packets = Vec::new();
            let mut stop = None;
            for _ in 0..*count {
                match batch.next() {
                    Ok(Some(packet)) => {
                        let mut payload = vec![0; packet.payload.len()];
                        batch.read_payload(packet.payload, 0, &mut payload).unwrap();
                        packets.push((packet, payload));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
            }
            let signal = if *commit {
                Some(batch.commit())
            } else {
                batch.revert();
                None
            };
            Outcome::Read { packets, stop, signal }
        }
        Op::Mask(masked) => {
            rig.reader.set_interrupt_mask(*masked);
            Outcome::Done
        }
        Op::PendingSendSize(size) => Outcome::Pending(rig.writer.set_pending_send_size(*size)),
        Op::ClearPendingSendSize => {
            rig.writer.clear_pending_send_size();
            Outcome::Done
        }
    }
}

/// A random operation; `write_percent` of them are write batches, and the
/// rest mostly reads, so phases can fill and drain the ring.
fn random_op(rng: &mut Rng, next_id: &mut u64, last: Option<&Outcome>, data_len: usize, write_percent: usize) -> Op {
    let roll = rng.below(100);
    if roll < write_percent {
        let specs = (0..1 + rng.below(4))
            .map(|_| {
                *next_id += 1;
                let len = if rng.percent(20) { 0 } else { rng.below(400) };
                PacketSpec {
                    shape: rng.below(4),
                    transaction_id: *next_id,
                    completion_requested: rng.percent(50),
                    payload: rng.bytes(len),
                }
            })
            .collect();
        Op::Write(specs)
    } else {
        match rng.below(100) {
            0..=64 => Op::Read { count: 1 + rng.below(6), commit: rng.percent(85) },
            65..=79 => Op::Mask(rng.percent(50)),
            80..=92 => match last {
                // What a blocked writer does: ask for the space it lacked.
                Some(Outcome::Wrote { error: Some(WriteError::Full { needed, .. }), .. }) => {
                    Op::PendingSendSize(*needed)
                }
                // Odd sizes too, as some peers ask for `ring size - 1`.
                _ => Op::PendingSendSize(1 + rng.below(data_len - 8)),
            },
            _ => Op::ClearPendingSendSize,
        }
    }
}

#[test]
fn every_memory_kind_produces_the_same_ring_image() {
    let data_len = 2 * PAGE;
    let mut gpa = GpaRangeBuf::new();
    gpa.push(4000, 5000, &[0x11, 0x22, 0x33]).unwrap();
    gpa.push(0, 1, &[0x44]).unwrap();
    let headers = Headers { transfer: vec![TransferPageRange::new(10, 20), TransferPageRange::new(4096, 0)], gpa };
    let mems = AnyMem::all(data_len);
    let mut rigs: Vec<Rig> = mems
        .iter()
        .map(|(_, mem)| Rig {
            writer: OutgoingRing::new(mem.clone()).unwrap(),
            reader: IncomingRing::new(mem.clone()).unwrap(),
        })
        .collect();
    assert_all_same_images("opened", &mems);

    let mut rng = Rng::new(0x5eed_1234_abcd);
    let mut next_id = 0;
    let mut last = None;
    let mut expected = VecDeque::new();
    let mut bytes_written = 0;
    let (mut mask, mut pending) = (0, 0);
    for step in 0..400 {
        // Alternate phases that fill the ring and phases that drain it.
        let write_percent = if (step / 50) % 2 == 0 { 60 } else { 25 };
        let op = random_op(&mut rng, &mut next_id, last.as_ref(), data_len, write_percent);
        let ctx = format!("step {step}: {op:?}");
        let outcome = apply(&mut rigs[0], &op, &headers);
        for (rig, (name, _)) in rigs.iter_mut().zip(&mems).skip(1) {
            assert_eq!(apply(rig, &op, &headers), outcome, "{ctx}: {name} returned something else");
        }
        assert_all_same_images(&ctx, &mems);

        // The control words hold what the operations left there. A pending
        // send size may be stored rounded up to a multiple of 8.
        match (&op, &outcome) {
            (Op::Mask(masked), _) => mask = u32::from(*masked),
            (Op::PendingSendSize(size), Outcome::Pending(Ok(false))) => pending = *size as u32,
            (Op::PendingSendSize(_), Outcome::Pending(Ok(true))) | (Op::ClearPendingSendSize, _) => pending = 0,
            _ => {}
        }
        let state = rigs[0].writer.state();
        assert_eq!(state.interrupt_mask, mask, "{ctx}");
        assert!(
            (pending..pending.next_multiple_of(8) + 1).contains(&state.pending_send_size),
            "{ctx}: pending send size {} for a request of {pending}",
            state.pending_send_size
        );
        assert_eq!((state.write_index, state.read_index), (rigs[0].writer.write_index(), rigs[0].reader.read_index()));

        // The flat ring (and so every ring) delivers what was written, in order.
        match (&op, &outcome) {
            (Op::Write(specs), Outcome::Wrote { written, .. }) => {
                for spec in &specs[..*written] {
                    bytes_written += headers.packet(spec).size(spec.payload.len());
                    expected.push_back(spec.clone());
                }
            }
            (Op::Read { commit, .. }, Outcome::Read { packets, stop, .. }) => {
                assert_eq!(*stop, None, "{ctx}");
                for ((packet, payload), spec) in packets.iter().zip(&expected) {
                    assert_eq!(packet.transaction_id, spec.transaction_id, "{ctx}");
                    assert_eq!(shape_of(&packet.kind), spec.shape, "{ctx}: {:?}", packet.kind);
                    assert_eq!(packet.completion_requested, spec.completion_requested, "{ctx}");
                    assert_eq!(&payload[..spec.payload.len()], &spec.payload[..], "{ctx}");
                    assert!(payload[spec.payload.len()..].iter().all(|&b| b == 0), "{ctx}: padding");
                }
                assert!(packets.len() <= expected.len(), "{ctx}: read more packets than were written");
                if *commit {
                    expected.drain(..packets.len());
                }
            }
            _ => {}
        }
        last = Some(outcome);
    }
    assert!(bytes_written > 3 * data_len, "the script must wrap the ring several times: {bytes_written} bytes");
}

// ---------------------------------------------------------------------------
// Raw data-area copies.

#[test]
fn data_copies_wrap_exactly_once_and_agree_across_kinds() {
    let data_len = 3 * PAGE;
    let mems = AnyMem::all(data_len);
    let mut model = vec![0u8; data_len];
    let mut rng = Rng::new(0xc0ff_ee00_1234);
    let edge_cases = [
        (0, 0),
        (0, data_len),
        (1, data_len),
        (data_len - 1, data_len),
        (data_len - 1, 1),
        (data_len - 1, 2),
        (PAGE - 1, 2),
        (2 * PAGE - 3, PAGE + 6),
    ];
    for step in 0..600 {
        let (offset, len) = edge_cases.get(step).copied().unwrap_or_else(|| {
            let offset = rng.below(data_len);
            // Mostly short copies, so wraps are common but not universal.
            let len = if rng.percent(25) { rng.below(data_len + 1) } else { rng.below(600) };
            (offset, len)
        });
        let zero = step >= edge_cases.len() && rng.percent(20);
        let bytes = if zero { vec![0; len] } else { rng.bytes(len) };
        let ctx = format!("step {step}: {} {len} bytes at {offset:#x}", if zero { "zero" } else { "write" });
        for (_, mem) in &mems {
            if zero {
                mem.zero_data(offset, len);
            } else {
                mem.write_data(offset, &bytes);
            }
        }
        for (i, &byte) in bytes.iter().enumerate() {
            model[(offset + i) % data_len] = byte;
        }

        // A few random reads, including ones that wrap, must match the model.
        for _ in 0..3 {
            let at = rng.below(data_len);
            let len = rng.below(data_len + 1);
            let expected: Vec<u8> = (0..len).map(|i| model[(at + i) % data_len]).collect();
            for (name, mem) in &mems {
                let mut got = vec![0xa5; len];
                mem.read_data(at, &mut got);
                assert!(got == expected, "{ctx}: {name} read of {len} bytes at {at:#x} differs from the model");
            }
        }
        // And so must the whole data area, through every kind.
        for (name, mem) in &mems {
            let image = ring_image(mem);
            assert_same_image(&ctx, name, &image[PAGE..], &model);
        }
    }
}

/// Copies of up to 64 bytes are inline, with a different sequence of moves
/// for each size class (single bytes, two 4-, 8- or 16-byte moves, four
/// 16-byte moves); longer ones run a vector loop with an overlapping tail,
/// and from 4 KiB on a string move. Each length must copy exactly its
/// bytes, at offsets of every alignment, and touch none around them.
#[test]
fn copies_of_every_size_class_copy_exactly_their_bytes() {
    let data_len = 4 * PAGE;
    let lengths = (0..=80).chain([127, 128, 129, 191, 1500, 4095, 4096, 4097, 9000]);
    let mut rng = Rng::new(0x5107_c0de);
    for (name, mem) in AnyMem::all(data_len) {
        for len in lengths.clone() {
            for offset in [64, 64 + 1, 64 + 3, 64 + 7, 64 + 13] {
                let ctx = format!("{name}: {len} bytes at {offset}");
                let span = offset + len + 64;
                let background = rng.bytes(span);
                mem.write_data(0, &background);
                let bytes = rng.bytes(len);
                mem.write_data(offset, &bytes);
                let mut expected = background.clone();
                expected[offset..offset + len].copy_from_slice(&bytes);
                let mut image = vec![0; span];
                mem.read_data(0, &mut image);
                assert!(image == expected, "{ctx}: the area around the copy changed, or the copy is wrong");
                let mut back = vec![0xa5; len + 2];
                mem.read_data(offset, &mut back[1..=len]);
                assert!(back[1..=len] == bytes[..], "{ctx}: read back");
                assert_eq!((back[0], back[len + 1]), (0xa5, 0xa5), "{ctx}: the read wrote outside its buffer");
            }
        }
    }
}

/// Descriptor, header and footer words go through the word accessors; they
/// must store the same little-endian bytes a byte copy would, at every word
/// of the data area, the last one included, and read back what was stored.
#[test]
fn data_words_are_little_endian_bytes_in_every_memory_kind() {
    let data_len = 2 * PAGE;
    for (name, mem) in AnyMem::all(data_len) {
        for offset in (0..data_len).step_by(8) {
            let value = 0x0102_0304_0506_0708_u64.wrapping_mul(offset as u64 + 1);
            mem.write_data_word(offset, value);
            let mut bytes = [0; 8];
            mem.read_data(offset, &mut bytes);
            assert_eq!(bytes, value.to_le_bytes(), "{name}: word at {offset} as bytes");
            mem.write_data(offset, &(!value).to_le_bytes());
            assert_eq!(mem.read_data_word(offset), !value, "{name}: bytes at {offset} as a word");
        }
    }
}

/// A packet's descriptor is read as a word pair and its descriptor and
/// footer are written as a frame: in every memory kind, at every word of the
/// data area, a pair is the word there and the one after it (the first, after
/// the last), and a frame writes its three words and no other byte.
#[test]
fn word_pairs_and_frames_are_the_words_they_name_in_every_memory_kind() {
    let data_len = 2 * PAGE;
    let mut rng = Rng::new(0x5eed);
    for (name, mem) in AnyMem::all(data_len) {
        let mut expected = rng.bytes(data_len);
        mem.write_data(0, &expected);
        let word_at = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        for offset in (0..data_len).step_by(8) {
            let next = (offset + 8) % data_len;
            let pair = [word_at(&expected, offset), word_at(&expected, next)];
            assert_eq!(mem.read_data_word_pair(offset), pair, "{name}: pair at {offset}");
        }
        for step in 0..200 {
            let offset = rng.below(data_len / 8 - 1) * 8;
            let len = (2 + rng.below((data_len - offset) / 8 - 1)) * 8;
            let [first, second, last] = [rng.next(), rng.next(), rng.next()];
            mem.write_frame_words(offset, len, [first, second], last);
            expected[offset..offset + 8].copy_from_slice(&first.to_le_bytes());
            expected[offset + 8..offset + 16].copy_from_slice(&second.to_le_bytes());
            expected[offset + len - 8..offset + len].copy_from_slice(&last.to_le_bytes());
            assert_same_image(&format!("step {step}: frame of {len} at {offset}"), name, &data_area(&mem), &expected);
        }
    }
}

/// The data area's bytes, read in one copy.
fn data_area(mem: &AnyMem) -> Vec<u8> {
    let mut bytes = vec![0; mem.data_len()];
    mem.read_data(0, &mut bytes);
    bytes
}

#[test]
fn control_page_copies_agree_across_kinds() {
    let mems = AnyMem::all(PAGE);
    let mut rng = Rng::new(0xabcdef);
    for step in 0..100 {
        let offset = rng.below(PAGE + 1);
        let len = rng.below(PAGE - offset + 1);
        let bytes = rng.bytes(len);
        for (_, mem) in &mems {
            mem.write_control(offset, &bytes);
        }
        for (name, mem) in &mems {
            let mut got = vec![0; bytes.len()];
            mem.read_control(offset, &mut got);
            assert!(got == bytes, "step {step}: {name} control bytes at {offset:#x}");
        }
        assert_all_same_images(&format!("step {step}"), &mems);
    }
}

/// A named data-area access, given the memory and its data-area length.
type OutOfBounds = (&'static str, fn(&AnyMem, usize));

#[test]
fn out_of_bounds_data_copies_panic_and_write_nothing() {
    let data_len = 2 * PAGE;
    for (name, mem) in AnyMem::all(data_len) {
        mem.write_data(0, &vec![0x5a; data_len]);
        let before = ring_image(&mem);
        let attempts: [OutOfBounds; 15] = [
            ("read at the end", |mem, len| mem.read_data(len, &mut [0; 1])),
            ("read longer than the area", |mem, len| mem.read_data(0, &mut vec![0; len + 1])),
            ("write at the end", |mem, len| mem.write_data(len, &[1])),
            ("write wrapping twice", |mem, len| mem.write_data(8, &vec![1; len + 1])),
            ("zero longer than the area", |mem, len| mem.zero_data(len - 1, len + 1)),
            ("word read at the end", |mem, len| {
                let _ = mem.read_data_word(len);
            }),
            ("word read off 8-byte alignment", |mem, _| {
                let _ = mem.read_data_word(4);
            }),
            ("word write at the end", |mem, len| mem.write_data_word(len, 1)),
            ("word write off 8-byte alignment", |mem, len| mem.write_data_word(len - 12, 1)),
            ("word pair read at the end", |mem, len| {
                let _ = mem.read_data_word_pair(len);
            }),
            ("word pair read off 8-byte alignment", |mem, len| {
                let _ = mem.read_data_word_pair(len - 12);
            }),
            ("frame that wraps", |mem, len| mem.write_frame_words(len - 16, 24, [1, 2], 3)),
            ("frame shorter than two words", |mem, _| mem.write_frame_words(0, 8, [1, 2], 3)),
            ("frame of a length off 8-byte alignment", |mem, _| mem.write_frame_words(0, 20, [1, 2], 3)),
            ("frame off 8-byte alignment", |mem, _| mem.write_frame_words(4, 24, [1, 2], 3)),
        ];
        for (what, attempt) in attempts {
            let result = catch_unwind(AssertUnwindSafe(|| attempt(&mem, data_len)));
            assert!(result.is_err(), "{name}: {what} must panic");
            assert_same_image(what, name, &ring_image(&mem), &before);
        }
    }
}

// ---------------------------------------------------------------------------
// Construction errors.

#[test]
fn flat_memory_rejects_invalid_sizes() {
    for data_len in [0, 100, 4095, 4097, 3 * PAGE + 8] {
        assert_eq!(FlatRingMem::new(data_len).unwrap_err(), OpenError::InvalidSize { data_len }, "{data_len}");
    }
    assert_eq!(FlatRingMem::new(3 * PAGE).unwrap().data_len(), 3 * PAGE);
}

#[test]
fn mapped_memory_rejects_a_region_of_the_wrong_length() {
    let single = |len| MappedRingMem::new(SharedRegion::new_zeroed(len), MappingLayout::Single);
    let double = |len| MappedRingMem::new(SharedRegion::new_zeroed(len), MappingLayout::Double);
    let invalid = |data_len| Err(OpenError::InvalidSize { data_len });

    // Single: the region is the control page plus the data area.
    assert_eq!(single(100).unwrap_err(), OpenError::InvalidSize { data_len: 0 }, "shorter than a control page");
    assert_eq!(single(PAGE).unwrap_err(), OpenError::InvalidSize { data_len: 0 }, "no data area");
    assert_eq!(single(PAGE + 100).map(|m| m.data_len()), invalid(100));
    assert_eq!(single(PAGE + PAGE + 8).map(|m| m.data_len()), invalid(PAGE + 8));
    let mem = single(PAGE + 2 * PAGE).unwrap();
    assert_eq!((mem.data_len(), mem.layout()), (2 * PAGE, MappingLayout::Single));

    // Double: the region is the control page plus the data area twice.
    assert_eq!(double(PAGE).unwrap_err(), OpenError::InvalidSize { data_len: 0 }, "no data area");
    assert_eq!(double(PAGE + PAGE).map(|m| m.data_len()), invalid(PAGE / 2), "one page is half a page twice");
    assert_eq!(double(PAGE + 3 * PAGE).map(|m| m.data_len()), invalid(3 * PAGE / 2), "an odd page count");
    assert!(
        matches!(double(PAGE + 2 * PAGE + 1), Err(OpenError::InvalidSize { .. })),
        "an odd byte count cannot be two equal copies"
    );
    let mem = double(PAGE + 2 * 2 * PAGE).unwrap();
    assert_eq!((mem.data_len(), mem.layout()), (2 * PAGE, MappingLayout::Double));
}

/// Ring pages of chosen lengths, each a fresh zeroed region.
struct SizedPages {
    control_len: usize,
    data_lens: Vec<usize>,
}

impl RingPages for SizedPages {
    fn control_page(&self) -> SharedRegion {
        SharedRegion::new_zeroed(self.control_len)
    }
    fn data_page_count(&self) -> usize {
        self.data_lens.len()
    }
    fn data_page(&self, index: usize) -> SharedRegion {
        SharedRegion::new_zeroed(self.data_lens[index])
    }
}

#[test]
fn paged_memory_rejects_missing_or_short_pages() {
    let pages = |control_len, data_lens: &[usize]| {
        PagedRingMem::new(&SizedPages { control_len, data_lens: data_lens.to_vec() }).map(|mem| mem.data_len())
    };
    assert_eq!(pages(PAGE, &[]), Err(OpenError::InvalidSize { data_len: 0 }), "no data pages");
    assert_eq!(pages(PAGE - 1, &[PAGE]), Err(OpenError::PageTooSmall { index: 0, len: PAGE - 1 }), "short control");
    // Data page `i` is ring page `i + 1`.
    assert_eq!(pages(PAGE, &[PAGE, 100, PAGE]), Err(OpenError::PageTooSmall { index: 2, len: 100 }));
    assert_eq!(pages(PAGE, &[PAGE, PAGE, 0]), Err(OpenError::PageTooSmall { index: 3, len: 0 }));
    // Longer pages are fine; only their first 4096 bytes are used.
    assert_eq!(pages(2 * PAGE, &[PAGE, 3 * PAGE]), Ok(2 * PAGE));
}

#[test]
fn paged_memory_uses_only_the_first_page_of_oversized_regions() {
    // Fixed regions, so the test can look at the bytes past each page.
    struct Fixed(SharedRegion, Vec<SharedRegion>);
    impl RingPages for Fixed {
        fn control_page(&self) -> SharedRegion {
            self.0.clone()
        }
        fn data_page_count(&self) -> usize {
            self.1.len()
        }
        fn data_page(&self, index: usize) -> SharedRegion {
            self.1[index].clone()
        }
    }
    let pages = Fixed(SharedRegion::new_zeroed(2 * PAGE), (0..2).map(|_| SharedRegion::new_zeroed(2 * PAGE)).collect());
    let mem = PagedRingMem::new(&pages).unwrap();
    mem.write_data(0, &vec![0xff; 2 * PAGE]);
    mem.write_control(0, &vec![0xff; PAGE]);
    for region in std::iter::once(&pages.0).chain(&pages.1) {
        let mut first = vec![0; PAGE];
        let mut rest = vec![0xaa; PAGE];
        region.read(0, &mut first);
        region.read(PAGE, &mut rest);
        assert!(first.iter().all(|&b| b == 0xff), "the first 4096 bytes hold the ring");
        assert!(rest.iter().all(|&b| b == 0), "bytes past the first 4096 are never touched");
    }
}

// ---------------------------------------------------------------------------
// memfd-backed rings (Linux).

#[cfg(target_os = "linux")]
mod memfd {
    use super::*;
    use common::set_empty_at;
    use std::io;

    const LAYOUTS: [MappingLayout; 2] = [MappingLayout::Single, MappingLayout::Double];

    /// Writes one wrapping packet through `from` and reads it through `to`.
    fn send(ctx: &str, from: &MappedRingMem, to: &MappedRingMem, transaction_id: u64) {
        let data_len = from.data_len();
        set_empty_at(from, (data_len - 40) as u32);
        let mut writer = OutgoingRing::new(from.clone()).unwrap();
        let mut reader = IncomingRing::new(to.clone()).unwrap();
        let payload: Vec<u8> = (0..100).map(|i| i as u8 ^ transaction_id as u8).collect();
        assert!(writer.write(&OutgoingPacket::in_band(transaction_id), &[&payload]).unwrap(), "{ctx}");

        let mut batch = reader.read_batch();
        let packet = batch.next().unwrap_or_else(|e| panic!("{ctx}: {e}")).expect("a packet");
        assert_eq!(packet.transaction_id, transaction_id, "{ctx}");
        let mut got = vec![0; packet.payload.len()];
        batch.read_payload(packet.payload, 0, &mut got).unwrap();
        assert_eq!(&got[..100], &payload[..], "{ctx}");
        assert_eq!(batch.next(), Ok(None), "{ctx}");
        assert!(!batch.commit());
        // The reader's commit shows through the writer's mapping.
        assert_eq!(writer.state().read_index, writer.write_index(), "{ctx}");
    }

    #[test]
    fn two_mappings_of_one_memfd_share_the_ring() {
        for created in LAYOUTS {
            for opened in LAYOUTS {
                let ctx = format!("created {created:?}, opened {opened:?}");
                let (a, fd) = MappedRingMem::create_memfd(2 * PAGE, created).unwrap();
                let b = MappedRingMem::open_fd(&fd, opened).unwrap();
                assert_eq!((a.data_len(), a.layout()), (2 * PAGE, created), "{ctx}");
                assert_eq!((b.data_len(), b.layout()), (2 * PAGE, opened), "{ctx}");
                send(&format!("{ctx}, a to b"), &a, &b, 0xab);
                send(&format!("{ctx}, b to a"), &b, &a, 0xba);
                assert_same_image(&ctx, "the opened mapping", &ring_image(&b), &ring_image(&a));
            }
        }
    }

    /// A plain file in the temporary directory, already unlinked.
    fn plain_file(len: u64) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("vmbus-ring-trusted-{}-{len}", std::process::id()));
        let file = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(len).unwrap();
        file
    }

    /// A trusted mapping (a uio device's way in) of a plain, unsealed file,
    /// at an offset: `open_fd` refuses that file, `map_trusted_fd` maps it,
    /// and two such mappings share one ring whose bytes land in the file.
    #[test]
    fn a_trusted_mapping_of_a_plain_file_shares_the_ring() {
        use std::os::unix::fs::FileExt;
        let data_len = 2 * PAGE;
        let offset = PAGE as u64;
        let file = plain_file(offset + (PAGE + data_len) as u64);
        assert_eq!(
            MappedRingMem::open_fd(&file, MappingLayout::Single).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let map = |layout| {
            // SAFETY: the file is this test's own, unlinked, and never truncated.
            let region = unsafe { SharedRegion::map_trusted_fd(&file, offset, data_len, layout) }.unwrap();
            MappedRingMem::new(region, layout).unwrap()
        };
        for (a, b) in [(MappingLayout::Double, MappingLayout::Single), (MappingLayout::Single, MappingLayout::Double)] {
            let ctx = format!("{a:?} to {b:?}");
            send(&ctx, &map(a), &map(b), 0x7e);
        }
        // The ring is in the file, past `offset`: its write index is there.
        let mut word = [0; 4];
        file.read_exact_at(&mut word, offset).unwrap();
        assert_eq!(word[..], ring_image(&map(MappingLayout::Single))[..4]);
        assert_ne!(u32::from_le_bytes(word), 0, "a packet was written");
    }

    #[test]
    fn a_trusted_mapping_checks_what_it_can() {
        let data_len = 2 * PAGE;
        let file = plain_file((PAGE + data_len) as u64);
        // SAFETY (each call): the file is this test's own and never truncated;
        // every call below is refused before mapping anything.
        let refused = |offset, data_len| {
            unsafe { SharedRegion::map_trusted_fd(&file, offset, data_len, MappingLayout::Single) }.unwrap_err().kind()
        };
        assert_eq!(refused(PAGE as u64, data_len), io::ErrorKind::InvalidInput, "a file too short for the ring");
        assert_eq!(refused(0, 2 * data_len), io::ErrorKind::InvalidInput, "a file too short for the ring");
        assert_eq!(refused(100, data_len), io::ErrorKind::InvalidInput, "an offset off a page");
        assert_eq!(refused(0, 100), io::ErrorKind::InvalidInput, "a data area not whole pages");
        assert_eq!(refused(0, 0), io::ErrorKind::InvalidInput, "an empty data area");
        assert_eq!(refused(u64::MAX - 4095, data_len), io::ErrorKind::InvalidInput, "an offset at the end of u64");
        let device = std::fs::File::options().read(true).write(true).open("/dev/zero").unwrap();
        // SAFETY: refused before anything is mapped.
        let double = unsafe { SharedRegion::map_trusted_fd(&device, 0, data_len, MappingLayout::Double) };
        assert_eq!(double.unwrap_err().kind(), io::ErrorKind::InvalidInput, "a double mapping of a device");
    }

    #[test]
    fn a_double_mapping_mirrors_the_data_area() {
        let data_len = 2 * PAGE;
        let (double, fd) = MappedRingMem::create_memfd(data_len, MappingLayout::Double).unwrap();
        let single = MappedRingMem::open_fd(&fd, MappingLayout::Single).unwrap();
        let bytes: Vec<u8> = (1..=32).collect();

        // A wrapping write through the double mapping is one copy into the
        // second copy of the data area; the first copy must show it too.
        double.write_data(data_len - 16, &bytes);
        let mut head = [0; 16];
        double.read_data(0, &mut head);
        assert_eq!(&head[..], &bytes[16..], "the start of the first copy");
        single.read_data(0, &mut head);
        assert_eq!(&head[..], &bytes[16..], "the start of the data area, mapped once");
        let mut around = [0; 32];
        single.read_data(data_len - 16, &mut around);
        assert_eq!(&around[..], &bytes[..], "the wrapping bytes, mapped once");

        // A wrapping write through the single mapping lands in two places;
        // the double mapping's contiguous read near the end sees both.
        let other: Vec<u8> = (101..=124).collect();
        single.write_data(data_len - 8, &other);
        for back in [8, 16, 24] {
            let mut got = vec![0; 24];
            double.read_data(data_len - back, &mut got);
            let expected: Vec<u8> = (0..24)
                .map(|i| {
                    let at = (data_len - back + i) % data_len;
                    let mut byte = [0];
                    single.read_data(at, &mut byte);
                    byte[0]
                })
                .collect();
            assert_eq!(got, expected, "read of 24 bytes at {back} before the end");
        }
        let mut got = [0; 24];
        double.read_data(data_len - 8, &mut got);
        assert_eq!(&got[..], &other[..]);
    }

    fn open_error(error: io::Error) -> Option<OpenError> {
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        error.get_ref().and_then(|inner| inner.downcast_ref::<OpenError>()).copied()
    }

    /// A memfd of `len` bytes, sealed against shrinking and growing.
    fn sealed_file(len: usize) -> std::fs::File {
        use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
        let fd = memfd_create("test-ring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        let file = std::fs::File::from(fd);
        file.set_len(len as u64).unwrap();
        fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        file
    }

    #[test]
    fn ring_files_must_be_sealed_and_created_ones_cannot_be_resized() {
        // A peer that can truncate a ring file under our mapping can crash us
        // with SIGBUS: such a file is refused.
        let unsealed = tempfile_of_len(2 * PAGE);
        let error = MappedRingMem::open_fd(&unsealed, MappingLayout::Single).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("sealed"), "{error}");
        // A created ring's file can be neither shrunk nor grown.
        let (_mem, fd) = MappedRingMem::create_memfd(PAGE, MappingLayout::Double).unwrap();
        let file = std::fs::File::from(fd);
        assert!(file.set_len(PAGE as u64).is_err(), "shrinking a ring file must fail");
        assert!(file.set_len(4 * PAGE as u64).is_err(), "growing a ring file must fail");
        assert_eq!(file.metadata().unwrap().len(), 2 * PAGE as u64);
    }

    /// An unsealed memfd of `len` bytes.
    fn tempfile_of_len(len: usize) -> std::fs::File {
        let fd = rustix::fs::memfd_create("unsealed-ring", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let file = std::fs::File::from(fd);
        file.set_len(len as u64).unwrap();
        file
    }

    #[test]
    fn memfd_rings_reject_invalid_sizes() {
        for layout in LAYOUTS {
            for data_len in [0, 100, PAGE + 8] {
                let error = MappedRingMem::create_memfd(data_len, layout).unwrap_err();
                assert_eq!(open_error(error), Some(OpenError::InvalidSize { data_len }), "{layout:?} {data_len}");
            }
        }
        // A sealed file whose size is not a control page plus a valid data area.
        for (file_len, data_len) in [(PAGE + 100, 100), (PAGE, 0), (2 * PAGE + 8, PAGE + 8), (100, 0)] {
            let file = sealed_file(file_len);
            for layout in LAYOUTS {
                let error = MappedRingMem::open_fd(&file, layout).unwrap_err();
                assert_eq!(open_error(error), Some(OpenError::InvalidSize { data_len }), "{layout:?} {file_len}");
            }
        }
        let file = sealed_file(100);
        for layout in LAYOUTS {
            let error = MappedRingMem::open_fd(&file, layout).unwrap_err();
            assert!(matches!(open_error(error), Some(OpenError::InvalidSize { .. })), "{layout:?}");
        }
    }

    #[test]
    fn write_sealed_ring_files_are_refused_before_mapping() {
        use rustix::fs::{fcntl_add_seals, SealFlags};
        for seal in [SealFlags::WRITE, SealFlags::FUTURE_WRITE] {
            let file = sealed_file(2 * PAGE);
            fcntl_add_seals(&file, seal).unwrap();
            for layout in LAYOUTS {
                let error = MappedRingMem::open_fd(&file, layout).unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
                assert!(error.to_string().contains("sealed against writes"), "{seal:?} {layout:?}: {error}");
            }
        }
    }

    /// A hugetlbfs file passes the seal checks, but a peer can punch a hole
    /// and drain the huge-page pool, and the next fault is SIGBUS (on this
    /// kind of machine, with no pool, the very first access). It is refused
    /// before anything is mapped.
    #[test]
    fn hugetlb_ring_files_are_refused() {
        use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
        let huge = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB;
        let fd = match memfd_create("huge-ring", huge) {
            Ok(fd) => fd,
            // No hugetlbfs in this kernel: nothing such a peer could send.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => return,
            Err(error) => panic!("memfd_create(MFD_HUGETLB): {error}"),
        };
        let file = std::fs::File::from(fd);
        file.set_len(2 << 20).unwrap();
        fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        for layout in LAYOUTS {
            let error = MappedRingMem::open_fd(&file, layout).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            assert!(error.to_string().contains("not on tmpfs"), "{layout:?}: {error}");
        }
    }

    /// The largest ring a file can describe maps, once and twice, without
    /// the mapping arithmetic overflowing (the file is sparse: nothing is
    /// touched but the control page).
    #[test]
    fn the_largest_ring_maps_in_both_layouts() {
        let data_len = vmbus_ring::wire::MAX_DATA_LEN;
        let file = sealed_file(PAGE + data_len);
        for layout in LAYOUTS {
            let mem = MappedRingMem::open_fd(&file, layout).unwrap();
            assert_eq!(mem.data_len(), data_len, "{layout:?}");
            let mut writer = OutgoingRing::new(mem.clone()).unwrap();
            assert_eq!(writer.max_packet_size(), vmbus_ring::MAX_PACKET_SIZE);
            let _signal = writer.write(&OutgoingPacket::in_band(1), &[b"far"]).unwrap();
        }
    }
}
