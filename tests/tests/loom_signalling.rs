//! Loom models of the signalling rules (`vmbus_ring::signal`): the real `OutgoingRing` and
//! `IncomingRing` over [`LoomRingMem`] in two threads, every interleaving (up
//! to a preemption bound) and every value the C++ memory model lets each
//! control-word load return; packet bytes are loom cells, so a reader
//! reading bytes the writer is still writing (or the reverse) is a data race
//! loom reports.
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p vmbus_hostile_tests --release --test loom_signalling
//! ```
//!
//! Add `-- --nocapture` to see, per model, the executions explored and how
//! many of them reached each notable event; `LOOM_MAX_PREEMPTIONS=n` (at
//! most 255, i.e. unbounded) overrides the preemption bound for a longer
//! campaign.
//!
//! The models (each also asserts that its interesting paths were reached):
//!
//! - `reader_sleep_vs_writer_commit`: a writer commits `[1]` then `[2, 3]`
//!   (a batch of one, a batch of two; packet 2 wraps around the end of the
//!   data area) and rings a doorbell when a commit says so, while a reader
//!   drains, commits, and sleeps on the doorbell when `prepare_to_sleep`
//!   says so. Checks: no lost wakeup (the reader never sleeps, with packets
//!   committed, through a writer that finishes without a signal after the
//!   reader unmasked); every packet read once, in order, intact; no signal
//!   the rules do not call for (a batch signals only if the reader's read
//!   index really was at the batch's start; reader commits never signal,
//!   as no pending send size is set).
//! - `reader_sleep_vs_writer_commit_masked`: the same with the reader
//!   masking interrupts while it drains (it starts masked, and unmasks only
//!   through `prepare_to_sleep`): additionally, no signal before the reader
//!   first unmasked.
//! - `writer_pending_send_vs_reader_commit` (packet 3 fits after the first
//!   commit), `..._second_crossing` (only after the second) and
//!   `writer_pending_ring_size_minus_one_vs_reader_commit` (a peer asking
//!   for `data_len - 1`): a full ring; the writer finds packet 3 does not
//!   fit, sets a pending send size and, unless that finds room, waits on a
//!   doorbell; the reader frees one packet per commit and rings when its
//!   commit says so. Checks: the writer is never left waiting with room
//!   for its packet; the reader signals at most once, only after the writer
//!   set a pending send size, and only on a commit that crossed it; packet 3
//!   arrives intact and the request is withdrawn.
//! - `publication_by_indices`: the same full ring with both sides polling
//!   instead of signalling (so nothing can be lost): the write index must
//!   publish packet 3's bytes to the reader, and the read index packet 1's
//!   space, which packet 3 overwrites, to the writer; loom finds any data
//!   race on those bytes.
//! - `*_seq_cst`: the sleep and pending models over memory that uses
//!   `SeqCst` accesses instead of full fences, the other correct form of the
//!   rules, which must pass too.
//! - `mutant_*` (`#[should_panic]`): the models over deliberately broken
//!   memory, showing they have teeth: no full fence (or `SeqCst` loads only)
//!   loses a wakeup on either side; a relaxed write (read) index lets the
//!   reader (writer) touch packet bytes the other side is still writing
//!   (reading); a writer blind to the mask, or a reader seeing a phantom
//!   pending send size, signals spuriously.
//! - `loom_ring_mem_round_trips`: the loom memory itself.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;
use vmbus_hostile_tests::loom_mem::{LoomRingMem, LOOM_DATA_LEN};
use vmbus_ring::{
    in_band_size, ControlPage, ControlWord, IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, PacketKind,
    ReadBatch, RingMem, WriteError,
};

/// Preemptions loom explores per execution unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise.
const PREEMPTION_BOUND: usize = 5;

/// What a model run explored: how many executions, and in how many of
/// them each notable event happened (to show the interesting paths are
/// reached, not just that nothing failed).
struct Explored {
    iterations: usize,
    events: BTreeMap<&'static str, usize>,
}

impl Explored {
    /// Asserts that some execution saw `event`.
    fn saw(&self, event: &str) -> &Self {
        assert!(self.events.contains_key(event), "no execution reached {event:?}: {:?}", self.events);
        self
    }
}

/// Runs `model` under loom. Each execution returns the notable events it saw.
fn check(name: &str, model: impl Fn() -> Vec<&'static str> + Sync + Send + 'static) -> Explored {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(PREEMPTION_BOUND));
    let seen = std::sync::Arc::new(StdMutex::new(Explored { iterations: 0, events: BTreeMap::new() }));
    let record = seen.clone();
    builder.check(move || {
        let events = model();
        let mut seen = record.lock().unwrap();
        seen.iterations += 1;
        for event in events {
            *seen.events.entry(event).or_default() += 1;
        }
    });
    let seen = std::sync::Arc::into_inner(seen).unwrap().into_inner().unwrap();
    println!(
        "loom model {name}: {} iterations (preemption bound {:?}); executions with {:?}",
        seen.iterations, builder.preemption_bound, seen.events
    );
    seen
}

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

/// The signal path between the two threads (an eventfd, an interrupt): a
/// counted doorbell, and a flag the ringing side raises when it has nothing
/// more to do, so a sleeper can tell "no signal will ever come".
#[derive(Default)]
struct Doorbell {
    rings: AtomicUsize,
    peer_done: AtomicBool,
}

impl Doorbell {
    fn ring(&self) {
        self.rings.fetch_add(1, Ordering::Release);
    }

    /// Consumes the signals received so far; true if there was one.
    fn take(&self) -> bool {
        self.rings.swap(0, Ordering::Acquire) > 0
    }

    /// The ringing side is done: no signal will follow.
    fn finish(&self) {
        self.peer_done.store(true, Ordering::Release);
    }

    /// Sleeps until a signal arrives (true) or the ringing side is done
    /// without having sent one (false: a sleeper that nothing will wake).
    fn sleep(&self) -> bool {
        loop {
            if self.take() {
                return true;
            }
            if self.peer_done.load(Ordering::Acquire) {
                return self.take();
            }
            thread::yield_now();
        }
    }
}

/// The payload of packet `id`: `len` bytes that differ per packet and per byte.
fn payload(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as u8).wrapping_mul(61).wrapping_add(i as u8)).collect()
}

/// Reads the next packet and checks it is packet `id`, intact.
fn expect_packet<M: RingMem>(batch: &mut ReadBatch<'_, M>, id: u64, len: usize) {
    let packet = batch.next().unwrap_or_else(|e| panic!("reading packet {id}: {e}")).expect("a packet");
    check_packet(batch, &packet, id, len);
}

/// Checks that `packet`, just read from `batch`, is packet `id`, intact.
fn check_packet<M: RingMem>(batch: &ReadBatch<'_, M>, packet: &IncomingPacket, id: u64, len: usize) {
    assert_eq!((packet.transaction_id, &packet.kind), (id, &PacketKind::InBand), "packets out of order");
    assert_eq!(packet.payload.len(), len, "packet {id} has the wrong length");
    let mut bytes = vec![0; len];
    batch.read_payload(packet.payload, 0, &mut bytes).unwrap();
    assert!(bytes == payload(id, len), "packet {id} torn");
}

/// Bytes a packet may take with these indices (the wire rules: size - used - 8).
fn free(write: u32, read: u32) -> usize {
    let used = (write as usize + LOOM_DATA_LEN - read as usize) % LOOM_DATA_LEN;
    LOOM_DATA_LEN - used - 8
}

/// The memory itself: data copies wrap once and round-trip; control-page
/// copies see the control words.
#[test]
fn loom_ring_mem_round_trips() {
    loom::model(|| {
        let mem = LoomRingMem::new();
        let bytes = payload(7, 20);
        mem.write_data(LOOM_DATA_LEN - 12, &bytes);
        mem.zero_data(LOOM_DATA_LEN - 3, 2);
        let mut back = [0xff; 20];
        mem.read_data(LOOM_DATA_LEN - 12, &mut back);
        let mut expected = bytes.clone();
        expected[9..11].fill(0);
        assert_eq!(back[..], expected[..]);

        let mut page = [0; 68];
        page[4..8].copy_from_slice(&24u32.to_le_bytes());
        page[64..68].copy_from_slice(&1u32.to_le_bytes());
        mem.write_control(0, &page);
        assert_eq!(mem.load(ControlWord::ReadIndex, Ordering::Relaxed), 24);
        assert_eq!(mem.load(ControlWord::FeatureBits, Ordering::Relaxed), 1);
        let mut tail = [0xff; 10];
        mem.read_control(60, &mut tail);
        assert_eq!(tail, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    });
}

// ---------------------------------------------------------------------------
// Writer commit vs reader going to sleep
// ---------------------------------------------------------------------------

/// Payload bytes of each packet in the sleep models: 32-byte packets.
const SMALL: usize = 8;

/// Where both indices start in the sleep models: 48 bytes before the end of
/// the data area, so the second packet wraps.
const SLEEP_START: u32 = (LOOM_DATA_LEN - 48) as u32;

/// The writer's batches (transaction ids): one packet, then two.
const SLEEP_BATCHES: &[&[u64]] = &[&[1], &[2, 3]];

/// What the reader did, for the checks after both threads finish.
#[derive(Debug)]
struct ReaderLog {
    /// Every read index it committed, the starting one first.
    read_indices: Vec<u32>,
    /// Whether it ever cleared the interrupt mask (`prepare_to_sleep`).
    unmasked: bool,
    /// How often it slept (and was woken: a sleep nothing wakes fails the model).
    sleeps: usize,
    /// How often `prepare_to_sleep` found packets that arrived meanwhile.
    rechecks_found_packets: usize,
}

/// A reader that drains, commits, and sleeps when `prepare_to_sleep` says
/// so, until it has read `total` packets. With `masked`, it starts with the
/// interrupt mask set and sets it again whenever it wakes to drain.
fn sleeping_reader<M: RingMem>(
    mut reader: IncomingRing<M>,
    doorbell: &Doorbell,
    total: u64,
    masked: bool,
) -> ReaderLog {
    let mut log =
        ReaderLog { read_indices: vec![reader.read_index()], unmasked: false, sleeps: 0, rechecks_found_packets: 0 };
    let mut next = 1;
    loop {
        let mut batch = reader.read_batch();
        loop {
            match batch.next() {
                Ok(Some(packet)) => check_packet(&batch, &packet, next, SMALL),
                Ok(None) => break,
                Err(e) => panic!("reading packet {next}: {e}"),
            }
            next += 1;
        }
        assert!(!batch.commit(), "spurious signal: a reader commit signalled a writer that set no pending send size");
        log.read_indices.push(reader.read_index());
        if next > total {
            return log;
        }
        // Signals so far announced packets that are read now; only a later
        // one can wake the sleep below.
        doorbell.take();
        let sleep = reader.prepare_to_sleep().unwrap();
        log.unmasked = true;
        if sleep {
            log.sleeps += 1;
            if !doorbell.sleep() {
                panic!(
                    "lost wakeup: the reader sleeps with {} committed packet(s) unread and the writer, done, \
                     sent no signal after the reader unmasked",
                    total + 1 - next
                );
            }
        } else {
            log.rechecks_found_packets += 1;
        }
        if masked {
            reader.set_interrupt_mask(true);
        }
    }
}

/// One execution of the sleep model, with each endpoint's memory wrapped by
/// `wrap` (the identity, or a mutant).
fn sleep_model<M: RingMem + Send + 'static>(wrap: fn(LoomRingMem) -> M, masked: bool) -> Vec<&'static str> {
    let mem = LoomRingMem::new();
    mem.store(ControlWord::WriteIndex, SLEEP_START, Ordering::Relaxed);
    mem.store(ControlWord::ReadIndex, SLEEP_START, Ordering::Relaxed);
    if masked {
        mem.store(ControlWord::InterruptMask, 1, Ordering::Relaxed);
    }
    let mut writer = OutgoingRing::new(wrap(mem.clone())).unwrap();
    let reader = IncomingRing::new(wrap(mem.clone())).unwrap();
    let total = SLEEP_BATCHES.iter().map(|batch| batch.len() as u64).sum();
    let doorbell = Arc::new(Doorbell::default());

    let writer_thread = thread::spawn({
        let doorbell = doorbell.clone();
        move || {
            let mut commits = Vec::new();
            for ids in SLEEP_BATCHES {
                let start = writer.write_index();
                let mut batch = writer.write_batch();
                for &id in *ids {
                    batch.write(&OutgoingPacket::in_band(id), &[&payload(id, SMALL)]).unwrap();
                }
                let signal = batch.commit();
                if signal {
                    doorbell.ring();
                }
                commits.push((start, signal));
            }
            doorbell.finish();
            commits
        }
    });
    let reader_thread = thread::spawn(move || sleeping_reader(reader, &doorbell, total, masked));
    let commits = writer_thread.join().unwrap();
    let log = reader_thread.join().unwrap();

    for &(start, _) in commits.iter().filter(|&&(_, signal)| signal) {
        assert!(
            log.read_indices.contains(&start),
            "spurious signal: the batch at {start} signalled, but the reader's read index was never there \
             (the ring was never empty before it): {log:?}"
        );
        assert!(
            !masked || log.unmasked,
            "spurious signal: the batch at {start} signalled while the reader had its interrupt mask set: {log:?}"
        );
    }
    assert_eq!(
        mem.load(ControlWord::ReadIndex, Ordering::Relaxed),
        mem.load(ControlWord::WriteIndex, Ordering::Relaxed)
    );

    let mut events = Vec::new();
    events.extend(commits[0].1.then_some("writer signalled batch 1"));
    events.extend(commits[1].1.then_some("writer signalled batch 2"));
    events.extend((log.sleeps > 0).then_some("reader slept and was woken"));
    events.extend((log.rechecks_found_packets > 0).then_some("prepare_to_sleep found packets"));
    events
}

#[test]
fn reader_sleep_vs_writer_commit() {
    check("reader_sleep_vs_writer_commit", || sleep_model(|mem| mem, false))
        .saw("writer signalled batch 1")
        .saw("writer signalled batch 2")
        .saw("reader slept and was woken")
        .saw("prepare_to_sleep found packets");
}

#[test]
fn reader_sleep_vs_writer_commit_masked() {
    check("reader_sleep_vs_writer_commit_masked", || sleep_model(|mem| mem, true))
        .saw("writer signalled batch 1")
        .saw("writer signalled batch 2")
        .saw("reader slept and was woken")
        .saw("prepare_to_sleep found packets");
}

// ---------------------------------------------------------------------------
// Writer blocked on pending send size vs reader committing
// ---------------------------------------------------------------------------

/// Payload bytes of the two packets that fill the ring: 2024-byte packets,
/// leaving 40 bytes free.
const BIG: usize = 2000;

/// One execution of the pending-send-size model: the ring holds packets 1
/// and 2 (`BIG`); the writer wants to write packet 3 with `payload_len`
/// bytes, which does not fit; the reader reads packets 1 and 2, one commit
/// each.
fn pending_send_model<M: RingMem + Send + 'static>(
    wrap: fn(LoomRingMem) -> M,
    payload_len: usize,
) -> Vec<&'static str> {
    let mem = LoomRingMem::new();
    let mut writer = OutgoingRing::new(wrap(mem.clone())).unwrap();
    let mut reader = IncomingRing::new(wrap(mem.clone())).unwrap();
    for id in [1, 2] {
        let _ = writer.write(&OutgoingPacket::in_band(id), &[&payload(id, BIG)]).unwrap();
    }
    let full_at = writer.write_index();
    let needed = in_band_size(payload_len);
    assert!(!writer.can_write(needed).unwrap(), "the model needs a ring too full for packet 3");
    let doorbell = Arc::new(Doorbell::default());

    let writer_thread = thread::spawn({
        let doorbell = doorbell.clone();
        move || {
            let (mut pending_sets, mut waits) = (0, 0);
            loop {
                match writer.write(&OutgoingPacket::in_band(3), &[&payload(3, payload_len)]) {
                    Ok(_) => break,
                    Err(WriteError::Full { .. }) => {}
                    Err(e) => panic!("writing packet 3: {e}"),
                }
                pending_sets += 1;
                if writer.set_pending_send_size(needed).unwrap() {
                    continue; // the reader freed the space meanwhile
                }
                waits += 1;
                if !doorbell.sleep() {
                    let room = writer.can_write(needed).unwrap();
                    panic!(
                        "lost wakeup: the writer waits for {needed} free bytes, the reader is done and sent no \
                         signal, and the space is {}there",
                        if room { "" } else { "not " }
                    );
                }
            }
            writer.clear_pending_send_size();
            (pending_sets, waits, writer.write_index())
        }
    });
    let reader_thread = thread::spawn(move || {
        let mut commits = Vec::new();
        for id in [1, 2] {
            let old = reader.read_index();
            let mut batch = reader.read_batch();
            expect_packet(&mut batch, id, BIG);
            let signal = batch.commit();
            if signal {
                doorbell.ring();
            }
            commits.push((old, reader.read_index(), signal));
        }
        doorbell.finish();
        (commits, reader)
    });
    let (pending_sets, waits, written_at) = writer_thread.join().unwrap();
    let (commits, mut reader) = reader_thread.join().unwrap();

    // A crossing: the free space went from below `needed` to at least it,
    // with the write index the reader may have seen (before or after
    // packet 3).
    let crosses = |write: u32, old: u32, new: u32| free(write, old) < needed && free(write, new) >= needed;
    let signals: Vec<_> = commits.iter().filter(|commit| commit.2).collect();
    assert!(signals.len() <= 1, "spurious signal: more than one signal for one crossing: {commits:?}");
    for &&(old, new, _) in &signals {
        assert!(pending_sets > 0, "spurious signal: the writer never set a pending send size: {commits:?}");
        assert!(
            crosses(full_at, old, new) || crosses(written_at, old, new),
            "spurious signal: the commit {old} -> {new} crossed no pending send size of {needed}"
        );
    }

    // Packet 3 arrived intact and the writer withdrew its request.
    let mut batch = reader.read_batch();
    expect_packet(&mut batch, 3, payload_len);
    let _ = batch.commit();
    assert_eq!(mem.load(ControlWord::PendingSendSize, Ordering::Relaxed), 0);

    let mut events = Vec::new();
    events.extend((pending_sets == 0).then_some("first write fitted"));
    events.extend((pending_sets > waits).then_some("set_pending_send_size found room"));
    events.extend((waits > 0).then_some("writer waited and was woken"));
    events.extend(commits[0].2.then_some("reader signalled on commit 1"));
    events.extend(commits[1].2.then_some("reader signalled on commit 2"));
    events
}

/// One execution of the publication model: the same full ring, but both
/// sides poll instead of signalling, so nothing can be lost and the model
/// checks only that the indices publish the bytes: the write index packet
/// 3's bytes to the reader, the read index packet 1's space (which packet 3
/// overwrites) to the writer.
fn publication_model<M: RingMem + Send + 'static>(wrap: fn(LoomRingMem) -> M) -> Vec<&'static str> {
    const PAYLOAD_3: usize = 976;
    let mem = LoomRingMem::new();
    let mut writer = OutgoingRing::new(wrap(mem.clone())).unwrap();
    let mut reader = IncomingRing::new(wrap(mem.clone())).unwrap();
    for id in [1, 2] {
        let _ = writer.write(&OutgoingPacket::in_band(id), &[&payload(id, BIG)]).unwrap();
    }
    let writer_thread = thread::spawn(move || {
        let mut polls = 0;
        while !writer.can_write(in_band_size(PAYLOAD_3)).unwrap() {
            polls += 1;
            thread::yield_now();
        }
        let _ = writer.write(&OutgoingPacket::in_band(3), &[&payload(3, PAYLOAD_3)]).unwrap();
        polls
    });
    let reader_thread = thread::spawn(move || {
        let mut polls = 0;
        for (id, len) in [(1, BIG), (2, BIG), (3, PAYLOAD_3)] {
            let mut batch = reader.read_batch();
            let packet = loop {
                match batch.next() {
                    Ok(Some(packet)) => break packet,
                    Ok(None) => {
                        polls += 1;
                        thread::yield_now();
                    }
                    Err(e) => panic!("reading packet {id}: {e}"),
                }
            };
            check_packet(&batch, &packet, id, len);
            let _ = batch.commit();
        }
        polls
    });
    let writer_polls = writer_thread.join().unwrap();
    let reader_polls = reader_thread.join().unwrap();
    let mut events = Vec::new();
    events.extend((writer_polls > 0).then_some("writer polled for room"));
    events.extend((reader_polls > 0).then_some("reader polled for packet 3"));
    events
}

/// The indices publish packet bytes: no data race on the ring's bytes.
#[test]
fn publication_by_indices() {
    check("publication_by_indices", || publication_model(|mem| mem))
        .saw("writer polled for room")
        .saw("reader polled for packet 3");
}

/// Packet 3 fits once packet 1 is freed: the first commit crosses.
#[test]
fn writer_pending_send_vs_reader_commit() {
    check("writer_pending_send_vs_reader_commit", || pending_send_model(|mem| mem, 976))
        .saw("first write fitted")
        .saw("set_pending_send_size found room")
        .saw("writer waited and was woken")
        .saw("reader signalled on commit 1");
}

/// Packet 3 fits only once both packets are freed: the first commit frees
/// space below the pending send size (no signal), the second crosses it.
#[test]
fn writer_pending_send_vs_reader_commit_second_crossing() {
    check("writer_pending_send_vs_reader_commit_second_crossing", || pending_send_model(|mem| mem, 2976))
        .saw("first write fitted")
        .saw("set_pending_send_size found room")
        .saw("writer waited and was woken")
        .saw("reader signalled on commit 2");
}

/// Memory whose writer asks for `data_len - 1` bytes whenever it sets a
/// pending send size, as some peers do: the reader must treat
/// that as "signal me when the ring is empty", never as a size no ring can
/// free.
#[derive(Debug, Clone)]
struct AsksRingSizeMinusOne(LoomRingMem);

impl ControlPage for AsksRingSizeMinusOne {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.0.load(word, order)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        let value = if word == ControlWord::PendingSendSize && value != 0 { LOOM_DATA_LEN as u32 - 1 } else { value };
        self.0.store(word, value, order)
    }
    fn full_fence(&self) {
        self.0.full_fence()
    }
}

/// A writer wanting the largest packet (only an empty ring holds it) and
/// asking for `data_len - 1` bytes: the commit that empties the ring
/// signals it.
#[test]
fn writer_pending_ring_size_minus_one_vs_reader_commit() {
    let largest = LOOM_DATA_LEN - 8 - in_band_size(0);
    check("writer_pending_ring_size_minus_one_vs_reader_commit", move || {
        pending_send_model(AsksRingSizeMinusOne, largest)
    })
    .saw("set_pending_send_size found room")
    .saw("writer waited and was woken")
    .saw("reader signalled on commit 2");
}

// ---------------------------------------------------------------------------
// The same rules with SeqCst accesses in place of the full fences
// ---------------------------------------------------------------------------

/// Memory that turns every control-word access into a `SeqCst` one and the
/// full fence into nothing: the other correct way to order "store my word,
/// then load the peer's" (the form a performance change may give the
/// endpoints). The models must pass over it too; `LoomRingMem` restores the
/// store-to-load order of `SeqCst` accesses that loom itself does not model.
#[derive(Debug, Clone)]
struct SeqCstNoFence(LoomRingMem);

impl ControlPage for SeqCstNoFence {
    fn load(&self, word: ControlWord, _: Ordering) -> u32 {
        self.0.load(word, Ordering::SeqCst)
    }
    fn store(&self, word: ControlWord, value: u32, _: Ordering) {
        self.0.store(word, value, Ordering::SeqCst)
    }
    fn full_fence(&self) {}
}

#[test]
fn reader_sleep_vs_writer_commit_seq_cst() {
    check("reader_sleep_vs_writer_commit_seq_cst", || sleep_model(SeqCstNoFence, false))
        .saw("reader slept and was woken")
        .saw("prepare_to_sleep found packets");
}

#[test]
fn writer_pending_send_vs_reader_commit_seq_cst() {
    check("writer_pending_send_vs_reader_commit_seq_cst", || pending_send_model(SeqCstNoFence, 976))
        .saw("set_pending_send_size found room")
        .saw("writer waited and was woken");
}

// ---------------------------------------------------------------------------
// Mutants: the models over broken memory must fail
// ---------------------------------------------------------------------------

/// Memory without store-to-load ordering: `full_fence` does nothing, and
/// `SeqCst` accesses are only acquire/release. The indices still publish
/// packet bytes (release/acquire), so what breaks is the signalling alone.
#[derive(Debug, Clone)]
struct Unfenced(LoomRingMem);

impl ControlPage for Unfenced {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        let order = if order == Ordering::SeqCst { Ordering::Acquire } else { order };
        self.0.load(word, order)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        let order = if order == Ordering::SeqCst { Ordering::Release } else { order };
        self.0.store(word, value, order)
    }
    fn full_fence(&self) {}
}

/// Memory that makes only the loads `SeqCst` and the full fence nothing:
/// a `Release` store followed by a `SeqCst` load is not ordered (in C++, on
/// Arm), so this must lose a wakeup, showing `LoomRingMem`'s `SeqCst`
/// emulation does not order more than the language does.
#[derive(Debug, Clone)]
struct SeqCstLoadsOnly(LoomRingMem);

impl ControlPage for SeqCstLoadsOnly {
    fn load(&self, word: ControlWord, _: Ordering) -> u32 {
        self.0.load(word, Ordering::SeqCst)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        let order = if order == Ordering::SeqCst { Ordering::Release } else { order };
        self.0.store(word, value, order)
    }
    fn full_fence(&self) {}
}

/// Memory whose accesses to one index word are relaxed, and whose full
/// fence does nothing: that index no longer publishes packet bytes (loom's
/// `SeqCst` fence orders more than the language's, so it goes too, lest it
/// hide the race).
#[derive(Debug, Clone)]
struct RelaxedIndex(LoomRingMem, ControlWord);

impl ControlPage for RelaxedIndex {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.0.load(word, if word == self.1 { Ordering::Relaxed } else { order })
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.0.store(word, value, if word == self.1 { Ordering::Relaxed } else { order })
    }
    fn full_fence(&self) {}
}

/// Memory whose interrupt mask always reads as 0: a writer that cannot see
/// the reader polling.
#[derive(Debug, Clone)]
struct MaskBlind(LoomRingMem);

impl ControlPage for MaskBlind {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        let value = self.0.load(word, order);
        if word == ControlWord::InterruptMask {
            0
        } else {
            value
        }
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.0.store(word, value, order)
    }
    fn full_fence(&self) {
        self.0.full_fence()
    }
}

/// Memory whose pending send size reads as `data_len - 1` whenever it is 0:
/// a reader that sees a request the writer never made.
#[derive(Debug, Clone)]
struct PhantomPending(LoomRingMem);

impl ControlPage for PhantomPending {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        match self.0.load(word, order) {
            0 if word == ControlWord::PendingSendSize => LOOM_DATA_LEN as u32 - 1,
            value => value,
        }
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.0.store(word, value, order)
    }
    fn full_fence(&self) {
        self.0.full_fence()
    }
}

macro_rules! delegate_ring_mem {
    ($($mutant:ident),*) => {$(
        impl RingMem for $mutant {
            fn data_len(&self) -> usize {
                self.0.data_len()
            }
            fn read_control(&self, offset: usize, buf: &mut [u8]) {
                self.0.read_control(offset, buf)
            }
            fn write_control(&self, offset: usize, buf: &[u8]) {
                self.0.write_control(offset, buf)
            }
            fn read_data(&self, offset: usize, buf: &mut [u8]) {
                self.0.read_data(offset, buf)
            }
            fn write_data(&self, offset: usize, buf: &[u8]) {
                self.0.write_data(offset, buf)
            }
            fn zero_data(&self, offset: usize, len: usize) {
                self.0.zero_data(offset, len)
            }
        }
    )*};
}

delegate_ring_mem!(
    AsksRingSizeMinusOne,
    SeqCstNoFence,
    Unfenced,
    SeqCstLoadsOnly,
    RelaxedIndex,
    MaskBlind,
    PhantomPending
);

#[test]
#[should_panic(expected = "lost wakeup: the reader sleeps")]
fn mutant_unfenced_reader_sleep_loses_wakeup() {
    check("mutant_unfenced_reader_sleep", || sleep_model(Unfenced, false));
}

#[test]
#[should_panic(expected = "lost wakeup: the writer waits")]
fn mutant_unfenced_pending_send_loses_wakeup() {
    check("mutant_unfenced_pending_send", || pending_send_model(Unfenced, 976));
}

#[test]
#[should_panic(expected = "lost wakeup: the reader sleeps")]
fn mutant_seq_cst_loads_only_loses_wakeup() {
    check("mutant_seq_cst_loads_only", || sleep_model(SeqCstLoadsOnly, false));
}

/// The reader reads packet 3's bytes while the writer still writes them.
#[test]
#[should_panic(expected = "Causality violation")]
fn mutant_relaxed_write_index_races_on_packet_bytes() {
    check("mutant_relaxed_write_index", || publication_model(|mem| RelaxedIndex(mem, ControlWord::WriteIndex)));
}

/// The writer overwrites packet 1's bytes while the reader still reads them.
#[test]
#[should_panic(expected = "Causality violation")]
fn mutant_relaxed_read_index_races_on_packet_bytes() {
    check("mutant_relaxed_read_index", || publication_model(|mem| RelaxedIndex(mem, ControlWord::ReadIndex)));
}

#[test]
#[should_panic(expected = "spurious signal")]
fn mutant_mask_blind_writer_signals_spuriously() {
    check("mutant_mask_blind", || sleep_model(MaskBlind, true));
}

#[test]
#[should_panic(expected = "spurious signal")]
fn mutant_phantom_pending_reader_signals_spuriously() {
    check("mutant_phantom_pending", || pending_send_model(PhantomPending, 976));
}
