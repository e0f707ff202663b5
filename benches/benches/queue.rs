//! The queue: streaming from a producer thread to a consumer thread, and
//! ping-pong round trips (a 64-byte request echoed back), over two
//! transports: `inproc` (heap rings, the in-process signal) and `process`
//! (what two processes use: memfd rings mapped twice and the cross-process
//! signal of `ChannelFds::pair`, with its waiter thread; here both ends are
//! in this process, on two threads), through the async API (batches, payloads read in place) and the
//! blocking API (one owned packet at a time), with both sides either polling
//! (never sleeping), sleeping on the peer's signals, or sleeping after
//! polling the ring for up to 50 µs (`QueueReader::set_busy_poll`).
//!
//! The two sides run on two threads pinned to two CPUs (see `Pinned` and
//! `time_on_two_cpus`); the cross-process signal's waiter threads are left
//! to the scheduler.
//!
//! Ids: `queue/stream/<transport>/<api>/<mode>/<payload>` (an iteration is a
//! packet) and `queue/pingpong/<transport>/<api>/<mode>/<payload>` (an
//! iteration is a round trip).
//!
//! `cargo bench -p vmbus_benches --bench queue [-- FILTER]`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use vmbus_benches::{criterion, ring_len, spin, time_on_two_cpus, CopyBound, PageAligned, BATCH, STREAM_RINGS};
use vmbus_channel::{
    block_on, connected_pair, ChannelError, ChannelFds, MemfdChannel, Packet, PacketWithPayload, Queue, QueueReader,
    QueueWriter, RawChannel, Signal,
};
use vmbus_ring::{MappingLayout, OutgoingPacket, RingMem};

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
        client.reader().set_busy_poll(mode.busy_poll());
        server.reader().set_busy_poll(mode.busy_poll());
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
        send(queue.writer(), api, mode, request);
        receive(queue.reader(), api, mode, buf);
    } else {
        let len = receive(queue.reader(), api, mode, buf);
        send(queue.writer(), api, mode, &buf[..len]);
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

criterion_group! {
    name = benches;
    config = criterion();
    targets = queue
}
criterion_main!(benches);
