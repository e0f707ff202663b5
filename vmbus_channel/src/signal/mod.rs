//! Signalling between the two ends of a channel.
//!
//! A [`Signal`] tells the peer to look at the rings and receives the peer's
//! signals and closing, counted by a [`Notifier`]. One signal per direction
//! covers both "data arrived" and "space was freed": the woken side re-checks
//! its rings, as the VMBus signalling rules expect.
//!
//! Signals are polled, never run by a thread of their own: an async wait
//! ([`Signal::poll_signal`]) reads the signal in the waiting task and, if
//! nothing is there, has a [`Reactor`](crate::Reactor) watch its fd; a
//! blocking wait ([`Signal::wait`]) polls the fd in the calling thread.
//!
//! - [`InProcessSignal`]: both ends in one process.
//! - [`SocketSignal`] (Linux): the peer is another process that must not be
//!   trusted; each holds its own socket of a socket pair.
//! - [`EventFdSignal`] (Linux): the peer is trusted, such as the kernel
//!   through KVM's ioeventfd/irqfd; both ends share the eventfds.

mod in_process;
mod notifier;

#[cfg(target_os = "linux")]
mod eventfd;
#[cfg(target_os = "linux")]
mod fd_receiver;
#[cfg(target_os = "linux")]
mod socket;

#[cfg(target_os = "linux")]
pub(crate) use eventfd::check_eventfd;
#[cfg(target_os = "linux")]
pub use eventfd::EventFdSignal;
pub use in_process::InProcessSignal;
pub use notifier::{Notifier, PeerEvent};
#[cfg(target_os = "linux")]
pub(crate) use socket::check_stream_socket;
#[cfg(target_os = "linux")]
pub use socket::SocketSignal;

use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

/// One end's way to signal its peer and to learn of the peer's signals.
///
/// A waiter reads the [`Notifier`]'s generation *before* it looks at the
/// rings, and waits with that generation as `seen`: a signal that arrives
/// between the look and the wait is not lost.
///
/// The provided methods suit a signal whose notifier is fed from elsewhere
/// (as [`InProcessSignal`]'s peer feeds it); an fd-backed signal reads its
/// fd in them.
pub trait Signal: Send + Sync + 'static {
    /// Tells the peer to look at the rings.
    fn signal_peer(&self);

    /// The peer's signals and closing, as this end has taken them in so far.
    fn notifier(&self) -> &Notifier;

    /// `Ready` once the peer signalled after `seen` was read from the
    /// notifier, or closed; otherwise arranges for `cx` to be woken when
    /// either happens. Fails only if the signal cannot be watched (its
    /// reactor refused the fd).
    fn poll_signal(&self, cx: &mut Context<'_>, seen: u64) -> Poll<io::Result<PeerEvent>> {
        self.notifier().poll_wait(cx, seen).map(Ok)
    }

    /// Blocks the calling thread until the peer signalled after `seen` or
    /// closed, or until `deadline` (`None`: no deadline); `None` if the
    /// deadline came first.
    fn wait(&self, seen: u64, deadline: Option<Instant>) -> Option<PeerEvent> {
        self.notifier().wait_until(seen, deadline)
    }

    /// Takes in signals (and a close) that already arrived, without
    /// waiting, so that the notifier shows them.
    fn receive(&self) {}

    /// Tells the peer this end is gone, where the signal can carry that.
    /// Idempotent; implementations also do it when dropped.
    fn close(&self);
}
