//! Signalling between the two ends of a channel.
//!
//! A [`Signal`] tells the peer to look at the rings and receives the peer's
//! signals and closing through a [`Notifier`]. One signal per direction
//! covers both "data arrived" and "space was freed": the woken side re-checks
//! its rings, as the VMBus signalling rules expect.

mod in_process;
mod notifier;

#[cfg(target_os = "linux")]
mod eventfd;

#[cfg(target_os = "linux")]
pub use eventfd::{EventFdSignal, EventFdSignalFds};
pub use in_process::InProcessSignal;
pub use notifier::Notifier;

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
