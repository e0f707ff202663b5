//! The write half of a queue.

use super::counters::Counters;
use super::unstick::Unstick;
use super::wait::{InTask, InThread, Wait, Woke};
use super::Shared;
use crate::events::{self, Ring};
use crate::signal::Signal;
use crate::transaction::{Completion, Transactions};
use crate::ChannelError;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use vmbus_ring::{OutgoingPacket, OutgoingRing, RingMem, WriteBatch, WriteError};

/// A packet and its payload (a gather list), for batch writes.
pub type PacketWithPayload<'a> = (OutgoingPacket<'a>, &'a [&'a [u8]]);

/// The write half of a [`Queue`](crate::Queue).
#[derive(Debug)]
pub struct QueueWriter<M, S> {
    pub(super) ring: OutgoingRing<M>,
    pub(super) signal: Arc<S>,
    pub(super) shared: Arc<Shared>,
    /// Whether this half has a pending send size set in the ring.
    pub(super) waiting_for_space: bool,
    /// How often a blocking write looks for a peer that missed a signal,
    /// and the ring this end reads, to look at its control page too.
    pub(super) unstick: Option<Unstick<M>>,
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// Writes one packet without waiting; [`ChannelError::Full`] if the
    /// ring has no room for it now.
    pub fn try_write(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<(), ChannelError> {
        self.check_open()?;
        let mut batch = self.ring.write_batch();
        let mut sent = Sent::default();
        let written = write_counted(&mut batch, &mut sent, packet, payload);
        let wrote_any = batch.packets() > 0;
        commit(batch, &*self.signal, &self.shared.counters, sent);
        if wrote_any {
            self.stop_waiting_for_space();
        }
        if let Err(ChannelError::Full { .. }) = written {
            // A full ring may be a dead peer's: take in a close nobody has
            // taken in yet (only here, not on every write).
            self.signal.receive();
            self.check_open()?;
        }
        written.map_err(|error| events::traced(Ring::Outgoing, error))
    }

    /// Writes `packets` in order, committing as few times as the space
    /// allows (once if they all fit) and signalling at most once per commit.
    /// When the ring is full, sets the pending send size and waits for the
    /// reader's signal instead of spinning. `written` counts the packets
    /// written so far, so the call can be resumed after `Pending`.
    pub fn poll_write_batch(
        &mut self,
        cx: &mut Context<'_>,
        packets: &[PacketWithPayload<'_>],
        written: &mut usize,
    ) -> Poll<Result<(), ChannelError>> {
        self.write_waiting(&mut InTask(cx), packets, written)
    }

    /// Like [`write_batch`](Self::write_batch), but blocks the calling
    /// thread, which waits on the signal itself (an fd-backed signal is
    /// polled right here, with no reactor and no other thread), until
    /// `deadline` (`None`: none) and then fails with
    /// [`ChannelError::TimedOut`]; the packets before the one that did not
    /// fit have been written then.
    pub fn write_batch_blocking(
        &mut self,
        packets: &[PacketWithPayload<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), ChannelError> {
        let mut written = 0;
        loop {
            let mut wait =
                InThread { deadline, unstick_interval: self.unstick.as_ref().map(|unstick| unstick.interval) };
            if let Poll::Ready(result) = self.write_waiting(&mut wait, packets, &mut written) {
                return result;
            }
        }
    }

    /// The waiting write, waiting through `wait`.
    fn write_waiting(
        &mut self,
        wait: &mut impl Wait,
        packets: &[PacketWithPayload<'_>],
        written: &mut usize,
    ) -> Poll<Result<(), ChannelError>> {
        /// Tries a call makes before it yields: a peer that keeps signalling
        /// while the ring stays full cannot keep one call going.
        const TRIES_PER_CALL: usize = 64;
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > TRIES_PER_CALL {
                tries = 1;
                if wait.yield_now()?.is_pending() {
                    return Poll::Pending;
                }
            }
            self.check_open()?;
            let seen = self.signal.notifier().generation();
            let counters = &self.shared.counters;
            let mut batch = self.ring.write_batch();
            let mut sent = Sent::default();
            let mut outcome = Ok(());
            for (packet, payload) in &packets[*written..] {
                outcome = write_counted(&mut batch, &mut sent, packet, payload);
                if outcome.is_err() {
                    break;
                }
                *written += 1;
            }
            let wrote_any = batch.packets() > 0;
            commit(batch, &*self.signal, counters, sent);
            if wrote_any {
                self.stop_waiting_for_space();
            }
            let needed = match outcome {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(ChannelError::Full { needed, .. }) => needed,
                Err(error) => return Poll::Ready(Err(events::traced(Ring::Outgoing, error))),
            };
            Counters::add(&self.shared.counters.ring_full, 1);
            if self.ring.set_pending_send_size(needed).map_err(|error| events::traced(Ring::Outgoing, error))? {
                continue;
            }
            if !self.waiting_for_space {
                events::writer_blocked(needed);
            }
            self.waiting_for_space = true;
            match wait.wait(&*self.signal, seen, &self.shared.counters.write_waits)? {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Woke::Tick) => {
                    self.unstick();
                }
                Poll::Ready(Woke::News) => {}
            }
        }
    }

    /// Writes `packets`, waiting for space as needed (see
    /// [`poll_write_batch`](Self::poll_write_batch)).
    pub async fn write_batch(&mut self, packets: &[PacketWithPayload<'_>]) -> Result<(), ChannelError> {
        let mut written = 0;
        poll_fn(|cx| self.poll_write_batch(cx, packets, &mut written)).await
    }

    /// Writes one packet, waiting for space as needed.
    pub async fn write(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<(), ChannelError> {
        self.write_batch(&[(*packet, payload)]).await
    }

    /// Sends `packet` as a request: the queue assigns its transaction id and
    /// asks for a completion; the returned future resolves with the
    /// completion's payload. Needs a queue made with
    /// [`Queue::with_transactions`](crate::Queue::with_transactions).
    pub async fn request(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<Completion, ChannelError> {
        let transactions = self.shared.transactions.clone().ok_or(ChannelError::TransactionsDisabled)?;
        let reservation = Reservation { id: transactions.begin()?, transactions, sent: false };
        let request = OutgoingPacket { transaction_id: reservation.id, ..*packet }.with_completion_requested();
        self.write(&request, payload).await?;
        Ok(reservation.into_completion())
    }

    /// Makes every later write leave at least `bytes` of the ring free, for
    /// a last packet that must always fit (see
    /// [`OutgoingRing::keep_free`](vmbus_ring::OutgoingRing::keep_free));
    /// waiting writes wait for those bytes too. The pipes keep room this way
    /// for their end-of-stream packet.
    pub fn keep_free(&mut self, bytes: usize) {
        self.ring.keep_free(bytes);
    }

    /// Withdraws the pending send size this half set, once a write went through.
    fn stop_waiting_for_space(&mut self) {
        if self.waiting_for_space {
            self.ring.clear_pending_send_size();
            self.waiting_for_space = false;
        }
    }

    fn check_open(&self) -> Result<(), ChannelError> {
        if self.signal.notifier().is_closed() {
            return Err(ChannelError::Closed);
        }
        Ok(())
    }
}

/// A transaction id reserved for a request not yet written: released if the
/// write fails or its future is dropped, so the slot never leaks.
struct Reservation {
    id: u64,
    transactions: Arc<Transactions>,
    sent: bool,
}

impl Reservation {
    fn into_completion(mut self) -> Completion {
        self.sent = true;
        Completion::new(self.transactions.clone(), self.id)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.sent {
            self.transactions.cancel(self.id);
        }
    }
}

/// Packets and payload bytes written in a batch, added to the shared
/// counters once a batch: an atomic add per packet would cost more than
/// writing it.
#[derive(Default)]
struct Sent {
    packets: u64,
    bytes: u64,
}

/// Publishes `batch`, signalling the reader if the rules call for it, and
/// counts what it held.
fn commit<M: RingMem>(batch: WriteBatch<'_, M>, signal: &impl Signal, counters: &Counters, sent: Sent) {
    if batch.commit() {
        signal.signal_peer();
        Counters::add(&counters.writer_signals_sent, 1);
    }
    if sent.packets > 0 {
        Counters::add(&counters.packets_sent, sent.packets);
        Counters::add(&counters.bytes_sent, sent.bytes);
    }
}

fn write_counted<M: RingMem>(
    batch: &mut WriteBatch<'_, M>,
    sent: &mut Sent,
    packet: &OutgoingPacket<'_>,
    payload: &[&[u8]],
) -> Result<(), ChannelError> {
    batch.write(packet, payload).map_err(|error: WriteError| ChannelError::from(error))?;
    sent.packets += 1;
    sent.bytes += payload.iter().map(|piece| piece.len() as u64).sum::<u64>();
    Ok(())
}
