//! The read half of a queue.

use super::counters::Counters;
use super::Shared;
use crate::signal::Signal;
use crate::ChannelError;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use vmbus_ring::{
    IncomingPacket, IncomingRing, PacketKind, PayloadBoundsError, PayloadRange, ReadBatch, ReadError, RingMem,
};

/// A received packet with its payload copied out of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The validated header.
    pub header: IncomingPacket,
    /// The payload, padding to 8 bytes included.
    pub payload: Vec<u8>,
}

/// A packet's payload while it is still in the ring, inside a read batch.
#[derive(Debug)]
pub struct Payload<'a, M> {
    batch: &'a ReadBatch<'a, M>,
    range: PayloadRange,
}

impl<M: RingMem> Payload<'_, M> {
    /// Length in bytes, padding to 8 included.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Copies the bytes starting `offset` bytes into the payload into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), PayloadBoundsError> {
        self.batch.read_payload(self.range, offset, buf)
    }

    /// The whole payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.len()];
        // In bounds by construction: the range is this packet's own.
        let _ = self.read_at(0, &mut bytes);
        bytes
    }
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
}

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// Reads up to `max` packets without waiting, handing each to `handle`
    /// with its payload still in the ring, then frees them with one commit
    /// and at most one signal. Returns how many were handled; `Ok(0)` if none
    /// was there.
    ///
    /// Completions of this queue's transactions go to their requests, not to
    /// `handle`. Packets of unsupported types are skipped and counted. An
    /// error comes after the packets before it have been handled and freed:
    /// if some were, the error is returned by the next call.
    pub fn try_read_batch<F>(&mut self, max: usize, mut handle: F) -> Result<usize, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        let counters = &self.shared.counters;
        let mut batch = self.ring.read_batch();
        let mut handled = 0;
        let mut failure = None;
        while handled < max {
            let packet = match batch.next() {
                Ok(packet) => packet,
                Err(ReadError::Empty) => break,
                Err(ReadError::Unsupported(_)) => {
                    Counters::add(&counters.unsupported_skipped, 1);
                    continue;
                }
                Err(ReadError::Corrupt(corrupt)) => {
                    failure = Some(ChannelError::Corrupt(corrupt));
                    break;
                }
            };
            Counters::add(&counters.packets_received, 1);
            Counters::add(&counters.bytes_received, packet.payload.len() as u64);
            let payload = Payload { batch: &batch, range: packet.payload };
            if let (PacketKind::Completion, Some(transactions)) = (&packet.kind, &self.shared.transactions) {
                if let Err(unknown) = transactions.complete(packet.transaction_id, payload.to_vec()) {
                    failure = Some(unknown);
                    break;
                }
            } else {
                handle(&packet, &payload);
                handled += 1;
            }
        }
        if batch.commit() {
            self.signal.signal_peer();
            Counters::add(&counters.signals_sent, 1);
        }
        match failure {
            Some(error) if handled == 0 => Err(error),
            deferred => {
                self.deferred = deferred;
                Ok(handled)
            }
        }
    }

    /// Like [`try_read_batch`](Self::try_read_batch), but waits until at
    /// least one packet arrives. Fails with [`ChannelError::Closed`] once the
    /// peer has closed and the ring is drained.
    pub fn poll_read_batch<F>(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        mut handle: F,
    ) -> Poll<Result<usize, ChannelError>>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        loop {
            let seen = self.signal.notifier().generation();
            let handled = self.try_read_batch(max, &mut handle)?;
            if handled > 0 {
                return Poll::Ready(Ok(handled));
            }
            // Closing is read before the last look at the ring: a peer that
            // commits and then closes has its last packets seen here.
            let closed = self.signal.notifier().is_closed();
            if !self.ring.prepare_to_sleep()? {
                continue;
            }
            let notifier = self.signal.notifier();
            if closed {
                self.fail_transactions();
                return Poll::Ready(Err(ChannelError::Closed));
            }
            if notifier.poll_wait(cx, seen).is_pending() {
                Counters::add(&self.shared.counters.read_waits, 1);
                return Poll::Pending;
            }
        }
    }

    /// Reads a batch of up to `max` packets, waiting for the first.
    pub async fn read_batch<F>(&mut self, max: usize, mut handle: F) -> Result<usize, ChannelError>
    where
        F: FnMut(&IncomingPacket, &Payload<'_, M>),
    {
        poll_fn(|cx| self.poll_read_batch(cx, max, &mut handle)).await
    }

    /// Reads one packet without waiting, copying its payload out.
    pub fn try_read(&mut self) -> Result<Option<Packet>, ChannelError> {
        let mut packet = None;
        self.try_read_batch(1, |header, payload| packet = Some(owned(header, payload)))?;
        Ok(packet)
    }

    /// Reads one packet, waiting for it, copying its payload out.
    pub async fn read(&mut self) -> Result<Packet, ChannelError> {
        loop {
            let mut packet = None;
            self.read_batch(1, |header, payload| packet = Some(owned(header, payload))).await?;
            if let Some(packet) = packet {
                return Ok(packet);
            }
        }
    }

    fn fail_transactions(&self) {
        if let Some(transactions) = &self.shared.transactions {
            transactions.close();
        }
    }
}

fn owned<M: RingMem>(header: &IncomingPacket, payload: &Payload<'_, M>) -> Packet {
    Packet { header: header.clone(), payload: payload.to_vec() }
}
