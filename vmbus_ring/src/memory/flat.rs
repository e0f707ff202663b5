//! Ring memory in one heap allocation.

use super::{check_data_len, ControlPage, ControlWord, MappedRingMem, MappingLayout, RingMem, SharedRegion};
use crate::wire::PAGE_SIZE;
use crate::OpenError;
use core::sync::atomic::Ordering;

/// A ring in one zeroed heap allocation: control page, then data area.
///
/// Cheap to clone; clones share the memory, so a writer and a reader in one
/// process each take a clone.
///
/// ```
/// use vmbus_ring::{FlatRingMem, RingMem};
/// let mem = FlatRingMem::new(4 * 4096).unwrap();
/// assert_eq!(mem.data_len(), 4 * 4096);
/// assert!(FlatRingMem::new(100).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct FlatRingMem(MappedRingMem);

impl FlatRingMem {
    /// A zeroed ring with a data area of `data_len` bytes (a non-zero multiple
    /// of 4096 below 4 GiB).
    pub fn new(data_len: usize) -> Result<Self, OpenError> {
        check_data_len(data_len)?;
        let region = SharedRegion::new_zeroed(PAGE_SIZE + data_len);
        MappedRingMem::new(region, MappingLayout::Single).map(Self)
    }
}

impl ControlPage for FlatRingMem {
    #[inline]
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.0.load(word, order)
    }
    #[inline]
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.0.store(word, value, order)
    }
}

impl RingMem for FlatRingMem {
    #[inline]
    fn data_len(&self) -> usize {
        self.0.data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.0.read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.0.write_control(offset, buf)
    }
    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.0.read_data_single(offset, buf)
    }
    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.0.write_data_single(offset, buf)
    }
    #[inline]
    fn read_data_word(&self, offset: usize) -> u64 {
        self.0.read_data_word_single(offset)
    }
    #[inline]
    fn write_data_word(&self, offset: usize, value: u64) {
        self.0.write_data_word_single(offset, value)
    }
    #[inline]
    fn read_data_word_pair(&self, offset: usize) -> [u64; 2] {
        self.0.read_data_word_pair_single(offset)
    }
    #[inline]
    fn write_frame_words(&self, offset: usize, len: usize, head: [u64; 2], last: u64) {
        self.0.write_frame_words_single(offset, len, head, last)
    }
    #[inline]
    fn zero_data(&self, offset: usize, len: usize) {
        self.0.zero_data(offset, len)
    }
}
