//! The set-up message: how the guest hands a new host its guest memory and
//! its channels' signal sockets over a Unix socket.
//!
//! One message carries a 64-byte header (below) and, as `SCM_RIGHTS`, the
//! guest-memory memfd followed by one signal socket per channel. Each
//! channel's rings are a GPADL of consecutive guest pages starting at its
//! first page number: `guest_to_host_pages` pages (a control page, then
//! data), then `host_to_guest_pages` pages. (A VMM learns the page list
//! from the guest's GPADL messages; consecutive pages keep this message
//! short.) The host trusts none of it: [`Setup::decode`] checks the
//! header, and the GPADL code checks every page against guest memory.
//!
//! ```text
//! 0   magic "VMBUSBD1"
//! 8   memory_size u64
//! 16  guest_to_host_pages u32, host_to_guest_pages u32
//! 24  channels u32, reserved u32
//! 32  first page number of each of 4 channels' GPADLs, u64 each
//! ```

use crate::error::DeviceError;
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Most channels a device has.
pub const MAX_CHANNELS: usize = 4;
/// Most pages a channel's ring may have (control page included).
pub const MAX_RING_PAGES: u32 = 1025;

const MAGIC: &[u8; 8] = b"VMBUSBD1";
const HEADER_LEN: usize = 64;

/// What a host needs to open the guest's channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// Bytes of guest memory in the memfd, mapped at guest address 0.
    pub memory_size: u64,
    /// Pages of each guest-to-host ring, its control page included.
    pub guest_to_host_pages: u32,
    /// Pages of each host-to-guest ring, its control page included.
    pub host_to_guest_pages: u32,
    /// The first guest page number of each channel's GPADL.
    pub first_pages: Vec<u64>,
}

impl Setup {
    /// The GPADL page list of channel `index` and its split.
    pub fn gpadl(&self, index: usize) -> Option<(Vec<u64>, usize)> {
        let first = *self.first_pages.get(index)?;
        let pages = u64::from(self.guest_to_host_pages) + u64::from(self.host_to_guest_pages);
        let end = first.checked_add(pages)?;
        Some(((first..end).collect(), self.guest_to_host_pages as usize))
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&self.memory_size.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.guest_to_host_pages.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.host_to_guest_pages.to_le_bytes());
        bytes[24..28].copy_from_slice(&(self.first_pages.len() as u32).to_le_bytes());
        for (slot, first) in bytes[32..].chunks_exact_mut(8).zip(&self.first_pages) {
            slot.copy_from_slice(&first.to_le_bytes());
        }
        bytes
    }

    /// Decodes and checks a header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, DeviceError> {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let long = |at: usize| u64::from(word(at)) | u64::from(word(at + 4)) << 32;
        if &bytes[..8] != MAGIC {
            return Err(DeviceError::Setup("wrong magic".into()));
        }
        let channels = word(24) as usize;
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(DeviceError::Setup(format!("{channels} channels, not 1 to {MAX_CHANNELS}")));
        }
        let (guest_to_host_pages, host_to_guest_pages) = (word(16), word(20));
        for pages in [guest_to_host_pages, host_to_guest_pages] {
            if !(2..=MAX_RING_PAGES).contains(&pages) {
                return Err(DeviceError::Setup(format!("a ring of {pages} pages, not 2 to {MAX_RING_PAGES}")));
            }
        }
        let first_pages = (0..channels).map(|index| long(32 + 8 * index)).collect();
        Ok(Self { memory_size: long(8), guest_to_host_pages, host_to_guest_pages, first_pages })
    }

    /// Sends the header with the memfd and the channels' signal sockets.
    pub fn send(&self, socket: &UnixStream, memfd: BorrowedFd<'_>, signals: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut fds = vec![memfd];
        fds.extend_from_slice(signals);
        let header = self.encode();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1 + MAX_CHANNELS))];
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
        // The fds went with the first bytes; the rest follows plainly.
        let mut socket = socket;
        socket.write_all(&header[sent..])
    }

    /// Receives a set-up message (bounded by the socket's read timeout):
    /// the header, the memfd and one signal socket per channel.
    pub fn receive(socket: &UnixStream) -> Result<(Self, OwnedFd, Vec<OwnedFd>), DeviceError> {
        let mut header = [0; HEADER_LEN];
        // Room for one fd more than allowed, so too many show up as such.
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2 + MAX_CHANNELS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let message = loop {
            match recvmsg(socket, &mut [IoSliceMut::new(&mut header)], &mut control, RecvFlags::CMSG_CLOEXEC) {
                Err(Errno::INTR) => continue,
                result => break result.map_err(io::Error::from)?,
            }
        };
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        let mut socket = socket;
        socket.read_exact(&mut header[message.bytes..])?;
        let setup = Self::decode(&header)?;
        if fds.len() != 1 + setup.first_pages.len() {
            return Err(DeviceError::Setup(format!(
                "{} channels need {} fds, {} arrived",
                setup.first_pages.len(),
                1 + setup.first_pages.len(),
                fds.len()
            )));
        }
        let signals = fds.split_off(1);
        let memfd = fds.pop().ok_or_else(|| DeviceError::Setup("no memfd".into()))?;
        Ok((setup, memfd, signals))
    }
}
