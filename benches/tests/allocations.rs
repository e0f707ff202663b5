//! Zero heap allocations per packet on every hot path, proven with a
//! counting global allocator.
//!
//! Each check warms its path up (so that one-time set-up does not count),
//! then counts the allocations this thread makes over many packets and
//! requires none. The counter is per thread, so the test harness's other
//! threads cannot disturb it.
//!
//! Where a path does allocate, it is by design and is pinned down here too:
//! the owned-packet API (`QueueReader::try_read`, `read`, `read_blocking`)
//! returns the payload in a `Vec`: one allocation a packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use vmbus_benches::{drain, ring_round_trip, PacketHeaders, PACKET_TYPES};
use vmbus_channel::{
    connected_pair, ChannelFds, MemfdChannel, PacketWithPayload, Queue, QueueReader, QueueWriter, Signal,
};
use vmbus_ring::{
    FlatRingMem, GpaRangeBuf, HeapRingPages, IncomingRing, MappedRingMem, MappingLayout, OutgoingPacket, OutgoingRing,
    PagedRingMem, RingMem, TransferPageRange,
};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to the system allocator; the
// counting touches only a thread-local `Cell` with a const initialiser,
// which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    // `try_with`: a thread being torn down has no counter left, and needs none.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    if COUNTING.with(Cell::get) && !IN_TRACE.with(Cell::get) {
        IN_TRACE.with(|t| t.set(true));
        if std::env::var_os("TRACE_ALLOC").is_some() {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        IN_TRACE.with(|t| t.set(false));
    }
}
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `step` a few times to warm up, then `ROUNDS` times counting; returns
/// the allocations this thread made while counting.
fn allocations_in(mut step: impl FnMut()) -> u64 {
    for _ in 0..8 {
        step();
    }
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    for _ in 0..ROUNDS {
        step();
    }
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

const ROUNDS: u64 = 1000;
const PAYLOADS: [usize; 4] = [0, 61, 1500, 16384];

fn check_ring<M: RingMem + Clone>(name: &str, mem: M) {
    let headers = PacketHeaders::new();
    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    let mut reader = IncomingRing::new(mem).unwrap();
    let mut out = vec![0; 65536];
    for kind in PACKET_TYPES {
        let packet = headers.packet(kind);
        for payload_len in PAYLOADS {
            let payload = vec![0x5a; payload_len];
            for batch in [1, 32] {
                if packet.size(payload_len) * (batch + 1) > writer.data_len() {
                    continue;
                }
                let allocations = allocations_in(|| {
                    ring_round_trip(&mut writer, &mut reader, &packet, &payload, &mut out, batch);
                });
                assert_eq!(allocations, 0, "{name}: {kind}, {payload_len}-byte payload, batches of {batch}");
            }
        }
    }
    // Reserving and filling a payload in place.
    let allocations = allocations_in(|| {
        let mut writes = writer.write_batch();
        let range = writes.reserve(&OutgoingPacket::in_band(7), 100).unwrap();
        writes.write_payload(range, 0, &[1; 60]).unwrap();
        writes.write_payload(range, 60, &[2; 40]).unwrap();
        let _ = writes.commit();
        assert_eq!(drain(&mut reader, &mut out, 1), 1);
    });
    assert_eq!(allocations, 0, "{name}: reserve and write_payload");
}

const DATA_LEN: usize = 256 * 1024;

#[test]
fn ring_paths_do_not_allocate_on_flat_memory() {
    check_ring("flat", FlatRingMem::new(DATA_LEN).unwrap());
}

#[test]
fn ring_paths_do_not_allocate_on_paged_memory() {
    check_ring("paged", PagedRingMem::new(&HeapRingPages::new(DATA_LEN / 4096)).unwrap());
}

#[test]
fn ring_paths_do_not_allocate_on_mapped_memory() {
    let (single, _fd) = MappedRingMem::create_memfd(DATA_LEN, MappingLayout::Single).unwrap();
    check_ring("mapped", single);
    let (double, _fd) = MappedRingMem::create_memfd(DATA_LEN, MappingLayout::Double).unwrap();
    check_ring("double-mapped", double);
}

/// Long range lists: the reader copies them into storage its batches reuse,
/// which grows once to the most a batch holds and then stays, so no packet
/// allocates, however many ranges it has.
#[test]
fn long_range_lists_do_not_allocate_a_packet() {
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    let mut reader = IncomingRing::new(mem).unwrap();
    let mut out = vec![0; 4096];

    let many = [TransferPageRange::new(100, 0); 64];
    let mut megabyte = GpaRangeBuf::new();
    megabyte.push_contiguous(0x1000, 1 << 20).unwrap();
    let mut scattered = GpaRangeBuf::new();
    for page in 0..32 {
        scattered.push(8, 4000, &[page * 3]).unwrap();
    }
    let packets = [
        (OutgoingPacket::transfer_pages(1, 0, false, &many), "64 transfer-page ranges"),
        (OutgoingPacket::gpa_direct(1, megabyte.ranges()), "a 1 MiB GPA range (257 words)"),
        (OutgoingPacket::gpa_direct(1, scattered.ranges()), "32 GPA ranges"),
    ];
    for (packet, what) in packets {
        for batch in [1, 32] {
            let allocations = allocations_in(|| {
                ring_round_trip(&mut writer, &mut reader, &packet, &[0; 64], &mut out, batch);
            });
            assert_eq!(allocations, 0, "{what}, batches of {batch}");
        }
    }
}

/// A waker that does nothing when woken.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// The queue's batch paths, both halves driven from this thread.
fn check_queue<M: RingMem, S: Signal>(name: &str, writer: &mut QueueWriter<M, S>, reader: &mut QueueReader<M, S>) {
    let mut out = vec![0; 65536];
    // A waker like an executor's: an `Arc`, so that a clone of it is
    // recognised as the same waker (clones of `Waker::noop()` are not).
    let waker = Waker::from(Arc::new(NoWake));
    let mut cx = Context::from_waker(&waker);
    for payload_len in PAYLOADS {
        let payload = vec![0x5a; payload_len];
        let pieces = [&payload[..]];
        for batch in [1, 32] {
            if OutgoingPacket::in_band(3).size(payload_len) * (batch + 1) > DATA_LEN {
                continue;
            }
            let packets: Vec<PacketWithPayload<'_>> = vec![(OutgoingPacket::in_band(3), &pieces[..]); batch];
            let mut copy = |_: &_, payload: &vmbus_channel::Payload<'_, M>| {
                let len = payload.len();
                payload.read_at(0, &mut out[..len]).unwrap();
            };
            let allocations = allocations_in(|| {
                // The reader first finds the ring empty and waits (its waker
                // registered, the interrupt mask cleared), so that the writer's
                // commit signals it: the sleeping path, end to end.
                assert!(reader.poll_read_batch(&mut cx, batch, &mut copy).is_pending());
                let mut written = 0;
                assert!(writer.poll_write_batch(&mut cx, &packets, &mut written).is_ready());
                match reader.poll_read_batch(&mut cx, batch, &mut copy) {
                    Poll::Ready(Ok(read)) => assert_eq!(read, batch),
                    other => panic!("{name}: read {other:?}"),
                }
                // And the polling path.
                writer.try_write(&OutgoingPacket::in_band(4), &pieces).unwrap();
                assert_eq!(reader.try_read_batch(1, &mut copy).unwrap(), 1);
            });
            assert_eq!(allocations, 0, "{name}: {payload_len}-byte payload, batches of {batch}");
        }
    }
    // The owned-packet API allocates the payload it returns, once a packet.
    let allocations = allocations_in(|| {
        writer.try_write(&OutgoingPacket::in_band(5), &[&[1; 100]]).unwrap();
        assert!(reader.try_read().unwrap().is_some());
    });
    assert_eq!(allocations, ROUNDS, "{name}: try_read returns an owned payload");
}

#[test]
fn queue_paths_do_not_allocate_in_process() {
    let (a, b) = connected_pair(DATA_LEN).unwrap();
    let (_a_reader, mut writer) = Queue::new(a).split();
    let (mut reader, _b_writer) = Queue::new(b).split();
    check_queue("in-process", &mut writer, &mut reader);
}

#[test]
fn queue_paths_do_not_allocate_over_eventfds() {
    let (a, b) = ChannelFds::pair(DATA_LEN).unwrap();
    let a = MemfdChannel::from_fds(a, MappingLayout::Double).unwrap();
    let b = MemfdChannel::from_fds(b, MappingLayout::Double).unwrap();
    let (_a_reader, mut writer) = Queue::new(a).split();
    let (mut reader, _b_writer) = Queue::new(b).split();
    check_queue("eventfd", &mut writer, &mut reader);
}
