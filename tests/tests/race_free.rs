//! Honest endpoints of one process on two threads, with a live dump of
//! their ring on a third: what a VMM does when it logs a ring it is serving.
//! No access may be a data race by Rust's rules; CI runs this file under
//! ThreadSanitizer (tests/README.md), which reports any that is. (TSan does
//! not check the rule against racing atomics of different sizes, which a
//! dump's word loads and a payload copy in flight can break: see
//! `RingDump::decode`.)
//!
//! It also checks what the threads rely on: every packet arrives intact and
//! in order while the dumps run, and every dump decodes without a panic.
//!
//! Bounds: `RACE_FREE_PACKETS` packets per run (default 20,000), and 10
//! seconds at most.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vmbus_ring::{
    ring_image, FlatRingMem, IncomingRing, OutgoingPacket, OutgoingRing, RingDump, RingMem, RingState, WriteError,
};

const DATA_LEN: usize = 4 * 4096;
const TIME_LIMIT: Duration = Duration::from_secs(10);

fn packets() -> u64 {
    std::env::var("RACE_FREE_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// Packet `n`'s payload: a length that visits every copy size class (inline
/// moves, vector loop, string move) and bytes that name `n`.
fn payload(n: u64) -> Vec<u8> {
    let len = [0, 3, 8, 13, 40, 64, 65, 200, 1500, 4100][n as usize % 10];
    (0..len).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
}

fn write_all(mut writer: OutgoingRing<FlatRingMem>, count: u64, deadline: Instant) -> u64 {
    let mut n = 0;
    while n < count && Instant::now() < deadline {
        let bytes = payload(n);
        let mut batch = writer.write_batch();
        match batch.write(&OutgoingPacket::in_band(n), &[&bytes]) {
            Ok(()) => {
                // Both ends poll, so no signal is delivered.
                let _ = batch.commit();
                n += 1;
            }
            Err(WriteError::Full { .. }) => std::thread::yield_now(),
            Err(other) => panic!("packet {n}: {other}"),
        }
    }
    n
}

fn read_all(mut reader: IncomingRing<FlatRingMem>, count: u64, deadline: Instant) -> u64 {
    let mut n = 0;
    let mut bytes = Vec::new();
    while n < count && Instant::now() < deadline {
        let mut batch = reader.read_batch();
        match batch.next() {
            Ok(Some(packet)) => {
                assert_eq!(packet.transaction_id, n, "packets arrive in order");
                let expected = payload(n);
                bytes.resize(expected.len(), 0);
                batch.read_payload(packet.payload, 0, &mut bytes).expect("payload in bounds");
                assert_eq!(bytes, expected, "packet {n} arrives intact");
                let _ = batch.commit();
                n += 1;
            }
            Ok(None) => std::thread::yield_now(),
            Err(other) => panic!("packet {n}: {other}"),
        }
    }
    n
}

/// Dumps `mem` in every way the crate offers until `stop`; returns how many.
fn dump_until(mem: &FlatRingMem, stop: &AtomicBool) -> u64 {
    let mut dumps = 0;
    while !stop.load(Ordering::Relaxed) {
        let state = RingState::read(mem);
        assert_eq!(state.data_len as usize, mem.data_len());
        let image = ring_image(mem);
        assert_eq!(image.len(), 4096 + DATA_LEN);
        let dump = RingDump::decode(mem);
        assert!(dump.packets.len() <= DATA_LEN / 16, "a dump lists at most one packet per 16 bytes");
        dumps += 1;
    }
    dumps
}

#[test]
fn honest_endpoints_and_a_live_dump_exchange_every_packet() {
    let count = packets();
    let deadline = Instant::now() + TIME_LIMIT;
    let mem = FlatRingMem::new(DATA_LEN).unwrap();
    let writer = OutgoingRing::new(mem.clone()).unwrap();
    let reader = IncomingRing::new(mem.clone()).unwrap();
    let stop = AtomicBool::new(false);
    let (written, read, dumps) = std::thread::scope(|scope| {
        let dumper = scope.spawn(|| dump_until(&mem, &stop));
        let writer = scope.spawn(move || write_all(writer, count, deadline));
        let read = read_all(reader, count, deadline);
        let written = writer.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        (written, read, dumper.join().unwrap())
    });
    println!("{written} packets written, {read} read, {dumps} dumps taken");
    assert_eq!(written, read, "every packet written was read");
    assert!(read == count || Instant::now() >= deadline, "the exchange stopped early");
    assert!(dumps > 0, "the dumper ran");
}

/// A request/response exchange through `vmbus_channel` queues, each end on
/// its own thread, woken by the in-process signal.
#[test]
fn queues_on_two_threads_exchange_every_packet() {
    use vmbus_channel::{block_on_until, connected_pair, Queue};
    let count = packets() / 4;
    let deadline = Instant::now() + TIME_LIMIT;
    let (host, guest) = connected_pair(DATA_LEN).unwrap();
    let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
    let echo = std::thread::spawn(move || {
        block_on_until(
            async {
                for n in 0..count {
                    let request = guest.reader_mut().read().await?;
                    assert_eq!(request.header.transaction_id, n, "requests arrive in order");
                    guest.writer_mut().write(&OutgoingPacket::completion(n), &[&request.payload]).await?;
                }
                Ok::<_, vmbus_channel::ChannelError>(())
            },
            deadline,
        )
    });
    let answered = block_on_until(
        async {
            for n in 0..count {
                let bytes = payload(n);
                host.writer_mut().write(&OutgoingPacket::in_band(n), &[&bytes]).await?;
                let response = host.reader_mut().read().await?;
                assert_eq!(response.header.transaction_id, n, "responses arrive in order");
                assert_eq!(&response.payload[..bytes.len()], &bytes[..], "response {n} arrives intact");
            }
            Ok::<_, vmbus_channel::ChannelError>(count)
        },
        deadline,
    );
    let answered = answered.expect("the exchange finished within its time limit").expect("no channel error");
    echo.join().unwrap().expect("the echo finished within its time limit").expect("no channel error");
    assert_eq!(answered, count);
}
