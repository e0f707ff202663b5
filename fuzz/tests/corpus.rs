//! Every target's body over the generated seeds, as ordinary tests: on the
//! stable toolchain, without libFuzzer. Also checks that the seeds hold what
//! their names say, and that the `ops` seeds decode to the ops they encode.
//!
//! Crash inputs kept in `artifacts/<target>/` run too, so a minimised crash
//! stays a regression test here once it is fixed.

use std::path::Path;
use vmbus_fuzz::seeds::{self, Seed};
use vmbus_ring::{load_image, DumpEnd, RingDump};

#[global_allocator]
static ALLOCATOR: vmbus_fuzz::alloc_count::CountingAlloc = vmbus_fuzz::alloc_count::CountingAlloc;

fn body(target: &str) -> fn(&[u8]) {
    match target {
        "parse" => vmbus_fuzz::parse::run,
        "ops" => vmbus_fuzz::ops::run_bytes,
        "gpa_ranges" => vmbus_fuzz::gpa_ranges::run,
        "pipe" => vmbus_fuzz::pipe::run,
        other => panic!("no target {other}"),
    }
}

fn seeds_of(target: &str) -> Vec<Seed> {
    seeds::all().into_iter().filter(|seed| seed.target == target).collect()
}

fn run_seeds(target: &str) {
    let seeds = seeds_of(target);
    assert!(seeds.len() >= 8, "only {} seeds for {target}", seeds.len());
    for seed in seeds {
        eprintln!("{target}/{}", seed.name);
        body(target)(&seed.bytes);
    }
    // Inputs libFuzzer kept (crashes, timeouts), if any: they must pass now.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts").join(target);
    if let Ok(entries) = std::fs::read_dir(artifacts) {
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            body(target)(&std::fs::read(path).unwrap());
        }
    }
}

#[test]
fn parse_seeds() {
    run_seeds("parse");
}

#[test]
fn ops_seeds() {
    run_seeds("ops");
}

#[test]
fn gpa_ranges_seeds() {
    run_seeds("gpa_ranges");
}

#[test]
fn pipe_seeds() {
    run_seeds("pipe");
}

#[test]
fn seed_names_are_unique_per_target() {
    let mut names: Vec<_> = seeds::all().into_iter().map(|seed| (seed.target, seed.name)).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
}

/// The `parse` seeds decode (through the same layout the target reads) to
/// rings that are what their names say.
#[test]
fn parse_seeds_hold_what_they_say() {
    for seed in seeds_of("parse") {
        let input = vmbus_fuzz::parse::RingInput::decode(&seed.bytes);
        let mem = vmbus_ring::FlatRingMem::new(input.data_len() as usize).unwrap();
        let mut image = vec![0; 4096];
        for (at, word) in [
            (0, input.write_index),
            (4, input.read_index),
            (8, input.interrupt_mask),
            (12, input.pending_send_size),
            (64, input.feature_bits),
        ] {
            image[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        image.extend(input.data_area());
        let dump = RingDump::decode(&load_image(&image).unwrap());
        drop(mem);
        let name = &seed.name;
        if name.starts_with("corrupt-control") {
            assert!(matches!(dump.end, DumpEnd::CorruptControl(_)), "{name}: {dump}");
        } else if name.starts_with("corrupt-") {
            assert!(matches!(dump.end, DumpEnd::CorruptPacket { .. }), "{name}: {dump}");
            assert_eq!(dump.packets.len(), 1, "{name}: {dump}");
        } else {
            assert!(dump.is_clean(), "{name}: {dump}");
        }
        if name.starts_with("every-kind") || name.starts_with("wrap") {
            assert_eq!(dump.packets.len(), 5, "{name}: {dump}");
            assert!(dump.packets.iter().all(|packet| packet.is_supported()), "{name}: {dump}");
        }
        if name.starts_with("wrap") {
            assert!(dump.packets.iter().any(|packet| packet.wraps), "{name}: {dump}");
        }
        if name.starts_with("unsupported") {
            assert_eq!(dump.packets.len(), 2, "{name}: {dump}");
            assert!(!dump.packets[0].is_supported(), "{name}: {dump}");
        }
    }
}

/// `ops::encode` writes what `arbitrary` reads back as the same ops.
#[test]
fn ops_seeds_decode_to_their_ops() {
    for seed in seeds_of("ops") {
        let ops = vmbus_fuzz::ops::decode(&seed.bytes).expect("decodes");
        assert_eq!(vmbus_fuzz::ops::encode(&ops), seed.bytes, "{}", seed.name);
        if seed.name != "empty" {
            assert!(!ops.is_empty(), "{}", seed.name);
        }
    }
}

/// The allocation counter works, so the `gpa_ranges` check means something.
#[test]
fn allocation_counter_counts() {
    let (_, counted) = vmbus_fuzz::alloc_count::count_allocations(|| std::hint::black_box(vec![1u8; 10]));
    assert_eq!(counted, Some(1));
}
