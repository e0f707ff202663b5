//! Ring memory: where a ring's control page and data area live.
//!
//! [`RingMem`] is the one trait the endpoints use. Its implementations:
//! [`FlatRingMem`] (one heap allocation), [`PagedRingMem`] (separately
//! allocated pages, as guest memory looks to a host) and [`MappedRingMem`]
//! (a raw mapping, optionally with the data area mapped twice).

mod flat;
mod mapped;
mod paged;
mod shared;

pub use flat::FlatRingMem;
pub use mapped::{MappedRingMem, MappingLayout};
pub use paged::{HeapRingPages, PagedRingMem, RingPages};
pub use shared::{SharedRegion, REGION_ALIGNMENT};

use shared::ControlRegion;

#[cfg(all(feature = "std", target_os = "linux"))]
use shared::map_ring_fd;

use crate::wire::{control, MAX_DATA_LEN, PAGE_SIZE};
use crate::OpenError;
use core::sync::atomic::{fence, Ordering};

/// A control word of the ring's control page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlWord {
    /// Where the writer puts the next packet (written by the writer).
    WriteIndex,
    /// Where the reader reads the next packet (written by the reader).
    ReadIndex,
    /// Non-zero while the reader does not want signals (written by the reader).
    InterruptMask,
    /// Free bytes the blocked writer waits for (written by the writer).
    PendingSendSize,
    /// Features the writer supports (written by the writer).
    FeatureBits,
}

impl ControlWord {
    /// Byte offset of the word in the control page.
    pub const fn offset(self) -> usize {
        match self {
            ControlWord::WriteIndex => control::WRITE_INDEX,
            ControlWord::ReadIndex => control::READ_INDEX,
            ControlWord::InterruptMask => control::INTERRUPT_MASK,
            ControlWord::PendingSendSize => control::PENDING_SEND_SIZE,
            ControlWord::FeatureBits => control::FEATURE_BITS,
        }
    }
}

/// Atomic access to a ring's control words: all the signal decisions need.
///
/// Code that holds only a control page (an interrupt path, a debugger)
/// implements this and uses the [`signal`](crate::signal) helpers.
pub trait ControlPage {
    /// Loads a control word.
    fn load(&self, word: ControlWord, order: Ordering) -> u32;

    /// Stores a control word.
    fn store(&self, word: ControlWord, value: u32, order: Ordering);

    /// A sequentially consistent fence, ordering control-word accesses as
    /// the signalling rules require. Model checkers substitute their own.
    fn full_fence(&self) {
        fence(Ordering::SeqCst)
    }
}

/// Memory holding one ring: a 4096-byte control page and a data area.
///
/// The peer may change any byte at any time, so the trait offers only atomic
/// access to control words (through [`ControlPage`]) and copies into or out
/// of private buffers.
/// Data-area copies take an offset below [`data_len`](Self::data_len) and a
/// length of at most `data_len`, and wrap around the end of the data area at
/// most once.
///
/// Implementations panic when those bounds are broken; the endpoints of this
/// crate validate every offset and length before calling, so no ring content
/// can cause that.
pub trait RingMem: ControlPage {
    /// Size of the data area in bytes.
    fn data_len(&self) -> usize;

    /// Copies control-page bytes starting at `offset` into `buf`, for dumps
    /// and diagnostics: not one snapshot of the page. The memories of this
    /// crate load the page in aligned 4-byte atomic words, the size its
    /// control words are stored with.
    fn read_control(&self, offset: usize, buf: &mut [u8]);

    /// Copies `buf` into the control page at `offset` (for initialising a
    /// ring image and for tests: atomic per byte, not one store).
    fn write_control(&self, offset: usize, buf: &[u8]);

    /// Copies data-area bytes starting at `offset` into `buf`, wrapping once.
    fn read_data(&self, offset: usize, buf: &mut [u8]);

    /// Copies `buf` into the data area starting at `offset`, wrapping once.
    fn write_data(&self, offset: usize, buf: &[u8]);

    /// Zeroes `len` data-area bytes starting at `offset`, wrapping once.
    fn zero_data(&self, offset: usize, len: usize);

    /// The little-endian 8-byte word at data-area offset `offset`, a
    /// multiple of 8 below `data_len`: a descriptor, header or footer word.
    /// Such a word never wraps (the data area is a multiple of 8 bytes long).
    ///
    /// The default reads it with [`read_data`](Self::read_data); the
    /// memories of this crate read it with one 8-byte access and one check.
    fn read_data_word(&self, offset: usize) -> u64 {
        check_data_word(self.data_len(), offset);
        let mut bytes = [0; 8];
        self.read_data(offset, &mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// Writes `value` little-endian to the 8-byte word at data-area offset
    /// `offset`, a multiple of 8 below `data_len` (see
    /// [`read_data_word`](Self::read_data_word)).
    fn write_data_word(&self, offset: usize, value: u64) {
        check_data_word(self.data_len(), offset);
        self.write_data(offset, &value.to_le_bytes())
    }

    /// The words at data-area offset `offset` (as for
    /// [`read_data_word`](Self::read_data_word)) and at the word offset after
    /// it, which is 0 after the last word of the data area: a packet's
    /// descriptor.
    ///
    /// The default reads them with `read_data_word`; the memories of this
    /// crate check a pair that does not wrap once, as one span.
    fn read_data_word_pair(&self, offset: usize) -> [u64; 2] {
        let first = self.read_data_word(offset);
        let next = offset + 8;
        [first, self.read_data_word(if next == self.data_len() { 0 } else { next })]
    }

    /// Writes the words that frame a packet of `len` bytes at data-area
    /// offset `offset`, where the packet does not wrap: `head` at `offset`
    /// and `offset + 8`, then `last` at `offset + len - 8`. `offset` and
    /// `len` are multiples of 8, `len` is at least 16, and
    /// `offset + len <= data_len`.
    ///
    /// The default writes them with
    /// [`write_data_word`](Self::write_data_word); the memories of this
    /// crate check the whole span once instead of each word.
    fn write_frame_words(&self, offset: usize, len: usize, head: [u64; 2], last: u64) {
        check_frame(self.data_len(), offset, len);
        self.write_data_word(offset, head[0]);
        self.write_data_word(offset + 8, head[1]);
        self.write_data_word(offset + len - 8, last);
    }
}

/// Checks that `data_len` is a valid data-area size.
pub fn check_data_len(data_len: usize) -> Result<(), OpenError> {
    if data_len == 0 || !data_len.is_multiple_of(PAGE_SIZE) || data_len > MAX_DATA_LEN {
        return Err(OpenError::InvalidSize { data_len });
    }
    Ok(())
}

/// Checks that a control-page access of `len` bytes at `offset` stays inside the page.
#[inline]
fn check_control_span(offset: usize, len: usize) {
    assert!(offset <= PAGE_SIZE && len <= PAGE_SIZE - offset, "{len} bytes at {offset} outside the control page");
}

/// Splits a data-area copy of `len` bytes at `offset` into the part before
/// the end of the data area and the part that wraps to its start.
///
/// # Panics
///
/// If the copy breaks the [`RingMem`] contract (`offset < data_len`,
/// `len <= data_len`).
#[inline]
fn split_at_wrap(data_len: usize, offset: usize, len: usize) -> (usize, usize) {
    if offset >= data_len || len > data_len {
        outside_data_area(data_len, offset, len);
    }
    let first = len.min(data_len - offset);
    (first, len - first)
}

/// Panics unless `offset` is a data-area word offset: a multiple of 8 below
/// `data_len`.
#[inline]
fn check_data_word(data_len: usize, offset: usize) {
    if !offset.is_multiple_of(8) || offset >= data_len {
        word_outside_data_area(data_len, offset);
    }
}

/// Panics unless `len` bytes at `offset` are a packet frame inside a data
/// area of `data_len` bytes (see [`RingMem::write_frame_words`]).
#[inline]
fn check_frame(data_len: usize, offset: usize, len: usize) {
    if !offset.is_multiple_of(8) || !len.is_multiple_of(8) || len < 16 || offset > data_len || len > data_len - offset {
        frame_outside_data_area(data_len, offset, len);
    }
}

/// The panic of [`check_frame`] and of a memory's own frame check.
#[cold]
#[inline(never)]
fn frame_outside_data_area(data_len: usize, offset: usize, len: usize) -> ! {
    panic!("a packet frame of {len} bytes at {offset} is not 8-aligned words inside a data area of {data_len}")
}

/// The panic of a data-area word access that breaks the [`RingMem`]
/// contract (an offset not a multiple of 8, or not below `data_len`).
#[cold]
#[inline(never)]
fn word_outside_data_area(data_len: usize, offset: usize) -> ! {
    panic!("data-area word at {offset} is not an 8-aligned word of a data area of {data_len}")
}

/// The panic of a data-area copy that breaks the [`RingMem`] contract, out of
/// line so that the checks inline small.
#[cold]
#[inline(never)]
fn outside_data_area(data_len: usize, offset: usize, len: usize) -> ! {
    panic!("{len} bytes at {offset} outside a data area of {data_len}")
}
