//! The async packet queue over a raw channel.
//!
//! Runtime-agnostic: the futures use only `std::task`, and wake through the
//! channel's [`Signal`]; any executor (or [`block_on`](crate::block_on))
//! drives them.

mod counters;
mod reader;
mod unstick;
mod wait;
mod writer;

pub use counters::{QueueCounters, QueueState};
pub use reader::{Packet, Payload, QueueReader};
pub use writer::{PacketWithPayload, QueueWriter};

use crate::channel::RawChannel;
use crate::signal::Signal;
use crate::transaction::Transactions;
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
/// block_on(host.writer_mut().write(&OutgoingPacket::in_band(5), &[b"hello"])).unwrap();
/// let packet = block_on(guest.reader_mut().read()).unwrap();
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
                unstick: None,
            },
            writer: QueueWriter { ring: outgoing, signal, shared, waiting_for_space: false, unstick: None },
        }
    }

    /// The read half, to look at (its counters).
    pub fn reader(&self) -> &QueueReader<M, S> {
        &self.reader
    }

    /// The read half, to read with.
    pub fn reader_mut(&mut self) -> &mut QueueReader<M, S> {
        &mut self.reader
    }

    /// The write half, to look at.
    pub fn writer(&self) -> &QueueWriter<M, S> {
        &self.writer
    }

    /// The write half, to write with.
    pub fn writer_mut(&mut self) -> &mut QueueWriter<M, S> {
        &mut self.writer
    }

    /// The signal both halves share: an fd-backed one is
    /// [`AsFd`](std::os::fd::AsFd), for an event loop of the caller's own
    /// to watch (with [`ExternalReactor`](crate::ExternalReactor)).
    ///
    /// ```
    /// # #[cfg(target_os = "linux")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::fd::AsFd;
    /// use vmbus_channel::{ChannelFds, ExternalReactor, MemfdChannel, Queue};
    /// use vmbus_ring::MappingLayout;
    /// let (ours, _theirs) = ChannelFds::pair(4 * 4096)?;
    /// let channel = MemfdChannel::from_fds_with_reactor(ours, MappingLayout::Single, ExternalReactor)?;
    /// let queue = Queue::new(channel);
    /// let fd = queue.signal().as_fd(); // poll this for readability, then read
    /// # let _ = fd;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(target_os = "linux"))]
    /// # fn main() {}
    /// ```
    pub fn signal(&self) -> &S {
        &self.reader.signal
    }

    /// Splits the queue into halves that can move to different tasks or threads.
    pub fn split(self) -> (QueueReader<M, S>, QueueWriter<M, S>) {
        (self.reader, self.writer)
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
    /// The signal this half shares with the write half (see
    /// [`Queue::signal`]).
    pub fn signal(&self) -> &S {
        &self.signal
    }

    /// Counters (shared with the write half).
    pub fn counters(&self) -> QueueCounters {
        self.shared.counters.snapshot(self.signal.notifier().generation())
    }

    /// Treats the peer's writer as one that does not honour pending send
    /// size: every read commit that frees space signals it. For peers known
    /// to mishandle it (FreeBSD before 1400097, Linux before 3.11 under some
    /// AIO patterns); see
    /// [`IncomingRing::signal_every_commit`](vmbus_ring::IncomingRing::signal_every_commit).
    pub fn signal_every_commit(&mut self, on: bool) {
        self.ring.signal_every_commit(on);
    }
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// The signal this half shares with the read half (see
    /// [`Queue::signal`]).
    pub fn signal(&self) -> &S {
        &self.signal
    }

    /// Counters (shared with the read half).
    pub fn counters(&self) -> QueueCounters {
        self.shared.counters.snapshot(self.signal.notifier().generation())
    }

    /// Tells the peer this end is gone (see [`Queue::close`]).
    pub fn close(&self) {
        self.signal.close();
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
