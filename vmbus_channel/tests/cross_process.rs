//! Channels across processes: memfd rings and eventfd signals shared with a
//! child process, fd passing, and noticing the peer's death.
//!
//! A parent test spawns this test binary again, running only a child test
//! (`--exact <name>`), and tells it where to connect through an environment
//! variable; without the variable the child tests return at once.
#![cfg(target_os = "linux")]

use std::future::Future;
use std::io::{self, IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use vmbus_channel::{ChannelError, ChannelFds, MemfdChannel, Packet, PacketWithPayload, Queue};
use vmbus_ring::{GpaRangeBuf, MappingLayout, OutgoingPacket, PacketKind, TransferPageRange, TransferPages};

/// Where a child test connects; set only for child processes.
const SOCKET_ENV: &str = "VMBUS_CROSS_PROCESS_SOCKET";
/// The bound on every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A small ring, so the exchange wraps it many times.
const DATA_LEN: usize = 2 * 4096;
/// Packets each side sends in the exchange (a multiple of 4: one of each type per round).
const EXCHANGE_PACKETS: u64 = 1200;

// ------------------------------------------------------------------ helpers

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
        let socket = std::env::temp_dir().join(format!("vmbus-cross-process-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind the socket");
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--exact", name, "--nocapture", "--include-ignored"])
            .env(SOCKET_ENV, &socket)
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
    Some(MemfdChannel::from_fds(fds, MappingLayout::Single).expect("open the channel"))
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
fn send_sequence(
    writer: &mut vmbus_channel::QueueWriter<vmbus_ring::MappedRingMem, vmbus_channel::EventFdSignal>,
    side: u8,
    count: u64,
) {
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
        0 => PacketKind::InBand,
        1 => PacketKind::Completion,
        2 => PacketKind::TransferPages(TransferPages {
            set_id: 3,
            sender_owns_set: round % 8 == 0,
            ranges: transfer_ranges(seq).into_iter().collect(),
        }),
        _ => PacketKind::GpaDirect(gpa_ranges(seq)),
    };
    assert_eq!(header.kind, expected_kind, "kind of packet {seq}");
    assert_eq!(header.completion_requested, seq % 4 == 0, "completion flag of packet {seq}");
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
    assert_eq!(run(async { reader.try_read() }), Ok(None), "nothing after the sequence");
    let writer = sender.join().expect("the sender thread");
    assert_eq!(writer.counters().packets_sent, EXCHANGE_PACKETS);
}

const HOST: u8 = 0x00;
const GUEST: u8 = 0xff;

// -------------------------------------------------------------------- tests

#[test]
fn exchange_every_packet_type_both_ways() {
    let (host, guest) = ChannelFds::pair(DATA_LEN).expect("channel fds");
    let peer = Peer::spawn("child_exchange", guest);
    exchange(MemfdChannel::from_fds(host, MappingLayout::Double).expect("open the host end"), HOST, GUEST);
    peer.expect_success();
}

#[test]
#[ignore = "the child half of exchange_every_packet_type_both_ways"]
fn child_exchange() {
    if let Some(channel) = child_channel() {
        exchange(channel, GUEST, HOST);
    }
}

#[test]
fn killed_peer_closes_the_channel() {
    let (host, guest) = ChannelFds::pair(DATA_LEN).expect("channel fds");
    let mut peer = Peer::spawn("child_wait_forever", guest);
    let mut queue = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Single).expect("open the host end"));
    let ready = run(queue.reader().read()).expect("the child's ready packet");
    assert_eq!(&ready.payload[..5], b"ready");

    {
        let mut read = pin!(queue.reader().read());
        assert!(poll_once(read.as_mut()).is_pending(), "nothing to read yet");
        peer.child.kill().expect("kill the child");
        assert_eq!(run(read), Err(ChannelError::Closed), "a pending read finishes when the peer dies");
    }
    let status = wait_child(&mut peer.child, TIMEOUT).expect("the killed child exits");
    assert!(!status.success());
    assert_eq!(queue.writer().try_write(&OutgoingPacket::in_band(1), &[b"late"]), Err(ChannelError::Closed));
}

#[test]
#[ignore = "the child half of killed_peer_closes_the_channel"]
fn child_wait_forever() {
    if let Some(channel) = child_channel() {
        let mut queue = Queue::new(channel);
        run(queue.writer().write(&OutgoingPacket::in_band(0), &[b"ready"])).expect("send ready");
        // Waits until the parent kills this process (or, should the parent
        // die, until the channel closes).
        let outcome = run(queue.reader().read());
        panic!("the child was meant to be killed, but its read returned {outcome:?}");
    }
}

#[test]
fn send_and_receive_fds_in_one_process() {
    let (here, there) = UnixStream::pair().expect("socket pair");
    let (host, guest) = ChannelFds::pair(DATA_LEN).expect("channel fds");
    guest.send(&here).expect("send");
    let guest = ChannelFds::receive(&there).expect("receive");
    let mut host = Queue::new(MemfdChannel::from_fds(host, MappingLayout::Double).expect("host end"));
    let mut guest = Queue::new(MemfdChannel::from_fds(guest, MappingLayout::Single).expect("guest end"));

    run(host.writer().write(&OutgoingPacket::in_band(1), &[b"to the guest"])).expect("host write");
    let packet = run(guest.reader().read()).expect("guest read");
    assert_eq!(&packet.payload[..12], b"to the guest");
    run(guest.writer().write(&OutgoingPacket::completion(1), &[b"to the host"])).expect("guest write");
    let packet = run(host.reader().read()).expect("host read");
    assert_eq!((packet.header.kind, &packet.payload[..11]), (PacketKind::Completion, &b"to the host"[..]));

    drop(guest);
    assert_eq!(run(host.reader().read()), Err(ChannelError::Closed));
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

/// Sends `TAG`-like bytes with `count` fds (dups of stdin-independent
/// eventfds) over `socket`, bypassing `ChannelFds::send`.
fn send_raw(socket: &UnixStream, bytes: &[u8], count: usize) {
    let owned: Vec<_> =
        (0..count).map(|_| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd")).collect();
    let fds: Vec<_> = owned.iter().map(|fd| fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(count.max(1)))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if count > 0 {
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    }
    let sent = rustix::net::sendmsg(socket, &[IoSlice::new(bytes)], &mut control, rustix::net::SendFlags::empty())
        .expect("sendmsg");
    assert_eq!(sent, bytes.len());
}

#[test]
fn receive_rejects_the_wrong_number_of_fds() {
    for count in [0, 2, 4, 6, 40] {
        let (here, there) = UnixStream::pair().expect("socket pair");
        send_raw(&here, b"vmbusch1", count);
        let error = ChannelFds::receive(&there).expect_err("the wrong number of fds");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{count} fds: {error}");
        let message = error.to_string();
        assert!(message.contains("expected 5 file descriptors"), "{count} fds: {message}");
        if count <= 6 {
            assert!(message.contains(&format!("{count} arrived")), "{count} fds: {message}");
        }
    }

    // The right number with the wrong bytes is not a channel either.
    let (here, there) = UnixStream::pair().expect("socket pair");
    send_raw(&here, b"whatever", 5);
    let error = ChannelFds::receive(&there).expect_err("not a channel's message");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");

    // A socket closed before anything arrived.
    let (here, there) = UnixStream::pair().expect("socket pair");
    drop(here);
    let error = ChannelFds::receive(&there).expect_err("nothing arrived");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
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
    for args in [&["--bogus"][..], &["--seconds"], &["--seconds", "soon"], &["--ring-pages", "0"]] {
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
