//! The one place that touches memory shared with the peer.
//!
//! A [`SharedRegion`] is a span of bytes that the peer may change at any
//! moment. It is never turned into a Rust reference: words are reached through
//! atomics and bulk data through raw-pointer copies into or out of private
//! buffers, so a racing peer can at worst make the private copy hold values
//! it would not have chosen, which the callers validate before use.
//!
//! Every access this crate makes to the shared bytes is atomic by Rust's
//! rules: control, descriptor and header words through `AtomicU32` and
//! `AtomicU64`, bulk copies through per-byte atomic copies (the
//! `atomic_copy` child module: inline-assembly moves on x86_64, relaxed
//! atomics elsewhere). So no use of the safe API is a data race, however
//! many threads of this process reach the same ring: honest endpoints on two
//! threads, a [`RingDump`](crate::RingDump) of a live ring on a third, two
//! writers over one memory, or a thread scribbling on purpose. Racing
//! accesses can still produce bytes nobody chose (a torn packet), which the
//! endpoints validate as they validate a foreign peer's. Writers outside the
//! process, a VM, or another mapping of the same file are outside Rust's
//! memory model altogether; they too can only produce arbitrary bytes.
//!
//! One rule atomics alone do not meet: Rust (following C++) leaves undefined
//! two unsynchronised atomic accesses of different sizes that partly overlap
//! while one writes. Honest endpoints never race at all, and dumps load
//! control words and data words with the sizes the endpoints store them
//! with; what remains is a dump's word loads against a payload copy in
//! flight, and anything against a thread that breaks the protocol (the
//! `atomic_copy` module says more).
//!
//! What the atomics cannot promise is order: a payload is visible to the
//! reader only because the endpoints publish the write index with release
//! and load it with acquire, which the loom models check.
//!
//! Every `unsafe` block of the crate lives in this module and its child.
#![allow(unsafe_code)]

mod atomic_copy;

use super::ControlWord;
use crate::wire::PAGE_SIZE;
use alloc::sync::Arc;
use alloc::vec::Vec;
use atomic_copy::{copy_from_shared, copy_to_shared, zero_shared};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Alignment every region start must have, so control words can be atomics.
pub const REGION_ALIGNMENT: usize = 8;

/// The cache-line size [`SharedRegion::new_zeroed`] aligns to.
const CACHE_LINE: usize = 64;

/// A span of memory shared with the peer, accessed only by copies and atomics.
///
/// Cloning is cheap: clones share the memory and keep it alive.
#[derive(Clone)]
pub struct SharedRegion {
    ptr: NonNull<u8>,
    len: usize,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the region is only reached through atomics and per-byte atomic
// copies, both of which may run on any thread at once (that is the shared-memory model this
// type exists for), and the owner that keeps the memory alive is `Send + Sync`.
unsafe impl Send for SharedRegion {}
// SAFETY: as for `Send`: no method hands out a reference to the bytes.
unsafe impl Sync for SharedRegion {}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

impl SharedRegion {
    /// A zero-filled region on the heap, `len` bytes long, starting on a
    /// 64-byte (cache-line) boundary.
    ///
    /// ```
    /// use vmbus_ring::SharedRegion;
    /// let region = SharedRegion::new_zeroed(100);
    /// assert_eq!(region.len(), 100);
    /// ```
    pub fn new_zeroed(len: usize) -> Self {
        // A cache-line start keeps bulk copies from splitting every line
        // (a large heap allocation starts 16 bytes past a page); the words
        // before it are spare.
        const LINE_WORDS: usize = CACHE_LINE / size_of::<AtomicU64>();
        let words: Vec<AtomicU64> = (0..len.div_ceil(8) + LINE_WORDS).map(|_| AtomicU64::new(0)).collect();
        let skip = words.as_ptr().align_offset(CACHE_LINE).min(LINE_WORDS);
        // The heap buffer stays put when the `Vec` moves into the `Arc`.
        let ptr = NonNull::from(&words[skip..]).cast::<u8>();
        Self { ptr, len, _owner: Arc::new(words) }
    }

    /// A region over memory this crate does not own, such as guest memory or a
    /// mapping made elsewhere.
    ///
    /// # Safety
    ///
    /// For as long as `owner` (and so every clone of the region) lives, the
    /// caller promises that:
    /// - `ptr` is valid for reads and writes of `len` bytes;
    /// - no Rust reference (`&[u8]`, `&mut [u8]`, `&T`) to those bytes is
    ///   used in this process, other than the atomics this crate makes for
    ///   its own word accesses;
    /// - nothing in this process accesses those bytes other than through
    ///   this region (or its clones) or through atomics (no plain reads or
    ///   writes through pointers: those would race with the region's atomic
    ///   accesses). Writers outside the process, a VM, or another mapping of
    ///   the same file may change them at any time.
    ///
    /// # Panics
    ///
    /// If `ptr` is not aligned to [`REGION_ALIGNMENT`] (control words and
    /// descriptor words are reached as atomics, which need it).
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize, owner: impl Send + Sync + 'static) -> Self {
        assert!(
            (ptr.as_ptr() as usize).is_multiple_of(REGION_ALIGNMENT),
            "a shared region must start {REGION_ALIGNMENT}-byte aligned"
        );
        Self { ptr, len, _owner: Arc::new(owner) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset` as a region of their own, sharing this
    /// one's memory (and keeping all of it alive). `None` unless the span is
    /// inside this region and `offset` is a multiple of
    /// [`REGION_ALIGNMENT`], so that the new region is aligned as this one.
    ///
    /// ```
    /// use vmbus_ring::SharedRegion;
    /// let region = SharedRegion::new_zeroed(8192);
    /// let page = region.sub_region(4096, 4096).unwrap();
    /// page.write(0, b"hi");
    /// let mut bytes = [0; 2];
    /// region.read(4096, &mut bytes);
    /// assert_eq!(&bytes, b"hi");
    /// assert!(region.sub_region(4096, 4097).is_none());
    /// assert!(region.sub_region(4, 8).is_none());
    /// ```
    pub fn sub_region(&self, offset: usize, len: usize) -> Option<SharedRegion> {
        if offset > self.len || len > self.len - offset || !offset.is_multiple_of(REGION_ALIGNMENT) {
            return None;
        }
        // SAFETY: `offset` is inside the region (checked above), so the
        // pointer stays within (or one past the end of) its span.
        let ptr = unsafe { self.ptr.add(offset) };
        Some(Self { ptr, len, _owner: self._owner.clone() })
    }

    /// Whether the region starts on a [`REGION_ALIGNMENT`] boundary.
    pub(crate) fn is_aligned(&self) -> bool {
        (self.ptr.as_ptr() as usize).is_multiple_of(REGION_ALIGNMENT)
    }

    /// The `u32` at `offset`.
    ///
    /// # Panics
    ///
    /// If the word is not 4-aligned or not inside the region.
    #[inline]
    pub fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.word(offset).load(order)
    }

    /// Stores `value` in the `u32` at `offset`.
    ///
    /// # Panics
    ///
    /// If the word is not 4-aligned or not inside the region.
    #[inline]
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.word(offset).store(value, order)
    }

    #[inline]
    fn word(&self, offset: usize) -> &AtomicU32 {
        if !offset.is_multiple_of(4) || offset >= self.len || self.len - offset < 4 {
            word_outside(offset);
        }
        // SAFETY: the word is in bounds (checked above) and 4-aligned (every
        // constructor checks or makes the region start 8-aligned, and
        // `offset` is a multiple of 4). An `AtomicU32` is an `UnsafeCell`, so
        // the shared reference permits the concurrent writes the peer makes.
        // Within this process every access to shared bytes is atomic (see
        // the module documentation). The reference lives no longer than
        // `&self`, which keeps the memory alive.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast::<u32>()) }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// # Panics
    ///
    /// If the bytes are not all inside the region.
    #[inline]
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        self.check_span(offset, buf.len());
        // SAFETY: the span is inside the region (checked above), valid for
        // reads for as long as `self` lives. `buf` is private memory: it cannot
        // overlap the region, because no Rust reference to the region may
        // exist (constructor contract). A peer in another process or VM may
        // write the span while it is copied, and so may a thread of this
        // process: the copy's shared accesses are atomic, so that is no data
        // race; it can only leave arbitrary bytes in `buf`, which every
        // caller validates before use. No reference to the shared bytes is
        // ever formed.
        unsafe { copy_from_shared(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) }
    }

    /// Copies `buf` into the region starting at `offset`.
    ///
    /// # Panics
    ///
    /// If the bytes are not all inside the region.
    #[inline]
    pub fn write(&self, offset: usize, buf: &[u8]) {
        self.check_span(offset, buf.len());
        // SAFETY: the span is inside the region (checked above), valid for
        // writes for as long as `self` lives, and cannot overlap the private
        // `buf` (no reference to the region exists). A peer racing on the
        // same bytes sees a mix of old and new bytes, which it must validate;
        // our side keeps no assumption about the span's contents.
        unsafe { copy_to_shared(buf.as_ptr(), self.ptr.as_ptr().add(offset), buf.len()) }
    }

    /// Like [`read`](Self::read), but through 4-byte atomic loads of the
    /// aligned words that hold the span, each loaded once: the size the
    /// endpoints store control words with, so that a dump of a live control
    /// page does not mix access sizes with them (see the `atomic_copy`
    /// module).
    ///
    /// # Panics
    ///
    /// If a word holding the bytes is not all inside the region.
    pub(crate) fn read_u32_words(&self, offset: usize, buf: &mut [u8]) {
        self.check_span(offset, buf.len());
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done;
            let word_at = at - at % 4;
            let word = self.load_u32(word_at, Ordering::Relaxed).to_ne_bytes();
            let from = at - word_at;
            let n = (4 - from).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&word[from..from + n]);
            done += n;
        }
    }

    /// Like [`read`](Self::read), but for a span that starts inside the
    /// region (`offset < len`) and ends inside it; returns `false`, copying
    /// nothing, for any other. One check for callers that have a fallback
    /// (a copy that wraps around the end of a data area, say).
    #[inline]
    pub(crate) fn try_read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset >= self.len || buf.len() > self.len - offset {
            return false;
        }
        // SAFETY: as for `read`: the span is inside the region (checked
        // above) and `buf` is private memory.
        unsafe { copy_from_shared(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) }
        true
    }

    /// Like [`write`](Self::write), but for a span that starts inside the
    /// region and ends inside it; returns `false`, copying nothing, for any
    /// other (see [`try_read`](Self::try_read)).
    #[inline]
    pub(crate) fn try_write(&self, offset: usize, buf: &[u8]) -> bool {
        if offset >= self.len || buf.len() > self.len - offset {
            return false;
        }
        // SAFETY: as for `write`: the span is inside the region (checked
        // above) and `buf` is private memory.
        unsafe { copy_to_shared(buf.as_ptr(), self.ptr.as_ptr().add(offset), buf.len()) }
        true
    }

    /// The little-endian `u64` at `offset`, read with one 8-byte access;
    /// `None` unless `offset` is a multiple of 8 and the word is inside the
    /// region.
    #[inline]
    pub(crate) fn try_load_u64(&self, offset: usize) -> Option<u64> {
        Some(u64::from_le(self.word_u64(offset)?.load(Ordering::Relaxed)))
    }

    /// Stores `value` little-endian in the `u64` at `offset` with one 8-byte
    /// access; returns `false`, storing nothing, unless `offset` is a
    /// multiple of 8 and the word is inside the region.
    #[inline]
    pub(crate) fn try_store_u64(&self, offset: usize, value: u64) -> bool {
        match self.word_u64(offset) {
            Some(word) => {
                word.store(value.to_le(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The little-endian `u64`s at `offset` and `offset + 8`, read with two
    /// 8-byte accesses and one check (a packet's descriptor); `None` unless
    /// `offset` is a multiple of 8 and both words are inside the region.
    #[inline]
    pub(crate) fn try_load_u64_pair(&self, offset: usize) -> Option<[u64; 2]> {
        if !offset.is_multiple_of(8) || self.len < 16 || offset > self.len - 16 {
            return None;
        }
        // SAFETY: `offset` and `offset + 8` are multiples of 8 whose words
        // end at or before `offset + 16 <= self.len` (checked above).
        let [first, second] = unsafe { [self.word_u64_unchecked(offset), self.word_u64_unchecked(offset + 8)] };
        Some([first, second].map(|word| u64::from_le(word.load(Ordering::Relaxed))))
    }

    /// Stores `head` little-endian in the words at `offset` and `offset + 8`,
    /// then `last` in the word that ends `len` bytes after `offset`, with one
    /// check (a packet's descriptor and footer); returns `false`, storing
    /// nothing, unless `offset` and `len` are multiples of 8, `len` is at
    /// least 16 and the `len` bytes are inside the region.
    #[inline]
    pub(crate) fn try_store_frame(&self, offset: usize, len: usize, head: [u64; 2], last: u64) -> bool {
        if !offset.is_multiple_of(8)
            || !len.is_multiple_of(8)
            || len < 16
            || offset > self.len
            || len > self.len - offset
        {
            return false;
        }
        // SAFETY: `offset..offset + len` is inside the region (checked
        // above), and the words at `offset`, `offset + 8` and
        // `offset + len - 8` are multiples of 8 (as `offset` and `len` are)
        // that end inside that span (`len >= 16`).
        let [first, second, footer] =
            unsafe { [offset, offset + 8, offset + len - 8].map(|at| self.word_u64_unchecked(at)) };
        first.store(head[0].to_le(), Ordering::Relaxed);
        second.store(head[1].to_le(), Ordering::Relaxed);
        footer.store(last.to_le(), Ordering::Relaxed);
        true
    }

    #[inline]
    fn word_u64(&self, offset: usize) -> Option<&AtomicU64> {
        // For a multiple of 8, below the region's length rounded down to a
        // multiple of 8 is the same as having all 8 bytes inside it.
        if !offset.is_multiple_of(8) || offset >= self.len & !7 {
            return None;
        }
        // SAFETY: checked just above.
        Some(unsafe { self.word_u64_unchecked(offset) })
    }

    /// The 8-byte word at `offset`, as an atomic.
    ///
    /// # Safety
    ///
    /// `offset` is a multiple of 8 and `offset + 8 <= self.len`.
    #[inline]
    unsafe fn word_u64_unchecked(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset < self.len & !7);
        // SAFETY: the word is in bounds (the caller's contract) and 8-aligned
        // (every constructor checks or makes the region start 8-aligned, and
        // `offset` is a multiple of 8). As for `word`: an atomic permits the
        // peer's concurrent writes, and the reference lives no longer than
        // `&self`. The same bytes are also reached by the per-byte atomic
        // copies of the data area (a payload copied over the padding word, a
        // reader's bulk copy of a range list): atomic too, so no data race,
        // though of mixed sizes when a thread breaks the protocol (see the
        // `atomic_copy` module).
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast::<u64>()) }
    }

    /// Sets `len` bytes starting at `offset` to zero.
    ///
    /// # Panics
    ///
    /// If the bytes are not all inside the region.
    #[inline]
    pub fn fill_zero(&self, offset: usize, len: usize) {
        self.check_span(offset, len);
        // SAFETY: in bounds and writable as for `write`; no reference formed.
        unsafe { zero_shared(self.ptr.as_ptr().add(offset), len) }
    }

    #[inline]
    fn check_span(&self, offset: usize, len: usize) {
        if offset > self.len || len > self.len - offset {
            span_outside(offset, len, self.len);
        }
    }
}

/// A region at least a control page long, starting 8-aligned: its control
/// words are reached with no bounds check at run time, since every control
/// word lies inside the first page (the check below is on constants
/// wherever the word is known, and folds away).
#[derive(Debug, Clone)]
pub(crate) struct ControlRegion(SharedRegion);

impl ControlRegion {
    /// `region` as a control page; `None` if it is shorter than a page or
    /// does not start 8-aligned.
    pub(crate) fn new(region: SharedRegion) -> Option<Self> {
        (region.len() >= PAGE_SIZE && region.is_aligned()).then_some(Self(region))
    }

    /// The whole region, for byte copies.
    pub(crate) fn region(&self) -> &SharedRegion {
        &self.0
    }

    /// Loads a control word.
    #[inline]
    pub(crate) fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        self.word(word).load(order)
    }

    /// Stores a control word.
    #[inline]
    pub(crate) fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.word(word).store(value, order)
    }

    #[inline]
    fn word(&self, word: ControlWord) -> &AtomicU32 {
        let offset = word.offset();
        if !offset.is_multiple_of(4) || offset > PAGE_SIZE - 4 {
            word_outside(offset);
        }
        // SAFETY: `offset` is a multiple of 4 with its 4 bytes inside a page
        // (checked above), and the region is at least a page long and starts
        // 8-aligned (checked by `new`), so the word is in bounds and aligned. As for
        // `SharedRegion::word`: an atomic permits the peer's concurrent
        // writes, and the reference lives no longer than `&self`.
        unsafe { AtomicU32::from_ptr(self.0.ptr.as_ptr().add(offset).cast::<u32>()) }
    }
}

/// The panic of a control-word check, out of line like [`span_outside`].
#[cold]
#[inline(never)]
#[track_caller]
fn word_outside(offset: usize) -> ! {
    panic!("control word {offset} outside the region")
}

/// The panic of a span check, kept out of line so that the checks inline small.
#[cold]
#[inline(never)]
#[track_caller]
fn span_outside(offset: usize, len: usize, region_len: usize) -> ! {
    panic!("{len} bytes at {offset} outside a region of {region_len}")
}

#[cfg(all(feature = "std", target_os = "linux"))]
pub(crate) use mapping::map_ring_fd;

#[cfg(all(feature = "std", target_os = "linux"))]
mod mapping {
    use super::SharedRegion;
    use core::ptr::NonNull;
    use rustix::fd::BorrowedFd;
    use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
    use std::io;

    /// An `mmap`ed span, unmapped on drop.
    struct Mapping {
        ptr: NonNull<u8>,
        len: usize,
    }

    // SAFETY: the mapping is plain shared memory with no thread affinity;
    // only the address is held.
    unsafe impl Send for Mapping {}
    // SAFETY: as for `Send`; `Mapping` itself never touches the bytes.
    unsafe impl Sync for Mapping {}

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr..ptr+len` is a mapping this value created and
            // owns; every `SharedRegion` over it holds this owner, so none is
            // left to use the span once it is dropped. An error leaves the
            // mapping in place, which leaks address space but is sound.
            let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }

    /// The file's length (control page and data area) and the mapping's
    /// (the data area once more if `double`); `None` if either overflows
    /// `usize`, as a peer's 2 GiB file would on a 32-bit target.
    pub(crate) fn mapping_lengths(data_len: usize, double: bool) -> Option<(usize, usize)> {
        let file_len = crate::wire::PAGE_SIZE.checked_add(data_len)?;
        let map_len = if double { file_len.checked_add(data_len)? } else { file_len };
        Some((file_len, map_len))
    }

    impl SharedRegion {
        /// Maps a ring from a file the caller trusts (a device such as a uio
        /// map, or a plain file): a 4096-byte control page then `data_len`
        /// bytes of data area, shared and read-write, from the file's mmap
        /// offset `offset`. Hand the region to
        /// [`MappedRingMem::new`](crate::MappedRingMem::new) with the same
        /// layout.
        ///
        /// For a plain file, `offset` is a byte offset, and
        /// [`MappingLayout::Double`](crate::MappingLayout::Double) maps the
        /// data area a second time right after the first. For a uio device,
        /// `offset` selects a map (map N at N times the page size) and the
        /// ring starts at that map's start; a device does not map its bytes
        /// again at a further offset, so only
        /// [`MappingLayout::Single`](crate::MappingLayout::Single) is
        /// accepted for anything but a regular file.
        ///
        /// Unlike [`MappedRingMem::open_fd`](crate::MappedRingMem::open_fd),
        /// which refuses any file whose holders could make an access fault,
        /// this checks only what it can: `data_len` is a valid data-area size,
        /// `offset` is page-aligned, and a regular file is long enough (a
        /// device reports no length).
        ///
        /// ```
        /// use vmbus_ring::{MappedRingMem, MappingLayout, OutgoingPacket, OutgoingRing, SharedRegion};
        /// let file = tempfile_in_tmp()?;
        /// file.set_len(4096 + 8192)?;
        /// // SAFETY: this process created the file, and nothing truncates it.
        /// let region = unsafe { SharedRegion::map_trusted_fd(&file, 0, 8192, MappingLayout::Double) }?;
        /// let mem = MappedRingMem::new(region, MappingLayout::Double)?;
        /// OutgoingRing::new(mem)?.write(&OutgoingPacket::in_band(1), &[b"hi"])?;
        /// # fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
        /// #     let path = std::env::temp_dir().join(format!("vmbus-ring-doc-{}", std::process::id()));
        /// #     let file = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
        /// #     std::fs::remove_file(&path)?;
        /// #     Ok(file)
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        ///
        /// [`io::ErrorKind::InvalidInput`] for a bad `data_len` or `offset`,
        /// a regular file shorter than the ring, a double mapping of
        /// anything but a regular file, or a ring too large for the address
        /// space; the `mmap` error if the kernel refuses the mapping.
        ///
        /// # Safety
        ///
        /// For as long as the region (or any clone) lives, the caller
        /// promises that every byte of the file's span
        /// `offset..offset + 4096 + data_len` can be read and written through
        /// a shared mapping without a fault: nobody truncates the file or
        /// punches holes in it, a sparse file's filesystem (a full disk, a
        /// tmpfs at its size limit) can still allocate its holes, the device
        /// behind it stays present and backs the whole span with memory. A fault kills this process with
        /// `SIGBUS`; that is the crash [`open_fd`](crate::MappedRingMem::open_fd)
        /// prevents by refusing such files. What the peer writes into the
        /// span is not the caller's concern: the endpoints validate it.
        pub unsafe fn map_trusted_fd(
            fd: impl rustix::fd::AsFd,
            offset: u64,
            data_len: usize,
            layout: crate::MappingLayout,
        ) -> io::Result<SharedRegion> {
            let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
            crate::memory::check_data_len(data_len).map_err(|error| invalid(error.to_string()))?;
            if !offset.is_multiple_of(crate::wire::PAGE_SIZE as u64) {
                return Err(invalid(format!("offset {offset} is not a multiple of the page size")));
            }
            let fd = fd.as_fd();
            let stat = rustix::fs::fstat(fd)?;
            // In `u64`: `data_len` may be close to 4 GiB on a 32-bit target.
            let ring_len = crate::wire::PAGE_SIZE as u64 + data_len as u64;
            let is_regular = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
            if !is_regular && layout == crate::MappingLayout::Double {
                return Err(invalid(
                    "a double mapping needs a regular file: a device does not map its bytes again at a further offset"
                        .to_owned(),
                ));
            }
            let file_len = u64::try_from(stat.st_size).unwrap_or(0);
            if is_regular && offset.checked_add(ring_len).is_none_or(|end| end > file_len) {
                return Err(invalid(format!(
                    "the file is {file_len} bytes long: a ring of {ring_len} bytes at {offset} does not fit"
                )));
            }
            map_ring_fd(fd, offset, data_len, layout == crate::MappingLayout::Double)
        }
    }

    /// Maps a ring file's span at `offset` (control page then data area)
    /// shared and read-write. With `double`, the data area is mapped a
    /// second time right after the first, so the region is
    /// `4096 + 2 * data_len` bytes long.
    ///
    /// The caller has checked that `data_len` is a valid data-area size and
    /// that `offset` is page-aligned (so `offset + 4096` cannot overflow a
    /// `u64` a file offset fits in).
    pub(crate) fn map_ring_fd(
        fd: BorrowedFd<'_>,
        offset: u64,
        data_len: usize,
        double: bool,
    ) -> io::Result<SharedRegion> {
        let page = crate::wire::PAGE_SIZE;
        let (file_len, map_len) = mapping_lengths(data_len, double).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the ring is too large to map in this address space")
        })?;
        let rw = ProtFlags::READ | ProtFlags::WRITE;
        // SAFETY: a fresh mapping at an address the kernel picks cannot
        // overlap any memory this process uses; `Mapping` takes ownership at
        // once so it is unmapped on every path.
        let base = unsafe { mmap_anonymous(core::ptr::null_mut(), map_len, ProtFlags::empty(), MapFlags::PRIVATE) }?;
        let mapping = Mapping { ptr: NonNull::new(base.cast()).ok_or(io::ErrorKind::AddrNotAvailable)?, len: map_len };
        // SAFETY: MAP_FIXED replaces pages inside the reservation made just
        // above and owned by `mapping`, so no other memory is affected.
        unsafe { mmap(base, file_len, rw, MapFlags::SHARED | MapFlags::FIXED, fd, offset) }?;
        if double {
            let data_offset = offset
                .checked_add(page as u64)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the ring's file offset overflows"))?;
            // SAFETY: as above; the target span `[file_len, map_len)` lies
            // inside the reservation, and the file span at `data_offset` with
            // length `data_len` is the ring's data area (the caller sized the
            // file, or promised the span exists).
            unsafe {
                mmap(
                    base.cast::<u8>().add(file_len).cast(),
                    data_len,
                    rw,
                    MapFlags::SHARED | MapFlags::FIXED,
                    fd,
                    data_offset,
                )
            }?;
        }
        let ptr = mapping.ptr;
        // SAFETY: the span is mapped read-write and page-aligned for as long
        // as `mapping` lives, and the region owns `mapping`. No Rust
        // reference to it exists; other processes may change it, which the
        // region's accessors allow for.
        Ok(unsafe { SharedRegion::from_raw(ptr, map_len, mapping) })
    }

    #[cfg(test)]
    mod tests {
        use super::mapping_lengths;

        #[test]
        fn mapping_lengths_refuse_overflow() {
            assert_eq!(mapping_lengths(4096, true), Some((8192, 12288)));
            assert_eq!(mapping_lengths(usize::MAX - 4096, false), Some((usize::MAX, usize::MAX)));
            assert_eq!(mapping_lengths(usize::MAX - 4096, true), None);
            assert_eq!(mapping_lengths(usize::MAX / 2, true), None);
            assert_eq!(mapping_lengths(usize::MAX - 4095, false), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SharedRegion;

    /// A word access succeeds exactly where all 8 bytes lie inside the
    /// region at an 8-aligned offset, for region lengths that are and are
    /// not multiples of 8; a refused store changes nothing.
    #[test]
    fn word_accesses_stay_inside_the_region() {
        for len in [0, 7, 8, 15, 16, 20, 23, 24] {
            let region = SharedRegion::new_zeroed(len);
            for offset in (0..len + 16).chain([usize::MAX - 7, usize::MAX]) {
                let fits = offset % 8 == 0 && offset.checked_add(8).is_some_and(|end| end <= len);
                assert_eq!(region.try_store_u64(offset, u64::MAX), fits, "store at {offset} of {len}");
                assert_eq!(region.try_load_u64(offset), fits.then_some(u64::MAX), "load at {offset} of {len}");
            }
            let mut bytes = vec![0; len];
            region.read(0, &mut bytes);
            let stored = len / 8 * 8;
            assert!(bytes[..stored].iter().all(|&b| b == 0xff) && bytes[stored..].iter().all(|&b| b == 0), "{len}");
        }
    }

    /// A word pair is read, and a frame stored, exactly where all its bytes
    /// lie inside the region at 8-aligned offsets; a refused frame changes
    /// nothing.
    #[test]
    fn word_pairs_and_frames_stay_inside_the_region() {
        let ends = |offset: usize, len: usize| offset.checked_add(len);
        for region_len in [0, 8, 15, 16, 23, 24, 31, 40] {
            let region = SharedRegion::new_zeroed(region_len);
            for offset in (0..region_len + 16).chain([usize::MAX - 15, usize::MAX - 7]) {
                let fits = offset % 8 == 0 && ends(offset, 16).is_some_and(|end| end <= region_len);
                assert_eq!(region.try_load_u64_pair(offset).is_some(), fits, "pair at {offset} of {region_len}");
                for len in (0..=region_len + 8).chain([usize::MAX - 7]) {
                    let fits =
                        fits && len >= 16 && len % 8 == 0 && ends(offset, len).is_some_and(|end| end <= region_len);
                    let mut before = vec![0; region_len];
                    region.read(0, &mut before);
                    assert_eq!(region.try_store_frame(offset, len, [1, 2], 3), fits, "frame {len} at {offset}");
                    let mut after = vec![0; region_len];
                    region.read(0, &mut after);
                    assert!(fits || after == before, "a refused frame of {len} at {offset} wrote");
                    if fits {
                        // The last word is stored after the head, over its
                        // second word when the frame is two words long.
                        let second = if len == 16 { 3 } else { 2 };
                        assert_eq!(region.try_load_u64_pair(offset), Some([1, second]), "frame {len} at {offset}");
                        assert_eq!(region.try_load_u64(offset + len - 8), Some(3), "frame {len} at {offset}");
                    }
                }
            }
        }
    }
}
