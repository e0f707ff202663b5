//! How a read or a write that must wait for the peer waits: in a task
//! (polling the signal with a `Context`) or in the calling thread (the
//! signal's blocking wait, which polls its fd right there).

use super::counters::Counters;
use crate::signal::Signal;
use crate::ChannelError;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The peer signalled or closed.
    News,
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

    /// Whether a waiting read that spent its work budget with nothing to
    /// hand out returns (`Ready(Ok(0))`) rather than going on: a task
    /// must, so that a caller that sleeps on the signal's fd (an
    /// `ExternalReactor` loop) is not left asleep with packets in the ring;
    /// a thread goes on until its deadline.
    const ENDS_ON_BUDGET: bool;

    /// `Ready` once the peer signalled or closed, or the unstick interval
    /// passed; `Pending` if the task must be polled again once woken. Adds
    /// 1 to `waits` if it had to wait.
    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>>;

    /// Gives others a turn after a wait looped as often as one call may,
    /// with work left: `Pending` (the task woken at once) in a task; in a
    /// thread, `Ready` to go on, or [`ChannelError::TimedOut`] past the
    /// deadline.
    fn yield_now(&mut self) -> Poll<Result<(), ChannelError>>;
}

/// Waits in a task.
pub(crate) struct InTask<'a, 'b>(pub &'a mut Context<'b>);

impl Wait for InTask<'_, '_> {
    const ENDS_ON_COMPLETIONS: bool = false;
    const ENDS_ON_BUDGET: bool = true;

    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>> {
        let poll = signal.poll_signal(self.0, seen);
        if poll.is_pending() {
            Counters::add(waits, 1);
        }
        poll.map(|event| event.map(|_| Woke::News).map_err(ChannelError::from))
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
    const ENDS_ON_BUDGET: bool = false;

    fn wait<S: Signal>(&mut self, signal: &S, seen: u64, waits: &AtomicU64) -> Poll<Result<Woke, ChannelError>> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Poll::Ready(Err(ChannelError::TimedOut));
        }
        if signal.notifier().news(seen).is_some() {
            return Poll::Ready(Ok(Woke::News));
        }
        Counters::add(waits, 1);
        let tick = self.unstick_interval.and_then(|interval| Instant::now().checked_add(interval));
        let until = match (self.deadline, tick) {
            (Some(deadline), Some(tick)) if tick < deadline => Some(tick),
            (None, Some(tick)) => Some(tick),
            (deadline, _) => deadline,
        };
        Poll::Ready(match signal.wait(seen, until) {
            Some(_) => Ok(Woke::News),
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
