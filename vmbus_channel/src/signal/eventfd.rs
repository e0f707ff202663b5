//! Signals over Linux eventfds, for a trusted peer: the kernel (a KVM-based
//! VMM hands the same fds to ioeventfd/irqfd) or a process this one trusts.
//! An untrusted process gets a [`SocketSignal`](super::SocketSignal) instead.

use super::socket::{check_stream_socket, drain};
use super::{Notifier, Signal};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The fds one end of an eventfd signal needs.
///
/// Both ends hold the same two eventfds (the same open file descriptions),
/// so give these only to a peer you trust; see [`EventFdSignal`].
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

    /// Checks, where it is cheap, that these are the fds an end needs: two
    /// eventfds (told apart from other fds through `/proc/self/fd`, so not
    /// checked without `/proc`) and a stream socket. Says what is wrong if
    /// not.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_eventfd(self.to_peer.as_fd()).map_err(|error| format!("to_peer: {error}"))?;
        check_eventfd(self.from_peer.as_fd()).map_err(|error| format!("from_peer: {error}"))?;
        check_stream_socket(self.liveness.as_fd()).map_err(|error| format!("liveness: {error}"))
    }
}

/// What `/proc/self/fd/N` links to for an eventfd.
const EVENTFD_LINK: &str = "anon_inode:[eventfd]";

/// Checks that `fd` is an eventfd, if `/proc` can tell.
fn check_eventfd(fd: BorrowedFd<'_>) -> Result<(), String> {
    rustix::fs::fstat(fd).map_err(|error| format!("cannot stat it: {error}"))?;
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) if target.as_os_str() == EVENTFD_LINK => Ok(()),
        Ok(target) => Err(format!("it is not an eventfd but {}", target.display())),
        // No /proc: nothing cheap tells an eventfd apart; the waiter copes
        // with other fds by closing.
        Err(_) => Ok(()),
    }
}

/// One end of an eventfd signal, for a **trusted** peer.
///
/// Signalling the peer writes its eventfd. A small thread waits on the
/// peer's eventfd and on the liveness socket and feeds the [`Notifier`], so
/// async tasks and blocked threads wake without any particular executor. The
/// raw fds are exposed for wiring to a reactor or to KVM instead.
///
/// # Only for a trusted peer
///
/// Both ends use the *same* eventfds, and a file's flags (`O_NONBLOCK`)
/// belong to the open file description, which every holder shares. A process
/// holding these fds can therefore clear `O_NONBLOCK` and then fill the
/// counter, so that [`signal_peer`](Signal::signal_peer) blocks forever, or
/// race this end's thread for the counter, so that the thread blocks in its
/// read forever: it then notices neither signals nor the peer's death, and
/// dropping this end hangs joining it. Nothing on this end can prevent that.
///
/// So use it where the peer is the kernel (KVM's ioeventfd and irqfd) or a
/// process you trust. For a process that must not be trusted, such as a
/// guest's device backend in its own sandbox, use
/// [`SocketSignal`](crate::SocketSignal), which shares nothing with the peer;
/// [`ChannelFds::pair`](crate::ChannelFds::pair) does.
///
/// Within that trust, this end copes with a confused peer: an fd that turns
/// out not to be an eventfd (a pipe hung up, a file at its end) closes the
/// [`Notifier`] instead of spinning, bytes written to the liveness socket
/// are ignored (only its end of file means the peer is gone), and
/// [`close`](Signal::close) only shuts down this end's sending side, so this
/// end keeps hearing the peer.
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
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] if `liveness` is not a
    /// stream socket, or if `/proc` shows that `to_peer` or `from_peer` is
    /// not an eventfd. Out-of-band data on the liveness socket is made inline
    /// (`SO_OOBINLINE`), to be ignored like any other stray byte.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use vmbus_channel::{EventFdSignal, EventFdSignalFds};
    ///
    /// // A socket where an eventfd belongs.
    /// let (fds, _peer) = EventFdSignalFds::pair()?;
    /// let (socket, _) = UnixStream::pair()?;
    /// let fds = EventFdSignalFds { from_peer: socket.into(), ..fds };
    /// let error = EventFdSignal::new(fds).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(fds: EventFdSignalFds) -> io::Result<Self> {
        fds.check().map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
        rustix::net::sockopt::set_socket_oobinline(&fds.liveness, true)?;
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
/// notifications, and end of file on the liveness socket into closing.
///
/// With a trusted peer nothing here blocks but `poll`: the eventfd is
/// non-blocking (a peer that clears `O_NONBLOCK` can make the read block; see
/// [`EventFdSignal`]) and the socket is read with `MSG_DONTWAIT`.
fn wait_for_peer(from_peer: &OwnedFd, liveness: &OwnedFd, stop: &OwnedFd, notifier: &Notifier) {
    loop {
        let mut fds = [
            PollFd::new(from_peer, PollFlags::IN),
            PollFd::new(liveness, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
        let [signal, peer, stop] = fds.map(|fd| fd.revents());
        if !signal.is_empty() {
            // An eventfd never hangs up or errs (short of a counter the kernel
            // overflowed), and a read of it takes exactly 8 bytes. Anything
            // else is not an eventfd, and would be ready forever.
            if signal.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                break;
            }
            let mut count = [0; 8];
            match rustix::io::read(from_peer, &mut count) {
                Ok(8) => notifier.notify(),
                Err(Errno::AGAIN | Errno::INTR) => {}
                Ok(_) | Err(_) => break,
            }
        }
        if !stop.is_empty() {
            return;
        }
        if !peer.is_empty() {
            // Only end of file (or an error) means the peer is gone; stray
            // bytes are read and ignored.
            if drain(liveness.as_fd(), peer).closed {
                break;
            }
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
        // The peer sees end of file; this end still hears the peer's close.
        let _ = rustix::net::shutdown(&*self.liveness, rustix::net::Shutdown::Write);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Runs `f` on its own thread, panicking if it takes longer than [`TIMEOUT`].
    fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(f());
        });
        result.recv_timeout(TIMEOUT).unwrap_or_else(|error| panic!("{what}: {error}"))
    }

    /// Runs the waiter thread over `from_peer` and `liveness` and expects it
    /// to end by itself; returns the notifier it fed.
    fn waiter_ends_by_itself(from_peer: OwnedFd, liveness: OwnedFd) -> Arc<Notifier> {
        let notifier = Arc::new(Notifier::new());
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap();
        let fed = notifier.clone();
        bounded("the waiter", move || wait_for_peer(&from_peer, &liveness, &stop, &fed));
        notifier
    }

    /// The waiter over a notifier: waits until it moved past `seen`, or closed.
    fn wait_for_news(signal: EventFdSignal, seen: u64) -> EventFdSignal {
        bounded("waiting for the notifier", move || {
            signal.notifier().wait(seen);
            signal
        })
    }

    #[test]
    fn a_hung_up_socket_where_the_eventfd_belongs_closes_instead_of_spinning() {
        let (from_peer, hung_up) = UnixStream::pair().unwrap();
        drop(hung_up);
        let (liveness, _peer) = UnixStream::pair().unwrap();
        let notifier = waiter_ends_by_itself(from_peer.into(), liveness.into());
        assert!(notifier.is_closed());
        assert_eq!(notifier.generation(), 0, "a hang-up is no signal");
    }

    #[test]
    fn a_file_at_its_end_where_the_eventfd_belongs_closes_instead_of_spinning() {
        let from_peer = std::fs::File::open("/dev/null").unwrap();
        let (liveness, _peer) = UnixStream::pair().unwrap();
        let notifier = waiter_ends_by_itself(from_peer.into(), liveness.into());
        assert!(notifier.is_closed());
    }

    #[test]
    fn new_rejects_fds_that_are_not_eventfds() {
        if !std::path::Path::new("/proc/self/fd").exists() {
            eprintln!("skipped: no /proc to tell eventfds apart");
            return;
        }
        // /dev/zero reads as a counter forever: the waiter cannot tell it apart.
        for field in ["to_peer", "from_peer", "liveness"] {
            let (fds, _peer) = EventFdSignalFds::pair().unwrap();
            let zero = OwnedFd::from(std::fs::File::open("/dev/zero").unwrap());
            let fds = match field {
                "to_peer" => EventFdSignalFds { to_peer: zero, ..fds },
                "from_peer" => EventFdSignalFds { from_peer: zero, ..fds },
                _ => EventFdSignalFds { liveness: zero, ..fds },
            };
            let error = EventFdSignal::new(fds).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{field}: {error}");
            assert!(error.to_string().starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn stray_bytes_on_the_liveness_socket_are_not_a_close() {
        let (ours, theirs) = EventFdSignalFds::pair().unwrap();
        let mut ours = EventFdSignal::new(ours).unwrap();
        let mut liveness = UnixStream::from(theirs.liveness);
        liveness.write_all(&[0; 1000]).unwrap();
        for _ in 0..2 {
            // The second round starts after the waiter handled all of the first.
            let seen = ours.notifier().generation();
            rustix::io::write(&theirs.to_peer, &1u64.to_ne_bytes()).unwrap();
            ours = wait_for_news(ours, seen);
            assert!(!ours.notifier().is_closed(), "stray bytes closed the notifier");
        }
        // End of file does close it.
        drop(liveness);
        let ours = bounded("waiting for the close", move || {
            while !ours.notifier().is_closed() {
                ours.notifier().wait(ours.notifier().generation());
            }
            ours
        });
        bounded("dropping", move || drop(ours));
    }

    #[test]
    fn close_is_a_half_close() {
        let (a, b) = EventFdSignalFds::pair().unwrap();
        let (a, b) = (EventFdSignal::new(a).unwrap(), EventFdSignal::new(b).unwrap());
        a.close();
        let b = bounded("waiting for the close", move || {
            while !b.notifier().is_closed() {
                b.notifier().wait(b.notifier().generation());
            }
            b
        });
        let seen = a.notifier().generation();
        b.signal_peer();
        let a = wait_for_news(a, seen);
        assert!(a.notifier().generation() > seen);
        assert!(!a.notifier().is_closed(), "closing one end left its own notifier open");
        bounded("dropping", move || drop((a, b)));
    }
}
