//! The read half of a queue.

use super::counters::Counters;
use super::unstick::Unstick;
use super::wait::{InTask, InThread, Wait, Woke};
use super::Shared;
use crate::events::{self, Ring};
use crate::signal::Signal;
use crate::transaction::Delivery;
use crate::ChannelError;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use vmbus_ring::{
    GpaRanges, IncomingPacket, IncomingRing, OwnedPacketKind, PacketKind, PayloadError, ReadBatch, ReadError, RingMem,
    TransferPageRange,
};

/// A received packet with its payload and range list copied out of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The validated header. Its kind's range list, if any, was read
    /// through a batch that has ended: use [`kind`](Self::kind) instead.
    pub header: IncomingPacket,
    /// The kind with its range list.
    pub kind: OwnedPacketKind,
    /// The payload, padding to 8 bytes included.
    pub payload: Vec<u8>,
}

/// A packet's payload and range list while they are still in the read
/// batch: the payload in the ring, the range list in the batch's private
/// copy.
#[derive(Debug)]
pub struct Payload<'a, M> {
    batch: &'a ReadBatch<'a, M>,
    packet: IncomingPacket,
}

impl<'a, M: RingMem> Payload<'a, M> {
    /// Length in bytes, padding to 8 included.
    pub fn len(&self) -> usize {
        self.packet.payload.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.packet.payload.is_empty()
    }

    /// Copies the bytes starting `offset` bytes into the payload into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), PayloadError> {
        self.batch.read_payload(self.packet.payload, offset, buf)
    }

    /// The GPA ranges of a GPA-direct packet; `None` for any other kind.
    ///
    /// ```
    /// use vmbus_channel::{connected_pair, Queue};
    /// use vmbus_ring::{GpaRangeBuf, OutgoingPacket};
    /// let (host, guest) = connected_pair(16 * 4096)?;
    /// let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
    /// let mut ranges = GpaRangeBuf::new();
    /// ranges.push_contiguous(0x20_0000, 8192)?;
    /// guest.writer_mut().try_write(&OutgoingPacket::gpa_direct(1, ranges.ranges()), &[b"read"])?;
    /// host.reader_mut().try_read_batch(8, |_, payload| {
    ///     let range = payload.gpa_ranges().expect("GPA-direct").iter().next().unwrap();
    ///     assert_eq!(range.page_numbers().collect::<Vec<_>>(), [0x200, 0x201]);
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gpa_ranges(&self) -> Option<GpaRanges<'a>> {
        self.batch.gpa_ranges(&self.packet).ok()
    }

    /// The ranges of a transfer-pages packet; `None` for any other kind.
    pub fn transfer_page_ranges(&self) -> Option<&'a [TransferPageRange]> {
        self.batch.transfer_page_ranges(&self.packet).ok()
    }

    /// The packet's kind with its range list copied, to keep.
    pub fn owned_kind(&self) -> OwnedPacketKind {
        // The packet is this batch's own, so its list is there.
        self.batch.owned_kind(&self.packet).unwrap_or(OwnedPacketKind::InBand)
    }

    /// The whole payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.len()];
        // In bounds by construction: the range is this packet's own.
        let _ = self.read_at(0, &mut bytes);
        bytes
    }
}

/// Packets a read call may look at beyond the `max` it hands out: packets
/// of unsupported types it skips, completions it routes to their requests,
/// late completions it drops. Past this the call commits and returns (an
/// async read yields, waking itself), so a peer that floods the ring with
/// packets nobody is handed cannot keep one call going.
const EXTRA_PACKETS_PER_CALL: usize = 64;

/// Packets a read call hands out at most, whatever its `max`: a peer that
/// publishes new packets as fast as they are read cannot keep one call
/// going either.
const PACKETS_PER_CALL: usize = 4096;

/// What one non-waiting read did.
#[derive(Default)]
struct Read {
    /// Packets handed to the handler.
    handled: usize,
    /// Whether completions went to their requests.
    routed: bool,
    /// Whether the call stopped at its work budget with packets maybe left.
    budget_spent: bool,
}

/// The read half of a [`Queue`](crate::Queue).
#[derive(Debug)]
pub struct QueueReader<M, S> {
    pub(super) ring: IncomingRing<M>,
    pub(super) signal: Arc<S>,
    pub(super) shared: Arc<Shared>,
    /// An error met after some packets of a batch were handled, reported by
    /// the next read.
    pub(super) deferred: Option<ChannelError>,
    /// How long a waiting read polls the ring before it sleeps.
    pub(super) busy_poll: Duration,
    /// How often a blocking read looks for a peer that missed a signal, and
    /// the ring this end writes, to look at its control page too.
    pub(super) unstick: Option<Unstick<M>>,
}

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// Reads up to `max` packets without waiting, handing each to `handle`
    /// with its payload still in the ring, then frees them with one commit
    /// and at most one signal. Returns how many were handled; `Ok(0)` if none
    /// was there, and [`ChannelError::Closed`] if none was there and the
    /// peer has closed: every packet it sent before closing is read first.
    ///
    /// The work of one call is bounded, whatever the peer does: it hands
    /// out at most 4096 packets, and looks at no more than 64 packets beyond
    /// those it hands out (skipped, routed to a request, dropped). A call
    /// that stops at that budget returns what it handed out, possibly
    /// `Ok(0)` with packets left, and counts in
    /// [`QueueCounters::read_budget_spent`](crate::QueueCounters::read_budget_spent);
    /// call again to go on.
    ///
    /// With an fd-backed signal, a call that finds the ring empty reads the
    /// signal's fd once (a system call without waiting), to learn of a close.
    ///
    /// Completions of this queue's transactions go to their requests, not to
    /// `handle`. Packets of unsupported types are skipped and counted. An
    /// error comes after the packets before it have been handled and freed:
    /// if some were, the error is returned by the next call.
    pub fn try_read_batch<F>(&mut self, max: usize, handle: F) -> Result<usize, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        self.read_now(max, handle, true).map(|read| read.handled)
    }

    /// [`try_read_batch`](Self::try_read_batch); `receive`: whether a read
    /// that finds the ring empty takes in the signal first, to learn of a
    /// close that nobody took in yet (a waiting read learns of it by waiting).
    fn read_now<F>(&mut self, max: usize, mut handle: F, receive: bool) -> Result<Read, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        if max == 0 {
            return Ok(Read::default());
        }
        let counters = &self.shared.counters;
        let mut batch = self.ring.read_batch();
        let mut handled = 0;
        let mut failure = None;
        let (mut drained, mut budget_spent) = (false, false);
        let max = max.min(PACKETS_PER_CALL);
        // Counted here and added to the shared counters once a batch: an
        // atomic add per packet would cost more than reading it.
        let (mut packets, mut bytes, mut skipped, mut stale) = (0, 0, 0, 0);
        let mut looked_at = 0;
        while handled < max {
            if looked_at - handled == EXTRA_PACKETS_PER_CALL {
                budget_spent = true;
                break;
            }
            looked_at += 1;
            let packet = match batch.next() {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    drained = true;
                    break;
                }
                Err(ReadError::Unsupported(_)) => {
                    skipped += 1;
                    continue;
                }
                Err(ReadError::Corrupt(corrupt)) => {
                    // The ring is unusable from here: no completion can come.
                    self.shared.fail_transactions();
                    failure = Some(events::traced(Ring::Incoming, corrupt));
                    break;
                }
                Err(other) => {
                    failure = Some(ChannelError::Read(other));
                    break;
                }
            };
            packets += 1;
            bytes += packet.payload.len() as u64;
            let payload = Payload { batch: &batch, packet };
            if let (PacketKind::Completion, Some(transactions)) = (&packet.kind, &self.shared.transactions) {
                match transactions.complete(packet.transaction_id, payload.to_vec()) {
                    Ok(Delivery::Delivered) => {}
                    Ok(Delivery::Stale) => stale += 1,
                    Err(unknown) => {
                        failure = Some(unknown);
                        break;
                    }
                }
            } else {
                handle(&packet, &payload);
                handled += 1;
            }
        }
        if batch.commit() {
            self.signal.signal_peer();
            Counters::add(&counters.reader_signals_sent, 1);
        }
        if packets > 0 {
            Counters::add(&counters.packets_received, packets);
            Counters::add(&counters.bytes_received, bytes);
        }
        if skipped > 0 {
            Counters::add(&counters.unsupported_skipped, skipped);
        }
        if stale > 0 {
            events::stale_completions(stale);
            Counters::add(&counters.stale_completions, stale);
        }
        if budget_spent {
            Counters::add(&counters.read_budget_spent, 1);
        }
        let read = Read { handled, routed: packets > handled as u64, budget_spent };
        // `self.deferred` is `None` here (taken above); it is set only when
        // there is an error to defer, not rewritten with `None` on every call.
        match failure {
            None if drained && packets == 0 && skipped == 0 && self.peer_closed_and_drained(receive)? => {
                self.shared.fail_transactions();
                Err(ChannelError::Closed)
            }
            None => Ok(read),
            Some(error) if handled == 0 => Err(error),
            Some(error) => {
                self.deferred = Some(error);
                Ok(read)
            }
        }
    }

    /// Like [`try_read_batch`](Self::try_read_batch), but waits until at
    /// least one packet arrives. Fails with [`ChannelError::Closed`] once the
    /// peer has closed and the ring is drained.
    ///
    /// `Ready(Ok(0))` when the call spent its work budget on packets it does
    /// not hand out (see [`try_read_batch`](Self::try_read_batch)) or on a
    /// ring that kept looking non-empty and then empty: poll again. (It
    /// returns rather than `Pending`, so that a caller that sleeps on the
    /// signal's fd is not left asleep with packets in the ring.)
    pub fn poll_read_batch<F>(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        handle: F,
    ) -> Poll<Result<usize, ChannelError>>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        self.read_waiting(&mut InTask(cx), max, handle)
    }

    /// Like [`poll_read_batch`](Self::poll_read_batch), but blocks the
    /// calling thread, which waits on the signal itself (an fd-backed signal
    /// is polled right here, with no reactor and no other thread), until
    /// `deadline` (`None`: none) and then fails with
    /// [`ChannelError::TimedOut`]. Unlike the async read, it also returns
    /// (with `Ok(0)`) when only completions of this queue's transactions
    /// arrived: they went to their requests (or were dropped as stale), and
    /// a thread waiting for one needs to look.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use vmbus_channel::{ChannelError, Queue, SocketSignal, RawChannel};
    /// use vmbus_ring::{FlatRingMem, OutgoingPacket};
    ///
    /// let (a_to_b, b_to_a) = (FlatRingMem::new(4096)?, FlatRingMem::new(4096)?);
    /// let (a, b) = SocketSignal::pair()?;
    /// let mut a = Queue::new(RawChannel::new(b_to_a.clone(), a_to_b.clone(), a)?);
    /// let mut b = Queue::new(RawChannel::new(a_to_b, b_to_a, b)?);
    /// a.writer_mut().write_blocking(&OutgoingPacket::in_band(1), &[b"hi"])?;
    /// let mut seen = Vec::new();
    /// let read = b.reader_mut().read_batch_blocking(8, None, |header, _| seen.push(header.transaction_id))?;
    /// assert_eq!((read, seen), (1, vec![1]));
    /// // Nothing more: the deadline ends the wait.
    /// let soon = Instant::now() + Duration::from_millis(10);
    /// assert_eq!(b.reader_mut().read_batch_blocking(8, Some(soon), |_, _| {}), Err(ChannelError::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_batch_blocking<F>(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        mut handle: F,
    ) -> Result<usize, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        loop {
            let mut wait =
                InThread { deadline, unstick_interval: self.unstick.as_ref().map(|unstick| unstick.interval) };
            if let Poll::Ready(result) = self.read_waiting(&mut wait, max, &mut handle) {
                return result;
            }
        }
    }

    /// The waiting read, waiting through `wait`.
    fn read_waiting<F, W: Wait>(&mut self, wait: &mut W, max: usize, mut handle: F) -> Poll<Result<usize, ChannelError>>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        /// Looks at the ring a waiting read takes before it yields: a peer
        /// that makes the ring look non-empty and then empty again cannot
        /// keep one call going.
        const LOOKS_PER_CALL: usize = 64;
        let mut polled = false;
        let mut looks = 0;
        loop {
            looks += 1;
            let seen = self.signal.notifier().generation();
            let read = self.read_now(max, &mut handle, false)?;
            if read.handled > 0 || (read.routed && W::ENDS_ON_COMPLETIONS) {
                return Poll::Ready(Ok(read.handled));
            }
            if read.budget_spent || looks == LOOKS_PER_CALL {
                looks = 0;
                if W::ENDS_ON_BUDGET {
                    return Poll::Ready(Ok(0));
                }
                if wait.yield_now()?.is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            if !polled && !self.busy_poll.is_zero() {
                polled = true;
                if self.poll_ring() {
                    continue;
                }
            }
            // Closing is read before the last look at the ring: a peer that
            // commits and then closes has its last packets seen here.
            let closed = self.signal.notifier().is_closed();
            if !self.ring.prepare_to_sleep().map_err(|error| events::traced(Ring::Incoming, error))? {
                continue;
            }
            if closed {
                self.shared.fail_transactions();
                return Poll::Ready(Err(ChannelError::Closed));
            }
            match wait.wait(&*self.signal, seen, &self.shared.counters.read_waits)? {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Woke::Tick) => {
                    self.unstick()?;
                }
                Poll::Ready(Woke::News) => {}
            }
        }
    }

    /// Sets how long a read that finds the ring empty polls it before it
    /// sleeps on the peer's signal; zero, the default, sleeps at once.
    ///
    /// While it polls, the reader keeps the ring's interrupt mask set, so
    /// the writer does not signal it: a packet that arrives within the
    /// budget is read without a signal, a system call, or a thread switch on
    /// either side (across processes a signal costs tens of microseconds).
    /// Once the budget is spent the reader clears the mask, checks the ring
    /// once more and sleeps as usual, so no signal is ever missed. The cost
    /// is the CPU time polled: up to `budget` of the calling thread (for an
    /// async read, the executor's) each time the ring is found empty.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vmbus_channel::{block_on, connected_pair, Queue};
    /// use vmbus_ring::OutgoingPacket;
    ///
    /// let (host, guest) = connected_pair(4096).unwrap();
    /// let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
    /// guest.reader_mut().set_busy_poll(Duration::from_micros(50));
    /// block_on(host.writer_mut().write(&OutgoingPacket::in_band(5), &[b"hello"])).unwrap();
    /// let packet = block_on(guest.reader_mut().read()).unwrap();
    /// assert_eq!(&packet.payload[..5], b"hello");
    /// ```
    pub fn set_busy_poll(&mut self, budget: Duration) {
        self.busy_poll = budget;
    }

    /// Polls the ring for up to the busy-poll budget with the interrupt mask
    /// set; returns whether there is something to read (or a corrupt write
    /// index, which the next read reports). Gives up early if the peer
    /// closed.
    fn poll_ring(&mut self) -> bool {
        /// Looks at the ring this many times between looks at the clock.
        const LOOKS_PER_CLOCK: u32 = 32;
        self.ring.set_interrupt_mask(true);
        let deadline = Instant::now() + self.busy_poll;
        loop {
            for _ in 0..LOOKS_PER_CLOCK {
                if self.ring.has_data().unwrap_or(true) {
                    return true;
                }
                if self.signal.notifier().is_closed() {
                    return false;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// For a read that found the ring empty: whether the peer has closed
    /// with nothing left to read. The close is looked at first and the ring
    /// again after it, so a packet committed just before the close is not
    /// taken for the end. Looked at only when the ring was empty, so reads
    /// that find packets pay nothing for it.
    fn peer_closed_and_drained(&mut self, receive: bool) -> Result<bool, ChannelError> {
        if receive {
            self.signal.receive();
        }
        Ok(self.signal.notifier().is_closed()
            && !self.ring.has_data().map_err(|error| events::traced(Ring::Incoming, error))?)
    }

    /// Reads a batch of up to `max` packets, waiting for the first.
    pub async fn read_batch<F>(&mut self, max: usize, mut handle: F) -> Result<usize, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        poll_fn(|cx| self.poll_read_batch(cx, max, &mut handle)).await
    }

    /// Reads one packet without waiting, copying its payload out; `Ok(None)`
    /// if none was there (or the call spent its work budget on packets it
    /// does not hand out: see [`try_read_batch`](Self::try_read_batch)),
    /// [`ChannelError::Closed`] if none was there and the peer has closed.
    pub fn try_read(&mut self) -> Result<Option<Packet>, ChannelError> {
        let mut packet = None;
        self.try_read_batch(1, |header, payload| packet = Some(Packet::copied(header, payload)))?;
        Ok(packet)
    }

    /// Reads one packet, waiting for it, copying its payload out.
    pub async fn read(&mut self) -> Result<Packet, ChannelError> {
        loop {
            let mut packet = None;
            self.read_batch(1, |header, payload| packet = Some(Packet::copied(header, payload))).await?;
            if let Some(packet) = packet {
                return Ok(packet);
            }
            // The call spent its budget: let the executor run others first.
            yield_now().await;
        }
    }
}

/// Returns `Pending` once, waking the task at once: a turn for the others.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

impl Packet {
    /// The packet with its payload copied out of the ring.
    pub(crate) fn copied<M: RingMem>(header: &IncomingPacket, payload: &Payload<'_, M>) -> Self {
        Packet { header: *header, kind: payload.owned_kind(), payload: payload.to_vec() }
    }
}

impl<M, S> Drop for QueueReader<M, S> {
    /// Without a reader no completion can arrive: fail the outstanding ones.
    fn drop(&mut self) {
        self.shared.fail_transactions();
    }
}
