//! Shared pieces of the benchmarks: the sizes and packets they use, the ring
//! sizes, the memcpy bound loops that every figure is compared with, the
//! criterion settings, and the naming rule that pairs a figure with its bound.
//!
//! The benchmarks live in `benches/*.rs` (one criterion binary each); the
//! allocation-counting test in `tests/allocations.rs`; `src/bin/bench_report.rs`
//! turns criterion's saved estimates into the table of `README.md`. The
//! queue benchmarks' peer processes are in [`processes`], the executor of
//! their fan-in in [`executor`].

pub mod executor;
#[cfg(target_os = "linux")]
pub mod processes;

use criterion::Criterion;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use vmbus_ring::{
    GpaRangeBuf, IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, PacketKind, ReadBatch, RingMem,
    TransferPageRange,
};

/// Copy sizes of the ring-memory benchmarks: 16 B to 64 KiB in steps of 4x.
pub const COPY_SIZES: [usize; 7] = [16, 64, 256, 1024, 4096, 16384, 65536];

/// Payload sizes of the one-thread benchmarks.
pub const PAYLOADS: [usize; 7] = [0, 64, 256, 1500, 4096, 16384, 65536];

/// Payload sizes of the two-thread and queue streaming benchmarks.
pub const STREAM_PAYLOADS: [usize; 4] = [64, 1500, 16384, 65536];

/// Data-area sizes of the two-thread and queue streaming benchmarks, by
/// name: a 256 KiB ring, and a 4 MiB one, larger than a core's L2 cache here
/// (1 MiB). In a ring that fits the consumer's L2, every line the producer
/// writes is one the consumer still holds from the previous lap, so each
/// write waits for the other core to give the line up; in the larger ring
/// the consumer's copy is gone to L3 by then. On this machine that is a
/// factor of two to four in streaming throughput.
pub const STREAM_RINGS: [(&str, usize); 2] = [("ring256k", 256 * 1024), ("ring4m", 4 * 1024 * 1024)];

/// Packets per commit in the batched benchmarks.
pub const BATCH: usize = 32;

/// Data-area size of the ring-memory benchmarks: room for the largest copy
/// at a wrapping offset.
pub const COPY_RING_LEN: usize = 128 * 1024;

/// Smallest ring the packet benchmarks use: 256 KiB, as a storage or network
/// channel would have, and small enough to stay in this machine's L2.
pub const MIN_RING_LEN: usize = 256 * 1024;

/// Criterion's warm-up in [`criterion()`]'s settings.
pub const WARM_UP: Duration = Duration::from_millis(300);

/// The criterion settings shared by every benchmark binary: short warm-up
/// and measurement so that a full run takes a few minutes. Command-line
/// options (`--measurement-time`, `--sample-size`, a filter) override them,
/// except where a group sets its own: the two-thread and queue groups
/// measure for 1.5 s whatever `--measurement-time` says.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(Duration::from_millis(900))
        .sample_size(20)
        .nresamples(20_000)
        .without_plots()
}

/// Data-area size for streaming packets of `packet_size` ring bytes,
/// `batch` per commit: a power of two with room for one more batch than is
/// in flight, and at least [`MIN_RING_LEN`].
pub fn ring_len(packet_size: usize, batch: usize) -> usize {
    ((batch + 1) * packet_size).next_power_of_two().max(MIN_RING_LEN)
}

/// The packet types the benchmarks send, by name.
pub const PACKET_TYPES: [&str; 4] = ["in_band", "completion", "transfer_pages", "gpa_direct"];

/// The type-specific headers the benchmark packets carry: one transfer-page
/// range (a network receive) and one 16 KiB GPA range over four pages (a
/// storage request).
#[derive(Debug, Clone)]
pub struct PacketHeaders {
    transfer_ranges: [TransferPageRange; 1],
    gpa: GpaRangeBuf,
}

impl Default for PacketHeaders {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketHeaders {
    /// The headers described above.
    pub fn new() -> Self {
        let mut gpa = GpaRangeBuf::new();
        gpa.push_contiguous(0x10_0000, 16384).expect("a 16 KiB range is valid");
        Self { transfer_ranges: [TransferPageRange::new(1514, 0)], gpa }
    }

    /// A packet of type `name` (one of [`PACKET_TYPES`]).
    pub fn packet(&self, name: &str) -> OutgoingPacket<'_> {
        match name {
            "in_band" => OutgoingPacket::in_band(1),
            "completion" => OutgoingPacket::completion(1),
            "transfer_pages" => OutgoingPacket::transfer_pages(1, 7, false, &self.transfer_ranges),
            "gpa_direct" => OutgoingPacket::gpa_direct(1, self.gpa.ranges()),
            other => panic!("unknown packet type {other}"),
        }
    }
}

/// Writes `batch` packets and commits them, then reads them back, copying
/// each payload into `out`, and commits the read: one thread's round trip.
/// Returns the payload bytes read.
#[inline]
pub fn ring_round_trip<M: RingMem>(
    writer: &mut OutgoingRing<M>,
    reader: &mut IncomingRing<M>,
    packet: &OutgoingPacket<'_>,
    payload: &[u8],
    out: &mut [u8],
    batch: usize,
) -> usize {
    let mut writes = writer.write_batch();
    for _ in 0..batch {
        writes.write(packet, &[payload]).expect("the ring has room for a batch");
    }
    black_box(writes.commit());
    let mut reads = reader.read_batch();
    let mut bytes = 0;
    for _ in 0..batch {
        let received = reads.next().expect("the batch just written is there").expect("a packet");
        let len = received.payload.len();
        reads.read_payload(received.payload, 0, &mut out[..len]).expect("the payload is in bounds");
        look_at_ranges(&reads, &received);
        bytes += len;
    }
    black_box(reads.commit());
    bytes
}

/// Looks at a received packet's range list, as a device would: the first
/// range of a transfer-pages or GPA-direct packet, read through the batch.
#[inline]
pub fn look_at_ranges<M: RingMem>(reads: &ReadBatch<'_, M>, received: &IncomingPacket) {
    match received.kind {
        PacketKind::InBand | PacketKind::Completion => {}
        PacketKind::TransferPages(_) => {
            black_box(reads.transfer_page_ranges(received).expect("the packet's own ranges").first());
        }
        PacketKind::GpaDirect(_) => {
            black_box(reads.gpa_ranges(received).expect("the packet's own ranges").iter().next());
        }
    }
}

/// Reads every packet there is (up to `max`), copying each payload into
/// `out`, and commits them with one store; returns how many were read.
#[inline]
pub fn drain<M: RingMem>(reader: &mut IncomingRing<M>, out: &mut [u8], max: usize) -> usize {
    let mut reads = reader.read_batch();
    let mut count = 0;
    while count < max {
        match reads.next() {
            Ok(Some(received)) => {
                let len = received.payload.len();
                reads.read_payload(received.payload, 0, &mut out[..len]).expect("the payload is in bounds");
                look_at_ranges(&reads, &received);
                count += 1;
            }
            Ok(None) => break,
            Err(error) => panic!("the benchmark ring went bad: {error}"),
        }
    }
    black_box(reads.commit());
    count
}

/// A heap buffer that starts on a page boundary, as ring memory does. The
/// benchmarks' private buffers (the payload written, the buffer read into)
/// and the bounds' are all of these, so that every figure and its bound copy
/// between the same alignments. Where a plain `Vec` lands is up to the
/// allocator, and it matters: a large allocation starts 16 bytes past a
/// page, which splits every 64-byte store across two cache lines, and a
/// small one may straddle a page, which on this machine made each 256-byte
/// copy out of the ring several nanoseconds slower.
#[derive(Debug, Clone)]
pub struct PageAligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageAligned {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Self::filled(len, 0)
    }

    /// `len` bytes of `byte`.
    pub fn filled(len: usize, byte: u8) -> Self {
        let storage = vec![byte; len + 4096];
        let start = storage.as_ptr().align_offset(4096);
        Self { storage, start, len }
    }
}

impl std::ops::Deref for PageAligned {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for PageAligned {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// The memcpy bound: `copy_from_slice` of the benchmark's payload into and
/// out of a page-aligned buffer the size of the ring, walking through it with
/// the packets' stride and splitting a copy at the end as the ring does.
///
/// It is kept lean, as a bound should be: the offset lives in a register
/// during a batch, and only the copied bytes are hidden from the optimiser
/// (`black_box` of the buffers, which keeps the copies from being elided).
#[derive(Debug)]
pub struct CopyBound {
    ring: PageAligned,
    payload: PageAligned,
    out: PageAligned,
    stride: usize,
    offset: usize,
}

impl CopyBound {
    /// A bound for `payload_len`-byte payloads in packets of `stride` ring
    /// bytes over a `ring_len`-byte working set.
    pub fn new(payload_len: usize, stride: usize, ring_len: usize) -> Self {
        assert!(payload_len <= ring_len && stride > 0 && stride <= ring_len);
        Self {
            ring: PageAligned::new(ring_len),
            payload: PageAligned::filled(payload_len, 2),
            out: PageAligned::new(payload_len),
            stride,
            offset: 0,
        }
    }

    /// The copies a batch of `batch` one-thread round trips makes: every
    /// payload in, then every payload out (two copies a byte).
    #[inline]
    pub fn round_trip(&mut self, batch: usize) {
        let start = self.offset;
        let ring = &mut self.ring[..];
        let mut offset = start;
        for _ in 0..batch {
            copy_in(ring, &self.payload, offset);
            offset = advance(offset, self.stride, ring.len());
        }
        offset = start;
        for _ in 0..batch {
            copy_out(ring, &mut self.out, offset);
            offset = advance(offset, self.stride, ring.len());
        }
        self.offset = offset;
    }

    /// One copy a byte: the payload into the working set, as a producer does.
    #[inline]
    pub fn copy_in(&mut self) {
        copy_in(&mut self.ring, &self.payload, self.offset);
        self.offset = advance(self.offset, self.stride, self.ring.len());
    }

    /// One copy a byte: out of the working set into a private buffer, as a
    /// consumer does.
    #[inline]
    pub fn copy_out(&mut self) {
        copy_out(&self.ring, &mut self.out, self.offset);
        self.offset = advance(self.offset, self.stride, self.ring.len());
    }
}

#[inline]
fn copy_in(ring: &mut [u8], payload: &[u8], offset: usize) {
    let first = payload.len().min(ring.len() - offset);
    ring[offset..offset + first].copy_from_slice(&payload[..first]);
    if first < payload.len() {
        ring[..payload.len() - first].copy_from_slice(&payload[first..]);
    }
    black_box(ring);
}

#[inline]
fn copy_out(ring: &[u8], out: &mut [u8], offset: usize) {
    let first = out.len().min(ring.len() - offset);
    out[..first].copy_from_slice(&ring[offset..offset + first]);
    if first < out.len() {
        let rest = out.len() - first;
        out[first..].copy_from_slice(&ring[..rest]);
    }
    black_box(out);
}

/// The next offset, as the ring's index arithmetic does it: a compare, not a
/// division.
#[inline]
fn advance(offset: usize, stride: usize, len: usize) -> usize {
    let next = offset + stride;
    if next >= len {
        next - len
    } else {
        next
    }
}

/// The calling thread pinned to one CPU until this is dropped, which
/// restores the CPUs it could run on before.
///
/// The two-thread benchmarks pin the consumer (criterion's thread) and the
/// producer to different CPUs: left to the scheduler, a freshly spawned
/// producer often starts on its consumer's CPU and stays there for a while,
/// and two threads taking turns on one CPU measure the scheduler, not the
/// ring. Does nothing where there are fewer than two CPUs to choose from, or
/// off Linux.
#[derive(Debug)]
pub struct Pinned {
    #[cfg(target_os = "linux")]
    previous: Option<rustix::thread::CpuSet>,
}

impl Pinned {
    /// Pins the calling thread to the `which`-th (0 or 1) of the CPUs the
    /// process could run on when this was first called. (Not the calling
    /// thread's own: a thread spawned by a pinned thread inherits its single
    /// CPU, and must still be pinned to the other one.)
    pub fn to(which: usize) -> Self {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
            let Some(cpu) = Self::cpu(which) else { return Self { previous: None } };
            let Ok(previous) = sched_getaffinity(None) else { return Self { previous: None } };
            let mut one = CpuSet::new();
            one.set(cpu);
            let previous = sched_setaffinity(None, &one).ok().map(|()| previous);
            Self { previous }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = which;
            Self {}
        }
    }

    /// The number of the CPU [`to`](Self::to)`(which)` pins to; `None`
    /// where it pins nothing (fewer than two CPUs, or off Linux).
    pub fn cpu(which: usize) -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{sched_getaffinity, CpuSet};
            use std::sync::OnceLock;
            static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
            let cpus = CPUS.get_or_init(|| match sched_getaffinity(None) {
                Ok(allowed) => (0..CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu)).collect(),
                Err(_) => Vec::new(),
            });
            (cpus.len() >= 2).then(|| cpus[which % cpus.len()])
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = which;
            None
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(previous) = &self.previous {
            let _ = rustix::thread::sched_setaffinity(None, previous);
        }
    }
}

/// Waits a moment in a polling loop: a CPU spin-wait hint, and every
/// [`SPINS_PER_YIELD`]th time a yield of the thread, so that on a machine
/// with more runnable threads than cores (a shared one, or the queue
/// benchmarks' `Driver` thread) a poller does not hold its core for a whole
/// time slice while the thread it waits for is queued behind it.
#[inline]
pub fn spin() {
    thread_local! {
        static SPINS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let spins = SPINS.with(|spins| {
        let count = spins.get().wrapping_add(1);
        spins.set(count);
        count
    });
    if spins % SPINS_PER_YIELD == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// How often [`spin`] yields.
pub const SPINS_PER_YIELD: u32 = 256;

/// Runs `peer` on a new thread pinned to the second CPU and `timed` on the
/// calling thread pinned to the first (see [`Pinned`]), and returns how long
/// `timed` took, counted from just before it releases `peer`: the setup of
/// the streaming benchmarks (a producer and a consumer) and the ping-pong
/// ones (a server and a client).
///
/// `peer` waits, spinning (see [`spin`]), on a start flag that is set right
/// after the clock starts, so spawning and pinning its thread are not
/// measured. The call returns once both have finished, but `peer`'s work
/// after `timed` returns is not measured. Anything `timed` needs is best
/// prepared before the call.
pub fn time_on_two_cpus(peer: impl FnOnce() + Send, timed: impl FnOnce()) -> Duration {
    let go = AtomicBool::new(false);
    let _here = Pinned::to(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            let _there = Pinned::to(1);
            while !go.load(Ordering::Acquire) {
                spin();
            }
            peer();
        });
        let start = Instant::now();
        go.store(true, Ordering::Release);
        timed();
        start.elapsed()
    })
}

/// The id of the memcpy bound a benchmark id is compared with, if it has one.
///
/// The naming scheme, one line per benchmark binary:
/// - `ring_memory/<memory>/<write|read>/<straight|wrap>/<size>` against
///   `ring_memory/memcpy/<size>`;
/// - `one_thread/<type>/<per_packet|batch32>/<payload>` against
///   `one_thread/memcpy_x2/<per_packet|batch32>/<payload>` (two copies a byte);
/// - `two_threads/<ring>/<per_packet|batch32>/<payload>` against
///   `two_threads/memcpy/<ring>/<payload>` (each thread copies each byte
///   once, in parallel, so one copy a byte is the bound);
/// - `queue/stream/<transport>/<api>/<mode>/<payload>` (4 MiB rings) against
///   `two_threads/memcpy/ring4m/<payload>`, and `queue/pingpong/...` against
///   `queue/memcpy_x4/<payload>` (request and reply, each copied in and out);
/// - `queue/processes/<placement>/<signal>/<api>/<payload>` (a round trip
///   between two processes) against
///   `queue/processes/<placement>/raw_eventfd/<payload>`, a bare eventfd
///   ping-pong between two processes placed alike: not a memcpy bound, but
///   the limit for a signalled wake-up in each direction;
/// - `queue/fan_in/<commit>/<payload>` (1,000 channels, their signals watched
///   by one `Driver`) against `queue/fan_in/polled_rings/<commit>/<payload>`:
///   the same packets through the same number of bare rings, polled by one
///   thread, with no queue and no signals.
pub fn bound_of(id: &str) -> Option<String> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        ["ring_memory", memory, _, _, size] if *memory != "memcpy" => Some(format!("ring_memory/memcpy/{size}")),
        ["one_thread", kind, commit, payload] if !kind.starts_with("memcpy") => {
            Some(format!("one_thread/memcpy_x2/{commit}/{payload}"))
        }
        ["two_threads", ring, _, payload] if *ring != "memcpy" => Some(format!("two_threads/memcpy/{ring}/{payload}")),
        ["queue", "stream", _, _, _, payload] => Some(format!("two_threads/memcpy/ring4m/{payload}")),
        ["queue", "pingpong", _, _, _, payload] => Some(format!("queue/memcpy_x4/{payload}")),
        ["queue", "processes", placement, _, _, payload] => {
            Some(format!("queue/processes/{placement}/raw_eventfd/{payload}"))
        }
        ["queue", "fan_in", commit, payload] => Some(format!("queue/fan_in/polled_rings/{commit}/{payload}")),
        _ => None,
    }
}
