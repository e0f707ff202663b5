//! Signals over Linux eventfds, so the two ends can live in different
//! processes, and a KVM-based VMM can hand the same fds to ioeventfd/irqfd.

use super::{Notifier, Signal};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The fds one end of an eventfd signal needs.
#[derive(Debug)]
pub struct EventFdSignalFds {
    /// Eventfd this end writes to signal the peer.
    pub to_peer: OwnedFd,
    /// Eventfd the peer writes to signal this end.
    pub from_peer: OwnedFd,
    /// One end of a socket pair; the peer holds the other. Its hang-up tells
    /// this end the peer is gone, even if the peer died without closing.
    pub liveness: OwnedFd,
}

impl EventFdSignalFds {
    /// The fds of two connected ends.
    pub fn pair() -> io::Result<(Self, Self)> {
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let a_to_b = eventfd(0, flags)?;
        let b_to_a = eventfd(0, flags)?;
        let (a_live, b_live) = UnixStream::pair()?;
        let a = Self { to_peer: a_to_b.try_clone()?, from_peer: b_to_a.try_clone()?, liveness: a_live.into() };
        let b = Self { to_peer: b_to_a, from_peer: a_to_b, liveness: b_live.into() };
        Ok((a, b))
    }
}

/// One end of an eventfd signal.
///
/// Signalling the peer writes its eventfd. A small thread waits on the
/// peer's eventfd and on the liveness socket and feeds the [`Notifier`], so
/// async tasks and blocked threads wake without any particular executor. The
/// raw fds are exposed for wiring to a reactor or to KVM instead.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use vmbus_channel::{EventFdSignal, EventFdSignalFds, Signal};
/// let (a, b) = EventFdSignalFds::pair().unwrap();
/// let (a, b) = (EventFdSignal::new(a).unwrap(), EventFdSignal::new(b).unwrap());
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// b.notifier().wait(seen);
/// drop(a);
/// b.notifier().wait(b.notifier().generation());
/// assert!(b.notifier().is_closed());
/// # }
/// ```
#[derive(Debug)]
pub struct EventFdSignal {
    to_peer: OwnedFd,
    from_peer: Arc<OwnedFd>,
    liveness: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    notifier: Arc<Notifier>,
    waiter: Option<JoinHandle<()>>,
}

impl EventFdSignal {
    /// Starts an end over `fds`.
    pub fn new(fds: EventFdSignalFds) -> io::Result<Self> {
        let notifier = Arc::new(Notifier::new());
        let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let from_peer = Arc::new(fds.from_peer);
        let liveness = Arc::new(fds.liveness);
        let waiter = {
            let (from_peer, liveness, stop, notifier) =
                (from_peer.clone(), liveness.clone(), stop.clone(), notifier.clone());
            std::thread::Builder::new()
                .name("vmbus-signal".into())
                .spawn(move || wait_for_peer(&from_peer, &liveness, &stop, &notifier))?
        };
        Ok(Self { to_peer: fds.to_peer, from_peer, liveness, stop, notifier, waiter: Some(waiter) })
    }

    /// The eventfd this end writes to signal the peer (an irqfd, say).
    pub fn to_peer_fd(&self) -> BorrowedFd<'_> {
        self.to_peer.as_fd()
    }

    /// The eventfd the peer writes to signal this end (an ioeventfd, say).
    pub fn from_peer_fd(&self) -> BorrowedFd<'_> {
        self.from_peer.as_fd()
    }

    /// This end's liveness socket.
    pub fn liveness_fd(&self) -> BorrowedFd<'_> {
        self.liveness.as_fd()
    }
}

/// The waiter thread: turns readiness of the peer's eventfd into
/// notifications, and hang-up of the liveness socket into closing.
fn wait_for_peer(from_peer: &OwnedFd, liveness: &OwnedFd, stop: &OwnedFd, notifier: &Notifier) {
    loop {
        let mut fds = [
            PollFd::new(from_peer, PollFlags::IN),
            PollFd::new(liveness, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let [signal, peer, stop] = fds.map(|fd| fd.revents());
        if !signal.is_empty() {
            let mut count = [0; 8];
            let _ = rustix::io::read(from_peer, &mut count);
            notifier.notify();
        }
        if !stop.is_empty() {
            return;
        }
        // The peer never writes to the liveness socket: readable means EOF.
        if !peer.is_empty() {
            break;
        }
    }
    notifier.close();
}

impl Signal for EventFdSignal {
    fn signal_peer(&self) {
        // A full counter (2^64 - 2 pending signals) still wakes the peer,
        // so a failed write loses nothing.
        let _ = rustix::io::write(&self.to_peer, &1u64.to_ne_bytes());
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn close(&self) {
        let _ = rustix::net::shutdown(&*self.liveness, rustix::net::Shutdown::Both);
    }
}

impl Drop for EventFdSignal {
    fn drop(&mut self) {
        self.close();
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
    }
}
