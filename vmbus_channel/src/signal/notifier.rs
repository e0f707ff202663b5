//! The receiving end of a signal: counts the peer's signals, remembers
//! whether it closed, and wakes whoever waits for either.

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

/// Wakers kept at most; a queue's two halves need two.
const MAX_WAITERS: usize = 8;

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
    /// Whether someone may be waiting: a waker registered, or a thread in
    /// [`wait`](Self::wait). Set under the lock before a waiter's last look
    /// at the generation, cleared under the lock when the waiters are woken,
    /// so that [`notify`](Self::notify) takes the lock only when there may
    /// be someone to wake. (A signal usually finds its reader busy, not
    /// asleep; the lock, the condition variable and the wakers are for the
    /// other case.)
    maybe_waiting: AtomicBool,
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
        // Store-load against the waiters, which set `maybe_waiting` and then
        // read the generation, all sequentially consistent: either a waiter
        // sees this signal's generation and does not sleep, or this sees its
        // flag and wakes it (taking the lock, so after it registered).
        if self.maybe_waiting.load(Ordering::SeqCst) {
            self.wake_all();
        }
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
        self.maybe_waiting.store(true, Ordering::SeqCst);
        if self.has_news(seen) {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
            if waiters.len() >= MAX_WAITERS {
                // Futures dropped while waiting leave their wakers behind.
                // Rather than grow without bound, wake them all early: a
                // live waiter re-checks and registers again.
                waiters.drain(..).for_each(Waker::wake);
            }
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Blocks the thread until a signal arrived after `seen` was read, or the
    /// peer closed.
    pub fn wait(&self, seen: u64) {
        let mut waiters = self.waiters.lock();
        loop {
            // Set again after every wake-up: the waker cleared it.
            self.maybe_waiting.store(true, Ordering::SeqCst);
            if self.has_news(seen) {
                return;
            }
            self.condvar.wait(&mut waiters);
        }
    }

    fn has_news(&self, seen: u64) -> bool {
        self.generation() != seen || self.is_closed()
    }

    fn wake_all(&self) {
        let wakers = {
            let mut waiters = self.waiters.lock();
            self.maybe_waiting.store(false, Ordering::SeqCst);
            std::mem::take(&mut *waiters)
        };
        self.condvar.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}
