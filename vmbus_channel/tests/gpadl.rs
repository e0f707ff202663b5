//! Channels whose rings live in guest memory: GPADL page lists over a
//! `vm-memory` guest memory of several regions with gaps, a host end and a
//! guest end over the same pages, every packet type both ways, and every
//! construction error.

use std::thread;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmbus_channel::{
    gpadl_rings, ChannelError, GpadlError, GpadlRing, GuestRingMem, InProcessSignal, Packet, Queue, RawChannel, Side,
};
use vmbus_ring::wire::MAX_DATA_LEN;
use vmbus_ring::{
    CorruptError, Field, GpaRangeBuf, OpenError, OutgoingPacket, OwnedPacketKind, PacketKind, RingMem,
    TransferPageRange,
};

const PAGE: usize = 4096;

type GpadlQueue = Queue<GuestRingMem, InProcessSignal>;

/// Guest memory of three regions with gaps between them: page numbers
/// `0..16`, `0x40..0x48` and `0x100..0x110`.
fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(gpa(0), 16 * PAGE), (gpa(0x40), 8 * PAGE), (gpa(0x100), 16 * PAGE)]).unwrap()
}

/// A 12-page GPADL scattered over all three regions, out of order: pages
/// `[0, 5)` hold the guest-to-host ring (16 KiB of data), `[5, 12)` the
/// host-to-guest ring (24 KiB of data).
const GPADL: [u64; 12] = [0x105, 3, 0x43, 0x10f, 9, 0x40, 1, 0x108, 0x47, 14, 0x101, 6];
const SPLIT: usize = 5;

/// Guest address of page `gpn`.
fn gpa(gpn: u64) -> GuestAddress {
    GuestAddress(gpn * PAGE as u64)
}

/// The host end and the guest end of the GPADL's channel, each in a queue.
fn open(memory: &GuestMemoryMmap) -> (GpadlQueue, GpadlQueue) {
    let (host_signal, guest_signal) = InProcessSignal::pair();
    let host = RawChannel::from_gpadl(memory, &GPADL, SPLIT, Side::Host, host_signal).unwrap();
    let guest = RawChannel::from_gpadl(memory, &GPADL, SPLIT, Side::Guest, guest_signal).unwrap();
    (Queue::new(host), Queue::new(guest))
}

/// What a test packet carries besides its payload.
#[derive(Debug, Clone)]
enum Kind {
    InBand,
    Completion,
    TransferPages(Vec<TransferPageRange>),
    GpaDirect(GpaRangeBuf),
}

/// A packet to send, and what its reader must see.
#[derive(Debug, Clone)]
struct TestPacket {
    id: u64,
    completion_requested: bool,
    kind: Kind,
    payload: Vec<u8>,
}

impl TestPacket {
    /// Packet number `n`: the kind cycles through all four, the payload
    /// (0 to 2999 bytes) and the headers vary with `n`.
    fn new(n: u64) -> Self {
        let kind = match n % 4 {
            0 => Kind::InBand,
            1 => Kind::Completion,
            2 => Kind::TransferPages(
                (0..n % 5 + 1).map(|r| TransferPageRange::new((n * 10 + r) as u32, (r * 4096) as u32)).collect(),
            ),
            _ => {
                let mut ranges = GpaRangeBuf::new();
                ranges.push_contiguous(n * 0x1_0000 + n % 512 * 8, 5000).unwrap();
                if n % 8 == 3 {
                    ranges.push(17, 100, &[n + 0x77]).unwrap();
                }
                Kind::GpaDirect(ranges)
            }
        };
        let len = (n * 7919 % 3000) as usize;
        Self {
            id: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            completion_requested: n % 4 != 1 && n.is_multiple_of(3),
            kind,
            payload: (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect(),
        }
    }

    fn outgoing(&self) -> OutgoingPacket<'_> {
        let packet = match &self.kind {
            Kind::InBand => OutgoingPacket::in_band(self.id),
            Kind::Completion => OutgoingPacket::completion(self.id),
            Kind::TransferPages(ranges) => {
                OutgoingPacket::transfer_pages(self.id, 7, self.id.is_multiple_of(2), ranges)
            }
            Kind::GpaDirect(ranges) => OutgoingPacket::gpa_direct(self.id, ranges.ranges()),
        };
        if self.completion_requested {
            packet.with_completion_requested()
        } else {
            packet
        }
    }

    /// Checks that `received` is this packet, bytes and headers.
    fn check(&self, received: &Packet) {
        let header = &received.header;
        assert_eq!(header.transaction_id, self.id);
        assert_eq!(header.completion_requested, self.completion_requested);
        match (&self.kind, &received.kind) {
            (Kind::InBand, OwnedPacketKind::InBand) | (Kind::Completion, OwnedPacketKind::Completion) => {}
            (Kind::TransferPages(sent), OwnedPacketKind::TransferPages { set_id, sender_owns_set, ranges }) => {
                assert_eq!(*set_id, 7);
                assert_eq!(*sender_owns_set, self.id.is_multiple_of(2));
                assert_eq!(&ranges[..], &sent[..]);
            }
            (Kind::GpaDirect(sent), OwnedPacketKind::GpaDirect(got)) => assert_eq!(got, sent),
            (sent, got) => panic!("sent {sent:?}, received {got:?}"),
        }
        let len = self.payload.len();
        assert_eq!(received.payload.len(), len.next_multiple_of(8));
        assert_eq!(&received.payload[..len], &self.payload[..]);
        assert!(received.payload[len..].iter().all(|&byte| byte == 0), "padding is not zero");
    }
}

/// Sends packets from `from`, numbered from `*next`, until its ring is
/// full, then has `to` read them all back, checking each. Counts in
/// `*wraps` the packets after which the write index went back.
fn fill_and_drain(from: &mut GpadlQueue, to: &mut GpadlQueue, next: &mut u64, wraps: &mut usize) {
    let mut sent = Vec::new();
    loop {
        // Each packet takes at least 24 bytes of a data area of at most 24 KiB.
        assert!(sent.len() <= 1024, "the ring never filled");
        let packet = TestPacket::new(*next);
        let before = from.state().outgoing.write_index;
        match from.writer_mut().try_write(&packet.outgoing(), &[&packet.payload]) {
            Ok(()) => {
                if from.state().outgoing.write_index < before {
                    *wraps += 1;
                }
                *next += 1;
                sent.push(packet);
            }
            Err(ChannelError::Full { .. }) => break,
            Err(error) => panic!("packet {next}: {error}"),
        }
    }
    assert!(!sent.is_empty(), "an empty ring refused packet {next}");
    for packet in &sent {
        let received = to.reader_mut().try_read().unwrap().expect("a sent packet is missing");
        packet.check(&received);
    }
    assert_eq!(to.reader_mut().try_read().unwrap(), None);
}

#[test]
fn every_packet_type_both_ways_wrapping_both_rings() {
    let memory = guest_memory();
    let (mut host, mut guest) = open(&memory);
    assert_eq!(host.state().incoming.data_len as usize, 4 * PAGE);
    assert_eq!(host.state().outgoing.data_len as usize, 6 * PAGE);
    let (mut to_guest, mut to_host) = (0, 1 << 32);
    let (mut host_to_guest_wraps, mut guest_to_host_wraps) = (0, 0);
    for _ in 0..200 {
        if host_to_guest_wraps >= 5 && guest_to_host_wraps >= 5 {
            break;
        }
        fill_and_drain(&mut host, &mut guest, &mut to_guest, &mut host_to_guest_wraps);
        fill_and_drain(&mut guest, &mut host, &mut to_host, &mut guest_to_host_wraps);
    }
    assert!(host_to_guest_wraps >= 5 && guest_to_host_wraps >= 5);
    // Both ends see the same control pages.
    assert_eq!(host.state().outgoing.write_index, guest.state().incoming.write_index);
    assert_eq!(guest.state().outgoing.read_index, host.state().incoming.read_index);
}

#[test]
fn blocking_traffic_both_ways_at_once() {
    const COUNT: u64 = 600;
    let memory = guest_memory();
    let (host, guest) = open(&memory);
    let (mut host_reader, mut host_writer) = host.split();
    let (mut guest_reader, mut guest_writer) = guest.split();
    thread::scope(|scope| {
        scope.spawn(move || {
            for n in 0..COUNT {
                let packet = TestPacket::new(n);
                host_writer.write_blocking(&packet.outgoing(), &[&packet.payload]).unwrap();
            }
        });
        scope.spawn(move || {
            for n in 0..COUNT {
                TestPacket::new(n).check(&guest_reader.read_blocking().unwrap());
            }
        });
        scope.spawn(move || {
            for n in COUNT..2 * COUNT {
                let packet = TestPacket::new(n);
                guest_writer.write_blocking(&packet.outgoing(), &[&packet.payload]).unwrap();
            }
        });
        scope.spawn(move || {
            for n in COUNT..2 * COUNT {
                TestPacket::new(n).check(&host_reader.read_blocking().unwrap());
            }
        });
    });
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn packets_live_in_the_listed_guest_pages() {
    let memory = guest_memory();
    let (mut host, mut guest) = open(&memory);

    // The host's packet lands at the start of the host-to-guest ring's first
    // data page, page SPLIT + 1 of the GPADL.
    let request = OutgoingPacket::in_band(0x1122_3344_5566_7788).with_completion_requested();
    host.writer_mut().try_write(&request, &[b"in guest memory"]).unwrap();
    let control = gpa(GPADL[SPLIT]);
    assert_eq!(memory.read_obj::<u32>(control).unwrap(), 40, "write index");
    let mut bytes = [0u8; 40];
    memory.read_slice(&mut bytes, gpa(GPADL[SPLIT + 1])).unwrap();
    assert_eq!(u16_at(&bytes, 0), 6, "type: in-band");
    assert_eq!(u16_at(&bytes, 2), 2, "data_offset8");
    assert_eq!(u16_at(&bytes, 4), 4, "length8");
    assert_eq!(u16_at(&bytes, 6), 1, "flags: completion requested");
    assert_eq!(u64_at(&bytes, 8), 0x1122_3344_5566_7788, "transaction id");
    assert_eq!(&bytes[16..32], b"in guest memory\0");
    assert_eq!(u64_at(&bytes, 32), 0, "footer: the packet started at offset 0");
    // The guest reads it, and its read index lands in the same control page.
    let packet = guest.reader_mut().try_read().unwrap().unwrap();
    assert_eq!(&packet.payload, b"in guest memory\0");
    assert_eq!(memory.read_obj::<u32>(control.unchecked_add(4)).unwrap(), 40, "read index");

    // A guest packet larger than a page runs from the guest-to-host ring's
    // first data page (GPADL page 1) on into its second (GPADL page 2).
    let payload: Vec<u8> = (0..6000).map(|i| (i % 251) as u8).collect();
    guest.writer_mut().try_write(&OutgoingPacket::completion(9), &[&payload]).unwrap();
    let mut first = vec![0u8; PAGE];
    let mut second = vec![0u8; PAGE];
    memory.read_slice(&mut first, gpa(GPADL[1])).unwrap();
    memory.read_slice(&mut second, gpa(GPADL[2])).unwrap();
    assert_eq!(u16_at(&first, 0), 11, "type: completion");
    assert_eq!(u16_at(&first, 4), (16 + 6000) / 8, "length8");
    assert_eq!(u64_at(&first, 8), 9);
    assert_eq!(&first[16..], &payload[..PAGE - 16]);
    let rest = 6000 - (PAGE - 16);
    assert_eq!(&second[..rest], &payload[PAGE - 16..]);
    assert_eq!(u64_at(&second, rest), 0, "footer");
    assert_eq!(memory.read_obj::<u32>(gpa(GPADL[0])).unwrap() as usize, 16 + 6000 + 8, "write index");
    assert_eq!(host.reader_mut().try_read().unwrap().unwrap().payload, payload);
}

#[test]
fn host_reads_a_packet_the_guest_wrote_through_its_own_memory() {
    let memory = guest_memory();
    let (mut host, _guest) = open(&memory);
    // Written as a guest driver would: packet bytes first, then the write index.
    let mut packet = Vec::new();
    packet.extend_from_slice(&11u16.to_le_bytes()); // completion
    packet.extend_from_slice(&2u16.to_le_bytes()); // data_offset8
    packet.extend_from_slice(&3u16.to_le_bytes()); // length8: 24 bytes
    packet.extend_from_slice(&0u16.to_le_bytes()); // flags
    packet.extend_from_slice(&42u64.to_le_bytes()); // transaction id
    packet.extend_from_slice(b"from cpu");
    packet.extend_from_slice(&0u64.to_le_bytes()); // footer
    memory.write_slice(&packet, gpa(GPADL[1])).unwrap();
    memory.write_obj(packet.len() as u32, gpa(GPADL[0])).unwrap();

    let received = host.reader_mut().try_read().unwrap().unwrap();
    assert_eq!(received.header.kind, PacketKind::Completion);
    assert_eq!(received.header.transaction_id, 42);
    assert_eq!(received.payload, b"from cpu");
    assert_eq!(memory.read_obj::<u32>(gpa(GPADL[0]).unchecked_add(4)).unwrap(), 32, "read index");
}

#[test]
fn rings_keep_the_guest_memory_mapped() {
    let memory = guest_memory();
    let (mut host, mut guest) = open(&memory);
    drop(memory);
    host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"still mapped"]).unwrap();
    assert_eq!(&guest.reader_mut().try_read().unwrap().unwrap().payload[..12], b"still mapped");
    guest.writer_mut().try_write(&OutgoingPacket::completion(1), &[b"yes"]).unwrap();
    assert_eq!(&host.reader_mut().try_read().unwrap().unwrap().payload[..3], b"yes");
}

#[test]
fn the_two_sides_see_the_rings_swapped() {
    let memory = guest_memory();
    let host = gpadl_rings(&memory, &GPADL, SPLIT, Side::Host).unwrap();
    let guest = gpadl_rings(&memory, &GPADL, SPLIT, Side::Guest).unwrap();
    assert_eq!((host.incoming.data_len(), host.outgoing.data_len()), (4 * PAGE, 6 * PAGE));
    assert_eq!((guest.incoming.data_len(), guest.outgoing.data_len()), (6 * PAGE, 4 * PAGE));
    // The last data byte of each ring is in its last GPADL page.
    host.outgoing.write_data(6 * PAGE - 1, b"h");
    guest.outgoing.write_data(4 * PAGE - 1, b"g");
    let mut byte = [0];
    guest.incoming.read_data(6 * PAGE - 1, &mut byte);
    assert_eq!(&byte, b"h");
    host.incoming.read_data(4 * PAGE - 1, &mut byte);
    assert_eq!(&byte, b"g");
    assert_eq!(memory.read_obj::<u8>(gpa(GPADL[11]).unchecked_add(PAGE as u64 - 1)).unwrap(), b'h');
    assert_eq!(memory.read_obj::<u8>(gpa(GPADL[4]).unchecked_add(PAGE as u64 - 1)).unwrap(), b'g');
}

/// The error of opening `side`'s end of `gpns` split at `split` over `memory`.
fn open_error(memory: &GuestMemoryMmap, gpns: &[u64], split: usize, side: Side) -> GpadlError {
    let (signal, _peer) = InProcessSignal::pair();
    match RawChannel::from_gpadl(memory, gpns, split, side, signal) {
        Ok(_) => panic!("opened a channel from {gpns:x?} split at {split}"),
        Err(error) => {
            // The rings alone fail the same way, unless only opening them fails.
            if let Err(rings_error) = gpadl_rings(memory, gpns, split, side) {
                assert_eq!(rings_error, error);
            }
            error
        }
    }
}

/// Both sides fail to open with `expected`, whose message contains `message`.
fn assert_open_fails(memory: &GuestMemoryMmap, gpns: &[u64], split: usize, expected: GpadlError, message: &str) {
    for side in [Side::Host, Side::Guest] {
        let error = open_error(memory, gpns, split, side);
        assert_eq!(error, expected, "{side:?}");
        assert!(error.to_string().contains(message), "{error} does not say {message:?}");
    }
}

#[test]
fn splits_must_leave_each_ring_a_control_and_a_data_page() {
    let memory = guest_memory();
    let n = GPADL.len();
    let too_few = |ring, pages| GpadlError::TooFewPages { ring, pages };
    assert_open_fails(&memory, &GPADL, 0, too_few(GpadlRing::GuestToHost, 0), "guest-to-host ring gets 0 page");
    assert_open_fails(&memory, &GPADL, 1, too_few(GpadlRing::GuestToHost, 1), "guest-to-host ring gets 1 page");
    assert_open_fails(&memory, &GPADL, n - 1, too_few(GpadlRing::HostToGuest, 1), "host-to-guest ring gets 1 page");
    assert_open_fails(&memory, &GPADL, n, too_few(GpadlRing::HostToGuest, 0), "host-to-guest ring gets 0 page");
    for split in [n + 1, n + 100, usize::MAX] {
        let expected = GpadlError::SplitOutOfRange { split, pages: n };
        assert_open_fails(&memory, &GPADL, split, expected, &format!("split {split} is past the end of a GPADL of 12"));
    }
    // The extreme valid splits: a one-data-page ring on either side.
    for (split, g2h, h2g) in [(2, PAGE, 9 * PAGE), (n - 2, 9 * PAGE, PAGE)] {
        let rings = gpadl_rings(&memory, &GPADL, split, Side::Host).unwrap();
        assert_eq!((rings.incoming.data_len(), rings.outgoing.data_len()), (g2h, h2g));
    }
    // A GPADL of three pages has no valid split at all.
    for split in 0..=3 {
        assert!(gpadl_rings(&memory, &GPADL[..3], split, Side::Host).is_err());
    }
    assert_eq!(
        open_error(&memory, &[], 0, Side::Guest),
        GpadlError::TooFewPages { ring: GpadlRing::GuestToHost, pages: 0 }
    );
}

#[test]
fn pages_outside_guest_memory_are_refused() {
    let memory = guest_memory();
    // In a gap, just past a region, past the end, far past the end.
    for gpn in [0x20, 0x10, 0x48, 0x110, 0x1_0000_0000] {
        for index in [0, 3, SPLIT, GPADL.len() - 1] {
            let mut gpns = GPADL;
            gpns[index] = gpn;
            let expected = GpadlError::PageNotBacked { index, gpn };
            let message = format!("GPADL page {index} (page number {gpn:#x}, guest address {:#x})", gpn * 4096);
            assert_open_fails(&memory, &gpns, SPLIT, expected, &message);
        }
    }
}

#[test]
fn a_page_straddling_two_regions_is_refused() {
    // Regions meet at 0x200800, inside page 0x200; page 0x201 is inside the second.
    let memory =
        GuestMemoryMmap::from_ranges(&[(gpa(0), 8 * PAGE), (gpa(0x200), 0x800), (GuestAddress(0x20_0800), 0x2800)])
            .unwrap();
    let expected = GpadlError::PageNotBacked { index: 3, gpn: 0x200 };
    assert_open_fails(&memory, &[0, 1, 2, 0x200], 2, expected, "not backed by guest memory");
    let rings = gpadl_rings(&memory, &[0, 1, 2, 0x201], 2, Side::Guest).unwrap();
    rings.incoming.write_data(0, b"fits");
    assert_eq!(memory.read_obj::<[u8; 4]>(gpa(0x201)).unwrap(), *b"fits");
}

#[test]
fn a_page_at_an_unaligned_host_address_is_refused() {
    // Guest page 0x301 sits 0xffd bytes into a mapping that starts at guest
    // address 0x300003, so its host address is not 8-byte aligned.
    let memory = GuestMemoryMmap::from_ranges(&[(gpa(0), 8 * PAGE), (GuestAddress(0x30_0003), 0x3000)]).unwrap();
    let expected = GpadlError::PageMisaligned { index: 2, gpn: 0x301 };
    assert_open_fails(&memory, &[0, 1, 0x301, 2], 2, expected, "page 2 (page number 0x301) is mapped at a host");
}

/// A hostile guest listing a page of a region mapped read-only: the host's
/// first ring write there would be SIGSEGV. Refused before any access.
#[test]
fn a_page_in_a_read_only_region_is_refused() {
    use vm_memory::{GuestRegionMmap, MmapRegion};
    let writable =
        MmapRegion::build(None, 8 * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
            .unwrap();
    let read_only =
        MmapRegion::build(None, 4 * PAGE, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS).unwrap();
    let memory = GuestMemoryMmap::from_regions(vec![
        GuestRegionMmap::new(writable, gpa(0)).unwrap(),
        GuestRegionMmap::new(read_only, gpa(0x40)).unwrap(),
    ])
    .unwrap();
    let expected = GpadlError::PageReadOnly { index: 3, gpn: 0x41 };
    assert_open_fails(
        &memory,
        &[0, 1, 2, 0x41],
        2,
        expected,
        "page 3 (page number 0x41) is in guest memory mapped read-only",
    );
    // The same GPADL over writable pages opens.
    assert!(gpadl_rings(&memory, &[0, 1, 2, 3], 2, Side::Host).is_ok());
}

#[test]
fn page_numbers_whose_address_overflows_are_refused() {
    let memory = guest_memory();
    for gpn in [(u64::MAX >> 12) + 1, u64::MAX / 3, u64::MAX] {
        let mut gpns = GPADL;
        gpns[SPLIT + 1] = gpn;
        let expected = GpadlError::PageAddressOverflow { index: SPLIT + 1, gpn };
        assert_open_fails(&memory, &gpns, SPLIT, expected, &format!("{gpn:#x}, whose guest address overflows"));
    }
    // The last page number that has an address is merely not backed.
    let mut gpns = GPADL;
    gpns[0] = u64::MAX >> 12;
    assert_eq!(
        open_error(&memory, &gpns, SPLIT, Side::Host),
        GpadlError::PageNotBacked { index: 0, gpn: u64::MAX >> 12 }
    );
}

#[test]
fn a_ring_larger_than_4_gib_is_refused() {
    let memory = guest_memory();
    // One data page more than a ring can have: refused before any page is
    // looked up, so the (aliased, all-zero) page numbers are never mapped.
    let pages = MAX_DATA_LEN / PAGE + 2;
    let data_len = MAX_DATA_LEN + PAGE;
    let gpns = vec![0; pages + 2];
    let expected = GpadlError::Ring { ring: GpadlRing::GuestToHost, source: OpenError::InvalidSize { data_len } };
    assert_open_fails(&memory, &gpns, pages, expected, "the guest-to-host ring cannot be opened: data area of");
    let expected = GpadlError::Ring { ring: GpadlRing::HostToGuest, source: OpenError::InvalidSize { data_len } };
    assert_open_fails(&memory, &gpns, 2, expected, "the host-to-guest ring cannot be opened");
}

#[test]
fn a_corrupt_control_page_is_refused() {
    let memory = guest_memory();
    // The host-to-guest ring's write index is not a multiple of 8.
    memory.write_obj(13u32, gpa(GPADL[SPLIT])).unwrap();
    let corrupt = CorruptError::new(Field::WriteIndex, 13);
    let expected = GpadlError::Ring { ring: GpadlRing::HostToGuest, source: OpenError::Corrupt(corrupt) };
    for side in [Side::Host, Side::Guest] {
        let error = open_error(&memory, &GPADL, SPLIT, side);
        assert_eq!(error, expected);
        assert_eq!(error.to_string(), "the host-to-guest ring cannot be opened: corrupt write index: found 0xd");
    }
    // The guest-to-host ring's read index is past its 16 KiB data area.
    memory.write_obj(0u32, gpa(GPADL[SPLIT])).unwrap();
    memory.write_obj(0x4000u32, gpa(GPADL[0]).unchecked_add(4)).unwrap();
    let corrupt = CorruptError::new(Field::ReadIndex, 0x4000);
    let expected = GpadlError::Ring { ring: GpadlRing::GuestToHost, source: OpenError::Corrupt(corrupt) };
    for side in [Side::Host, Side::Guest] {
        assert_eq!(open_error(&memory, &GPADL, SPLIT, side), expected);
    }
}

/// Pages of `memory` whose dirty bit is set, as guest page numbers.
fn dirty_pages(memory: &GuestMemoryMmap<vm_memory::bitmap::AtomicBitmap>) -> Vec<u64> {
    use vm_memory::bitmap::Bitmap;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    let mut dirty = Vec::new();
    for region in memory.iter() {
        for offset in (0..region.len() as usize).step_by(PAGE) {
            if region.bitmap().dirty_at(offset) {
                dirty.push((region.start_addr().0 + offset as u64) / PAGE as u64);
            }
        }
    }
    dirty.sort_unstable();
    dirty
}

/// Over guest memory with dirty-page tracking, exactly the ring pages the
/// host writes are marked: the incoming ring's control page (its read
/// index), the outgoing ring's control page (its write index) and the data
/// pages its packet covers; not the pages it only reads, nor the rest.
#[test]
fn the_pages_a_side_writes_are_marked_dirty_and_no_others() {
    use vm_memory::bitmap::AtomicBitmap;
    use vm_memory::GuestMemoryBackend;
    let memory = GuestMemoryMmap::<AtomicBitmap>::from_ranges(&[
        (gpa(0), 16 * PAGE),
        (gpa(0x40), 8 * PAGE),
        (gpa(0x100), 16 * PAGE),
    ])
    .unwrap();
    let (host_signal, guest_signal) = InProcessSignal::pair();
    let host = RawChannel::from_gpadl(&memory, &GPADL, SPLIT, Side::Host, host_signal).unwrap();
    let guest = RawChannel::from_gpadl(&memory, &GPADL, SPLIT, Side::Guest, guest_signal).unwrap();
    let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
    guest.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"request"]).unwrap();
    assert!(dirty_pages(&memory).contains(&GPADL[1]), "the guest end marks what it writes too");
    // The region's own bitmap (through the mapping), not its slice view.
    memory.iter().for_each(|region| vm_memory::MmapRegion::bitmap(region).reset());

    assert!(host.reader_mut().try_read().unwrap().is_some());
    // 16 + 9000 + 8 bytes from the start of the data area: data pages 0 to
    // 2, the middle one touched by the payload copy alone.
    host.writer_mut().try_write(&OutgoingPacket::in_band(2), &[&[0x5a; 9000]]).unwrap();

    let (guest_to_host, host_to_guest) = GPADL.split_at(SPLIT);
    let mut expected = vec![guest_to_host[0], host_to_guest[0], host_to_guest[1], host_to_guest[2], host_to_guest[3]];
    expected.sort_unstable();
    assert_eq!(dirty_pages(&memory), expected);
}
