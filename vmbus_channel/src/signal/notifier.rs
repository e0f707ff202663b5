//! The receiving end of a signal: counts the peer's signals, remembers
//! whether it closed, and wakes whoever waits for either.

#[cfg(all(test, vmbus_channel_loom))]
mod loom_model;
mod sync;

use self::sync::{AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard};
use crate::events;
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// Wakers kept at most: a queue's two halves need two. Past this many, the
/// kept ones are woken and dropped (those of futures dropped while waiting
/// would otherwise pile up), so more live waiters than this on one end
/// wake each other spuriously until a signal comes.
const MAX_WAITERS: usize = 64;

/// What woke a waiter: a signal from the peer, or the peer closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerEvent {
    /// The peer signalled after the generation the waiter had seen.
    Signalled,
    /// The peer closed (or died): no signal will come any more.
    Closed,
}

/// Signals received from the peer, as a generation count that waiters
/// compare against, plus the peer's closing.
///
/// A waiter reads [`generation`](Self::generation) *before* it checks the
/// ring, then waits until the generation moves on. A signal that arrives
/// between the check and the wait moves the generation, so it is never lost.
///
/// Signals keep one; a [`Signal`](crate::Signal) of one's own feeds one
/// with [`notify`](Self::notify) and [`close`](Self::close). The notifier
/// shows only what its signal has taken in: wait on an fd-backed signal
/// through [`Signal::poll_signal`](crate::Signal::poll_signal) and
/// [`Signal::wait`](crate::Signal::wait), which read the fd, not through
/// the notifier's own waits, which would not.
///
/// ```
/// use vmbus_channel::{Notifier, PeerEvent};
/// let notifier = Notifier::new();
/// let seen = notifier.generation();
/// notifier.notify();
/// // Returns at once: a signal came after `seen`.
/// assert_eq!(notifier.wait(seen), PeerEvent::Signalled);
/// assert_eq!(notifier.generation(), seen + 1);
/// ```
#[derive(Debug, Default)]
pub struct Notifier {
    generation: AtomicU64,
    closed: AtomicBool,
    /// Whether someone may be waiting: a waker registered, or a thread
    /// blocked. Set under the lock before a waiter's last look at the
    /// generation, cleared under the lock when the waiters are woken, so
    /// that [`notify`](Self::notify) takes the lock only when there may be
    /// someone to wake. (A signal usually finds its reader busy, not asleep;
    /// the lock, the condition variable and the wakers are for the other
    /// case.)
    maybe_waiting: AtomicBool,
    waiters: Mutex<Waiters>,
    condvar: Condvar,
}

#[derive(Debug, Default)]
struct Waiters {
    wakers: SmallVec<[Waker; 2]>,
    /// A thread is blocked polling the signal's fd on everyone's behalf
    /// (see [`Notifier::wait_polling`]): nobody else may take signals from
    /// the fd meanwhile, or that thread could sleep on an emptied fd.
    fd_poller: bool,
}

/// What an fd-backed signal found when it read its fd without waiting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// At least one signal arrived.
    pub signalled: bool,
    /// The peer is gone.
    pub closed: bool,
}

/// What [`Notifier::poll_fd`] decided.
pub(crate) enum FdPoll {
    /// News for the waiter.
    Ready(PeerEvent),
    /// No news; the waker is registered and a thread polling the fd will
    /// wake it.
    Pending,
    /// No news; the waker is registered, and the fd must be watched by the
    /// signal's reactor to learn of the next signal.
    WatchFd,
}

impl Waiters {
    /// Keeps `waker` to wake, once.
    fn register(&mut self, waker: &Waker) {
        if self.wakers.iter().any(|kept| kept.will_wake(waker)) {
            return;
        }
        if self.wakers.len() >= MAX_WAITERS {
            // Futures dropped while waiting leave their wakers behind.
            // Rather than grow without bound, wake them all early: a live
            // waiter re-checks and registers again.
            self.wakers.drain(..).for_each(Waker::wake);
        }
        self.wakers.push(waker.clone());
    }
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
        if !self.closed.swap(true, Ordering::SeqCst) {
            events::peer_closed();
        }
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

    /// What happened since `seen` was read: the peer closed, signalled, or
    /// neither (`None`).
    pub fn news(&self, seen: u64) -> Option<PeerEvent> {
        if self.is_closed() {
            Some(PeerEvent::Closed)
        } else if self.generation() != seen {
            Some(PeerEvent::Signalled)
        } else {
            None
        }
    }

    /// Ready once a signal arrived after `seen` was read, or the peer closed;
    /// otherwise registers the task's waker.
    pub fn poll_wait(&self, cx: &mut Context<'_>, seen: u64) -> Poll<PeerEvent> {
        if let Some(event) = self.news(seen) {
            return Poll::Ready(event);
        }
        let mut waiters = self.waiters.lock();
        self.maybe_waiting.store(true, Ordering::SeqCst);
        if let Some(event) = self.news(seen) {
            return Poll::Ready(event);
        }
        waiters.register(cx.waker());
        Poll::Pending
    }

    /// Blocks the thread until a signal arrived after `seen` was read, or the
    /// peer closed.
    pub fn wait(&self, seen: u64) -> PeerEvent {
        loop {
            if let Some(event) = self.wait_until(seen, None) {
                return event;
            }
        }
    }

    /// Like [`wait`](Self::wait), but gives up at `deadline` (`None`: never)
    /// and returns `None` then.
    pub fn wait_until(&self, seen: u64, deadline: Option<Instant>) -> Option<PeerEvent> {
        let mut waiters = self.waiters.lock();
        loop {
            // Set again after every wake-up: the waker cleared it.
            self.maybe_waiting.store(true, Ordering::SeqCst);
            if let Some(event) = self.news(seen) {
                return Some(event);
            }
            match deadline {
                None => self.condvar.wait(&mut waiters),
                Some(deadline) => {
                    if self.condvar.wait_until(&mut waiters, deadline).timed_out() {
                        return self.news(seen);
                    }
                }
            }
        }
    }

    /// Takes whatever an fd-backed signal's fd holds, without waiting
    /// (`take` reads it), and records it: unless a thread is blocked polling
    /// that fd, which takes it instead. Under the lock, so that a thread
    /// about to poll either sees what `take` found or keeps `take` from
    /// running: the fd is never emptied under a polling thread.
    pub(crate) fn take_fd(&self, take: impl FnOnce() -> Found) {
        let waiters = self.waiters.lock();
        if !waiters.fd_poller {
            let found = take();
            if found != Found::default() {
                self.record(waiters, found);
            }
        }
    }

    /// The async wait of an fd-backed signal: [`take_fd`](Self::take_fd),
    /// then, if there is no news, registers the task's waker and says
    /// whether the caller must have its reactor watch the fd (no thread
    /// polls it).
    pub(crate) fn poll_fd(&self, cx: &mut Context<'_>, seen: u64, take: impl FnOnce() -> Found) -> FdPoll {
        let mut waiters = self.waiters.lock();
        self.maybe_waiting.store(true, Ordering::SeqCst);
        if !waiters.fd_poller {
            let found = take();
            if found != Found::default() {
                self.record(waiters, found);
                // Whatever was found is news (a counted signal or a close);
                // should it not be, register below like any other wait.
                if let Some(event) = self.news(seen) {
                    return FdPoll::Ready(event);
                }
                waiters = self.waiters.lock();
            }
        }
        if let Some(event) = self.news(seen) {
            return FdPoll::Ready(event);
        }
        waiters.register(cx.waker());
        if waiters.fd_poller {
            FdPoll::Pending
        } else {
            FdPoll::WatchFd
        }
    }

    /// The blocking wait of an fd-backed signal: until a signal arrived
    /// after `seen` or the peer closed, or `deadline` passes (`None` then).
    /// `poll_fd(deadline)` waits in this thread for the fd to become
    /// readable (or the deadline) and then takes what it holds.
    ///
    /// One thread at a time polls the fd, on behalf of every waiter; other
    /// threads wait on the condition variable for what it records, and
    /// async waiters leave the fd to it meanwhile.
    pub(crate) fn wait_fd(
        &self,
        seen: u64,
        deadline: Option<Instant>,
        mut poll_fd: impl FnMut(Option<Instant>) -> Found,
    ) -> Option<PeerEvent> {
        let mut waiters = self.waiters.lock();
        loop {
            self.maybe_waiting.store(true, Ordering::SeqCst);
            if let Some(event) = self.news(seen) {
                return Some(event);
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return None;
            }
            if waiters.fd_poller {
                match deadline {
                    None => self.condvar.wait(&mut waiters),
                    Some(deadline) => {
                        self.condvar.wait_until(&mut waiters, deadline);
                    }
                }
                continue;
            }
            waiters.fd_poller = true;
            drop(waiters);
            let found = poll_fd(deadline);
            waiters = self.waiters.lock();
            waiters.fd_poller = false;
            // Recorded or not, everyone re-checks: another thread may take
            // over the polling, and async waiters go back to their reactor.
            self.record(waiters, found);
            waiters = self.waiters.lock();
        }
    }

    /// Records what was found on the fd and wakes every waiter. A signal
    /// found after the close was recorded is not counted (such as the kick
    /// [`EventFdSignal::peer_closed`](crate::EventFdSignal::peer_closed)
    /// gives a thread polling the fd).
    fn record(&self, waiters: MutexGuard<'_, Waiters>, found: Found) {
        if found.signalled && !self.is_closed() {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        if found.closed && !self.closed.swap(true, Ordering::SeqCst) {
            events::peer_closed();
        }
        self.wake_locked(waiters);
    }

    fn wake_all(&self) {
        self.wake_locked(self.waiters.lock());
    }

    /// Wakes every waiter, releasing the lock before the wakers run.
    fn wake_locked(&self, mut waiters: MutexGuard<'_, Waiters>) {
        self.maybe_waiting.store(false, Ordering::SeqCst);
        let wakers = std::mem::take(&mut waiters.wakers);
        drop(waiters);
        self.condvar.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Wakes every waiter of a notifier: the one waker an fd-backed signal
/// hands its reactor, so that whichever task is waiting, however many, is
/// woken when the fd becomes readable.
#[derive(Debug)]
pub(crate) struct WakeAll(pub std::sync::Arc<Notifier>);

impl Wake for WakeAll {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.wake_all();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.wake_all();
    }
}
