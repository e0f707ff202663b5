//! The async packet queue over a raw channel.
//!
//! Runtime-agnostic: the futures use only `std::task`, and wake through the
//! channel's [`Signal`]; any executor (or [`block_on`](crate::block_on))
//! drives them.

mod counters;
mod reader;
mod wait;
mod writer;

pub use counters::{QueueCounters, QueueState};
pub use reader::{Packet, Payload, QueueReader};
pub use writer::{PacketWithPayload, QueueWriter};

use crate::channel::RawChannel;
use crate::signal::Signal;
use crate::transaction::Transactions;
use crate::ChannelError;
use counters::Counters;
use std::sync::Arc;
use std::time::Duration;
use vmbus_ring::RingMem;

/// What the two halves of a queue share.
#[derive(Debug)]
pub(crate) struct Shared {
    counters: Counters,
    transactions: Option<Arc<Transactions>>,
}

/// A packet queue over a channel: reads and writes with batching, waiting on
/// the peer's signals, and optional transaction matching.
///
/// ```
/// use vmbus_channel::{block_on, connected_pair, Queue};
/// use vmbus_ring::OutgoingPacket;
///
/// let (host, guest) = connected_pair(4096).unwrap();
/// let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
/// block_on(host.writer().write(&OutgoingPacket::in_band(5), &[b"hello"])).unwrap();
/// let packet = block_on(guest.reader().read()).unwrap();
/// assert_eq!(packet.header.transaction_id, 5);
/// assert_eq!(&packet.payload[..5], b"hello");
/// ```
#[derive(Debug)]
pub struct Queue<M, S> {
    reader: QueueReader<M, S>,
    writer: QueueWriter<M, S>,
}

impl<M: RingMem, S: Signal> Queue<M, S> {
    /// A queue over `channel`, without transaction matching: completions are
    /// handed to the reader like any packet.
    pub fn new(channel: RawChannel<M, S>) -> Self {
        Self::build(channel, None)
    }

    /// A queue that matches completions to the requests sent with
    /// [`QueueWriter::request`], with at most `limit` outstanding.
    pub fn with_transactions(channel: RawChannel<M, S>, limit: usize) -> Self {
        Self::build(channel, Some(Arc::new(Transactions::new(limit))))
    }

    fn build(channel: RawChannel<M, S>, transactions: Option<Arc<Transactions>>) -> Self {
        let shared = Arc::new(Shared { counters: Counters::default(), transactions });
        let RawChannel { incoming, outgoing, signal } = channel;
        Self {
            reader: QueueReader {
                ring: incoming,
                signal: signal.clone(),
                shared: shared.clone(),
                deferred: None,
                busy_poll: Duration::ZERO,
                unstick_interval: None,
            },
            writer: QueueWriter { ring: outgoing, signal, shared, waiting_for_space: false, unstick_interval: None },
        }
    }

    /// The read half.
    pub fn reader(&mut self) -> &mut QueueReader<M, S> {
        &mut self.reader
    }

    /// The write half.
    pub fn writer(&mut self) -> &mut QueueWriter<M, S> {
        &mut self.writer
    }

    /// Splits the queue into halves that can move to different tasks or threads.
    pub fn split(self) -> (QueueReader<M, S>, QueueWriter<M, S>) {
        (self.reader, self.writer)
    }

    /// Unsticks a channel whose peer missed a signal: looks at both rings'
    /// control pages and signals the peer once if either says it should be
    /// awake (packets it has not read and interrupts not masked, or room it
    /// asked for that is free); also wakes this end's async waiters if
    /// packets are waiting for them. Returns whether it signalled the peer,
    /// counted in [`QueueCounters::unstick_signals`].
    ///
    /// Real peers lose signals: a guest driver may ignore the interrupts
    /// that arrive before it has finished opening the channel. Call this
    /// once after opening, and from a timer (a second or so: it costs two
    /// fences and four loads when nothing is stuck). A spare signal is
    /// harmless; the peer finds nothing new and sleeps again.
    ///
    /// ```
    /// use vmbus_channel::{connected_pair, Queue};
    /// use vmbus_ring::OutgoingPacket;
    ///
    /// let (host, guest) = connected_pair(4096)?;
    /// let (mut host, guest) = (Queue::new(host), Queue::new(guest));
    /// host.writer().try_write(&OutgoingPacket::in_band(1), &[b"unread"])?;
    /// // Whether or not the guest saw that write's signal, it has not read
    /// // the packet: unstick signals it again.
    /// assert!(host.unstick()?);
    /// assert_eq!(host.state().counters.unstick_signals, 1);
    /// # drop(guest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unstick(&mut self) -> Result<bool, ChannelError> {
        let peer_reader_stuck = self.writer.ring.reader_missed_signal();
        let peer_writer_stuck = self.reader.ring.writer_missed_signal();
        self.reader.wake_if_data()?;
        Ok(self.writer.signal_stuck_peer(peer_reader_stuck || peer_writer_stuck))
    }

    /// Unsticks the channel now ([`unstick`](Self::unstick)) and then every
    /// `interval` that a blocking call (`read_blocking`,
    /// `write_batch_blocking`, ...) of either half waits without news;
    /// `None`, the default, never. Async waits take no timer of their own:
    /// from async code, call [`unstick`](Self::unstick) from your runtime's
    /// timer. Returns whether this first call signalled the peer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vmbus_channel::{connected_pair, Queue};
    ///
    /// let (host, _guest) = connected_pair(4096)?;
    /// let mut host = Queue::new(host);
    /// assert!(!host.set_unstick_interval(Some(Duration::from_secs(1)))?); // nothing stuck
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_unstick_interval(&mut self, interval: Option<Duration>) -> Result<bool, ChannelError> {
        self.reader.unstick_interval = interval;
        self.writer.unstick_interval = interval;
        self.unstick()
    }

    /// Tells the peer this end is gone: its reads end with
    /// [`ChannelError::Closed`](crate::ChannelError::Closed) once drained.
    pub fn close(&self) {
        self.writer.close();
    }

    /// Counters and both rings' control state.
    pub fn state(&self) -> QueueState {
        QueueState {
            counters: self.reader.shared.counters.snapshot(self.reader.signal.notifier().generation()),
            incoming: self.reader.ring.state(),
            outgoing: self.writer.ring.state(),
        }
    }
}

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// Counters (shared with the write half).
    pub fn counters(&self) -> QueueCounters {
        self.shared.counters.snapshot(self.signal.notifier().generation())
    }

    /// [`Queue::unstick`] for the read half alone: signals the peer if it
    /// waits for room that is free, and wakes this half's async waiters if
    /// packets are waiting. Returns whether it signalled the peer.
    pub fn unstick(&mut self) -> Result<bool, ChannelError> {
        self.wake_if_data()?;
        let stuck = self.ring.writer_missed_signal();
        if stuck {
            self.signal.signal_peer();
            Counters::add(&self.shared.counters.unstick_signals_by_reader, 1);
        }
        Ok(stuck)
    }

    /// Treats the peer's writer as one that does not honour pending send
    /// size: every read commit that frees space signals it. For peers known
    /// to mishandle it (FreeBSD before 1400097, Linux before 3.11 under some
    /// AIO patterns); see
    /// [`IncomingRing::signal_every_commit`](vmbus_ring::IncomingRing::signal_every_commit).
    pub fn signal_every_commit(&mut self, on: bool) {
        self.ring.signal_every_commit(on);
    }

    /// Wakes this half's waiters if packets are waiting in the ring: the
    /// peer may not have signalled them.
    fn wake_if_data(&mut self) -> Result<(), ChannelError> {
        if self.ring.has_data()? {
            self.signal.notifier().notify();
        }
        Ok(())
    }
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// Counters (shared with the read half).
    pub fn counters(&self) -> QueueCounters {
        self.shared.counters.snapshot(self.signal.notifier().generation())
    }

    /// Tells the peer this end is gone (see [`Queue::close`]).
    pub fn close(&self) {
        self.signal.close();
    }

    /// [`Queue::unstick`] for the write half alone: signals the peer if it
    /// has packets to read and has not masked interrupts. Returns whether it
    /// signalled the peer.
    pub fn unstick(&mut self) -> bool {
        let stuck = self.ring.reader_missed_signal();
        self.signal_stuck_peer(stuck)
    }

    /// Signals the peer if `stuck`, counting it; returns `stuck`.
    fn signal_stuck_peer(&mut self, stuck: bool) -> bool {
        if stuck {
            self.signal.signal_peer();
            Counters::add(&self.shared.counters.unstick_signals_by_writer, 1);
        }
        stuck
    }

    /// Transactions outstanding, if this queue matches them.
    pub fn outstanding_transactions(&self) -> usize {
        self.shared.transactions.as_ref().map_or(0, |transactions| transactions.outstanding())
    }
}

impl Shared {
    /// Fails every outstanding transaction: no completion can arrive any more.
    fn fail_transactions(&self) {
        if let Some(transactions) = &self.transactions {
            transactions.close();
        }
    }
}
