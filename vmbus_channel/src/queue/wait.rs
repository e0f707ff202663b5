//! How a read or a write that must wait for the peer waits: in a task
//! (polling the signal with a `Context`) or in the calling thread (the
//! signal's blocking wait, which polls its fd right there).

use super::counters::Counters;
use crate::signal::{PeerEvent, Signal};
use crate::ChannelError;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The peer signalled or closed.
    Peer(PeerEvent),
    /// The unstick interval passed without news: time to look for a peer
    /// that missed a signal.
    Tick,
}

/// A way to wait for the peer's next signal after `seen`.
pub(crate) trait Wait {
    /// Whether a waiting read returns once it routed completions to their
    /// requests: a blocked thread must, to see them; a task is woken by the
    /// completion itself.
    const ENDS_ON_COMPLETIONS: bool;

    /// `Ready` once the peer signalled or closed, or the unstick interval
    /// passed; `Pending` if the task must be polled again once woken. Adds
    /// 1 to `waits` if it had to wait.
    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>>;

    /// Gives others a turn after a call spent its work budget, with work
    /// left: `Pending` (the task woken at once) in a task; in a thread,
    /// `Ready` to go on, or [`ChannelError::TimedOut`] past the deadline.
    fn yield_now(&mut self) -> Poll<Result<(), ChannelError>>;
}

/// Waits in a task.
pub(crate) struct InTask<'a, 'b>(pub &'a mut Context<'b>);

impl Wait for InTask<'_, '_> {
    const ENDS_ON_COMPLETIONS: bool = false;

    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>> {
        let poll = signal.poll_signal(self.0, seen);
        if poll.is_pending() {
            Counters::add(waits, 1);
        }
        poll.map(|event| event.map(Woke::Peer).map_err(ChannelError::from))
    }

    fn yield_now(&mut self) -> Poll<Result<(), ChannelError>> {
        self.0.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Blocks the calling thread until news or the deadline (`None`: none),
/// then [`ChannelError::TimedOut`]: never `Pending`. With an unstick
/// interval, it wakes after each interval without news ([`Woke::Tick`]).
pub(crate) struct InThread {
    pub deadline: Option<Instant>,
    pub unstick_interval: Option<Duration>,
}

impl Wait for InThread {
    const ENDS_ON_COMPLETIONS: bool = true;

    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>> {
        if let Some(event) = signal.notifier().news(seen) {
            return Poll::Ready(Ok(Woke::Peer(event)));
        }
        Counters::add(waits, 1);
        let tick = self.unstick_interval.and_then(|interval| Instant::now().checked_add(interval));
        let until = match (self.deadline, tick) {
            (Some(deadline), Some(tick)) if tick < deadline => Some(tick),
            (None, Some(tick)) => Some(tick),
            (deadline, _) => deadline,
        };
        Poll::Ready(match signal.wait(seen, until) {
            Some(event) => Ok(Woke::Peer(event)),
            None if until == self.deadline => Err(ChannelError::TimedOut),
            None => Ok(Woke::Tick),
        })
    }

    fn yield_now(&mut self) -> Poll<Result<(), ChannelError>> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Poll::Ready(Err(ChannelError::TimedOut)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
