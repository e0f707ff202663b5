//! Ring memory: copies into and out of the data area, 16 B to 64 KiB, at an
//! offset where the copy is straight and at one where it wraps around the end
//! of the data area, for each kind of ring memory; and the memcpy bound,
//! `copy_from_slice` of the same sizes within a buffer of the same size.
//!
//! `cargo bench -p vmbus_benches --bench ring_memory [-- FILTER]`, e.g.
//! `-- ring_memory/double/`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vmbus_benches::{criterion, PageAligned, COPY_RING_LEN, COPY_SIZES};
use vmbus_ring::{FlatRingMem, HeapRingPages, MappedRingMem, MappingLayout, PagedRingMem, RingMem};

fn ring_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_memory");
    memcpy_bound(&mut group);
    copies(&mut group, "flat", FlatRingMem::new(COPY_RING_LEN).unwrap());
    copies(&mut group, "paged", PagedRingMem::new(&HeapRingPages::new(COPY_RING_LEN / 4096)).unwrap());
    let (mapped, _fd) = MappedRingMem::create_memfd(COPY_RING_LEN, MappingLayout::Single).unwrap();
    copies(&mut group, "mapped", mapped);
    let (double, _fd) = MappedRingMem::create_memfd(COPY_RING_LEN, MappingLayout::Double).unwrap();
    copies(&mut group, "double", double);
    group.finish();
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Where a copy of `size` bytes starts: 64 bytes into the data area, or half
/// of it before the end (rounded to 8) so that it wraps.
fn offsets(size: usize) -> [(&'static str, usize); 2] {
    [("straight", 64), ("wrap", COPY_RING_LEN - (size / 2).next_multiple_of(8))]
}

fn copies<M: RingMem>(group: &mut Group<'_>, memory: &str, mem: M) {
    for size in COPY_SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut private = private_buffer(size);
        let buf = &mut private[PRIVATE_OFFSET..];
        for (name, offset) in offsets(size) {
            group.bench_function(BenchmarkId::new(format!("{memory}/write/{name}"), size), |b| {
                b.iter(|| mem.write_data(black_box(offset), black_box(&*buf)))
            });
            group.bench_function(BenchmarkId::new(format!("{memory}/read/{name}"), size), |b| {
                b.iter(|| {
                    mem.read_data(black_box(offset), black_box(&mut *buf));
                })
            });
        }
    }
}

/// Where the private side of every copy starts within a page. Both the ring
/// copies and the bound use the same private layout, and it is fixed rather
/// than wherever the allocator puts a `Vec`: how far apart source and
/// destination are modulo 4 KiB changes the speed of a copy (a load that
/// looks like it aliases an earlier store to the same page offset waits for
/// it). With `Vec`s, copies of 1 to 4 KiB moved by up to 70% from one run to
/// the next.
const PRIVATE_OFFSET: usize = 2048;

/// A buffer for the private side of a copy of `size` bytes, to be used from
/// [`PRIVATE_OFFSET`] on.
fn private_buffer(size: usize) -> PageAligned {
    let mut buffer = PageAligned::new(PRIVATE_OFFSET + size);
    buffer.fill(0x5a);
    buffer
}

/// `copy_from_slice` of each size into a page-aligned buffer the size of the
/// data area, at the straight offset: the bound for both directions.
fn memcpy_bound(group: &mut Group<'_>) {
    let mut area = PageAligned::new(COPY_RING_LEN);
    for size in COPY_SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let private = private_buffer(size);
        let buf = &private[PRIVATE_OFFSET..];
        let offset = offsets(size)[0].1;
        group.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                let offset = black_box(offset);
                area[offset..offset + size].copy_from_slice(black_box(buf));
                black_box(&mut area);
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = ring_memory
}
criterion_main!(benches);
