//! The signal layer's reactors and fd-backed signals, as a user relies on
//! them: channels carry round trips and back-pressure under tokio (current-
//! and multi-thread), async-io and the crate's `Driver`; many kicks while a
//! reader is busy are one wake-up; a blocking waiter and an async task share
//! one signal; waits survive `EINTR` and a flooding peer; wrong fds are
//! refused or end waits with `Closed`, never a panic, hang or busy loop.
//!
//! Thread counts are in `tests/threads.rs`, which runs alone: here libtest
//! runs the tests in parallel threads.
#![cfg(target_os = "linux")]

mod common;
mod workload;

use common::{counting_waker, spawn, DEADLINE, PAGE};
use parking_lot::Mutex;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};
use vmbus_channel::{
    block_on_until, ChannelError, ChannelFds, Driver, EventFdSignal, FdWatch, MemfdChannel, PeerEvent, ProcessSignal,
    Queue, Reactor, Signal, SignalFds, SocketSignal,
};
use vmbus_ring::{MappingLayout, OutgoingPacket, PacketKind};
use workload::{SignalKind, KINDS};

// ------------------------------------------------------------------ helpers

/// Polls `signal` once with `waker`.
fn poll_signal(signal: &impl Signal, waker: &Waker, seen: u64) -> Poll<io::Result<PeerEvent>> {
    signal.poll_signal(&mut Context::from_waker(waker), seen)
}

/// Waits (polling the condition, bounded by a count and [`DEADLINE`]) until
/// `done` holds; fails the test with `what` otherwise.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    for _ in 0..10_000_000 {
        if done() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_micros(200));
    }
    panic!("{what}: still not so after {DEADLINE:?}");
}

/// A connected signal pair of `kind`, both ends watched by `driver`.
fn signal_pair(kind: SignalKind, driver: &Driver) -> (ProcessSignal, ProcessSignal) {
    match kind {
        SignalKind::Socket => {
            let (a, b) = SocketSignal::pair().expect("socket signal pair");
            (a.with_reactor(driver.clone()).into(), b.with_reactor(driver.clone()).into())
        }
        SignalKind::EventFd => {
            let (a, b) = EventFdSignal::pair().expect("eventfd signal pair");
            (a.with_reactor(driver.clone()).into(), b.with_reactor(driver.clone()).into())
        }
    }
}

/// Signals not yet taken from `signal`'s fd, looked at without taking them:
/// the bytes queued on a socket (`FIONREAD`), an eventfd's counter (its
/// `/proc/self/fdinfo` entry).
fn pending_on_fd(signal: &ProcessSignal) -> u64 {
    match signal {
        ProcessSignal::Socket(socket) => rustix::io::ioctl_fionread(socket.as_fd()).expect("FIONREAD"),
        ProcessSignal::EventFd(eventfd) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&eventfd.from_peer_fd());
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("read the eventfd's fdinfo");
            let count = info.lines().find_map(|line| line.strip_prefix("eventfd-count:")).expect("eventfd-count");
            u64::from_str_radix(count.trim(), 16).expect("a hex count")
        }
    }
}

/// Waits on `signal` through `poll_signal` with the thread parked between
/// polls, until `deadline`: the async path, woken by the signal's reactor.
fn wait_async(signal: &impl Signal, seen: u64, deadline: Instant) -> Option<PeerEvent> {
    block_on_until(poll_fn(|cx| signal.poll_signal(cx, seen)), deadline).map(|event| event.expect("poll_signal"))
}

// ------------------------------------------------ tokio (feature `tokio`)

#[cfg(feature = "tokio")]
mod tokio_reactor {
    use super::*;
    use tokio::runtime::{Builder, Runtime};
    use vmbus_channel::TokioReactor;

    fn current_thread() -> Runtime {
        Builder::new_current_thread().enable_all().build().expect("current-thread runtime")
    }

    fn multi_thread() -> Runtime {
        Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("multi-thread runtime")
    }

    /// The workload with both ends on `runtime`'s reactor, the guest and
    /// the host's reader spawned as tasks; for both signal kinds.
    fn run_workload(runtime: &Runtime, reactor: impl Fn() -> TokioReactor) {
        for kind in KINDS {
            runtime.block_on(async {
                let run = workload::run_tokio(workload::open(reactor(), kind));
                tokio::time::timeout(DEADLINE, run).await.unwrap_or_else(|_| panic!("{kind:?}: stuck"));
            });
        }
    }

    #[test]
    fn current_thread_runtime_carries_round_trips_and_back_pressure() {
        run_workload(&current_thread(), || TokioReactor::current().expect("inside the runtime"));
    }

    #[test]
    fn multi_thread_runtime_carries_round_trips_and_back_pressure() {
        let runtime = multi_thread();
        // Made from outside the runtime, by handle.
        let handle = runtime.handle().clone();
        run_workload(&runtime, || TokioReactor::new(handle.clone()));
    }

    /// A thread outside a multi-thread runtime, waiting (`block_on`) on a
    /// signal watched by that runtime's reactor, is woken by the runtime's
    /// I/O driver, which its workers turn.
    #[test]
    fn a_waiter_outside_a_multi_thread_runtime_is_woken_by_it() {
        let runtime = multi_thread();
        for kind in KINDS {
            let reactor = TokioReactor::new(runtime.handle().clone());
            let (host, guest) = workload::fds(kind, PAGE);
            let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, reactor.clone()).unwrap();
            let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, reactor).unwrap();
            let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
            let (waiting_tx, waiting) = mpsc::channel();
            let reader = spawn("reader outside the runtime", move || {
                let deadline = Instant::now() + DEADLINE;
                let mut ids = Vec::new();
                {
                    // The first read waits for certain: nothing is sent until it did.
                    let mut read = std::pin::pin!(guest.reader_mut().read());
                    let (waker, _) = counting_waker();
                    assert!(common::poll_once(&mut read, &waker).is_pending());
                    waiting_tx.send(()).unwrap();
                    ids.push(block_on_until(read, deadline).expect("stuck").unwrap().header.transaction_id);
                }
                for _ in 1..100 {
                    let packet = block_on_until(guest.reader_mut().read(), deadline).expect("stuck").unwrap();
                    ids.push(packet.header.transaction_id);
                }
                ids
            });
            waiting.recv_timeout(DEADLINE).expect("the reader waits");
            for id in 0..100 {
                host.writer_mut().write_blocking(&OutgoingPacket::in_band(id), &[b"from outside"]).unwrap();
            }
            let ids = reader.join();
            assert_eq!(ids, (0..100).collect::<Vec<_>>(), "{kind:?}");
        }
    }

    #[test]
    fn current_is_an_error_outside_a_runtime() {
        let error = TokioReactor::current().expect_err("no runtime here");
        assert_eq!(error.kind(), io::ErrorKind::Other);
    }

    /// A runtime built without its I/O driver cannot watch a signal: the
    /// docs (`TokioReactor`, `ChannelError::Signal`) promise an error, not
    /// tokio's panic ("A Tokio 1.x context was found, but IO is disabled").
    #[test]
    fn a_runtime_without_io_fails_async_waits_with_an_error() {
        let runtime = Builder::new_current_thread().enable_time().build().expect("runtime without I/O");
        let (host, guest) = workload::fds(SignalKind::Socket, PAGE);
        let reactor = TokioReactor::new(runtime.handle().clone());
        let _host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, reactor.clone()).unwrap();
        let mut guest = Queue::new(MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, reactor).unwrap());
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async { tokio::time::timeout(DEADLINE, guest.reader_mut().read()).await })
        }));
        match read {
            Ok(Ok(Err(ChannelError::Signal { .. }))) => {}
            Ok(other) => panic!("expected ChannelError::Signal, got {other:?}"),
            Err(_) => panic!("the read panicked instead of failing with ChannelError::Signal"),
        }
    }

    /// A signal whose runtime has shut down: async waits fail with an
    /// error (tokio reports the shutdown), never hang; blocking waits do
    /// not need the runtime and still work.
    #[test]
    fn a_signal_outliving_its_runtime_fails_async_waits_and_still_blocks() {
        for kind in KINDS {
            let runtime = current_thread();
            let reactor = TokioReactor::new(runtime.handle().clone());
            let (host, guest) = workload::fds(kind, PAGE);
            let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, reactor.clone()).unwrap();
            let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, reactor).unwrap();
            let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
            // One async wait while the runtime lives registers the fd.
            let (mut host, mut guest) = runtime.block_on(async move {
                let reader = tokio::spawn(async move {
                    let packet = guest.reader_mut().read().await;
                    (guest, packet)
                });
                // The reader runs first and waits: its fd is registered.
                tokio::task::yield_now().await;
                host.writer_mut().write(&OutgoingPacket::in_band(1), &[b"first"]).await.unwrap();
                let (mut guest, packet) = tokio::time::timeout(DEADLINE, reader).await.expect("stuck").unwrap();
                assert_eq!(packet.unwrap().header.transaction_id, 1);
                assert!(guest.reader_mut().counters().read_waits >= 1, "the read did not wait");
                (host, guest)
            });
            drop(runtime);

            // Blocking use needs no reactor.
            host.writer_mut().write_blocking(&OutgoingPacket::in_band(2), &[b"second"]).unwrap();
            assert_eq!(guest.reader_mut().read_blocking().unwrap().header.transaction_id, 2);
            // An async wait now is an error or a close, within the deadline.
            let deadline = Instant::now() + DEADLINE;
            match block_on_until(guest.reader_mut().read(), deadline) {
                Some(Err(ChannelError::Signal { .. })) => {}
                other => panic!("{kind:?}: an async wait on a dead runtime's reactor gave {other:?}"),
            }
            // And blocking use still works afterwards.
            host.writer_mut().write_blocking(&OutgoingPacket::in_band(3), &[b"third"]).unwrap();
            assert_eq!(guest.reader_mut().read_blocking().unwrap().header.transaction_id, 3);
        }
    }

    /// Many kicks while the reader is busy wake it once, through tokio's
    /// reactor, and are one signal.
    #[test]
    fn kicks_while_busy_are_one_wake_up() {
        let runtime = current_thread();
        for kind in KINDS {
            runtime.block_on(async {
                let reactor = TokioReactor::current().unwrap();
                let (a, b) = match kind {
                    SignalKind::Socket => {
                        let (a, b) = SocketSignal::pair().unwrap();
                        (ProcessSignal::from(a), ProcessSignal::from(b.with_reactor(reactor)))
                    }
                    SignalKind::EventFd => {
                        let (a, b) = EventFdSignal::pair().unwrap();
                        (ProcessSignal::from(a), ProcessSignal::from(b.with_reactor(reactor)))
                    }
                };
                let (waker, woken) = counting_waker();
                let seen = b.notifier().generation();
                assert!(poll_signal(&b, &waker, seen).is_pending());
                for _ in 0..1_000 {
                    a.signal_peer();
                }
                let deadline = Instant::now() + DEADLINE;
                while woken.get() == 0 {
                    assert!(Instant::now() < deadline, "{kind:?}: never woken");
                    // Lets the runtime turn its I/O driver.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(woken.get(), 1, "{kind:?}: 1,000 kicks, one wake-up");
                assert!(matches!(poll_signal(&b, &waker, seen), Poll::Ready(Ok(PeerEvent::Signalled))));
                assert_eq!(b.notifier().generation(), seen + 1, "{kind:?}: one take, one signal");
                assert_eq!(pending_on_fd(&b), 0, "{kind:?}: the take emptied the fd");
            });
        }
    }
}

// ---------------------------------------------- async-io (feature `async-io`)

/// `AsyncIoReactor`, the reactor smol (and async-std) users get. async-io
/// starts one thread of its own, named "async-io", the first time anything
/// is registered with it: a fallback that drives the reactor when no
/// `block_on` does. It does appear with these tests (`tests/threads.rs`
/// checks that it is the only thread added); under `async_io::block_on`,
/// as here, the blocked thread drives the reactor itself.
#[cfg(feature = "async-io")]
mod async_io_reactor {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use vmbus_channel::AsyncIoReactor;

    /// `future`, failing the test if async-io's timer fires first.
    async fn within_deadline<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut timer = async_io::Timer::after(DEADLINE);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
                panic!("stuck for {DEADLINE:?}");
            }
            Poll::Pending
        })
        .await
    }

    /// All three tasks in one `async_io::block_on`, whose thread drives
    /// async-io's reactor itself (smol runs the same way).
    #[test]
    fn block_on_carries_round_trips_and_back_pressure() {
        for kind in KINDS {
            async_io::block_on(within_deadline(workload::run_joined(workload::open(AsyncIoReactor, kind))));
        }
    }

    /// The guest on another thread, under its own `block_on`: wake-ups
    /// cross threads through async-io's one reactor.
    #[test]
    fn tasks_on_two_threads_carry_round_trips_and_back_pressure() {
        for kind in KINDS {
            let workload::Tasks { host_writer, host_reader, guest } =
                workload::tasks(workload::open(AsyncIoReactor, kind));
            let guest = spawn("async-io guest", move || async_io::block_on(within_deadline(guest)));
            let (writer, reader, ()) =
                async_io::block_on(within_deadline(workload::join3(host_writer, host_reader, async {})));
            workload::check(writer, reader, guest.join());
        }
    }
}

// ------------------------------------------------------------------ Driver

/// The workload with its three tasks in one thread, woken by one `Driver`.
#[test]
fn driver_carries_round_trips_and_back_pressure_in_one_thread() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let run = workload::run_joined(workload::open(driver.clone(), kind));
        block_on_until(run, Instant::now() + DEADLINE).unwrap_or_else(|| panic!("{kind:?}: stuck"));
        assert_eq!(driver.watched(), 0, "{kind:?}: the closed channels' fds are no longer watched");
    }
}

/// Each task on its own thread, all woken by one `Driver`.
#[test]
fn driver_carries_round_trips_and_back_pressure_across_threads() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let workload::Tasks { host_writer, host_reader, guest } = workload::tasks(workload::open(driver.clone(), kind));
        let deadline = Instant::now() + DEADLINE;
        let run = |name, task: workload::Task<_>| {
            spawn(name, move || block_on_until(task, deadline).unwrap_or_else(|| panic!("{kind:?}: {name} stuck")))
        };
        let guest = run("guest", guest);
        let reader = spawn("host reader", move || block_on_until(host_reader, deadline).expect("host reader stuck"));
        let writer = block_on_until(host_writer, deadline).expect("host writer stuck");
        workload::check(writer, reader.join_by(deadline), guest.join_by(deadline));
        assert_eq!(driver.watched(), 0);
    }
}

// -------------------------------------------------------------- coalescing

/// 1,000 kicks while the reader is busy (its waker registered, not polling):
/// the waker is woken once, one take moves the generation by one, and the
/// fd holds nothing more.
#[test]
fn kicks_while_busy_are_one_wake_up_through_the_driver() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let (a, b) = signal_pair(kind, &driver);
        let (waker, woken) = counting_waker();
        let seen = b.notifier().generation();
        assert!(poll_signal(&b, &waker, seen).is_pending(), "{kind:?}: nothing sent yet");
        for _ in 0..1_000 {
            a.signal_peer();
        }
        wait_until("the driver wakes the reader", || woken.get() > 0);
        // The registration was used up by the first wake: no other can come.
        assert_eq!(woken.get(), 1, "{kind:?}: 1,000 kicks, one wake-up");
        assert!(matches!(poll_signal(&b, &waker, seen), Poll::Ready(Ok(PeerEvent::Signalled))));
        assert_eq!(b.notifier().generation(), seen + 1, "{kind:?}: one take, one signal");
        assert_eq!(pending_on_fd(&b), 0, "{kind:?}: the take emptied the fd");
        b.receive();
        assert_eq!(b.notifier().generation(), seen + 1, "{kind:?}: nothing left to take");
        assert!(poll_signal(&b, &waker, seen + 1).is_pending(), "{kind:?}: no signal left over");
    }
}

/// The same through a blocking wait: the kicks come first, the wait returns
/// once with the generation moved by one, and a second wait finds nothing.
#[test]
fn kicks_while_busy_are_one_wake_up_through_a_blocking_wait() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let (a, b) = signal_pair(kind, &driver);
        let seen = b.notifier().generation();
        for _ in 0..1_000 {
            a.signal_peer();
        }
        assert_eq!(b.wait(seen, Some(Instant::now() + DEADLINE)), Some(PeerEvent::Signalled));
        assert_eq!(b.notifier().generation(), seen + 1, "{kind:?}: one take, one signal");
        assert_eq!(pending_on_fd(&b), 0, "{kind:?}: the take emptied the fd");
        // Nothing more to wait for: a short wait times out.
        assert_eq!(b.wait(seen + 1, Some(Instant::now() + Duration::from_millis(20))), None);
        assert_eq!(b.notifier().generation(), seen + 1);
        assert_eq!(driver.watched(), 0, "{kind:?}: a blocking wait watches nothing");
    }
}

// ------------------------------------------------- one signal, mixed waiters

/// One channel end's reader blocks in a thread (polling the signal's fd)
/// while its writer is an async task woken by the `Driver` (or the other
/// way round), over one-page rings in both directions, so both halves wait
/// on the one signal again and again. A blocking guest echoes every packet.
fn mixed_waiters(kind: SignalKind, blocking_reader: bool) {
    const COUNT: u64 = 3_000;
    let driver = Driver::new().unwrap();
    let (host, guest) = workload::fds(kind, PAGE);
    let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, driver.clone()).unwrap();
    let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Double, driver.clone()).unwrap();
    let (host_signal, guest_signal) = (host.signal().clone(), guest.signal().clone());
    let (mut reader, mut writer) = Queue::new(host).split();
    let lengths = Arc::new(common::sizes(7, COUNT as usize, 1_000));
    let deadline = Instant::now() + DEADLINE;

    let echo = {
        let mut guest = Queue::new(guest);
        let (guest_signal, host_signal) = (guest_signal.clone(), host_signal.clone());
        spawn("guest echo", move || {
            let mut echoed = 0u64;
            loop {
                match guest.reader_mut().read_blocking() {
                    Ok(packet) => {
                        let id = packet.header.transaction_id;
                        guest.writer_mut().write_blocking(&OutgoingPacket::completion(id), &[&packet.payload]).unwrap();
                        echoed += 1;
                    }
                    Err(ChannelError::Closed) => break,
                    Err(error) => panic!("guest: {error}"),
                }
            }
            workload::hang_up(&guest_signal, &host_signal);
            echoed
        })
    };
    let send = {
        let lengths = lengths.clone();
        move |seq: u64| (OutgoingPacket::in_band(seq), common::payload(seq, lengths[seq as usize]))
    };
    let check = {
        let lengths = lengths.clone();
        move |seq: u64, packet: vmbus_channel::Packet| {
            assert_eq!(packet.header.kind, PacketKind::Completion);
            assert_eq!(packet.header.transaction_id, seq, "echoes out of order");
            common::assert_payload(&packet.payload, common::payload(seq, lengths[seq as usize]));
        }
    };
    let (reading, writing) = if blocking_reader {
        let reading = spawn("blocking host reader", move || {
            for seq in 0..COUNT {
                check(seq, reader.read_blocking().unwrap());
            }
            reader
        });
        let writing = spawn("async host writer", move || {
            let write_all = async {
                for seq in 0..COUNT {
                    let (packet, body) = send(seq);
                    writer.write(&packet, &[body]).await.unwrap();
                }
            };
            block_on_until(write_all, deadline).expect("the async writer is stuck");
        });
        (reading, writing)
    } else {
        let reading = spawn("async host reader", move || {
            let read_all = async {
                for seq in 0..COUNT {
                    check(seq, reader.read().await.unwrap());
                }
            };
            block_on_until(read_all, deadline).expect("the async reader is stuck");
            reader
        });
        let writing = spawn("blocking host writer", move || {
            for seq in 0..COUNT {
                let (packet, body) = send(seq);
                writer.write_blocking(&packet, &[body]).unwrap();
            }
        });
        (reading, writing)
    };
    writing.join_by(deadline);
    // Counted once both halves are done: a half counts after it commits.
    let counters = reading.join_by(deadline).counters();
    assert_eq!((counters.packets_sent, counters.packets_received), (COUNT, COUNT));
    // How often each half waited depends on the scheduling; for the record.
    eprintln!(
        "{kind:?}, blocking reader {blocking_reader}: ring full {} times, {} write waits, {} read waits",
        counters.ring_full, counters.write_waits, counters.read_waits
    );
    workload::hang_up(&host_signal, &guest_signal);
    assert_eq!(echo.join_by(deadline), COUNT);
}

#[test]
fn blocking_reader_and_async_writer_share_one_socket_signal() {
    mixed_waiters(SignalKind::Socket, true);
}

#[test]
fn blocking_reader_and_async_writer_share_one_eventfd_signal() {
    mixed_waiters(SignalKind::EventFd, true);
}

#[test]
fn async_reader_and_blocking_writer_share_one_socket_signal() {
    mixed_waiters(SignalKind::Socket, false);
}

#[test]
fn async_reader_and_blocking_writer_share_one_eventfd_signal() {
    mixed_waiters(SignalKind::EventFd, false);
}

/// The hand-over at the heart of mixed waiting, step by step: while a
/// thread blocks polling the fd, an async waiter is left to it (no reactor
/// watch) and is woken by what that thread takes.
#[test]
fn an_async_waiter_is_woken_by_a_thread_polling_the_fd() {
    for kind in KINDS {
        let driver = Driver::new().unwrap();
        let (a, b) = signal_pair(kind, &driver);
        let b = Arc::new(b);
        let seen = b.notifier().generation();
        let (tid_tx, tid_rx) = mpsc::channel();
        let blocked = {
            let b = b.clone();
            spawn("blocked waiter", move || {
                tid_tx.send(interrupt::current_tid()).unwrap();
                b.wait(seen, Some(Instant::now() + DEADLINE))
            })
        };
        let tid = tid_rx.recv_timeout(DEADLINE).unwrap();
        interrupt::wait_blocked_in(tid, interrupt::POLL_SYSCALLS);
        let (waker, woken) = counting_waker();
        assert!(poll_signal(&*b, &waker, seen).is_pending());
        assert_eq!(driver.watched(), 0, "{kind:?}: left to the polling thread, not watched");
        a.signal_peer();
        assert_eq!(blocked.join(), Some(PeerEvent::Signalled));
        wait_until("the polling thread wakes the async waiter", || woken.get() > 0);
        assert!(matches!(poll_signal(&*b, &waker, seen), Poll::Ready(Ok(PeerEvent::Signalled))));
        assert_eq!(b.notifier().generation(), seen + 1);
    }
}

/// The other way the hand-over can end: the polling thread gives up (its
/// deadline) with nothing found. The async waiter it was standing in for is
/// woken then, goes to its reactor, and is woken by the next signal: it is
/// not left waiting on a thread that no longer polls.
#[test]
fn an_async_waiter_is_handed_back_when_the_polling_thread_times_out() {
    for kind in KINDS {
        let driver = Driver::new().unwrap();
        let (a, b) = signal_pair(kind, &driver);
        let b = Arc::new(b);
        let seen = b.notifier().generation();
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let blocked = {
            let b = b.clone();
            spawn("polling thread with a deadline", move || {
                tid_tx.send(interrupt::current_tid()).unwrap();
                // Polls until told to stop: then a short deadline ends it.
                let mut timed_out = 0;
                while go_rx.try_recv().is_err() {
                    assert_eq!(b.wait(seen, Some(Instant::now() + Duration::from_millis(5))), None);
                    timed_out += 1;
                    assert!(timed_out < 1_000_000, "never told to stop");
                }
                timed_out
            })
        };
        let tid = tid_rx.recv_timeout(DEADLINE).unwrap();
        interrupt::wait_blocked_in(tid, interrupt::POLL_SYSCALLS);
        let (waker, woken) = counting_waker();
        let mut registered_with_driver = false;
        // Register while the thread polls (it may be between two polls:
        // then the fd is watched at once, which is fine too).
        assert!(poll_signal(&*b, &waker, seen).is_pending());
        registered_with_driver |= driver.watched() > 0;
        go_tx.send(()).unwrap();
        assert!(blocked.join() >= 1);
        // The thread stopped polling: the waiter was woken to look again...
        wait_until("the waiter is handed back", || registered_with_driver || woken.get() > 0);
        let before = woken.get();
        assert!(poll_signal(&*b, &waker, seen).is_pending(), "{kind:?}: nothing was sent");
        assert_eq!(driver.watched(), 1, "{kind:?}: ...and is watched by its reactor now");
        // ...so the next signal reaches it.
        a.signal_peer();
        wait_until("the reactor wakes the waiter", || woken.get() > before);
        assert!(matches!(poll_signal(&*b, &waker, seen), Poll::Ready(Ok(PeerEvent::Signalled))));
    }
}

/// Waits whose deadline has passed, or is too far to express, behave.
#[test]
fn wait_deadlines_in_the_past_and_far_future() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let (a, b) = signal_pair(kind, &driver);
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(b.wait(0, Some(past)), None, "{kind:?}: nothing sent, deadline gone");
        a.signal_peer();
        // News is reported whatever the deadline: first looked at, then polled.
        assert_eq!(b.wait(0, Some(Instant::now() + DEADLINE)), Some(PeerEvent::Signalled));
        assert_eq!(b.wait(0, Some(past)), Some(PeerEvent::Signalled), "{kind:?}: news before the deadline check");
        // A deadline too far for a timespec is no deadline: the signal ends it.
        let far = Instant::now() + Duration::from_secs(u64::MAX / 4);
        let b = Arc::new(b);
        let waiter = {
            let b = b.clone();
            spawn("far deadline", move || b.wait(1, Some(far)))
        };
        a.signal_peer();
        assert_eq!(waiter.join(), Some(PeerEvent::Signalled), "{kind:?}");
    }
}

// ------------------------------------------------------------------ a flood

/// A peer kicks as fast as it can from another thread (at most 10^6 kicks
/// or 1 s, and no longer than the reader needs) while this thread waits
/// again and again, blocking or async through the `Driver`. The reader keeps
/// making progress during the flood, never gets more wake-ups than kicks,
/// never sees a close, and the fd is empty once the flood is over and the
/// reader has caught up (the drain keeps up; nothing piles up).
fn flood(kind: SignalKind, async_wait: bool) {
    const MAX_KICKS: u64 = 1_000_000;
    const WAKE_UPS_WANTED: u64 = 1_000;
    let driver = Driver::new().unwrap();
    let (a, b) = signal_pair(kind, &driver);
    let over = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (over, enough) = (over.clone(), enough.clone());
        spawn("flooder", move || {
            let start = Instant::now();
            let mut kicks = 0;
            while kicks < MAX_KICKS && !enough.load(Ordering::Relaxed) {
                if kicks % 1024 == 0 && start.elapsed() >= Duration::from_secs(1) {
                    break;
                }
                a.signal_peer();
                kicks += 1;
            }
            over.store(true, Ordering::SeqCst);
            (a, kicks)
        })
    };
    let deadline = Instant::now() + DEADLINE;
    let (mut wake_ups, mut during_flood, mut most_pending) = (0u64, 0u64, 0u64);
    for _ in 0..10 * MAX_KICKS {
        assert!(Instant::now() < deadline, "the reader is stuck");
        let flood_over = over.load(Ordering::SeqCst);
        let seen = b.notifier().generation();
        // What the next take faces.
        most_pending = most_pending.max(pending_on_fd(&b));
        // Short waits: once the flood is over, one times out and ends this.
        let until = Instant::now() + Duration::from_millis(100);
        let event = if async_wait { wait_async(&b, seen, until) } else { b.wait(seen, Some(until)) };
        match event {
            Some(PeerEvent::Signalled) => {
                wake_ups += 1;
                if !over.load(Ordering::SeqCst) {
                    during_flood += 1;
                    if during_flood >= WAKE_UPS_WANTED {
                        enough.store(true, Ordering::Relaxed);
                    }
                }
            }
            Some(PeerEvent::Closed) => panic!("{kind:?}: a flood is not a close"),
            None if flood_over => break,
            None => {}
        }
    }
    let (a, kicks) = flooder.join_by(deadline);
    assert!(over.load(Ordering::SeqCst), "the reader stopped waiting before the flood was over");
    eprintln!(
        "{kind:?} flood ({}): {kicks} kicks, {wake_ups} wake-ups ({during_flood} during the flood), \
         at most {most_pending} unread on the fd before a wait",
        if async_wait { "async" } else { "blocking" }
    );
    assert!(during_flood >= 10, "{kind:?}: the reader made no progress during the flood ({during_flood} wake-ups)");
    assert!(wake_ups <= kicks, "{kind:?}: {wake_ups} wake-ups for {kicks} kicks");
    assert!(b.notifier().generation() <= kicks, "{kind:?}: more signals than kicks");
    assert_eq!(pending_on_fd(&b), 0, "{kind:?}: the reader caught up with the flood");
    // Nothing piles up: the kernel bounds a socket's queue (a full one
    // drops the kick, which `signal_peer` ignores), an eventfd is one
    // counter; what a wait found unread stayed within a socket buffer.
    if kind == SignalKind::Socket {
        assert!(most_pending <= 8 << 20, "{most_pending} bytes piled up");
    }
    // Still a working signal both ways.
    let seen = a.notifier().generation();
    b.signal_peer();
    assert_eq!(a.wait(seen, Some(Instant::now() + DEADLINE)), Some(PeerEvent::Signalled));

    // A flood, then the peer goes: the close comes through, after at most
    // a few waits (a socket's backlog is drained first).
    for _ in 0..10_000 {
        a.signal_peer();
    }
    drop(a);
    if let ProcessSignal::EventFd(b) = &b {
        b.peer_closed(); // an eventfd cannot tell: the VMM says so
    }
    let mut waits = 0;
    loop {
        let seen = b.notifier().generation();
        let until = Instant::now() + DEADLINE;
        let event = if async_wait { wait_async(&b, seen, until) } else { b.wait(seen, Some(until)) };
        waits += 1;
        match event {
            Some(PeerEvent::Closed) => break,
            Some(PeerEvent::Signalled) => assert!(waits < 100, "{kind:?}: no close after {waits} waits"),
            None => panic!("{kind:?}: the close never came"),
        }
    }
}

#[test]
fn a_flooding_peer_does_not_starve_a_blocking_waiter_on_a_socket() {
    flood(SignalKind::Socket, false);
}

#[test]
fn a_flooding_peer_does_not_starve_a_blocking_waiter_on_an_eventfd() {
    flood(SignalKind::EventFd, false);
}

#[test]
fn a_flooding_peer_does_not_starve_an_async_waiter_on_a_socket() {
    flood(SignalKind::Socket, true);
}

#[test]
fn a_flooding_peer_does_not_starve_an_async_waiter_on_an_eventfd() {
    flood(SignalKind::EventFd, true);
}

/// Waits abandoned with their wakers still registered (futures dropped
/// mid-wait, each with a waker of its own) do not pile up on an fd-backed
/// signal: the oldest are woken early and released.
#[test]
fn abandoned_async_waits_do_not_pile_up() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        let (a, b) = signal_pair(kind, &driver);
        let seen = b.notifier().generation();
        let (first, first_woken) = counting_waker();
        assert!(poll_signal(&b, &first, seen).is_pending());
        let mut latest = None;
        for _ in 0..10_000 {
            let (waker, woken) = counting_waker();
            assert!(poll_signal(&b, &waker, seen).is_pending());
            latest = Some(woken);
        }
        assert!(first_woken.get() >= 1, "{kind:?}: the oldest waker was kept, not released");
        a.signal_peer();
        let latest = latest.unwrap();
        wait_until("the latest waiter is woken", || latest.get() > 0);
        assert_eq!(driver.watched(), 1, "{kind:?}: one watch for the one fd, however many waiters");
    }
}

/// Tasks waiting on one signal, each polled again whenever its waker is
/// woken, with no signal sent: returns the round in which no waker was
/// woken any more, or `None` if they still woke each other after 1,000
/// rounds (a busy loop of spurious wake-ups).
fn rounds_until_quiet(waiters: usize) -> Option<usize> {
    let driver = Driver::new().unwrap();
    let (_a, b) = signal_pair(SignalKind::Socket, &driver);
    let wakers: Vec<_> = (0..waiters).map(|_| counting_waker()).collect();
    let mut handled = vec![0; waiters];
    for (waker, _) in &wakers {
        assert!(poll_signal(&b, waker, 0).is_pending());
    }
    for round in 0..1_000 {
        let woken: Vec<usize> = (0..waiters).filter(|&task| wakers[task].1.get() > handled[task]).collect();
        if woken.is_empty() {
            return Some(round);
        }
        for task in woken {
            handled[task] = wakers[task].1.get();
            assert!(poll_signal(&b, &wakers[task].0, 0).is_pending());
        }
    }
    None
}

/// Up to 64 tasks may wait on one signal at once without waking each other
/// (a queue's two halves need two; past 64 the notifier sheds its wakers,
/// for those of abandoned waits, and live waiters would wake each other
/// until a signal came).
#[test]
fn up_to_64_waiting_tasks_on_one_signal_settle() {
    for waiters in [1, 2, 8, 9, 64] {
        assert_eq!(rounds_until_quiet(waiters), Some(0), "{waiters} waiters still wake each other");
    }
}

// ------------------------------------------------------------- bad input

/// Fds that are not what a signal needs, each with what it is.
fn wrong_fds() -> Vec<(&'static str, OwnedFd)> {
    let (pipe_read, pipe_write) = rustix::pipe::pipe().expect("pipe");
    let (seqpacket, _) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .expect("seqpacket pair");
    let memfd = rustix::fs::memfd_create("not a signal", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).expect("epoll");
    vec![
        ("a pipe's read end", pipe_read),
        ("a pipe's write end", pipe_write),
        ("/dev/null", std::fs::File::open("/dev/null").unwrap().into()),
        ("/dev/zero", std::fs::File::open("/dev/zero").unwrap().into()),
        ("a datagram socket", UnixDatagram::pair().unwrap().0.into()),
        ("a seqpacket socket", seqpacket),
        ("a memfd", memfd),
        ("an epoll fd", epoll),
        ("a directory", std::fs::File::open("/").unwrap().into()),
    ]
}

fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).unwrap()
}

#[test]
fn socket_signal_refuses_what_is_not_a_stream_socket() {
    let mut candidates = wrong_fds();
    candidates.push(("an eventfd", eventfd()));
    for (what, fd) in candidates {
        let error = SocketSignal::new(fd).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what}: {error}");
    }
}

#[test]
fn eventfd_signal_refuses_what_is_not_an_eventfd_in_either_place() {
    let mut candidates = wrong_fds();
    candidates.push(("a stream socket", UnixStream::pair().unwrap().0.into()));
    for (what, fd) in candidates {
        let error = EventFdSignal::new(fd.try_clone().unwrap(), eventfd()).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what} as from_peer: {error}");
        assert!(error.to_string().contains("from_peer"), "{what}: {error}");
        let error = EventFdSignal::new(eventfd(), fd).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what} as to_peer: {error}");
        assert!(error.to_string().contains("to_peer"), "{what}: {error}");
    }
}

#[test]
fn memfd_channel_refuses_signal_fds_of_the_wrong_kind() {
    type MakeSignal = Box<dyn Fn() -> SignalFds>;
    let attempts: Vec<(&str, MakeSignal)> = vec![
        ("a pipe as the socket", Box::new(|| SignalFds::Socket(rustix::pipe::pipe().unwrap().0))),
        ("a datagram socket", Box::new(|| SignalFds::Socket(UnixDatagram::pair().unwrap().0.into()))),
        ("an eventfd as the socket", Box::new(|| SignalFds::Socket(eventfd()))),
        (
            "a socket as from_peer",
            Box::new(|| SignalFds::EventFd { from_peer: UnixStream::pair().unwrap().0.into(), to_peer: eventfd() }),
        ),
        (
            "/dev/zero as to_peer",
            Box::new(|| SignalFds::EventFd {
                from_peer: eventfd(),
                to_peer: std::fs::File::open("/dev/zero").unwrap().into(),
            }),
        ),
    ];
    let driver = Driver::new().unwrap();
    for (what, signal) in attempts {
        let (mut fds, _peer) = ChannelFds::pair(PAGE).unwrap();
        fds.signal = signal();
        let error = MemfdChannel::from_fds(fds, MappingLayout::Single).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what}: {error}");
        let (mut fds, _peer) = ChannelFds::pair(PAGE).unwrap();
        fds.signal = signal();
        let error = MemfdChannel::from_fds_with_reactor(fds, MappingLayout::Single, driver.clone()).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what}: {error}");
    }
}

/// Stream sockets that are no end of a connected pair, for a peer: the
/// constructor takes them (they are stream sockets).
fn unconnected_stream_sockets() -> Vec<(&'static str, OwnedFd)> {
    use rustix::net::{socket, AddressFamily, SocketType};
    let mut sockets = vec![
        ("an unconnected Unix stream socket", socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap()),
        ("an unconnected TCP socket", socket(AddressFamily::INET, SocketType::STREAM, None).unwrap()),
    ];
    match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => sockets.push(("a listening TCP socket", listener.into())),
        Err(error) => eprintln!("no loopback TCP here ({error}): skipped a listening TCP socket"),
    }
    sockets.push(("a listening Unix stream socket", unix_listener().into()));
    sockets
}

fn unix_listener() -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("vmbus-reactors-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    std::os::unix::net::UnixListener::bind_addr(&address).unwrap()
}

/// What a signal over `socket` does: refused with `InvalidInput`, or a
/// signal whose waits (blocking and async) end with `Closed`.
fn refused_or_closed(what: &str, socket: OwnedFd, driver: &Driver) -> Result<(), String> {
    let signal = match SocketSignal::new(socket) {
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => return Ok(()),
        Err(error) => return Err(format!("{what}: refused with {:?} ({error})", error.kind())),
        Ok(signal) => signal.with_reactor(driver.clone()),
    };
    signal.signal_peer(); // neither panics nor blocks
    let seen = signal.notifier().generation();
    let deadline = Instant::now() + Duration::from_secs(5);
    let async_event = wait_async(&signal, seen, deadline);
    let blocking_event = signal.wait(seen, Some(deadline));
    match (async_event, blocking_event) {
        (Some(PeerEvent::Closed), Some(PeerEvent::Closed)) => Ok(()),
        other => Err(format!("{what}: accepted, and (async, blocking) waits gave {other:?} instead of Closed")),
    }
}

/// Blocking first, on a fresh signal: the order matters (see the bug test
/// below), as a blocking wait must not rely on an async one having read
/// the socket first.
fn refused_or_closed_blocking_first(what: &str, socket: OwnedFd) -> Result<(), String> {
    let signal = match SocketSignal::new(socket) {
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => return Ok(()),
        Err(error) => return Err(format!("{what}: refused with {:?} ({error})", error.kind())),
        Ok(signal) => signal,
    };
    let seen = signal.notifier().generation();
    match signal.wait(seen, Some(Instant::now() + Duration::from_secs(2))) {
        Some(PeerEvent::Closed) => Ok(()),
        other => Err(format!("{what}: accepted, and a blocking wait gave {other:?} instead of Closed")),
    }
}

#[test]
fn stream_sockets_without_a_peer_end_waits_with_closed() {
    let driver = Driver::new().unwrap();
    let mut failures = Vec::new();
    for (what, socket) in unconnected_stream_sockets() {
        if what.contains("listening") {
            continue; // the bug test below
        }
        let copy = socket.try_clone().unwrap();
        failures.extend(refused_or_closed(what, socket, &driver).err());
        failures.extend(refused_or_closed_blocking_first(what, copy).err());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A listening stream socket is no signal either: it has no peer, and a
/// blocking wait `poll`s first, and a listening socket with no pending
/// connection never becomes readable, so a wait on it would never return.
#[test]
fn listening_sockets_are_refused_or_end_waits_with_closed() {
    let driver = Driver::new().unwrap();
    let mut failures = Vec::new();
    for (what, socket) in unconnected_stream_sockets() {
        if !what.contains("listening") {
            continue;
        }
        let copy = socket.try_clone().unwrap();
        failures.extend(refused_or_closed_blocking_first(what, copy).err());
        failures.extend(refused_or_closed(what, socket, &driver).err());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The peer closing its end wakes a blocked thread, an async waiter (the
/// driver), and ends a queue's blocking and async reads and writes.
#[test]
fn a_peer_closing_its_end_ends_every_kind_of_wait() {
    let driver = Driver::new().unwrap();
    for kind in KINDS {
        // Signals: one blocked thread and one async task wait; the peer goes.
        let (a, b) = signal_pair(kind, &driver);
        let b = Arc::new(b);
        let seen = b.notifier().generation();
        let (tid_tx, tid_rx) = mpsc::channel();
        let blocked = {
            let b = b.clone();
            spawn("blocked waiter", move || {
                tid_tx.send(interrupt::current_tid()).unwrap();
                b.wait(seen, None)
            })
        };
        interrupt::wait_blocked_in(tid_rx.recv_timeout(DEADLINE).unwrap(), interrupt::POLL_SYSCALLS);
        let waiting = {
            let b = b.clone();
            spawn("async waiter", move || wait_async(&*b, seen, Instant::now() + DEADLINE))
        };
        drop(a);
        if let ProcessSignal::EventFd(b) = &*b {
            b.peer_closed(); // an eventfd cannot tell: the VMM says so
        }
        assert_eq!(blocked.join(), Some(PeerEvent::Closed), "{kind:?}: blocked thread");
        assert_eq!(waiting.join(), Some(PeerEvent::Closed), "{kind:?}: async waiter");
        assert_eq!(b.notifier().generation(), seen, "{kind:?}: closing is not a signal");

        // Queues: a blocked reader, then a writer waiting for space.
        let (host, guest) = workload::fds(kind, PAGE);
        let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, driver.clone()).unwrap();
        let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, driver.clone()).unwrap();
        let (host_signal, guest_signal) = (host.signal().clone(), guest.signal().clone());
        let (mut host, guest) = (Queue::new(host), Queue::new(guest));
        let reader = spawn("blocked reader", move || {
            let mut guest = guest;
            let result = guest.reader_mut().read_blocking().map(|packet| packet.header.transaction_id);
            (guest, result)
        });
        // Fill the guest's incoming ring so that a write must wait.
        host.writer_mut().write_blocking(&OutgoingPacket::in_band(1), &[b"one"]).unwrap();
        let (guest, first) = reader.join();
        assert_eq!(first, Ok(1));
        let writer = spawn("writer waiting for space", move || {
            let mut guest = guest;
            let big = vec![0u8; 1_000];
            let result =
                (0..100).try_for_each(|n| guest.writer_mut().write_blocking(&OutgoingPacket::in_band(n), &[&big]));
            (guest, result)
        });
        // The host never reads; it goes away.
        workload::hang_up(&host_signal, &guest_signal);
        drop((host, host_signal));
        let (mut guest, written) = writer.join();
        assert_eq!(written, Err(ChannelError::Closed), "{kind:?}: a writer waiting for space");
        assert_eq!(
            guest.reader_mut().read_blocking().map(|_| ()),
            Err(ChannelError::Closed),
            "{kind:?}: blocking read"
        );
        let read = block_on_until(guest.reader_mut().read(), Instant::now() + DEADLINE);
        assert_eq!(read.map(|read| read.map(|_| ())), Some(Err(ChannelError::Closed)), "{kind:?}: async read");
        drop((guest, guest_signal, b));
        assert_eq!(driver.watched(), 0, "{kind:?}: every signal is gone");
    }
}

/// A reactor that refuses every fd (a limit reached, say): an async wait
/// fails with the reactor's error, as `ChannelError::Signal`, and keeps
/// failing; blocking waits need no reactor and still work.
#[test]
fn a_reactor_refusing_the_fd_fails_async_waits() {
    #[derive(Debug, Clone)]
    struct Refusing;
    impl Reactor for Refusing {
        fn watch(&self, _fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "watching no fds"))
        }
    }
    for kind in KINDS {
        let (host, guest) = workload::fds(kind, PAGE);
        let mut host = Queue::new(MemfdChannel::from_fds_with_reactor(host, MappingLayout::Single, Refusing).unwrap());
        let mut guest =
            Queue::new(MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, Refusing).unwrap());
        for _ in 0..2 {
            let read = block_on_until(guest.reader_mut().read(), Instant::now() + DEADLINE).expect("not a hang");
            match read {
                Err(ChannelError::Signal { kind: io::ErrorKind::PermissionDenied, message }) => {
                    assert!(message.contains("watching no fds"), "{message}")
                }
                other => panic!("{kind:?}: {other:?}"),
            }
        }
        host.writer_mut().write_blocking(&OutgoingPacket::in_band(9), &[b"still"]).unwrap();
        assert_eq!(guest.reader_mut().read_blocking().unwrap().header.transaction_id, 9);
    }
}

/// A reactor that reports readiness forever with nothing to read: one poll
/// of the signal gives up after a few rounds (Pending, having woken its own
/// waker to be polled again) instead of looping, and a real signal still
/// gets through.
#[test]
fn a_reactor_always_ready_cannot_keep_one_poll_going() {
    #[derive(Debug, Default)]
    struct AlwaysReady(Arc<AtomicU64>);
    #[derive(Debug)]
    struct Watch(Arc<AtomicU64>);
    impl Reactor for AlwaysReady {
        fn watch(&self, _fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>> {
            Ok(Box::new(Watch(self.0.clone())))
        }
    }
    impl FdWatch for Watch {
        fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        }
    }
    for kind in KINDS {
        let polls = Arc::new(AtomicU64::new(0));
        let (a, b): (ProcessSignal, ProcessSignal) = match kind {
            SignalKind::Socket => {
                let (a, b) = SocketSignal::pair().unwrap();
                (a.into(), b.with_reactor(AlwaysReady(polls.clone())).into())
            }
            SignalKind::EventFd => {
                let (a, b) = EventFdSignal::pair().unwrap();
                (a.into(), b.with_reactor(AlwaysReady(polls.clone())).into())
            }
        };
        let (waker, woken) = counting_waker();
        for round in 1..=3 {
            assert!(poll_signal(&b, &waker, 0).is_pending(), "{kind:?}: nothing was sent");
            assert_eq!(woken.get(), round, "{kind:?}: a poll that gives up wakes its task to come back");
            assert!(polls.load(Ordering::SeqCst) <= 16 * round as u64, "{kind:?}: one poll kept going");
        }
        a.signal_peer();
        assert!(matches!(poll_signal(&b, &waker, 0), Poll::Ready(Ok(PeerEvent::Signalled))));
    }
}

// ------------------------------------------------------------------- EINTR

/// Interrupting a thread blocked in a signal's wait (`EINTR`), without
/// `unsafe`: `vmm-sys-util` installs the handler and `pthread_kill`s a
/// thread of ours by its `JoinHandle`.
mod interrupt {
    use super::*;
    use std::ffi::{c_int, c_void};
    use std::sync::OnceLock;
    use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

    /// Interrupts handled so far, process-wide.
    pub static HANDLED: AtomicUsize = AtomicUsize::new(0);
    /// One interrupting test at a time, so `HANDLED` counts its interrupts.
    pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// The system calls a blocking wait sleeps in.
    #[cfg(target_arch = "x86_64")]
    pub const POLL_SYSCALLS: &[i64] = &[libc::SYS_ppoll, libc::SYS_poll];
    #[cfg(not(target_arch = "x86_64"))]
    pub const POLL_SYSCALLS: &[i64] = &[libc::SYS_ppoll];

    extern "C" fn on_signal(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
        // Async-signal-safe: one atomic add.
        HANDLED.fetch_add(1, Ordering::SeqCst);
    }

    /// The real-time signal used to interrupt, with its handler installed
    /// (without `SA_RESTART`: the interrupted call fails with `EINTR`).
    pub fn signal_number() -> c_int {
        static INSTALLED: OnceLock<c_int> = OnceLock::new();
        *INSTALLED.get_or_init(|| {
            let number = SIGRTMIN();
            register_signal_handler(number, on_signal).expect("install the handler");
            number
        })
    }

    /// This thread's id, as `/proc/self/task` names it.
    pub fn current_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        link.file_name().and_then(|name| name.to_str()).and_then(|name| name.parse().ok()).expect("a thread id")
    }

    /// The system call thread `tid` sleeps in, if it sleeps in one; `Some(-1)`
    /// if it sleeps but `/proc` does not say in what.
    pub fn sleeping_in(tid: u32) -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        // The state follows the parenthesised name, which may hold spaces.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        if state != "S" {
            return None;
        }
        match std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) {
            Ok(syscall) => syscall.split_whitespace().next()?.parse().ok(),
            Err(_) => Some(-1),
        }
    }

    /// Waits (bounded) until thread `tid` sleeps in one of `syscalls`.
    #[track_caller]
    pub fn wait_blocked_in(tid: u32, syscalls: &[i64]) {
        wait_until(&format!("thread {tid} blocks in one of the system calls {syscalls:?}"), || {
            sleeping_in(tid).is_some_and(|call| call == -1 || syscalls.contains(&call))
        });
    }

    /// A thread blocked in `Signal::wait` (no deadline, or a far one) is
    /// interrupted five times; it goes back to waiting each time, returns
    /// nothing early, and then returns the one real signal.
    fn interrupted_wait(kind: SignalKind, deadline: Option<Duration>) {
        let _alone = ONE_AT_A_TIME.lock();
        let number = signal_number();
        let driver = Driver::new().unwrap();
        let (a, b) = signal_pair(kind, &driver);
        let (report, reports) = mpsc::channel();
        let waiter = thread::Builder::new()
            .name("interrupted waiter".into())
            .spawn(move || {
                report.send(Err(current_tid())).unwrap();
                let seen = b.notifier().generation();
                let event = b.wait(seen, deadline.map(|left| Instant::now() + left));
                report.send(Ok((event, b.notifier().generation() - seen))).unwrap();
            })
            .unwrap();
        let Ok(Err(tid)) = reports.recv_timeout(DEADLINE) else { panic!("the waiter did not start") };
        for _ in 0..5 {
            wait_blocked_in(tid, POLL_SYSCALLS);
            let before = HANDLED.load(Ordering::SeqCst);
            waiter.kill(number).expect("pthread_kill");
            wait_until("the interrupt is handled", || HANDLED.load(Ordering::SeqCst) > before);
        }
        // Back to sleep in poll after the last interrupt, not returned.
        wait_blocked_in(tid, POLL_SYSCALLS);
        assert!(reports.try_recv().is_err(), "{kind:?}: an interrupted wait returned");
        a.signal_peer();
        let result = reports.recv_timeout(DEADLINE).expect("the waiter is stuck");
        assert_eq!(result, Ok((Some(PeerEvent::Signalled), 1)), "{kind:?}");
        waiter.join().unwrap();
    }

    #[test]
    fn eintr_does_not_end_a_blocking_wait_on_a_socket() {
        interrupted_wait(SignalKind::Socket, None);
        interrupted_wait(SignalKind::Socket, Some(DEADLINE));
    }

    #[test]
    fn eintr_does_not_end_a_blocking_wait_on_an_eventfd() {
        interrupted_wait(SignalKind::EventFd, None);
        interrupted_wait(SignalKind::EventFd, Some(DEADLINE));
    }

    /// The same for a queue's `read_blocking`.
    #[test]
    fn eintr_does_not_end_read_blocking() {
        let _alone = ONE_AT_A_TIME.lock();
        let number = signal_number();
        for kind in KINDS {
            let (host, guest) = workload::fds(kind, PAGE);
            let mut host = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Single).unwrap());
            let mut guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Single).unwrap());
            let (report, reports) = mpsc::channel();
            let reader = thread::Builder::new()
                .name("interrupted reader".into())
                .spawn(move || {
                    report.send(Err(current_tid())).unwrap();
                    let read = guest.reader_mut().read_blocking().map(|packet| packet.header.transaction_id);
                    report.send(Ok(read)).unwrap();
                })
                .unwrap();
            let Ok(Err(tid)) = reports.recv_timeout(DEADLINE) else { panic!("the reader did not start") };
            for _ in 0..5 {
                wait_blocked_in(tid, POLL_SYSCALLS);
                let before = HANDLED.load(Ordering::SeqCst);
                reader.kill(number).expect("pthread_kill");
                wait_until("the interrupt is handled", || HANDLED.load(Ordering::SeqCst) > before);
            }
            wait_blocked_in(tid, POLL_SYSCALLS);
            assert!(reports.try_recv().is_err(), "{kind:?}: an interrupted read returned");
            host.writer_mut().write_blocking(&OutgoingPacket::in_band(77), &[b"after the interrupts"]).unwrap();
            assert_eq!(reports.recv_timeout(DEADLINE).expect("the reader is stuck"), Ok(Ok(77)), "{kind:?}");
            reader.join().unwrap();
        }
    }
}
