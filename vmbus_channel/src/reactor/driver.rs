//! The built-in reactor: one thread, one epoll set, any number of fds.

use super::{FdWatch, Reactor};
use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::{JoinHandle, ThreadId};

/// The epoll key of the driver's own wake-up eventfd.
const STOP_KEY: u64 = u64::MAX;
/// Events taken from epoll per wait.
const EVENTS_PER_WAIT: usize = 256;

/// A [`Reactor`] of this crate: one thread running an epoll loop (edge
/// triggered) that wakes the task waiting on whichever fd became readable.
/// One driver serves any number of channel ends; a host with thousands of
/// channels needs one thread for their signals, not one each.
///
/// Cloning is cheap and shares the thread; the thread stops once the last
/// clone and the last signal watched by it are gone.
///
/// ```
/// use vmbus_channel::{block_on, Driver, Signal, SocketSignal};
///
/// let driver = Driver::new()?;
/// let (a, b) = SocketSignal::pair()?;
/// let b = b.with_reactor(driver.clone());
/// let seen = b.notifier().generation();
/// a.signal_peer();
/// // An async wait: the driver's thread wakes this task.
/// block_on(std::future::poll_fn(|cx| b.poll_signal(cx, seen)))?;
/// assert!(b.notifier().generation() > seen);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Driver {
    core: Arc<Core>,
}

/// Owns the thread; dropped with the last handle and the last watch.
#[derive(Debug)]
struct Core {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

/// What the thread and the watches share.
#[derive(Debug)]
struct State {
    epoll: OwnedFd,
    stop_fd: OwnedFd,
    stop: AtomicBool,
    next_key: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
}

/// One watched fd's readiness, as the thread reports it to the task.
#[derive(Debug)]
struct Entry {
    ready: AtomicBool,
    waker: AtomicWaker,
}

impl Driver {
    /// A new driver with its own thread.
    pub fn new() -> io::Result<Self> {
        let state = Arc::new(State {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            stop_fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
            stop: AtomicBool::new(false),
            next_key: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        });
        epoll::add(&state.epoll, &state.stop_fd, EventData::new_u64(STOP_KEY), EventFlags::IN)?;
        let thread = {
            let state = state.clone();
            std::thread::Builder::new().name("vmbus-driver".into()).spawn(move || state.run())?
        };
        let thread_id = thread.thread().id();
        Ok(Self { core: Arc::new(Core { state, thread: Some(thread), thread_id }) })
    }

    /// The process's shared driver, started on first use: the reactor of
    /// signals that were given no other. Its thread is started by the first
    /// task that waits on such a signal and inherits that thread's CPU
    /// affinity: a program that pins threads may want to call this once,
    /// unpinned, before it pins any.
    pub fn shared() -> io::Result<Self> {
        static SHARED: OnceLock<Driver> = OnceLock::new();
        if let Some(driver) = SHARED.get() {
            return Ok(driver.clone());
        }
        let driver = Self::new()?;
        // A racing first use may have won; its driver is kept, this one dropped.
        Ok(SHARED.get_or_init(|| driver).clone())
    }

    /// Fds watched now.
    pub fn watched(&self) -> usize {
        self.core.state.entries.lock().len()
    }
}

impl Reactor for Driver {
    fn watch(&self, fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
        let state = &self.core.state;
        let key = state.next_key.fetch_add(1, Ordering::Relaxed);
        // Ready at first: the fd may have become readable before the watch.
        let entry = Arc::new(Entry { ready: AtomicBool::new(true), waker: AtomicWaker::new() });
        state.entries.lock().insert(key, entry.clone());
        let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
        if let Err(error) = epoll::add(&state.epoll, &*fd, EventData::new_u64(key), flags) {
            state.entries.lock().remove(&key);
            return Err(error.into());
        }
        Ok(Box::new(DriverWatch { core: self.core.clone(), fd, key, entry }))
    }
}

impl State {
    /// The thread: waits on epoll and wakes the tasks whose fds became
    /// readable, until told to stop.
    fn run(&self) {
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        let mut woken = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            events.clear();
            match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) | Err(Errno::INTR) => {}
                // Nothing else can fail on a valid epoll fd and buffer.
                Err(_) => return,
            }
            {
                let entries = self.entries.lock();
                woken.extend(events.iter().filter_map(|event| entries.get(&event.data.u64())).cloned());
            }
            for entry in woken.drain(..) {
                entry.ready.store(true, Ordering::Release);
                entry.waker.wake();
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.state.stop_fd, &1u64.to_ne_bytes());
        // The last handle may go with a task the thread itself just woke:
        // it stops by itself then, and cannot join itself.
        if std::thread::current().id() != self.thread_id {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[derive(Debug)]
struct DriverWatch {
    core: Arc<Core>,
    fd: Arc<OwnedFd>,
    key: u64,
    entry: Arc<Entry>,
}

impl FdWatch for DriverWatch {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Register first, then look: a readiness the thread reports after
        // the look wakes the waker registered before it.
        self.entry.waker.register(cx.waker());
        if self.entry.ready.swap(false, Ordering::AcqRel) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl Drop for DriverWatch {
    fn drop(&mut self) {
        let state = &self.core.state;
        let _ = epoll::delete(&state.epoll, &*self.fd);
        state.entries.lock().remove(&self.key);
    }
}
