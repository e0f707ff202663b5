//! Helpers shared by the queue, transaction and signal tests: bounded threads,
//! a deterministic PRNG and payloads, wakers that count, a one-thread join,
//! and a signal that runs a peer action at a chosen point of the queue's code.
#![allow(dead_code)] // each test binary uses a different subset

use parking_lot::Mutex;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
use vmbus_channel::{connected_pair, InProcessSignal, Notifier, Packet, Queue, RawChannel, Signal};
use vmbus_ring::FlatRingMem;

pub const PAGE: usize = 4096;

/// How long a multi-thread test may take before it is declared stuck. Far
/// above any healthy run: it only turns a hang into a failure with a message.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub type InProcessQueue = Queue<FlatRingMem, InProcessSignal>;

/// Two connected in-process queues (host, guest) without transaction matching.
pub fn queues(data_len: usize) -> (InProcessQueue, InProcessQueue) {
    let (host, guest) = connected_pair(data_len).unwrap();
    (Queue::new(host), Queue::new(guest))
}

/// A thread whose result is collected with a deadline instead of a plain join.
pub struct Bounded<T> {
    name: String,
    result: mpsc::Receiver<thread::Result<T>>,
}

/// Runs `body` on a new thread named `name`.
pub fn spawn<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> Bounded<T> {
    let (send, result) = mpsc::channel();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = send.send(std::panic::catch_unwind(AssertUnwindSafe(body)));
        })
        .unwrap();
    Bounded { name: name.into(), result }
}

impl<T> Bounded<T> {
    /// The thread's result; re-raises its panic; fails the test if it has not
    /// finished by `deadline` (the thread is then left behind, stuck).
    pub fn join_by(self, deadline: Instant) -> T {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.result.recv_timeout(left) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!(
                "thread `{}` did not finish within {DEADLINE:?}: it is stuck (lost wakeup, missed close, or deadlock)",
                self.name
            ),
        }
    }

    /// [`join_by`](Self::join_by) with the deadline [`DEADLINE`] from now.
    pub fn join(self) -> T {
        self.join_by(Instant::now() + DEADLINE)
    }
}

/// Runs `body` on another thread and waits for it at most [`DEADLINE`]:
/// for calls that block and must return.
pub fn bounded<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    spawn(name, body).join()
}

/// splitmix64: small, deterministic, good enough for sizes and orders.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.up_to(i));
        }
    }
}

/// The payload of packet number `seq`: `len` bytes (at most 64 KiB) that
/// differ from one packet to the next and from one offset to the next. A
/// slice of a fixed random pool, so producing it costs nothing.
pub fn payload(seq: u64, len: usize) -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    const POOL_LEN: usize = 128 * 1024;
    assert!(len <= POOL_LEN / 2);
    let pool = POOL.get_or_init(|| {
        let mut rng = Rng::new(0x5EED);
        (0..POOL_LEN).map(|_| rng.next_u64() as u8).collect()
    });
    let start = (Rng::new(seq).next_u64() % (POOL_LEN / 2) as u64) as usize;
    &pool[start..start + len]
}

/// Sizes of `count` packets, `0..=max` bytes each, from `seed`.
pub fn sizes(seed: u64, count: usize, max: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| rng.up_to(max)).collect()
}

pub fn padded(len: usize) -> usize {
    len.next_multiple_of(8)
}

/// Checks a received payload against the bytes sent: the same bytes, then
/// zero padding to a multiple of 8.
#[track_caller]
pub fn assert_payload(received: &[u8], sent: &[u8]) {
    assert_eq!(received.len(), padded(sent.len()), "payload length (padded to 8)");
    assert!(received[..sent.len()] == *sent, "payload bytes differ from the bytes sent");
    assert!(received[sent.len()..].iter().all(|&b| b == 0), "padding must be zeros");
}

/// Checks a received in-band packet `seq` with a `len`-byte payload.
#[track_caller]
pub fn assert_in_band(packet: &Packet, seq: u64, len: usize) {
    assert_eq!(packet.header.kind, vmbus_ring::PacketKind::InBand);
    assert_eq!(packet.header.transaction_id, seq, "packets out of order");
    assert_payload(&packet.payload, payload(seq, len));
}

/// A waker that counts its wakes.
#[derive(Debug, Default)]
pub struct WakeCount(AtomicUsize);

impl WakeCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker and the count of its wakes.
pub fn counting_waker() -> (Waker, Arc<WakeCount>) {
    let count = Arc::new(WakeCount::default());
    (Waker::from(count.clone()), count)
}

/// Polls `future` once with `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// Runs two futures concurrently on the calling thread (under the
/// `futures-executor` executor) and returns both outputs.
pub fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    futures_executor::block_on(async {
        let (mut a, mut b) = (pin!(a), pin!(b));
        let (mut out_a, mut out_b) = (None, None);
        std::future::poll_fn(|cx| {
            if out_a.is_none() {
                if let Poll::Ready(out) = a.as_mut().poll(cx) {
                    out_a = Some(out);
                }
            }
            if out_b.is_none() {
                if let Poll::Ready(out) = b.as_mut().poll(cx) {
                    out_b = Some(out);
                }
            }
            if out_a.is_some() && out_b.is_some() {
                Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
            } else {
                Poll::Pending
            }
        })
        .await
    })
}

type Action = Box<dyn FnOnce() + Send>;

/// Where a [`HookedSignal`] runs its action.
#[derive(Default)]
pub struct Hook {
    /// Calls of `notifier()` left before the action runs; 0 = disarmed.
    countdown: AtomicUsize,
    action: Mutex<Option<Action>>,
    fired: AtomicUsize,
}

impl Hook {
    /// Runs `action` during the `nth` (1-based) call of `notifier()` from now,
    /// just before the queue gets to use the notifier.
    pub fn arm(&self, nth: usize, action: impl FnOnce() + Send + 'static) {
        *self.action.lock() = Some(Box::new(action));
        self.countdown.store(nth, Ordering::SeqCst);
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst) > 0
    }
}

/// An in-process signal that runs a test's action at a chosen call of
/// `notifier()`: the queue consults its notifier at each step of its
/// wait protocol, so the action plays a peer acting at exactly that point.
pub struct HookedSignal {
    inner: InProcessSignal,
    hook: Arc<Hook>,
}

impl Signal for HookedSignal {
    fn signal_peer(&self) {
        self.inner.signal_peer()
    }

    fn notifier(&self) -> &Notifier {
        let left = self.hook.countdown.load(Ordering::SeqCst);
        if left > 0 {
            self.hook.countdown.store(left - 1, Ordering::SeqCst);
            if left == 1 {
                if let Some(action) = self.hook.action.lock().take() {
                    self.hook.fired.fetch_add(1, Ordering::SeqCst);
                    action();
                }
            }
        }
        self.inner.notifier()
    }

    fn close(&self) {
        self.inner.close()
    }
}

/// A raw channel pair whose host end signals through a [`HookedSignal`]; the
/// guest end is a plain in-process one.
pub fn hooked_pair(
    data_len: usize,
) -> (RawChannel<FlatRingMem, HookedSignal>, RawChannel<FlatRingMem, InProcessSignal>, Arc<Hook>) {
    let host_to_guest = FlatRingMem::new(data_len).unwrap();
    let guest_to_host = FlatRingMem::new(data_len).unwrap();
    let (host_signal, guest_signal) = InProcessSignal::pair();
    let hook = Arc::new(Hook::default());
    let host = RawChannel::new(
        guest_to_host.clone(),
        host_to_guest.clone(),
        HookedSignal { inner: host_signal, hook: hook.clone() },
    )
    .unwrap();
    let guest = RawChannel::new(host_to_guest, guest_to_host, guest_signal).unwrap();
    (host, guest, hook)
}

/// Sends `data` through `pipe` and then shuts its direction down, while
/// reading what the peer sends until its end of stream; returns what was
/// read. Both directions move at once in one task, so two ends running this
/// against each other never wait on each other's full ring.
pub async fn send_and_receive<M, S>(pipe: &mut vmbus_channel::BytePipe<M, S>, data: &[u8]) -> Vec<u8>
where
    M: vmbus_ring::RingMem + Unpin,
    S: Signal,
{
    use futures_io::{AsyncRead, AsyncWrite};
    let (mut sent, mut shut_down, mut ended) = (0, false, false);
    let mut received = Vec::new();
    let mut buf = vec![0; 3000];
    std::future::poll_fn(|cx| loop {
        let mut progress = false;
        if sent < data.len() {
            if let Poll::Ready(written) = std::pin::Pin::new(&mut *pipe).poll_write(cx, &data[sent..]) {
                sent += written.expect("write");
                progress = true;
            }
        } else if !shut_down {
            if let Poll::Ready(result) = pipe.poll_shutdown(cx) {
                result.expect("shut down");
                (shut_down, progress) = (true, true);
            }
        }
        if !ended {
            if let Poll::Ready(read) = std::pin::Pin::new(&mut *pipe).poll_read(cx, &mut buf) {
                match read.expect("read") {
                    0 => ended = true,
                    n => received.extend_from_slice(&buf[..n]),
                }
                progress = true;
            }
        }
        if shut_down && ended {
            return Poll::Ready(());
        }
        if !progress {
            return Poll::Pending;
        }
    })
    .await;
    received
}
