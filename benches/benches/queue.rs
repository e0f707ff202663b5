//! The queue: streaming from a producer thread to a consumer thread, and
//! ping-pong round trips (a 64-byte request echoed back), over two
//! transports: `inproc` (heap rings, the in-process signal) and `process`
//! (what two processes use: memfd rings mapped twice and the socket signal
//! of `ChannelFds::pair`; here both ends are in this process, on two
//! threads), through the async API (batches, payloads read in place) and the
//! blocking API (one owned packet at a time), with both sides either polling
//! (never sleeping), sleeping on the peer's signals, or sleeping after
//! polling the ring for up to 50 µs (`QueueReader::set_busy_poll`).
//!
//! The two sides run on two threads pinned to two CPUs (see `Pinned` and
//! `time_on_two_cpus`). A signal owns no thread: a blocking wait polls the
//! signal's fd in the waiting thread, and an async wait (`block_on`) on the
//! socket signal has it watched by the shared `Driver`, whose one thread is
//! left to the scheduler.
//!
//! Then two benchmarks of the signal layer itself:
//! - `queue/processes/<two_cpus|one_cpu>/<socket|eventfd>/<blocking|async>/64`:
//!   a 64-byte request and its echo between two real processes (this binary
//!   starts itself again as the peer, see `vmbus_benches::processes`), both
//!   readers sleeping on signals, the peer process on the other CPU or on
//!   the same one; against `queue/processes/<placement>/raw_eventfd/64`, two
//!   processes placed alike doing nothing but a blocking `read` of one
//!   eventfd and a `write` of another. Each variant's iterations are
//!   followed by as many raw round trips, and both are timed one by one: the
//!   p50 and p99 of each, and the p50 ratio, are printed after the variant
//!   and saved in `<criterion dir>/queue/processes_percentiles/<baseline>.json`
//!   for `bench_report`. An iteration is a round trip.
//! - `queue/fan_in/<per_packet|batch32>/64`: one producer thread writing
//!   64-byte packets round robin to 1,000 channels (socket signals, 16 KiB
//!   heap rings), one packet or 32 per commit; 1,000 consumer tasks, one
//!   per channel, on one executor thread (`vmbus_benches::executor`), their
//!   signals watched by one `Driver`, whose thread is left to the scheduler;
//!   an iteration is a packet. Against
//!   `queue/fan_in/polled_rings/<commit>/64`: the same packets through 1,000
//!   bare ring pairs, the consumer thread polling every ring in turn, with
//!   no queue, no signals and no driver. What each run did per packet
//!   (signals, waits, task polls) is printed after it.
//!
//! Ids: `queue/stream/<transport>/<api>/<mode>/<payload>` (an iteration is a
//! packet) and `queue/pingpong/<transport>/<api>/<mode>/<payload>` (an
//! iteration is a round trip).
//!
//! `cargo bench -p vmbus_benches --bench queue [-- FILTER]`.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use vmbus_benches::executor::{Executor, Stats, Task};
use vmbus_benches::processes::{
    cpu_model_name, serve_if_peer, timed_round_trips, Latencies, Placement, QueueApi, QueuePingPong,
    RawEventFdPingPong, SignalKind,
};
use vmbus_benches::{
    criterion, drain, ring_len, spin, time_on_two_cpus, CopyBound, PageAligned, Pinned, BATCH, STREAM_RINGS, WARM_UP,
};
use vmbus_channel::{
    block_on, connected_pair, ChannelError, ChannelFds, Driver, MemfdChannel, Packet, PacketWithPayload, Queue,
    QueueCounters, QueueReader, QueueWriter, RawChannel, Signal, SocketSignal,
};
use vmbus_ring::{FlatRingMem, IncomingRing, MappingLayout, OutgoingPacket, OutgoingRing, RingMem, WriteError};

const STREAM_SIZES: [usize; 2] = [64, 16384];
const PINGPONG_SIZE: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Async,
    Blocking,
}

/// How the two sides wait for each other.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Never sleep: spin on the non-waiting calls (`try_*`, or polling the
    /// futures with a waker that does nothing).
    Poll,
    /// Sleep on the peer's signal as soon as there is nothing to do.
    Sleep,
    /// Sleep, but let a waiting read poll the ring for up to [`BUSY_POLL`]
    /// first (`QueueReader::set_busy_poll`).
    BusyPoll,
}

impl Mode {
    /// The busy-poll budget a reader gets in this mode.
    fn busy_poll(self) -> Duration {
        match self {
            Mode::BusyPoll => BUSY_POLL,
            Mode::Poll | Mode::Sleep => Duration::ZERO,
        }
    }
}

/// The busy-poll budget of [`Mode::BusyPoll`].
const BUSY_POLL: Duration = Duration::from_micros(50);

const VARIANTS: [(Api, Mode, &str); 6] = [
    (Api::Async, Mode::Poll, "async/poll"),
    (Api::Async, Mode::Sleep, "async/sleep"),
    (Api::Async, Mode::BusyPoll, "async/busy_poll"),
    (Api::Blocking, Mode::Poll, "blocking/poll"),
    (Api::Blocking, Mode::Sleep, "blocking/sleep"),
    (Api::Blocking, Mode::BusyPoll, "blocking/busy_poll"),
];

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn queue(c: &mut Criterion) {
    // Started here, by a thread not pinned to a CPU: a thread inherits the
    // CPUs of the thread that starts it, and the first async wait on a
    // socket signal (which would start it otherwise) comes from a pinned one.
    if let Err(error) = Driver::shared() {
        eprintln!("queue: cannot start the shared driver: {error}");
    }
    let mut group = c.benchmark_group("queue");
    group.measurement_time(Duration::from_millis(1500));
    group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 2 * PINGPONG_SIZE as u64 });
    let mut bound = CopyBound::new(PINGPONG_SIZE, OutgoingPacket::in_band(0).size(PINGPONG_SIZE), ring_len(0, 1));
    group.bench_function(BenchmarkId::new("memcpy_x4", PINGPONG_SIZE), |b| {
        b.iter(|| {
            bound.round_trip(1);
            bound.round_trip(1);
        })
    });
    // The larger of the two-thread benchmarks' rings (see `STREAM_RINGS`).
    let len = STREAM_RINGS[1].1;
    for size in STREAM_SIZES {
        let (a, b) = connected_pair(len).unwrap();
        stream(&mut group, "inproc", size, a, b);
        let (a, b) = ChannelFds::pair(len).unwrap();
        let a = MemfdChannel::from_fds(a, MappingLayout::Double).unwrap();
        let b = MemfdChannel::from_fds(b, MappingLayout::Double).unwrap();
        stream(&mut group, "process", size, a, b);
    }
    let len = ring_len(0, 1);
    let (a, b) = connected_pair(len).unwrap();
    pingpong(&mut group, "inproc", a, b);
    let (a, b) = ChannelFds::pair(len).unwrap();
    let a = MemfdChannel::from_fds(a, MappingLayout::Double).unwrap();
    let b = MemfdChannel::from_fds(b, MappingLayout::Double).unwrap();
    pingpong(&mut group, "process", a, b);
    processes(&mut group);
    fan_in(&mut group);
    group.finish();
}

fn stream<M, S>(group: &mut Group<'_>, transport: &str, size: usize, a: RawChannel<M, S>, b: RawChannel<M, S>)
where
    M: RingMem + Send,
    S: Signal,
{
    let (_a_reader, mut writer) = Queue::new(a).split();
    let (mut reader, _b_writer) = Queue::new(b).split();
    let source = PageAligned::filled(size, 0xa5);
    let mut out = PageAligned::new(size + 8);
    group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: size as u64 });
    for (api, mode, name) in VARIANTS {
        reader.set_busy_poll(mode.busy_poll());
        group.bench_function(BenchmarkId::new(format!("stream/{transport}/{name}"), size), |b| {
            b.iter_custom(|packets| {
                let packets = packets as usize;
                time_on_two_cpus(
                    || produce(&mut writer, api, mode, &source, packets),
                    || consume(&mut reader, api, mode, &mut out, packets),
                )
            })
        });
    }
}

fn produce<M: RingMem, S: Signal>(
    writer: &mut QueueWriter<M, S>,
    api: Api,
    mode: Mode,
    payload: &[u8],
    packets: usize,
) {
    let packet = OutgoingPacket::in_band(1);
    let pieces = [payload];
    let chunk: Vec<PacketWithPayload<'_>> = vec![(packet, &pieces[..]); BATCH];
    let mut sent = 0;
    while sent < packets {
        match api {
            Api::Async => {
                let batch = &chunk[..BATCH.min(packets - sent)];
                match mode {
                    Mode::Poll => poll_until_ready(|cx, written| writer.poll_write_batch(cx, batch, written)),
                    Mode::Sleep | Mode::BusyPoll => block_on(writer.write_batch(batch)),
                }
                .unwrap();
                sent += batch.len();
            }
            Api::Blocking => {
                match mode {
                    Mode::Poll => loop {
                        match writer.try_write(&packet, &pieces) {
                            Err(ChannelError::Full { .. }) => spin(),
                            result => break result,
                        }
                    },
                    Mode::Sleep | Mode::BusyPoll => writer.write_blocking(&packet, &pieces),
                }
                .unwrap();
                sent += 1;
            }
        }
    }
}

fn consume<M: RingMem, S: Signal>(
    reader: &mut QueueReader<M, S>,
    api: Api,
    mode: Mode,
    out: &mut [u8],
    packets: usize,
) {
    let mut received = 0;
    while received < packets {
        match api {
            Api::Async => {
                let mut copy = |_: &_, payload: &vmbus_channel::Payload<'_, M>| {
                    let len = payload.len();
                    payload.read_at(0, &mut out[..len]).unwrap();
                };
                received += match mode {
                    Mode::Poll => loop {
                        match reader.try_read_batch(BATCH, &mut copy).unwrap() {
                            0 => spin(),
                            read => break read,
                        }
                    },
                    Mode::Sleep | Mode::BusyPoll => block_on(reader.read_batch(BATCH, &mut copy)).unwrap(),
                };
            }
            Api::Blocking => {
                black_box(read_owned(reader, mode));
                received += 1;
            }
        }
    }
}

fn pingpong<M, S>(group: &mut Group<'_>, transport: &str, a: RawChannel<M, S>, b: RawChannel<M, S>)
where
    M: RingMem + Send,
    S: Signal,
{
    let mut client = Queue::new(a);
    let mut server = Queue::new(b);
    let request = vec![0xa5; PINGPONG_SIZE];
    group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 2 * PINGPONG_SIZE as u64 });
    for (api, mode, name) in VARIANTS {
        client.reader_mut().set_busy_poll(mode.busy_poll());
        server.reader_mut().set_busy_poll(mode.busy_poll());
        group.bench_function(BenchmarkId::new(format!("pingpong/{transport}/{name}"), PINGPONG_SIZE), |b| {
            b.iter_custom(|round_trips| {
                let mut buf = vec![0; PINGPONG_SIZE + 8];
                time_on_two_cpus(
                    || {
                        let mut buf = vec![0; PINGPONG_SIZE + 8];
                        for _ in 0..round_trips {
                            exchange(&mut server, api, mode, None, &mut buf);
                        }
                    },
                    || {
                        for _ in 0..round_trips {
                            exchange(&mut client, api, mode, Some(&request), &mut buf);
                        }
                    },
                )
            })
        });
    }
}

/// One side of a round trip: the client (`request` given) writes it and reads
/// the reply into `buf`; the server reads a request into `buf` and writes it
/// back.
fn exchange<M: RingMem, S: Signal>(
    queue: &mut Queue<M, S>,
    api: Api,
    mode: Mode,
    request: Option<&[u8]>,
    buf: &mut [u8],
) {
    if let Some(request) = request {
        send(queue.writer_mut(), api, mode, request);
        receive(queue.reader_mut(), api, mode, buf);
    } else {
        let len = receive(queue.reader_mut(), api, mode, buf);
        send(queue.writer_mut(), api, mode, &buf[..len]);
    }
}

fn send<M: RingMem, S: Signal>(writer: &mut QueueWriter<M, S>, api: Api, mode: Mode, payload: &[u8]) {
    let pieces = [payload];
    let packet = OutgoingPacket::in_band(1);
    let batch = [(packet, &pieces[..])];
    match (api, mode) {
        (Api::Async, Mode::Poll) => poll_until_ready(|cx, written| writer.poll_write_batch(cx, &batch, written)),
        (Api::Async, Mode::Sleep | Mode::BusyPoll) => block_on(writer.write_batch(&batch)),
        (Api::Blocking, Mode::Poll) => loop {
            match writer.try_write(&packet, &pieces) {
                Err(ChannelError::Full { .. }) => spin(),
                result => break result,
            }
        },
        (Api::Blocking, Mode::Sleep | Mode::BusyPoll) => writer.write_blocking(&packet, &pieces),
    }
    .unwrap()
}

/// Reads one packet with the owned-packet API: spinning on `try_read`, or
/// waiting in `read_blocking`.
fn read_owned<M: RingMem, S: Signal>(reader: &mut QueueReader<M, S>, mode: Mode) -> Packet {
    match mode {
        Mode::Poll => loop {
            if let Some(packet) = reader.try_read().unwrap() {
                break packet;
            }
            spin();
        },
        Mode::Sleep | Mode::BusyPoll => reader.read_blocking().unwrap(),
    }
}

/// Reads one packet into `buf`; returns its payload length.
fn receive<M: RingMem, S: Signal>(reader: &mut QueueReader<M, S>, api: Api, mode: Mode, buf: &mut [u8]) -> usize {
    match api {
        Api::Async => {
            let mut len = 0;
            let mut copy = |_: &_, payload: &vmbus_channel::Payload<'_, M>| {
                len = payload.len();
                payload.read_at(0, &mut buf[..len]).unwrap();
            };
            loop {
                let read = match mode {
                    Mode::Poll => reader.try_read_batch(1, &mut copy),
                    Mode::Sleep | Mode::BusyPoll => block_on(reader.read_batch(1, &mut copy)),
                };
                match read.unwrap() {
                    0 => spin(),
                    _ => break,
                }
            }
            len
        }
        Api::Blocking => {
            let packet = read_owned(reader, mode);
            let len = packet.payload.len();
            buf[..len].copy_from_slice(&packet.payload);
            len
        }
    }
}

/// A waker that does nothing when woken. An `Arc` like an executor's, so
/// that the notifier recognises its clones as one waker (it does not
/// recognise clones of `Waker::noop()`, and would keep each).
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Polls a write-batch future by hand with a waker that does nothing, until
/// it is ready: polling, never sleeping.
fn poll_until_ready(
    mut poll: impl FnMut(&mut Context<'_>, &mut usize) -> Poll<Result<(), ChannelError>>,
) -> Result<(), ChannelError> {
    thread_local! {
        static WAKER: Waker = Waker::from(Arc::new(NoWake));
    }
    let waker = WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    let mut written = 0;
    loop {
        if let Poll::Ready(result) = poll(&mut cx, &mut written) {
            return result;
        }
        spin();
    }
}

// ------------------------------------------------- between two processes

/// The signals and APIs of the cross-process round trips.
const PROCESS_VARIANTS: [(SignalKind, QueueApi); 4] = [
    (SignalKind::Socket, QueueApi::Blocking),
    (SignalKind::Socket, QueueApi::Async),
    (SignalKind::EventFd, QueueApi::Blocking),
    (SignalKind::EventFd, QueueApi::Async),
];

/// The percentiles of one benchmark's round trips, and of the raw eventfd
/// round trips measured alongside them.
struct PercentileRow {
    id: String,
    ours: Percentiles,
    raw: Option<Percentiles>,
}

#[derive(Clone, Copy)]
struct Percentiles {
    round_trips: usize,
    p50_ns: u32,
    p99_ns: u32,
}

impl Percentiles {
    fn of(latencies: &mut Latencies) -> Option<Self> {
        Some(Self {
            round_trips: latencies.len(),
            p50_ns: latencies.percentile(50.0)?,
            p99_ns: latencies.percentile(99.0)?,
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "round_trips": self.round_trips, "p50_ns": self.p50_ns, "p99_ns": self.p99_ns })
    }
}

fn processes(group: &mut Group<'_>) {
    let data_len = ring_len(0, 1);
    let mut rows = Vec::new();
    for placement in [Placement::TwoCpus, Placement::OneCpu] {
        let place = placement.name();
        let mut raw: Option<RawEventFdPingPong> = None;
        let mut start_raw = || RawEventFdPingPong::start(placement).expect("start the raw eventfd peer");

        let mut raw_alone = Latencies::new(WARM_UP);
        group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 0 });
        group.bench_function(BenchmarkId::new(format!("processes/{place}/raw_eventfd"), PINGPONG_SIZE), |b| {
            let raw = raw.get_or_insert_with(&mut start_raw);
            b.iter_custom(|round_trips| {
                let _here = Pinned::to(0);
                timed_round_trips(round_trips, &mut raw_alone, || raw.round_trip())
            })
        });
        if let Some(ours) = Percentiles::of(&mut raw_alone) {
            let row =
                PercentileRow { id: format!("queue/processes/{place}/raw_eventfd/{PINGPONG_SIZE}"), ours, raw: None };
            print_percentiles(&row);
            rows.push(row);
        }

        group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 2 * PINGPONG_SIZE as u64 });
        for (signal, api) in PROCESS_VARIANTS {
            let id = format!("processes/{place}/{}/{}", signal.name(), api.name());
            let mut ours = Latencies::new(WARM_UP);
            let mut alongside = Latencies::new(WARM_UP);
            let mut pingpong = None;
            group.bench_function(BenchmarkId::new(&id, PINGPONG_SIZE), |b| {
                let pingpong = pingpong.get_or_insert_with(|| {
                    QueuePingPong::start(signal, api, placement, data_len, PINGPONG_SIZE)
                        .expect("start the queue's peer")
                });
                let raw = raw.get_or_insert_with(&mut start_raw);
                b.iter_custom(|round_trips| {
                    let _here = Pinned::to(0);
                    let elapsed = timed_round_trips(round_trips, &mut ours, || pingpong.round_trip());
                    // As many raw round trips right after, for the ratio.
                    timed_round_trips(round_trips, &mut alongside, || raw.round_trip());
                    elapsed
                })
            });
            // Ends the peer process before the next variant starts its own.
            drop(pingpong);
            if let Some(percentiles) = Percentiles::of(&mut ours) {
                let row = PercentileRow {
                    id: format!("queue/{id}/{PINGPONG_SIZE}"),
                    ours: percentiles,
                    raw: Percentiles::of(&mut alongside),
                };
                print_percentiles(&row);
                rows.push(row);
            }
        }
    }
    if !rows.is_empty() {
        if let Err(error) = save_percentiles(&rows) {
            eprintln!("queue/processes: could not save the percentiles: {error}");
        }
    }
}

fn print_percentiles(row: &PercentileRow) {
    let micros = |nanos: u32| f64::from(nanos) / 1000.0;
    let ours = &row.ours;
    print!(
        "{}: {} round trips, p50 {:.1} µs, p99 {:.1} µs",
        row.id,
        ours.round_trips,
        micros(ours.p50_ns),
        micros(ours.p99_ns)
    );
    if let Some(raw) = &row.raw {
        print!(
            "; raw eventfd alongside: {} round trips, p50 {:.1} µs, p99 {:.1} µs; p50 / raw p50 = {:.2}",
            raw.round_trips,
            micros(raw.p50_ns),
            micros(raw.p99_ns),
            f64::from(ours.p50_ns) / f64::from(raw.p50_ns)
        );
    }
    println!(" ({})", cpu_model_name());
}

/// Writes the rows to `<criterion dir>/queue/processes_percentiles/`, as
/// `new.json` and, if criterion was asked to save a baseline, as
/// `<baseline>.json`, for `bench_report`.
fn save_percentiles(rows: &[PercentileRow]) -> io::Result<()> {
    let json = serde_json::json!({
        "model_name": cpu_model_name(),
        "cpus": std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
        "rows": rows.iter().map(|row| serde_json::json!({
            "id": row.id,
            "ours": row.ours.json(),
            "raw_alongside": row.raw.as_ref().map(Percentiles::json),
        })).collect::<Vec<_>>(),
    });
    let dir = criterion_dir()?.join("queue").join("processes_percentiles");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    for name in ["new".to_owned()].into_iter().chain(saved_baseline()) {
        std::fs::write(dir.join(format!("{name}.json")), &text)?;
    }
    Ok(())
}

/// Criterion's output directory: `CRITERION_HOME`, or `criterion` in the
/// target directory this binary was built in (`<target>/<profile>/deps/`).
fn criterion_dir() -> io::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Ok(home.into());
    }
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).ok_or_else(|| io::Error::other("the binary is not in a target directory"))?;
    Ok(target.join("criterion"))
}

/// The baseline named by `--save-baseline`, if any.
fn saved_baseline() -> Option<String> {
    let mut args = std::env::args();
    while let Some(arg) = args.next() {
        if arg == "--save-baseline" {
            return args.next();
        }
        if let Some(name) = arg.strip_prefix("--save-baseline=") {
            return Some(name.to_owned());
        }
    }
    None
}

// ------------------------------------------------------------------ fan-in

/// Channels of the fan-in benchmark.
const FAN_IN_CHANNELS: usize = 1000;
/// Data area of each fan-in ring: a small channel's, room for 186 of the
/// 88-byte packets.
const FAN_IN_RING: usize = 16 * 1024;
/// Payload of a fan-in packet.
const FAN_IN_PAYLOAD: usize = 64;
/// The longest one fan-in run may take; past it, it is stuck (and fails).
const FAN_IN_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets per commit of the two fan-in variants, by name.
const FAN_IN_COMMITS: [(&str, usize); 2] = [("per_packet", 1), ("batch32", BATCH)];

type FanInReader = QueueReader<FlatRingMem, SocketSignal>;
type FanInWriter = QueueWriter<FlatRingMem, SocketSignal>;

/// 1,000 channels: their producer ends' write halves, their consumer ends'
/// read halves (socket signals watched by `driver`), and the halves nobody
/// uses, kept so that no end closes.
struct FanIn {
    writers: Vec<FanInWriter>,
    readers: Vec<FanInReader>,
    _idle: Vec<(FanInReader, FanInWriter)>,
    driver: Driver,
}

impl FanIn {
    fn new(channels: usize) -> io::Result<Self> {
        let driver = Driver::new()?;
        let mut fan_in = Self { writers: Vec::new(), readers: Vec::new(), _idle: Vec::new(), driver };
        for _ in 0..channels {
            let a_to_b = FlatRingMem::new(FAN_IN_RING).map_err(io::Error::other)?;
            let b_to_a = FlatRingMem::new(FAN_IN_RING).map_err(io::Error::other)?;
            let (a, b) = SocketSignal::pair()?;
            let b = b.with_reactor(fan_in.driver.clone());
            let producer = RawChannel::new(b_to_a.clone(), a_to_b.clone(), a).map_err(io::Error::other)?;
            let consumer = RawChannel::new(a_to_b, b_to_a, b).map_err(io::Error::other)?;
            let (producer_reader, writer) = Queue::new(producer).split();
            let (reader, consumer_writer) = Queue::new(consumer).split();
            fan_in.writers.push(writer);
            fan_in.readers.push(reader);
            fan_in._idle.push((producer_reader, consumer_writer));
        }
        Ok(fan_in)
    }

    /// Sends `packets` packets, `per_commit` at a time, round robin over the
    /// channels, to one consumer task per channel; returns the time from the
    /// producer's start to the last task's end.
    fn run(&mut self, per_commit: usize, packets: usize, stats: &mut Stats) -> Duration {
        let expected = spread(packets, per_commit, self.readers.len());
        let tasks: Vec<Task<'_>> = self
            .readers
            .iter_mut()
            .zip(expected)
            .map(|(reader, want)| Box::pin(consume_fan_in(reader, want)) as Task<'_>)
            .collect();
        let mut executor = Executor::new(tasks);
        // Every consumer finds its ring empty and sleeps on its signal, its
        // socket watched by the driver (a task with nothing to read ends).
        executor.poll_all();
        let deadline = Instant::now() + FAN_IN_TIMEOUT;
        let writers = &mut self.writers;
        let mut produced = Ok(());
        let mut left = 0;
        let elapsed = time_on_two_cpus(
            || produced = produce_fan_in(writers, per_commit, packets, deadline),
            || left = executor.run(deadline),
        );
        stats.polls += executor.stats.polls;
        stats.parks += executor.stats.parks;
        assert!(left == 0, "{left} fan-in consumers did not finish within {FAN_IN_TIMEOUT:?}");
        produced.expect("the fan-in producer");
        elapsed
    }

    /// The producer ends' and the consumer ends' counters, summed.
    fn counters(&self) -> (QueueCounters, QueueCounters) {
        let sum = |counters: &mut dyn Iterator<Item = QueueCounters>| {
            counters.fold(QueueCounters::default(), |sum, one| QueueCounters {
                packets_received: sum.packets_received + one.packets_received,
                packets_sent: sum.packets_sent + one.packets_sent,
                signals_sent: sum.signals_sent + one.signals_sent,
                signals_received: sum.signals_received + one.signals_received,
                write_waits: sum.write_waits + one.write_waits,
                read_waits: sum.read_waits + one.read_waits,
                ring_full: sum.ring_full + one.ring_full,
                ..sum
            })
        };
        (
            sum(&mut self.writers.iter().map(QueueWriter::counters)),
            sum(&mut self.readers.iter().map(QueueReader::counters)),
        )
    }
}

/// How many of `packets` packets, sent `per_commit` at a time round robin,
/// each of `channels` channels gets.
fn spread(packets: usize, per_commit: usize, channels: usize) -> Vec<usize> {
    let commits = packets.div_ceil(per_commit);
    let mut expected: Vec<usize> = (0..channels)
        .map(|channel| (commits / channels + usize::from(channel < commits % channels)) * per_commit)
        .collect();
    if packets % per_commit != 0 {
        expected[(commits - 1) % channels] -= per_commit - packets % per_commit;
    }
    expected
}

/// A consumer task: reads `want` packets, copying each payload out, waiting
/// on the channel's signal whenever the ring is empty.
async fn consume_fan_in(reader: &mut FanInReader, want: usize) {
    let mut out = [0; FAN_IN_PAYLOAD];
    let mut got = 0;
    while got < want {
        got += reader
            .read_batch(usize::MAX, |_, payload| {
                let len = payload.len().min(out.len());
                payload.read_at(0, &mut out[..len]).expect("the payload is in bounds");
            })
            .await
            .expect("a fan-in read");
    }
    black_box(&out);
}

/// The producer: `packets` packets, `per_commit` to a channel and then on to
/// the next, waiting (in this thread, until `deadline`) when a ring is full.
fn produce_fan_in(
    writers: &mut [FanInWriter],
    per_commit: usize,
    packets: usize,
    deadline: Instant,
) -> Result<(), ChannelError> {
    let payload = [0xa5; FAN_IN_PAYLOAD];
    let pieces = [&payload[..]];
    let commit = vec![(OutgoingPacket::in_band(1), &pieces[..]); per_commit];
    let mut sent = 0;
    for channel in (0..writers.len()).cycle() {
        if sent == packets {
            break;
        }
        let count = per_commit.min(packets - sent);
        writers[channel].write_batch_blocking(&commit[..count], Some(deadline))?;
        sent += count;
    }
    Ok(())
}

/// The fan-in's bound: as many bare ring pairs, no queue, no signal.
struct PolledRings {
    writers: Vec<OutgoingRing<FlatRingMem>>,
    readers: Vec<IncomingRing<FlatRingMem>>,
}

impl PolledRings {
    fn new(channels: usize) -> io::Result<Self> {
        let mut rings = Self { writers: Vec::new(), readers: Vec::new() };
        for _ in 0..channels {
            let memory = FlatRingMem::new(FAN_IN_RING).map_err(io::Error::other)?;
            rings.writers.push(OutgoingRing::new(memory.clone()).map_err(io::Error::other)?);
            rings.readers.push(IncomingRing::new(memory).map_err(io::Error::other)?);
        }
        Ok(rings)
    }

    /// The same packets as [`FanIn::run`], the consumer thread sweeping the
    /// rings and reading what each holds, the producer spinning on a full ring.
    fn run(&mut self, per_commit: usize, packets: usize) -> Duration {
        let expected = spread(packets, per_commit, self.readers.len());
        let deadline = Instant::now() + FAN_IN_TIMEOUT;
        let (writers, readers) = (&mut self.writers, &mut self.readers);
        let (mut produced, mut consumed) = (false, false);
        let elapsed = time_on_two_cpus(
            || produced = produce_polled(writers, per_commit, packets, deadline),
            || consumed = consume_polled(readers, expected, deadline),
        );
        assert!(produced && consumed, "the polled fan-in did not finish within {FAN_IN_TIMEOUT:?}");
        elapsed
    }
}

/// [`produce_fan_in`] on bare rings; `false` if `deadline` passed first.
fn produce_polled(
    writers: &mut [OutgoingRing<FlatRingMem>],
    per_commit: usize,
    packets: usize,
    deadline: Instant,
) -> bool {
    let packet = OutgoingPacket::in_band(1);
    let payload = [0xa5; FAN_IN_PAYLOAD];
    let mut sent = 0;
    for channel in (0..writers.len()).cycle() {
        if sent == packets {
            return true;
        }
        let count = per_commit.min(packets - sent);
        let mut written = 0;
        loop {
            let mut batch = writers[channel].write_batch();
            while written < count {
                match batch.write(&packet, &[&payload]) {
                    Ok(()) => written += 1,
                    Err(WriteError::Full { .. }) => break,
                    Err(error) => panic!("a polled fan-in write: {error}"),
                }
            }
            black_box(batch.commit());
            if written == count {
                break;
            }
            if Instant::now() >= deadline {
                return false;
            }
            spin();
        }
        sent += count;
    }
    true
}

/// Sweeps the rings until each has given its `expected` packets, copying
/// each payload out; `false` if `deadline` passed first.
fn consume_polled(readers: &mut [IncomingRing<FlatRingMem>], mut expected: Vec<usize>, deadline: Instant) -> bool {
    let mut out = [0; FAN_IN_PAYLOAD];
    let mut left: usize = expected.iter().sum();
    while left > 0 {
        for (reader, want) in readers.iter_mut().zip(&mut expected) {
            if *want > 0 {
                let got = drain(reader, &mut out, *want);
                *want -= got;
                left -= got;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
    true
}

fn fan_in(group: &mut Group<'_>) {
    // Two fds a channel (its socket pair), and the driver's.
    if let Err(error) = raise_fd_limit(2 * FAN_IN_CHANNELS as u64 + 256) {
        eprintln!("queue/fan_in: skipped: {error}");
        return;
    }
    let mut fan_in = None;
    let mut polled = None;
    group.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: FAN_IN_PAYLOAD as u64 });
    for (commit, per_commit) in FAN_IN_COMMITS {
        let mut stats = Stats::default();
        let mut before = None;
        group.bench_function(BenchmarkId::new(format!("fan_in/{commit}"), FAN_IN_PAYLOAD), |b| {
            let fan_in = fan_in.get_or_insert_with(|| FanIn::new(FAN_IN_CHANNELS).expect("make the fan-in channels"));
            before.get_or_insert_with(|| fan_in.counters());
            b.iter_custom(|packets| fan_in.run(per_commit, packets as usize, &mut stats))
        });
        if let (Some(fan_in), Some((producers_before, consumers_before))) = (&fan_in, before) {
            let (producers, consumers) = fan_in.counters();
            let packets = (consumers.packets_received - consumers_before.packets_received).max(1) as f64;
            let per_packet = |count: u64| count as f64 / packets;
            println!(
                "queue/fan_in/{commit}/{FAN_IN_PAYLOAD}: {packets} packets over {} channels, the driver watching {} fds; \
                 per packet: {:.3} signals to a consumer, {:.3} consumer waits, {:.3} task polls, {:.3} executor parks; \
                 {:.3} producer waits for space ({})",
                fan_in.readers.len(),
                fan_in.driver.watched(),
                per_packet(producers.signals_sent - producers_before.signals_sent),
                per_packet(consumers.read_waits - consumers_before.read_waits),
                per_packet(stats.polls),
                per_packet(stats.parks),
                per_packet(producers.write_waits - producers_before.write_waits),
                cpu_model_name(),
            );
        }
        group.bench_function(BenchmarkId::new(format!("fan_in/polled_rings/{commit}"), FAN_IN_PAYLOAD), |b| {
            let polled = polled.get_or_insert_with(|| PolledRings::new(FAN_IN_CHANNELS).expect("make the rings"));
            b.iter_custom(|packets| polled.run(per_commit, packets as usize))
        });
    }
}

/// Raises this process's soft limit on open fds to `wanted`, if it is lower
/// (and the hard limit allows).
fn raise_fd_limit(wanted: u64) -> io::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|current| current >= wanted) {
        return Ok(());
    }
    if limit.maximum.is_some_and(|maximum| maximum < wanted) {
        return Err(io::Error::other(format!("{wanted} open files wanted, the hard limit is {:?}", limit.maximum)));
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum })?;
    Ok(())
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = queue
}

/// `criterion_main!`, after a look at whether this process is a peer
/// process of the `processes` benchmarks (which then serves and exits).
fn main() {
    serve_if_peer();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
