//! GPA ranges: byte spans over guest-physical pages, as GPA-direct packets
//! and pipe set-up messages carry them.
//!
//! On the wire a range is a [`GpaRangeHeader`](crate::wire::GpaRangeHeader)
//! (`byte_count`, `byte_offset`) followed by one `u64` guest page number per
//! page the range spans. [`GpaRanges`] is a validated, borrowed view of such
//! a list; [`GpaRangeBuf`] owns one and builds it.

use crate::error::GpaRangeError;
use crate::wire::PAGE_SIZE;
use crate::{CorruptError, Field};
use smallvec::SmallVec;
use zerocopy::little_endian::U64;

/// Most words a GPA range list can have in one packet: the descriptor's
/// `data_offset8` is a `u16` counting 8-byte words, and the descriptor and
/// GPA-direct header take three of them.
pub const MAX_GPA_WORDS: usize = u16::MAX as usize - 3;

/// The number of pages a range of `byte_count` bytes at `byte_offset` spans.
#[inline]
pub const fn pages_spanned(byte_offset: u32, byte_count: u32) -> u64 {
    (byte_offset as u64 + byte_count as u64).div_ceil(PAGE_SIZE as u64)
}

/// One GPA range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRange<'a> {
    /// Length in bytes; never zero.
    pub byte_count: u32,
    /// Offset into the first page; below 4096.
    pub byte_offset: u32,
    /// Guest page numbers, one per page spanned, little-endian.
    pub gpns: &'a [U64],
}

impl GpaRange<'_> {
    /// The guest page numbers, in order.
    pub fn page_numbers(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.gpns.iter().map(|gpn| gpn.get())
    }
}

/// A validated list of GPA ranges in their wire encoding.
///
/// ```
/// use vmbus_ring::{GpaRangeBuf, GpaRanges};
/// let mut buf = GpaRangeBuf::new();
/// buf.push(100, 5000, &[7, 8]).unwrap(); // 100 + 5000 bytes span two pages
/// let ranges = GpaRanges::parse(buf.words(), 1).unwrap();
/// let range = ranges.iter().next().unwrap();
/// assert_eq!((range.byte_offset, range.byte_count), (100, 5000));
/// assert_eq!(range.page_numbers().collect::<Vec<_>>(), [7, 8]);
/// // Claiming a second range that is not there is corrupt.
/// assert!(GpaRanges::parse(buf.words(), 2).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRanges<'a> {
    words: &'a [U64],
    count: u32,
}

impl<'a> GpaRanges<'a> {
    /// Parses `count` ranges from the start of `words`, checking every range
    /// (`byte_count > 0`, `byte_offset < 4096`, its page numbers present).
    /// Words after the last range are ignored. Never allocates; the work is
    /// bounded by `words.len()` whatever `count` says.
    pub fn parse(words: &'a [U64], count: u32) -> Result<Self, CorruptError> {
        let mut used = 0usize;
        for _ in 0..count {
            let Some(header) = words.get(used) else {
                return Err(CorruptError::new(Field::RangeCount, count.into()));
            };
            let (byte_count, byte_offset) = split_header(header.get());
            if byte_count == 0 {
                return Err(CorruptError::new(Field::GpaByteCount, 0));
            }
            if byte_offset as usize >= PAGE_SIZE {
                return Err(CorruptError::new(Field::GpaByteOffset, byte_offset.into()));
            }
            let pages = pages_spanned(byte_offset, byte_count);
            let left = words.len() - used - 1;
            if pages > left as u64 {
                return Err(CorruptError::new(Field::GpaPageCount, pages));
            }
            used += 1 + pages as usize;
        }
        Ok(Self { words: &words[..used], count })
    }

    /// A list that [`parse`](Self::parse) accepted before, of `count`
    /// ranges taking exactly `words`: not checked again. (Were it not valid,
    /// iterating would still stop at the end of `words`, without a panic.)
    #[inline]
    pub(crate) fn parsed_before(words: &'a [U64], count: u32) -> Self {
        Self { words, count }
    }

    /// Number of ranges.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no ranges.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The wire encoding: each range's header word, then its page numbers.
    #[inline]
    pub fn words(&self) -> &'a [U64] {
        self.words
    }

    /// The ranges, in order.
    #[inline]
    pub fn iter(&self) -> GpaRangeIter<'a> {
        GpaRangeIter { words: self.words }
    }
}

impl<'a> IntoIterator for GpaRanges<'a> {
    type Item = GpaRange<'a>;
    type IntoIter = GpaRangeIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the ranges of a [`GpaRanges`].
#[derive(Debug, Clone)]
pub struct GpaRangeIter<'a> {
    words: &'a [U64],
}

impl<'a> Iterator for GpaRangeIter<'a> {
    type Item = GpaRange<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (header, rest) = self.words.split_first()?;
        let (byte_count, byte_offset) = split_header(header.get());
        // The list was validated on parse, so the page numbers are present;
        // `min` keeps this total even so.
        let pages = (pages_spanned(byte_offset, byte_count) as usize).min(rest.len());
        let (gpns, rest) = rest.split_at(pages);
        self.words = rest;
        Some(GpaRange { byte_count, byte_offset, gpns })
    }
}

#[inline]
fn split_header(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// An owned GPA range list, built range by range or copied from a packet.
///
/// Small lists live inline; the words are stored in wire order, so writing
/// the list into a packet is one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpaRangeBuf {
    words: SmallVec<[U64; 8]>,
    count: u32,
}

impl GpaRangeBuf {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a range of `byte_count` bytes starting `byte_offset` bytes
    /// into page `gpns[0]`, continuing over the following page numbers.
    ///
    /// ```
    /// use vmbus_ring::{GpaRangeBuf, GpaRangeError};
    /// let mut buf = GpaRangeBuf::new();
    /// assert_eq!(buf.push(0, 4097, &[1]), Err(GpaRangeError::PageCount { expected: 2, given: 1 }));
    /// buf.push(0, 4097, &[1, 2]).unwrap();
    /// assert_eq!(buf.len(), 1);
    /// ```
    pub fn push(&mut self, byte_offset: u32, byte_count: u32, gpns: &[u64]) -> Result<(), GpaRangeError> {
        if byte_count == 0 {
            return Err(GpaRangeError::Empty);
        }
        if byte_offset as usize >= PAGE_SIZE {
            return Err(GpaRangeError::OffsetTooLarge(byte_offset));
        }
        let expected = pages_spanned(byte_offset, byte_count);
        if expected != gpns.len() as u64 {
            return Err(GpaRangeError::PageCount { expected, given: gpns.len() });
        }
        if self.words.len() + 1 + gpns.len() > MAX_GPA_WORDS {
            return Err(GpaRangeError::TooLong);
        }
        let header = u64::from(byte_count) | u64::from(byte_offset) << 32;
        self.words.push(U64::new(header));
        self.words.extend(gpns.iter().map(|&gpn| U64::new(gpn)));
        self.count += 1;
        Ok(())
    }

    /// Appends a range over guest-physically contiguous memory: `byte_count`
    /// bytes starting at guest physical address `gpa`.
    ///
    /// ```
    /// use vmbus_ring::GpaRangeBuf;
    /// let mut buf = GpaRangeBuf::new();
    /// buf.push_contiguous(0x5_0010, 8192).unwrap();
    /// let range = buf.ranges().iter().next().unwrap();
    /// assert_eq!(range.byte_offset, 0x10);
    /// assert_eq!(range.page_numbers().collect::<Vec<_>>(), [0x50, 0x51, 0x52]);
    /// ```
    pub fn push_contiguous(&mut self, gpa: u64, byte_count: u32) -> Result<(), GpaRangeError> {
        let byte_offset = (gpa % PAGE_SIZE as u64) as u32;
        let first = gpa / PAGE_SIZE as u64;
        let pages = pages_spanned(byte_offset, byte_count);
        if pages as usize > MAX_GPA_WORDS {
            return Err(GpaRangeError::TooLong);
        }
        let gpns: SmallVec<[u64; 16]> = (0..pages).map(|page| first + page).collect();
        self.push(byte_offset, byte_count, &gpns)
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no ranges.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every range.
    pub fn clear(&mut self) {
        self.words.clear();
        self.count = 0;
    }

    /// The wire encoding.
    pub fn words(&self) -> &[U64] {
        &self.words
    }

    /// A borrowed view, for iterating or writing into a packet.
    pub fn ranges(&self) -> GpaRanges<'_> {
        GpaRanges { words: &self.words, count: self.count }
    }
}

impl From<GpaRanges<'_>> for GpaRangeBuf {
    fn from(ranges: GpaRanges<'_>) -> Self {
        Self { words: ranges.words.into(), count: ranges.count }
    }
}
