//! One thread's ring round trip in a loop, for profilers: what the
//! `one_thread` benchmark measures, without criterion around it, so that
//! `valgrind --tool=callgrind` counts only the ring's instructions and
//! `perf record` samples only its code.
//!
//! ```sh
//! cargo build --release -p vmbus_benches --bin round_trip_loop
//! valgrind --tool=callgrind target/release/round_trip_loop in_band 256 32 64000
//! perf record -e cpu-clock target/release/round_trip_loop in_band 256 1
//! ```
//!
//! Arguments: packet type (one of `vmbus_benches::PACKET_TYPES`), payload
//! bytes, packets per commit, and packets per pass (default 1,000,000). It
//! makes eight passes and prints the best pass's time per packet. The ring
//! state lives behind a pointer and each batch is a call that is not inlined,
//! as in the benchmark, so the compiler sees what a user's code would: a
//! ring in memory, not in registers. Unlike the benchmark, it holds its
//! payload and output buffers as slices, so that the counts do not include
//! the bounds checks of taking them from their page-aligned storage (15
//! instructions a batch).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;
use vmbus_benches::{ring_len, ring_round_trip, PacketHeaders, PageAligned, PACKET_TYPES};
use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};

/// Largest payload: a packet's payload must fit a descriptor's length field.
const MAX_PAYLOAD: usize = 65536;

/// Everything one round trip needs.
struct RoundTrip<'a> {
    writer: OutgoingRing<FlatRingMem>,
    reader: IncomingRing<FlatRingMem>,
    packet: OutgoingPacket<'a>,
    payload: &'a [u8],
    out: &'a mut [u8],
    batch: usize,
}

#[inline(never)]
fn run_batch(state: &mut RoundTrip<'_>) -> usize {
    ring_round_trip(&mut state.writer, &mut state.reader, &state.packet, state.payload, state.out, state.batch)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("in_band", String::as_str);
    let number = |index: usize, default: usize| args.get(index).map_or(Ok(default), |arg| arg.parse::<usize>());
    let (Ok(payload), Ok(batch), Ok(packets)) = (number(1, 256), number(2, 1), number(3, 1_000_000)) else {
        eprintln!("usage: round_trip_loop [TYPE [PAYLOAD [BATCH [PACKETS]]]]");
        return ExitCode::FAILURE;
    };
    if !PACKET_TYPES.contains(&kind) || payload > MAX_PAYLOAD || !(1..=1024).contains(&batch) || packets < batch {
        eprintln!(
            "round_trip_loop: TYPE is one of {PACKET_TYPES:?}, PAYLOAD at most {MAX_PAYLOAD}, BATCH 1 to 1024, \
             PACKETS at least BATCH"
        );
        return ExitCode::FAILURE;
    }
    let headers = PacketHeaders::new();
    let packet = headers.packet(kind);
    let mem = match FlatRingMem::new(ring_len(packet.size(payload), batch)) {
        Ok(mem) => mem,
        Err(error) => {
            eprintln!("round_trip_loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(writer), Ok(reader)) = (OutgoingRing::new(mem.clone()), IncomingRing::new(mem)) else {
        eprintln!("round_trip_loop: a fresh ring did not open");
        return ExitCode::FAILURE;
    };
    let bytes = PageAligned::filled(payload, 0xa5);
    let mut out = PageAligned::new(payload + 8);
    let mut state = Box::new(RoundTrip { writer, reader, packet, payload: &bytes, out: &mut out, batch });
    let batches = packets / batch;
    let mut best = f64::MAX;
    for _ in 0..8 {
        let start = Instant::now();
        for _ in 0..batches {
            black_box(run_batch(black_box(&mut state)));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / (batches * batch) as f64);
    }
    println!("{kind}, {payload} B, {batch} per commit: {best:.2} ns a packet ({:.1} M/s), best of 8", 1e3 / best);
    ExitCode::SUCCESS
}
