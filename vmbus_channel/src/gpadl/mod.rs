//! Channel rings in guest memory, described by a GPADL page list.
//!
//! A channel's two rings live in one list of guest page numbers (a GPADL):
//! pages `[0, split)` hold the guest-to-host ring and pages `[split, n)` the
//! host-to-guest ring, each starting with its control page. The pages may be
//! anywhere in guest memory, in any order; each becomes one
//! [`SharedRegion`] of a [`PagedRingMem`], inside a [`GuestRingMem`] that
//! marks the pages this side writes in guest memory's dirty bitmap.
//!
//! The page list usually comes from the guest, so nothing in it is trusted:
//! every page number is checked against the guest memory map, and the
//! control pages' indices are validated when the rings are opened. A page
//! listed twice is allowed; it only garbles the guest's own channel, which
//! the ring endpoints then report as corrupt.

mod guest_page;
mod guest_ring;

use crate::channel::RawChannel;
use crate::signal::Signal;
use guest_page::{guest_page, PageError};
pub use guest_ring::GuestRingMem;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;
use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmbus_ring::wire::{MAX_DATA_LEN, PAGE_SIZE};
use vmbus_ring::{IncomingRing, OpenError, OutgoingRing, PagedRingMem, RingPages, SharedRegion};

/// Which end of the channel this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The host: reads the guest-to-host ring and writes the host-to-guest ring.
    Host,
    /// The guest: reads the host-to-guest ring and writes the guest-to-host ring.
    Guest,
}

impl Side {
    /// The ring this side reads.
    ///
    /// ```
    /// use vmbus_channel::{GpadlRing, Side};
    /// assert_eq!(Side::Host.incoming(), GpadlRing::GuestToHost);
    /// assert_eq!(Side::Guest.incoming(), GpadlRing::HostToGuest);
    /// ```
    pub fn incoming(self) -> GpadlRing {
        match self {
            Side::Host => GpadlRing::GuestToHost,
            Side::Guest => GpadlRing::HostToGuest,
        }
    }

    /// The ring this side writes.
    ///
    /// ```
    /// use vmbus_channel::{GpadlRing, Side};
    /// assert_eq!(Side::Host.outgoing(), GpadlRing::HostToGuest);
    /// assert_eq!(Side::Guest.outgoing(), GpadlRing::GuestToHost);
    /// ```
    pub fn outgoing(self) -> GpadlRing {
        match self {
            Side::Host => GpadlRing::HostToGuest,
            Side::Guest => GpadlRing::GuestToHost,
        }
    }
}

/// One of the two rings of a GPADL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpadlRing {
    /// Pages `[0, split)`: the guest writes it, the host reads it.
    GuestToHost,
    /// Pages `[split, n)`: the host writes it, the guest reads it.
    HostToGuest,
}

impl fmt::Display for GpadlRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpadlRing::GuestToHost => "guest-to-host",
            GpadlRing::HostToGuest => "host-to-guest",
        })
    }
}

/// Why a GPADL's page list cannot hold a channel's rings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GpadlError {
    /// The split is past the end of the page list.
    #[error(
        "split {split} is past the end of a GPADL of {pages} pages \
         (each ring needs a control page and a data page: 2 <= split <= pages - 2)"
    )]
    SplitOutOfRange {
        /// The split given: the index of the host-to-guest ring's control page.
        split: usize,
        /// Pages in the GPADL.
        pages: usize,
    },
    /// The split leaves a ring without a control page and a data page.
    #[error(
        "the {ring} ring gets {pages} page(s) of the GPADL; \
         a ring needs a control page and at least one data page (2 <= split <= pages - 2)"
    )]
    TooFewPages {
        /// The ring that is too small.
        ring: GpadlRing,
        /// The pages it would have.
        pages: usize,
    },
    /// A page number whose guest address, `gpn * 4096`, does not fit in 64 bits.
    #[error("GPADL page {index} has page number {gpn:#x}, whose guest address overflows 64 bits")]
    PageAddressOverflow {
        /// Position of the page in the GPADL.
        index: usize,
        /// The page number.
        gpn: u64,
    },
    /// A page that is not wholly inside one region of guest memory mapped
    /// into this process: in a gap, past the end, straddling two regions, or
    /// mapped only on demand.
    #[error(
        "GPADL page {index} (page number {gpn:#x}, guest address {address:#x}) is not backed by guest memory: \
         the 4 KiB page must lie inside one region mapped into this process",
        address = gpn.wrapping_mul(PAGE_SIZE as u64)
    )]
    PageNotBacked {
        /// Position of the page in the GPADL.
        index: usize,
        /// The page number.
        gpn: u64,
    },
    /// A page whose host address is not 8-byte aligned, so its control words
    /// cannot be atomics (a region that starts at an odd guest address).
    #[error("GPADL page {index} (page number {gpn:#x}) is mapped at a host address that is not 8-byte aligned")]
    PageMisaligned {
        /// Position of the page in the GPADL.
        index: usize,
        /// The page number.
        gpn: u64,
    },
    /// A page in a region mapped read-only into this process: the ring's
    /// writer could not write it.
    #[error("GPADL page {index} (page number {gpn:#x}) is in guest memory mapped read-only")]
    PageReadOnly {
        /// Position of the page in the GPADL.
        index: usize,
        /// The page number.
        gpn: u64,
    },
    /// A ring that cannot be opened: its data area is too large, or its
    /// control page holds invalid indices.
    #[error("the {ring} ring cannot be opened: {source}")]
    Ring {
        /// The ring.
        ring: GpadlRing,
        /// What is wrong with it.
        #[source]
        source: OpenError,
    },
}

/// The memories of the two rings of a GPADL, as one side sees them.
#[derive(Debug, Clone)]
pub struct GpadlRings<B: Bitmap + 'static = ()> {
    /// The ring this side reads (the peer writes it).
    pub incoming: GuestRingMem<B>,
    /// The ring this side writes (the peer reads it).
    pub outgoing: GuestRingMem<B>,
}

/// The two rings of the GPADL `gpns` over `memory`, split at page `split`,
/// as `side` uses them.
///
/// Pages `[0, split)` are the guest-to-host ring and `[split, n)` the
/// host-to-guest ring, each a control page followed by data pages, so
/// `2 <= split <= n - 2`. Every page must lie inside one region of `memory`
/// that is mapped into this process, at an 8-byte-aligned host address.
///
/// The rings hold a clone of `memory`, so the mapping outlives them even if
/// the caller drops its own. Every write through the rings (this side's
/// packets and control words, either ring) is marked in the dirty bitmap of
/// the region holding the page: with `GuestMemoryMmap<AtomicBitmap>`, a
/// VMM tracking dirty pages for migration sees exactly the ring pages this
/// side changed.
///
/// ```
/// use vm_memory::{GuestAddress, GuestMemoryMmap};
/// use vmbus_channel::{gpadl_rings, GpadlError, GpadlRing, Side};
/// use vmbus_ring::RingMem;
///
/// let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 * 4096)])?;
/// let rings = gpadl_rings(&memory, &[9, 2, 7, 4, 5], 2, Side::Host)?;
/// assert_eq!(rings.incoming.data_len(), 4096); // pages 9 (control) and 2
/// assert_eq!(rings.outgoing.data_len(), 2 * 4096); // pages 7 (control), 4, 5
///
/// // A split that leaves the host-to-guest ring only its control page.
/// let error = gpadl_rings(&memory, &[9, 2, 7, 4, 5], 4, Side::Host).unwrap_err();
/// assert!(matches!(error, GpadlError::TooFewPages { ring: GpadlRing::HostToGuest, pages: 1 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gpadl_rings<B>(
    memory: &GuestMemoryMmap<B>,
    gpns: &[u64],
    split: usize,
    side: Side,
) -> Result<GpadlRings<B>, GpadlError>
where
    B: Bitmap + Send + Sync + 'static,
{
    if split > gpns.len() {
        return Err(GpadlError::SplitOutOfRange { split, pages: gpns.len() });
    }
    let (guest_to_host, host_to_guest) = gpns.split_at(split);
    check_ring_size(GpadlRing::GuestToHost, guest_to_host.len())?;
    check_ring_size(GpadlRing::HostToGuest, host_to_guest.len())?;
    // The regions borrow from this one clone; each holds the `Arc`.
    let memory = Arc::new(memory.clone());
    let guest_to_host = ring_memory(&memory, GpadlRing::GuestToHost, guest_to_host, 0)?;
    let host_to_guest = ring_memory(&memory, GpadlRing::HostToGuest, host_to_guest, split)?;
    Ok(match side {
        Side::Host => GpadlRings { incoming: guest_to_host, outgoing: host_to_guest },
        Side::Guest => GpadlRings { incoming: host_to_guest, outgoing: guest_to_host },
    })
}

impl<B: Bitmap + Send + Sync + 'static, S: Signal> RawChannel<GuestRingMem<B>, S> {
    /// The `side` end of a channel whose rings live in the GPADL `gpns` over
    /// guest memory `memory`, split at page `split` (see [`gpadl_rings`]),
    /// signalling the peer through `signal`.
    ///
    /// The rings open at the indices their control pages hold (a fresh
    /// GPADL is zeroed, so both start empty); invalid indices are an error.
    ///
    /// The ring pages belong to the channel from then on: other code of this
    /// process that copies to or from them through vm-memory (an emulated
    /// device pointed at them by the guest, say) races with the channel's
    /// accesses the way vm-memory's guest-memory model allows, outside the
    /// data-race freedom `vmbus_ring` otherwise gives.
    ///
    /// ```
    /// use vm_memory::{GuestAddress, GuestMemoryMmap};
    /// use vmbus_channel::{GpadlError, InProcessSignal, RawChannel, Side};
    ///
    /// let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 8 * 4096)])?;
    /// let (signal, _peer) = InProcessSignal::pair();
    /// let host = RawChannel::from_gpadl(&memory, &[3, 1, 6, 0], 2, Side::Host, signal)?;
    /// assert_eq!((host.incoming().data_len(), host.outgoing().data_len()), (4096, 4096));
    ///
    /// // Page 8 is past the end of guest memory.
    /// let (signal, _peer) = InProcessSignal::pair();
    /// let error = RawChannel::from_gpadl(&memory, &[3, 1, 6, 8], 2, Side::Host, signal).unwrap_err();
    /// assert!(matches!(error, GpadlError::PageNotBacked { index: 3, gpn: 8 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_gpadl(
        memory: &GuestMemoryMmap<B>,
        gpns: &[u64],
        split: usize,
        side: Side,
        signal: S,
    ) -> Result<Self, GpadlError> {
        let rings = gpadl_rings(memory, gpns, split, side)?;
        let incoming =
            IncomingRing::new(rings.incoming).map_err(|source| GpadlError::Ring { ring: side.incoming(), source })?;
        let outgoing =
            OutgoingRing::new(rings.outgoing).map_err(|source| GpadlError::Ring { ring: side.outgoing(), source })?;
        Ok(RawChannel { incoming, outgoing, signal: Arc::new(signal) })
    }
}

/// Checks that `ring` can have `pages` pages: a control page, at least one
/// data page, and a data area that [`PagedRingMem`] accepts. Done before any
/// page is looked up, so an oversized list costs no work per page.
fn check_ring_size(ring: GpadlRing, pages: usize) -> Result<(), GpadlError> {
    if pages < 2 {
        return Err(GpadlError::TooFewPages { ring, pages });
    }
    let data_len = (pages - 1).saturating_mul(PAGE_SIZE);
    if data_len > MAX_DATA_LEN {
        return Err(GpadlError::Ring { ring, source: OpenError::InvalidSize { data_len } });
    }
    Ok(())
}

/// The memory of `ring`, over the guest pages `gpns`, the first of which is
/// page `first_index` of the GPADL.
fn ring_memory<B>(
    memory: &Arc<GuestMemoryMmap<B>>,
    ring: GpadlRing,
    gpns: &[u64],
    first_index: usize,
) -> Result<GuestRingMem<B>, GpadlError>
where
    B: Bitmap + Send + Sync + 'static,
{
    let pages = gpns
        .iter()
        .enumerate()
        .map(|(offset, &gpn)| {
            let index = first_index + offset;
            guest_page(memory, gpn).map_err(|error| match error {
                PageError::AddressOverflow => GpadlError::PageAddressOverflow { index, gpn },
                PageError::NotMapped => GpadlError::PageNotBacked { index, gpn },
                PageError::Misaligned => GpadlError::PageMisaligned { index, gpn },
                PageError::ReadOnly => GpadlError::PageReadOnly { index, gpn },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paged = PagedRingMem::new(&GuestRingPages { pages }).map_err(|source| GpadlError::Ring { ring, source })?;
    // Every page number was checked above, so its address does not overflow.
    let addresses = gpns.iter().map(|&gpn| GuestAddress(gpn * PAGE_SIZE as u64)).collect();
    Ok(GuestRingMem::new(paged, Arc::clone(memory), addresses))
}

/// A ring's guest pages, the control page first.
struct GuestRingPages {
    pages: Vec<SharedRegion>,
}

impl RingPages for GuestRingPages {
    fn control_page(&self) -> SharedRegion {
        self.pages[0].clone()
    }
    fn data_page_count(&self) -> usize {
        self.pages.len().saturating_sub(1)
    }
    fn data_page(&self, index: usize) -> SharedRegion {
        self.pages[index + 1].clone()
    }
}
