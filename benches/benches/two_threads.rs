//! Two threads, pinned to two CPUs (see `Pinned`): a producer streaming
//! in-band packets to a consumer that copies each payload out, both spinning
//! (no signals), committing each
//! packet or every 32; and the bound, one `copy_from_slice` a payload byte
//! over a working set the size of the ring (each thread copies each byte
//! once, in parallel).
//!
//! Over two ring sizes (see `STREAM_RINGS`): 256 KiB, which stays in a
//! core's L2 here, and 4 MiB, which does not. One iteration is one packet;
//! criterion reports packets/s and bytes/s.
//!
//! `cargo bench -p vmbus_benches --bench two_threads [-- FILTER]`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use vmbus_benches::{
    criterion, drain, spin, time_on_two_cpus, CopyBound, PageAligned, Pinned, BATCH, STREAM_PAYLOADS, STREAM_RINGS,
};
use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, RingMem, WriteError};

const COMMITS: [(&str, usize); 2] = [("per_packet", 1), ("batch32", BATCH)];

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    group.measurement_time(Duration::from_millis(1500));
    let packet = OutgoingPacket::in_band(1);
    // How far apart the two CPUs are in this run: the cross-thread figures
    // follow it (see the README).
    group.throughput(Throughput::Elements(1));
    group.bench_function("core_to_core/round_trip", |b| b.iter_custom(round_trip));
    for (ring, ring_len) in STREAM_RINGS {
        for payload in STREAM_PAYLOADS {
            group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: payload as u64 });
            let mut bound = CopyBound::new(payload, packet.size(payload), ring_len);
            group.bench_function(BenchmarkId::new(format!("memcpy/{ring}"), payload), |b| b.iter(|| bound.copy_in()));
        }
    }
    for (ring, ring_len) in STREAM_RINGS {
        for (commit, batch) in COMMITS {
            for payload in STREAM_PAYLOADS {
                let mem = FlatRingMem::new(ring_len).unwrap();
                let mut writer = OutgoingRing::new(mem.clone()).unwrap();
                let mut reader = IncomingRing::new(mem).unwrap();
                let source = PageAligned::filled(payload, 0xa5);
                let mut out = PageAligned::new(payload + 8);
                group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: payload as u64 });
                group.bench_function(BenchmarkId::new(format!("{ring}/{commit}"), payload), |b| {
                    b.iter_custom(|packets| {
                        stream(&mut writer, &mut reader, &packet, &source, &mut out, batch, packets as usize)
                    })
                });
            }
        }
    }
    group.finish();
}

/// Bounces a word between this thread and another, pinned to the two
/// CPUs, `round_trips` times: the cost of one cache line's round trip
/// between the cores, which bounds anything that waits for the other side.
fn round_trip(round_trips: u64) -> Duration {
    let ball = AtomicU64::new(0);
    let _here = Pinned::to(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            let _there = Pinned::to(1);
            for trip in 0..round_trips {
                while ball.load(Ordering::Acquire) != 2 * trip + 1 {
                    std::hint::spin_loop();
                }
                ball.store(2 * trip + 2, Ordering::Release);
            }
        });
        let start = Instant::now();
        for trip in 0..round_trips {
            ball.store(2 * trip + 1, Ordering::Release);
            while ball.load(Ordering::Acquire) != 2 * trip + 2 {
                std::hint::spin_loop();
            }
        }
        start.elapsed()
    })
}

/// Streams `packets` packets from a producer thread to this thread and
/// returns the time from the start signal to the last packet read (see
/// [`time_on_two_cpus`]).
fn stream<M: RingMem + Send>(
    writer: &mut OutgoingRing<M>,
    reader: &mut IncomingRing<M>,
    packet: &OutgoingPacket<'_>,
    payload: &[u8],
    out: &mut [u8],
    batch: usize,
    packets: usize,
) -> Duration {
    time_on_two_cpus(
        || produce(writer, packet, payload, batch, packets),
        || {
            let mut received = 0;
            while received < packets {
                let read = drain(reader, out, batch);
                if read == 0 {
                    spin();
                }
                received += read;
            }
        },
    )
}

/// Writes `packets` packets, committing every `batch` (or as many as fit).
fn produce<M: RingMem>(
    writer: &mut OutgoingRing<M>,
    packet: &OutgoingPacket<'_>,
    payload: &[u8],
    batch: usize,
    packets: usize,
) {
    let mut sent = 0;
    while sent < packets {
        let want = batch.min(packets - sent);
        let mut writes = writer.write_batch();
        while writes.packets() < want {
            match writes.write(packet, &[payload]) {
                Ok(()) => {}
                Err(WriteError::Full { .. }) => break,
                Err(error) => panic!("write failed: {error}"),
            }
        }
        let written = writes.packets();
        let _ = writes.commit();
        sent += written;
        if written < want {
            spin();
        }
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = two_threads
}
criterion_main!(benches);
