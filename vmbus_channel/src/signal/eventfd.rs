//! Signals over Linux eventfds, shaped as KVM uses them: one eventfd the
//! peer kicks this end on (an ioeventfd), one this end kicks the peer on
//! (an irqfd). For a trusted peer; an untrusted process gets a
//! [`SocketSignal`](super::SocketSignal) instead.

use super::fd_receiver::{FdKind, FdReceiver};
use super::{Notifier, PeerEvent, Signal};
use crate::reactor::Reactor;
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::OFlags;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// What `/proc/self/fd/N` links to for an eventfd.
const EVENTFD_LINK: &str = "anon_inode:[eventfd]";

/// Checks that `fd` is an eventfd, if `/proc` can tell.
pub(crate) fn check_eventfd(fd: BorrowedFd<'_>) -> Result<(), String> {
    rustix::fs::fstat(fd).map_err(|error| format!("cannot stat it: {error}"))?;
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) if target.as_os_str() == EVENTFD_LINK => Ok(()),
        Ok(target) => Err(format!("it is not an eventfd but {}", target.display())),
        // No /proc: nothing cheap tells an eventfd apart; a read that is not
        // an eventfd's closes the notifier instead.
        Err(_) => Ok(()),
    }
}

/// One end of an eventfd signal, for a **trusted** peer: KVM (the VMM
/// registers `from_peer` as an ioeventfd and `to_peer` as an irqfd), or a
/// process this one trusts.
///
/// Signalling the peer adds 1 to `to_peer`. Receiving reads `from_peer`'s
/// counter without waiting, in the waiting task or thread itself: however
/// many kicks arrived since the last read count as one signal. No thread of
/// its own: an async wait has `from_peer` watched by the signal's
/// [`Reactor`] (the shared [`Driver`](crate::Driver) unless
/// [`with_reactor`](Self::with_reactor) chose another), a blocking wait
/// polls it in the calling thread, and [`AsFd`] hands it to an event loop of
/// your own.
///
/// # The peer closing
///
/// An eventfd carries no close: KVM has none to give. A VMM that learns the
/// guest went away (the VM stopped, the channel was rescinded) says so with
/// [`peer_closed`](Self::peer_closed); waiters then see
/// [`PeerEvent::Closed`]. [`close`](Signal::close) does nothing to the peer.
///
/// # Only for a trusted peer
///
/// Both ends use the *same* eventfds, and a file's flags (`O_NONBLOCK`)
/// belong to the open file description, which every holder shares. A process
/// holding these fds can therefore clear `O_NONBLOCK`, so that a read here
/// blocks, or fill the counter, so that [`signal_peer`](Signal::signal_peer)
/// blocks. Nothing on this end can prevent that. For a process that must not
/// be trusted use [`SocketSignal`](crate::SocketSignal), which shares
/// nothing with the peer.
///
/// ```
/// use vmbus_channel::{EventFdSignal, PeerEvent, Signal};
///
/// let (a, b) = EventFdSignal::pair()?;
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// a.signal_peer();
/// // Both kicks are one signal, read in this thread.
/// assert_eq!(b.wait(seen, None), Some(PeerEvent::Signalled));
/// assert_eq!(b.notifier().generation(), seen + 1);
/// b.peer_closed();
/// assert_eq!(b.wait(b.notifier().generation(), None), Some(PeerEvent::Closed));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// With KVM: any owned fd will do ([`OwnedFd`], `std::fs::File`, or any
/// type that converts into [`OwnedFd`]); a borrowed one ([`AsFd`]) is
/// duplicated with [`try_clone_to_owned`](BorrowedFd::try_clone_to_owned),
/// no `unsafe` needed. `vmm-sys-util`'s `EventFd` (0.15) is the exception:
/// it exposes only a raw fd number, and taking ownership of a raw number is
/// `unsafe` in any crate. One line does it soundly, on a fresh duplicate
/// that nothing else owns:
///
/// ```
/// use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
/// use vmbus_channel::EventFdSignal;
/// use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
///
/// let ioeventfd = EventFd::new(EFD_NONBLOCK)?; // registered with KVM_IOEVENTFD
/// let irqfd = EventFd::new(EFD_NONBLOCK)?; // registered with KVM_IRQFD
/// // SAFETY: `try_clone` returns a new fd (a `dup`) that `into_raw_fd`
/// // gives up: the `OwnedFd` is its only owner.
/// let owned = |fd: &EventFd| -> std::io::Result<OwnedFd> {
///     Ok(unsafe { OwnedFd::from_raw_fd(fd.try_clone()?.into_raw_fd()) })
/// };
/// let signal = EventFdSignal::new(owned(&ioeventfd)?, owned(&irqfd)?)?;
/// # drop(signal);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct EventFdSignal {
    to_peer: OwnedFd,
    receiver: FdReceiver,
}

impl EventFdSignal {
    /// An end that reads `from_peer` (the eventfd the peer kicks, an
    /// ioeventfd) and writes `to_peer` (the eventfd this end kicks, an
    /// irqfd). Starts nothing.
    ///
    /// `from_peer` is made non-blocking (`O_NONBLOCK`, which every holder of
    /// its file description shares): a read must never wait. Fails with
    /// [`io::ErrorKind::InvalidInput`] if `/proc` shows that either fd is not
    /// an eventfd.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use vmbus_channel::EventFdSignal;
    ///
    /// // A socket where an eventfd belongs.
    /// let (socket, _) = UnixStream::pair()?;
    /// let irqfd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
    /// let error = EventFdSignal::new(socket, irqfd).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(from_peer: impl Into<OwnedFd>, to_peer: impl Into<OwnedFd>) -> io::Result<Self> {
        let (from_peer, to_peer) = (from_peer.into(), to_peer.into());
        let invalid =
            |which: &str, error: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{which}: {error}"));
        check_eventfd(from_peer.as_fd()).map_err(|error| invalid("from_peer", error))?;
        check_eventfd(to_peer.as_fd()).map_err(|error| invalid("to_peer", error))?;
        let flags = rustix::fs::fcntl_getfl(&from_peer)?;
        rustix::fs::fcntl_setfl(&from_peer, flags | OFlags::NONBLOCK)?;
        Ok(Self { to_peer, receiver: FdReceiver::new(from_peer, FdKind::EventFd) })
    }

    /// Two connected ends over two new eventfds, each end holding its own
    /// duplicates: for tests, and for a trusted peer process that gets one
    /// end's fds (see [`ChannelFds::pair_with_eventfds`](crate::ChannelFds::pair_with_eventfds)).
    pub fn pair() -> io::Result<(Self, Self)> {
        let (a_to_b, b_to_a) = Self::fd_pair()?;
        Ok((Self::new(b_to_a.try_clone()?, a_to_b.try_clone()?)?, Self::new(a_to_b, b_to_a)?))
    }

    /// Two new eventfds (close-on-exec, non-blocking): one per direction.
    pub(crate) fn fd_pair() -> io::Result<(OwnedFd, OwnedFd)> {
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        Ok((eventfd(0, flags)?, eventfd(0, flags)?))
    }

    /// Has async waits watch `from_peer` with `reactor` instead of the
    /// shared [`Driver`](crate::Driver).
    pub fn with_reactor(mut self, reactor: impl Reactor) -> Self {
        self.receiver.set_reactor(Arc::new(reactor));
        self
    }

    /// The eventfd this end writes to signal the peer (the irqfd).
    pub fn to_peer_fd(&self) -> BorrowedFd<'_> {
        self.to_peer.as_fd()
    }

    /// The eventfd the peer writes to signal this end (the ioeventfd); the
    /// same as [`as_fd`](AsFd::as_fd).
    pub fn from_peer_fd(&self) -> BorrowedFd<'_> {
        self.receiver.fd()
    }

    /// Records that the peer is gone, which the eventfds cannot tell: every
    /// waiter wakes with [`PeerEvent::Closed`].
    pub fn peer_closed(&self) {
        self.receiver.notifier().close();
        // A thread blocked polling `from_peer` hears of the close only from
        // the fd: kick it. It reads one spurious signal along with the close.
        let _ = rustix::io::write(self.receiver.fd(), &1u64.to_ne_bytes());
    }
}

/// The eventfd the peer kicks, for an event loop of one's own: when it is
/// readable, call [`Signal::receive`] (or wake whatever polls the queue).
impl AsFd for EventFdSignal {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.receiver.fd()
    }
}

impl Signal for EventFdSignal {
    fn signal_peer(&self) {
        // A full counter (2^64 - 2 pending kicks) still wakes the peer, so a
        // failed write loses nothing.
        let _ = rustix::io::write(&self.to_peer, &1u64.to_ne_bytes());
    }

    fn notifier(&self) -> &Notifier {
        self.receiver.notifier()
    }

    fn poll_signal(&self, cx: &mut Context<'_>, seen: u64) -> Poll<io::Result<PeerEvent>> {
        self.receiver.poll_signal(cx, seen)
    }

    fn wait(&self, seen: u64, deadline: Option<Instant>) -> Option<PeerEvent> {
        self.receiver.wait(seen, deadline)
    }

    fn receive(&self) {
        self.receiver.receive();
    }

    /// Nothing: an eventfd cannot carry a close (see [`EventFdSignal`]).
    fn close(&self) {}
}
