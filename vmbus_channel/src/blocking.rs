//! Blocking use without an executor: drive the same futures on the
//! calling thread.

use crate::{ChannelError, Packet, QueueReader, QueueWriter, Signal};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::{self, Thread};
use std::time::Instant;
use vmbus_ring::{OutgoingPacket, RingMem};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking while it is pending.
///
/// The future's waits on fd-backed signals go through their reactor (the
/// shared [`Driver`](crate::Driver) by default), which wakes this thread.
/// To have the thread poll the signal itself, with no other thread in
/// between, use the queue's `_blocking` methods instead.
///
/// ```
/// assert_eq!(vmbus_channel::block_on(async { 6 * 7 }), 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Arc::new(ThreadWaker(thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// Runs `future` on this thread until it completes or `deadline` passes;
/// `None` if the deadline came first (the future is dropped). For callers
/// that must not wait forever on a stuck or dead peer.
///
/// ```
/// use std::time::{Duration, Instant};
/// use vmbus_channel::block_on_until;
/// assert_eq!(block_on_until(async { 42 }, Instant::now()), Some(42));
/// let never = std::future::pending::<()>();
/// assert_eq!(block_on_until(never, Instant::now() + Duration::from_millis(1)), None);
/// ```
pub fn block_on_until<F: Future>(future: F, deadline: Instant) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = Arc::new(ThreadWaker(thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// [`read`](Self::read), blocking the thread, which waits on the signal
    /// itself (see [`read_batch_blocking`](Self::read_batch_blocking)).
    pub fn read_blocking(&mut self) -> Result<Packet, ChannelError> {
        loop {
            let mut packet = None;
            self.read_batch_blocking(1, None, |header, payload| packet = Some(Packet::copied(header, payload)))?;
            if let Some(packet) = packet {
                return Ok(packet);
            }
        }
    }
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// [`write`](Self::write), blocking the thread, which waits on the
    /// signal itself (see [`write_batch_blocking`](Self::write_batch_blocking)).
    pub fn write_blocking(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<(), ChannelError> {
        self.write_batch_blocking(&[(*packet, payload)], None)
    }
}
