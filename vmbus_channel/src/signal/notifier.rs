//! The receiving end of a signal: counts the peer's signals, remembers
//! whether it closed, and wakes whoever waits for either.

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

/// Signals received from the peer, as a generation count that waiters
/// compare against, plus the peer's closing.
///
/// A waiter reads [`generation`](Self::generation) *before* it checks the
/// ring, then waits until the generation moves on. A signal that arrives
/// between the check and the wait moves the generation, so it is never lost.
///
/// ```
/// use vmbus_channel::Notifier;
/// let notifier = Notifier::new();
/// let seen = notifier.generation();
/// notifier.notify();
/// notifier.wait(seen); // returns at once: a signal came after `seen`
/// assert_eq!(notifier.generation(), seen + 1);
/// ```
#[derive(Debug, Default)]
pub struct Notifier {
    generation: AtomicU64,
    closed: AtomicBool,
    waiters: Mutex<SmallVec<[Waker; 2]>>,
    condvar: Condvar,
}

impl Notifier {
    /// A notifier that has seen no signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a signal from the peer and wakes every waiter.
    pub fn notify(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    /// Records that the peer closed and wakes every waiter. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// How many signals have arrived so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the peer has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ready once a signal arrived after `seen` was read, or the peer closed;
    /// otherwise registers the task's waker.
    pub fn poll_wait(&self, cx: &mut Context<'_>, seen: u64) -> Poll<()> {
        if self.has_news(seen) {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.lock();
        if self.has_news(seen) {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Blocks the thread until a signal arrived after `seen` was read, or the
    /// peer closed.
    pub fn wait(&self, seen: u64) {
        let mut waiters = self.waiters.lock();
        while !self.has_news(seen) {
            self.condvar.wait(&mut waiters);
        }
    }

    fn has_news(&self, seen: u64) -> bool {
        self.generation() != seen || self.is_closed()
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.waiters.lock());
        self.condvar.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}
