//! A raw channel: an incoming ring, an outgoing ring, and a signal.

use crate::signal::{InProcessSignal, Signal};
use std::sync::Arc;
use vmbus_ring::{FlatRingMem, IncomingRing, OpenError, OutgoingRing, RingMem};

/// One end of a channel: the ring it reads, the ring it writes, and the
/// signal to its peer. Most users wrap it in a [`Queue`](crate::Queue).
#[derive(Debug)]
pub struct RawChannel<M, S> {
    /// The ring the peer writes and this end reads.
    pub incoming: IncomingRing<M>,
    /// The ring this end writes and the peer reads.
    pub outgoing: OutgoingRing<M>,
    /// The signal to and from the peer.
    pub signal: Arc<S>,
}

impl<M: RingMem, S: Signal> RawChannel<M, S> {
    /// A channel end over two rings' memory and a signal.
    pub fn new(incoming: M, outgoing: M, signal: S) -> Result<Self, OpenError> {
        Ok(Self {
            incoming: IncomingRing::new(incoming)?,
            outgoing: OutgoingRing::new(outgoing)?,
            signal: Arc::new(signal),
        })
    }
}

/// A channel end whose rings are on the heap and whose peer is in this process.
pub type InProcessChannel = RawChannel<FlatRingMem, InProcessSignal>;

/// Two connected channel ends in one process, each ring with a data area of
/// `data_len` bytes (a non-zero multiple of 4096).
///
/// ```
/// let (host, guest) = vmbus_channel::connected_pair(4096).unwrap();
/// assert_eq!(host.outgoing.data_len(), 4096);
/// # drop(guest);
/// ```
pub fn connected_pair(data_len: usize) -> Result<(InProcessChannel, InProcessChannel), OpenError> {
    let a_to_b = FlatRingMem::new(data_len)?;
    let b_to_a = FlatRingMem::new(data_len)?;
    let (signal_a, signal_b) = InProcessSignal::pair();
    Ok((RawChannel::new(b_to_a.clone(), a_to_b.clone(), signal_a)?, RawChannel::new(a_to_b, b_to_a, signal_b)?))
}
