//! Channels whose two ends live in different processes (Linux): memfd rings,
//! a signal between the processes, and passing the fds over a Unix socket.
//!
//! [`ChannelFds::pair`] makes everything two ends need; one end's fds go to
//! the other process with [`ChannelFds::send`] and [`ChannelFds::receive`]
//! (`SCM_RIGHTS`), and each process opens its end with
//! [`MemfdChannel::from_fds`].
//!
//! The signal is a [`SocketSignal`] unless asked otherwise: each process
//! holds its own socket, so a hostile peer cannot make this end block.
//! [`ChannelFds::pair_with_eventfds`] makes an [`EventFdSignal`] instead, for
//! a peer that is trusted (the two processes share the eventfds).
//!
//! Neither starts a thread: async waits go to a [`Reactor`] (the shared
//! [`Driver`](crate::Driver) unless [`MemfdChannel::from_fds_with_reactor`]
//! names another), blocking waits poll in the calling thread.

use crate::channel::RawChannel;
use crate::reactor::Reactor;
use crate::ring_files::{self, ReceiveLimits};
use crate::signal::{check_eventfd, check_stream_socket, EventFdSignal, Notifier, PeerEvent, Signal, SocketSignal};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use vmbus_ring::{MappedRingMem, MappingLayout};

/// The bytes that accompany the fds, so a receiver can tell a channel's fds
/// from anything else arriving on the socket. The last byte is the version.
const TAG: [u8; 8] = *b"vmbusch3";

/// The bytes of a message: the tag, then the signal's kind.
const HEADER_LEN: usize = TAG.len() + 1;

/// Most fds in one message (an eventfd signal's).
const MAX_FD_COUNT: usize = 4;

/// Room for a few more fds than expected, so a sender that sends too many is
/// reported as such rather than as truncated control data.
const RECV_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FD_COUNT + 8));
const SEND_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FD_COUNT));

/// A signal's kind as a message carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Socket,
    EventFd,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Socket, Kind::EventFd];

    fn byte(self) -> u8 {
        match self {
            Kind::Socket => b's',
            Kind::EventFd => b'e',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.byte() == byte)
    }

    /// Fds in a message: two rings, then the signal's.
    fn fd_count(self) -> usize {
        match self {
            Kind::Socket => 3,
            Kind::EventFd => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Socket => "socket signal",
            Kind::EventFd => "eventfd signal",
        }
    }
}

/// The fds of one end of a cross-process channel's signal.
#[derive(Debug)]
pub enum SignalFds {
    /// One socket of a stream socket pair, for a [`SocketSignal`]: safe with
    /// a peer that must not be trusted, and what [`ChannelFds::pair`] makes.
    Socket(OwnedFd),
    /// Two eventfds for an [`EventFdSignal`]: only for a trusted peer,
    /// which shares them (see [`ChannelFds::pair_with_eventfds`]). Eventfds
    /// carry no close: this end learns that the peer is gone only from
    /// [`EventFdSignal::peer_closed`].
    EventFd {
        /// The eventfd the peer writes to signal this end.
        from_peer: OwnedFd,
        /// The eventfd this end writes to signal the peer.
        to_peer: OwnedFd,
    },
}

impl SignalFds {
    fn kind(&self) -> Kind {
        match self {
            SignalFds::Socket(_) => Kind::Socket,
            SignalFds::EventFd { .. } => Kind::EventFd,
        }
    }
}

/// Everything one end of a cross-process channel needs: the two ring files
/// and the signal's fds.
///
/// Every fd is close-on-exec; hand them to another process with
/// [`send`](Self::send), not by inheritance.
///
/// The ring files are memfds sealed against shrinking and growing: the peer
/// can write any byte of a ring, which the ring code tolerates, but it cannot
/// truncate the file under this process's mapping, which would kill this
/// process with `SIGBUS` on its next access.
///
/// ```
/// use vmbus_channel::{ChannelFds, MemfdChannel, ProcessSignal, SignalFds};
/// use vmbus_ring::MappingLayout;
///
/// let (host, guest) = ChannelFds::pair(4 * 4096)?;
/// assert!(matches!(host.signal, SignalFds::Socket(_)));
/// // Normally `guest` goes to another process with `send` and `receive`.
/// let host = MemfdChannel::from_fds(host, MappingLayout::Double)?;
/// let guest = MemfdChannel::from_fds(guest, MappingLayout::Single)?;
/// assert_eq!(host.outgoing().data_len(), 4 * 4096);
/// assert!(matches!(**host.signal(), ProcessSignal::Socket(_)));
/// # drop(guest);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ChannelFds {
    /// The ring file this end reads (the peer's outgoing ring).
    pub incoming_ring: OwnedFd,
    /// The ring file this end writes (the peer's incoming ring).
    pub outgoing_ring: OwnedFd,
    /// This end's signal fds.
    pub signal: SignalFds,
}

impl ChannelFds {
    /// The fds of two connected ends: two new zeroed memfd rings, each with a
    /// data area of `data_len` bytes (a non-zero multiple of 4096), sealed at
    /// that size and crossed so that one end's outgoing ring is the other's
    /// incoming ring, and a socket signal pair ([`SignalFds::Socket`]), which
    /// holds up against a hostile peer process.
    ///
    /// ```
    /// let (a, b) = vmbus_channel::ChannelFds::pair(4096)?;
    /// # drop((a, b));
    /// assert!(vmbus_channel::ChannelFds::pair(100).is_err()); // not a multiple of 4096
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair(data_len: usize) -> io::Result<(Self, Self)> {
        let (a, b) = UnixStream::pair()?;
        Self::pair_with_signals(data_len, SignalFds::Socket(a.into()), SignalFds::Socket(b.into()))
    }

    /// Like [`pair`](Self::pair), but signalling through eventfds
    /// ([`SignalFds::EventFd`]), which a KVM-based VMM can also hand to
    /// ioeventfd/irqfd.
    ///
    /// Only for a **trusted** peer: both processes share the eventfds, so
    /// the peer can make this end block (see [`EventFdSignal`]).
    ///
    /// ```
    /// use vmbus_channel::{ChannelFds, MemfdChannel, ProcessSignal};
    /// use vmbus_ring::MappingLayout;
    ///
    /// let (host, guest) = ChannelFds::pair_with_eventfds(4096)?;
    /// let host = MemfdChannel::from_fds(host, MappingLayout::Single)?;
    /// assert!(matches!(**host.signal(), ProcessSignal::EventFd(_)));
    /// # drop(guest);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair_with_eventfds(data_len: usize) -> io::Result<(Self, Self)> {
        let (a_to_b, b_to_a) = EventFdSignal::fd_pair()?;
        let a = SignalFds::EventFd { from_peer: b_to_a.try_clone()?, to_peer: a_to_b.try_clone()? };
        let b = SignalFds::EventFd { from_peer: a_to_b, to_peer: b_to_a };
        Self::pair_with_signals(data_len, a, b)
    }

    fn pair_with_signals(data_len: usize, signal_a: SignalFds, signal_b: SignalFds) -> io::Result<(Self, Self)> {
        let (_, a_to_b) = MappedRingMem::create_memfd(data_len, MappingLayout::Single)?;
        let (_, b_to_a) = MappedRingMem::create_memfd(data_len, MappingLayout::Single)?;
        let a = Self { incoming_ring: b_to_a.try_clone()?, outgoing_ring: a_to_b.try_clone()?, signal: signal_a };
        let b = Self { incoming_ring: a_to_b, outgoing_ring: b_to_a, signal: signal_b };
        Ok((a, b))
    }

    /// Sends these fds over `socket` in one message (`SCM_RIGHTS`), with a
    /// tag and the signal's kind, for [`receive`](Self::receive) at the other
    /// end. This process's copies are closed once sent, so the receiver holds
    /// the only ones.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use vmbus_channel::ChannelFds;
    ///
    /// let (here, there) = UnixStream::pair()?;
    /// let (_host, guest) = ChannelFds::pair(4096)?;
    /// guest.send(&here)?;
    /// let guest = ChannelFds::receive(&there)?;
    /// # drop(guest);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(self, socket: &UnixStream) -> io::Result<()> {
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.incoming_ring.as_fd(), self.outgoing_ring.as_fd()];
        match &self.signal {
            SignalFds::Socket(socket) => fds.push(socket.as_fd()),
            SignalFds::EventFd { from_peer, to_peer } => fds.extend([from_peer.as_fd(), to_peer.as_fd()]),
        }
        let mut header = [0; HEADER_LEN];
        header[..TAG.len()].copy_from_slice(&TAG);
        header[TAG.len()] = self.signal.kind().byte();

        let mut space = [MaybeUninit::uninit(); SEND_SPACE];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the fds in the control message"));
        }
        let sent = loop {
            match sendmsg(socket, &[IoSlice::new(&header)], &mut control, SendFlags::NOSIGNAL) {
                Err(Errno::INTR) => continue,
                result => break result?,
            }
        };
        // The fds went with the first byte; the rest of the header follows plainly.
        let mut socket = socket;
        socket.write_all(&header[sent..])
    }

    /// Receives fds sent by [`send`](Self::send) over `socket`, waiting for
    /// them (bounded by the socket's read timeout, if it has one).
    ///
    /// Fails with [`io::ErrorKind::UnexpectedEof`] if the socket closes
    /// first, and with [`io::ErrorKind::InvalidData`] (closing any fds that
    /// did arrive) if the message is not a channel's: a wrong tag, an unknown
    /// signal kind, other than exactly the fds that kind needs (3 for a
    /// socket signal, 4 for an eventfd signal), or signal fds of the wrong
    /// type (checked where cheap: a socket that is not a stream socket, an
    /// eventfd that `/proc` shows is something else). The ring files are
    /// checked when [`MemfdChannel::from_fds`] maps them.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use vmbus_channel::ChannelFds;
    ///
    /// let (mut here, there) = UnixStream::pair()?;
    /// here.write_all(b"no fds")?;
    /// let error = ChannelFds::receive(&there).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    /// assert!(error.to_string().contains("0 arrived"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn receive(socket: &UnixStream) -> io::Result<Self> {
        Self::receive_with(socket, &ReceiveLimits::default())
    }

    /// Like [`receive`](Self::receive), within `limits`: the whole receive
    /// ends by the timeout, if any ([`io::ErrorKind::TimedOut`]; the
    /// socket's own read timeout is restored after), and ring files above
    /// the size cap, or one file given as both rings, are refused with
    /// [`io::ErrorKind::InvalidData`] before anything is mapped.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    /// use vmbus_channel::{ChannelFds, ReceiveLimits};
    ///
    /// let (here, there) = UnixStream::pair()?;
    /// let limits = ReceiveLimits { max_data_len: 8192, timeout: Some(Duration::from_millis(20)) };
    /// // Nothing arrives in time.
    /// let error = ChannelFds::receive_with(&there, &limits).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    /// // Rings larger than the cap are refused.
    /// ChannelFds::pair(4 * 4096)?.1.send(&here)?;
    /// let error = ChannelFds::receive_with(&there, &limits).unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn receive_with(socket: &UnixStream, limits: &ReceiveLimits) -> io::Result<Self> {
        let deadline = limits.timeout.map(|timeout| Instant::now() + timeout);
        let _restore = match deadline {
            Some(_) => Some(RestoreReadTimeout { socket, previous: socket.read_timeout()? }),
            None => None,
        };
        let fds = Self::receive_until(socket, deadline)?;
        ring_files::check_size(fds.incoming_ring.as_fd(), limits.max_data_len, "incoming")?;
        ring_files::check_size(fds.outgoing_ring.as_fd(), limits.max_data_len, "outgoing")?;
        ring_files::check_distinct(fds.incoming_ring.as_fd(), fds.outgoing_ring.as_fd())
            .map_err(|error| invalid_data(error.to_string()))?;
        Ok(fds)
    }

    /// The receive, each wait bounded by what is left before `deadline`.
    fn receive_until(socket: &UnixStream, deadline: Option<Instant>) -> io::Result<Self> {
        let mut header = [0; HEADER_LEN];
        let mut space = [MaybeUninit::uninit(); RECV_SPACE];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let message = loop {
            time_left(socket, deadline)?;
            match recvmsg(socket, &mut [IoSliceMut::new(&mut header)], &mut control, RecvFlags::CMSG_CLOEXEC) {
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) if deadline.is_some() => return Err(timed_out()),
                result => break result?,
            }
        };
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if message.bytes == 0 && fds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the socket closed before the channel's fds arrived",
            ));
        }
        let expected = "expected 3 (socket signal) or 4 (eventfd signal) file descriptors";
        if message.flags.contains(ReturnFlags::CTRUNC) {
            return Err(invalid_data(format!("{expected}, more than {} arrived (control data truncated)", fds.len())));
        }
        if !Kind::ALL.iter().any(|kind| kind.fd_count() == fds.len()) {
            return Err(invalid_data(format!("{expected}, {} arrived", fds.len())));
        }
        // Reject a wrong tag before waiting for more bytes of it.
        let received = message.bytes.min(TAG.len());
        if header[..received] != TAG[..received] {
            return Err(wrong_tag(&header[..received]));
        }
        read_exact_until(socket, &mut header[message.bytes..], deadline)?;
        if header[..TAG.len()] != TAG {
            return Err(wrong_tag(&header[..TAG.len()]));
        }
        let kind_byte = header[TAG.len()];
        let kind = Kind::from_byte(kind_byte)
            .ok_or_else(|| invalid_data(format!("the fds came with an unknown signal kind {kind_byte:#04x}")))?;
        if fds.len() != kind.fd_count() {
            return Err(invalid_data(format!(
                "a channel with a {} carries {} file descriptors, {} arrived",
                kind.name(),
                kind.fd_count(),
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        let mut next = || fds.next().ok_or_else(|| invalid_data("too few file descriptors".into()));
        let (incoming_ring, outgoing_ring) = (next()?, next()?);
        let signal = match kind {
            Kind::Socket => {
                let socket = next()?;
                check_stream_socket(socket.as_fd())
                    .map_err(|error| invalid_data(format!("the signal socket is unusable: {error}")))?;
                SignalFds::Socket(socket)
            }
            Kind::EventFd => {
                let (from_peer, to_peer) = (next()?, next()?);
                for (name, fd) in [("from_peer", &from_peer), ("to_peer", &to_peer)] {
                    check_eventfd(fd.as_fd())
                        .map_err(|error| invalid_data(format!("the eventfd signal's {name}: {error}")))?;
                }
                SignalFds::EventFd { from_peer, to_peer }
            }
        };
        Ok(Self { incoming_ring, outgoing_ring, signal })
    }
}

/// Puts back a socket's read timeout when a bounded receive ends.
struct RestoreReadTimeout<'a> {
    socket: &'a UnixStream,
    previous: Option<Duration>,
}

impl Drop for RestoreReadTimeout<'_> {
    fn drop(&mut self) {
        let _ = self.socket.set_read_timeout(self.previous);
    }
}

/// Bounds the socket's next read by what is left before `deadline`
/// (nothing to do without one); [`io::ErrorKind::TimedOut`] if it passed.
fn time_left(socket: &UnixStream, deadline: Option<Instant>) -> io::Result<()> {
    let Some(deadline) = deadline else { return Ok(()) };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    socket.set_read_timeout(Some(left))
}

/// `read_exact`, each read bounded by what is left before `deadline`.
fn read_exact_until(socket: &UnixStream, mut buf: &mut [u8], deadline: Option<Instant>) -> io::Result<()> {
    let mut socket = socket;
    while !buf.is_empty() {
        time_left(socket, deadline)?;
        match socket.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if deadline.is_some() && error.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the channel's fds did not arrive in time")
}

fn wrong_tag(tag: &[u8]) -> io::Error {
    invalid_data(format!(
        "the fds came with {:?}, not a channel's tag {:?}",
        String::from_utf8_lossy(tag),
        String::from_utf8_lossy(&TAG)
    ))
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The signal of a cross-process channel end: a [`SocketSignal`] (the
/// default, for a peer that must not be trusted) or an [`EventFdSignal`]
/// (for a trusted peer), whichever its [`SignalFds`] were for.
///
/// ```
/// use vmbus_channel::{ProcessSignal, Signal, SignalFds, SocketSignal};
/// use std::os::unix::net::UnixStream;
///
/// let (a, b) = UnixStream::pair()?;
/// let a = ProcessSignal::new(SignalFds::Socket(a.into()))?;
/// let b = ProcessSignal::from(SocketSignal::new(b)?);
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// b.wait(seen, None); // polls b's socket in this thread
/// assert!(b.notifier().generation() > seen);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum ProcessSignal {
    /// Over a socket pair.
    Socket(SocketSignal),
    /// Over eventfds.
    EventFd(EventFdSignal),
}

impl ProcessSignal {
    /// The signal `fds` are for (see [`SocketSignal::new`] and
    /// [`EventFdSignal::new`]), watched by the shared
    /// [`Driver`](crate::Driver) when a task waits on it.
    pub fn new(fds: SignalFds) -> io::Result<Self> {
        Ok(match fds {
            SignalFds::Socket(socket) => ProcessSignal::Socket(SocketSignal::new(socket)?),
            SignalFds::EventFd { from_peer, to_peer } => {
                ProcessSignal::EventFd(EventFdSignal::new(from_peer, to_peer)?)
            }
        })
    }

    /// Like [`new`](Self::new), but watched by `reactor`.
    pub fn with_reactor(fds: SignalFds, reactor: impl Reactor) -> io::Result<Self> {
        Ok(match Self::new(fds)? {
            ProcessSignal::Socket(signal) => ProcessSignal::Socket(signal.with_reactor(reactor)),
            ProcessSignal::EventFd(signal) => ProcessSignal::EventFd(signal.with_reactor(reactor)),
        })
    }

    fn as_signal(&self) -> &dyn Signal {
        match self {
            ProcessSignal::Socket(signal) => signal,
            ProcessSignal::EventFd(signal) => signal,
        }
    }
}

impl AsFd for ProcessSignal {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            ProcessSignal::Socket(signal) => signal.as_fd(),
            ProcessSignal::EventFd(signal) => signal.as_fd(),
        }
    }
}

impl From<SocketSignal> for ProcessSignal {
    fn from(signal: SocketSignal) -> Self {
        ProcessSignal::Socket(signal)
    }
}

impl From<EventFdSignal> for ProcessSignal {
    fn from(signal: EventFdSignal) -> Self {
        ProcessSignal::EventFd(signal)
    }
}

impl Signal for ProcessSignal {
    fn signal_peer(&self) {
        self.as_signal().signal_peer();
    }

    fn notifier(&self) -> &Notifier {
        self.as_signal().notifier()
    }

    fn poll_signal(&self, cx: &mut Context<'_>, seen: u64) -> Poll<io::Result<PeerEvent>> {
        self.as_signal().poll_signal(cx, seen)
    }

    fn wait(&self, seen: u64, deadline: Option<Instant>) -> Option<PeerEvent> {
        self.as_signal().wait(seen, deadline)
    }

    fn receive(&self) {
        self.as_signal().receive();
    }

    fn close(&self) {
        self.as_signal().close();
    }
}

/// A channel end over memfd rings and a [`ProcessSignal`]: what each process
/// of a cross-process channel holds.
pub type MemfdChannel = RawChannel<MappedRingMem, ProcessSignal>;

impl MemfdChannel {
    /// Opens a channel end from `fds`: maps both rings with `layout` and
    /// makes the signal the fds are for (a [`SocketSignal`] or an
    /// [`EventFdSignal`]), watched by the shared [`Driver`](crate::Driver)
    /// when a task waits on it.
    ///
    /// The ring sizes come from the files (cap them with
    /// [`ChannelFds::receive_with`]). The same file given as both rings is
    /// refused with [`io::ErrorKind::InvalidInput`]. A ring file that is not sealed
    /// against shrinking (as those of [`ChannelFds::pair`] are), or that is
    /// not a valid ring (wrong size, corrupt indices), fails with
    /// [`io::ErrorKind::InvalidInput`] or [`io::ErrorKind::InvalidData`]; so
    /// do signal fds of the wrong type.
    ///
    /// ```
    /// use vmbus_channel::{block_on, ChannelFds, MemfdChannel, Queue};
    /// use vmbus_ring::{MappingLayout, OutgoingPacket};
    ///
    /// let (host, guest) = ChannelFds::pair(4096)?;
    /// let mut host = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Double)?);
    /// let mut guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Double)?);
    /// block_on(host.writer_mut().write(&OutgoingPacket::in_band(3), &[b"across"]))?;
    /// let packet = block_on(guest.reader_mut().read())?;
    /// assert_eq!(&packet.payload[..6], b"across");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fds(fds: ChannelFds, layout: MappingLayout) -> io::Result<Self> {
        Self::open(fds, layout, ProcessSignal::new)
    }

    /// Like [`from_fds`](Self::from_fds), but with the signal watched by
    /// `reactor` (a [`Driver`](crate::Driver) of your own, or `TokioReactor`
    /// with feature `tokio`).
    pub fn from_fds_with_reactor(fds: ChannelFds, layout: MappingLayout, reactor: impl Reactor) -> io::Result<Self> {
        Self::open(fds, layout, |signal| ProcessSignal::with_reactor(signal, reactor))
    }

    fn open(
        fds: ChannelFds,
        layout: MappingLayout,
        make_signal: impl FnOnce(SignalFds) -> io::Result<ProcessSignal>,
    ) -> io::Result<Self> {
        ring_files::check_distinct(fds.incoming_ring.as_fd(), fds.outgoing_ring.as_fd())?;
        let incoming = MappedRingMem::open_fd(&fds.incoming_ring, layout)?;
        let outgoing = MappedRingMem::open_fd(&fds.outgoing_ring, layout)?;
        let signal = make_signal(fds.signal)?;
        RawChannel::new(incoming, outgoing, signal).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }
}
