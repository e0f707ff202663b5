//! One thread: write + commit + read + copy-out + commit, for each packet
//! type and payload size, committing each packet or each batch of 32; and the
//! bound, two `copy_from_slice` a payload byte over a working set the size of
//! the ring.
//!
//! `cargo bench -p vmbus_benches --bench one_thread [-- FILTER]`, e.g.
//! `-- one_thread/in_band/per_packet`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vmbus_benches::{
    criterion, ring_len, ring_round_trip, CopyBound, PacketHeaders, PageAligned, BATCH, PACKET_TYPES, PAYLOADS,
};
use vmbus_ring::{FlatRingMem, IncomingRing, OutgoingRing};

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

criterion_group! {
    name = benches;
    config = criterion();
    targets = one_thread
}
criterion_main!(benches);
