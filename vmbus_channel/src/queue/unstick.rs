//! Unsticking a channel whose peer missed a signal: the control pages say
//! when a side should be awake, whatever signals were lost.

use super::counters::Counters;
use super::{Queue, QueueReader, QueueWriter};
use crate::events::{self, Ring};
use crate::signal::Signal;
use crate::ChannelError;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vmbus_ring::signal::{reader_missed_signal, writer_missed_signal};
use vmbus_ring::{ControlWord, RingMem};

/// The shortest unstick interval: shorter ones would make a blocking wait
/// spin on fences.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// What a half needs to unstick the channel on a timer: the interval, and
/// the other half's ring, whose control page says whether the peer should
/// be awake on that side.
#[derive(Debug)]
pub(super) struct Unstick<M> {
    pub(super) interval: Duration,
    other_ring: M,
}

/// Whether the reader of `ring` should be awake: packets it has not read,
/// interrupts not masked. Fences, then loads the control words.
fn reader_should_be_awake(ring: &impl RingMem) -> bool {
    ring.full_fence();
    let load = |word| ring.load(word, Ordering::Relaxed);
    reader_missed_signal(load(ControlWord::InterruptMask), load(ControlWord::ReadIndex), load(ControlWord::WriteIndex))
}

/// Whether the writer of `ring` should be awake: the room it asked for (its
/// pending send size) is free. Fences, then loads the control words.
fn writer_should_be_awake(ring: &impl RingMem) -> bool {
    ring.full_fence();
    let load = |word| ring.load(word, Ordering::Relaxed);
    let (pending, write, read) =
        (load(ControlWord::PendingSendSize), load(ControlWord::WriteIndex), load(ControlWord::ReadIndex));
    writer_missed_signal(ring.data_len() as u32, pending, write, read)
}

impl<M: RingMem, S: Signal> Queue<M, S> {
    /// Unsticks a channel whose peer missed a signal: looks at both rings'
    /// control pages and signals the peer once if either says it should be
    /// awake (packets it has not read and interrupts not masked, or room it
    /// asked for that is free). Also wakes this end's own waiters if their
    /// ring says they should be awake (packets to read, or the room this
    /// end's writer asked for); those wakes count in `signals_received`.
    /// Returns whether it signalled the peer, counted in
    /// [`QueueCounters::unstick_signals`](crate::QueueCounters::unstick_signals).
    ///
    /// Real peers lose signals: a guest driver may ignore the interrupts
    /// that arrive before it has finished opening the channel. Call this
    /// once after opening, and from a timer (a second or so: it costs a few
    /// fences and loads when nothing is stuck). A spare signal is harmless;
    /// the peer finds nothing new and sleeps again.
    ///
    /// ```
    /// use vmbus_channel::{connected_pair, Queue};
    /// use vmbus_ring::OutgoingPacket;
    ///
    /// let (host, guest) = connected_pair(4096)?;
    /// let (mut host, guest) = (Queue::new(host), Queue::new(guest));
    /// host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"unread"])?;
    /// // Whether or not the guest saw that write's signal, it has not read
    /// // the packet: unstick signals it again.
    /// assert!(host.unstick()?);
    /// assert_eq!(host.state().counters.unstick_signals, 1);
    /// # drop(guest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unstick(&mut self) -> Result<bool, ChannelError> {
        let stuck = reader_should_be_awake(self.writer.ring.memory()) || self.reader.ring.writer_missed_signal();
        if self.reader.ring.has_data().map_err(|error| events::traced(Ring::Incoming, error))?
            || writer_should_be_awake(self.writer.ring.memory())
        {
            self.reader.signal.notifier().notify();
        }
        Ok(self.writer.signal_stuck_peer(stuck))
    }

    /// Unsticks the channel now ([`unstick`](Self::unstick)) and then each
    /// time a blocking call of either half (`read_blocking`,
    /// `write_batch_blocking`, ...) has waited `interval` without news: the
    /// half signals the peer if either ring says it should be awake, and
    /// looks at its own ring again. `None`, the default, turns this off; an
    /// interval below 1 ms counts as 1 ms. Async waits take no timer of
    /// their own: from async code, call [`unstick`](Self::unstick) from your
    /// runtime's timer. Returns whether the first call signalled the peer.
    ///
    /// Needs ring memory that can be cloned (every memory of these crates
    /// can): each half keeps a handle on the other's ring.
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
    pub fn set_unstick_interval(&mut self, interval: Option<Duration>) -> Result<bool, ChannelError>
    where
        M: Clone,
    {
        let unstick = |other_ring: &M| {
            interval.map(|interval| Unstick { interval: interval.max(MIN_INTERVAL), other_ring: other_ring.clone() })
        };
        self.reader.unstick = unstick(self.writer.ring.memory());
        self.writer.unstick = unstick(self.reader.ring.memory());
        self.unstick()
    }
}

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// [`Queue::unstick`] for the read half alone: signals the peer if it
    /// waits for room that is free (or, with an unstick interval set, if it
    /// has packets of ours it has not read), and wakes this half's waiters
    /// if packets are waiting. Returns whether it signalled the peer.
    pub fn unstick(&mut self) -> Result<bool, ChannelError> {
        if self.ring.has_data().map_err(|error| events::traced(Ring::Incoming, error))? {
            self.signal.notifier().notify();
        }
        let stuck = self.ring.writer_missed_signal()
            || self.unstick.as_ref().is_some_and(|unstick| reader_should_be_awake(&unstick.other_ring));
        if stuck {
            events::unstick_signal(Ring::Incoming);
            self.signal.signal_peer();
            Counters::add(&self.shared.counters.unstick_signals_by_reader, 1);
        }
        Ok(stuck)
    }
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// [`Queue::unstick`] for the write half alone: signals the peer if it
    /// has packets to read and has not masked interrupts (or, with an
    /// unstick interval set, if it waits for room in the ring this end
    /// reads), and wakes this half's waiters if the room they asked for is
    /// free. Returns whether it signalled the peer.
    pub fn unstick(&mut self) -> bool {
        if writer_should_be_awake(self.ring.memory()) {
            self.signal.notifier().notify();
        }
        let stuck = self.ring.reader_missed_signal()
            || self.unstick.as_ref().is_some_and(|unstick| writer_should_be_awake(&unstick.other_ring));
        self.signal_stuck_peer(stuck)
    }

    /// Signals the peer if `stuck`, counting it; returns `stuck`.
    fn signal_stuck_peer(&mut self, stuck: bool) -> bool {
        if stuck {
            events::unstick_signal(Ring::Outgoing);
            self.signal.signal_peer();
            Counters::add(&self.shared.counters.unstick_signals_by_writer, 1);
        }
        stuck
    }
}
