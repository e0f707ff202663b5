//! The receiving side of an fd-backed signal: the fd the peer signals us on,
//! read without waiting in the caller's thread or task, and watched by a
//! reactor (async) or polled in the calling thread (blocking) when there is
//! nothing to read.

use super::notifier::{FdPoll, Found, WakeAll};
use super::socket::drain;
use super::{Notifier, PeerEvent};
use crate::reactor::{Driver, FdWatch, Reactor};
use parking_lot::Mutex;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Rounds of read-then-watch in one poll before it yields, so that a
/// reactor that keeps reporting readiness with nothing to read cannot keep
/// one poll going.
const MAX_ROUNDS_PER_POLL: usize = 4;

/// How the peer's signals arrive on the fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// Bytes on a stream socket; end of file is the peer closing.
    Socket,
    /// An eventfd's counter; the peer's closing is not seen on it.
    EventFd,
}

/// The fd the peer signals this end on, and what waits on it.
#[derive(Debug)]
pub(crate) struct FdReceiver {
    fd: Arc<OwnedFd>,
    kind: FdKind,
    notifier: Arc<Notifier>,
    /// Handed to the reactor: wakes every waiter of the notifier.
    wake_all: Waker,
    /// `None`: the process's shared [`Driver`].
    reactor: Option<Arc<dyn Reactor>>,
    watch: OnceLock<Box<dyn FdWatch>>,
    /// Held while the watch is made, so that two racing first waits do not
    /// register the fd twice.
    watch_init: Mutex<()>,
}

impl FdReceiver {
    pub fn new(fd: OwnedFd, kind: FdKind) -> Self {
        let notifier = Arc::new(Notifier::new());
        let wake_all = Arc::new(WakeAll(notifier.clone())).into();
        Self {
            fd: Arc::new(fd),
            kind,
            notifier,
            wake_all,
            reactor: None,
            watch: OnceLock::new(),
            watch_init: Mutex::new(()),
        }
    }

    /// Watches the fd with `reactor` instead of the shared driver, from the
    /// first async wait on.
    pub fn set_reactor(&mut self, reactor: Arc<dyn Reactor>) {
        self.reactor = Some(reactor);
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Takes in whatever signals the fd holds, without waiting.
    pub fn receive(&self) {
        self.notifier.take_fd(|| self.take(PollFlags::empty()));
    }

    /// The async wait: reads the fd without waiting; if there is no news,
    /// has the reactor watch it and wake this task.
    pub fn poll_signal(&self, cx: &mut Context<'_>, seen: u64) -> Poll<io::Result<PeerEvent>> {
        for _ in 0..MAX_ROUNDS_PER_POLL {
            match self.notifier.poll_fd(cx, seen, || self.take(PollFlags::empty())) {
                FdPoll::Ready(event) => return Poll::Ready(Ok(event)),
                FdPoll::Pending => return Poll::Pending,
                FdPoll::WatchFd => {}
            }
            let mut reactor_cx = Context::from_waker(&self.wake_all);
            match self.watch()?.poll_readable(&mut reactor_cx) {
                // Readable (or maybe): read it in the next round.
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The blocking wait: polls the fd in this thread.
    pub fn wait(&self, seen: u64, deadline: Option<Instant>) -> Option<PeerEvent> {
        self.notifier.wait_fd(seen, deadline, |deadline| self.poll_then_take(deadline))
    }

    fn watch(&self) -> io::Result<&dyn FdWatch> {
        if let Some(watch) = self.watch.get() {
            return Ok(&**watch);
        }
        let _init = self.watch_init.lock();
        if let Some(watch) = self.watch.get() {
            return Ok(&**watch);
        }
        let watch = match &self.reactor {
            Some(reactor) => reactor.watch(self.fd.clone())?,
            None => Driver::shared()?.watch(self.fd.clone())?,
        };
        Ok(&**self.watch.get_or_init(|| watch))
    }

    /// Waits in this thread until the fd is readable or `deadline` passes,
    /// then takes what it holds.
    fn poll_then_take(&self, deadline: Option<Instant>) -> Found {
        let timeout = match deadline {
            None => None,
            // A deadline too far to express is no deadline.
            Some(deadline) => Timespec::try_from(deadline.saturating_duration_since(Instant::now())).ok(),
        };
        let mut fds = [PollFd::new(&*self.fd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            // Only a bad fd or no memory fail a poll of one fd; neither
            // mends itself, and waiting on would spin.
            Err(_) => return Found { signalled: false, closed: true },
        }
        match fds[0].revents() {
            revents if revents.is_empty() => Found::default(),
            revents => self.take(revents),
        }
    }

    /// Reads what the fd holds without waiting; `revents` is what a poll
    /// reported for it, if one did.
    fn take(&self, revents: PollFlags) -> Found {
        match self.kind {
            FdKind::Socket => {
                let drained = drain(self.fd.as_fd(), revents);
                Found { signalled: drained.bytes, closed: drained.closed }
            }
            FdKind::EventFd => take_eventfd(self.fd.as_fd(), revents),
        }
    }
}

/// Reads an eventfd's counter without waiting (the fd is non-blocking).
///
/// An eventfd never hangs up or errs, and a read of it takes exactly 8
/// bytes: anything else is not an eventfd (or no longer works), and would
/// be readable forever, so it counts as the peer gone.
fn take_eventfd(fd: BorrowedFd<'_>, revents: PollFlags) -> Found {
    if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
        return Found { signalled: false, closed: true };
    }
    let mut count = [0; 8];
    loop {
        return match rustix::io::read(fd, &mut count) {
            Ok(8) => Found { signalled: true, closed: false },
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => Found::default(),
            Ok(_) | Err(_) => Found { signalled: false, closed: true },
        };
    }
}
