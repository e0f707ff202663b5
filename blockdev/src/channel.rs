//! A channel end as both processes open it: rings in guest memory (a
//! GPADL), a socket pair as the signal, watched by the caller's own loop.

use crate::error::DeviceError;
use crate::memory::Memory;
use std::os::fd::OwnedFd;
use vmbus_channel::{ExternalReactor, GuestRingMem, Queue, RawChannel, Side, SocketSignal};

/// A channel end whose rings are in guest memory, signalled over a socket.
pub type Channel = Queue<GuestRingMem<()>, SocketSignal>;

/// One channel end; its signal socket (`queue.signal()`) is what the event
/// loop's `poll` sleeps on.
#[derive(Debug)]
pub struct ChannelEnd {
    /// The queue.
    pub queue: Channel,
}

impl ChannelEnd {
    /// Opens `side`'s end of the channel whose rings are the GPADL `gpns`
    /// split at `split` in `memory`, signalled through `socket` (one of a
    /// stream socket pair). `transactions`: requests this end may have
    /// outstanding (the guest's); 0 for an end that sends none (the host's).
    pub fn open(
        memory: &Memory,
        gpns: &[u64],
        split: usize,
        side: Side,
        socket: impl Into<OwnedFd>,
        transactions: usize,
    ) -> Result<Self, DeviceError> {
        let signal = SocketSignal::new(socket)?.with_reactor(ExternalReactor);
        let raw = RawChannel::from_gpadl(memory, gpns, split, side, signal)?;
        let queue = if transactions > 0 { Queue::with_transactions(raw, transactions) } else { Queue::new(raw) };
        Ok(Self { queue })
    }
}
