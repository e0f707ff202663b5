//! A raw channel: an incoming ring, an outgoing ring, and a signal.

use crate::signal::{InProcessSignal, Signal};
use std::sync::Arc;
use vmbus_ring::{FlatRingMem, IncomingRing, OpenError, OutgoingRing, RingMem};

/// One end of a channel: the ring it reads, the ring it writes, and the
/// signal to its peer. Most users wrap it in a [`Queue`](crate::Queue).
#[derive(Debug)]
pub struct RawChannel<M, S> {
    pub(crate) incoming: IncomingRing<M>,
    pub(crate) outgoing: OutgoingRing<M>,
    pub(crate) signal: Arc<S>,
}

impl<M: RingMem, S: Signal> RawChannel<M, S> {
    /// A channel end over two rings' memory and a signal.
    pub fn new(incoming: M, outgoing: M, signal: S) -> Result<Self, OpenError> {
        Ok(Self::from_parts(IncomingRing::new(incoming)?, OutgoingRing::new(outgoing)?, Arc::new(signal)))
    }

    /// A channel end from endpoints already open and a shared signal.
    pub fn from_parts(incoming: IncomingRing<M>, outgoing: OutgoingRing<M>, signal: Arc<S>) -> Self {
        Self { incoming, outgoing, signal }
    }

    /// The ring the peer writes and this end reads.
    pub fn incoming(&self) -> &IncomingRing<M> {
        &self.incoming
    }

    /// The ring the peer writes and this end reads, to read with.
    pub fn incoming_mut(&mut self) -> &mut IncomingRing<M> {
        &mut self.incoming
    }

    /// The ring this end writes and the peer reads.
    pub fn outgoing(&self) -> &OutgoingRing<M> {
        &self.outgoing
    }

    /// The ring this end writes and the peer reads, to write with.
    pub fn outgoing_mut(&mut self) -> &mut OutgoingRing<M> {
        &mut self.outgoing
    }

    /// The signal to and from the peer.
    pub fn signal(&self) -> &Arc<S> {
        &self.signal
    }

    /// The two endpoints and the signal, for code that drives them itself.
    pub fn into_parts(self) -> (IncomingRing<M>, OutgoingRing<M>, Arc<S>) {
        (self.incoming, self.outgoing, self.signal)
    }
}

/// A channel end whose rings are on the heap and whose peer is in this process.
pub type InProcessChannel = RawChannel<FlatRingMem, InProcessSignal>;

/// Two connected channel ends in one process, each ring with a data area of
/// `data_len` bytes (a non-zero multiple of 4096).
///
/// ```
/// let (host, guest) = vmbus_channel::connected_pair(4096).unwrap();
/// assert_eq!(host.outgoing().data_len(), 4096);
/// # drop(guest);
/// ```
pub fn connected_pair(data_len: usize) -> Result<(InProcessChannel, InProcessChannel), OpenError> {
    let a_to_b = FlatRingMem::new(data_len)?;
    let b_to_a = FlatRingMem::new(data_len)?;
    let (signal_a, signal_b) = InProcessSignal::pair();
    Ok((RawChannel::new(b_to_a.clone(), a_to_b.clone(), signal_a)?, RawChannel::new(a_to_b, b_to_a, signal_b)?))
}
