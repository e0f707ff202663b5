//! Ring memory for loom models of the signalling rules (built only with
//! `RUSTFLAGS="--cfg loom"`).
//!
//! [`LoomRingMem`] implements [`RingMem`] so the real endpoints run unchanged
//! under loom:
//!
//! - the control words are `loom::sync::atomic::AtomicU32`, accessed with
//!   the ordering the endpoint asks for, so loom explores every value a load
//!   may return under the C++ memory model;
//! - [`full_fence`](ControlPage::full_fence) is `loom::sync::atomic::fence(SeqCst)`;
//! - the data area (one 4096-byte page) is one `loom::cell::UnsafeCell` per
//!   8-byte word, so loom reports a data race if the ring protocol ever lets
//!   the reader read bytes the writer is writing, or the writer overwrite
//!   bytes the reader has not finished with. Packets start on 8-byte
//!   boundaries and are multiples of 8 bytes, so no word is shared by two
//!   packets and the granularity adds no false races.
//!
//! Clones share the memory (through `loom::sync::Arc`): give each endpoint
//! its own clone.
//!
//! # `SeqCst` control-word accesses
//!
//! loom 0.7 models `fence(SeqCst)` but treats `SeqCst` loads and stores as
//! acquire and release only: it lets a `SeqCst` load be satisfied before an
//! earlier `SeqCst` store of the same thread becomes visible to the peer,
//! which the C++ model forbids (both are in the single total order). Code
//! that orders "store my word, load the peer's word" with `SeqCst` accesses
//! instead of a full fence would then fail spuriously. So this memory
//! restores that one guarantee: a `SeqCst` load issued after a `SeqCst`
//! store through the same handle, with no fence in between, is preceded by
//! a `fence(SeqCst)`. Mixed pairs (a `Release` store then a `SeqCst` load, or
//! a `SeqCst` store then a `Relaxed` load) get no fence, since the language
//! does not order them either. Each endpoint owns its handle, so "through the
//! same handle" means "in the same thread".
//!
//! One caveat either way: loom's `fence(SeqCst)` orders more than the C++
//! one (it makes everything before an earlier fence happen-before a later
//! fence, in any thread), so in some executions a fence can hide a data
//! race that the language would not let it prevent. The mutants of
//! `tests/loom_signalling.rs` that show a relaxed index racing on packet
//! bytes therefore also remove the fences.

use core::fmt;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32, Ordering};
use loom::sync::Arc;
use std::cell::Cell;
use vmbus_ring::wire::{PACKET_ALIGNMENT, PAGE_SIZE};
use vmbus_ring::{ControlPage, ControlWord, RingMem};

/// Size of a [`LoomRingMem`] data area: one page, the smallest a ring has.
pub const LOOM_DATA_LEN: usize = PAGE_SIZE;

/// Bytes per loom cell of the data area.
const CELL_LEN: usize = PACKET_ALIGNMENT;

/// The control words, in the order of [`LoomRingMem`]'s atomics.
const WORDS: [ControlWord; 5] = [
    ControlWord::WriteIndex,
    ControlWord::ReadIndex,
    ControlWord::InterruptMask,
    ControlWord::PendingSendSize,
    ControlWord::FeatureBits,
];

/// Ring memory whose every access is tracked by loom. See the module docs.
///
/// Create it inside a loom model (loom objects belong to one execution).
///
/// The control page holds only the five control words; its reserved bytes
/// always read as zero, and [`write_control`](RingMem::write_control)
/// accepts only whole control words and zero reserved bytes.
pub struct LoomRingMem {
    shared: Arc<Shared>,
    /// This handle has stored a control word with `SeqCst` and not fenced
    /// since (see "`SeqCst` control-word accesses" in the module docs).
    /// Per handle, not shared: clones start without one.
    seq_cst_store_unfenced: Cell<bool>,
}

struct Shared {
    words: [AtomicU32; WORDS.len()],
    data: Box<[UnsafeCell<[u8; CELL_LEN]>]>,
}

// SAFETY: the only non-`Sync` parts are the loom cells of the data area.
// Every access to their contents goes through `UnsafeCell::with` or
// `with_mut`, which first registers the access with the current loom
// execution (panicking outside one, so a thread loom does not schedule
// cannot reach the bytes) and checks it against every other access to the
// same cell, panicking on any not ordered by happens-before. Loom runs one
// modelled thread at a time and switches only at loom operations, and none
// runs while the pointer is live. So no unsynchronised access goes untracked.
unsafe impl Sync for Shared {}

impl LoomRingMem {
    /// A zeroed ring with a [`LOOM_DATA_LEN`]-byte data area.
    pub fn new() -> Self {
        let words = [0; WORDS.len()].map(AtomicU32::new);
        let data = (0..LOOM_DATA_LEN / CELL_LEN).map(|_| UnsafeCell::new([0; CELL_LEN])).collect();
        Self { shared: Arc::new(Shared { words, data }), seq_cst_store_unfenced: Cell::new(false) }
    }

    fn word(&self, word: ControlWord) -> &AtomicU32 {
        let at = WORDS.iter().position(|&w| w == word).expect("every ControlWord is in WORDS");
        &self.shared.words[at]
    }

    /// Calls `f(cell, range within the cell, range within the buffer)` for
    /// each cell that the `len` bytes at data offset `offset` touch, wrapping
    /// once around the end of the data area.
    fn for_each_cell(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&UnsafeCell<[u8; CELL_LEN]>, core::ops::Range<usize>, core::ops::Range<usize>),
    ) {
        assert!(
            offset < LOOM_DATA_LEN && len <= LOOM_DATA_LEN,
            "{len} bytes at {offset} outside a data area of {LOOM_DATA_LEN}"
        );
        let mut done = 0;
        while done < len {
            let at = (offset + done) % LOOM_DATA_LEN;
            let within = at % CELL_LEN;
            let n = (CELL_LEN - within).min(len - done);
            f(&self.shared.data[at / CELL_LEN], within..within + n, done..done + n);
            done += n;
        }
    }
}

impl Default for LoomRingMem {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for LoomRingMem {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), seq_cst_store_unfenced: Cell::new(false) }
    }
}

impl fmt::Debug for LoomRingMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No loads here: formatting must not add loom operations.
        f.debug_struct("LoomRingMem").field("data_len", &LOOM_DATA_LEN).finish_non_exhaustive()
    }
}

impl ControlPage for LoomRingMem {
    fn load(&self, word: ControlWord, order: Ordering) -> u32 {
        if order == Ordering::SeqCst && self.seq_cst_store_unfenced.replace(false) {
            fence(Ordering::SeqCst);
        }
        self.word(word).load(order)
    }

    fn store(&self, word: ControlWord, value: u32, order: Ordering) {
        self.word(word).store(value, order);
        if order == Ordering::SeqCst {
            self.seq_cst_store_unfenced.set(true);
        }
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
        self.seq_cst_store_unfenced.set(false);
    }
}

impl RingMem for LoomRingMem {
    fn data_len(&self) -> usize {
        LOOM_DATA_LEN
    }

    fn read_control(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset <= PAGE_SIZE && buf.len() <= PAGE_SIZE - offset, "outside the control page");
        buf.fill(0);
        for word in WORDS {
            let bytes = self.load(word, Ordering::Relaxed).to_le_bytes();
            for (i, byte) in bytes.into_iter().enumerate() {
                if let Some(at) = (word.offset() + i).checked_sub(offset).filter(|&at| at < buf.len()) {
                    buf[at] = byte;
                }
            }
        }
    }

    fn write_control(&self, offset: usize, buf: &[u8]) {
        assert!(offset <= PAGE_SIZE && buf.len() <= PAGE_SIZE - offset, "outside the control page");
        let end = offset + buf.len();
        for word in WORDS {
            let at = word.offset();
            if at >= end || at + 4 <= offset {
                continue;
            }
            assert!(offset <= at && at + 4 <= end, "LoomRingMem writes whole control words only");
            let value = u32::from_le_bytes(buf[at - offset..at - offset + 4].try_into().unwrap());
            self.store(word, value, Ordering::Relaxed);
        }
        let in_a_word = |at: usize| WORDS.iter().any(|w| (w.offset()..w.offset() + 4).contains(&at));
        assert!(
            buf.iter().enumerate().all(|(i, &byte)| byte == 0 || in_a_word(offset + i)),
            "LoomRingMem keeps only the control words: reserved bytes must be zero"
        );
    }

    fn read_data(&self, offset: usize, buf: &mut [u8]) {
        self.for_each_cell(offset, buf.len(), |cell, within, into| {
            // SAFETY: loom tracks this read of the cell (and panics if a
            // write to it is not ordered with it); the pointer is live only
            // for this copy, which runs no loom operation.
            let word = cell.with(|word| unsafe { *word });
            buf[into].copy_from_slice(&word[within]);
        });
    }

    fn write_data(&self, offset: usize, buf: &[u8]) {
        self.for_each_cell(offset, buf.len(), |cell, within, from| {
            // SAFETY: as in `read_data`, for a tracked write.
            cell.with_mut(|word| unsafe { (&mut *word)[within].copy_from_slice(&buf[from]) });
        });
    }

    fn zero_data(&self, offset: usize, len: usize) {
        self.for_each_cell(offset, len, |cell, within, _| {
            // SAFETY: as in `read_data`, for a tracked write.
            cell.with_mut(|word| unsafe { (&mut *word)[within].fill(0) });
        });
    }
}
