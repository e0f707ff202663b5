//! The reader's private copies of the range lists of the packets one batch
//! has read: copied out of the ring once, validated there, and read through
//! the batch for as long as it lives.

use alloc::vec::Vec;
use zerocopy::little_endian::U64;

/// Range-list words, appended packet by packet and dropped all at once when
/// the next batch starts. The storage is kept from batch to batch (and
/// zeroed only when it grows), so once it has grown to the longest batch's
/// lists, copying a list costs the copy and nothing else.
#[derive(Debug, Default)]
pub(crate) struct RangeCopies {
    words: Vec<U64>,
    /// Words of the current batch: the first `used` of `words`.
    used: usize,
}

impl RangeCopies {
    /// Drops every copy, for a new batch.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.used = 0;
    }

    /// Room for `count` more words, to be filled by the caller: where they
    /// start, and the words (holding stale values until filled).
    #[inline]
    pub(crate) fn append(&mut self, count: usize) -> (usize, &mut [U64]) {
        let start = self.used;
        let end = start + count;
        if self.words.len() < end {
            self.grow(end);
        }
        self.used = end;
        (start, &mut self.words[start..end])
    }

    /// Grows the storage to `len` words: rare (the storage is kept), so out
    /// of line, leaving the common path of [`append`](Self::append) small.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, len: usize) {
        self.words.resize(len, U64::ZERO);
    }

    /// Drops the words from `end` on (the padding after a list).
    #[inline]
    pub(crate) fn truncate(&mut self, end: usize) {
        self.used = self.used.min(end);
    }

    /// Words the current batch holds.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// The `len` words from `start`, if the current batch has them.
    #[inline]
    pub(crate) fn get(&self, start: usize, len: usize) -> Option<&[U64]> {
        self.words[..self.used].get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_a_batch_are_dropped_by_the_next_and_storage_is_kept() {
        let mut copies = RangeCopies::default();
        let (start, words) = copies.append(3);
        words.copy_from_slice(&[U64::new(1), U64::new(2), U64::new(3)]);
        assert_eq!(start, 0);
        copies.truncate(2);
        assert_eq!(copies.get(0, 2), Some(&[U64::new(1), U64::new(2)][..]));
        assert_eq!(copies.get(1, 2), None, "a truncated word is gone");
        assert_eq!(copies.append(1).0, 2);
        copies.clear();
        assert_eq!(copies.get(0, 1), None, "a new batch has no copies");
        assert_eq!(copies.get(usize::MAX, 2), None);
        let (start, words) = copies.append(2);
        assert_eq!((start, words.len()), (0, 2));
        assert_eq!(copies.words.len(), 3, "the storage is reused");
    }
}
