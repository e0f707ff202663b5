//! One guest page as a [`SharedRegion`]: the crate's only unsafe code.
//!
//! Everything [`SharedRegion::from_raw`] requires is checked or argued in
//! [`guest_page`]; the rest of the GPADL code is safe.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;
use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmbus_ring::wire::PAGE_SIZE;
use vmbus_ring::{SharedRegion, REGION_ALIGNMENT};

/// Why a guest page number cannot back a ring page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageError {
    /// `gpn * 4096` does not fit in 64 bits.
    AddressOverflow,
    /// The page is not wholly inside one region that is mapped into this
    /// process for the region's whole life.
    NotMapped,
    /// The page's host address is not 8-byte aligned.
    Misaligned,
    /// The page's region is not mapped writable into this process.
    ReadOnly,
}

/// `mmap`'s `PROT_WRITE` bit (Linux), as vm-memory reports a region's `prot`.
const PROT_WRITE: i32 = 0x2;

/// Guest page `gpn` of `memory`, 4096 bytes, as a region that keeps `memory`
/// (and so the mapping) alive.
pub(super) fn guest_page<B>(memory: &Arc<GuestMemoryMmap<B>>, gpn: u64) -> Result<SharedRegion, PageError>
where
    B: Bitmap + Send + Sync + 'static,
{
    let address = gpn.checked_mul(PAGE_SIZE as u64).map(GuestAddress).ok_or(PageError::AddressOverflow)?;
    // `get_slice` hands out a span only if it lies inside one region, so a
    // page in a gap, past the end, or straddling two regions is refused.
    let slice = memory.get_slice(address, PAGE_SIZE).map_err(|_| PageError::NotMapped)?;
    if slice.len() != PAGE_SIZE {
        return Err(PageError::NotMapped);
    }
    // A region may be mapped read-only; the first ring write to it would be
    // SIGSEGV. (`get_slice` found the page, so its region exists.)
    let region = memory.find_region(address).ok_or(PageError::NotMapped)?;
    if region.prot() & PROT_WRITE == 0 {
        return Err(PageError::ReadOnly);
    }
    let ptr = slice.ptr_guard_mut().as_ptr();
    // The guard's pointer must be the region's own mapping, not one made for
    // the guard alone (Xen grants are mapped on demand and unmapped when the
    // guard drops, which would leave the region dangling).
    if memory.get_host_address(address).ok() != Some(ptr) {
        return Err(PageError::NotMapped);
    }
    let ptr = NonNull::new(ptr).ok_or(PageError::NotMapped)?;
    if !(ptr.as_ptr() as usize).is_multiple_of(REGION_ALIGNMENT) {
        return Err(PageError::Misaligned);
    }
    // SAFETY: `SharedRegion::from_raw` needs, for as long as the owner lives:
    // - Valid for reads and writes of 4096 bytes (writes: the region is
    //   mapped with `PROT_WRITE`, checked above): vm-memory built `slice`
    //   (an unsafe promise of its region implementation) over exactly these
    //   4096 bytes (length checked above) inside one region's host mapping,
    //   and the pointer is that region's lasting host address for the page
    //   (compared with `get_host_address` above), not a transient mapping.
    // - Still valid later: `slice` borrows the `G` inside the `Arc`, and the
    //   owner below is a clone of that `Arc`. That `G` is never moved (it sits
    //   in the `Arc`'s allocation), never mutated (an `Arc` gives no `&mut`,
    //   and a `GuestMemoryMmap` has no interior mutability: its regions are
    //   fixed when it is built; this function takes that concrete type, not
    //   any `GuestMemoryBackend`, whose implementations could unmap regions
    //   through `&self`), and never dropped while a region holds its `Arc`. So a borrow of
    //   it could legally last as long as any clone of this region, and the
    //   mapping the slice points into outlives them all (a `GuestMemoryMmap`
    //   unmaps a region only when its last handle drops).
    // - Aligned to `REGION_ALIGNMENT`: checked above, not assumed.
    // - No Rust reference to the bytes: vm-memory reaches guest memory only
    //   through raw pointers and volatile accesses (`VolatileSlice`, `Bytes`),
    //   never `&[u8]`; the guest writes through its own mapping of the same
    //   memory, at any moment, from its vCPUs. `SharedRegion` is built for
    //   exactly that: it too never forms a reference, reaches the bytes only
    //   through atomics and per-byte atomic copies into private buffers that
    //   its callers validate, so a concurrent guest write can change values
    //   but cannot cause undefined behaviour.
    // - No in-process non-atomic access: NOT fully met, and it cannot be
    //   from here. Other code of this process holding the `GuestMemoryMmap`
    //   can reach the same pages through vm-memory's own volatile and bulk
    //   copies, which are not atomic: racing with the channel, that is a
    //   data race by Rust's rules, as every racing guest-memory access in
    //   vm-memory's model is. `RawChannel::from_gpadl` documents that the
    //   ring pages belong to the channel, so only a VMM that breaks that
    //   (an emulated device pointed at the ring pages) gets there.
    Ok(unsafe { SharedRegion::from_raw(ptr, PAGE_SIZE, Arc::clone(memory)) })
}
