//! Round trips between two real processes: this benchmark binary starts
//! itself again as the peer (see [`serve_if_peer`], called at the top of the
//! binary's `main`, before criterion sees the arguments), hands it its
//! channel end with `ChannelFds::send`, and the peer echoes every request.
//!
//! Two kinds of ping-pong:
//! - [`QueuePingPong`]: a 64-byte request and its echo through the `Queue`
//!   over memfd rings and a socket or eventfd signal, both readers sleeping
//!   on the peer's signal, waiting through the blocking API (the thread polls
//!   its own fd) or the async one (`block_on`; a `Driver`'s thread watches
//!   the fd and wakes the waiting thread);
//! - [`RawEventFdPingPong`]: two eventfds and nothing else; each side does a
//!   blocking `read` of its eventfd, then `write`s the other's. The fewest
//!   system calls and thread switches a signalled wake-up in each direction
//!   can take: the bound the queue's round trips are compared with.
//!
//! Where the two processes run is chosen, not left to the scheduler, which
//! on this machine picks between two states ten times apart (see
//! [`Placement`]): the measuring thread of the parent (and every thread it
//! starts while measuring) on the first CPU, the peer process on the same
//! CPU or on the second.
//!
//! The waits measured have no deadline: a deadline costs a timer armed and
//! cancelled in every `poll` (or `futex`) that sleeps, which on this virtual
//! machine is a microsecond or so per wake-up, a tenth of a round trip on
//! one CPU. Nothing can hang all the same: the peer exits as soon as the
//! control socket to the parent closes (the parent dropped its [`Peer`], or
//! died) and in any case after [`PEER_LIFETIME`]; the parent's [`Peer`]
//! kills a peer whose round trip has not come back within [`WAIT_TIMEOUT`];
//! and once the peer process is gone, a wait on a socket signal ends with
//! `Closed`, one on an eventfd signal is told with `peer_closed`, and a raw
//! ping-pong's blocking `read` gets a kick and fails.

use crate::Pinned;
use std::error::Error;
use std::io::{self, Read as _};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use vmbus_channel::{
    block_on, block_on_until, ChannelError, ChannelFds, Driver, MemfdChannel, Payload, ProcessSignal, Queue,
    QueueReader, QueueWriter, Signal, SignalFds,
};
use vmbus_ring::{IncomingPacket, MappedRingMem, MappingLayout, OutgoingPacket, RingMem};

/// Where a peer process connects to its parent; set only for peers.
const PEER_SOCKET_ENV: &str = "VMBUS_BENCH_PEER_SOCKET";
/// What a peer process serves (a [`PeerMode`] name).
const PEER_MODE_ENV: &str = "VMBUS_BENCH_PEER_MODE";
/// The CPU a peer process runs on, if it is pinned.
const PEER_CPU_ENV: &str = "VMBUS_BENCH_PEER_CPU";

/// The longest a peer process lives, whatever its parent does.
pub const PEER_LIFETIME: Duration = Duration::from_secs(600);
/// The longest the parent waits for one request's echo (then it kills the
/// peer, which ends the wait, and panics), or for the peer to connect.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the parent looks at a peer's progress.
const WATCH_TICK: Duration = Duration::from_millis(500);
/// How long a dropped [`Peer`] is given to exit before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request a peer echoes.
const MAX_REQUEST: usize = 4096;

/// What a peer process does with its channel end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMode {
    /// Echo each eventfd kick ([`RawEventFdPingPong`]).
    RawEventFd,
    /// Echo each packet through the queue's given API.
    Queue(QueueApi),
}

impl PeerMode {
    fn name(self) -> &'static str {
        match self {
            PeerMode::RawEventFd => "raw_eventfd",
            PeerMode::Queue(QueueApi::Blocking) => "blocking",
            PeerMode::Queue(QueueApi::Async) => "async",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [PeerMode::RawEventFd, PeerMode::Queue(QueueApi::Blocking), PeerMode::Queue(QueueApi::Async)]
            .into_iter()
            .find(|mode| mode.name() == name)
    }
}

/// How a queue's reads and writes wait for the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueApi {
    /// `read_batch_blocking` / `write_batch_blocking`: the calling thread
    /// polls its signal's fd itself.
    Blocking,
    /// `read_batch` / `write_batch` under `block_on` (`block_on_until` if a
    /// deadline is given): the signal's fd is watched by a `Driver`, whose
    /// thread wakes the waiting one.
    Async,
}

impl QueueApi {
    /// The name in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            QueueApi::Blocking => "blocking",
            QueueApi::Async => "async",
        }
    }
}

/// Where the two processes of a ping-pong run.
///
/// A wake-up of a thread on the waker's own CPU is a context switch; one on
/// the other CPU, idle and halted in this virtual machine, waits for the
/// hypervisor to run that vCPU again, which here takes tens of microseconds.
/// Left to itself the scheduler keeps the two processes on one CPU or
/// spreads them, for stretches of seconds, so each benchmark fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Both processes on the first CPU: every wake-up is a context switch.
    OneCpu,
    /// The parent on the first CPU, the peer on the second: every wake-up
    /// crosses to the other CPU.
    TwoCpus,
}

impl Placement {
    /// The name in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Placement::OneCpu => "one_cpu",
            Placement::TwoCpus => "two_cpus",
        }
    }

    /// The CPU the peer process runs on (see [`Pinned::cpu`]); the parent's
    /// measuring thread is pinned to `Pinned::to(0)`.
    fn peer_cpu(self) -> Option<usize> {
        match self {
            Placement::OneCpu => Pinned::cpu(0),
            Placement::TwoCpus => Pinned::cpu(1),
        }
    }
}

/// The signal of a cross-process channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// `ChannelFds::pair`: a socket pair, safe with a hostile peer.
    Socket,
    /// `ChannelFds::pair_with_eventfds`: two eventfds shared with a trusted peer.
    EventFd,
}

impl SignalKind {
    /// The name in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            SignalKind::Socket => "socket",
            SignalKind::EventFd => "eventfd",
        }
    }

    fn pair(self, data_len: usize) -> io::Result<(ChannelFds, ChannelFds)> {
        match self {
            SignalKind::Socket => ChannelFds::pair(data_len),
            SignalKind::EventFd => ChannelFds::pair_with_eventfds(data_len),
        }
    }
}

// ------------------------------------------------------------------ the peer

/// If this process was started as a peer (by [`Peer::spawn`]), serves its
/// parent and exits; otherwise returns at once. Call it first in `main`.
pub fn serve_if_peer() {
    let Some(socket) = std::env::var_os(PEER_SOCKET_ENV) else { return };
    let mode = std::env::var(PEER_MODE_ENV).ok().and_then(|name| PeerMode::from_name(&name));
    let outcome = match mode {
        Some(mode) => serve(Path::new(&socket), mode),
        None => Err(format!("{PEER_MODE_ENV} names no peer mode").into()),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("benchmark peer process: {error}");
            std::process::exit(1);
        }
    }
}

fn serve(socket: &Path, mode: PeerMode) -> Result<(), Box<dyn Error>> {
    if let Some(cpu) = std::env::var(PEER_CPU_ENV).ok().and_then(|cpu| cpu.parse().ok()) {
        // Before any other thread starts: they inherit it.
        let mut one = rustix::thread::CpuSet::new();
        one.set(cpu);
        rustix::thread::sched_setaffinity(None, &one)?;
    }
    let control = UnixStream::connect(socket)?;
    control.set_read_timeout(Some(WAIT_TIMEOUT))?;
    let fds = ChannelFds::receive(&control)?;
    // The parent sends nothing more: the read returns when the parent
    // closes the socket or dies, or when the lifetime is over.
    control.set_read_timeout(Some(PEER_LIFETIME))?;
    thread::Builder::new().name("peer-watchdog".into()).spawn(move || {
        let mut control = control;
        loop {
            match control.read(&mut [0]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    eprintln!("benchmark peer process: {PEER_LIFETIME:?} are over, exiting");
                    std::process::exit(1);
                }
                _ => std::process::exit(0),
            }
        }
    })?;
    match mode {
        PeerMode::RawEventFd => serve_raw(fds),
        PeerMode::Queue(api) => serve_queue(fds, api),
    }
}

/// Echoes kicks: a blocking read of one eventfd, a write of the other.
fn serve_raw(fds: ChannelFds) -> Result<(), Box<dyn Error>> {
    let SignalFds::EventFd { from_peer, to_peer } = fds.signal else {
        return Err("the raw eventfd ping-pong needs eventfds".into());
    };
    let mut count = [0; 8];
    loop {
        read_eventfd(&from_peer, &mut count)?;
        rustix::io::write(&to_peer, &1u64.to_ne_bytes())?;
    }
}

/// Echoes packets until the parent closes (a socket signal) or the
/// watchdog ends the process (eventfds carry no close).
fn serve_queue(fds: ChannelFds, api: QueueApi) -> Result<(), Box<dyn Error>> {
    let channel = MemfdChannel::from_fds(fds, MappingLayout::Double)?;
    let (mut reader, mut writer) = Queue::new(channel).split();
    let mut buf = vec![0; MAX_REQUEST];
    loop {
        let echoed =
            receive_one(&mut reader, api, None, &mut buf).and_then(|len| send_one(&mut writer, api, None, &buf[..len]));
        match echoed {
            Ok(()) => {}
            Err(ChannelError::Closed) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Writes `payload` as one in-band packet through `api`, waiting (until
/// `deadline`, if any) if the ring is full.
pub fn send_one<M: RingMem, S: Signal>(
    writer: &mut QueueWriter<M, S>,
    api: QueueApi,
    deadline: Option<Instant>,
    payload: &[u8],
) -> Result<(), ChannelError> {
    let pieces = [payload];
    let batch = [(OutgoingPacket::in_band(1), &pieces[..])];
    match (api, deadline) {
        (QueueApi::Blocking, deadline) => writer.write_batch_blocking(&batch, deadline),
        (QueueApi::Async, None) => block_on(writer.write_batch(&batch)),
        (QueueApi::Async, Some(deadline)) => {
            block_on_until(writer.write_batch(&batch), deadline).unwrap_or(Err(ChannelError::TimedOut))
        }
    }
}

/// Reads one packet through `api`, waiting (until `deadline`, if any) for
/// it, and copies its payload into `buf`; returns the payload's length.
pub fn receive_one<M: RingMem, S: Signal>(
    reader: &mut QueueReader<M, S>,
    api: QueueApi,
    deadline: Option<Instant>,
    buf: &mut [u8],
) -> Result<usize, ChannelError> {
    let mut len = 0;
    let mut copy = |_: &IncomingPacket, payload: &Payload<'_, M>| {
        len = payload.len().min(buf.len());
        payload.read_at(0, &mut buf[..len]).expect("the payload is in bounds");
    };
    loop {
        let read = match (api, deadline) {
            (QueueApi::Blocking, deadline) => reader.read_batch_blocking(1, deadline, &mut copy),
            (QueueApi::Async, None) => block_on(reader.read_batch(1, &mut copy)),
            (QueueApi::Async, Some(deadline)) => {
                block_on_until(reader.read_batch(1, &mut copy), deadline).unwrap_or(Err(ChannelError::TimedOut))
            }
        }?;
        if read > 0 {
            return Ok(len);
        }
    }
}

/// A blocking read of an eventfd's counter.
fn read_eventfd(fd: &OwnedFd, count: &mut [u8; 8]) -> io::Result<()> {
    loop {
        return match rustix::io::read(fd, &mut count[..]) {
            Ok(8) => Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Ok(read) => Err(io::Error::other(format!("an eventfd read returned {read} bytes"))),
            Err(error) => Err(error.into()),
        };
    }
}

// ---------------------------------------------------------------- the parent

/// A peer process: this binary again, serving one channel end.
///
/// A thread watches it: once the process is gone it runs the `on_gone` given
/// to [`spawn`](Self::spawn); while a round trip is under way (between
/// [`begin`](Self::begin) and [`end`](Self::end)) and none has ended for
/// [`WAIT_TIMEOUT`], it kills the process.
///
/// Dropping it closes the control socket, which ends the peer, and waits
/// (up to a few seconds, then kills it) for the process to exit.
#[derive(Debug)]
pub struct Peer {
    process: Child,
    control: UnixStream,
    watchdog: Option<JoinHandle<()>>,
    state: Arc<PeerState>,
}

/// What a [`Peer`] and its watching thread share.
#[derive(Debug, Default)]
struct PeerState {
    gone: AtomicBool,
    /// A round trip is under way.
    busy: AtomicBool,
    /// Round trips ended.
    ended: AtomicU64,
}

impl Peer {
    /// Starts a peer in `mode`, pinned to `cpu` (if any), and hands it
    /// `fds`. `on_gone` runs on a
    /// thread of its own once the peer process is gone (or this handle is
    /// dropped), after [`is_gone`](Self::is_gone) turned true: for eventfds,
    /// which carry no close, it is how a wait in this process learns of it.
    pub fn spawn(
        mode: PeerMode,
        cpu: Option<usize>,
        fds: ChannelFds,
        on_gone: impl FnOnce() + Send + 'static,
    ) -> io::Result<Peer> {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmbus-bench-{}-{}.sock",
            std::process::id(),
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let _remove = RemoveOnDrop(path.clone());
        let mut command = Command::new(std::env::current_exe()?);
        command.env(PEER_SOCKET_ENV, &path).env(PEER_MODE_ENV, mode.name()).stdin(Stdio::null()).stdout(Stdio::null());
        if let Some(cpu) = cpu {
            command.env(PEER_CPU_ENV, cpu.to_string());
        }
        let mut process = command.spawn()?;
        let control = match accept(&listener, &mut process) {
            Ok(control) => control,
            Err(error) => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(error);
            }
        };
        let state = Arc::new(PeerState::default());
        let watchdog = {
            let control = control.try_clone()?;
            let state = state.clone();
            let pid = rustix::process::Pid::from_child(&process);
            thread::Builder::new().name("peer-watch".into()).spawn(move || {
                watch(control, &state, pid);
                state.gone.store(true, Ordering::SeqCst);
                on_gone();
            })?
        };
        let peer = Peer { process, control, watchdog: Some(watchdog), state };
        fds.send(&peer.control)?;
        Ok(peer)
    }

    /// Whether the peer process is gone (or this handle is being dropped).
    pub fn is_gone(&self) -> bool {
        self.state.gone.load(Ordering::SeqCst)
    }

    /// A round trip starts.
    #[inline]
    pub fn begin(&self) {
        self.state.busy.store(true, Ordering::Relaxed);
    }

    /// The round trip ended.
    #[inline]
    pub fn end(&self) {
        // Only the measuring thread writes it: no read-modify-write needed.
        let ended = self.state.ended.load(Ordering::Relaxed);
        self.state.ended.store(ended.wrapping_add(1), Ordering::Relaxed);
        self.state.busy.store(false, Ordering::Relaxed);
    }
}

/// The watching thread: returns when the peer's end of the control socket
/// closes (it exited or died) or this end is shut down (the handle was
/// dropped); kills the peer if a round trip stalls.
fn watch(mut control: UnixStream, state: &PeerState, pid: rustix::process::Pid) {
    if control.set_read_timeout(Some(WATCH_TICK)).is_err() {
        let _ = control.read(&mut [0]);
        return;
    }
    let mut last = (state.ended.load(Ordering::Relaxed), Instant::now());
    loop {
        match control.read(&mut [0]) {
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
        let ended = state.ended.load(Ordering::Relaxed);
        if ended != last.0 || !state.busy.load(Ordering::Relaxed) {
            last = (ended, Instant::now());
        } else if last.1.elapsed() >= WAIT_TIMEOUT {
            eprintln!("benchmark peer process {pid:?}: no round trip ended for {WAIT_TIMEOUT:?}; killing it");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            last = (ended, Instant::now());
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.control.shutdown(Shutdown::Both);
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match self.process.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Accepts the peer's connection, in bounded polls.
fn accept(listener: &UnixListener, process: &mut Child) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        if let Some(status) = process.try_wait()? {
            return Err(io::Error::other(format!("the peer process exited before connecting: {status}")));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer process did not connect"));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A queue ping-pong with a peer process: see the module documentation.
#[derive(Debug)]
pub struct QueuePingPong {
    // Dropped first: a socket signal's peer sees the close and returns.
    queue: Queue<MappedRingMem, ProcessSignal>,
    peer: Peer,
    api: QueueApi,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl QueuePingPong {
    /// Starts a peer, placed as `placement` says, serving a channel with a
    /// `signal` signal and `data_len`-byte rings, waiting through `api` on
    /// both sides; requests carry `request_len` bytes.
    ///
    /// Each side's async waits go to a `Driver` of its own process, started
    /// here (the parent's on the first CPU, where it stays) and at the
    /// peer's first wait (on the peer's CPU): the process's shared driver,
    /// whose thread would stay on whatever CPU the thread that started it
    /// was pinned to.
    pub fn start(
        signal: SignalKind,
        api: QueueApi,
        placement: Placement,
        data_len: usize,
        request_len: usize,
    ) -> io::Result<Self> {
        assert!(request_len <= MAX_REQUEST);
        let _here = Pinned::to(0);
        let (ours, theirs) = signal.pair(data_len)?;
        let channel = MemfdChannel::from_fds_with_reactor(ours, MappingLayout::Double, Driver::new()?)?;
        let ours = channel.signal().clone();
        let peer = Peer::spawn(PeerMode::Queue(api), placement.peer_cpu(), theirs, move || {
            if let ProcessSignal::EventFd(signal) = &*ours {
                signal.peer_closed();
            }
        })?;
        Ok(Self {
            queue: Queue::new(channel),
            peer,
            api,
            request: vec![0xa5; request_len],
            reply: vec![0; MAX_REQUEST],
        })
    }

    /// One round trip: writes the request and waits for its echo.
    #[inline]
    pub fn round_trip(&mut self) {
        self.peer.begin();
        let echoed = send_one(self.queue.writer_mut(), self.api, None, &self.request)
            .and_then(|()| receive_one(self.queue.reader_mut(), self.api, None, &mut self.reply));
        self.peer.end();
        match echoed {
            Ok(len) if len >= self.request.len() => {}
            Ok(len) => panic!("a {}-byte request came back with {len} bytes", self.request.len()),
            Err(error) => panic!("the round trip failed: {error} (peer process gone: {})", self.peer.is_gone()),
        }
    }
}

/// The raw eventfd ping-pong with a peer process: see the module
/// documentation.
#[derive(Debug)]
pub struct RawEventFdPingPong {
    to_peer: OwnedFd,
    from_peer: Arc<OwnedFd>,
    peer: Peer,
}

impl RawEventFdPingPong {
    /// Starts a peer, placed as `placement` says, and hands it the two
    /// eventfds, made blocking.
    pub fn start(placement: Placement) -> io::Result<Self> {
        // The eventfds of an eventfd-signalled channel; its rings stay unused.
        let (ours, theirs) = ChannelFds::pair_with_eventfds(4096)?;
        let SignalFds::EventFd { from_peer, to_peer } = ours.signal else { unreachable!("eventfds were asked for") };
        // Blocking reads and writes, on both sides: the peer's fds share
        // these open file descriptions, and with them the flags.
        for fd in [&from_peer, &to_peer] {
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags.difference(rustix::fs::OFlags::NONBLOCK))?;
        }
        let from_peer = Arc::new(from_peer);
        let kick = from_peer.clone();
        // Once the peer is gone, a kick ends our blocking read; `round_trip`
        // then sees `is_gone`.
        let peer = Peer::spawn(PeerMode::RawEventFd, placement.peer_cpu(), theirs, move || {
            let _ = rustix::io::write(&*kick, &1u64.to_ne_bytes());
        })?;
        Ok(Self { to_peer, from_peer, peer })
    }

    /// One round trip: kicks the peer, then a blocking read until it kicks back.
    #[inline]
    pub fn round_trip(&mut self) {
        self.peer.begin();
        if let Err(error) = rustix::io::write(&self.to_peer, &1u64.to_ne_bytes()) {
            panic!("kicking the peer failed: {error}");
        }
        let mut count = [0; 8];
        if let Err(error) = read_eventfd(&self.from_peer, &mut count) {
            panic!("waiting for the peer failed: {error}");
        }
        self.peer.end();
        assert!(!self.peer.is_gone(), "the raw eventfd peer process is gone");
    }

    /// [`round_trip`](Self::round_trip), but this side waits as the queue's
    /// blocking wait does: `poll` until the eventfd is readable, then
    /// `read` it (the peer still does a blocking `read`).
    #[inline]
    pub fn round_trip_polling(&mut self) {
        self.peer.begin();
        if let Err(error) = rustix::io::write(&self.to_peer, &1u64.to_ne_bytes()) {
            panic!("kicking the peer failed: {error}");
        }
        let mut fds = [rustix::event::PollFd::new(&*self.from_peer, rustix::event::PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => panic!("polling the eventfd failed: {error}"),
            }
        }
        let mut count = [0; 8];
        if let Err(error) = read_eventfd(&self.from_peer, &mut count) {
            panic!("waiting for the peer failed: {error}");
        }
        self.peer.end();
        assert!(!self.peer.is_gone(), "the raw eventfd peer process is gone");
    }
}

// --------------------------------------------------------------- latencies

/// Round-trip latencies, in nanoseconds, kept for percentiles: at most
/// [`Latencies::MAX`] of them, and only those measured once
/// [`skip`](Self::new)'s time has passed since the first was offered (so
/// that criterion's warm-up is left out).
#[derive(Debug)]
pub struct Latencies {
    nanos: Vec<u32>,
    skip: Duration,
    first: Option<Instant>,
}

impl Latencies {
    /// Most latencies kept (4 MiB).
    pub const MAX: usize = 1 << 20;

    /// Keeps the latencies offered from `skip` after the first one on.
    pub fn new(skip: Duration) -> Self {
        Self { nanos: Vec::new(), skip, first: None }
    }

    /// Whether latencies offered now are kept.
    #[inline]
    pub fn keeping(&mut self, now: Instant) -> bool {
        let first = *self.first.get_or_insert(now);
        now.duration_since(first) >= self.skip && self.nanos.len() < Self::MAX
    }

    /// Keeps one latency (call only when [`keeping`](Self::keeping)).
    #[inline]
    pub fn push(&mut self, latency: Duration) {
        if self.nanos.capacity() == 0 {
            self.nanos.reserve_exact(Self::MAX);
        }
        self.nanos.push(u32::try_from(latency.as_nanos()).unwrap_or(u32::MAX));
    }

    /// How many were kept.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Whether none were kept.
    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// The `p`-th percentile (nearest rank), in nanoseconds; `None` if none
    /// were kept.
    pub fn percentile(&mut self, p: f64) -> Option<u32> {
        if self.nanos.is_empty() {
            return None;
        }
        self.nanos.sort_unstable();
        let rank = ((p / 100.0) * self.nanos.len() as f64).ceil() as usize;
        Some(self.nanos[rank.clamp(1, self.nanos.len()) - 1])
    }
}

/// Runs `round_trip` `count` times, timing each (one clock reading per
/// round trip, which also stamps the next), keeps the latencies `latencies`
/// is keeping, and returns the time all of them took.
#[inline]
pub fn timed_round_trips(count: u64, latencies: &mut Latencies, mut round_trip: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..count {
        round_trip();
        let now = Instant::now();
        if latencies.keeping(now) {
            latencies.push(now - last);
        }
        last = now;
    }
    last - start
}

/// This machine's CPU model name, as `lscpu` shows it (from `/proc/cpuinfo`).
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
