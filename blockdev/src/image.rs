//! The disk image the host serves: a file written through once, so that
//! its pages are in the page cache and the report measures the transport,
//! not a disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Creates (or overwrites) the image at `path`: `size` bytes of zeros,
/// written rather than left as a hole so every page is cached.
pub fn create(path: &Path, size: u64) -> io::Result<File> {
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    let chunk = vec![0; 1 << 20];
    let mut left = size;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    file.sync_all()?;
    Ok(file)
}
