//! Blocking use without an executor: drive the same futures on the
//! calling thread.

use crate::{ChannelError, Packet, QueueReader, QueueWriter, Signal};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::{self, Thread};
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

impl<M: RingMem, S: Signal> QueueReader<M, S> {
    /// [`read`](Self::read), blocking the thread.
    pub fn read_blocking(&mut self) -> Result<Packet, ChannelError> {
        block_on(self.read())
    }
}

impl<M: RingMem, S: Signal> QueueWriter<M, S> {
    /// [`write`](Self::write), blocking the thread.
    pub fn write_blocking(&mut self, packet: &OutgoingPacket<'_>, payload: &[&[u8]]) -> Result<(), ChannelError> {
        block_on(self.write(packet, payload))
    }
}
