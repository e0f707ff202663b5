//! Guest memory: one memfd that the guest maps and hands to each host, and
//! how the guest lays out its rings and data buffers in it.

use crate::error::DeviceError;
use rustix::fs::{fcntl_add_seals, fcntl_get_seals, memfd_create, MemfdFlags, SealFlags};
use std::fs::File;
use std::os::fd::OwnedFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};
use vmbus_ring::wire::PAGE_SIZE;

/// Guest memory as both processes map it.
pub type Memory = GuestMemoryMmap<()>;

/// Bytes a data buffer slot takes: the largest transfer, room to start it
/// off a page boundary, and gaps between its ranges.
pub const SLOT_SIZE: u64 = (1 << 20) + 2 * PAGE_SIZE as u64;

/// Where the guest puts things in its memory: first each channel's rings
/// (a GPADL of consecutive pages), then the data buffer slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Channels.
    pub channels: usize,
    /// Pages of each guest-to-host ring, the control page included.
    pub guest_to_host_pages: u32,
    /// Pages of each host-to-guest ring, the control page included.
    pub host_to_guest_pages: u32,
    /// Data buffer slots, one per request in flight.
    pub slots: usize,
}

impl Layout {
    fn channel_pages(&self) -> u64 {
        u64::from(self.guest_to_host_pages) + u64::from(self.host_to_guest_pages)
    }

    /// The first page of channel `index`'s GPADL.
    pub fn first_page(&self, index: usize) -> u64 {
        index as u64 * self.channel_pages()
    }

    fn slots_start(&self) -> u64 {
        (self.channels as u64 * self.channel_pages() * PAGE_SIZE as u64).next_multiple_of(1 << 20)
    }

    /// Where data buffer slot `index` starts.
    pub fn slot(&self, index: usize) -> GuestAddress {
        GuestAddress(self.slots_start() + index as u64 * SLOT_SIZE)
    }

    /// Bytes of guest memory the layout needs.
    pub fn memory_size(&self) -> u64 {
        self.slots_start() + self.slots as u64 * SLOT_SIZE
    }
}

/// Makes guest memory of `size` bytes in a new memfd, sealed against
/// shrinking and growing so that no process can truncate it under
/// another's mapping (which would be `SIGBUS` on the next access).
pub fn create(size: u64) -> Result<(Memory, File), DeviceError> {
    let fd = memfd_create("vmbus-blockdev-guest-memory", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(std::io::Error::from)?;
    let file = File::from(fd);
    file.set_len(size)?;
    fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL).map_err(std::io::Error::from)?;
    let memory = map(&file, size)?;
    Ok((memory, file))
}

/// Maps guest memory of `size` bytes from the memfd `fd` another process
/// handed over, after checking that it is sealed against shrinking and
/// holds `size` bytes.
pub fn open(fd: OwnedFd, size: u64) -> Result<Memory, DeviceError> {
    let file = File::from(fd);
    let seals = fcntl_get_seals(&file).map_err(|error| DeviceError::Memory(format!("not a sealed memfd: {error}")))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(DeviceError::Memory("the memfd is not sealed against shrinking".into()));
    }
    let len = file.metadata()?.len();
    if len < size {
        return Err(DeviceError::Memory(format!("the memfd holds {len} bytes, not {size}")));
    }
    map(&file, size)
}

fn map(file: &File, size: u64) -> Result<Memory, DeviceError> {
    let len = usize::try_from(size).map_err(|_| DeviceError::Memory(format!("{size} bytes do not fit")))?;
    let offset = FileOffset::new(file.try_clone()?, 0);
    GuestMemoryMmap::from_ranges_with_files([(GuestAddress(0), len, Some(offset))])
        .map_err(|error| DeviceError::Memory(error.to_string()))
}
