//! A global allocator that counts the allocations one thread makes while
//! it asks to, so a fuzz target can check that a parser allocates nothing.
//!
//! Install it with `#[global_allocator]` in the binary (the `gpa_ranges`
//! target and the corpus tests do); without it [`count_allocations`] says it
//! could not count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the allocations of the thread that called
/// [`count_allocations`] while its closure runs.
pub struct CountingAlloc;

/// The counting thread's token (the address of its [`TOKEN`]); 0 when none counts.
static COUNTING_THREAD: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: reaching it never
    // allocates and never fails, even while the thread exits.
    static TOKEN: u8 = const { 0 };
}

fn thread_token() -> usize {
    TOKEN.with(|token| token as *const u8 as usize)
}

fn note_allocation() {
    let counting = COUNTING_THREAD.load(Ordering::Relaxed);
    if counting != 0 && counting == thread_token() {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only atomics and a thread-local without a destructor.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the number of allocations (and
/// reallocations) this thread made meanwhile, or `None` if [`CountingAlloc`]
/// is not the global allocator. One thread counts at a time; another thread
/// asking meanwhile gets `None`.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let token = thread_token();
    if COUNTING_THREAD.compare_exchange(0, token, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return (f(), None);
    }
    COUNT.store(0, Ordering::Relaxed);
    // A probe: with the counting allocator installed this counts one.
    drop(black_box(Box::new(black_box(0u8))));
    let installed = COUNT.load(Ordering::Relaxed) == 1;
    COUNT.store(0, Ordering::Relaxed);
    let result = f();
    let count = COUNT.load(Ordering::Relaxed);
    COUNTING_THREAD.store(0, Ordering::Relaxed);
    (result, installed.then_some(count))
}
