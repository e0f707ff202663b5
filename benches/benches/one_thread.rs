//! One thread: write + commit + read + copy-out + commit, for each packet
//! type and payload size, committing each packet or each batch of 32; and the
//! bound, two `copy_from_slice` a payload byte over a working set the size of
//! the ring. Then what one commit costs: a one-packet batch committed, and
//! the same batch reverted, on each side; the difference is the commit (its
//! release store, its fence and its signal check).
//!
//! `cargo bench -p vmbus_benches --bench one_thread [-- FILTER]`, e.g.
//! `-- one_thread/in_band/per_packet`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vmbus_benches::{
    criterion, ring_len, ring_round_trip, CopyBound, PacketHeaders, PageAligned, BATCH, PACKET_TYPES, PAYLOADS,
};
use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing};

/// Commit modes: packets per commit.
const COMMITS: [(&str, usize); 2] = [("per_packet", 1), ("batch32", BATCH)];

fn throughput(payload: usize, packets: usize) -> Throughput {
    Throughput::ElementsAndBytes { elements: packets as u64, bytes: (payload * packets) as u64 }
}

fn one_thread(c: &mut Criterion) {
    let headers = PacketHeaders::new();
    let mut group = c.benchmark_group("one_thread");
    for (commit, batch) in COMMITS {
        for payload in PAYLOADS {
            // The bound walks the same working set as the in-band packets do.
            let stride = headers.packet("in_band").size(payload);
            group.throughput(throughput(payload, batch));
            let mut bound = CopyBound::new(payload, stride, ring_len(stride, batch));
            group.bench_function(BenchmarkId::new(format!("memcpy_x2/{commit}"), payload), |b| {
                b.iter(|| bound.round_trip(batch))
            });
        }
    }
    for kind in PACKET_TYPES {
        let packet = headers.packet(kind);
        for (commit, batch) in COMMITS {
            for payload in PAYLOADS {
                let mem = FlatRingMem::new(ring_len(packet.size(payload), batch)).unwrap();
                let mut writer = OutgoingRing::new(mem.clone()).unwrap();
                let mut reader = IncomingRing::new(mem).unwrap();
                let source = PageAligned::filled(payload, 0xa5);
                let mut out = PageAligned::new(payload + 8);
                group.throughput(throughput(payload, batch));
                group.bench_function(BenchmarkId::new(format!("{kind}/{commit}"), payload), |b| {
                    b.iter(|| ring_round_trip(&mut writer, &mut reader, &packet, &source, &mut out, batch))
                });
            }
        }
    }
    group.finish();
}

/// Reads and frees every packet in the ring.
fn drain(reader: &mut IncomingRing<FlatRingMem>) {
    let mut batch = reader.read_batch();
    while batch.next().expect("an honest ring").is_some() {}
    let _ = batch.commit();
}

/// Packets the commit benchmarks write or read between two refills: few
/// enough that a 256 KiB ring holds them.
const COMMIT_RUN: usize = 4096;

/// The writer and reader of one ring, as the commit benchmarks share them.
type Rings = (OutgoingRing<FlatRingMem>, IncomingRing<FlatRingMem>);

/// `runs` times: `prepare` (untimed), then `COMMIT_RUN` calls of `one`,
/// timed; returns the time of the timed parts.
fn time_runs(
    runs: u64,
    rings: &mut Rings,
    mut prepare: impl FnMut(&mut Rings),
    mut one: impl FnMut(&mut Rings),
) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..runs {
        prepare(rings);
        let start = Instant::now();
        for _ in 0..COMMIT_RUN {
            one(rings);
        }
        timed += start.elapsed();
    }
    timed
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(COMMIT_RUN as u64));
    let packet = OutgoingPacket::in_band(1);
    let mem = FlatRingMem::new(ring_len(packet.size(8), COMMIT_RUN)).unwrap();
    let mut rings = (OutgoingRing::new(mem.clone()).unwrap(), IncomingRing::new(mem).unwrap());
    // The writer: one 8-byte packet a batch, committed (the reader drained
    // between runs, untimed) or reverted.
    for (name, publish) in [("commit", true), ("revert", false)] {
        group.bench_function(BenchmarkId::new("writer", name), |b| {
            b.iter_custom(|runs| {
                time_runs(
                    runs,
                    &mut rings,
                    |(_, reader)| drain(reader),
                    |(writer, _)| {
                        let mut batch = writer.write_batch();
                        batch.write(&packet, &[&[7; 8]]).expect("room for a run");
                        if publish {
                            black_box(batch.commit());
                        } else {
                            batch.revert();
                        }
                    },
                )
            })
        });
    }
    // The reader: one packet a batch, committed (the writer refilling the
    // ring between runs, untimed) or reverted (the same packet read again).
    let refill = |(writer, reader): &mut Rings| {
        drain(reader);
        let mut batch = writer.write_batch();
        for _ in 0..COMMIT_RUN {
            batch.write(&packet, &[&[7; 8]]).expect("room for a run");
        }
        let _ = batch.commit();
    };
    for (name, free) in [("commit", true), ("revert", false)] {
        group.bench_function(BenchmarkId::new("reader", name), |b| {
            b.iter_custom(|runs| {
                time_runs(runs, &mut rings, refill, |(_, reader)| {
                    let mut batch = reader.read_batch();
                    black_box(batch.next().expect("an honest ring"));
                    if free {
                        black_box(batch.commit());
                    } else {
                        batch.revert();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = one_thread, commit
}
criterion_main!(benches);
