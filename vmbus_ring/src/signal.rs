//! Signal decisions, from control-word values or from a control page alone.
//!
//! The endpoints call these after each commit; code that holds only a
//! control page (a hypervisor's interrupt path, a debugger) can call them
//! too. The rules: a writer signals when the ring went from
//! empty to non-empty and the reader has not masked interrupts; a reader
//! signals when the free space crossed the writer's pending send size.

use crate::index;
use crate::memory::{ControlPage, ControlWord};
use crate::wire::PACKET_ALIGNMENT;
use crate::Field;
use core::sync::atomic::Ordering;

/// Whether a writer that just published a batch must signal the reader: the
/// reader has not masked interrupts and had read everything up to where the
/// batch started (so the ring went from empty to non-empty).
///
/// ```
/// use vmbus_ring::signal::reader_signal_due;
/// assert!(reader_signal_due(0, 64, 64)); // reader was caught up, not masked
/// assert!(!reader_signal_due(1, 64, 64)); // reader is polling
/// assert!(!reader_signal_due(0, 0, 64)); // reader still had data: it will see the new packets
/// ```
#[inline]
pub const fn reader_signal_due(interrupt_mask: u32, read_index: u32, batch_start: u32) -> bool {
    interrupt_mask == 0 && read_index == batch_start
}

/// Whether a reader that just moved its read index from `old_read` to
/// `new_read` must signal the writer: the writer asked for
/// `pending_send_size` free bytes and the free space went from below that to
/// at least it.
///
/// Free space is always a multiple of 8, so the pending send size is rounded
/// up to one, and capped at the most an empty ring has free (`data_len - 8`):
/// peers exist that ask for `data_len - 1`, which only an empty ring can
/// honour. Indices that are not valid for `data_len` cannot be reasoned
/// about, so they yield a signal: a spare signal costs little, a lost one
/// stalls the writer forever.
///
/// ```
/// use vmbus_ring::signal::writer_signal_due;
/// // 4096-byte data area, writer at 4000, reader moves from 0 to 2000.
/// // Free space goes from 88 to 2088 bytes.
/// assert!(writer_signal_due(4096, 1000, 4000, 0, 2000)); // crossed 1000
/// assert!(!writer_signal_due(4096, 3000, 4000, 0, 2000)); // still below 3000
/// assert!(!writer_signal_due(4096, 0, 4000, 0, 2000)); // writer not waiting
/// assert!(writer_signal_due(4096, 4095, 4000, 0, 4000)); // asked for "everything": ring now empty
/// ```
pub fn writer_signal_due(
    data_len: u32,
    pending_send_size: u32,
    write_index: u32,
    old_read: u32,
    new_read: u32,
) -> bool {
    match wanted_room(data_len, pending_send_size, &[write_index, old_read, new_read]) {
        Wanted::Nothing => false,
        Wanted::Unknowable => true,
        Wanted::Bytes(wanted) => {
            let before = index::free(data_len, write_index, old_read);
            let after = index::free(data_len, write_index, new_read);
            u64::from(before) < wanted && u64::from(after) >= wanted
        }
    }
}

/// What a writer's pending send size asks for, as the signal decisions
/// read it.
enum Wanted {
    /// No pending send size: the writer is not waiting.
    Nothing,
    /// An index is not valid for the ring: the decision cannot be reasoned
    /// about, so it yields a signal.
    Unknowable,
    /// This many free bytes: the pending send size rounded up to a multiple
    /// of 8 (free space always is one), and capped at what an empty ring
    /// has free (peers exist that ask for `data_len - 1`).
    Bytes(u64),
}

fn wanted_room(data_len: u32, pending_send_size: u32, indices: &[u32]) -> Wanted {
    if pending_send_size == 0 {
        return Wanted::Nothing;
    }
    if indices.iter().any(|&value| index::check(value, data_len, Field::WriteIndex).is_err()) {
        return Wanted::Unknowable;
    }
    let most_free = data_len.saturating_sub(PACKET_ALIGNMENT as u32);
    Wanted::Bytes(u64::from(pending_send_size).next_multiple_of(PACKET_ALIGNMENT as u64).min(most_free.into()))
}

/// Whether a reader should be awake now, judging by the control page alone:
/// the ring holds packets it has not read and it has not masked interrupts.
/// A reader in that state that sleeps missed a signal (or its writer never
/// sent one); signalling it again unsticks the channel.
///
/// ```
/// use vmbus_ring::signal::reader_missed_signal;
/// assert!(reader_missed_signal(0, 64, 128)); // unread packets, not polling
/// assert!(!reader_missed_signal(0, 128, 128)); // nothing to read
/// assert!(!reader_missed_signal(1, 64, 128)); // polling: it will see them
/// ```
#[inline]
pub const fn reader_missed_signal(interrupt_mask: u32, read_index: u32, write_index: u32) -> bool {
    interrupt_mask == 0 && read_index != write_index
}

/// Whether a writer should be awake now, judging by the control page alone:
/// it asked for `pending_send_size` free bytes (rounded and capped as in
/// [`writer_signal_due`]) and they are free. A writer in that state that
/// sleeps missed a signal; signalling it again unsticks the channel.
/// Indices that are not valid for `data_len` yield `true`, as there.
///
/// ```
/// use vmbus_ring::signal::writer_missed_signal;
/// assert!(writer_missed_signal(4096, 1000, 2000, 2000)); // empty ring, writer waiting
/// assert!(!writer_missed_signal(4096, 1000, 1000, 1504)); // 496 free, 1000 wanted
/// assert!(!writer_missed_signal(4096, 0, 2000, 2000)); // writer not waiting
/// ```
pub fn writer_missed_signal(data_len: u32, pending_send_size: u32, write_index: u32, read_index: u32) -> bool {
    match wanted_room(data_len, pending_send_size, &[write_index, read_index]) {
        Wanted::Nothing => false,
        Wanted::Unknowable => true,
        Wanted::Bytes(wanted) => u64::from(index::free(data_len, write_index, read_index)) >= wanted,
    }
}

/// For a writer that has just stored its new write index (release): a full
/// fence, then the reader-signal decision from the control page.
#[inline]
pub fn reader_needs_signal(control: &impl ControlPage, batch_start: u32) -> bool {
    // Rule "a writer publishes a batch": orders the write-index store before
    // the mask and read-index loads, against the sleeping reader's mirror
    // (mask store, fence, write-index load in `prepare_to_sleep`).
    control.full_fence();
    let mask = control.load(ControlWord::InterruptMask, Ordering::Relaxed);
    let read = control.load(ControlWord::ReadIndex, Ordering::Relaxed);
    reader_signal_due(mask, read, batch_start)
}

/// For a reader that has just stored its new read index `new_read` (release),
/// moving it from `old_read`: a full fence, then the writer-signal decision
/// from the control page. `data_len` is the ring's data-area size.
#[inline]
pub fn writer_needs_signal(control: &impl ControlPage, data_len: u32, old_read: u32, new_read: u32) -> bool {
    // Rule "a reader that frees space": orders the read-index store before
    // the pending-send-size and write-index loads, against the blocked
    // writer's mirror (in `OutgoingRing::set_pending_send_size`).
    control.full_fence();
    let pending = control.load(ControlWord::PendingSendSize, Ordering::Relaxed);
    if pending == 0 {
        return false;
    }
    let write = control.load(ControlWord::WriteIndex, Ordering::Relaxed);
    writer_signal_due(data_len, pending, write, old_read, new_read)
}
