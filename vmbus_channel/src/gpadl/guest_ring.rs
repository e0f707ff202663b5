//! A ring in guest pages that records what this side writes in guest
//! memory's dirty-page bitmap, so that a VMM migrating the guest copies the
//! ring pages the host changed.

use std::any::TypeId;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmbus_ring::wire::PAGE_SIZE;
use vmbus_ring::{ControlPage, ControlWord, PagedRingMem, RingMem};

/// The memory of one GPADL ring: its guest pages as a [`PagedRingMem`],
/// with every write this side makes (packets, padding, control words)
/// marked in the dirty bitmap of the guest memory region that holds the
/// page. With the bitmap `()` (the default) nothing is marked and nothing
/// is looked up.
///
/// Marking costs a region lookup per write (a binary search over the
/// regions, and the bitmap's atomic update); reads cost nothing extra.
pub struct GuestRingMem<B: Bitmap + 'static = ()> {
    ring: PagedRingMem,
    memory: Arc<GuestMemoryMmap<B>>,
    /// The guest address of the control page, then of each data page.
    pages: Arc<[GuestAddress]>,
}

impl<B: Bitmap + 'static> Clone for GuestRingMem<B> {
    fn clone(&self) -> Self {
        Self { ring: self.ring.clone(), memory: Arc::clone(&self.memory), pages: Arc::clone(&self.pages) }
    }
}

impl<B: Bitmap + 'static> fmt::Debug for GuestRingMem<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestRingMem").field("ring", &self.ring).field("pages", &self.pages).finish()
    }
}

impl<B: Bitmap + 'static> GuestRingMem<B> {
    /// `ring` over the guest pages at `pages` (control page first) of `memory`.
    pub(super) fn new(ring: PagedRingMem, memory: Arc<GuestMemoryMmap<B>>, pages: Vec<GuestAddress>) -> Self {
        Self { ring, memory, pages: pages.into() }
    }

    /// The ring as plain paged memory, for reading it. Writes through it
    /// are not marked dirty: a migrating VMM would miss them.
    pub fn paged(&self) -> &PagedRingMem {
        &self.ring
    }

    /// Whether the bitmap records anything: `()` does not, and for it the
    /// test compiles away with the lookups it guards.
    #[inline]
    fn tracks_dirty_pages() -> bool {
        TypeId::of::<B>() != TypeId::of::<()>()
    }

    /// Marks `len` bytes at `offset` of ring page `page` (0: the control
    /// page) dirty.
    #[inline]
    fn mark(&self, page: usize, offset: usize, len: usize) {
        if !Self::tracks_dirty_pages() || len == 0 {
            return;
        }
        let address = self.pages[page];
        if let Some(region) = self.memory.find_region(address) {
            // The page lies in the region (the ring was built from it), so
            // the difference is a small offset into it.
            let start = (address.0 - region.start_addr().0) as usize;
            region.bitmap().mark_dirty(start + offset, len);
        }
    }

    /// Marks the data-area span of `len` bytes at `offset` dirty, wrapping
    /// once as the [`RingMem`] copies do.
    fn mark_data(&self, offset: usize, len: usize) {
        if !Self::tracks_dirty_pages() {
            return;
        }
        let data_len = self.ring.data_len();
        let (mut at, mut left) = (offset, len.min(data_len));
        while left > 0 {
            let in_page = at % PAGE_SIZE;
            let n = left.min(PAGE_SIZE - in_page);
            self.mark(1 + at / PAGE_SIZE, in_page, n);
            left -= n;
            at = (at + n) % data_len;
        }
    }
}

impl<B: Bitmap + 'static> ControlPage for GuestRingMem<B> {
    #[inline]
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.ring.load(word, order)
    }
    #[inline]
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.ring.store(word, value, order);
        self.mark(0, word.offset(), 4);
    }
    fn full_fence(&self) {
        self.ring.full_fence()
    }
}

impl<B: Bitmap + 'static> RingMem for GuestRingMem<B> {
    #[inline]
    fn data_len(&self) -> usize {
        self.ring.data_len()
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        self.ring.read_control(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        self.ring.write_control(offset, buf);
        self.mark(0, offset, buf.len());
    }
    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.ring.read_data(offset, buf)
    }
    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.ring.write_data(offset, buf);
        self.mark_data(offset, buf.len());
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.ring.zero_data(offset, len);
        self.mark_data(offset, len);
    }
    #[inline]
    fn read_data_word(&self, offset: usize) -> u64 {
        self.ring.read_data_word(offset)
    }
    #[inline]
    fn write_data_word(&self, offset: usize, value: u64) {
        self.ring.write_data_word(offset, value);
        self.mark(1 + offset / PAGE_SIZE, offset % PAGE_SIZE, 8);
    }
}
