//! An adversarial peer: one thread rewrites random bytes of both rings of a
//! channel (control words, the rest of the control page, packet bytes,
//! plausible-looking descriptors) while both channel ends read and write.
//!
//! What must hold: no panic and no access outside the ring memory (the ring
//! memory asserts its bounds; run under AddressSanitizer for the rest, see
//! `tests/README.md`); every failure is a typed error (reads: `Unsupported`,
//! `Corrupt`, or nothing to read; writes: `Full`, `Corrupt`; queues: `Full`,
//! `Corrupt`, `UnknownTransaction`); every packet handed out lies inside the
//! data area. After the scribbler stops and both rings are zeroed, fresh
//! endpoints over the same memory exchange packets cleanly.
//!
//! Bounds: `SCRIBBLER_SECS` (default 2 per test) and `SCRIBBLER_OPS`
//! (endpoint operations per channel end, default 1,000,000), whichever comes
//! first; `SCRIBBLER_SEED` fixes the seed (the thread interleaving still
//! varies). Run with `--nocapture` to see the counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vmbus_channel::{ChannelError, InProcessSignal, Queue, RawChannel};
use vmbus_hostile_tests::model::payload_bytes;
use vmbus_ring::{
    pages_spanned, wire, ControlPage, ControlWord, FlatRingMem, GpaRangeBuf, IncomingPacket, IncomingRing,
    OutgoingPacket, OutgoingRing, OwnedPacketKind, PayloadRange, ReadError, RingDump, RingMem, RingState,
    TransferPageRange, WriteError,
};

const DATA_LEN: usize = 2 * 4096;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Limits {
    deadline: Instant,
    ops: u64,
}

impl Limits {
    fn from_env() -> Self {
        let secs: f64 = env_or("SCRIBBLER_SECS", 2.0);
        Self { deadline: Instant::now() + Duration::from_secs_f64(secs), ops: env_or("SCRIBBLER_OPS", 1_000_000) }
    }

    fn done(&self, ops: u64) -> bool {
        ops >= self.ops || (ops.is_multiple_of(256) && Instant::now() >= self.deadline)
    }
}

fn seed() -> u64 {
    let seed = env_or("SCRIBBLER_SEED", fastrand::u64(..));
    println!("SCRIBBLER_SEED={seed}");
    seed
}

// ---------------------------------------------------------------------------
// The hostile peer.

/// Rewrites random parts of `rings` until `stop`, yielding `pause` times
/// between writes; returns the writes made.
fn scribble(rings: &[FlatRingMem], stop: &AtomicBool, mut rng: fastrand::Rng, pause: u32) -> u64 {
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..pause {
            std::thread::yield_now();
        }
        let mem = &rings[rng.usize(..rings.len())];
        let data_len = mem.data_len() as u32;
        let near_read = |rng: &mut fastrand::Rng| {
            let read = mem.load(ControlWord::ReadIndex, Ordering::Relaxed) % data_len;
            (read + rng.u32(0..64)) % data_len
        };
        match rng.u8(0..16) {
            // A control word: garbage, a plausible index, or an edge value.
            0..=2 => {
                let word = [
                    ControlWord::WriteIndex,
                    ControlWord::ReadIndex,
                    ControlWord::InterruptMask,
                    ControlWord::PendingSendSize,
                    ControlWord::FeatureBits,
                ][rng.usize(..5)];
                let value = match rng.u8(0..5) {
                    0 => rng.u32(..),
                    1 | 2 => rng.u32(0..data_len / 8) * 8,
                    3 => rng.u32(0..16),
                    _ => [data_len, data_len - 1, data_len - 8, u32::MAX][rng.usize(..4)],
                };
                mem.store(word, value, Ordering::Relaxed);
            }
            // Any bytes of the control page.
            3 => {
                let len = rng.usize(1..16);
                let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                mem.write_control(rng.usize(0..=4096 - len), &bytes);
            }
            // Random data bytes anywhere (wrapping at the end).
            4..=7 => {
                let bytes: Vec<u8> = (0..rng.usize(1..32)).map(|_| rng.u8(..)).collect();
                mem.write_data(rng.usize(..data_len as usize), &bytes);
            }
            // One byte of the packet the reader is about to parse.
            8..=10 => mem.write_data(near_read(&mut rng) as usize, &[rng.u8(..)]),
            // A plausible descriptor (and type header), near the read index or anywhere.
            11..=13 => {
                let at = if rng.bool() { near_read(&mut rng) } else { rng.u32(0..data_len) } & !7;
                let packet_type = match rng.u8(0..6) {
                    0 => 6,
                    1 => 7,
                    2 => 9,
                    3 => 11,
                    _ => rng.u16(0..16),
                };
                let length8 = if rng.bool() { rng.u16(0..16) } else { rng.u16(0..(data_len / 8) as u16) };
                let mut bytes = Vec::with_capacity(24);
                bytes.extend(packet_type.to_le_bytes());
                bytes.extend(rng.u16(0..8).to_le_bytes()); // data_offset8
                bytes.extend(length8.to_le_bytes());
                bytes.extend(if rng.bool() { rng.u16(0..2) } else { rng.u16(..) }.to_le_bytes());
                bytes.extend(rng.u64(..).to_le_bytes());
                let range_count = if rng.bool() { rng.u32(0..4) } else { rng.u32(..) };
                bytes.extend(rng.u32(..).to_le_bytes());
                bytes.extend(range_count.to_le_bytes());
                mem.write_data(at as usize, &bytes);
            }
            // A write index a little ahead of the read index: the reader
            // parses whatever lies there.
            14 => {
                let read = (mem.load(ControlWord::ReadIndex, Ordering::Relaxed) % data_len) & !7;
                mem.store(ControlWord::WriteIndex, (read + rng.u32(0..64) * 8) % data_len, Ordering::Relaxed);
            }
            // Zeroes.
            _ => mem.zero_data(rng.usize(..data_len as usize), rng.usize(0..256)),
        }
        writes += 1;
        if writes.is_multiple_of(32) {
            std::thread::yield_now();
        }
    }
    writes
}

/// Yields between scribbler writes, one value per epoch: from a flood to
/// occasional writes between which the ends make progress.
const PAUSES: [u32; 4] = [0, 8, 100, 1000];

/// Runs epochs until `limits` are reached. Each epoch opens the channel
/// ends over the zeroed rings with `open` (given the rings, `a_to_b` and
/// `b_to_a`, and the epoch's seed), starts a scribbler, runs the ends with
/// `run` (given the epoch's limits, returning its operation count), stops the scribbler,
/// zeroes the rings again and checks a clean exchange over fresh endpoints.
/// Returns (epochs, scribbler writes, endpoint operations).
fn run_epochs<E>(
    limits: &Limits,
    seed: u64,
    open: impl Fn(&FlatRingMem, &FlatRingMem, u64) -> E,
    run: impl Fn(E, &Limits) -> u64,
) -> (u64, u64, u64) {
    let a_to_b = FlatRingMem::new(DATA_LEN).unwrap();
    let b_to_a = FlatRingMem::new(DATA_LEN).unwrap();
    let (mut epochs, mut scribbles, mut ops) = (0, 0, 0);
    while ops < limits.ops && Instant::now() < limits.deadline {
        let epoch_seed = seed.wrapping_add(epochs);
        let epoch_limits = Limits {
            deadline: (Instant::now() + Duration::from_millis(50)).min(limits.deadline),
            ops: limits.ops - ops,
        };
        let stop = AtomicBool::new(false);
        let pause = PAUSES[epochs as usize % PAUSES.len()];
        let ends = open(&a_to_b, &b_to_a, epoch_seed);
        let (epoch_scribbles, epoch_ops) = std::thread::scope(|scope| {
            let rings = [a_to_b.clone(), b_to_a.clone()];
            let stop = &stop;
            let scribbler =
                scope.spawn(move || scribble(&rings, stop, fastrand::Rng::with_seed(epoch_seed ^ 0x5c), pause));
            let ends_result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(ends, &epoch_limits)));
            stop.store(true, Ordering::Relaxed);
            let scribbles = scribbler.join().expect("the scribbler does not panic");
            match ends_result {
                Ok(ops) => (scribbles, ops),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        scribbles += epoch_scribbles;
        ops += epoch_ops;
        epochs += 1;
        zero(&a_to_b);
        zero(&b_to_a);
        clean_exchange(&a_to_b, &b_to_a, 20);
        zero(&a_to_b);
        zero(&b_to_a);
    }
    (epochs, scribbles, ops)
}

// ---------------------------------------------------------------------------
// The channel ends, on the ring endpoints.

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ops: u64,
    packets_written: u64,
    full: u64,
    write_corrupt: u64,
    packets_read: u64,
    empty: u64,
    unsupported: u64,
    read_corrupt: u64,
    other_corrupt: u64,
    reopened: u64,
    reopen_refused: u64,
    dumps: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.ops += o.ops;
        self.packets_written += o.packets_written;
        self.full += o.full;
        self.write_corrupt += o.write_corrupt;
        self.packets_read += o.packets_read;
        self.empty += o.empty;
        self.unsupported += o.unsupported;
        self.read_corrupt += o.read_corrupt;
        self.other_corrupt += o.other_corrupt;
        self.reopened += o.reopened;
        self.reopen_refused += o.reopen_refused;
        self.dumps += o.dumps;
    }
}

/// Asserts that a payload range handed out lies within the data area.
fn check_range(range: PayloadRange, data_len: usize, what: &str) {
    assert!((range.offset() as usize) < data_len, "{what}: payload offset {} outside the data area", range.offset());
    assert!(range.len() <= data_len, "{what}: payload of {} bytes larger than the data area", range.len());
}

/// Asserts that a packet handed out, with its range list (`kind`, read
/// through its batch), is consistent with the wire rules.
fn check_packet(packet: &IncomingPacket, kind: &OwnedPacketKind, data_len: usize) {
    assert!((packet.offset as usize) < data_len, "packet offset {} outside the data area", packet.offset);
    assert_eq!(packet.offset % 8, 0, "packet offset {} not 8-aligned", packet.offset);
    check_range(packet.payload, data_len, "packet");
    match kind {
        OwnedPacketKind::InBand | OwnedPacketKind::Completion => {}
        OwnedPacketKind::TransferPages { ranges, .. } => {
            assert!(ranges.len() * 8 < data_len, "{} ranges", ranges.len())
        }
        OwnedPacketKind::GpaDirect(ranges) => {
            assert!(!ranges.is_empty(), "a GPA-direct packet without ranges was handed out");
            assert!(ranges.words().len() * 8 < data_len, "{} GPA words", ranges.words().len());
            let mut count = 0;
            for range in ranges.ranges() {
                count += 1;
                assert!(range.byte_count > 0 && range.byte_offset < 4096, "bad GPA range {range:?}");
                assert_eq!(range.gpns.len() as u64, pages_spanned(range.byte_offset, range.byte_count));
            }
            assert_eq!(count, ranges.len());
        }
    }
}

/// With an honest peer: ids increase (reverted batches leave gaps) and the
/// payload is the id's bytes followed by at most 7 zero bytes of padding.
fn check_in_order(packet: &IncomingPacket, payload: &[u8], last: &mut u64) {
    let id = packet.transaction_id;
    assert!(id > *last, "packet {id} after packet {last}: out of order or repeated");
    *last = id;
    let expected = payload_bytes(id, payload.len());
    let unpadded = (payload.len().saturating_sub(7)..=payload.len())
        .rev()
        .find(|&len| payload[len..].iter().all(|&b| b == 0) && payload[..len] == expected[..len]);
    assert!(unpadded.is_some(), "packet {id}: payload is not its bytes and zero padding");
}

/// The packet `index` of a channel end's stream: kind, id, payload, ranges.
struct Sent {
    id: u64,
    payload: Vec<u8>,
    transfer: Vec<TransferPageRange>,
    gpa: GpaRangeBuf,
}

impl Sent {
    fn new(id: u64, payload_len: usize, ranges: usize) -> Self {
        let transfer = (0..ranges as u32).map(|j| TransferPageRange::new(100 + j, j * 4096)).collect();
        let mut gpa = GpaRangeBuf::new();
        for j in 0..ranges.max(1) as u64 {
            gpa.push_contiguous(0x10_0000 * j + id % 8192, 1 + (id % 5000) as u32).unwrap();
        }
        Self { id, payload: payload_bytes(id, payload_len), transfer, gpa }
    }

    fn packet(&self, kind: u64) -> OutgoingPacket<'_> {
        let packet = match kind % 4 {
            0 => OutgoingPacket::in_band(self.id),
            1 => OutgoingPacket::completion(self.id),
            2 => OutgoingPacket::transfer_pages(self.id, 3, true, &self.transfer),
            _ => OutgoingPacket::gpa_direct(self.id, self.gpa.ranges()),
        };
        if self.id.is_multiple_of(3) {
            packet.with_completion_requested()
        } else {
            packet
        }
    }
}

struct End<M = FlatRingMem> {
    incoming: M,
    outgoing: M,
    reader: IncomingRing<M>,
    writer: OutgoingRing<M>,
    rng: fastrand::Rng,
    stats: Stats,
    next_id: u64,
    /// With no scribbler: check that packets arrive in order and intact,
    /// and leave out what races by design (dumps of a live ring, reopening).
    honest: Option<u64>,
}

impl<M: RingMem + Clone> End<M> {
    fn new(channel: RawChannel<M, InProcessSignal>, rng: fastrand::Rng) -> Self {
        let (reader, writer, _signal) = channel.into_parts();
        Self {
            incoming: reader.memory().clone(),
            outgoing: writer.memory().clone(),
            reader,
            writer,
            rng,
            stats: Stats::default(),
            next_id: 0,
            honest: None,
        }
    }

    fn run(&mut self, limits: &Limits) {
        while !limits.done(self.stats.ops) {
            self.stats.ops += 1;
            match self.rng.u8(0..20) {
                0..=7 => self.write_some(),
                8..=15 => self.read_some(),
                16 | 17 => self.control_op(),
                18 if self.honest.is_none() => self.reopen(),
                19 if self.honest.is_none() => self.inspect(),
                _ => self.control_op(),
            }
        }
    }

    fn write_some(&mut self) {
        let data_len = self.writer.data_len();
        let mut batch = self.writer.write_batch();
        for _ in 0..self.rng.usize(1..=4) {
            self.next_id += 1;
            let payload_len = if self.rng.bool() { self.rng.usize(0..64) } else { self.rng.usize(0..data_len / 3) };
            let sent = Sent::new(self.next_id, payload_len, self.rng.usize(0..6));
            match batch.write(&sent.packet(self.rng.u64(..)), &[&sent.payload]) {
                Ok(()) => self.stats.packets_written += 1,
                Err(WriteError::Full { needed, free }) => {
                    assert!(free < needed && free < data_len, "full with {free} free for {needed}");
                    self.stats.full += 1;
                    break;
                }
                Err(WriteError::Corrupt(error)) => {
                    let _ = error.to_string();
                    self.stats.write_corrupt += 1;
                    break;
                }
                Err(other) => panic!("write failed with {other:?}, not full or corrupt"),
            }
        }
        if self.rng.u8(0..8) == 0 {
            batch.revert();
        } else {
            let _signal = batch.commit();
        }
    }

    fn read_some(&mut self) {
        let data_len = self.reader.data_len();
        let last_committed = self.honest;
        let mut batch = self.reader.read_batch();
        for _ in 0..self.rng.usize(1..=8) {
            match batch.next() {
                Ok(Some(packet)) => {
                    let kind = batch.owned_kind(&packet).expect("a packet's own range list is readable");
                    check_packet(&packet, &kind, data_len);
                    let mut payload = vec![0; packet.payload.len()];
                    batch.read_payload(packet.payload, 0, &mut payload).expect("a packet's own payload is readable");
                    self.stats.packets_read += 1;
                    if let Some(last) = &mut self.honest {
                        check_in_order(&packet, &payload, last);
                    }
                }
                Ok(None) => {
                    self.stats.empty += 1;
                    break;
                }
                Err(ReadError::Unsupported(unsupported)) => {
                    assert!((unsupported.offset as usize) < data_len);
                    check_range(unsupported.payload, data_len, "unsupported packet");
                    let mut payload = vec![0; unsupported.payload.len()];
                    batch.read_payload(unsupported.payload, 0, &mut payload).expect("readable");
                    let _ = unsupported.to_string();
                    self.stats.unsupported += 1;
                }
                Err(ReadError::Corrupt(error)) => {
                    if let Some(offset) = error.packet_offset {
                        assert!((offset as usize) < data_len, "corrupt packet at {offset}");
                    }
                    let _ = error.to_string();
                    self.stats.read_corrupt += 1;
                    break;
                }
                Err(other) => panic!("a read failed with {other:?}"),
            }
        }
        if self.rng.u8(0..8) == 0 {
            batch.revert();
            self.honest = last_committed; // the reverted packets come again
        } else {
            let _signal = batch.commit();
        }
    }

    fn control_op(&mut self) {
        let result = match self.rng.u8(0..5) {
            0 => self.reader.prepare_to_sleep().map(drop),
            1 => {
                self.reader.set_interrupt_mask(self.rng.bool());
                Ok(())
            }
            2 => match self.writer.set_pending_send_size(self.rng.usize(1..self.writer.max_packet_size())) {
                Ok(_) => Ok(()),
                Err(WriteError::Corrupt(error)) => Err(error),
                Err(other) => panic!("set_pending_send_size failed with {other:?}"),
            },
            3 => {
                self.writer.clear_pending_send_size();
                Ok(())
            }
            _ => self.writer.can_write(self.rng.usize(0..self.writer.data_len())).map(drop),
        };
        if let Err(error) = result {
            let _ = error.to_string();
            self.stats.other_corrupt += 1;
        }
    }

    /// Reopens one endpoint over the same memory, as a restarted process would.
    fn reopen(&mut self) {
        let reopened = if self.rng.bool() {
            IncomingRing::new(self.incoming.clone()).map(|ring| self.reader = ring)
        } else {
            OutgoingRing::new(self.outgoing.clone()).map(|ring| self.writer = ring)
        };
        match reopened {
            Ok(()) => self.stats.reopened += 1,
            Err(error) => {
                let _ = error.to_string();
                self.stats.reopen_refused += 1;
            }
        }
    }

    /// What a debugger does: a state snapshot and a decoded dump.
    fn inspect(&mut self) {
        let mem = if self.rng.bool() { &self.incoming } else { &self.outgoing };
        let state = RingState::read(mem);
        let _ = format!("{state} {state:?}");
        if self.rng.u8(0..8) == 0 {
            let dump = RingDump::decode(mem);
            for record in &dump.packets {
                assert!(record.offset < DATA_LEN as u32, "dumped packet at {}", record.offset);
            }
            let _ = dump.to_string();
            self.stats.dumps += 1;
        }
    }
}

/// The two ends of a channel over the rings `a_to_b` and `b_to_a`.
fn open_channel<M: RingMem + Clone>(
    a_to_b: &M,
    b_to_a: &M,
) -> (RawChannel<M, InProcessSignal>, RawChannel<M, InProcessSignal>) {
    let (host_signal, guest_signal) = InProcessSignal::pair();
    let host = RawChannel::new(b_to_a.clone(), a_to_b.clone(), host_signal).expect("a zeroed ring opens");
    let guest = RawChannel::new(a_to_b.clone(), b_to_a.clone(), guest_signal).expect("a zeroed ring opens");
    (host, guest)
}

/// Zeroes a ring: control page and data area.
fn zero(mem: &FlatRingMem) {
    mem.write_control(0, &[0; wire::PAGE_SIZE]);
    mem.zero_data(0, mem.data_len());
}

/// A clean exchange over fresh endpoints: `count` packets of every kind each
/// way, each read back with its id, kind and payload intact.
fn clean_exchange(a_to_b: &FlatRingMem, b_to_a: &FlatRingMem, count: u64) {
    for (forward, mem) in [("a to b", a_to_b), ("b to a", b_to_a)] {
        let mut writer = OutgoingRing::new(mem.clone()).expect("a zeroed ring opens");
        let mut reader = IncomingRing::new(mem.clone()).expect("a zeroed ring opens");
        assert!(reader.prepare_to_sleep().unwrap(), "{forward}: a zeroed ring is empty");
        for id in 1..=count {
            let sent = Sent::new(id, (id * 37 % 700) as usize, (id % 4) as usize);
            let signal = writer.write(&sent.packet(id), &[&sent.payload]).expect("room in a drained ring");
            assert!(signal, "{forward}: packet {id} into an empty ring must signal the reader");
            let mut batch = reader.read_batch();
            let packet = batch.next().expect("the packet just written").expect("a packet");
            assert_eq!(packet.transaction_id, id);
            assert_eq!(packet.completion_requested, id % 3 == 0);
            let kind = batch.owned_kind(&packet).expect("the packet's own range list");
            let kind_ok = match (id % 4, &kind) {
                (0, OwnedPacketKind::InBand) | (1, OwnedPacketKind::Completion) => true,
                (2, OwnedPacketKind::TransferPages { ranges, .. }) => ranges[..] == sent.transfer[..],
                (3, OwnedPacketKind::GpaDirect(ranges)) => ranges == &sent.gpa,
                _ => false,
            };
            assert!(kind_ok, "{forward}: packet {id} came back as {kind:?}");
            let mut payload = vec![0; packet.payload.len()];
            batch.read_payload(packet.payload, 0, &mut payload).unwrap();
            assert_eq!(&payload[..sent.payload.len()], &sent.payload[..], "{forward}: packet {id} payload");
            assert!(payload[sent.payload.len()..].iter().all(|&b| b == 0), "{forward}: padding not zero");
            assert_eq!(batch.next(), Ok(None));
            assert!(!batch.commit(), "{forward}: no writer waits");
        }
    }
}

#[test]
fn endpoints_survive_a_scribbler() {
    let seed = seed();
    let limits = Limits::from_env();
    let started = Instant::now();
    let total = std::sync::Mutex::new(Stats::default());
    let open = |a_to_b: &FlatRingMem, b_to_a: &FlatRingMem, seed: u64| {
        let (host, guest) = open_channel(a_to_b, b_to_a);
        [End::new(host, fastrand::Rng::with_seed(seed)), End::new(guest, fastrand::Rng::with_seed(!seed))]
    };
    let (epochs, scribbles, ops) = run_epochs(&limits, seed, open, |mut ends, limits| {
        std::thread::scope(|scope| {
            let [host, guest] = &mut ends;
            let other = scope.spawn(|| guest.run(limits));
            host.run(limits);
            other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
        let mut total = total.lock().unwrap();
        for end in &ends {
            *total += end.stats;
        }
        ends.iter().map(|end| end.stats.ops).sum()
    });
    let total = total.into_inner().unwrap();
    println!(
        "scribbler: {epochs} epochs, {scribbles} scribbler writes, {ops} endpoint operations in {:.1?}: {total:?}",
        started.elapsed()
    );
    assert!(total.packets_read > 0, "no packet got through at all: the test exercised nothing");
}

/// Runs two ends over `a_to_b` and `b_to_a` with no scribbler, checking
/// that every packet arrives in order and intact.
fn honest_exchange<M: RingMem + Clone + Send>(a_to_b: &M, b_to_a: &M) {
    let seed = seed();
    let secs: f64 = env_or("SCRIBBLER_SECS", 2.0);
    let limits = Limits {
        deadline: Instant::now() + Duration::from_secs_f64(secs / 4.0),
        ops: env_or("SCRIBBLER_OPS", 1_000_000),
    };
    let (host, guest) = open_channel(a_to_b, b_to_a);
    let mut ends = [End::new(host, fastrand::Rng::with_seed(seed)), End::new(guest, fastrand::Rng::with_seed(!seed))];
    for end in &mut ends {
        end.honest = Some(0);
    }
    std::thread::scope(|scope| {
        let [host, guest] = &mut ends;
        let other = scope.spawn(|| guest.run(&limits));
        host.run(&limits);
        other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    let [host, guest] = ends.map(|end| end.stats);
    println!("no scribbler: host {host:?}, guest {guest:?}");
    for stats in [host, guest] {
        let corrupt = stats.write_corrupt + stats.read_corrupt + stats.other_corrupt + stats.unsupported;
        assert_eq!(corrupt, 0, "an honest peer's ring read as corrupt: {stats:?}");
        assert!(stats.packets_read > 0);
    }
}

/// The same ends with no scribbler: every packet arrives in order and
/// intact.
#[test]
fn ends_without_a_scribbler_deliver_in_order() {
    honest_exchange(&FlatRingMem::new(DATA_LEN).unwrap(), &FlatRingMem::new(DATA_LEN).unwrap());
}

// ---------------------------------------------------------------------------
// The same over the channel's queues (try_ operations only: a waiting
// operation may rightly wait forever on a ring the peer wrecked).

#[derive(Debug, Default, Clone, Copy)]
struct QueueStats {
    ops: u64,
    written: u64,
    read: u64,
    full: u64,
    corrupt: u64,
    unknown_transaction: u64,
}

/// Runs one queue end until `limits`; returns the queue (dropping it would
/// close the channel under the other end) and the counts.
fn queue_end(
    mut queue: Queue<FlatRingMem, InProcessSignal>,
    limits: &Limits,
    seed: u64,
) -> (Queue<FlatRingMem, InProcessSignal>, QueueStats) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = QueueStats::default();
    let data_len = DATA_LEN;
    let mut id = 0;
    let check = |stats: &mut QueueStats, error: ChannelError| match error {
        ChannelError::Full { .. } => stats.full += 1,
        ChannelError::Corrupt(_) => stats.corrupt += 1,
        ChannelError::UnknownTransaction(_) => stats.unknown_transaction += 1,
        other => panic!("queue operation failed with {other:?}"),
    };
    while !limits.done(stats.ops) {
        stats.ops += 1;
        if rng.bool() {
            id += 1;
            let sent = Sent::new(id, rng.usize(0..data_len / 4), rng.usize(0..3));
            match queue.writer_mut().try_write(&sent.packet(rng.u64(..)), &[&sent.payload]) {
                Ok(()) => stats.written += 1,
                Err(error) => check(&mut stats, error),
            }
        } else {
            let result = queue.reader_mut().try_read_batch(rng.usize(1..8), |packet, payload| {
                check_packet(packet, &payload.owned_kind(), data_len);
                assert_eq!(payload.to_vec().len(), packet.payload.len());
            });
            match result {
                Ok(n) => stats.read += n as u64,
                Err(error) => check(&mut stats, error),
            }
        }
    }
    (queue, stats)
}

#[test]
fn queues_survive_a_scribbler() {
    let seed = seed();
    let limits = Limits::from_env();
    let started = Instant::now();
    let totals = std::sync::Mutex::new([QueueStats::default(); 2]);
    let open = |a_to_b: &FlatRingMem, b_to_a: &FlatRingMem, seed: u64| (open_channel(a_to_b, b_to_a), seed);
    let (epochs, scribbles, ops) = run_epochs(&limits, seed, open, |((host, guest), seed), limits| {
        // The host matches completions to requests; it has none
        // outstanding, so every completion the scribbler forges is unknown.
        let (host, guest) = std::thread::scope(|scope| {
            let other = scope.spawn(|| queue_end(Queue::new(guest), limits, !seed));
            let host = queue_end(Queue::with_transactions(host, 16), limits, seed);
            (host, other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        });
        let mut totals = totals.lock().unwrap();
        for (total, (_, stats)) in totals.iter_mut().zip([&host, &guest]) {
            total.ops += stats.ops;
            total.written += stats.written;
            total.read += stats.read;
            total.full += stats.full;
            total.corrupt += stats.corrupt;
            total.unknown_transaction += stats.unknown_transaction;
        }
        host.1.ops + guest.1.ops
    });
    let [host, guest] = totals.into_inner().unwrap();
    println!(
        "queue scribbler: {epochs} epochs, {scribbles} scribbler writes, {ops} queue operations in {:.1?}: \
         host {host:?}, guest {guest:?}",
        started.elapsed()
    );
    assert!(host.read + guest.read > 0, "no packet got through at all: the test exercised nothing");
}
