//! The host's disk image, read and written straight from and to guest memory.

use crate::validate::{Direction, Transfer};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{Bytes, GuestMemory};

/// A disk image file of fixed size.
///
/// Data moves between the file and guest memory through vm-memory's
/// volatile copies (`read`/`write` system calls straight into or out of
/// the guest's pages), with no buffer in between. Each host opens the file
/// itself, so the file position it seeks is its own.
#[derive(Debug)]
pub struct Disk {
    file: File,
    size: u64,
}

impl Disk {
    /// Opens the image at `path` for reading and writing; its size is the
    /// disk's.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self { file, size })
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Does a checked transfer. The checks made it lie inside the disk and
    /// guest memory; a file that shrank since, or any other I/O failure, is
    /// an error, never a panic.
    pub fn transfer<M: GuestMemory>(&mut self, memory: &M, transfer: &Transfer) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(transfer.offset))?;
        for segment in &transfer.segments {
            let moved = match transfer.direction {
                Direction::Read => memory.read_exact_volatile_from(segment.address, &mut self.file, segment.len),
                Direction::Write => memory.write_all_volatile_to(segment.address, &mut self.file, segment.len),
            };
            moved.map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Makes every write done so far durable.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
