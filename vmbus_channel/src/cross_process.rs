//! Channels whose two ends live in different processes (Linux): memfd rings,
//! eventfd signals, and passing the fds over a Unix socket.
//!
//! [`ChannelFds::pair`] makes everything two ends need; one end's fds go to
//! the other process with [`ChannelFds::send`] and [`ChannelFds::receive`]
//! (`SCM_RIGHTS`), and each process opens its end with
//! [`MemfdChannel::from_fds`].

use crate::channel::RawChannel;
use crate::signal::{EventFdSignal, EventFdSignalFds};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use vmbus_ring::{MappedRingMem, MappingLayout};

/// The bytes that accompany the fds, so a receiver can tell a channel's fds
/// from anything else arriving on the socket. The last byte is the version.
const TAG: [u8; 8] = *b"vmbusch1";

/// Fds in one message: two rings, then the signal's three.
const FD_COUNT: usize = 5;

/// Room for a few more fds than expected, so a sender that sends too many is
/// reported as such rather than as truncated control data.
const RECV_SPACE: usize = rustix::cmsg_space!(ScmRights(FD_COUNT + 8));
const SEND_SPACE: usize = rustix::cmsg_space!(ScmRights(FD_COUNT));

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
/// use vmbus_channel::{ChannelFds, MemfdChannel};
/// use vmbus_ring::MappingLayout;
///
/// let (host, guest) = ChannelFds::pair(4 * 4096)?;
/// // Normally `guest` goes to another process with `send` and `receive`.
/// let host = MemfdChannel::from_fds(host, MappingLayout::Double)?;
/// let guest = MemfdChannel::from_fds(guest, MappingLayout::Single)?;
/// assert_eq!(host.outgoing.data_len(), 4 * 4096);
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
    pub signal: EventFdSignalFds,
}

impl ChannelFds {
    /// The fds of two connected ends: two new zeroed memfd rings, each with a
    /// data area of `data_len` bytes (a non-zero multiple of 4096), sealed at
    /// that size and crossed so that one end's outgoing ring is the other's
    /// incoming ring, and an eventfd signal pair.
    ///
    /// ```
    /// let (a, b) = vmbus_channel::ChannelFds::pair(4096)?;
    /// # drop((a, b));
    /// assert!(vmbus_channel::ChannelFds::pair(100).is_err()); // not a multiple of 4096
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair(data_len: usize) -> io::Result<(Self, Self)> {
        let (_, a_to_b) = MappedRingMem::create_memfd(data_len, MappingLayout::Single)?;
        let (_, b_to_a) = MappedRingMem::create_memfd(data_len, MappingLayout::Single)?;
        let (signal_a, signal_b) = EventFdSignalFds::pair()?;
        let a = Self { incoming_ring: b_to_a.try_clone()?, outgoing_ring: a_to_b.try_clone()?, signal: signal_a };
        let b = Self { incoming_ring: a_to_b, outgoing_ring: b_to_a, signal: signal_b };
        Ok((a, b))
    }

    /// Sends these fds over `socket` in one message (`SCM_RIGHTS`), for
    /// [`receive`](Self::receive) at the other end. This process's copies are
    /// closed once sent, so the receiver holds the only ones.
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
        let fds = [
            self.incoming_ring.as_fd(),
            self.outgoing_ring.as_fd(),
            self.signal.to_peer.as_fd(),
            self.signal.from_peer.as_fd(),
            self.signal.liveness.as_fd(),
        ];
        let mut space = [MaybeUninit::uninit(); SEND_SPACE];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the fds in the control message"));
        }
        let sent = loop {
            match sendmsg(socket, &[IoSlice::new(&TAG)], &mut control, SendFlags::NOSIGNAL) {
                Err(Errno::INTR) => continue,
                result => break result?,
            }
        };
        // The fds went with the first byte; the rest of the tag follows plainly.
        let mut socket = socket;
        socket.write_all(&TAG[sent..])
    }

    /// Receives fds sent by [`send`](Self::send) over `socket`, waiting for
    /// them (bounded by the socket's read timeout, if it has one).
    ///
    /// Fails with [`io::ErrorKind::UnexpectedEof`] if the socket closes
    /// first, and with [`io::ErrorKind::InvalidData`] if the message does not
    /// carry exactly the expected fds (any that did arrive are closed).
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
        let mut tag = [0; TAG.len()];
        let mut space = [MaybeUninit::uninit(); RECV_SPACE];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let message = loop {
            match recvmsg(socket, &mut [IoSliceMut::new(&mut tag)], &mut control, RecvFlags::CMSG_CLOEXEC) {
                Err(Errno::INTR) => continue,
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
        if message.flags.contains(ReturnFlags::CTRUNC) {
            return Err(invalid_data(format!(
                "expected {FD_COUNT} file descriptors, more than {} arrived (control data truncated)",
                fds.len()
            )));
        }
        let fds: [OwnedFd; FD_COUNT] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
            invalid_data(format!("expected {FD_COUNT} file descriptors, {} arrived", fds.len()))
        })?;
        let mut socket = socket;
        socket.read_exact(&mut tag[message.bytes..])?;
        if tag != TAG {
            return Err(invalid_data(format!("the fds came with {tag:?}, not a channel's tag {TAG:?}")));
        }
        let [incoming_ring, outgoing_ring, to_peer, from_peer, liveness] = fds;
        Ok(Self { incoming_ring, outgoing_ring, signal: EventFdSignalFds { to_peer, from_peer, liveness } })
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A channel end over memfd rings and an eventfd signal: what each process
/// of a cross-process channel holds.
pub type MemfdChannel = RawChannel<MappedRingMem, EventFdSignal>;

impl MemfdChannel {
    /// Opens a channel end from `fds`: maps both rings with `layout` and
    /// starts the eventfd signal (its waiter thread).
    ///
    /// The ring sizes come from the files. A ring file that is not sealed
    /// against shrinking (as those of [`ChannelFds::pair`] are), or that is
    /// not a valid ring (wrong size, corrupt indices), fails with
    /// [`io::ErrorKind::InvalidInput`] or [`io::ErrorKind::InvalidData`].
    ///
    /// ```
    /// use vmbus_channel::{block_on, ChannelFds, MemfdChannel, Queue};
    /// use vmbus_ring::{MappingLayout, OutgoingPacket};
    ///
    /// let (host, guest) = ChannelFds::pair(4096)?;
    /// let mut host = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Double)?);
    /// let mut guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Double)?);
    /// block_on(host.writer().write(&OutgoingPacket::in_band(3), &[b"across"]))?;
    /// let packet = block_on(guest.reader().read())?;
    /// assert_eq!(&packet.payload[..6], b"across");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fds(fds: ChannelFds, layout: MappingLayout) -> io::Result<Self> {
        let incoming = MappedRingMem::open_fd(&fds.incoming_ring, layout)?;
        let outgoing = MappedRingMem::open_fd(&fds.outgoing_ring, layout)?;
        let signal = EventFdSignal::new(fds.signal)?;
        RawChannel::new(incoming, outgoing, signal).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }
}
