//! Queue counters, kept like a NIC queue's, and the state snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use vmbus_ring::RingState;

/// Live counters shared by a queue's two halves.
///
/// Each counter has one writer, the half it belongs to (the signals each half
/// sends are counted apart and summed in snapshots), and a half counts only
/// in methods that take it by `&mut self`. So counting is a plain load and
/// store ([`add`](Self::add)), not a locked read-modify-write, which would
/// cost as much as a fence on every batch; readers of a snapshot see each
/// counter whole, if a moment old.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Signals the read half sent (space freed for a waiting writer).
    pub reader_signals_sent: AtomicU64,
    /// Signals the write half sent (packets for a sleeping reader).
    pub writer_signals_sent: AtomicU64,
    pub ring_full: AtomicU64,
    pub write_waits: AtomicU64,
    pub read_waits: AtomicU64,
    pub unsupported_skipped: AtomicU64,
    pub stale_completions: AtomicU64,
    pub read_budget_spent: AtomicU64,
    /// Unstick signals each half sent.
    pub unstick_signals_by_reader: AtomicU64,
    pub unstick_signals_by_writer: AtomicU64,
}

impl Counters {
    /// Adds `amount` to `counter`, which only the calling half writes.
    #[inline]
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(amount), Ordering::Relaxed);
    }

    pub fn snapshot(&self, signals_received: u64) -> QueueCounters {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QueueCounters {
            packets_received: get(&self.packets_received),
            bytes_received: get(&self.bytes_received),
            packets_sent: get(&self.packets_sent),
            bytes_sent: get(&self.bytes_sent),
            signals_sent: get(&self.reader_signals_sent)
                + get(&self.writer_signals_sent)
                + get(&self.unstick_signals_by_reader)
                + get(&self.unstick_signals_by_writer),
            signals_received,
            ring_full: get(&self.ring_full),
            write_waits: get(&self.write_waits),
            read_waits: get(&self.read_waits),
            unsupported_skipped: get(&self.unsupported_skipped),
            stale_completions: get(&self.stale_completions),
            read_budget_spent: get(&self.read_budget_spent),
            unstick_signals: get(&self.unstick_signals_by_reader) + get(&self.unstick_signals_by_writer),
        }
    }
}

/// A queue's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "valuable", derive(valuable::Valuable))]
pub struct QueueCounters {
    /// Packets read (completions routed to transactions included).
    pub packets_received: u64,
    /// Payload bytes read, including the sender's padding to 8 bytes (the
    /// wire does not carry exact lengths), so it can exceed the peer's
    /// `bytes_sent`.
    pub bytes_received: u64,
    /// Packets written.
    pub packets_sent: u64,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Signals sent to the peer.
    pub signals_sent: u64,
    /// Signals received from the peer.
    pub signals_received: u64,
    /// Times a write found the ring full.
    pub ring_full: u64,
    /// Times a write had to wait for the peer to free space.
    pub write_waits: u64,
    /// Times a read had to wait for the peer to send.
    pub read_waits: u64,
    /// Packets of unsupported types skipped.
    pub unsupported_skipped: u64,
    /// Completions dropped because their request was given up (its
    /// [`Completion`](crate::Completion) dropped) or already completed.
    pub stale_completions: u64,
    /// Read calls that stopped at their work budget with packets maybe
    /// left (see [`QueueReader::try_read_batch`](crate::QueueReader::try_read_batch)):
    /// a peer flooding the ring with packets nobody is handed shows here.
    pub read_budget_spent: u64,
    /// Signals sent by [`Queue::unstick`](crate::Queue::unstick) (and the
    /// halves' `unstick`) to a peer that should have been awake; also
    /// counted in `signals_sent`.
    pub unstick_signals: u64,
}

/// A queue's state: its counters and both rings' control pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "valuable", derive(valuable::Valuable))]
pub struct QueueState {
    /// The counters.
    pub counters: QueueCounters,
    /// The ring this end reads.
    pub incoming: RingState,
    /// The ring this end writes.
    pub outgoing: RingState,
}
