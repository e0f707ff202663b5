//! Signals over a Unix stream socket pair, for a peer in another process that
//! must not be trusted.
//!
//! Each process holds its own socket of the pair, so the two ends share no
//! open file description: nothing the peer does to its socket (clearing
//! `O_NONBLOCK`, never reading, flooding) can make a call on this end block.

use super::{Notifier, Signal};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown, SocketType};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes taken from the socket per `recv` while draining it.
const DRAIN_CHUNK: usize = 256;
/// Most `recv` calls per wake-up, so a peer that floods the socket cannot
/// keep the waiter from noticing a stop (or from notifying) for long.
const MAX_READS_PER_WAKE: usize = 16;

/// One end of a signal carried over one `AF_UNIX` stream socket of a
/// `socketpair`: the signal for a peer in another process that must not be
/// trusted.
///
/// - Signalling the peer sends one byte without waiting
///   (`MSG_DONTWAIT | MSG_NOSIGNAL`). If the peer has not read the bytes
///   already sent, the send fails with `EAGAIN` and is dropped: the peer
///   still has signals to read, so it wakes anyway. A gone peer is ignored
///   too (the [`Notifier`] reports it).
/// - A small thread polls the socket and a private stop eventfd. When bytes
///   arrive it drains them without waiting, a bounded number of reads per
///   wake-up, and notifies the [`Notifier`] once; the bytes' values mean
///   nothing, so a peer sending garbage only causes spurious wake-ups. End of
///   file, a socket error, or a hang-up closes the [`Notifier`]: the peer
///   closed its end, shut it down, or died.
/// - [`close`](Signal::close) shuts down this end's sending side only: the
///   peer sees end of file, and this end still receives the peer's signals
///   until the peer closes too.
/// - Dropping closes, stops the thread and joins it. Neither the thread nor
///   any method makes a call that can block on something the peer controls,
///   so dropping always returns.
///
/// Unlike [`EventFdSignal`](crate::EventFdSignal), whose eventfds are shared
/// with the peer, this holds up against a hostile process, provided this
/// process is the only one holding this end's socket.
///
/// ```
/// use vmbus_channel::{Signal, SocketSignal};
///
/// let (a, b) = SocketSignal::pair()?;
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// b.notifier().wait(seen); // returns once the byte arrived
/// assert!(b.notifier().generation() > seen);
///
/// // Closing is a half-close: the peer sees it, this end still hears the peer.
/// a.close();
/// b.notifier().wait(b.notifier().generation());
/// assert!(b.notifier().is_closed());
/// assert!(!a.notifier().is_closed());
/// let seen = a.notifier().generation();
/// b.signal_peer();
/// a.notifier().wait(seen);
/// assert!(a.notifier().generation() > seen);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SocketSignal {
    socket: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    notifier: Arc<Notifier>,
    waiter: Option<JoinHandle<()>>,
}

impl SocketSignal {
    /// Two connected ends over a new socket pair (close-on-exec): keep one,
    /// and give the other's socket to the peer process, e.g. with
    /// [`ChannelFds`](crate::ChannelFds). To hand a socket over before
    /// starting any end, make the pair with [`UnixStream::pair`] and start
    /// this end with [`new`](Self::new).
    ///
    /// ```
    /// use vmbus_channel::{Signal, SocketSignal};
    /// let (a, b) = SocketSignal::pair()?;
    /// drop(a);
    /// b.notifier().wait(b.notifier().generation());
    /// assert!(b.notifier().is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair() -> io::Result<(Self, Self)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Self::new(a)?, Self::new(b)?))
    }

    /// Starts an end over `socket`, one socket of a connected stream socket
    /// pair whose other socket the peer holds.
    ///
    /// This process must be the only holder of `socket`'s open file
    /// description: a peer sharing it could set its flags. The socket's own
    /// flags do not matter (every call passes `MSG_DONTWAIT`). Out-of-band
    /// data is made inline (`SO_OOBINLINE`), so a peer's `MSG_OOB` byte is
    /// just another signal.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] if `socket` is not a stream
    /// socket.
    ///
    /// ```
    /// use std::os::unix::net::{UnixDatagram, UnixStream};
    /// use vmbus_channel::{Signal, SocketSignal};
    ///
    /// let (ours, theirs) = UnixStream::pair()?;
    /// let signal = SocketSignal::new(ours)?;
    /// # drop((signal, theirs));
    ///
    /// let (datagram, _) = UnixDatagram::pair()?;
    /// let error = SocketSignal::new(datagram).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(socket: impl Into<OwnedFd>) -> io::Result<Self> {
        let socket = Arc::new(socket.into());
        check_stream_socket(socket.as_fd()).map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
        rustix::net::sockopt::set_socket_oobinline(&*socket, true)?;
        let notifier = Arc::new(Notifier::new());
        let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let waiter = {
            let (socket, stop, notifier) = (socket.clone(), stop.clone(), notifier.clone());
            std::thread::Builder::new()
                .name("vmbus-signal".into())
                .spawn(move || wait_for_peer(socket.as_fd(), stop.as_fd(), &notifier))?
        };
        Ok(Self { socket, stop, notifier, waiter: Some(waiter) })
    }

    /// This end's socket, e.g. to watch it for hang-up from a reactor.
    ///
    /// This end's thread reads it: bytes read from it elsewhere are signals
    /// the [`Notifier`] never sees.
    pub fn socket_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Checks that `fd` is a stream socket, saying what it is if not.
pub(crate) fn check_stream_socket(fd: BorrowedFd<'_>) -> Result<(), String> {
    let stat = rustix::fs::fstat(fd).map_err(|error| format!("cannot stat it: {error}"))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Socket => {}
        other => return Err(format!("it is not a socket but a {other:?}")),
    }
    match rustix::net::sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => Ok(()),
        Ok(SocketType::DGRAM) => Err("it is a datagram socket, not a stream socket".into()),
        Ok(SocketType::SEQPACKET) => Err("it is a seqpacket socket, not a stream socket".into()),
        Ok(other) => Err(format!("it is not a stream socket ({other:?})")),
        Err(error) => Err(format!("cannot get its socket type: {error}")),
    }
}

/// What [`drain`] found on a socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drained {
    /// At least one byte arrived.
    pub bytes: bool,
    /// The peer is gone: end of file, a socket error, or a hang-up with no
    /// data.
    pub closed: bool,
}

/// Reads whatever is queued on `socket` without waiting, in at most
/// [`MAX_READS_PER_WAKE`] reads, after `poll` reported `revents` for it.
///
/// Only `recv` with `MSG_DONTWAIT` touches the socket, so this never blocks,
/// whatever the peer did to its own socket.
pub(super) fn drain(socket: BorrowedFd<'_>, revents: PollFlags) -> Drained {
    let mut buf = [0; DRAIN_CHUNK];
    let mut drained = Drained::default();
    for _ in 0..MAX_READS_PER_WAKE {
        match rustix::net::recv(socket, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => {
                drained.closed = true;
                break;
            }
            Ok((read, _)) => {
                drained.bytes = true;
                // A Unix stream `recv` takes all it can; a short one emptied
                // the queue (or stopped at a message carrying fds, which
                // leaves the socket readable for the next wake-up).
                if read < buf.len() {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                // Readiness without data: a hang-up or an error the read did
                // not report is still the peer going away.
                drained.closed =
                    !drained.bytes && revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL);
                break;
            }
            Err(_) => {
                drained.closed = true;
                break;
            }
        }
    }
    drained
}

/// The waiter thread: turns bytes on the socket into notifications and the
/// socket's end into closing, until `stop` is written.
fn wait_for_peer(socket: BorrowedFd<'_>, stop: BorrowedFd<'_>, notifier: &Notifier) {
    loop {
        let mut fds = [PollFd::new(&socket, PollFlags::IN), PollFd::new(&stop, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
        let [peer, stop] = fds.map(|fd| fd.revents());
        if !peer.is_empty() {
            let drained = drain(socket, peer);
            // Signals sent before the peer went away are delivered first.
            if drained.bytes {
                notifier.notify();
            }
            if drained.closed {
                break;
            }
        }
        if !stop.is_empty() {
            return;
        }
    }
    notifier.close();
}

impl Signal for SocketSignal {
    fn signal_peer(&self) {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        loop {
            match rustix::net::send(&*self.socket, &[1], flags) {
                Err(Errno::INTR) => continue,
                // EAGAIN: the peer has not read earlier signals, so it wakes
                // anyway. EPIPE, ECONNRESET: the peer is gone, which the
                // notifier reports. Nothing else is worth failing for.
                _ => return,
            }
        }
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn close(&self) {
        let _ = rustix::net::shutdown(&*self.socket, Shutdown::Write);
    }
}

impl Drop for SocketSignal {
    fn drop(&mut self) {
        self.close();
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
    }
}
