//! pingpong: a "host" and a "guest" in two processes talking over a VMBus
//! channel made of memfd rings and a socket signal (or eventfds, with
//! `--eventfd`), the way a user-mode device backend and its peer would.
//!
//! The host (this process) creates the channel, starts the guest (this
//! program again, with `--guest`), hands it its end's fds over a Unix socket,
//! and then measures:
//!
//! 1. round trips: a request and its completion, echoing the payload, at
//!    several payload sizes (latency percentiles);
//! 2. streaming: in-band packets written in batches as fast as the ring
//!    allows, read in batches by the guest (throughput).
//!
//! ```sh
//! cargo run --release -p vmbus_channel --example pingpong
//! cargo run --release -p vmbus_channel --example pingpong -- --seconds 0.5 --ring-pages 16 --dump ring.bin
//! cargo run --release -p vmbus_channel --example pingpong -- --eventfd
//! cargo run --release -p vmbus_channel --example pingpong -- --busy-poll 50
//! ```
//!
//! Both processes wait in their own threads (`read_batch_blocking`,
//! `write_batch_blocking`): a thread that finds its ring empty polls the
//! signal's socket or eventfd itself, with no thread of the library in
//! between, so every round trip pays for two signals (a write to the socket
//! or eventfd and a thread wake-up each) and nothing more. `--busy-poll MICROS` has
//! the readers of both processes poll the ring first, for up to that long,
//! with the interrupt mask set so the writer sends no signal
//! (`QueueReader::set_busy_poll`): far lower latency, for a CPU spinning on
//! each side while it waits.
//!
//! If the guest dies, the host learns it from the channel closing (the
//! signal's socket hangs up; eventfds carry no close, so there the host's
//! deadline does), reports it, and exits non-zero; every wait in the host is
//! bounded. The host ends the run with a quit packet, which the guest needs
//! with eventfds.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("pingpong needs Linux: it uses memfd rings and Unix sockets");
    std::process::ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
mod linux {
    use std::error::Error;
    use std::ffi::OsString;
    use std::fs;
    use std::future::Future;
    use std::io::{self, IsTerminal, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::pin::pin;
    use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread;
    use std::time::{Duration, Instant};
    use vmbus_channel::{
        block_on_until, ChannelError, ChannelFds, MemfdChannel, PacketWithPayload, ProcessSignal, Queue, QueueCounters,
    };
    use vmbus_ring::{
        GpaRangeBuf, MappedRingMem, MappingLayout, OutgoingPacket, RingMem, RingState, TransferPageRange,
    };

    type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;
    type HostQueue = Queue<MappedRingMem, ProcessSignal>;

    const USAGE: &str = "\
usage: pingpong [--seconds N] [--ring-pages N] [--eventfd] [--busy-poll MICROS] [--dump PATH]

  --seconds N      time budget of each phase and payload size (default 1.0)
  --ring-pages N   data pages of each ring, 4096 bytes each (default 64)
  --eventfd        signal through eventfds shared by both processes, as for a
                   trusted peer (default: a socket pair, safe with an
                   untrusted one)
  --busy-poll MICROS
                   have the readers of both processes, on finding their ring
                   empty, poll it for up to MICROS microseconds before
                   sleeping on the peer's signal: lower latency for a
                   spinning CPU (default 0: sleep at once)
  --dump PATH      at the end, have the guest send one packet of each type
                   and write the host's incoming ring image (control page +
                   data area) to PATH, for a ring dump decoder";

    /// Payload sizes of the round-trip phase.
    const ROUND_TRIP_SIZES: [usize; 5] = [64, 256, 1024, 4096, 16384];
    /// Payload sizes of the streaming phase.
    const STREAM_SIZES: [usize; 3] = [64, 1024, 16384];
    /// Largest `--busy-poll`, in microseconds.
    const MAX_BUSY_POLL_MICROS: u64 = 1_000_000;
    /// Longest any single wait in the host may take before the guest is
    /// declared unresponsive.
    const STALL_TIMEOUT: Duration = Duration::from_secs(10);
    /// Round-trip latencies kept per run, in nanoseconds (4 MiB of `u32`s).
    const MAX_LATENCIES: usize = 1 << 20;
    /// Unmeasured round trips before the first run.
    const WARM_UP: Duration = Duration::from_millis(200);
    const PROGRESS_EVERY: Duration = Duration::from_millis(100);

    // The host-to-guest protocol. Requests (completion requested) carry a
    // command in their payload's first 4 bytes; plain in-band packets are
    // stream data, or the dump command when they carry DUMP_ID.
    const CMD_ECHO: u32 = 1;
    const CMD_STREAM_END: u32 = 2;
    const CMD_STATS: u32 = 3;
    const STREAM_ID: u64 = 0;
    const DUMP_ID: u64 = 0xd0d0;
    const QUIT_ID: u64 = 0x9019;

    #[derive(Debug)]
    struct Options {
        seconds: f64,
        ring_pages: usize,
        eventfd: bool,
        /// How long a reader that finds its ring empty polls it before
        /// sleeping; the host passes it on to the guest.
        busy_poll: Duration,
        dump: Option<PathBuf>,
    }

    impl Options {
        /// How the readers wait, for the report.
        fn wait_mode(&self) -> String {
            if self.busy_poll.is_zero() {
                "readers sleep on the peer's signal (no --busy-poll)".into()
            } else {
                format!(
                    "readers busy-poll an empty ring for up to {} µs before sleeping (--busy-poll {})",
                    self.busy_poll.as_micros(),
                    self.busy_poll.as_micros()
                )
            }
        }
    }

    enum Mode {
        Host(Options),
        /// The guest: the socket to connect to, and its readers' busy-poll budget.
        Guest(PathBuf, Duration),
        Help,
    }

    pub fn main() -> ExitCode {
        match parse_args(std::env::args_os().skip(1)) {
            Ok(Mode::Help) => {
                println!("{USAGE}");
                ExitCode::SUCCESS
            }
            Ok(Mode::Guest(socket, busy_poll)) => match run_guest(&socket, busy_poll) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("pingpong guest: {error}");
                    ExitCode::FAILURE
                }
            },
            Ok(Mode::Host(options)) => run_host(&options),
            Err(message) => {
                eprintln!("pingpong: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        }
    }

    fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Mode, String> {
        let mut options =
            Options { seconds: 1.0, ring_pages: 64, eventfd: false, busy_poll: Duration::ZERO, dump: None };
        let mut guest = None;
        while let Some(arg) = args.next() {
            let arg = arg.into_string().map_err(|arg| format!("unexpected argument {arg:?}"))?;
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Ok(Mode::Help),
                "--guest" => guest = Some(PathBuf::from(value()?)),
                "--eventfd" => options.eventfd = true,
                "--dump" => options.dump = Some(PathBuf::from(value()?)),
                "--seconds" => {
                    let text = value()?;
                    options.seconds = text
                        .to_str()
                        .and_then(|text| text.parse::<f64>().ok())
                        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 3600.0)
                        .ok_or_else(|| format!("--seconds wants a number of seconds in (0, 3600], not {text:?}"))?;
                }
                "--ring-pages" => {
                    let text = value()?;
                    options.ring_pages = text
                        .to_str()
                        .and_then(|text| text.parse::<usize>().ok())
                        .filter(|pages| (1..=16384).contains(pages))
                        .ok_or_else(|| format!("--ring-pages wants a page count in 1..=16384, not {text:?}"))?;
                }
                "--busy-poll" => {
                    let text = value()?;
                    let micros = text
                        .to_str()
                        .and_then(|text| text.parse::<u64>().ok())
                        .filter(|micros| *micros <= MAX_BUSY_POLL_MICROS)
                        .ok_or_else(|| {
                            format!("--busy-poll wants microseconds in 0..={MAX_BUSY_POLL_MICROS}, not {text:?}")
                        })?;
                    options.busy_poll = Duration::from_micros(micros);
                }
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        Ok(match guest {
            Some(socket) => Mode::Guest(socket, options.busy_poll),
            None => Mode::Host(options),
        })
    }

    // ---------------------------------------------------------------- guest

    /// The guest: connects, receives its end, and serves until the host closes.
    fn run_guest(socket: &Path, busy_poll: Duration) -> Result<()> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(STALL_TIMEOUT))?;
        let fds = ChannelFds::receive(&stream)?;
        drop(stream);
        let channel = MemfdChannel::from_fds(fds, MappingLayout::Double)?;
        let mut scratch = vec![0; channel.incoming().data_len()];
        let (mut reader, mut writer) = Queue::new(channel).split();
        reader.set_busy_poll(busy_poll);

        let mut stream_bytes = 0u64;
        let mut actions = Vec::new();
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        loop {
            let read = reader.read_batch_blocking(256, None, |header, payload| {
                let len = payload.len();
                if !header.completion_requested {
                    match header.transaction_id {
                        DUMP_ID => actions.push(Action::Dump),
                        QUIT_ID => actions.push(Action::Quit),
                        _ => {
                            // Consume the data as a real device would: copy it out.
                            if let Some(buf) = scratch.get_mut(..len) {
                                let _ = payload.read_at(0, buf);
                            }
                            stream_bytes += len as u64;
                        }
                    }
                    return;
                }
                let mut command = [0; 4];
                let _ = payload.read_at(0, &mut command);
                let id = header.transaction_id;
                actions.push(match u32::from_le_bytes(command) {
                    CMD_ECHO => {
                        let mut echo = buffers.pop().unwrap_or_default();
                        echo.resize(len, 0);
                        let _ = payload.read_at(0, &mut echo);
                        Action::Reply(id, echo)
                    }
                    CMD_STREAM_END => Action::StreamEnd(id),
                    CMD_STATS => Action::Stats(id),
                    _ => Action::Reply(id, Vec::new()),
                });
            });
            match read {
                Ok(_) => {}
                Err(ChannelError::Closed) => return Ok(()),
                Err(error) => return Err(error.into()),
            }

            // Answer everything this batch asked for with one write batch.
            let mut replies = Vec::with_capacity(actions.len());
            for action in actions.drain(..) {
                match action {
                    Action::Reply(id, payload) => replies.push((id, payload)),
                    Action::StreamEnd(id) => {
                        replies.push((id, std::mem::take(&mut stream_bytes).to_le_bytes().to_vec()));
                    }
                    Action::Stats(id) => replies.push((id, encode_counters(&reader.counters()))),
                    Action::Dump => with_sample_packets(|packets| writer.write_batch_blocking(packets, None))??,
                    Action::Quit => return Ok(()),
                }
            }
            if replies.is_empty() {
                continue;
            }
            let pieces: Vec<[&[u8]; 1]> = replies.iter().map(|(_, payload)| [payload.as_slice()]).collect();
            let packets: Vec<PacketWithPayload<'_>> = replies
                .iter()
                .zip(&pieces)
                .map(|((id, _), piece)| (OutgoingPacket::completion(*id), &piece[..]))
                .collect();
            writer.write_batch_blocking(&packets, None)?;
            drop(packets);
            drop(pieces);
            buffers.extend(replies.into_iter().map(|(_, payload)| payload));
        }
    }

    enum Action {
        Reply(u64, Vec<u8>),
        StreamEnd(u64),
        Stats(u64),
        Dump,
        Quit,
    }

    /// One packet of each type, as the guest sends them for `--dump`.
    fn with_sample_packets<R>(f: impl FnOnce(&[PacketWithPayload<'_>]) -> R) -> Result<R> {
        const IN_BAND: &[&[u8]] = &[b"in-band: hello from the guest"];
        const COMPLETION: &[&[u8]] = &[b"completion: status ok"];
        const TRANSFER: &[&[u8]] = &[b"transfer pages: rx"];
        const GPA: &[&[u8]] = &[b"gpa direct: write"];
        let transfer_ranges = [TransferPageRange::new(1514, 0), TransferPageRange::new(60, 2048)];
        let mut gpa = GpaRangeBuf::new();
        gpa.push_contiguous(0x12_3400, 6000)?;
        gpa.push(0x10, 512, &[0x777])?;
        let packets = [
            (OutgoingPacket::in_band(0x10).with_completion_requested(), IN_BAND),
            (OutgoingPacket::completion(0x11), COMPLETION),
            (OutgoingPacket::transfer_pages(0x12, 1, false, &transfer_ranges), TRANSFER),
            (OutgoingPacket::gpa_direct(0x13, gpa.ranges()), GPA),
        ];
        Ok(f(&packets))
    }

    const COUNTER_WORDS: usize = 7;

    fn encode_counters(counters: &QueueCounters) -> Vec<u8> {
        let words: [u64; COUNTER_WORDS] = [
            counters.packets_sent,
            counters.packets_received,
            counters.signals_sent,
            counters.signals_received,
            counters.write_waits,
            counters.read_waits,
            counters.ring_full,
        ];
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    fn decode_counters(bytes: &[u8]) -> Result<QueueCounters> {
        let mut words = bytes.chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()));
        let mut next = || words.next().ok_or("the guest's counters reply is too short");
        Ok(QueueCounters {
            packets_sent: next()?,
            packets_received: next()?,
            signals_sent: next()?,
            signals_received: next()?,
            write_waits: next()?,
            read_waits: next()?,
            ring_full: next()?,
            ..QueueCounters::default()
        })
    }

    // ----------------------------------------------------------------- host

    /// Why the host stopped early.
    #[derive(Debug)]
    enum HostError {
        /// A wait took longer than [`STALL_TIMEOUT`].
        Stalled(&'static str),
        Other(Box<dyn Error>),
    }

    impl<E: Into<Box<dyn Error>>> From<E> for HostError {
        fn from(error: E) -> Self {
            HostError::Other(error.into())
        }
    }

    impl std::fmt::Display for HostError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                HostError::Stalled(what) => {
                    write!(f, "the guest did not respond within {} s ({what})", STALL_TIMEOUT.as_secs())
                }
                HostError::Other(error) => write!(f, "{error}"),
            }
        }
    }

    /// Removes the socket path when dropped, on every path out of the host.
    struct SocketPath(PathBuf);

    impl Drop for SocketPath {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn run_host(options: &Options) -> ExitCode {
        // A dump path that cannot be written fails now, not after the run.
        if let Some(path) = &options.dump {
            if let Err(error) = fs::File::create(path) {
                eprintln!("pingpong: cannot write {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
        let socket = SocketPath(std::env::temp_dir().join(format!("vmbus-pingpong-{}.sock", std::process::id())));
        let _ = fs::remove_file(&socket.0);
        let started = Instant::now();
        let setup = UnixListener::bind(&socket.0).and_then(|listener| {
            listener.set_nonblocking(true)?;
            // The ring size and the signal's kind travel with the fds; the
            // busy-poll budget, a setting of the guest's reader, goes here.
            let child = Command::new(std::env::current_exe()?)
                .arg("--guest")
                .arg(&socket.0)
                .arg("--busy-poll")
                .arg(options.busy_poll.as_micros().to_string())
                .stdin(Stdio::null())
                .spawn()?;
            Ok((listener, child))
        });
        let (listener, mut child) = match setup {
            Ok(setup) => setup,
            Err(error) => {
                eprintln!("pingpong: cannot start the guest: {error}");
                return ExitCode::FAILURE;
            }
        };

        let result = drive(options, listener, socket, &mut child);
        // The queue is gone by now, so the guest has seen the channel close
        // and should exit; a stalled one gets no more time.
        let grace = match result {
            Err(HostError::Stalled(_)) => Duration::ZERO,
            _ => Duration::from_secs(5),
        };
        let status = wait_child(&mut child, grace);
        match (result, status) {
            (Ok(()), Some(status)) if status.success() => {
                println!("done in {:.1} s", started.elapsed().as_secs_f64());
                ExitCode::SUCCESS
            }
            (Ok(()), Some(status)) => {
                eprintln!("pingpong: guest process failed: {status}");
                ExitCode::FAILURE
            }
            (Ok(()), None) => {
                eprintln!("pingpong: the guest did not exit after the channel closed; killed it");
                kill_child(&mut child);
                ExitCode::FAILURE
            }
            (Err(error), Some(status)) => {
                eprintln!("\npingpong: guest process exited unexpectedly: {status} (host saw: {error})");
                ExitCode::FAILURE
            }
            (Err(error), None) => {
                eprintln!("\npingpong: {error}; killing the guest");
                kill_child(&mut child);
                ExitCode::FAILURE
            }
        }
    }

    fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => return None,
            }
        }
    }

    fn kill_child(child: &mut Child) {
        let _ = child.kill();
        let _ = wait_child(child, Duration::from_secs(5));
    }

    fn accept(listener: &UnixListener, child: &mut Child) -> Result<UnixStream, HostError> {
        let deadline = Instant::now() + STALL_TIMEOUT;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    return Ok(stream);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error.into()),
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!("the guest exited before connecting: {status}").into());
            }
            if Instant::now() >= deadline {
                return Err(HostError::Stalled("connecting"));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn drive(
        options: &Options,
        listener: UnixListener,
        socket: SocketPath,
        child: &mut Child,
    ) -> Result<(), HostError> {
        let data_len = options.ring_pages * 4096;
        // The guest learns the signal's kind from the message carrying its fds.
        let (host_fds, guest_fds) =
            if options.eventfd { ChannelFds::pair_with_eventfds(data_len)? } else { ChannelFds::pair(data_len)? };
        let stream = accept(&listener, child)?;
        drop(listener);
        drop(socket); // connected: nobody needs the path any more
        guest_fds.send(&stream)?;
        drop(stream);
        let channel = MemfdChannel::from_fds(host_fds, MappingLayout::Double)?;
        let incoming_ring = channel.incoming().memory().clone();
        let max_packet = channel.outgoing().max_packet_size();
        let mut host = Host { queue: Queue::with_transactions(channel, 64) };
        host.queue.reader_mut().set_busy_poll(options.busy_poll);

        println!(
            "pingpong: host pid {}, guest pid {}; two rings of {} pages ({} KiB) in memfds, {} signals; {} s per run;\n\
             {}",
            std::process::id(),
            child.id(),
            options.ring_pages,
            data_len / 1024,
            if options.eventfd { "eventfd" } else { "socket" },
            options.seconds,
            options.wait_mode(),
        );
        let budget = Duration::from_secs_f64(options.seconds);
        let mut rows = Vec::new();
        let mut latencies = Vec::with_capacity(MAX_LATENCIES);
        host.warm_up(WARM_UP.min(budget))?;
        for size in ROUND_TRIP_SIZES {
            if OutgoingPacket::in_band(0).size(size) > max_packet {
                println!("round trip {size:>5} B: skipped, the ring is too small");
                continue;
            }
            rows.push(host.round_trips(size, budget, &mut latencies)?);
        }
        for size in STREAM_SIZES {
            if OutgoingPacket::in_band(0).size(size) > max_packet {
                println!("stream     {size:>5} B: skipped, the ring is too small");
                continue;
            }
            rows.push(host.stream(size, budget, data_len)?);
        }
        print_table(&rows, &options.wait_mode());

        if let Some(path) = &options.dump {
            host.dump(&incoming_ring, path, child)?;
        }
        host.queue.writer_mut().write_batch_blocking(&[(OutgoingPacket::in_band(QUIT_ID), &[])], Some(deadline()))?;
        Ok(())
    }

    /// One line of the final table.
    struct Row {
        phase: &'static str,
        size: usize,
        ops: u64,
        elapsed: Duration,
        /// Round-trip p50 and p99, in nanoseconds.
        latency: Option<(u32, u32)>,
        signals: u64,
        packets: u64,
    }

    struct Host {
        queue: HostQueue,
    }

    impl Host {
        /// Unmeasured round trips, so the first measured run does not pay
        /// for page faults and idle CPUs waking up.
        fn warm_up(&mut self, duration: Duration) -> Result<(), HostError> {
            let mut payload = [0; 64];
            payload[..4].copy_from_slice(&CMD_ECHO.to_le_bytes());
            let start = Instant::now();
            while start.elapsed() < duration {
                self.request(&payload)?;
            }
            Ok(())
        }

        /// Phase 1 at one size: request, wait for the echoed completion, repeat.
        fn round_trips(&mut self, size: usize, budget: Duration, latencies: &mut Vec<u32>) -> Result<Row, HostError> {
            let label = format!("round trip {size:>5} B");
            let mut payload = vec![0x5a; size];
            payload[..4].copy_from_slice(&CMD_ECHO.to_le_bytes());
            let (guest_before, host_before) = self.counters()?;
            latencies.clear();
            let mut progress = Progress::new(&label, budget);
            let start = Instant::now();
            let mut ops = 0;
            while start.elapsed() < budget {
                let sent = Instant::now();
                let echo = self.request(&payload)?;
                // Nanoseconds: a busy-polled round trip can take under a microsecond.
                let nanos = sent.elapsed().as_nanos();
                if echo.len() != size {
                    return Err(format!("echo of {size} bytes came back with {} bytes", echo.len()).into());
                }
                if latencies.len() < latencies.capacity() {
                    latencies.push(u32::try_from(nanos).unwrap_or(u32::MAX));
                }
                ops += 1;
                progress.update(ops);
            }
            let elapsed = start.elapsed();
            progress.finish(ops, elapsed);
            let (guest_after, host_after) = self.counters()?;
            latencies.sort_unstable();
            let (signals, packets) = signals_and_packets(&guest_before, &guest_after, &host_before, &host_after);
            Ok(Row {
                phase: "round trip",
                size,
                ops,
                elapsed,
                latency: Some((percentile(latencies, 50.0), percentile(latencies, 99.0))),
                signals,
                packets,
            })
        }

        /// Phase 2 at one size: write batches as fast as the ring takes them,
        /// then ask the guest how many bytes it read.
        fn stream(&mut self, size: usize, budget: Duration, data_len: usize) -> Result<Row, HostError> {
            let label = format!("stream     {size:>5} B");
            let payload = vec![0xa5; size];
            let piece = [payload.as_slice()];
            // Batches of about a quarter of the ring, so the writer and the
            // reader overlap.
            let per_batch = (data_len / 4 / OutgoingPacket::in_band(0).size(size)).clamp(1, 64);
            let batch: Vec<PacketWithPayload<'_>> = vec![(OutgoingPacket::in_band(STREAM_ID), &piece[..]); per_batch];
            let (guest_before, host_before) = self.counters()?;
            let mut progress = Progress::new(&label, budget);
            let start = Instant::now();
            let mut ops = 0;
            while start.elapsed() < budget {
                self.queue.writer_mut().write_batch_blocking(&batch, Some(deadline())).map_err(stalled("streaming"))?;
                ops += per_batch as u64;
                progress.update(ops);
            }
            let counted = self.request(&CMD_STREAM_END.to_le_bytes())?;
            let elapsed = start.elapsed();
            progress.finish(ops, elapsed);
            let counted = u64::from_le_bytes(counted.get(..8).and_then(|b| b.try_into().ok()).unwrap_or_default());
            if counted != ops * size as u64 {
                return Err(
                    format!("the guest counted {counted} stream bytes, the host sent {}", ops * size as u64).into()
                );
            }
            let (guest_after, host_after) = self.counters()?;
            let (signals, packets) = signals_and_packets(&guest_before, &guest_after, &host_before, &host_after);
            Ok(Row { phase: "stream", size, ops, elapsed, latency: None, signals, packets })
        }

        /// Sends a request and waits for its completion, reading the
        /// incoming ring (which routes completions) in this thread meanwhile.
        fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, HostError> {
            let queue = &mut self.queue;
            // Writing waits only if the ring is full, which a round trip's
            // one request never makes it.
            let completion =
                block_on_until(queue.writer_mut().request(&OutgoingPacket::in_band(0), &[payload]), deadline())
                    .ok_or(HostError::Stalled("sending a request"))??;
            let mut completion = pin!(completion);
            let waker = Waker::from(Arc::new(NoWake));
            let deadline = deadline();
            loop {
                if let Poll::Ready(result) = completion.as_mut().poll(&mut Context::from_waker(&waker)) {
                    return Ok(result?);
                }
                // Returns once the completion went to its request (or any
                // other packet came, which this protocol ignores).
                if let Err(error) = queue.reader_mut().read_batch_blocking(16, Some(deadline), |_, _| {}) {
                    return match completion.as_mut().poll(&mut Context::from_waker(&waker)) {
                        Poll::Ready(Ok(payload)) => Ok(payload),
                        _ => Err(stalled("waiting for a completion")(error)),
                    };
                }
            }
        }

        /// The guest's counters (asked for with a request) and the host's.
        fn counters(&mut self) -> Result<(QueueCounters, QueueCounters), HostError> {
            let guest = decode_counters(&self.request(&CMD_STATS.to_le_bytes())?)?;
            Ok((guest, self.queue.state().counters))
        }

        /// Has the guest send one packet of each type, waits until they are
        /// all in the host's incoming ring (without reading them), and writes
        /// the ring image to `path`.
        fn dump(&mut self, ring: &MappedRingMem, path: &Path, child: &mut Child) -> Result<(), HostError> {
            let expected: usize = with_sample_packets(|packets| {
                packets.iter().map(|(packet, payload)| packet.size(payload.iter().map(|p| p.len()).sum())).sum()
            })?;
            let before = RingState::read(ring);
            self.queue
                .writer_mut()
                .write_batch_blocking(&[(OutgoingPacket::in_band(DUMP_ID), &[])], Some(deadline()))
                .map_err(stalled("asking for a dump"))?;
            let deadline = Instant::now() + STALL_TIMEOUT;
            loop {
                let state = RingState::read(ring);
                if state.write_index != before.write_index {
                    if state.bytes_used != Some(expected as u32) {
                        return Err(format!("expected {expected} bytes of sample packets, found: {state}").into());
                    }
                    break;
                }
                if let Some(status) = child.try_wait()? {
                    return Err(format!("the guest exited before sending the sample packets: {status}").into());
                }
                if Instant::now() >= deadline {
                    return Err(HostError::Stalled("sending the sample packets"));
                }
                thread::sleep(Duration::from_millis(1));
            }
            let mut image = vec![0; 4096 + ring.data_len()];
            let (control, data) = image.split_at_mut(4096);
            ring.read_control(0, control);
            ring.read_data(0, data);
            fs::write(path, &image).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            println!(
                "wrote the host's incoming ring ({} bytes: control page + data area, 4 unread packets) to {}",
                image.len(),
                path.display()
            );
            Ok(())
        }
    }

    /// Signals and packets of both sides between two counter snapshots.
    fn signals_and_packets(
        guest_before: &QueueCounters,
        guest_after: &QueueCounters,
        host_before: &QueueCounters,
        host_after: &QueueCounters,
    ) -> (u64, u64) {
        let signals = (guest_after.signals_sent - guest_before.signals_sent)
            + (host_after.signals_sent - host_before.signals_sent);
        let packets = (guest_after.packets_sent - guest_before.packets_sent)
            + (host_after.packets_sent - host_before.packets_sent);
        (signals, packets)
    }

    /// The value at percentile `p` of sorted values (nearest rank).
    fn percentile(sorted: &[u32], p: f64) -> u32 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    /// Nanoseconds as microseconds, to a tenth.
    fn micros(nanos: u32) -> String {
        format!("{:.1}", f64::from(nanos) / 1000.0)
    }

    /// The final table; `wait_mode` says how the readers waited.
    fn print_table(rows: &[Row], wait_mode: &str) {
        println!();
        println!(
            "{:<10} {:>6} {:>10} {:>11} {:>9} {:>8} {:>8} {:>11}",
            "phase", "bytes", "packets", "packets/s", "MB/s", "p50 µs", "p99 µs", "signals/pkt"
        );
        for row in rows {
            let seconds = row.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
            let (p50, p99) = match row.latency {
                Some((p50, p99)) => (micros(p50), micros(p99)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<10} {:>6} {:>10} {:>11.0} {:>9.1} {:>8} {:>8} {:>11.3}",
                row.phase,
                row.size,
                row.ops,
                row.ops as f64 / seconds,
                (row.ops * row.size as u64) as f64 / seconds / 1e6,
                p50,
                p99,
                row.signals as f64 / row.packets.max(1) as f64,
            );
        }
        println!(
            "packets: round trips (request + completion) or streamed packets; MB/s: host-to-guest payload;\n\
             p50/p99: round-trip latency, {wait_mode};\n\
             signals/pkt: signals sent by both sides per packet sent by both sides"
        );
    }

    /// The live progress line of one run, rewritten in place on a terminal
    /// (a log or a pipe gets the final line only).
    struct Progress<'a> {
        label: &'a str,
        budget: Duration,
        start: Instant,
        next: Instant,
        live: bool,
    }

    impl<'a> Progress<'a> {
        fn new(label: &'a str, budget: Duration) -> Self {
            let start = Instant::now();
            Self { label, budget, start, next: start, live: io::stdout().is_terminal() }
        }

        fn update(&mut self, ops: u64) {
            let now = Instant::now();
            if !self.live || now < self.next {
                return;
            }
            self.next = now + PROGRESS_EVERY;
            let elapsed = now - self.start;
            print!(
                "\r{}: {ops:>9} packets  {:>9.0}/s  {:>4.1}/{:.1} s",
                self.label,
                ops as f64 / elapsed.as_secs_f64().max(1e-9),
                elapsed.as_secs_f64(),
                self.budget.as_secs_f64()
            );
            let _ = io::stdout().flush();
        }

        fn finish(&self, ops: u64, elapsed: Duration) {
            println!(
                "{}{}: {ops:>9} packets  {:>9.0}/s  in {:.2} s     ",
                if self.live { "\r" } else { "" },
                self.label,
                ops as f64 / elapsed.as_secs_f64().max(1e-9),
                elapsed.as_secs_f64()
            );
        }
    }

    /// The deadline of a wait that starts now: the host never waits forever
    /// on a stuck guest.
    fn deadline() -> Instant {
        Instant::now() + STALL_TIMEOUT
    }

    /// Turns a deadline that passed into [`HostError::Stalled`].
    fn stalled(what: &'static str) -> impl Fn(ChannelError) -> HostError {
        move |error| match error {
            ChannelError::TimedOut => HostError::Stalled(what),
            other => other.into(),
        }
    }

    /// A waker for polling a completion that the reading thread itself
    /// looks at: nothing to wake.
    struct NoWake;

    impl Wake for NoWake {
        fn wake(self: Arc<Self>) {}
    }
}
