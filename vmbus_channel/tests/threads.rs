//! Which threads the signal layer starts: none for any signal kind used
//! through blocking waits, none with tokio beyond the runtime's own, only
//! async-io's own fallback thread with async-io, one for a `Driver` however
//! many channel ends it serves, and one shared driver, started on the first
//! async wait of a signal given no reactor. Also: a `Driver` serving 1,000
//! channel pairs wakes exactly the end that was signalled, and its thread
//! survives being interrupted (`EINTR`).
//!
//! Thread counts (`/proc/self/task`) are process-wide, so this binary has
//! no libtest harness (`harness = false`): `main` runs the scenarios one
//! after another in one process where every thread is known, and ends with
//! `N passed, M failed` (exiting non-zero on a failure). Arguments: names
//! (or parts of names) of scenarios to run; `--list`; `--exact`; libtest's
//! other flags are accepted and ignored.
#[cfg(target_os = "linux")]
mod common;
#[cfg(target_os = "linux")]
mod workload;

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("0 passed, 0 failed");
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(target_os = "linux")]
mod linux {
    use crate::common::{counting_waker, spawn, WakeCount, DEADLINE, PAGE};
    use crate::workload::{self, SignalKind, KINDS};
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::thread;
    use std::time::{Duration, Instant};
    use vmbus_channel::{
        block_on_until, connected_pair, ChannelError, ChannelFds, Driver, EventFdSignal, ExternalReactor,
        InProcessSignal, MemfdChannel, PeerEvent, ProcessSignal, Queue, Signal, SocketSignal,
    };
    use vmbus_ring::{MappingLayout, OutgoingPacket};

    /// How long threads that were joined may take to leave `/proc`.
    const SETTLE: Duration = Duration::from_secs(10);
    /// The process gives up (exit 101) if the scenarios together run this
    /// long: a last resort, every wait in them is bounded already.
    const WATCHDOG: Duration = Duration::from_secs(300);

    /// What the scenarios know about the process between them.
    struct Process {
        /// Threads that stay for good: this one, the watchdog, and those a
        /// scenario left on purpose (the shared driver, async-io's thread).
        floor: usize,
    }

    type Scenario = fn(&mut Process);

    fn scenarios() -> Vec<(&'static str, Scenario)> {
        let mut list: Vec<(&'static str, Scenario)> =
            vec![("no_signal_kind_starts_a_thread", no_signal_kind_starts_a_thread)];
        #[cfg(feature = "tokio")]
        list.extend([
            ("tokio_current_thread_adds_no_thread", tokio_scenarios::current_thread as Scenario),
            ("tokio_multi_thread_adds_no_thread_beyond_its_workers", tokio_scenarios::multi_thread),
        ]);
        list.extend([
            ("one_driver_thread_serves_1000_socket_pairs", driver_serves_1000_socket_pairs as Scenario),
            ("one_driver_thread_serves_1000_eventfd_pairs", driver_serves_1000_eventfd_pairs),
            ("the_driver_thread_survives_eintr", the_driver_thread_survives_eintr),
            // Leaves the shared driver's thread behind: after the scenarios
            // that want no driver thread at all.
            ("the_shared_driver_starts_once_on_the_first_async_wait", shared_driver_starts_on_first_async_wait),
        ]);
        // Leaves async-io's thread behind: last.
        #[cfg(feature = "async-io")]
        list.push(("async_io_adds_only_its_own_thread", async_io_adds_only_its_own_thread));
        list
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let exact = args.iter().any(|arg| arg == "--exact");
        // Flags that take a value, as libtest's do.
        let with_value = ["--test-threads", "--format", "--color", "--skip", "-Z", "--logfile", "--shuffle-seed"];
        let mut filters = Vec::new();
        let mut skip = Vec::new();
        let mut args_iter = args.iter();
        while let Some(arg) = args_iter.next() {
            if with_value.contains(&arg.as_str()) {
                let value = args_iter.next();
                if arg == "--skip" {
                    skip.extend(value.cloned());
                }
            } else if !arg.starts_with('-') {
                filters.push(arg.clone());
            }
        }
        let selected = |name: &str| {
            let matches = |filter: &String| if exact { name == filter } else { name.contains(filter.as_str()) };
            (filters.is_empty() || filters.iter().any(matches)) && !skip.iter().any(|s| name.contains(s.as_str()))
        };
        // Nothing here is #[ignore]d: `--ignored` selects none.
        let ignored_only = args.iter().any(|arg| arg == "--ignored");
        let scenarios: Vec<_> = scenarios().into_iter().filter(|(name, _)| !ignored_only && selected(name)).collect();
        if args.iter().any(|arg| arg == "--list") {
            for (name, _) in &scenarios {
                println!("{name}: test");
            }
            return;
        }

        thread::Builder::new()
            .name("watchdog".into())
            .spawn(|| {
                thread::sleep(WATCHDOG);
                eprintln!("threads: still running after {WATCHDOG:?}: a scenario is stuck");
                std::process::exit(101);
            })
            .expect("start the watchdog");
        let mut process = Process { floor: 2 };
        println!("\nrunning {} scenarios", scenarios.len());
        let (mut passed, mut failed) = (0, Vec::new());
        for (name, scenario) in scenarios {
            let start = Instant::now();
            match catch_unwind(AssertUnwindSafe(|| scenario(&mut process))) {
                Ok(()) => {
                    println!("scenario {name} ... ok ({:.2?})", start.elapsed());
                    passed += 1;
                }
                Err(_) => {
                    println!("scenario {name} ... FAILED");
                    failed.push(name);
                    // A failed scenario may leave threads behind (a stuck
                    // helper): count the next ones from what is there now.
                    process.floor = process.floor.max(thread_count());
                }
            }
        }
        if !failed.is_empty() {
            println!("\nfailures: {failed:?}");
        }
        println!("\n{passed} passed, {} failed", failed.len());
        std::process::exit(if failed.is_empty() { 0 } else { 1 });
    }

    // ------------------------------------------------------- counting threads

    /// The process's threads: id and name.
    fn threads() -> BTreeMap<u32, String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let tid = entry.file_name().to_str()?.parse().ok()?;
                // A thread may end between the listing and the read.
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                Some((tid, name.trim_end().to_owned()))
            })
            .collect()
    }

    fn thread_count() -> usize {
        std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
    }

    /// Waits until the process has at most `most` threads: a joined thread
    /// can still be listed for a moment. Fails, naming the threads, if it
    /// does not come down within [`SETTLE`].
    #[track_caller]
    fn settle(most: usize, what: &str) -> usize {
        let deadline = Instant::now() + SETTLE;
        for _ in 0..1_000_000 {
            let count = thread_count();
            if count <= most {
                return count;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        panic!("{what}: {} threads, expected at most {most}: {:?}", thread_count(), threads());
    }

    fn driver_threads() -> usize {
        threads().values().filter(|name| name.as_str() == "vmbus-driver").count()
    }

    /// The ids of the driver threads, once there are `count` of them: a new
    /// thread names itself only once it runs.
    #[track_caller]
    fn wait_for_driver_threads(count: usize) -> Vec<u32> {
        let mut found = Vec::new();
        wait_until(&format!("{count} thread(s) named vmbus-driver"), || {
            found = threads().into_iter().filter(|(_, name)| name == "vmbus-driver").map(|(tid, _)| tid).collect();
            found.len() == count
        });
        found
    }

    /// Checks that the process has at most `base + extra` threads and no
    /// driver thread.
    #[track_caller]
    fn assert_no_new_thread(base: usize, extra: usize, when: &str) {
        let count = thread_count();
        assert!(count <= base + extra, "{when}: {count} threads, {base} before plus {extra} of ours: {:?}", threads());
        assert_eq!(driver_threads(), 0, "{when}: a driver thread was started: {:?}", threads());
    }

    /// Waits (polling, bounded by a count and [`DEADLINE`]) until `done`.
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

    // ------------------------------------------- no signal kind starts a thread

    /// Every signal kind, and queues over each, used only through blocking
    /// waits, with one helper thread of the test's as the peer: the process
    /// never has more threads than before plus that helper, no driver
    /// thread appears, and once the helper is joined the count is back.
    /// Then async waits through `ExternalReactor`, which starts nothing.
    fn no_signal_kind_starts_a_thread(process: &mut Process) {
        let base = settle(process.floor, "before");
        const ROUNDS: u64 = 300;

        // Signals alone: ping-pong through `Signal::wait`.
        type Pair = (&'static str, Box<dyn Signal>, Box<dyn Signal>);
        let pairs: Vec<Pair> = {
            let (in_a, in_b) = InProcessSignal::pair();
            let (so_a, so_b) = SocketSignal::pair().unwrap();
            let (ev_a, ev_b) = EventFdSignal::pair().unwrap();
            vec![
                ("in-process", Box::new(in_a), Box::new(in_b)),
                ("socket", Box::new(so_a), Box::new(so_b)),
                ("eventfd", Box::new(ev_a), Box::new(ev_b)),
            ]
        };
        assert_no_new_thread(base, 0, "after making the signals");
        for (name, a, b) in pairs {
            let deadline = Instant::now() + DEADLINE;
            let peer = spawn("peer", move || {
                for round in 0..ROUNDS {
                    assert_eq!(b.wait(round, Some(deadline)), Some(PeerEvent::Signalled), "peer, round {round}");
                    b.signal_peer();
                }
                b
            });
            for round in 0..ROUNDS {
                a.signal_peer();
                assert_eq!(a.wait(round, Some(deadline)), Some(PeerEvent::Signalled), "{name}, round {round}");
                if round % 50 == 0 {
                    assert_no_new_thread(base, 1, name);
                }
            }
            drop(peer.join());
            assert_no_new_thread(base, 1, name);
            // Its result is in: the thread itself may take a moment to go.
            settle(base, "after the peer thread");
        }

        // Queues over each kind: the guest echoes; one-page rings fill.
        let (host, guest) = connected_pair(PAGE).unwrap();
        blocking_queue_exchange("in-process", base, (Queue::new(host), Queue::new(guest)), || {});
        for kind in KINDS {
            let (host, guest) = workload::fds(kind, PAGE);
            let host = MemfdChannel::from_fds(host, MappingLayout::Double).unwrap();
            let guest = MemfdChannel::from_fds(guest, MappingLayout::Single).unwrap();
            assert_no_new_thread(base, 0, "after opening memfd channels");
            let name = if kind == SignalKind::Socket { "memfd, socket" } else { "memfd, eventfd" };
            let guest_signal = guest.signal().clone();
            // An eventfd carries no close: the test tells the guest, as a VMM would.
            let tell_guest = move || {
                if let ProcessSignal::EventFd(signal) = &*guest_signal {
                    signal.peer_closed();
                }
            };
            blocking_queue_exchange(name, base, (Queue::new(host), Queue::new(guest)), tell_guest);
        }
        // Async waits through `ExternalReactor`: the caller's own loop
        // watches the fd (here a `poll` in this thread); nothing else runs.
        for kind in KINDS {
            let (a, b): (ProcessSignal, ProcessSignal) = match kind {
                SignalKind::Socket => {
                    let (a, b) = SocketSignal::pair().unwrap();
                    (a.into(), b.with_reactor(ExternalReactor).into())
                }
                SignalKind::EventFd => {
                    let (a, b) = EventFdSignal::pair().unwrap();
                    (a.into(), b.with_reactor(ExternalReactor).into())
                }
            };
            let (waker, _) = counting_waker();
            for round in 0..ROUNDS {
                assert!(poll_signal(&b, &waker, round).is_pending(), "{kind:?}: nothing sent yet");
                a.signal_peer();
                let mut fds = [rustix::event::PollFd::new(&b, rustix::event::PollFlags::IN)];
                let timeout = rustix::event::Timespec::try_from(DEADLINE).unwrap();
                assert_eq!(rustix::event::poll(&mut fds, Some(&timeout)).unwrap(), 1, "{kind:?}: the fd is readable");
                let polled = poll_signal(&b, &waker, round);
                assert!(matches!(polled, Poll::Ready(Ok(PeerEvent::Signalled))), "{kind:?}: {polled:?}");
            }
            assert_no_new_thread(base, 0, "async waits through ExternalReactor");
        }
        settle(base, "after joining the helper");
        assert_no_new_thread(base, 0, "at the end");
    }

    /// The host fills the one-page ring while the guest is held back, so a
    /// blocking write and a blocking read both wait (until their deadline);
    /// then the guest reads the rest and echoes batches of packets. Every
    /// blocking call of the queue (`write_blocking`, `write_batch_blocking`,
    /// `read_blocking`, `read_batch_blocking`) waits, polling the signal in
    /// its own thread.
    fn blocking_queue_exchange<M, S>(
        name: &'static str,
        base: usize,
        (mut host, guest): (Queue<M, S>, Queue<M, S>),
        tell_guest: impl FnOnce(),
    ) where
        M: vmbus_ring::RingMem + Send + 'static,
        S: Signal,
    {
        const FILL: u64 = 40;
        const BATCHES: u64 = 100;
        let deadline = Some(Instant::now() + DEADLINE);
        // Holds the guest back until the host has waited, deterministically,
        // for space and for a packet.
        let (open_gate, gate) = std::sync::mpsc::channel::<()>();
        let echo = spawn("echo", move || {
            let mut guest = guest;
            gate.recv_timeout(DEADLINE).expect("the gate opens");
            for n in 0..FILL {
                let packet = guest.reader_mut().read_blocking().unwrap();
                assert_eq!(packet.header.transaction_id, n);
            }
            let mut echoed = 0;
            loop {
                let mut got = Vec::new();
                let read = guest.reader_mut().read_batch_blocking(4, deadline, |header, payload| {
                    got.push((header.transaction_id, payload.to_vec()));
                });
                match read {
                    Ok(_) => {}
                    Err(ChannelError::Closed) => break echoed,
                    Err(error) => panic!("echo: {error}"),
                }
                for (id, payload) in got {
                    guest.writer_mut().write_blocking(&OutgoingPacket::completion(id), &[&payload]).unwrap();
                    echoed += 1;
                }
            }
        });
        let big = vec![0x5a; 1_000];
        let mut n = 0;
        while host.writer_mut().try_write(&OutgoingPacket::in_band(n), &[&big]).is_ok() {
            n += 1;
        }
        // The ring is full and the guest held back: both blocking calls
        // wait, polling the signal in this thread, until their deadline.
        let soon = || Some(Instant::now() + Duration::from_millis(20));
        let packet = [(OutgoingPacket::in_band(n), &[&big[..]][..])];
        assert_eq!(host.writer_mut().write_batch_blocking(&packet, soon()), Err(ChannelError::TimedOut), "{name}");
        assert_eq!(host.reader_mut().read_batch_blocking(4, soon(), |_, _| {}), Err(ChannelError::TimedOut), "{name}");
        let counters = host.state().counters;
        assert!(counters.write_waits > 0 && counters.read_waits > 0, "{name}: {counters:?}");
        assert_no_new_thread(base, 1, name);
        open_gate.send(()).unwrap();
        while n < FILL {
            let packet = [(OutgoingPacket::in_band(n), &[&big[..]][..])];
            host.writer_mut().write_batch_blocking(&packet, deadline).unwrap();
            n += 1;
        }
        assert_no_new_thread(base, 1, name);
        let small = [7u8; 100];
        let body: [&[u8]; 1] = [&small];
        for batch in 0..BATCHES {
            let ids: Vec<u64> = (0..4).map(|n| 1_000 + 4 * batch + n).collect();
            let packets: Vec<_> = ids.iter().map(|&id| (OutgoingPacket::in_band(id), &body[..])).collect();
            host.writer_mut().write_batch_blocking(&packets, deadline).unwrap();
            let mut echoed = Vec::new();
            while echoed.len() < 4 {
                host.reader_mut()
                    .read_batch_blocking(4, deadline, |header, _| echoed.push(header.transaction_id))
                    .unwrap();
            }
            assert_eq!(echoed, ids, "{name}");
            if batch % 25 == 0 {
                assert_no_new_thread(base, 1, name);
            }
        }
        host.close();
        tell_guest();
        drop(host);
        assert_eq!(echo.join(), 4 * BATCHES, "{name}");
        assert_no_new_thread(base, 1, name);
        settle(base, "after the echo thread");
    }

    // -------------------------------------------------------------- tokio

    #[cfg(feature = "tokio")]
    mod tokio_scenarios {
        use super::*;
        use tokio::runtime::{Builder, Runtime};
        use vmbus_channel::TokioReactor;

        /// Opens channels on `runtime`'s reactor and runs the workload on
        /// it, counting threads after opening, in the middle (every end has
        /// waited, all are open) and after: always the runtime's own.
        fn run(runtime: Runtime, expected_after_build: usize) {
            let built = thread_count();
            assert_eq!(built, expected_after_build, "the runtime's own threads: {:?}", threads());
            runtime.block_on(async {
                for kind in KINDS {
                    let ends = workload::open(TokioReactor::current().unwrap(), kind);
                    assert_no_new_thread(built, 0, "after opening the channels");
                    let probe: workload::Probe = Box::new(move || {
                        let count = thread_count();
                        if count > built || driver_threads() > 0 {
                            Err(format!("{count} threads in use, {built} before: {:?}", threads()))
                        } else {
                            Ok(())
                        }
                    });
                    let run = workload::run_tokio(workload::with_probe(ends, probe));
                    tokio::time::timeout(DEADLINE, run).await.unwrap_or_else(|_| panic!("{kind:?}: stuck"));
                    assert_no_new_thread(built, 0, "after use");
                }
            });
            assert_no_new_thread(built, 0, "after the runtime returned");
            drop(runtime);
        }

        pub fn current_thread(process: &mut Process) {
            let base = settle(process.floor, "before");
            let runtime = Builder::new_current_thread().enable_all().build().unwrap();
            run(runtime, base);
            settle(base, "after dropping the runtime");
        }

        pub fn multi_thread(process: &mut Process) {
            let base = settle(process.floor, "before");
            let runtime = Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            run(runtime, base + 2);
            settle(base, "after dropping the runtime");
        }
    }

    // ------------------------------------------------------------- async-io

    /// async-io starts one thread of its own ("async-io", its fallback for
    /// when no `block_on` drives the reactor) the first time anything is
    /// registered with it, and keeps it: that one may appear, nothing else.
    /// Under `async_io::block_on` (and smol's) the waiting thread drives the
    /// reactor itself; the fallback thread only helps.
    #[cfg(feature = "async-io")]
    fn async_io_adds_only_its_own_thread(process: &mut Process) {
        use std::future::poll_fn;
        use vmbus_channel::AsyncIoReactor;
        let base = settle(process.floor, "before");
        let before = threads();
        // At most one thread more, and (once it has named itself) it is
        // async-io's.
        let added = move || -> Vec<(u32, String)> {
            threads().into_iter().filter(|(tid, _)| !before.contains_key(tid)).collect()
        };
        let at_most_one_added = {
            let added = added.clone();
            move || -> Result<(), String> {
                let added = added();
                if added.len() > 1 {
                    return Err(format!("threads added besides async-io's own: {added:?}"));
                }
                Ok(())
            }
        };
        for kind in KINDS {
            let ends = workload::open(AsyncIoReactor, kind);
            let run = workload::run_joined(workload::with_probe(ends, Box::new(at_most_one_added.clone())));
            let deadline = Instant::now() + DEADLINE;
            async_io::block_on(async {
                let mut run = std::pin::pin!(run);
                let mut timer = async_io::Timer::at(deadline);
                poll_fn(|cx| {
                    if run.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    assert!(std::pin::Pin::new(&mut timer).poll(cx).is_pending(), "{kind:?}: stuck");
                    Poll::Pending
                })
                .await
            });
            at_most_one_added().unwrap();
        }
        let after = settle(base + 1, "after");
        let mut last = Vec::new();
        wait_until("the added thread is async-io's", || {
            last = added();
            last.iter().all(|(_, name)| name.as_str() == "async-io")
        });
        println!("  async-io's own fallback thread: {}", if last.is_empty() { "not started" } else { "started" });
        process.floor = after;
    }

    // -------------------------------------------------------------- Driver

    const PAIRS: usize = 1_000;

    /// Lets this process open `needed` fds, raising the soft limit up to
    /// the hard one; `false` if the hard limit is lower.
    fn allow_fds(needed: u64) -> bool {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let limit = getrlimit(Resource::Nofile);
        // `None`: unlimited.
        if limit.current.is_none_or(|current| current >= needed) {
            return true;
        }
        if limit.maximum.is_some_and(|maximum| maximum < needed) {
            println!("  skipped: RLIMIT_NOFILE's hard limit {:?} is below the {needed} fds needed", limit.maximum);
            return false;
        }
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        setrlimit(Resource::Nofile, raised).expect("raise RLIMIT_NOFILE's soft limit to the hard limit");
        true
    }

    fn driver_serves_1000_socket_pairs(process: &mut Process) {
        driver_serves_many(process, SignalKind::Socket);
    }

    fn driver_serves_1000_eventfd_pairs(process: &mut Process) {
        driver_serves_many(process, SignalKind::EventFd);
    }

    fn signal_pair(kind: SignalKind, driver: &Driver) -> [ProcessSignal; 2] {
        match kind {
            SignalKind::Socket => {
                let (a, b) = SocketSignal::pair().expect("socket pair");
                [a.with_reactor(driver.clone()).into(), b.with_reactor(driver.clone()).into()]
            }
            SignalKind::EventFd => {
                let (a, b) = EventFdSignal::pair().expect("eventfd pair");
                [a.with_reactor(driver.clone()).into(), b.with_reactor(driver.clone()).into()]
            }
        }
    }

    fn poll_signal(signal: &impl Signal, waker: &Waker, seen: u64) -> Poll<std::io::Result<PeerEvent>> {
        signal.poll_signal(&mut Context::from_waker(waker), seen)
    }

    /// 1,000 pairs (2,000 ends) on one `Driver`, every end with a task
    /// waiting (a counting waker registered through `poll_signal`): at most
    /// two threads more than before (the driver's, once); a signal to a few
    /// chosen ends wakes exactly those ends' waiters, once each, and no
    /// other; after everything is dropped the driver's thread is gone.
    fn driver_serves_many(process: &mut Process, kind: SignalKind) {
        // A socket pair is 2 fds; an eventfd pair 4 (each end holds its own
        // duplicates).
        let per_pair = if kind == SignalKind::Socket { 2 } else { 4 };
        if !allow_fds((per_pair * PAIRS + 256) as u64) {
            return;
        }
        let base = settle(process.floor, "before");
        let driver = Driver::new().unwrap();
        let ends: Vec<[ProcessSignal; 2]> = (0..PAIRS).map(|_| signal_pair(kind, &driver)).collect();
        let wakers: Vec<(Waker, Arc<WakeCount>)> = (0..2 * PAIRS).map(|_| counting_waker()).collect();
        let end = |index: usize| &ends[index / 2][index % 2];
        let peer_of = |index: usize| &ends[index / 2][1 - index % 2];
        for (index, (waker, _)) in wakers.iter().enumerate() {
            assert!(poll_signal(end(index), waker, 0).is_pending(), "end {index}: nothing was sent");
        }
        assert_eq!(driver.watched(), 2 * PAIRS, "every end is watched");
        let count = thread_count();
        assert!(count <= base + 2, "{count} threads for {} ends, {base} before: {:?}", 2 * PAIRS, threads());
        wait_for_driver_threads(1);

        let mut woken_so_far = vec![0usize; 2 * PAIRS];
        for chosen in [vec![1, 2 * 500, 2 * 500 + 1, 2 * PAIRS - 1], vec![0, 2 * 777 + 1]] {
            for &index in &chosen {
                peer_of(index).signal_peer();
            }
            wait_until("the chosen ends are woken", || chosen.iter().all(|&index| wakers[index].1.get() > 0));
            for &index in &chosen {
                woken_so_far[index] += 1;
            }
            let wrong: Vec<_> = (0..2 * PAIRS)
                .filter(|&index| wakers[index].1.get() != woken_so_far[index])
                .map(|index| (index, wakers[index].1.get(), woken_so_far[index]))
                .collect();
            assert!(wrong.is_empty(), "{kind:?}: (end, woken, expected) that differ: {wrong:?}");
            for &index in &chosen {
                let polled = poll_signal(end(index), &wakers[index].0, 0);
                assert!(matches!(polled, Poll::Ready(Ok(PeerEvent::Signalled))), "end {index}: {polled:?}");
                assert_eq!(end(index).notifier().generation(), 1, "end {index}");
            }
            // The others saw nothing.
            for index in (0..2 * PAIRS).filter(|&index| woken_so_far[index] == 0) {
                assert_eq!(end(index).notifier().generation(), 0, "end {index}");
            }
        }
        let count = thread_count();
        assert!(count <= base + 2, "{count} threads, {base} before");
        drop(ends);
        assert_eq!(driver.watched(), 0, "dropped signals are no longer watched");
        drop(driver);
        settle(base, "after dropping the driver and its signals");
        assert_eq!(driver_threads(), 0);
    }

    // ------------------------------------------------------ EINTR on the driver

    /// The driver's thread, interrupted five times in `epoll_wait` by a
    /// signal with a handler (so the call fails with `EINTR`), goes back to
    /// waiting, and still wakes a waiter when its fd becomes readable.
    fn the_driver_thread_survives_eintr(process: &mut Process) {
        use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};
        static HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        extern "C" fn on_signal(_: std::ffi::c_int, _: *mut libc::siginfo_t, _: *mut std::ffi::c_void) {
            HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        #[cfg(target_arch = "x86_64")]
        const EPOLL_SYSCALLS: &[i64] = &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];
        #[cfg(not(target_arch = "x86_64"))]
        const EPOLL_SYSCALLS: &[i64] = &[libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];

        let base = settle(process.floor, "before");
        let number = SIGRTMIN();
        register_signal_handler(number, on_signal).expect("install the handler");
        let driver = Driver::new().unwrap();
        assert!(thread_count() <= base + 1, "{:?}", threads());
        let tid = wait_for_driver_threads(1)[0];
        let sleeping_in_epoll = || {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            let sleeping = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("S");
            let call = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .ok()
                .and_then(|line| line.split_whitespace().next()?.parse::<i64>().ok());
            sleeping && call.is_none_or(|call| EPOLL_SYSCALLS.contains(&call))
        };
        let [a, b] = signal_pair(SignalKind::Socket, &driver);
        let (waker, woken) = counting_waker();
        assert!(poll_signal(&b, &waker, 0).is_pending());
        for _ in 0..5 {
            wait_until("the driver thread sleeps in epoll_wait", sleeping_in_epoll);
            let before = HANDLED.load(std::sync::atomic::Ordering::SeqCst);
            // SAFETY: tgkill sends a signal to a thread of this process by
            // id; it touches no memory. The signal has a handler, installed
            // above, that only adds to an atomic.
            let sent = unsafe { libc::syscall(libc::SYS_tgkill, std::process::id() as libc::pid_t, tid, number) };
            assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
            wait_until("the interrupt is handled", || HANDLED.load(std::sync::atomic::Ordering::SeqCst) > before);
        }
        wait_until("the driver thread sleeps in epoll_wait again", sleeping_in_epoll);
        assert_eq!(woken.get(), 0, "an interrupt is not a signal");
        a.signal_peer();
        wait_until("the driver still wakes the waiter", || woken.get() > 0);
        assert!(matches!(poll_signal(&b, &waker, 0), Poll::Ready(Ok(PeerEvent::Signalled))));
        drop((a, b, driver));
        settle(base, "after dropping the driver");
    }

    // ------------------------------------------------------ the shared driver

    /// Channels opened without a reactor start nothing; blocking use starts
    /// nothing; the first async wait starts the shared driver's one thread;
    /// async waits on other channels share it.
    fn shared_driver_starts_on_first_async_wait(process: &mut Process) {
        let base = settle(process.floor, "before");
        assert_eq!(driver_threads(), 0, "no driver yet");
        let open = || {
            let (host, guest) = ChannelFds::pair(PAGE).unwrap();
            let host = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Single).unwrap());
            let guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Single).unwrap());
            (host, guest)
        };
        let (mut host, mut guest) = open();
        assert_no_new_thread(base, 0, "after opening");
        host.writer_mut().write_blocking(&OutgoingPacket::in_band(1), &[b"blocking"]).unwrap();
        assert_eq!(guest.reader_mut().read_blocking().unwrap().header.transaction_id, 1);
        assert_no_new_thread(base, 0, "after blocking use");

        for round in 0..3 {
            if round == 2 {
                (host, guest) = open(); // another channel: the same driver
            }
            let deadline = Instant::now() + DEADLINE;
            let mut read = std::pin::pin!(guest.reader_mut().read());
            let (waker, _) = counting_waker();
            assert!(read.as_mut().poll(&mut Context::from_waker(&waker)).is_pending(), "nothing sent yet");
            assert!(thread_count() <= base + 1, "round {round}: {:?}", threads());
            wait_for_driver_threads(1);
            host.writer_mut().write_blocking(&OutgoingPacket::in_band(2), &[b"async"]).unwrap();
            let packet = block_on_until(read, deadline).expect("stuck").unwrap();
            assert_eq!(packet.header.transaction_id, 2);
        }
        drop((host, guest));
        process.floor = settle(base + 1, "after");
    }
}
