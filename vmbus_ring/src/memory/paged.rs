//! Ring memory over separately allocated 4 KiB pages, as guest memory looks
//! to a host: each page of the ring may sit anywhere in its address space.

use super::{
    check_control_span, check_data_len, split_at_wrap, word_outside_data_area, ControlPage, ControlRegion, ControlWord,
    RingMem, SharedRegion,
};
use crate::wire::PAGE_SIZE;
use crate::OpenError;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// A source of ring pages: the control page and data page `i`, each a region
/// of at least 4096 bytes (only the first 4096 are used).
pub trait RingPages {
    /// The control page.
    fn control_page(&self) -> SharedRegion;
    /// How many data pages the ring has.
    fn data_page_count(&self) -> usize;
    /// Data page `index`, for `index < data_page_count()`.
    fn data_page(&self, index: usize) -> SharedRegion;
}

/// Ring pages each allocated separately on the heap; for tests and for
/// in-process rings that should look like guest memory.
///
/// ```
/// use vmbus_ring::{HeapRingPages, PagedRingMem, RingMem};
/// let mem = PagedRingMem::new(&HeapRingPages::new(3)).unwrap();
/// assert_eq!(mem.data_len(), 3 * 4096);
/// ```
#[derive(Debug, Clone)]
pub struct HeapRingPages {
    control: SharedRegion,
    data: Vec<SharedRegion>,
}

impl HeapRingPages {
    /// A zeroed control page and `data_pages` zeroed data pages.
    pub fn new(data_pages: usize) -> Self {
        Self {
            control: SharedRegion::new_zeroed(PAGE_SIZE),
            data: (0..data_pages).map(|_| SharedRegion::new_zeroed(PAGE_SIZE)).collect(),
        }
    }
}

impl RingPages for HeapRingPages {
    fn control_page(&self) -> SharedRegion {
        self.control.clone()
    }
    fn data_page_count(&self) -> usize {
        self.data.len()
    }
    fn data_page(&self, index: usize) -> SharedRegion {
        self.data[index].clone()
    }
}

/// A ring over discontiguous pages (see [`RingPages`]). Cheap to clone;
/// clones share the pages.
#[derive(Debug, Clone)]
pub struct PagedRingMem {
    control: ControlRegion,
    data: Arc<[SharedRegion]>,
}

impl PagedRingMem {
    /// A ring over the pages `pages` yields. Fails if there are no data
    /// pages, too many, or a page is short or misaligned.
    pub fn new(pages: &impl RingPages) -> Result<Self, OpenError> {
        let count = pages.data_page_count();
        check_data_len(count.saturating_mul(PAGE_SIZE))?;
        let control = ControlRegion::new(checked_page(0, pages.control_page())?).ok_or(OpenError::Misaligned)?;
        let data = (0..count).map(|i| checked_page(i + 1, pages.data_page(i))).collect::<Result<Arc<[_]>, _>>()?;
        Ok(Self { control, data })
    }

    /// The page a data-area access at `offset` starts in, and the offset in
    /// it. Copies within that page take one check, the page region's own
    /// (each is exactly a page long).
    #[inline]
    fn page_at(&self, offset: usize) -> Option<(&SharedRegion, usize)> {
        self.data.get(offset / PAGE_SIZE).map(|page| (page, offset % PAGE_SIZE))
    }

    #[inline(never)]
    fn read_pieces(&self, offset: usize, buf: &mut [u8]) {
        self.for_each_piece(offset, buf.len(), |page, at, from, len| page.read(at, &mut buf[from..from + len]));
    }

    #[inline(never)]
    fn write_pieces(&self, offset: usize, buf: &[u8]) {
        self.for_each_piece(offset, buf.len(), |page, at, from, len| page.write(at, &buf[from..from + len]));
    }

    /// Calls `copy(page, offset_in_page, offset_in_buffer, len)` for each
    /// page-sized piece of a data-area access, wrapping once.
    fn for_each_piece(&self, offset: usize, len: usize, mut copy: impl FnMut(&SharedRegion, usize, usize, usize)) {
        split_at_wrap(self.data_len(), offset, len);
        let mut position = offset;
        let mut done = 0;
        while done < len {
            let in_page = position % PAGE_SIZE;
            let piece = (len - done).min(PAGE_SIZE - in_page);
            copy(&self.data[position / PAGE_SIZE], in_page, done, piece);
            done += piece;
            position = (position + piece) % self.data_len();
        }
    }
}

/// The first 4096 bytes of `page`, if it has them and is aligned.
fn checked_page(index: usize, page: SharedRegion) -> Result<SharedRegion, OpenError> {
    if page.len() < PAGE_SIZE {
        return Err(OpenError::PageTooSmall { index, len: page.len() });
    }
    if !page.is_aligned() {
        return Err(OpenError::Misaligned);
    }
    page.sub_region(0, PAGE_SIZE).ok_or(OpenError::Misaligned)
}

impl ControlPage for PagedRingMem {
    #[inline]
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.control.load(word, order)
    }
    #[inline]
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.control.store(word, value, order)
    }
}

impl RingMem for PagedRingMem {
    #[inline]
    fn data_len(&self) -> usize {
        self.data.len() * PAGE_SIZE
    }
    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        check_control_span(offset, buf.len());
        self.control.region().read_u32_words(offset, buf)
    }
    fn write_control(&self, offset: usize, buf: &[u8]) {
        check_control_span(offset, buf.len());
        self.control.region().write(offset, buf)
    }
    #[inline]
    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        match self.page_at(offset) {
            Some((page, at)) if page.try_read(at, buf) => {}
            _ => self.read_pieces(offset, buf),
        }
    }
    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        match self.page_at(offset) {
            Some((page, at)) if page.try_write(at, buf) => {}
            _ => self.write_pieces(offset, buf),
        }
    }
    #[inline]
    fn read_data_word(&self, offset: usize) -> u64 {
        // An 8-aligned word never crosses a page.
        match self.page_at(offset).and_then(|(page, at)| page.try_load_u64(at)) {
            Some(value) => value,
            None => word_outside_data_area(self.data_len(), offset),
        }
    }
    #[inline]
    fn write_data_word(&self, offset: usize, value: u64) {
        if !self.page_at(offset).is_some_and(|(page, at)| page.try_store_u64(at, value)) {
            word_outside_data_area(self.data_len(), offset);
        }
    }
    fn zero_data(&self, offset: usize, len: usize) {
        self.for_each_piece(offset, len, |page, at, _, len| page.fill_zero(at, len));
    }
}
