//! Signalling between the two ends of a channel.
//!
//! A [`Signal`] tells the peer to look at the rings and receives the peer's
//! signals and closing through a [`Notifier`]. One signal per direction
//! covers both "data arrived" and "space was freed": the woken side re-checks
//! its rings, as the VMBus signalling rules expect.
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
mod socket;

#[cfg(target_os = "linux")]
pub use eventfd::{EventFdSignal, EventFdSignalFds};
pub use in_process::InProcessSignal;
pub use notifier::Notifier;
#[cfg(target_os = "linux")]
pub(crate) use socket::check_stream_socket;
#[cfg(target_os = "linux")]
pub use socket::SocketSignal;

/// One end's way to signal its peer and to learn of the peer's signals.
pub trait Signal: Send + Sync + 'static {
    /// Tells the peer to look at the rings.
    fn signal_peer(&self);

    /// The peer's signals and closing, as this end sees them.
    fn notifier(&self) -> &Notifier;

    /// Tells the peer this end is gone. Idempotent; implementations also do
    /// it when dropped.
    fn close(&self);
}
