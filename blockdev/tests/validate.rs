//! The host's checks: requests decoded and checked against guest memory
//! and the disk size, by example and by property.

use proptest::prelude::*;
use vm_memory::{GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};
use vmbus_blockdev::request::{Op, Request, RequestHeader, Status, MAX_TRANSFER};
use vmbus_blockdev::validate::{plan, Direction, Plan, Segment};
use vmbus_ring::GpaRangeBuf;
use zerocopy::IntoBytes;

const DISK: u64 = 1 << 20;

/// Guest memory with a hole: [0, 512 KiB) and [1 MiB, 1.5 MiB).
fn memory() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 512 << 10), (GuestAddress(1 << 20), 512 << 10)]).unwrap()
}

fn request(op: Op, sector: u64, length: u32) -> Request {
    Request { op, sector, length }
}

fn contiguous(pieces: &[(u64, u32)]) -> GpaRangeBuf {
    let mut ranges = GpaRangeBuf::new();
    for &(gpa, len) in pieces {
        ranges.push_contiguous(gpa, len).unwrap();
    }
    ranges
}

#[test]
fn a_read_over_two_unaligned_ranges_becomes_merged_segments() {
    let ranges = contiguous(&[(0x1200, 6144), (0x8000, 2048)]);
    let planned = plan(&request(Op::Read, 8, 8192), Some(ranges.ranges()), &memory(), DISK);
    let Ok(Plan::Transfer(transfer)) = planned else { panic!("{planned:?}") };
    assert_eq!(transfer.direction, Direction::Read);
    assert_eq!(transfer.offset, 4096);
    assert_eq!(
        transfer.segments,
        [Segment { address: GuestAddress(0x1200), len: 6144 }, Segment { address: GuestAddress(0x8000), len: 2048 }]
    );
}

#[test]
fn each_bad_request_has_its_status() {
    let memory = memory();
    let page = |gpa| contiguous(&[(gpa, 4096)]);
    let cases: Vec<(Request, Option<GpaRangeBuf>, Status)> = vec![
        // In the hole, past the end, straddling a region's end.
        (request(Op::Read, 0, 4096), Some(page(0x9_0000)), Status::BadGuestAddress),
        (request(Op::Write, 0, 4096), Some(page(0x10_0000_0000)), Status::BadGuestAddress),
        (request(Op::Read, 0, 4096), Some(page((512 << 10) - 2048)), Status::BadGuestAddress),
        // A page number whose address overflows 64 bits.
        (request(Op::Read, 0, 4096), Some(gpns(&[u64::MAX])), Status::BadGuestAddress),
        // Past the end of the disk, and a sector whose byte offset overflows.
        (request(Op::Read, DISK / 512, 4096), Some(page(0)), Status::OutOfRange),
        (request(Op::Read, DISK / 512 - 1, 4096), Some(page(0)), Status::OutOfRange),
        (request(Op::Write, u64::MAX, 4096), Some(page(0)), Status::OutOfRange),
        // Length and ranges disagree, or there are no ranges.
        (request(Op::Read, 0, 8192), Some(page(0)), Status::LengthMismatch),
        (request(Op::Write, 0, 4096), None, Status::LengthMismatch),
        (request(Op::Flush, 0, 0), Some(page(0)), Status::LengthMismatch),
        (request(Op::Stats, 0, 4096), None, Status::LengthMismatch),
        // Lengths the device does not take.
        (request(Op::Read, 0, 0), Some(page(0)), Status::BadLength),
        (request(Op::Read, 0, 100), Some(contiguous(&[(0, 100)])), Status::BadLength),
        (request(Op::Read, 0, MAX_TRANSFER + 512), Some(contiguous(&[(0, MAX_TRANSFER + 512)])), Status::BadLength),
    ];
    for (request, ranges, status) in cases {
        let planned = plan(&request, ranges.as_ref().map(GpaRangeBuf::ranges), &memory, DISK);
        assert_eq!(planned, Err(status), "{request:?} {ranges:?}");
    }
    assert_eq!(plan(&request(Op::Flush, 0, 0), None, &memory, DISK), Ok(Plan::Flush));
}

fn gpns(pages: &[u64]) -> GpaRangeBuf {
    let mut ranges = GpaRangeBuf::new();
    ranges.push(0, 4096 * pages.len() as u32, pages).unwrap();
    ranges
}

#[test]
fn headers_decode_and_garbage_is_a_status() {
    let header = RequestHeader::new(Op::Write, 77, 65536);
    assert_eq!(Request::parse(header.as_bytes()), Ok(request(Op::Write, 77, 65536)));
    let mut unknown = header;
    unknown.op = 99.into();
    assert_eq!(Request::parse(unknown.as_bytes()), Err(Status::Unsupported));
    assert_eq!(Request::parse(&header.as_bytes()[..23]), Err(Status::Malformed));
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Request::parse(&bytes);
    }

    /// Whatever the guest sends, an accepted transfer moves exactly its
    /// length, inside the disk, through guest memory that exists.
    #[test]
    fn an_accepted_transfer_stays_inside_memory_and_disk(
        op in 1u32..=4,
        sector in prop_oneof![0u64..4096, any::<u64>()],
        length in prop_oneof![(0u32..=2048).prop_map(|n| n * 512), any::<u32>()],
        ranges in proptest::collection::vec(
            (0u32..4096, 1u32..=(1 << 20), prop_oneof![0u64..0x200, any::<u64>()]),
            0..4,
        ),
    ) {
        let memory = memory();
        let mut buf = GpaRangeBuf::new();
        for (offset, count, first) in ranges {
            let pages = (u64::from(offset) + u64::from(count)).div_ceil(4096);
            let gpns: Vec<u64> = (0..pages).map(|page| first.wrapping_add(page)).collect();
            buf.push(offset, count, &gpns).unwrap();
        }
        let op = [Op::Read, Op::Write, Op::Flush, Op::Stats][op as usize - 1];
        let ranges = (!buf.is_empty()).then(|| buf.ranges());
        if let Ok(Plan::Transfer(transfer)) = plan(&request(op, sector, length), ranges, &memory, DISK) {
            let total: u64 = transfer.segments.iter().map(|segment| segment.len as u64).sum();
            prop_assert_eq!(total, u64::from(length));
            prop_assert!(transfer.offset + total <= DISK);
            for segment in &transfer.segments {
                prop_assert!(memory.check_range(segment.address, segment.len, Permissions::ReadWrite));
            }
        }
    }
}
