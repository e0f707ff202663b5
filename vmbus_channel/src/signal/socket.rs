//! Signals over a Unix stream socket pair, for a peer in another process that
//! must not be trusted.
//!
//! Each process holds its own socket of the pair, so the two ends share no
//! open file description: nothing the peer does to its socket (clearing
//! `O_NONBLOCK`, never reading, flooding) can make a call on this end block.

use super::fd_receiver::{FdKind, FdReceiver};
use super::{Notifier, PeerEvent, Signal};
use crate::reactor::Reactor;
use rustix::event::PollFlags;
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown, SocketType};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Bytes taken from the socket per `recv` while draining it.
const DRAIN_CHUNK: usize = 256;
/// Most `recv` calls per read of the socket, so a peer that floods it
/// cannot keep a waiter reading for long.
const MAX_READS_PER_TAKE: usize = 16;

/// One end of a signal carried over one `AF_UNIX` stream socket of a
/// `socketpair`: the signal for a peer in another process that must not be
/// trusted.
///
/// - Signalling the peer sends one byte without waiting
///   (`MSG_DONTWAIT | MSG_NOSIGNAL`). If the peer has not read the bytes
///   already sent, the send fails with `EAGAIN` and is dropped: the peer
///   still has signals to read, so it wakes anyway. A gone peer is ignored
///   too (the [`Notifier`] reports it).
/// - Receiving reads the socket without waiting, in the waiting task or
///   thread itself: no thread of its own. The bytes' values mean nothing,
///   so a peer sending garbage only causes spurious wake-ups, and any number
///   of bytes read at once is one signal. End of file, a socket error, or a
///   hang-up closes the [`Notifier`]: the peer closed its end, shut it down,
///   or died.
/// - An async wait that finds nothing has the socket watched by the
///   signal's [`Reactor`] (the shared [`Driver`](crate::Driver) unless
///   [`with_reactor`](Self::with_reactor) chose another); a blocking wait
///   ([`Signal::wait`]) polls the socket in the calling thread. The socket
///   is also there for your own event loop ([`AsFd`]).
/// - [`close`](Signal::close) shuts down this end's sending side only: the
///   peer sees end of file, and this end still receives the peer's signals
///   until the peer closes too. Dropping closes.
///
/// Unlike [`EventFdSignal`](crate::EventFdSignal), whose eventfds are shared
/// with the peer, this holds up against a hostile process, provided this
/// process is the only one holding this end's socket: no call on it can
/// block on something the peer controls.
///
/// ```
/// use vmbus_channel::{PeerEvent, Signal, SocketSignal};
///
/// let (a, b) = SocketSignal::pair()?;
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// assert_eq!(b.wait(seen, None), Some(PeerEvent::Signalled)); // polls b's socket in this thread
/// assert!(b.notifier().generation() > seen);
///
/// // Closing is a half-close: the peer sees it, this end still hears the peer.
/// a.close();
/// assert_eq!(b.wait(b.notifier().generation(), None), Some(PeerEvent::Closed));
/// let seen = a.notifier().generation();
/// b.signal_peer();
/// assert_eq!(a.wait(seen, None), Some(PeerEvent::Signalled));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SocketSignal {
    receiver: FdReceiver,
}

impl SocketSignal {
    /// Two connected ends over a new socket pair (close-on-exec): keep one,
    /// and give the other's socket to the peer process, e.g. with
    /// [`ChannelFds`](crate::ChannelFds). To hand a socket over before
    /// making any end, make the pair with [`UnixStream::pair`] and make this
    /// end with [`new`](Self::new).
    ///
    /// ```
    /// use vmbus_channel::{PeerEvent, Signal, SocketSignal};
    /// let (a, b) = SocketSignal::pair()?;
    /// drop(a);
    /// assert_eq!(b.wait(b.notifier().generation(), None), Some(PeerEvent::Closed));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair() -> io::Result<(Self, Self)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Self::new(a)?, Self::new(b)?))
    }

    /// An end over `socket`, one socket of a connected stream socket pair
    /// whose other socket the peer holds. Starts nothing: the socket is read
    /// by whoever waits.
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
        let socket = socket.into();
        check_stream_socket(socket.as_fd()).map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
        rustix::net::sockopt::set_socket_oobinline(&socket, true)?;
        Ok(Self { receiver: FdReceiver::new(socket, FdKind::Socket) })
    }

    /// Has async waits watch the socket with `reactor` instead of the shared
    /// [`Driver`](crate::Driver).
    pub fn with_reactor(mut self, reactor: impl Reactor) -> Self {
        self.receiver.set_reactor(Arc::new(reactor));
        self
    }
}

/// The socket, for an event loop of one's own: when it is readable, call
/// [`Signal::receive`] (or wake whatever polls the queue).
impl AsFd for SocketSignal {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.receiver.fd()
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
        // A listening socket has no peer, and never becomes readable for
        // a blocking wait to see that.
        Ok(SocketType::STREAM) => match rustix::net::sockopt::socket_acceptconn(fd) {
            Ok(false) => Ok(()),
            Ok(true) => Err("it is a listening socket, not a connected one".into()),
            Err(error) => Err(format!("cannot tell whether it listens: {error}")),
        },
        Ok(SocketType::DGRAM) => Err("it is a datagram socket, not a stream socket".into()),
        Ok(SocketType::SEQPACKET) => Err("it is a seqpacket socket, not a stream socket".into()),
        Ok(other) => Err(format!("it is not a stream socket ({other:?})")),
        Err(error) => Err(format!("cannot get its socket type: {error}")),
    }
}

/// What [`drain`] found on a socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// At least one byte arrived.
    pub bytes: bool,
    /// The peer is gone: end of file, a socket error, or a hang-up with no
    /// data.
    pub closed: bool,
}

/// Reads whatever is queued on `socket` without waiting, in at most
/// [`MAX_READS_PER_TAKE`] reads; `revents` is what a poll reported for it
/// (empty if none did).
///
/// Only `recv` with `MSG_DONTWAIT` touches the socket, so this never blocks,
/// whatever the peer did to its own socket.
pub(crate) fn drain(socket: BorrowedFd<'_>, revents: PollFlags) -> Drained {
    let mut buf = [0; DRAIN_CHUNK];
    let mut drained = Drained::default();
    for _ in 0..MAX_READS_PER_TAKE {
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

impl Signal for SocketSignal {
    fn signal_peer(&self) {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        loop {
            match rustix::net::send(self.receiver.fd(), &[1], flags) {
                Err(Errno::INTR) => continue,
                // EAGAIN: the peer has not read earlier signals, so it wakes
                // anyway. EPIPE, ECONNRESET: the peer is gone, which the
                // notifier reports. Nothing else is worth failing for.
                _ => return,
            }
        }
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

    fn close(&self) {
        let _ = rustix::net::shutdown(self.receiver.fd(), Shutdown::Write);
    }
}

impl Drop for SocketSignal {
    fn drop(&mut self) {
        self.close();
    }
}
