//! Hostile peer, round 2: a peer that keeps one read call going, moves its
//! read index into the writer's open batch, floods the ring with packets
//! nobody is handed, or never completes requests; set-up attacks; a peer
//! that misses signals; a peer that mishandles pending send size.
//!
//! Each test names the finding it holds fixed.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};
use vmbus_channel::{
    block_on, connected_pair, ChannelError, ChannelFds, InProcessSignal, MemfdChannel, Queue, RawChannel,
    ReceiveLimits, SignalFds,
};
use vmbus_ring::{
    ControlPage, ControlWord, CorruptError, Field, FlatRingMem, IncomingRing, MappingLayout, OutgoingPacket,
    OutgoingRing, RingMem, WriteError,
};

// ------------------------------------------------- a write index that races

/// Ring memory whose write index, while `racing`, moves one 24-byte packet
/// further on every load (up to `limit` loads), as a peer that publishes
/// packets as fast as they are read; counts the loads.
#[derive(Clone)]
struct RacingWriteIndex {
    inner: FlatRingMem,
    racing: bool,
    loads: Arc<AtomicU64>,
    limit: u64,
}

/// Size of the packets the racing peer publishes: a descriptor and a footer.
const PACKET: u32 = 24;

impl ControlPage for RacingWriteIndex {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        if self.racing && word == ControlWord::WriteIndex {
            let loads = self.loads.fetch_add(1, Ordering::Relaxed);
            if loads < self.limit {
                let next = (self.inner.load(word, Ordering::Relaxed) + PACKET) % self.inner.data_len() as u32;
                self.inner.store(word, next, Ordering::Release);
            }
        }
        self.inner.load(word, order)
    }

    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.inner.store(word, value, order)
    }
}

impl RingMem for RacingWriteIndex {
    fn data_len(&self) -> usize {
        self.inner.data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.inner.read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.inner.write_control(offset, buf)
    }
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.inner.read_data(offset, buf)
    }
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.inner.write_data(offset, buf)
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.inner.zero_data(offset, len)
    }
}

/// A 12 KiB ring full of 24-byte packets: of type 1 (unsupported, skipped)
/// or completions (type 11) for transaction `completion_id`.
fn ring_of_packets(completion_id: Option<u64>) -> FlatRingMem {
    let ring = FlatRingMem::new(3 * 4096).unwrap();
    let (packet_type, id): (u16, u64) = match completion_id {
        Some(id) => (11, id),
        None => (1, 7),
    };
    for offset in (0..ring.data_len()).step_by(PACKET as usize) {
        let mut descriptor = [0u8; 24];
        descriptor[0..2].copy_from_slice(&packet_type.to_le_bytes());
        descriptor[2..4].copy_from_slice(&2u16.to_le_bytes()); // data offset: 16 bytes
        descriptor[4..6].copy_from_slice(&2u16.to_le_bytes()); // length: 16 bytes before the footer
        descriptor[8..16].copy_from_slice(&id.to_le_bytes());
        ring.write_data(offset, &descriptor);
    }
    ring
}

type RacingQueue = Queue<RacingWriteIndex, InProcessSignal>;

/// A queue reading `incoming` (racing for `limit` loads once open), matching
/// up to `transactions` requests if not 0; the load count; the peer's
/// signal, to keep the channel open.
fn racing_queue(
    incoming: FlatRingMem,
    limit: u64,
    transactions: usize,
) -> (RacingQueue, Arc<AtomicU64>, InProcessSignal) {
    let loads = Arc::new(AtomicU64::new(0));
    let quiet = RacingWriteIndex { inner: incoming, racing: false, loads: loads.clone(), limit };
    let outgoing = RacingWriteIndex { inner: FlatRingMem::new(4096).unwrap(), ..quiet.clone() };
    let (signal, peer) = InProcessSignal::pair();
    let (_, outgoing, signal) = RawChannel::new(quiet.clone(), outgoing, signal).unwrap().into_parts();
    let incoming = IncomingRing::new(RacingWriteIndex { racing: true, ..quiet }).unwrap();
    let channel = RawChannel::from_parts(incoming, outgoing, signal);
    let queue = match transactions {
        0 => Queue::new(channel),
        limit => Queue::with_transactions(channel, limit),
    };
    (queue, loads, peer)
}

/// Finding 1: a peer that keeps publishing a write index ahead of the
/// cursor kept one `try_read` going for as long as it did so (10^7 loads,
/// 20 s, in the report). Now one call looks at a bounded number of packets.
#[test]
fn one_read_call_does_bounded_work_against_a_racing_write_index() {
    const LIMIT: u64 = 1_000_000;
    let (mut queue, loads, _peer) = racing_queue(ring_of_packets(None), LIMIT, 0);
    assert_eq!(queue.reader_mut().try_read(), Ok(None), "every packet is skipped");
    let after_one_call = loads.load(Ordering::Relaxed);
    assert!(after_one_call <= 100, "one try_read loaded the write index {after_one_call} times");
    let counters = queue.state().counters;
    assert_eq!(counters.read_budget_spent, 1);
    assert_eq!(counters.unsupported_skipped, 64, "64 packets looked at beyond those handed out");

    // Asking for any number does not lift the budget.
    assert_eq!(queue.reader_mut().try_read_batch(usize::MAX, |_, _| {}), Ok(0));
    assert!(loads.load(Ordering::Relaxed) - after_one_call <= 100);
}

/// Finding 1 for waiting reads: `poll_read_batch` returns `Ready(Ok(0))`
/// at the budget instead of running on, so an executor, `block_on_until`,
/// or an event loop that sleeps on the signal's fd (which a `Pending` would
/// leave asleep with packets in the ring) gets its turn.
#[test]
fn a_waiting_read_returns_at_its_budget_under_a_flood() {
    // A flood without end: a bounded one could run out during the blocking
    // read below (a fast build makes a million loads in its 20 ms), and the
    // last `read` would then find a quiet ring and sleep instead of yielding.
    let (mut queue, loads, _peer) = racing_queue(ring_of_packets(None), u64::MAX, 0);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for round in 1..=3u64 {
        let poll = queue.reader_mut().poll_read_batch(&mut cx, 8, |_, _| panic!("nothing is handed out"));
        assert_eq!(poll, std::task::Poll::Ready(Ok(0)), "round {round}");
    }
    assert!(loads.load(Ordering::Relaxed) <= 3 * 100);
    assert_eq!(queue.state().counters.read_budget_spent, 3);
    // A blocking read ends at its deadline though the flood goes on.
    let deadline = Instant::now() + Duration::from_millis(20);
    assert_eq!(queue.reader_mut().read_batch_blocking(8, Some(deadline), |_, _| {}), Err(ChannelError::TimedOut));
    // `read` gives the executor a turn after each budget: it is pending,
    // having woken its task.
    let (waker, wakes) = counting_waker();
    let mut read = Box::pin(queue.reader_mut().read());
    assert!(read.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    assert_eq!(wakes.load(Ordering::Relaxed), 1);
}

/// A signal that always has news: a peer flooding this end with signals.
#[derive(Debug, Default)]
struct Flood(vmbus_channel::Notifier);

impl vmbus_channel::Signal for Flood {
    fn signal_peer(&self) {}
    fn notifier(&self) -> &vmbus_channel::Notifier {
        &self.0
    }
    fn poll_signal(&self, _: &mut Context<'_>, _: u64) -> std::task::Poll<io::Result<vmbus_channel::PeerEvent>> {
        std::task::Poll::Ready(Ok(vmbus_channel::PeerEvent::Signalled))
    }
    fn wait(&self, _: u64, _: Option<Instant>) -> Option<vmbus_channel::PeerEvent> {
        Some(vmbus_channel::PeerEvent::Signalled)
    }
    fn close(&self) {}
}

/// Finding 1 for writes: a peer that keeps signalling while the ring stays
/// full kept one write call going; now it yields, and a blocking write ends
/// at its deadline.
#[test]
fn a_write_into_a_full_ring_yields_under_a_signal_flood() {
    let (to_peer, from_peer) = (FlatRingMem::new(4096).unwrap(), FlatRingMem::new(4096).unwrap());
    let mut queue = Queue::new(RawChannel::new(from_peer, to_peer, Flood::default()).unwrap());
    while queue.writer_mut().try_write(&OutgoingPacket::in_band(1), &[&[7; 1000]]).is_ok() {}
    let (waker, wakes) = counting_waker();
    let mut written = 0;
    let packet = [(OutgoingPacket::in_band(2), &[&[8u8; 1000][..]][..])];
    let poll = queue.writer_mut().poll_write_batch(&mut Context::from_waker(&waker), &packet, &mut written);
    assert!(poll.is_pending());
    assert_eq!(wakes.load(Ordering::Relaxed), 1, "the yield woke the task");
    let deadline = Instant::now() + Duration::from_millis(20);
    assert_eq!(queue.writer_mut().write_batch_blocking(&packet, Some(deadline)), Err(ChannelError::TimedOut));
}

/// Finding 3: late completions (their requests given up) count against
/// the same budget as skipped packets, and show in the counters.
#[test]
fn late_completions_count_against_the_budget() {
    let (mut queue, loads, _peer) = racing_queue(ring_of_packets(Some(1)), 1_000_000, 4);
    let given_up = block_on(queue.writer_mut().request(&OutgoingPacket::in_band(0), &[b"request"])).unwrap();
    assert_eq!(given_up.transaction_id(), 1);
    drop(given_up);
    assert_eq!(queue.reader_mut().try_read(), Ok(None));
    assert!(loads.load(Ordering::Relaxed) <= 100);
    let counters = queue.state().counters;
    assert_eq!((counters.stale_completions, counters.read_budget_spent), (64, 1));
}

fn counting_waker() -> (std::task::Waker, Arc<AtomicU64Wake>) {
    let count = Arc::new(AtomicU64Wake(AtomicU64::new(0)));
    (std::task::Waker::from(count.clone()), count)
}

struct AtomicU64Wake(AtomicU64);

impl AtomicU64Wake {
    fn load(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }
}

impl std::task::Wake for AtomicU64Wake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

// ------------------------------------- a read index inside the open batch

/// Finding 2: the peer stores a read index inside the writer's own
/// uncommitted batch; the next packet of the batch used to overwrite the
/// first one's descriptor and commit a corrupt ring. Now it is corrupt.
#[test]
fn a_read_index_moved_into_the_open_batch_is_corrupt() {
    let mem = FlatRingMem::new(4096).unwrap();
    let mut ring = OutgoingRing::new(mem.clone()).unwrap();
    let mut batch = ring.write_batch();
    batch.write(&OutgoingPacket::in_band(1), &[&[0xaa; 1000]]).unwrap();
    mem.store(ControlWord::ReadIndex, 1024, Ordering::Release);
    let lied = batch.write(&OutgoingPacket::in_band(2), &[&[0xbb; 3100]]);
    assert_eq!(lied, Err(WriteError::Corrupt(CorruptError::new(Field::ReadIndex, 1024))));
    assert_eq!(batch.packets(), 1);
    drop(batch);
    assert_eq!(mem.load(ControlWord::WriteIndex, Ordering::Acquire), 0, "nothing was published");
}

/// Finding 2, the other lies: a read index behind the cached one (moving
/// back) or past the committed write index is corrupt; one that moves
/// forward within what was committed is honest and frees the space.
#[test]
fn a_read_index_may_only_move_forward_within_what_was_committed() {
    let mem = FlatRingMem::new(4096).unwrap();
    let mut ring = OutgoingRing::new(mem.clone()).unwrap();
    for _ in 0..3 {
        assert!(ring.write(&OutgoingPacket::in_band(1), &[&[1; 1000]]).is_ok());
    }
    let committed = ring.write_index(); // 3 × 1024
    assert_eq!(committed, 3072);
    // Honest: the reader read two packets.
    mem.store(ControlWord::ReadIndex, 2048, Ordering::Release);
    assert!(ring.write(&OutgoingPacket::in_band(2), &[&[2; 1500]]).is_ok());
    // Back behind the cached one.
    mem.store(ControlWord::ReadIndex, 1024, Ordering::Release);
    let back = ring.write(&OutgoingPacket::in_band(3), &[&[3; 2000]]);
    assert_eq!(back, Err(WriteError::Corrupt(CorruptError::new(Field::ReadIndex, 1024))));
    // Past the committed write index.
    let written = ring.write_index();
    mem.store(ControlWord::ReadIndex, written + 8, Ordering::Release);
    let past = ring.write(&OutgoingPacket::in_band(4), &[&[4; 3000]]);
    assert!(matches!(past, Err(WriteError::Corrupt(_))), "{past:?}");
}

// ------------------------------------------------- abandoned transactions

/// Finding 4: with a limit of 4, four dropped requests used to make every
/// later request fail with `TooManyTransactions` for ever.
#[test]
fn dropped_requests_do_not_use_up_the_transaction_limit() {
    let (host, guest) = connected_pair(4 * 4096).unwrap();
    let (mut host, mut guest) = (Queue::with_transactions(host, 4), Queue::new(guest));
    let mut given_up = Vec::new();
    for round in 0..10u64 {
        let completion = block_on(host.writer_mut().request(&OutgoingPacket::in_band(round), &[b"never answered"]));
        given_up.push(completion.expect("a request after dropped ones").transaction_id());
    }
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
    // The peer answers them all late: dropped and counted, no error.
    while let Ok(Some(request)) = guest.reader_mut().try_read() {
        let id = request.header.transaction_id;
        guest.writer_mut().try_write(&OutgoingPacket::completion(id), &[b"late"]).unwrap();
    }
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_eq!(host.state().counters.stale_completions, given_up.len() as u64);
    // An id never issued is still an error.
    guest.writer_mut().try_write(&OutgoingPacket::completion(1 << 40), &[b"forged"]).unwrap();
    assert_eq!(host.reader_mut().try_read(), Err(ChannelError::UnknownTransaction(1 << 40)));
}

/// Finding 4: closing reclaims every slot; completions already in are kept
/// for their requests.
#[test]
fn closing_reclaims_every_transaction() {
    let (host, guest) = connected_pair(4 * 4096).unwrap();
    let (mut host, mut guest) = (Queue::with_transactions(host, 4), Queue::new(guest));
    let first = block_on(host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"a"])).unwrap();
    let second = block_on(host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"b"])).unwrap();
    let first_id = guest.reader_mut().try_read().unwrap().unwrap().header.transaction_id;
    guest.writer_mut().try_write(&OutgoingPacket::completion(first_id), &[b"done"]).unwrap();
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    drop(guest);
    assert_eq!(host.reader_mut().try_read(), Err(ChannelError::Closed));
    assert_eq!(host.writer_mut().outstanding_transactions(), 1, "only the completed one is kept");
    assert_eq!(&block_on(first).unwrap()[..4], b"done");
    assert_eq!(block_on(second), Err(ChannelError::Closed));
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

// ------------------------------------------------------------------ set-up

/// Finding 5: the same memfd given as both rings was accepted (this end
/// then reads back its own packets).
#[test]
fn one_file_as_both_rings_is_refused() {
    let (host, _guest) = ChannelFds::pair(4096).unwrap();
    let looped = ChannelFds {
        incoming_ring: host.outgoing_ring.try_clone().unwrap(),
        outgoing_ring: host.outgoing_ring,
        signal: host.signal,
    };
    let (here, there) = UnixStream::pair().unwrap();
    let again = ChannelFds {
        incoming_ring: looped.incoming_ring.try_clone().unwrap(),
        outgoing_ring: looped.outgoing_ring.try_clone().unwrap(),
        signal: match &looped.signal {
            SignalFds::Socket(socket) => SignalFds::Socket(socket.try_clone().unwrap()),
            SignalFds::EventFd { .. } => unreachable!("a socket signal pair"),
        },
    };
    let error = MemfdChannel::from_fds(looped, MappingLayout::Single).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("same file"), "{error}");

    again.send(&here).unwrap();
    let error = ChannelFds::receive_with(&there, &ReceiveLimits::default()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("same file"), "{error}");
}

/// Finding 5: the peer's files picked the ring size with no cap.
#[test]
fn rings_above_the_callers_cap_are_refused() {
    let (here, there) = UnixStream::pair().unwrap();
    let limits = ReceiveLimits { max_data_len: 16 * 4096, ..ReceiveLimits::default() };
    ChannelFds::pair(16 * 4096).unwrap().1.send(&here).unwrap();
    assert!(ChannelFds::receive_with(&there, &limits).is_ok(), "at the cap");
    ChannelFds::pair(17 * 4096).unwrap().1.send(&here).unwrap();
    let error = ChannelFds::receive_with(&there, &limits).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("above the 65536 accepted"), "{error}");
}

/// Finding 5, the cap kept: a ring file the peer could still grow after the
/// size check is refused.
#[test]
fn a_ring_file_that_can_still_grow_is_refused() {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let growable = memfd_create("growable-ring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&growable, 2 * 4096).unwrap();
    fcntl_add_seals(&growable, SealFlags::SHRINK).unwrap();
    let (fds, _peer) = ChannelFds::pair(4096).unwrap();
    let (here, there) = UnixStream::pair().unwrap();
    ChannelFds { incoming_ring: growable, ..fds }.send(&here).unwrap();
    let error = ChannelFds::receive_with(&there, &ReceiveLimits::default()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("not sealed against growing"), "{error}");
}

/// Finding 5: a peer that sends the fds with part of the message, then
/// nothing, held `receive` for ever.
#[test]
fn a_partial_message_ends_at_the_receive_timeout() {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let (here, there) = UnixStream::pair().unwrap();
    let (fds, _peer) = ChannelFds::pair(4096).unwrap();
    let SignalFds::Socket(socket) = &fds.signal else { unreachable!("a socket signal pair") };
    let sent = [fds.incoming_ring.as_fd(), fds.outgoing_ring.as_fd(), socket.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&sent)));
    sendmsg(&here, &[io::IoSlice::new(b"vmb")], &mut control, SendFlags::empty()).unwrap();
    let limits = ReceiveLimits { timeout: Some(Duration::from_millis(50)), ..ReceiveLimits::default() };
    let error = ChannelFds::receive_with(&there, &limits).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    assert_eq!(there.read_timeout().unwrap(), None, "the socket's own timeout is put back");
}

// ----------------------------------------------------------- stuck channels

/// Finding 6: a peer that misses a signal stays asleep. Here the host frees
/// room a blocked guest writer asked for, but its signal is lost; the
/// host's `unstick` sees from the control page that the writer should be
/// awake, signals it, and the write goes through.
#[test]
fn unstick_wakes_a_writer_whose_signal_was_lost() {
    let (mut host, guest) = connected_pair(4096).unwrap();
    let (guest_reader, mut guest_writer) = Queue::new(guest).split();
    while guest_writer.try_write(&OutgoingPacket::in_band(1), &[&[7; 1000]]).is_ok() {}
    let writer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        guest_writer.write_batch_blocking(&[(OutgoingPacket::in_band(2), &[&[8; 1000]])], Some(deadline))
    });
    // Once the write counts a wait it has looked for room for the last time
    // before sleeping: room made from now on is found only on waking.
    let asleep = Instant::now() + Duration::from_secs(60);
    while guest_reader.counters().write_waits == 0 {
        assert!(Instant::now() < asleep, "the guest writer never waited");
        std::thread::yield_now();
    }
    // The host reads everything; the signal its commit calls for is lost.
    let mut batch = host.incoming_mut().read_batch();
    while let Ok(Some(_packet)) = batch.next() {}
    assert!(batch.commit(), "the commit called for a signal");
    let mut host = Queue::new(host);
    assert!(host.unstick().unwrap(), "the blocked writer should be awake");
    assert_eq!(writer.join().unwrap(), Ok(()));
    assert_eq!(host.state().counters.unstick_signals, 1);
    assert!(host.reader_mut().try_read().unwrap().is_some());
    assert!(!host.unstick().unwrap(), "nothing stuck any more");
    assert_eq!(host.state().counters.unstick_signals, 1);
}

/// Finding 6 from a timer in async code: `Queue::unstick` wakes this end's
/// own async writer when the room it asked for is free but the peer's
/// signal was lost.
#[test]
fn unstick_wakes_this_ends_own_async_writer() {
    let (host, mut guest) = connected_pair(4096).unwrap();
    let mut host = Queue::new(host);
    while host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[&[7; 1000]]).is_ok() {}
    let (waker, wakes) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let packet = [(OutgoingPacket::in_band(2), &[&[8u8; 1000][..]][..])];
    let mut written = 0;
    assert!(host.writer_mut().poll_write_batch(&mut cx, &packet, &mut written).is_pending());
    let mut batch = guest.incoming_mut().read_batch();
    while let Ok(Some(_packet)) = batch.next() {}
    let _lost_signal = batch.commit();
    assert_eq!(wakes.load(Ordering::Relaxed), 0);
    host.unstick().unwrap();
    assert!(wakes.load(Ordering::Relaxed) > 0, "unstick woke the waiting writer");
    assert_eq!(host.writer_mut().poll_write_batch(&mut cx, &packet, &mut written), std::task::Poll::Ready(Ok(())));
}

/// Finding 6 on a timer, the other direction: a blocking read waiting for
/// a reply signals the peer again while it has not read this end's request
/// (its signal was lost).
#[test]
fn a_blocked_reader_re_signals_a_peer_that_has_not_read_its_request() {
    let (host, guest) = connected_pair(4096).unwrap();
    let guest_signal = guest.signal().clone();
    let mut host = Queue::new(host);
    host.set_unstick_interval(Some(Duration::from_millis(5))).unwrap();
    let (mut reader, mut writer) = host.split();
    writer.try_write(&OutgoingPacket::in_band(1), &[b"request"]).unwrap();
    let signalled = vmbus_channel::Signal::notifier(&*guest_signal).generation();
    let reading = std::thread::spawn(move || {
        reader.read_batch_blocking(1, Some(Instant::now() + Duration::from_secs(60)), |_, _| {})
    });
    let again = Instant::now() + Duration::from_secs(60);
    while vmbus_channel::Signal::notifier(&*guest_signal).generation() == signalled {
        assert!(Instant::now() < again, "the blocked reader never signalled the peer again");
        std::thread::yield_now();
    }
    assert!(writer.counters().unstick_signals > 0);
    drop((guest, guest_signal));
    assert_eq!(reading.join().unwrap(), Err(ChannelError::Closed));
}

/// Finding 6: a reader that missed the signal for packets it has not read
/// is signalled again by the writer's `unstick`; a masked (polling) reader
/// is not.
#[test]
fn unstick_signals_a_reader_with_unread_packets() {
    let (host, guest) = connected_pair(4096).unwrap();
    let guest_signal = guest.signal().clone();
    let (mut host, mut guest) = (Queue::new(host), guest);
    assert!(!host.writer_mut().unstick(), "nothing to read");
    host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"unread"]).unwrap();
    let seen = vmbus_channel::Signal::notifier(&*guest_signal).generation();
    assert!(host.writer_mut().unstick());
    assert_eq!(vmbus_channel::Signal::notifier(&*guest_signal).generation(), seen + 1);
    guest.incoming_mut().set_interrupt_mask(true);
    assert!(!host.writer_mut().unstick(), "a polling reader needs no signal");
}

// ------------------------------------------------------------- peer quirks

/// Finding 7: a writer that waits for room without a pending send size
/// (peers that advertise the feature but mishandle it) is never signalled
/// by an honest reader; with `signal_every_commit` it is.
#[test]
fn signal_every_commit_serves_a_writer_that_ignores_pending_send_size() {
    for quirk in [false, true] {
        let (host, mut guest) = connected_pair(4096).unwrap();
        let mut host = Queue::new(host);
        host.reader_mut().signal_every_commit(quirk);
        while guest.outgoing_mut().write(&OutgoingPacket::in_band(1), &[&[7; 1000]]).is_ok() {}
        let seen = vmbus_channel::Signal::notifier(&**guest.signal()).generation();
        assert_eq!(host.reader_mut().try_read_batch(1, |_, _| {}), Ok(1));
        let signalled = vmbus_channel::Signal::notifier(&**guest.signal()).generation() > seen;
        assert_eq!(signalled, quirk, "quirk {quirk}");
    }
}

/// Finding 6, on a timer: a blocking read whose peer's signal is lost wakes
/// at the unstick interval, looks again and finds the packet (without the
/// interval it would sleep until its deadline).
#[test]
fn a_blocking_read_with_an_unstick_interval_survives_a_lost_signal() {
    let (host, mut guest) = connected_pair(4096).unwrap();
    let mut host = Queue::new(host);
    assert!(!host.set_unstick_interval(Some(Duration::from_millis(5))).unwrap());
    let (mut reader, writer) = host.split();
    let reading = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        reader.read_batch_blocking(8, Some(deadline), |_, _| {})
    });
    // Once the read counts a wait it has looked at the ring for the last
    // time before sleeping: a packet from now on is found only on waking.
    let asleep = Instant::now() + Duration::from_secs(60);
    while writer.counters().read_waits == 0 {
        assert!(Instant::now() < asleep, "the host never waited");
        std::thread::yield_now();
    }
    let _lost_signal = guest.outgoing_mut().write(&OutgoingPacket::in_band(1), &[b"unsignalled"]).unwrap();
    assert_eq!(reading.join().unwrap(), Ok(1));
}

/// Finding 6, on a timer, for a writer: a blocking write into a full ring
/// whose reader frees it without signalling wakes at the interval and goes
/// through.
#[test]
fn a_blocking_write_with_an_unstick_interval_survives_a_lost_signal() {
    let (host, mut guest) = connected_pair(4096).unwrap();
    let mut host = Queue::new(host);
    while host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[&[7; 1000]]).is_ok() {}
    host.set_unstick_interval(Some(Duration::from_millis(5))).unwrap();
    let (reader, mut writer) = host.split();
    let writing = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        writer.write_batch_blocking(&[(OutgoingPacket::in_band(2), &[&[8; 1000]])], Some(deadline))
    });
    let asleep = Instant::now() + Duration::from_secs(60);
    while reader.counters().write_waits == 0 {
        assert!(Instant::now() < asleep, "the host writer never waited");
        std::thread::yield_now();
    }
    let mut batch = guest.incoming_mut().read_batch();
    while let Ok(Some(_)) = batch.next() {}
    let _lost_signal = batch.commit();
    assert_eq!(writing.join().unwrap(), Ok(()));
}
