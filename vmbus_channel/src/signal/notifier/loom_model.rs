//! Loom model of the [`Notifier`]'s fd-poller protocol: the real
//! `take_fd`, `poll_fd`, `wait_fd` and `record`, built over loom's mutex,
//! condition variable and atomics (`sync.rs`), driven by two waiters and a
//! peer in every interleaving (up to a preemption bound).
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg vmbus_channel_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p vmbus_channel --lib --release loom_model
//! ```
//!
//! (`vmbus_channel_loom`, not `loom`: `--cfg loom` reaches every
//! dependency too, and async-io's `parking`, a dev-dependency of this
//! crate, does not build under it.)
//!
//! Add `-- --nocapture` to see, per model, the executions explored and how
//! many of them reached each notable event (and, for a mutant, the
//! execution that failed). The models with threads only explore every
//! interleaving (300 to 8,200 executions, under 2 seconds each); the two
//! with an async waiter stop at 4 preemptions per execution (21,000 and
//! 44,000 executions, a few seconds each). `LOOM_MAX_PREEMPTIONS=n` sets
//! the bound of every model for a longer campaign: at 5 the async models
//! take 99,000 and 230,000 executions (half a minute to a minute and a
//! half), at 6 358,000 and 915,000 (a few minutes); both pass.
//!
//! # What is modelled
//!
//! - The notifier: the real one, unchanged; only its lock, condition
//!   variable and atomics are loom's.
//! - The fd (`Fd`): what the kernel keeps for a socket or an eventfd, bytes
//!   (or kicks) pending and the peer's hang-up, changed atomically under the
//!   fd's wait queue (a loom mutex and condition variable). `poll` is
//!   poll(2) with no timeout: it sleeps on the wait queue until the fd is
//!   readable, so a thread that polls an fd someone else emptied sleeps for
//!   good, and loom reports the deadlock. `take` is the non-blocking read:
//!   a socket's `drain` (bytes first; the end of file only once they are
//!   gone) or an eventfd's read (no hang-up ever).
//! - The reactor (`Fd::poll_readable`): [`FdWatch`](crate::FdWatch)'s
//!   contract, no more. `Ready` if the fd may have become readable since the
//!   last `Ready` (every arrival sets a flag that `Ready` clears), otherwise
//!   keeps the waker, which the next arrival wakes. The watch begins with the
//!   model.
//! - `FdReceiver`'s glue, line for line but over the modelled fd:
//!   `receive` (`take_fd`), `poll_signal` (`poll_fd`, then the reactor on
//!   `WatchFd`, up to `MAX_ROUNDS_PER_POLL` rounds) and the blocking `wait`
//!   (`wait_fd` with no deadline; its `poll_fd` is `poll` then `take`).
//!   An async waiter is a task run by `block_on` (as
//!   `loom::future::block_on`): a task left `Pending` that nothing wakes
//!   parks its thread for good, a deadlock loom reports.
//! - The peer, in the model's main thread: a write (a byte on the socket, a
//!   kick on the eventfd), a hang-up (the socket's end of file), or an
//!   eventfd's `peer_closed` (`Notifier::close`, then a kick to wake a
//!   thread polling the fd).
//!
//! Every waiter's `seen` is 0: each read the generation before the peer
//! did anything, as a waiter reads it before it looks at the rings.
//!
//! # Checks
//!
//! In every execution: every waiter returns (no lost wake-up: no thread
//! left on the condition variable or in poll(2), no task left pending,
//! while news it has not seen is there), with the news the peer gave
//! (`Signalled` for a write, `Closed` for a hang-up or a close); the
//! generation ends at the number of signals the peer sent (none counted
//! twice, and none counted after the close: `peer_closed`'s kick is not a
//! signal).
//!
//! # The models
//!
//! Each also asserts that its interesting paths were reached.
//!
//! - `loom_two_blocking_waiters` (a): two threads in `wait_fd`, the peer
//!   writes once; one thread polls the fd, the other finds the news when it
//!   enters or waits on the condition variable for what the first records.
//!   `loom_two_blocking_waiters_hang_up`: the peer hangs up instead.
//! - `loom_blocking_and_async_waiters` (b): a thread in `wait_fd` and a task
//!   in `poll_signal`, the peer writes once. `poll_fd` says `Pending` when the
//!   thread polls (the thread's `record` must wake the task) and `WatchFd`
//!   when none does (the reactor must wake it).
//! - `loom_receive_vs_blocking_wait` (c): `receive` (`take_fd`) in one
//!   thread races a thread entering `wait_fd` and taking the poller role
//!   (the window the notifier's lock closes), the peer writes once.
//! - `loom_receive_vs_blocking_wait_peer_closed` (d) and
//!   `loom_async_and_blocking_waiters_peer_closed`: the eventfd peer's
//!   `peer_closed` instead of a write: every waiter sees `Closed`, and the
//!   kick, wherever it is taken, is not counted.
//! - `loom_mutant_*` (`#[should_panic]`): the protocol deliberately broken
//!   in one place, each caught by one of the models above, to show they have
//!   teeth. Lost wake-ups (loom: "deadlock"): `take_fd` ignoring the poller
//!   role, or taking from the fd outside the lock; `poll_fd` ignoring the
//!   role, or returning `Pending` without registering the waker; the poller
//!   recording without waking anyone. A miscount: `record` counting a signal
//!   found after the close. The mutants are copies of the real functions
//!   with the one change; `loom_control_copied_wait_fd*` run the copy of
//!   `wait_fd` with the real `record`, which must pass.

use super::sync::MutexGuard;
use super::{FdPoll, Found, Notifier, PeerEvent, Waiters, WakeAll};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Condvar, Mutex, Notify};
use loom::thread;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// Preemptions per execution the models with an async waiter explore
/// (`LOOM_MAX_PREEMPTIONS` overrides it): a task's every poll adds loom
/// operations, and each preemption more multiplies the executions by about
/// five. The models with threads only are explored without a bound.
const ASYNC_PREEMPTION_BOUND: usize = 4;

/// `FdReceiver`'s rounds of read-then-watch per poll.
const MAX_ROUNDS_PER_POLL: usize = 4;

/// What a model run explored: how many executions, and in how many of
/// them each notable event happened.
struct Explored {
    iterations: usize,
    events: BTreeMap<&'static str, usize>,
}

impl Explored {
    /// Asserts that some execution saw `event`.
    fn saw(&self, event: &str) -> &Self {
        assert!(self.events.contains_key(event), "no execution reached {event:?}: {:?}", self.events);
        self
    }
}

/// Runs `model` under loom, with at most `bound` preemptions per execution
/// (`None`: every interleaving) unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise. Each execution returns the notable events it saw.
fn check(name: &str, bound: Option<usize>, model: impl Fn() -> Vec<&'static str> + Sync + Send + 'static) -> Explored {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(bound);
    let seen = Arc::new(StdMutex::new(Explored { iterations: 0, events: BTreeMap::new() }));
    let record = seen.clone();
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        builder.check(move || {
            let events: BTreeSet<_> = model().into_iter().collect();
            let mut seen = record.lock().unwrap();
            seen.iterations += 1;
            for event in events {
                *seen.events.entry(event).or_default() += 1;
            }
        })
    }));
    if let Err(panic) = run {
        let passed = seen.lock().unwrap().iterations;
        println!(
            "loom model {name}: failed in execution {} (preemption bound {:?})",
            passed + 1,
            builder.preemption_bound
        );
        std::panic::resume_unwind(panic);
    }
    let seen = Arc::into_inner(seen).unwrap().into_inner().unwrap();
    println!(
        "loom model {name}: {} iterations (preemption bound {:?}); executions with {:?}",
        seen.iterations, builder.preemption_bound, seen.events
    );
    seen
}

// ---------------------------------------------------------------------------
// The fd and its reactor
// ---------------------------------------------------------------------------

/// The signal's fd as the kernel keeps it, and the reactor watching it.
#[derive(Default)]
struct Fd {
    /// Bytes (socket) or kicks (eventfd) not yet read.
    pending: AtomicUsize,
    /// The peer hung up (a socket's end of file).
    hung_up: AtomicBool,
    /// The fd's wait queue: `pending` and `hung_up` change under it, and
    /// poll(2) sleeps on `readable` under it.
    queue: Mutex<()>,
    readable: Condvar,
    watch: Mutex<Watch>,
}

/// The reactor's view of the fd.
#[derive(Default)]
struct Watch {
    /// The fd may have become readable since `poll_readable` last said `Ready`.
    readable_since: bool,
    /// Woken when it does.
    waker: Option<Waker>,
}

impl Fd {
    /// The peer writes a byte (socket) or kicks the counter (eventfd).
    /// True if that woke the reactor's waker.
    fn write(&self) -> bool {
        self.arrive(|| {
            self.pending.fetch_add(1, SeqCst);
        })
    }

    /// The peer hangs up its socket.
    fn hang_up(&self) -> bool {
        self.arrive(|| self.hung_up.store(true, SeqCst))
    }

    fn arrive(&self, change: impl FnOnce()) -> bool {
        {
            let _queue = self.queue.lock().unwrap();
            change();
            self.readable.notify_all();
        }
        let waker = {
            let mut watch = self.watch.lock().unwrap();
            watch.readable_since = true;
            watch.waker.take()
        };
        waker.map(Waker::wake).is_some()
    }

    /// poll(2) for readability with no timeout.
    fn poll(&self) {
        let mut queue = self.queue.lock().unwrap();
        while self.pending.load(SeqCst) == 0 && !self.hung_up.load(SeqCst) {
            queue = self.readable.wait(queue).unwrap();
        }
    }

    /// Reads what the fd holds without waiting: pending bytes (or kicks)
    /// first, the end of file only once there are none (as `drain` and
    /// `take_eventfd` report them).
    fn take(&self) -> Found {
        if self.pending.swap(0, SeqCst) > 0 {
            Found { signalled: true, closed: false }
        } else {
            Found { signalled: false, closed: self.hung_up.load(SeqCst) }
        }
    }

    /// `FdWatch::poll_readable`.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut watch = self.watch.lock().unwrap();
        if std::mem::take(&mut watch.readable_since) {
            Poll::Ready(())
        } else {
            watch.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------
// The protocol (real or mutant) and FdReceiver's glue
// ---------------------------------------------------------------------------

/// The notifier's fd-poller functions: the real ones unless a mutant
/// overrides one.
trait Protocol: 'static {
    fn take_fd(notifier: &Notifier, take: impl FnOnce() -> Found) {
        notifier.take_fd(take)
    }

    fn poll_fd(notifier: &Notifier, cx: &mut Context<'_>, seen: u64, take: impl FnOnce() -> Found) -> FdPoll {
        notifier.poll_fd(cx, seen, take)
    }

    fn wait_fd(notifier: &Notifier, seen: u64, poll_fd: impl FnMut(Option<Instant>) -> Found) -> Option<PeerEvent> {
        notifier.wait_fd(seen, None, poll_fd)
    }
}

/// The notifier as it is.
struct Real;
impl Protocol for Real {}

/// `FdReceiver` over the modelled fd.
struct Receiver<P> {
    fd: Fd,
    notifier: Arc<Notifier>,
    /// Handed to the reactor: wakes every waiter of the notifier.
    wake_all: Waker,
    protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol> Receiver<P> {
    fn new() -> Arc<Self> {
        let notifier = Arc::new(Notifier::new());
        let wake_all = Arc::new(WakeAll(notifier.clone())).into();
        Arc::new(Self { fd: Fd::default(), notifier, wake_all, protocol: PhantomData })
    }

    /// `FdReceiver::receive`.
    fn receive(&self, events: &mut Vec<&'static str>) {
        let mut took = None;
        P::take_fd(&self.notifier, || *took.insert(self.fd.take()));
        events.push(match took {
            None => "receive left the fd to the poller",
            Some(found) if found == Found::default() => "receive found nothing",
            Some(_) => "receive took news",
        });
    }

    /// `FdReceiver::wait` with no deadline.
    fn wait(&self, seen: u64, events: &mut Vec<&'static str>) -> PeerEvent {
        let mut polls = 0;
        let event = P::wait_fd(&self.notifier, seen, |deadline| {
            assert!(deadline.is_none());
            polls += 1;
            self.fd.poll();
            self.fd.take()
        });
        events.push(if polls > 0 { "a blocking waiter polled the fd" } else { "a blocking waiter left the fd alone" });
        event.expect("a wait with no deadline gave up")
    }

    /// `FdReceiver::poll_signal`, run to completion as a task.
    fn wait_async(&self, seen: u64, events: &mut Vec<&'static str>) -> PeerEvent {
        block_on(|cx| self.poll_signal(cx, seen, events))
    }

    fn poll_signal(&self, cx: &mut Context<'_>, seen: u64, events: &mut Vec<&'static str>) -> Poll<PeerEvent> {
        for _ in 0..MAX_ROUNDS_PER_POLL {
            match P::poll_fd(&self.notifier, cx, seen, || self.fd.take()) {
                FdPoll::Ready(event) => return Poll::Ready(event),
                FdPoll::Pending => {
                    events.push("poll_fd: Pending (a thread polls the fd)");
                    return Poll::Pending;
                }
                FdPoll::WatchFd => events.push("poll_fd: WatchFd"),
            }
            match self.fd.poll_readable(&mut Context::from_waker(&self.wake_all)) {
                Poll::Ready(()) => events.push("the reactor said Ready"),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls a task until it is ready, parking the thread while it is pending
/// until its waker is woken (as `loom::future::block_on` does): a task that
/// nothing wakes parks its thread for good.
fn block_on<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let task = Arc::new(Task(Notify::new()));
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        task.0.wait();
    }
}

/// A task's waker: unparks the thread running it.
struct Task(Notify);

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// How a waiter waits.
#[derive(Clone, Copy, Debug)]
enum Waiter {
    /// A thread in `wait_fd`.
    Blocking,
    /// A task in `poll_signal`.
    Async,
    /// A thread that calls `receive` once and does not wait.
    Receive,
}

/// What the peer does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    /// Writes once, then nothing more.
    Write,
    /// Hangs up its socket without writing.
    HangUp,
    /// An eventfd peer's `peer_closed`: the notifier closed, then a kick.
    Closed,
}

/// One execution: `waiters` each in a thread of its own, the peer in this
/// one; then the checks.
fn model<P: Protocol>(waiters: [Waiter; 2], peer: Peer) -> Vec<&'static str> {
    let receiver = Receiver::<P>::new();
    let threads = waiters.map(|waiter| {
        let receiver = receiver.clone();
        thread::spawn(move || {
            let mut events = Vec::new();
            let event = match waiter {
                Waiter::Blocking => Some(receiver.wait(0, &mut events)),
                Waiter::Async => Some(receiver.wait_async(0, &mut events)),
                Waiter::Receive => {
                    receiver.receive(&mut events);
                    None
                }
            };
            (event, events)
        })
    });
    let woke_reactor = match peer {
        Peer::Write => receiver.fd.write(),
        Peer::HangUp => receiver.fd.hang_up(),
        Peer::Closed => {
            receiver.notifier.close();
            receiver.fd.write()
        }
    };

    let mut events = Vec::new();
    events.extend(woke_reactor.then_some("the peer woke the reactor's waker"));
    let expected = if peer == Peer::Write { PeerEvent::Signalled } else { PeerEvent::Closed };
    for (waiter, thread) in waiters.into_iter().zip(threads) {
        let (event, its_events) = thread.join().unwrap();
        if let Some(event) = event {
            assert_eq!(event, expected, "a {waiter:?} waiter got the wrong news from a {peer:?}");
        }
        events.extend(its_events);
    }
    let generation = receiver.notifier.generation();
    if peer == Peer::Closed {
        assert_eq!(generation, 0, "counted a signal found after the close (peer_closed's kick)");
    } else {
        assert_eq!(generation, u64::from(peer == Peer::Write), "signals miscounted");
    }
    events
}

#[test]
fn loom_two_blocking_waiters() {
    check("two_blocking_waiters", None, || model::<Real>([Waiter::Blocking; 2], Peer::Write))
        .saw("a blocking waiter polled the fd")
        .saw("a blocking waiter left the fd alone");
}

#[test]
fn loom_two_blocking_waiters_hang_up() {
    check("two_blocking_waiters_hang_up", None, || model::<Real>([Waiter::Blocking; 2], Peer::HangUp))
        .saw("a blocking waiter polled the fd")
        .saw("a blocking waiter left the fd alone");
}

#[test]
fn loom_blocking_and_async_waiters() {
    check("blocking_and_async_waiters", Some(ASYNC_PREEMPTION_BOUND), || {
        model::<Real>([Waiter::Blocking, Waiter::Async], Peer::Write)
    })
    .saw("a blocking waiter polled the fd")
    .saw("a blocking waiter left the fd alone")
    .saw("poll_fd: Pending (a thread polls the fd)")
    .saw("poll_fd: WatchFd")
    .saw("the reactor said Ready")
    .saw("the peer woke the reactor's waker");
}

#[test]
fn loom_receive_vs_blocking_wait() {
    check("receive_vs_blocking_wait", None, || model::<Real>([Waiter::Blocking, Waiter::Receive], Peer::Write))
        .saw("a blocking waiter polled the fd")
        .saw("a blocking waiter left the fd alone")
        .saw("receive left the fd to the poller")
        .saw("receive found nothing")
        .saw("receive took news");
}

#[test]
fn loom_receive_vs_blocking_wait_peer_closed() {
    check("receive_vs_blocking_wait_peer_closed", None, || {
        model::<Real>([Waiter::Blocking, Waiter::Receive], Peer::Closed)
    })
    .saw("a blocking waiter polled the fd")
    .saw("a blocking waiter left the fd alone")
    .saw("receive left the fd to the poller")
    .saw("receive took news");
}

#[test]
fn loom_async_and_blocking_waiters_peer_closed() {
    check("async_and_blocking_waiters_peer_closed", Some(ASYNC_PREEMPTION_BOUND), || {
        model::<Real>([Waiter::Async, Waiter::Blocking], Peer::Closed)
    })
    .saw("a blocking waiter polled the fd")
    .saw("poll_fd: Pending (a thread polls the fd)")
    .saw("poll_fd: WatchFd");
}

// ---------------------------------------------------------------------------
// Mutants
// ---------------------------------------------------------------------------

/// `take_fd` that takes from the fd even while a thread polls it.
struct TakeIgnoresPoller;
impl Protocol for TakeIgnoresPoller {
    fn take_fd(notifier: &Notifier, take: impl FnOnce() -> Found) {
        let waiters = notifier.waiters.lock();
        let found = take();
        if found != Found::default() {
            notifier.record(waiters, found);
        }
    }
}

/// `take_fd` that checks the poller role under the lock but takes from the
/// fd after releasing it.
struct TakeOutsideLock;
impl Protocol for TakeOutsideLock {
    fn take_fd(notifier: &Notifier, take: impl FnOnce() -> Found) {
        let waiters = notifier.waiters.lock();
        if !waiters.fd_poller {
            drop(waiters);
            let found = take();
            let waiters = notifier.waiters.lock();
            if found != Found::default() {
                notifier.record(waiters, found);
            }
        }
    }
}

/// `poll_fd` that takes from the fd even while a thread polls it.
struct PollFdIgnoresPoller;
impl Protocol for PollFdIgnoresPoller {
    fn poll_fd(notifier: &Notifier, cx: &mut Context<'_>, seen: u64, take: impl FnOnce() -> Found) -> FdPoll {
        let mut waiters = notifier.waiters.lock();
        notifier.maybe_waiting.store(true, SeqCst);
        let found = take();
        if found != Found::default() {
            notifier.record(waiters, found);
            return notifier.news(seen).map_or(FdPoll::WatchFd, FdPoll::Ready);
        }
        if let Some(event) = notifier.news(seen) {
            return FdPoll::Ready(event);
        }
        waiters.register(cx.waker());
        if waiters.fd_poller {
            FdPoll::Pending
        } else {
            FdPoll::WatchFd
        }
    }
}

/// `poll_fd` that leaves the task to the polling thread without
/// registering its waker.
struct PollFdPendingWithoutWaker;
impl Protocol for PollFdPendingWithoutWaker {
    fn poll_fd(notifier: &Notifier, cx: &mut Context<'_>, seen: u64, take: impl FnOnce() -> Found) -> FdPoll {
        let mut waiters = notifier.waiters.lock();
        notifier.maybe_waiting.store(true, SeqCst);
        if !waiters.fd_poller {
            let found = take();
            if found != Found::default() {
                notifier.record(waiters, found);
                return notifier.news(seen).map_or(FdPoll::WatchFd, FdPoll::Ready);
            }
        }
        if let Some(event) = notifier.news(seen) {
            return FdPoll::Ready(event);
        }
        if waiters.fd_poller {
            return FdPoll::Pending;
        }
        waiters.register(cx.waker());
        FdPoll::WatchFd
    }
}

/// `Notifier::wait_fd` with no deadline, line for line, but recording
/// what the poller found with `record`.
fn copied_wait_fd(
    notifier: &Notifier,
    seen: u64,
    mut poll_fd: impl FnMut(Option<Instant>) -> Found,
    record: fn(&Notifier, MutexGuard<'_, Waiters>, Found),
) -> Option<PeerEvent> {
    let mut waiters = notifier.waiters.lock();
    loop {
        notifier.maybe_waiting.store(true, SeqCst);
        if let Some(event) = notifier.news(seen) {
            return Some(event);
        }
        if waiters.fd_poller {
            notifier.condvar.wait(&mut waiters);
            continue;
        }
        waiters.fd_poller = true;
        drop(waiters);
        let found = poll_fd(None);
        waiters = notifier.waiters.lock();
        waiters.fd_poller = false;
        record(notifier, waiters, found);
        waiters = notifier.waiters.lock();
    }
}

/// The copy of `wait_fd` with the real `record`: a control for the mutants
/// below.
struct CopiedWaitFd;
impl Protocol for CopiedWaitFd {
    fn wait_fd(notifier: &Notifier, seen: u64, poll_fd: impl FnMut(Option<Instant>) -> Found) -> Option<PeerEvent> {
        copied_wait_fd(notifier, seen, poll_fd, Notifier::record)
    }
}

/// A poller that records what it found without waking anyone.
struct PollerWakesNobody;
impl Protocol for PollerWakesNobody {
    fn wait_fd(notifier: &Notifier, seen: u64, poll_fd: impl FnMut(Option<Instant>) -> Found) -> Option<PeerEvent> {
        copied_wait_fd(notifier, seen, poll_fd, |notifier, _waiters, found| {
            if found.signalled && !notifier.is_closed() {
                notifier.generation.fetch_add(1, SeqCst);
            }
            if found.closed {
                notifier.closed.store(true, SeqCst);
            }
        })
    }
}

/// A poller whose `record` counts a signal found after the close.
struct RecordCountsAfterClose;
impl Protocol for RecordCountsAfterClose {
    fn wait_fd(notifier: &Notifier, seen: u64, poll_fd: impl FnMut(Option<Instant>) -> Found) -> Option<PeerEvent> {
        copied_wait_fd(notifier, seen, poll_fd, |notifier, waiters, found| {
            if found.signalled {
                notifier.generation.fetch_add(1, SeqCst);
            }
            if found.closed {
                notifier.closed.store(true, SeqCst);
            }
            notifier.wake_locked(waiters);
        })
    }
}

#[test]
fn loom_control_copied_wait_fd() {
    check("control_copied_wait_fd", None, || model::<CopiedWaitFd>([Waiter::Blocking; 2], Peer::Write));
}

#[test]
fn loom_control_copied_wait_fd_peer_closed() {
    check("control_copied_wait_fd_peer_closed", None, || {
        model::<CopiedWaitFd>([Waiter::Blocking, Waiter::Receive], Peer::Closed)
    });
}

/// `receive` empties the fd under the polling thread, which sleeps in
/// poll(2) for good.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutant_take_fd_ignores_poller() {
    check("mutant_take_fd_ignores_poller", None, || {
        model::<TakeIgnoresPoller>([Waiter::Blocking, Waiter::Receive], Peer::Write)
    });
}

/// `receive` saw no poller, but takes after a thread became one.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutant_take_fd_outside_lock() {
    check("mutant_take_fd_outside_lock", None, || {
        model::<TakeOutsideLock>([Waiter::Blocking, Waiter::Receive], Peer::Write)
    });
}

/// The task empties the fd under the polling thread.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutant_poll_fd_ignores_poller() {
    check("mutant_poll_fd_ignores_poller", Some(ASYNC_PREEMPTION_BOUND), || {
        model::<PollFdIgnoresPoller>([Waiter::Blocking, Waiter::Async], Peer::Write)
    });
}

/// The task is left to a polling thread that cannot wake it.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutant_poll_fd_pending_without_waker() {
    check("mutant_poll_fd_pending_without_waker", Some(ASYNC_PREEMPTION_BOUND), || {
        model::<PollFdPendingWithoutWaker>([Waiter::Blocking, Waiter::Async], Peer::Write)
    });
}

/// The other thread stays on the condition variable.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutant_poller_wakes_nobody() {
    check("mutant_poller_wakes_nobody", None, || model::<PollerWakesNobody>([Waiter::Blocking; 2], Peer::Write));
}

/// peer_closed's kick, taken by the poller, counted as a signal.
#[test]
#[should_panic(expected = "counted a signal found after the close")]
fn loom_mutant_record_counts_after_close() {
    check("mutant_record_counts_after_close", None, || {
        model::<RecordCountsAfterClose>([Waiter::Blocking, Waiter::Receive], Peer::Closed)
    });
}
