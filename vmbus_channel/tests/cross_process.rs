//! Channels across processes: memfd rings and socket or eventfd signals
//! shared with a child process, fd passing, a byte pipe half-closed both
//! ways, noticing the peer's death, and a hostile peer of a socket signal.
//!
//! A parent test spawns this test binary again, running only a child test
//! (`--exact <name>`), and tells it where to connect through an environment
//! variable; without the variable the child tests return at once.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use vmbus_channel::{
    BytePipe, ChannelError, ChannelFds, MemfdChannel, Packet, PacketWithPayload, ProcessSignal, Queue, QueueWriter,
    Signal, SignalFds, SocketSignal,
};
use vmbus_ring::{
    GpaRangeBuf, MappedRingMem, MappingLayout, OutgoingPacket, OwnedPacketKind, PacketKind, TransferPageRange,
};

/// Where a child test connects; set only for child processes.
const SOCKET_ENV: &str = "VMBUS_CROSS_PROCESS_SOCKET";
/// The signal kind a child test expects to receive.
const KIND_ENV: &str = "VMBUS_CROSS_PROCESS_SIGNAL";
/// The bound on every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A small ring, so the exchange wraps it many times.
const DATA_LEN: usize = 2 * 4096;
/// Packets each side sends in the exchange (a multiple of 4: one of each type per round).
const EXCHANGE_PACKETS: u64 = 1200;

// ------------------------------------------------------------------ helpers

/// The two signal kinds of a cross-process channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Socket,
    EventFd,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Socket, Kind::EventFd];

    /// The fds of two connected ends with this kind of signal.
    fn pair(self) -> (ChannelFds, ChannelFds) {
        match self {
            Kind::Socket => ChannelFds::pair(DATA_LEN),
            Kind::EventFd => ChannelFds::pair_with_eventfds(DATA_LEN),
        }
        .expect("channel fds")
    }

    fn of_fds(fds: &SignalFds) -> Kind {
        match fds {
            SignalFds::Socket(_) => Kind::Socket,
            SignalFds::EventFd { .. } => Kind::EventFd,
        }
    }

    fn of_channel(channel: &MemfdChannel) -> Kind {
        match **channel.signal() {
            ProcessSignal::Socket(_) => Kind::Socket,
            ProcessSignal::EventFd(_) => Kind::EventFd,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Socket => "socket",
            Kind::EventFd => "eventfd",
        }
    }
}

/// Runs `f` on its own thread and returns its result, panicking if it takes
/// longer than [`TIMEOUT`] (the thread is then left behind, blocked).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = done.send(f());
        })
        .expect("spawn a thread");
    match result.recv_timeout(TIMEOUT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within {TIMEOUT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Waits (bounded) until `signal`'s notifier has seen more than `seen`
/// signals, or closed; returns the signal.
fn wait_for_news<S: Signal>(signal: S, seen: u64) -> S {
    bounded("waiting for the notifier", move || {
        signal.wait(seen, None);
        signal
    })
}

/// Waits (bounded) until `signal`'s notifier is closed; returns the signal.
fn wait_closed<S: Signal>(signal: S) -> S {
    bounded("waiting for the close", move || {
        while !signal.notifier().is_closed() {
            signal.wait(signal.notifier().generation(), None);
        }
        signal
    })
}

/// Runs `future` on this thread, panicking if it takes longer than [`TIMEOUT`].
fn run<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let now = Instant::now();
        assert!(now < deadline, "still waiting after {TIMEOUT:?}");
        thread::park_timeout(deadline - now);
    }
}

/// Polls `future` once.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    future.poll(&mut Context::from_waker(&Waker::from(Arc::new(Noop))))
}

/// Waits up to `timeout` for `child` to exit.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A child process running one test of this binary, killed if still running
/// when dropped (so a failing parent leaves no process behind).
struct Peer {
    child: Child,
    socket: PathBuf,
}

impl Peer {
    /// Runs child test `name` in a new process and sends it `fds`.
    fn spawn(name: &str, fds: ChannelFds) -> Peer {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let socket = std::env::temp_dir().join(format!(
            "vmbus-cross-process-{}-{}-{name}.sock",
            std::process::id(),
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind the socket");
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--exact", name, "--nocapture", "--include-ignored"])
            .env(SOCKET_ENV, &socket)
            .env(KIND_ENV, Kind::of_fds(&fds.signal).name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child test");
        let mut peer = Peer { child, socket };
        let stream = peer.accept(&listener);
        fds.send(&stream).expect("send the fds");
        peer
    }

    /// Accepts the child's connection, waiting in bounded polls.
    fn accept(&mut self, listener: &UnixListener) -> UnixStream {
        let deadline = Instant::now() + TIMEOUT;
        let tick = rustix::event::Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        loop {
            let mut fds = [rustix::event::PollFd::new(listener, rustix::event::PollFlags::IN)];
            if rustix::event::poll(&mut fds, Some(&tick)).expect("poll") > 0 {
                return listener.accept().expect("accept").0;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the child exited before connecting: {status}\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "the child did not connect within {TIMEOUT:?}");
        }
    }

    /// Waits for the child to exit and expects success.
    fn expect_success(mut self) {
        match wait_child(&mut self.child, TIMEOUT) {
            Some(status) if status.success() => {}
            Some(status) => panic!("the child failed: {status}\n{}", self.output()),
            None => panic!("the child did not exit within {TIMEOUT:?}"),
        }
    }

    /// The child's output so far (call once it has exited).
    fn output(&mut self) -> String {
        let mut output = String::new();
        if let Some(stdout) = &mut self.child.stdout {
            let _ = stdout.read_to_string(&mut output);
        }
        if let Some(stderr) = &mut self.child.stderr {
            let _ = stderr.read_to_string(&mut output);
        }
        output
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_child(&mut self.child, TIMEOUT);
        }
    }
}

/// In a child test: the channel end the parent sent, or `None` when this is
/// not a child process.
fn child_channel() -> Option<MemfdChannel> {
    let socket = std::env::var_os(SOCKET_ENV)?;
    let stream = UnixStream::connect(socket).expect("connect to the parent");
    stream.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    let fds = ChannelFds::receive(&stream).expect("receive the fds");
    let kind = Kind::of_fds(&fds.signal);
    assert_eq!(std::env::var(KIND_ENV).as_deref(), Ok(kind.name()), "the signal kind that arrived");
    let channel = MemfdChannel::from_fds(fds, MappingLayout::Single).expect("open the channel");
    assert_eq!(Kind::of_channel(&channel), kind);
    Some(channel)
}

// ---------------------------------------------------- the packet sequence

/// The payload of packet `seq` sent by `side`: varied lengths, including
/// empty and unaligned ones.
fn payload(side: u8, seq: u64) -> Vec<u8> {
    let len = (seq * 37 % 701) as usize;
    (0..len).map(|i| (i as u64 ^ seq.wrapping_mul(31)) as u8 ^ side).collect()
}

fn transfer_ranges(seq: u64) -> Vec<TransferPageRange> {
    (0..1 + seq % 3).map(|i| TransferPageRange::new(100 + seq as u32, i as u32 * 4096)).collect()
}

fn gpa_ranges(seq: u64) -> GpaRangeBuf {
    let mut ranges = GpaRangeBuf::new();
    ranges.push_contiguous(0x10_0000 + seq * 4096 + seq % 4096, 1 + (seq as u32 * 97) % 9000).expect("a valid range");
    if seq % 2 == 1 {
        ranges.push(8, 16, &[seq]).expect("a valid range");
    }
    ranges
}

/// Sends packets `0..count` of `side`'s sequence, a round of four (one of
/// each type) per write batch.
fn send_sequence(writer: &mut QueueWriter<MappedRingMem, ProcessSignal>, side: u8, count: u64) {
    for round in (0..count).step_by(4) {
        let payloads: Vec<Vec<u8>> = (round..round + 4).map(|seq| payload(side, seq)).collect();
        let pieces: Vec<[&[u8]; 1]> = payloads.iter().map(|payload| [payload.as_slice()]).collect();
        let transfer = transfer_ranges(round + 2);
        let gpa = gpa_ranges(round + 3);
        let packets: [PacketWithPayload<'_>; 4] = [
            (OutgoingPacket::in_band(round).with_completion_requested(), &pieces[0][..]),
            (OutgoingPacket::completion(round + 1), &pieces[1][..]),
            (OutgoingPacket::transfer_pages(round + 2, 3, round % 8 == 0, &transfer), &pieces[2][..]),
            (OutgoingPacket::gpa_direct(round + 3, gpa.ranges()), &pieces[3][..]),
        ];
        run(writer.write_batch(&packets)).expect("write a round");
    }
}

/// Checks that `packet` is packet `seq` of `side`'s sequence.
fn check_packet(packet: &Packet, side: u8, seq: u64) {
    let header = &packet.header;
    assert_eq!(header.transaction_id, seq, "transaction id");
    let round = seq - seq % 4;
    let expected_kind = match seq % 4 {
        0 => OwnedPacketKind::InBand,
        1 => OwnedPacketKind::Completion,
        2 => OwnedPacketKind::TransferPages {
            set_id: 3,
            sender_owns_set: round.is_multiple_of(8),
            ranges: transfer_ranges(seq).into_iter().collect(),
        },
        _ => OwnedPacketKind::GpaDirect(gpa_ranges(seq)),
    };
    assert_eq!(packet.kind, expected_kind, "kind of packet {seq}");
    assert_eq!(header.completion_requested, seq.is_multiple_of(4), "completion flag of packet {seq}");
    let expected = payload(side, seq);
    assert_eq!(packet.payload.len(), expected.len().next_multiple_of(8), "padded length of packet {seq}");
    assert_eq!(packet.payload[..expected.len()], expected[..], "payload of packet {seq}");
    assert!(packet.payload[expected.len()..].iter().all(|&byte| byte == 0), "padding of packet {seq}");
}

/// Sends `side`'s sequence from a thread while reading and checking the
/// peer's sequence on this one (both at once, so neither ring stalls).
fn exchange(channel: MemfdChannel, side: u8, peer_side: u8) {
    let (mut reader, mut writer) = Queue::new(channel).split();
    let sender = thread::spawn(move || {
        send_sequence(&mut writer, side, EXCHANGE_PACKETS);
        writer
    });
    let mut bytes = 0;
    for seq in 0..EXCHANGE_PACKETS {
        let packet = run(reader.read()).unwrap_or_else(|error| panic!("read packet {seq}: {error}"));
        check_packet(&packet, peer_side, seq);
        bytes += packet.payload.len();
    }
    assert!(bytes > 10 * DATA_LEN, "only {bytes} payload bytes: the ring did not wrap often");
    // Nothing after the sequence: the peer may have closed by now, or not.
    let after = run(async { reader.try_read() });
    assert!(matches!(after, Ok(None) | Err(ChannelError::Closed)), "after the sequence: {after:?}");
    let writer = sender.join().expect("the sender thread");
    assert_eq!(writer.counters().packets_sent, EXCHANGE_PACKETS);
}

const HOST: u8 = 0x00;
const GUEST: u8 = 0xff;

// -------------------------------------------------------------------- tests

/// The exchange with a child process, over a channel with a `kind` signal.
fn exchange_with_a_child(kind: Kind) {
    let (host, guest) = kind.pair();
    let peer = Peer::spawn("child_exchange", guest);
    let host = MemfdChannel::from_fds(host, MappingLayout::Double).expect("open the host end");
    assert_eq!(Kind::of_channel(&host), kind);
    exchange(host, HOST, GUEST);
    peer.expect_success();
}

#[test]
fn exchange_every_packet_type_both_ways_over_a_socket_signal() {
    exchange_with_a_child(Kind::Socket);
}

#[test]
fn exchange_every_packet_type_both_ways_over_an_eventfd_signal() {
    exchange_with_a_child(Kind::EventFd);
}

#[test]
#[ignore = "the child half of the exchange_every_packet_type_both_ways tests"]
fn child_exchange() {
    if let Some(channel) = child_channel() {
        exchange(channel, GUEST, HOST);
    }
}

/// What `side` streams through the byte pipe: a length and bytes of its own.
fn pipe_stream(side: u8) -> Vec<u8> {
    let len = if side == HOST { 200_003 } else { 150_001 };
    (0..len).map(|i: usize| (i.wrapping_mul(7) >> 3) as u8 ^ side).collect()
}

/// Streams `side`'s bytes through a byte pipe over `channel`, ends that
/// direction, and reads the peer's stream to its end, both at once.
fn pipe_exchange(channel: MemfdChannel, side: u8, peer_side: u8) {
    let mut pipe = BytePipe::new(channel);
    let received = run(common::send_and_receive(&mut pipe, &pipe_stream(side)));
    let expected = pipe_stream(peer_side);
    assert_eq!(received.len(), expected.len(), "bytes received before the end of stream");
    assert!(received == expected, "the received stream differs");
}

#[test]
fn byte_pipe_half_closes_both_ways_across_processes() {
    for kind in Kind::ALL {
        let (host, guest) = kind.pair();
        let peer = Peer::spawn("child_byte_pipe", guest);
        let host = MemfdChannel::from_fds(host, MappingLayout::Double).expect("open the host end");
        pipe_exchange(host, HOST, GUEST);
        peer.expect_success();
    }
}

#[test]
#[ignore = "the child half of byte_pipe_half_closes_both_ways_across_processes"]
fn child_byte_pipe() {
    if let Some(channel) = child_channel() {
        pipe_exchange(channel, GUEST, HOST);
    }
}

/// Tells an end whose signal cannot carry a close (eventfds) that the peer
/// is gone, as a VMM would; a socket signal learns it by itself.
fn tell_peer_closed(signal: &ProcessSignal) {
    if let ProcessSignal::EventFd(signal) = signal {
        signal.peer_closed();
    }
}

/// Kills a child process holding the other end of a `kind` channel: a read
/// pending in the parent ends with `Closed` (for eventfds, once told).
fn killed_peer_closes_the_channel(kind: Kind) {
    let (host, guest) = kind.pair();
    let mut peer = Peer::spawn("child_wait_forever", guest);
    let channel = MemfdChannel::from_fds(host, MappingLayout::Single).expect("open the host end");
    let signal = channel.signal().clone();
    let mut queue = Queue::new(channel);
    let ready = run(queue.reader_mut().read()).expect("the child's ready packet");
    assert_eq!(&ready.payload[..5], b"ready");

    {
        let mut read = pin!(queue.reader_mut().read());
        assert!(poll_once(read.as_mut()).is_pending(), "nothing to read yet");
        peer.child.kill().expect("kill the child");
        if kind == Kind::EventFd {
            wait_child(&mut peer.child, TIMEOUT).expect("the killed child exits");
            assert!(poll_once(read.as_mut()).is_pending(), "an eventfd carries no close");
            tell_peer_closed(&signal);
        }
        assert_eq!(run(read), Err(ChannelError::Closed), "a pending read finishes when the peer dies");
    }
    let status = wait_child(&mut peer.child, TIMEOUT).expect("the killed child exits");
    assert!(!status.success());
    assert_eq!(queue.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"late"]), Err(ChannelError::Closed));
}

#[test]
fn killed_peer_closes_a_socket_signal_channel() {
    killed_peer_closes_the_channel(Kind::Socket);
}

#[test]
fn killed_peer_closes_an_eventfd_signal_channel() {
    killed_peer_closes_the_channel(Kind::EventFd);
}

#[test]
#[ignore = "the child half of the killed_peer_closes tests"]
fn child_wait_forever() {
    if let Some(channel) = child_channel() {
        let mut queue = Queue::new(channel);
        run(queue.writer_mut().write(&OutgoingPacket::in_band(0), &[b"ready"])).expect("send ready");
        // Waits until the parent kills this process (or, should the parent
        // die, until the channel closes).
        let outcome = run(queue.reader_mut().read());
        panic!("the child was meant to be killed, but its read returned {outcome:?}");
    }
}

#[test]
fn send_and_receive_fds_in_one_process() {
    for kind in Kind::ALL {
        let (here, there) = UnixStream::pair().expect("socket pair");
        let (host, guest) = kind.pair();
        guest.send(&here).expect("send");
        let guest = ChannelFds::receive(&there).expect("receive");
        assert_eq!(Kind::of_fds(&guest.signal), kind, "the kind survives the trip");
        let host = MemfdChannel::from_fds(host, MappingLayout::Double).expect("host end");
        let host_signal = host.signal().clone();
        let mut host = Queue::new(host);
        let mut guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Single).expect("guest end"));

        run(host.writer_mut().write(&OutgoingPacket::in_band(1), &[b"to the guest"])).expect("host write");
        let packet = run(guest.reader_mut().read()).expect("guest read");
        assert_eq!(&packet.payload[..12], b"to the guest");
        run(guest.writer_mut().write(&OutgoingPacket::completion(1), &[b"to the host"])).expect("guest write");
        let packet = run(host.reader_mut().read()).expect("host read");
        assert_eq!((packet.header.kind, &packet.payload[..11]), (PacketKind::Completion, &b"to the host"[..]));

        drop(guest);
        if kind == Kind::EventFd {
            assert_eq!(host.reader_mut().try_read(), Ok(None), "an eventfd carries no close");
            tell_peer_closed(&host_signal);
        }
        assert_eq!(run(host.reader_mut().read()), Err(ChannelError::Closed), "{kind:?}");
    }
}

#[test]
fn ring_files_cannot_be_truncated_under_the_peer() {
    let (host, guest) = ChannelFds::pair(DATA_LEN).expect("channel fds");
    let _host = MemfdChannel::from_fds(host, MappingLayout::Double).expect("host end");
    // The guest holds the very files the host has mapped; were it able to
    // shrink one, the host's next access would die of SIGBUS.
    for fd in [&guest.incoming_ring, &guest.outgoing_ring] {
        assert_eq!(rustix::fs::ftruncate(fd, 0), Err(rustix::io::Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(fd, (4096 + 2 * DATA_LEN) as u64), Err(rustix::io::Errno::PERM));
    }
}

// ------------------------------------------------- malformed fd messages

/// `count` new eventfds, to send where the type does not matter.
fn eventfds(count: usize) -> Vec<OwnedFd> {
    (0..count).map(|_| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd")).collect()
}

/// One socket of a new stream socket pair.
fn stream_socket() -> OwnedFd {
    UnixStream::pair().expect("socket pair").0.into()
}

/// Sends `bytes` with `fds` over `socket`, bypassing `ChannelFds::send`.
fn send_raw(socket: impl AsFd, bytes: &[u8], fds: &[OwnedFd]) {
    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    }
    let sent = rustix::net::sendmsg(socket, &[IoSlice::new(bytes)], &mut control, rustix::net::SendFlags::empty())
        .expect("sendmsg");
    assert_eq!(sent, bytes.len());
}

/// A channel message's bytes: the tag, then the signal kind `kind`.
fn header(kind: u8) -> Vec<u8> {
    let mut header = b"vmbusch3".to_vec();
    header.push(kind);
    header
}

/// Has `ChannelFds::receive` take `bytes` with `fds` (and then end of file),
/// expects `InvalidData`, and returns the error's message.
fn receive_invalid(bytes: &[u8], fds: Vec<OwnedFd>) -> String {
    let (here, there) = UnixStream::pair().expect("socket pair");
    there.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    send_raw(&here, bytes, &fds);
    drop(here);
    let count = fds.len();
    let error = ChannelFds::receive(&there).expect_err("not a channel's message");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{bytes:?} with {count} fds: {error}");
    error.to_string()
}

#[test]
fn receive_rejects_the_wrong_number_of_fds() {
    for count in [0, 1, 2, 5, 6, 40] {
        let message = receive_invalid(&header(b's'), eventfds(count));
        assert!(
            message.contains("expected 3 (socket signal) or 4 (eventfd signal) file descriptors"),
            "{count} fds: {message}"
        );
        if count <= 6 {
            assert!(message.contains(&format!(", {count} arrived")), "{count} fds: {message}");
        } else {
            assert!(message.contains("truncated"), "{count} fds: {message}");
        }
    }
}

#[test]
fn receive_rejects_a_count_that_does_not_match_the_kind() {
    let message = receive_invalid(&header(b's'), eventfds(4));
    assert!(message.contains("socket signal carries 3 file descriptors, 4 arrived"), "{message}");
    let message = receive_invalid(&header(b'e'), eventfds(3));
    assert!(message.contains("eventfd signal carries 4 file descriptors, 3 arrived"), "{message}");
}

#[test]
fn receive_rejects_wrong_tags_and_kinds() {
    let message = receive_invalid(b"whatever!", eventfds(3));
    assert!(message.contains("not a channel's tag"), "{message}");
    // The first version's message (no kind byte): rejected without waiting
    // for a ninth byte.
    let (here, there) = UnixStream::pair().expect("socket pair");
    send_raw(&here, b"vmbusch1", &eventfds(4));
    let error = bounded("receiving a version 1 message", move || ChannelFds::receive(&there).expect_err("v1"));
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains("vmbusch1"), "{error}");
    drop(here);

    let message = receive_invalid(&header(b'x'), eventfds(3));
    assert!(message.contains("unknown signal kind 0x78"), "{message}");

    // A message cut short of its kind byte.
    let (here, there) = UnixStream::pair().expect("socket pair");
    send_raw(&here, b"vmbusch3", &eventfds(3));
    drop(here);
    let error = ChannelFds::receive(&there).expect_err("no kind byte");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
}

#[test]
fn receive_rejects_signal_fds_of_the_wrong_type() {
    // The ring fds are checked when mapped, so eventfds pass here.
    let message = receive_invalid(&header(b's'), eventfds(3));
    assert!(message.contains("signal socket is unusable: it is not a socket"), "{message}");

    let mut fds = eventfds(2);
    fds.push(UnixDatagram::pair().expect("datagram pair").0.into());
    let message = receive_invalid(&header(b's'), fds);
    assert!(message.contains("datagram socket"), "{message}");

    // Telling an eventfd apart takes /proc.
    if std::path::Path::new("/proc/self/fd").exists() {
        let mut fds = eventfds(2);
        fds.extend([stream_socket(), stream_socket()]);
        let message = receive_invalid(&header(b'e'), fds);
        assert!(message.contains("from_peer: it is not an eventfd"), "{message}");
    }
}

#[test]
fn receive_reports_a_socket_closed_before_anything_arrived() {
    let (here, there) = UnixStream::pair().expect("socket pair");
    drop(here);
    let error = ChannelFds::receive(&there).expect_err("nothing arrived");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
}

#[test]
fn send_writes_the_signal_kind_and_its_fds() {
    // What `send` writes, read back raw: the kind byte and the fd count.
    for (kind, byte, count) in [(Kind::Socket, b's', 3), (Kind::EventFd, b'e', 4)] {
        let (here, there) = UnixStream::pair().expect("socket pair");
        kind.pair().1.send(&here).expect("send");
        let mut bytes = [0; 9];
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let message = rustix::net::recvmsg(
            &there,
            &mut [io::IoSliceMut::new(&mut bytes)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let fds: Vec<OwnedFd> = control
            .drain()
            .flat_map(|message| match message {
                rustix::net::RecvAncillaryMessage::ScmRights(rights) => rights.collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!((message.bytes, &bytes[..]), (9, &header(byte)[..]), "{kind:?}");
        assert_eq!(fds.len(), count, "{kind:?}");
    }
}

// --------------------------------------- a hostile peer of a socket signal

/// Our end as a `SocketSignal`, and the peer's socket raw, for the peer to
/// misuse.
fn hostile_pair() -> (SocketSignal, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    (SocketSignal::new(ours).expect("our end"), theirs)
}

#[test]
fn a_blocking_flooding_peer_cannot_block_signal_peer() {
    let (ours, peer) = hostile_pair();
    // The peer makes its socket blocking (flags belong to its own open file
    // description, which ours is not) ...
    let flags = rustix::fs::fcntl_getfl(&peer).expect("F_GETFL");
    rustix::fs::fcntl_setfl(&peer, flags - rustix::fs::OFlags::NONBLOCK).expect("F_SETFL");
    // ... floods us with bytes, and never reads ours.
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (peer, stop) = (peer.try_clone().expect("clone the peer's socket"), stop.clone());
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                match (&peer).write(&[0xa5; 4096]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        })
    };

    let ours = bounded("100,000 signals to a peer that never reads", move || {
        for _ in 0..100_000 {
            ours.signal_peer();
        }
        ours
    });
    // The flood arrives as notifications, not as a close.
    let ours = wait_for_news(ours, 0);
    assert!(!ours.notifier().is_closed());
    // Signals dropped for EAGAIN lost nothing: the peer has some to read.
    peer.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    assert_eq!((&peer).read(&mut [0; 1]).expect("read our signals"), 1);

    // Dropping our end returns while the peer still floods; the flood then fails.
    bounded("dropping our end during a flood", move || drop(ours));
    stop.store(true, Ordering::Relaxed);
    let sent = bounded("the flooder", move || flooder.join().expect("the flooder thread"));
    assert!(sent > 0);
}

#[test]
fn a_peer_sending_garbage_only_causes_notifications() {
    let (mut ours, peer) = hostile_pair();
    // Every byte value.
    (&peer).write_all(&(0..=255).collect::<Vec<u8>>()).expect("write garbage");
    ours = wait_for_news(ours, 0);
    // Out-of-band data (where AF_UNIX has it) is inline: just another byte.
    let seen = ours.notifier().generation();
    match rustix::net::send(&peer, b"!", rustix::net::SendFlags::OOB) {
        Ok(_) => ours = wait_for_news(ours, seen),
        Err(error) => eprintln!("no MSG_OOB on AF_UNIX here ({error}); skipped that part"),
    }
    // Bytes carrying fds: the fds are not kept, the bytes are a signal.
    let seen = ours.notifier().generation();
    send_raw(&peer, b"fds", &eventfds(3));
    ours = wait_for_news(ours, seen);

    // Still open, and still working both ways.
    assert!(!ours.notifier().is_closed());
    ours.signal_peer();
    peer.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    assert_eq!((&peer).read(&mut [0; 8]).expect("read our signal"), 1);
    for _ in 0..2 {
        // The second round starts after the waiter handled all of the first.
        let seen = ours.notifier().generation();
        (&peer).write_all(&[0]).expect("signal us");
        ours = wait_for_news(ours, seen);
        assert!(!ours.notifier().is_closed());
    }

    drop(peer);
    let ours = wait_closed(ours);
    bounded("dropping our end", move || drop(ours));
}

#[test]
fn a_peer_that_shuts_down_or_closes_closes_our_notifier() {
    #[derive(Debug, Clone, Copy)]
    enum Gone {
        ShutdownWrite,
        ShutdownBoth,
        Close,
        /// Closes with our signals unread: we see `ECONNRESET`.
        CloseWithUnreadSignals,
    }
    for gone in [Gone::ShutdownWrite, Gone::ShutdownBoth, Gone::Close, Gone::CloseWithUnreadSignals] {
        let (ours, peer) = hostile_pair();
        // A signal sent just before going away is not lost to the close.
        (&peer).write_all(&[1]).expect("signal us");
        let peer = match gone {
            Gone::ShutdownWrite => peer.shutdown(std::net::Shutdown::Write).map(|()| Some(peer)),
            Gone::ShutdownBoth => peer.shutdown(std::net::Shutdown::Both).map(|()| Some(peer)),
            Gone::Close => {
                drop(peer);
                Ok(None)
            }
            Gone::CloseWithUnreadSignals => {
                ours.signal_peer();
                ours.signal_peer();
                drop(peer);
                Ok(None)
            }
        }
        .expect("shut down");
        let ours = wait_closed(ours);
        assert!(ours.notifier().generation() >= 1, "{gone:?}: the last signal was lost");
        // Signalling a gone peer neither blocks nor raises SIGPIPE; dropping returns.
        bounded("signalling a gone peer, then dropping", move || {
            ours.signal_peer();
            drop(ours);
        });
        drop(peer);
    }
}

#[test]
fn our_close_is_a_half_close() {
    // Against a raw peer: the peer sees end of file, we still hear it.
    let (mut ours, peer) = hostile_pair();
    ours.close();
    ours.close();
    peer.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    assert_eq!((&peer).read(&mut [0; 8]).expect("read"), 0, "the peer sees end of file");
    ours.signal_peer(); // after closing: dropped, neither blocking nor failing
    for _ in 0..2 {
        let seen = ours.notifier().generation();
        (&peer).write_all(&[1]).expect("signal us");
        ours = wait_for_news(ours, seen);
        assert!(!ours.notifier().is_closed(), "our own close closed our notifier");
    }

    // Between two ends.
    let (a, b) = SocketSignal::pair().expect("socket signal pair");
    a.close();
    let b = wait_closed(b);
    let seen = a.notifier().generation();
    b.signal_peer();
    let a = wait_for_news(a, seen);
    assert!(!a.notifier().is_closed(), "closing one end leaves its own notifier open");
    bounded("dropping both ends", move || drop((a, b)));
}

#[test]
fn socket_signal_rejects_what_is_not_a_stream_socket() {
    let (seqpacket, _other) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .expect("seqpacket pair");
    let candidates: [(&str, OwnedFd); 4] = [
        ("an eventfd", eventfds(1).remove(0)),
        ("a datagram socket", UnixDatagram::pair().expect("datagram pair").0.into()),
        ("a seqpacket socket", seqpacket),
        ("/dev/null", std::fs::File::open("/dev/null").expect("open /dev/null").into()),
    ];
    for (what, fd) in candidates {
        let error = SocketSignal::new(fd).expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what}: {error}");
    }
}

#[test]
fn pingpong_rejects_bad_arguments() {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/pingpong
    let exe = std::env::current_exe().expect("current_exe");
    let Some(pingpong) = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("examples/pingpong")) else {
        eprintln!("skipped: cannot locate the target directory from {}", exe.display());
        return;
    };
    if !pingpong.is_file() {
        eprintln!(
            "skipped: {} is not built (cargo test builds examples unless a single --test is chosen)",
            pingpong.display()
        );
        return;
    }
    for args in [
        &["--bogus"][..],
        &["--seconds"],
        &["--seconds", "soon"],
        &["--ring-pages", "0"],
        &["--busy-poll", "-1"],
        &["--busy-poll", "2000000"],
    ] {
        let mut child = Command::new(&pingpong)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pingpong");
        let status = wait_child(&mut child, TIMEOUT);
        let mut stderr = String::new();
        if status.is_none() {
            let _ = child.kill();
            let _ = wait_child(&mut child, TIMEOUT);
        }
        let _ = child.stderr.take().map(|mut pipe| pipe.read_to_string(&mut stderr));
        assert_eq!(status.and_then(|status| status.code()), Some(2), "pingpong {args:?}: {stderr}");
        assert!(stderr.contains("usage:"), "pingpong {args:?} printed no usage: {stderr}");
    }
}
