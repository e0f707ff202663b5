//! Helpers shared by the integration tests: every kind of ring memory behind
//! one type, ring images, and rings opened at a chosen offset.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::Ordering;
#[allow(unused_imports)] // not every test binary uses it
pub use vmbus_ring::ring_image;
use vmbus_ring::{
    ControlPage, ControlWord, FlatRingMem, HeapRingPages, IncomingRing, MappedRingMem, MappingLayout, OutgoingRing,
    PagedRingMem, RingMem,
};

pub const PAGE: usize = 4096;

/// Every ring memory kind, so one test body runs over all of them.
#[derive(Debug, Clone)]
pub enum AnyMem {
    Flat(FlatRingMem),
    Paged(PagedRingMem),
    Mapped(MappedRingMem),
}

impl AnyMem {
    /// One memory of each kind with a `data_len`-byte data area: flat, paged,
    /// and (on Linux) memfd mapped once and mapped twice.
    pub fn all(data_len: usize) -> Vec<(&'static str, AnyMem)> {
        let mut all = vec![
            ("flat", AnyMem::Flat(FlatRingMem::new(data_len).unwrap())),
            ("paged", AnyMem::Paged(PagedRingMem::new(&HeapRingPages::new(data_len / PAGE)).unwrap())),
        ];
        #[cfg(target_os = "linux")]
        for (name, layout) in [("mapped", MappingLayout::Single), ("double-mapped", MappingLayout::Double)] {
            let (mem, _fd) = MappedRingMem::create_memfd(data_len, layout).unwrap();
            all.push((name, AnyMem::Mapped(mem)));
        }
        all
    }

    fn inner(&self) -> &dyn RingMem {
        match self {
            AnyMem::Flat(mem) => mem,
            AnyMem::Paged(mem) => mem,
            AnyMem::Mapped(mem) => mem,
        }
    }
}

impl ControlPage for AnyMem {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.inner().load(word, order)
    }
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.inner().store(word, value, order)
    }
}

impl RingMem for AnyMem {
    fn data_len(&self) -> usize {
        self.inner().data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.inner().read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.inner().write_control(offset, buf)
    }
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.inner().read_data(offset, buf)
    }
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.inner().write_data(offset, buf)
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.inner().zero_data(offset, len)
    }
    fn read_data_word(&self, offset: usize) -> u64 {
        self.inner().read_data_word(offset)
    }
    fn write_data_word(&self, offset: usize, value: u64) {
        self.inner().write_data_word(offset, value)
    }
    fn read_data_word_pair(&self, offset: usize) -> [u64; 2] {
        self.inner().read_data_word_pair(offset)
    }
    fn write_frame_words(&self, offset: usize, len: usize, head: [u64; 2], last: u64) {
        self.inner().write_frame_words(offset, len, head, last)
    }
}

/// Sets both indices of an empty ring to `offset`, as if `offset` bytes had
/// been written and read already.
pub fn set_empty_at(mem: &impl RingMem, offset: u32) {
    mem.store(ControlWord::WriteIndex, offset, Ordering::Relaxed);
    mem.store(ControlWord::ReadIndex, offset, Ordering::Relaxed);
}

/// A writer and a reader over `mem`, both starting at `offset`.
pub fn endpoints_at<M: RingMem + Clone>(mem: &M, offset: u32) -> (OutgoingRing<M>, IncomingRing<M>) {
    set_empty_at(mem, offset);
    (OutgoingRing::new(mem.clone()).unwrap(), IncomingRing::new(mem.clone()).unwrap())
}

/// xorshift64: a deterministic, dependency-free generator for randomized tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 16) % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 24) as u8).collect()
    }
}
