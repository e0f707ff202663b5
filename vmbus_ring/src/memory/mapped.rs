//! Ring memory over a raw mapping, such as a shared file mapped by two processes.

use super::{
    check_control_span, check_data_len, frame_outside_data_area, split_at_wrap, word_outside_data_area, ControlPage,
    ControlRegion, ControlWord, RingMem, SharedRegion,
};
use crate::wire::PAGE_SIZE;
use crate::OpenError;
use core::sync::atomic::Ordering;

/// How the data area is laid out in a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingLayout {
    /// Control page, then the data area once.
    Single,
    /// Control page, then the data area twice back to back (the second copy
    /// mapping the same pages), so a copy that wraps is one contiguous copy.
    Double,
}

/// A ring in a mapping: a control page followed by the data area, mapped
/// once or twice (see [`MappingLayout`]).
///
/// Build one from any [`SharedRegion`] (for a mapping made elsewhere, through
/// [`SharedRegion::from_raw`]), or on Linux with [`create_memfd`](Self::create_memfd)
/// and [`open_fd`](Self::open_fd).
///
/// ```
/// use vmbus_ring::{MappedRingMem, MappingLayout, RingMem, SharedRegion};
/// let region = SharedRegion::new_zeroed(4096 + 8192);
/// let mem = MappedRingMem::new(region, MappingLayout::Single).unwrap();
/// assert_eq!(mem.data_len(), 8192);
/// ```
#[derive(Debug, Clone)]
pub struct MappedRingMem {
    /// The control page.
    control: ControlRegion,
    /// The data area: `data_len` bytes, or twice that with a double mapping.
    data: SharedRegion,
    data_len: usize,
    layout: MappingLayout,
}

impl MappedRingMem {
    /// A ring over `region`, whose length must be `4096 + data_len` for
    /// [`MappingLayout::Single`] and `4096 + 2 * data_len` for
    /// [`MappingLayout::Double`], with `data_len` a valid data-area size.
    ///
    /// With [`MappingLayout::Double`] the caller promises the second copy
    /// maps the same memory as the first; if it does not, the ring's contents
    /// are wrong but memory safety holds.
    pub fn new(region: SharedRegion, layout: MappingLayout) -> Result<Self, OpenError> {
        let after_control = region.len().saturating_sub(PAGE_SIZE);
        let data_len = match layout {
            MappingLayout::Single => after_control,
            MappingLayout::Double if after_control.is_multiple_of(2) => after_control / 2,
            MappingLayout::Double => return Err(OpenError::InvalidSize { data_len: after_control }),
        };
        check_data_len(data_len)?;
        if !region.is_aligned() {
            return Err(OpenError::Misaligned);
        }
        // Both spans are inside the region (its length was checked above)
        // and start 8-aligned (the region does, and `PAGE_SIZE` is a
        // multiple of 8).
        let sub_region = |offset, len| region.sub_region(offset, len).ok_or(OpenError::Misaligned);
        let control = ControlRegion::new(sub_region(0, PAGE_SIZE)?).ok_or(OpenError::Misaligned)?;
        let data = sub_region(PAGE_SIZE, region.len() - PAGE_SIZE)?;
        Ok(Self { control, data, data_len, layout })
    }

    /// The layout this ring was mapped with.
    pub fn layout(&self) -> MappingLayout {
        self.layout
    }

    /// Copies `buf.len()` data-area bytes at `offset` into `buf` if they
    /// are one span of the mapping, with one check: in a single mapping the
    /// data region ends where the data area does, so its own bounds check is
    /// the check that the copy does not wrap; in a double mapping any copy
    /// within the contract is one span. Returns `false`, copying nothing,
    /// otherwise.
    #[inline]
    fn read_span(&self, offset: usize, buf: &mut [u8]) -> bool {
        match self.layout {
            MappingLayout::Single => self.data.try_read(offset, buf),
            MappingLayout::Double => self.within_contract(offset, buf.len()) && self.data.try_read(offset, buf),
        }
    }

    /// [`RingMem::read_data`] for a memory known to be mapped once (a
    /// [`FlatRingMem`](super::FlatRingMem)), without looking at the layout.
    #[inline]
    pub(super) fn read_data_single(&self, offset: usize, buf: &mut [u8]) {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        if !self.data.try_read(offset, buf) {
            self.read_wrapped(offset, buf);
        }
    }

    /// [`RingMem::write_data`] for a memory known to be mapped once.
    #[inline]
    pub(super) fn write_data_single(&self, offset: usize, buf: &[u8]) {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        if !self.data.try_write(offset, buf) {
            self.write_wrapped(offset, buf);
        }
    }

    /// [`RingMem::read_data_word`] for a memory known to be mapped once,
    /// where the data region ends where the data area does, so the region's
    /// own check is the contract's.
    #[inline]
    pub(super) fn read_data_word_single(&self, offset: usize) -> u64 {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        match self.data.try_load_u64(offset) {
            Some(value) => value,
            None => word_outside_data_area(self.data_len, offset),
        }
    }

    /// [`RingMem::write_data_word`] for a memory known to be mapped once.
    #[inline]
    pub(super) fn write_data_word_single(&self, offset: usize, value: u64) {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        if !self.data.try_store_u64(offset, value) {
            word_outside_data_area(self.data_len, offset);
        }
    }

    /// [`RingMem::read_data_word_pair`] for a memory known to be mapped
    /// once: one check where the pair does not wrap.
    #[inline]
    pub(super) fn read_data_word_pair_single(&self, offset: usize) -> [u64; 2] {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        match self.data.try_load_u64_pair(offset) {
            Some(words) => words,
            None => [self.read_data_word_single(offset), self.read_data_word_single(0)],
        }
    }

    /// [`RingMem::write_frame_words`] for a memory known to be mapped once,
    /// where the region's check is the contract's.
    #[inline]
    pub(super) fn write_frame_words_single(&self, offset: usize, len: usize, head: [u64; 2], last: u64) {
        debug_assert_eq!(self.layout, MappingLayout::Single);
        if !self.data.try_store_frame(offset, len, head, last) {
            frame_outside_data_area(self.data_len, offset, len);
        }
    }

    /// The writing twin of [`read_span`](Self::read_span).
    #[inline]
    fn write_span(&self, offset: usize, buf: &[u8]) -> bool {
        match self.layout {
            MappingLayout::Single => self.data.try_write(offset, buf),
            MappingLayout::Double => self.within_contract(offset, buf.len()) && self.data.try_write(offset, buf),
        }
    }

    /// Whether a data-area access keeps the [`RingMem`] contract (`offset <
    /// data_len`, `len <= data_len`): what a double mapping must check on top
    /// of its region's bounds, which are twice as wide.
    #[inline]
    fn within_contract(&self, offset: usize, len: usize) -> bool {
        offset < self.data_len && len <= self.data_len
    }

    /// The two spans of a copy that wraps in a single mapping (or breaks the
    /// [`RingMem`] contract, which panics here), as data-region offsets and
    /// lengths.
    fn wrapped_spans(&self, offset: usize, len: usize) -> [(usize, usize); 2] {
        let (first, rest) = split_at_wrap(self.data_len, offset, len);
        [(offset, first), (0, rest)]
    }

    #[inline(never)]
    fn read_wrapped(&self, offset: usize, buf: &mut [u8]) {
        let [(at, first), (wrap_at, _)] = self.wrapped_spans(offset, buf.len());
        let (head, tail) = buf.split_at_mut(first);
        self.data.read(at, head);
        self.data.read(wrap_at, tail);
    }

    #[inline(never)]
    fn write_wrapped(&self, offset: usize, buf: &[u8]) {
        let [(at, first), (wrap_at, _)] = self.wrapped_spans(offset, buf.len());
        let (head, tail) = buf.split_at(first);
        self.data.write(at, head);
        self.data.write(wrap_at, tail);
    }
}

#[cfg(all(feature = "std", target_os = "linux"))]
mod memfd {
    use super::{MappedRingMem, MappingLayout};
    use crate::memory::{check_data_len, map_ring_fd};
    use crate::wire::PAGE_SIZE;
    use rustix::fs::{fcntl_add_seals, fcntl_get_seals, memfd_create, MemfdFlags, SealFlags};
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    impl MappedRingMem {
        /// Creates a zeroed ring in a new memfd and maps it. The returned fd
        /// lets another process (or [`open_fd`](Self::open_fd)) map the same
        /// ring; it is close-on-exec, so pass it on explicitly.
        ///
        /// The memfd is sealed at its size, so no one holding the fd (a
        /// hostile peer included) can truncate it under a mapping, which
        /// would make this process's next ring access die with `SIGBUS`.
        pub fn create_memfd(data_len: usize, layout: MappingLayout) -> io::Result<(Self, OwnedFd)> {
            check_data_len(data_len).map_err(invalid_input)?;
            let fd = memfd_create("vmbus-ring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
            rustix::fs::ftruncate(&fd, (PAGE_SIZE + data_len) as u64)?;
            fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
            let mem = Self::open_fd(&fd, layout)?;
            Ok((mem, fd))
        }

        /// Maps an existing ring file: a control page followed by the data
        /// area, whose size is the file's size less 4096.
        ///
        /// The file must be one whose holders cannot make this process's
        /// accesses fault, or it is refused with
        /// [`io::ErrorKind::InvalidInput`] before anything is mapped:
        /// - sealed against shrinking (as those of
        ///   [`create_memfd`](Self::create_memfd) are): a file truncated
        ///   under the mapping makes the next access die with `SIGBUS`;
        /// - on tmpfs (a memfd): a hugetlbfs file
        ///   passes the seal check, but a peer can punch a hole and drain the
        ///   huge-page pool, and the next fault is `SIGBUS`;
        /// - not sealed against writes, which would fail the writable
        ///   mapping half-way.
        pub fn open_fd(fd: impl AsFd, layout: MappingLayout) -> io::Result<Self> {
            check_ring_file(fd.as_fd())?;
            let stat = rustix::fs::fstat(&fd)?;
            let file_len = usize::try_from(stat.st_size).unwrap_or(usize::MAX);
            let data_len = file_len.saturating_sub(PAGE_SIZE);
            check_data_len(data_len).map_err(invalid_input)?;
            let region = map_ring_fd(fd.as_fd(), 0, data_len, layout == MappingLayout::Double)?;
            Self::new(region, layout).map_err(invalid_input)
        }
    }

    fn invalid_input(error: crate::OpenError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, error)
    }

    /// `statfs`'s filesystem type of tmpfs (and so of memfds).
    const TMPFS_MAGIC: u64 = 0x0102_1994;

    /// Refuses a ring file that could make a mapping of it fault: see
    /// [`MappedRingMem::open_fd`].
    fn check_ring_file(fd: BorrowedFd<'_>) -> io::Result<()> {
        let refuse = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("the ring file {why}")));
        let seals = fcntl_get_seals(fd).unwrap_or(SealFlags::empty());
        if !seals.contains(SealFlags::SHRINK) {
            return refuse(
                "is not sealed against shrinking: whoever holds it could truncate it and crash this process",
            );
        }
        if seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE) {
            return refuse("is sealed against writes: a ring must be mapped writable");
        }
        // `f_type`'s width differs between targets; the magic fits any.
        #[allow(clippy::unnecessary_cast)]
        let filesystem = rustix::fs::fstatfs(fd)?.f_type as u64;
        if filesystem != TMPFS_MAGIC {
            return refuse(&format!(
                "is not on tmpfs (filesystem type {filesystem:#x}): a hugetlbfs or disk file can make a fault fail with SIGBUS"
            ));
        }
        Ok(())
    }
}

impl ControlPage for MappedRingMem {
    #[inline]
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.control.load(word, order)
    }
    #[inline]
    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.control.store(word, value, order)
    }
}

impl RingMem for MappedRingMem {
    #[inline]
    fn data_len(&self) -> usize {
        self.data_len
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
        if !self.read_span(offset, buf) {
            self.read_wrapped(offset, buf);
        }
    }
    #[inline]
    fn write_data(&self, offset: usize, buf: &[u8]) {
        if !self.write_span(offset, buf) {
            self.write_wrapped(offset, buf);
        }
    }
    #[inline]
    fn read_data_word(&self, offset: usize) -> u64 {
        // A double mapping's region is twice the data area: the contract's
        // bound is checked first, then the region's.
        if offset >= self.data_len {
            word_outside_data_area(self.data_len, offset);
        }
        match self.data.try_load_u64(offset) {
            Some(value) => value,
            None => word_outside_data_area(self.data_len, offset),
        }
    }
    #[inline]
    fn write_data_word(&self, offset: usize, value: u64) {
        if offset >= self.data_len || !self.data.try_store_u64(offset, value) {
            word_outside_data_area(self.data_len, offset);
        }
    }
    #[inline]
    fn read_data_word_pair(&self, offset: usize) -> [u64; 2] {
        // In a double mapping the word after the data area's last is the
        // mirror of its first: every pair within the contract is one span.
        if offset >= self.data_len {
            word_outside_data_area(self.data_len, offset);
        }
        match self.data.try_load_u64_pair(offset) {
            Some(words) => words,
            None => [self.read_data_word(offset), self.read_data_word(0)],
        }
    }
    #[inline]
    fn write_frame_words(&self, offset: usize, len: usize, head: [u64; 2], last: u64) {
        if offset > self.data_len || len > self.data_len - offset || !self.data.try_store_frame(offset, len, head, last)
        {
            frame_outside_data_area(self.data_len, offset, len);
        }
    }
    fn zero_data(&self, offset: usize, len: usize) {
        let spans = match self.layout {
            MappingLayout::Double if self.within_contract(offset, len) => [(offset, len), (0, 0)],
            _ => self.wrapped_spans(offset, len),
        };
        for (at, len) in spans {
            self.data.fill_zero(at, len);
        }
    }
}
