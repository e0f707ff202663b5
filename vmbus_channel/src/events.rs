//! The `tracing` events a channel emits (feature `tracing`), each under the
//! target `vmbus_channel`: what a VMM's log should show about a channel
//! that went wrong or waits, and nothing per packet. Without the feature
//! every function here is empty and compiles away.
//!
//! | event | level | when |
//! | --- | --- | --- |
//! | corrupt ring | `WARN` | a read or write found a field of the ring or a packet holding an impossible value (the field is named) |
//! | peer closed | `INFO` | the first time this end learns the peer closed or died |
//! | writer blocked | `DEBUG` | a write found the ring full and starts waiting for room (once, until a write goes through again) |
//! | unstick signal | `INFO` | an unstick found the peer waiting for something already there, and signalled it |
//! | request given up | `DEBUG` | a request still waiting for its completion was given up (its `Completion` dropped, or its write failed) |
//! | stale completions | `DEBUG` | a read dropped completions for requests given up, or repeated ones (one event per read call, with the count) |

use crate::ChannelError;
use vmbus_ring::CorruptError;

/// Which of the two rings an event is about, from this end's side.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ring {
    /// The ring this end reads.
    Incoming,
    /// The ring this end writes.
    Outgoing,
}

#[cfg(feature = "tracing")]
impl Ring {
    fn name(self) -> &'static str {
        match self {
            Ring::Incoming => "incoming",
            Ring::Outgoing => "outgoing",
        }
    }
}

/// A read or write found `error` in `ring` (see [`traced`]).
#[inline]
fn corrupt_ring(ring: Ring, error: &CorruptError) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "vmbus_channel",
        ring = ring.name(),
        field = %error.field,
        value = error.value,
        packet_offset = error.packet_offset,
        "corrupt ring: {error}"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (ring, error);
}

/// `error` as the queue's error, after the corrupt-ring event if it is a
/// corrupt ring: the one path every corrupt error of a queue takes.
#[inline]
pub(crate) fn traced(ring: Ring, error: impl Into<ChannelError>) -> ChannelError {
    let error = error.into();
    if let ChannelError::Corrupt(corrupt) = &error {
        corrupt_ring(ring, corrupt);
    }
    error
}

/// This end learned that the peer closed or died.
#[inline]
pub(crate) fn peer_closed() {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "vmbus_channel", "peer closed the channel");
}

/// A write found the ring full and waits for `needed` bytes of room.
#[inline]
pub(crate) fn writer_blocked(needed: usize) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "vmbus_channel", needed, "outgoing ring full: writer waits for room");
    #[cfg(not(feature = "tracing"))]
    let _ = needed;
}

/// An unstick signalled the peer, which waited on `ring` (from this end's side).
#[inline]
pub(crate) fn unstick_signal(ring: Ring) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "vmbus_channel", ring = ring.name(), "stuck channel: signalled the peer again");
    #[cfg(not(feature = "tracing"))]
    let _ = ring;
}

/// The request with transaction id `id` was given up before its completion.
#[inline]
pub(crate) fn request_given_up(id: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "vmbus_channel", transaction_id = id, "request given up before its completion");
    #[cfg(not(feature = "tracing"))]
    let _ = id;
}

/// A read dropped `count` completions that came too late, or twice.
#[inline]
pub(crate) fn stale_completions(count: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "vmbus_channel", count, "stale completions dropped");
    #[cfg(not(feature = "tracing"))]
    let _ = count;
}
