//! A cross-process-style workload for the reactor tests: two memfd channel
//! ends (`ChannelFds` + `MemfdChannel::from_fds_with_reactor`) with one-page
//! rings, request/completion round trips, then a stream through a ring that
//! is made to fill, then both ends hang up. Runtime-agnostic: it hands back
//! three futures (the host's writer, the host's reader, the guest) for the
//! caller to run under tokio, async-io or the crate's `Driver`.
#![allow(dead_code)] // each test binary uses a different subset

use crate::common::{assert_payload, payload, sizes};
use parking_lot::Mutex;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Poll, Waker};
use vmbus_channel::{
    ChannelError, ChannelFds, MemfdChannel, ProcessSignal, Queue, QueueCounters, QueueReader, QueueWriter, Reactor,
};
use vmbus_ring::{MappedRingMem, MappingLayout, OutgoingPacket, PacketKind};

/// One page of data per ring: a few packets fill it.
pub const RING: usize = 4096;
/// Request/completion round trips, each awaited before the next.
pub const ROUND_TRIPS: u64 = 300;
/// Packets streamed host to guest through the one-page ring.
pub const STREAM: u64 = 3_000;
/// Largest payload of a streamed packet or a request.
pub const MAX_LEN: usize = 1_500;

pub type End = Queue<MappedRingMem, ProcessSignal>;
pub type Reader = QueueReader<MappedRingMem, ProcessSignal>;
pub type Writer = QueueWriter<MappedRingMem, ProcessSignal>;
pub type Task<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;
/// Called by the host's writer once every task has waited and every end is
/// still open (after the back-pressure phase); an error fails the workload.
pub type Probe = Box<dyn Fn() -> Result<(), String> + Send>;

/// Which signal the channel pair carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Socket,
    EventFd,
}

pub const KINDS: [SignalKind; 2] = [SignalKind::Socket, SignalKind::EventFd];

/// Both ends of a channel, each with its signal kept aside so the workload
/// can hang up (an eventfd carries no close: the test plays the VMM and
/// tells the other end with `peer_closed`).
pub struct Ends {
    pub host: End,
    pub guest: End,
    pub host_signal: Arc<ProcessSignal>,
    pub guest_signal: Arc<ProcessSignal>,
    pub probe: Option<Probe>,
}

/// `ends` with `probe` run in the middle of the workload.
pub fn with_probe(ends: Ends, probe: Probe) -> Ends {
    Ends { probe: Some(probe), ..ends }
}

/// The fds of a connected pair with `ring`-byte rings and `kind` signals.
pub fn fds(kind: SignalKind, ring: usize) -> (ChannelFds, ChannelFds) {
    match kind {
        SignalKind::Socket => ChannelFds::pair(ring).expect("ChannelFds::pair"),
        SignalKind::EventFd => ChannelFds::pair_with_eventfds(ring).expect("ChannelFds::pair_with_eventfds"),
    }
}

/// Opens both ends with `reactor` watching their signals: the host with a
/// double mapping and transactions, the guest with a single mapping.
pub fn open<R: Reactor + Clone>(reactor: R, kind: SignalKind) -> Ends {
    let (host, guest) = fds(kind, RING);
    let host = MemfdChannel::from_fds_with_reactor(host, MappingLayout::Double, reactor.clone()).expect("open host");
    let guest = MemfdChannel::from_fds_with_reactor(guest, MappingLayout::Single, reactor).expect("open guest");
    let (host_signal, guest_signal) = (host.signal().clone(), guest.signal().clone());
    Ends { host: Queue::with_transactions(host, 64), guest: Queue::new(guest), host_signal, guest_signal, probe: None }
}

/// This end is done: its peer's waits end with `Closed`. A socket signal
/// says so itself; for eventfds the test, as a VMM would, tells the peer.
pub fn hang_up(ours: &ProcessSignal, theirs: &ProcessSignal) {
    use vmbus_channel::Signal;
    ours.close();
    if let ProcessSignal::EventFd(theirs) = theirs {
        theirs.peer_closed();
    }
}

/// A one-shot gate a task can wait on: holds the guest back so that the
/// host can fill the ring deterministically.
#[derive(Default)]
pub struct Gate(Mutex<(bool, Vec<Waker>)>);

impl Gate {
    pub fn open(&self) {
        let wakers = {
            let mut state = self.0.lock();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.0 {
                Poll::Ready(())
            } else {
                state.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The three tasks of the workload, for the caller to run concurrently.
pub struct Tasks {
    /// Round trips, then fills the ring and streams, then hangs up.
    pub host_writer: Task<()>,
    /// Routes completions until the guest hangs up; returns the host's
    /// counters then, when both halves are done counting.
    pub host_reader: Task<QueueCounters>,
    /// Answers the requests, then checks the stream; returns the packets
    /// it received.
    pub guest: Task<u64>,
}

/// The payload length of streamed packet `seq` (and of request `seq`).
fn lengths() -> Arc<Vec<usize>> {
    Arc::new(sizes(0xC0FFEE, STREAM.max(ROUND_TRIPS) as usize, MAX_LEN))
}

pub fn tasks(ends: Ends) -> Tasks {
    let Ends { host, guest, host_signal, guest_signal, probe } = ends;
    let (host_reader, host_writer) = host.split();
    let gate = Arc::new(Gate::default());
    let lengths = lengths();
    Tasks {
        host_writer: Box::pin(run_host_writer(
            host_writer,
            gate.clone(),
            lengths.clone(),
            host_signal.clone(),
            guest_signal.clone(),
            probe,
        )),
        host_reader: Box::pin(run_host_reader(host_reader)),
        guest: Box::pin(run_guest(guest, gate, lengths, guest_signal, host_signal)),
    }
}

fn failed(what: &str) -> impl Fn(ChannelError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

async fn run_host_writer(
    mut writer: Writer,
    gate: Arc<Gate>,
    lengths: Arc<Vec<usize>>,
    ours: Arc<ProcessSignal>,
    theirs: Arc<ProcessSignal>,
    probe: Option<Probe>,
) -> Result<(), String> {
    // Round trips: each request's completion echoes its payload.
    for n in 0..ROUND_TRIPS {
        let body = payload(1_000_000 + n, lengths[n as usize]);
        let completion =
            writer.request(&OutgoingPacket::in_band(0), &[body]).await.map_err(failed("send a request"))?;
        let answer = completion.await.map_err(failed("await a completion"))?;
        // The echo is the padded request, padded again: the same bytes.
        if answer.len() != body.len().next_multiple_of(8) || answer[..body.len()] != *body {
            return Err(format!("round trip {n}: the completion is not the request's payload"));
        }
    }

    // Back-pressure: the guest is held at the gate, so the ring fills.
    let mut seq = 0;
    loop {
        let packet = OutgoingPacket::in_band(seq);
        match writer.try_write(&packet, &[payload(seq, lengths[seq as usize])]) {
            Ok(()) => seq += 1,
            Err(ChannelError::Full { .. }) => break,
            Err(error) => return Err(format!("fill the ring: {error}")),
        }
    }
    if seq == 0 || seq >= STREAM {
        return Err(format!("{seq} packets filled the one-page ring"));
    }
    {
        let packet = OutgoingPacket::in_band(seq);
        let body = [payload(seq, lengths[seq as usize])];
        let mut write = pin!(writer.write(&packet, &body));
        // The ring is full and its reader held back: this write must wait.
        if poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx).is_ready())).await {
            return Err("a write to a full ring did not wait".into());
        }
        gate.open();
        write.await.map_err(failed("a write waiting for space"))?;
        seq += 1;
    }
    while seq < STREAM {
        writer
            .write(&OutgoingPacket::in_band(seq), &[payload(seq, lengths[seq as usize])])
            .await
            .map_err(failed("stream"))?;
        seq += 1;
    }

    if let Some(probe) = probe {
        probe()?;
    }

    // The last request's completion says how many packets the guest checked.
    let completion =
        writer.request(&OutgoingPacket::in_band(0), &[b"done"]).await.map_err(failed("send the last request"))?;
    let answer = completion.await.map_err(failed("await the last completion"))?;
    let received = u64::from_le_bytes(answer[..8].try_into().expect("8 bytes"));
    if received != STREAM {
        return Err(format!("the guest checked {received} of {STREAM} streamed packets"));
    }
    hang_up(&ours, &theirs);
    Ok(())
}

async fn run_host_reader(mut reader: Reader) -> Result<QueueCounters, String> {
    // The guest sends only completions, which the reader routes: the only
    // way out is the guest hanging up.
    match reader.read().await {
        Err(ChannelError::Closed) => Ok(reader.counters()),
        Ok(packet) => Err(format!("the host read a packet that is not a completion: {:?}", packet.header)),
        Err(error) => Err(format!("host read: {error}")),
    }
}

async fn run_guest(
    mut guest: End,
    gate: Arc<Gate>,
    lengths: Arc<Vec<usize>>,
    ours: Arc<ProcessSignal>,
    theirs: Arc<ProcessSignal>,
) -> Result<u64, String> {
    let mut requests = 0u64;
    let mut streamed = 0u64;
    loop {
        if requests == ROUND_TRIPS && streamed == 0 {
            gate.wait().await;
        }
        let packet = match guest.reader_mut().read().await {
            Ok(packet) => packet,
            Err(ChannelError::Closed) => break,
            Err(error) => return Err(format!("guest read: {error}")),
        };
        if packet.header.kind != PacketKind::InBand {
            return Err(format!("the guest read {:?}", packet.header.kind));
        }
        let id = packet.header.transaction_id;
        if packet.header.completion_requested {
            let answer = if requests < ROUND_TRIPS { packet.payload.clone() } else { streamed.to_le_bytes().to_vec() };
            requests += 1;
            guest.writer_mut().write(&OutgoingPacket::completion(id), &[&answer]).await.map_err(failed("complete"))?;
        } else {
            if id != streamed {
                return Err(format!("streamed packet {id} arrived when {streamed} was due"));
            }
            assert_payload(&packet.payload, payload(id, lengths[id as usize]));
            streamed += 1;
        }
    }
    if requests != ROUND_TRIPS + 1 {
        return Err(format!("the guest answered {requests} requests, not {}", ROUND_TRIPS + 1));
    }
    hang_up(&ours, &theirs);
    Ok(streamed)
}

/// Checks what the three tasks returned.
#[track_caller]
pub fn check(host_writer: Result<(), String>, host_reader: Result<QueueCounters, String>, guest: Result<u64, String>) {
    host_writer.expect("host writer");
    let counters = host_reader.expect("host reader");
    assert_eq!(guest.expect("guest"), STREAM);
    assert_eq!(counters.packets_sent, ROUND_TRIPS + STREAM + 1);
    assert_eq!(counters.packets_received, ROUND_TRIPS + 1, "every completion was routed");
    assert!(counters.ring_full >= 1, "the one-page ring never filled: {counters:?}");
    assert!(counters.write_waits >= 1, "no write waited for space: {counters:?}");
}

/// Polls three futures in one task until all are done.
pub async fn join3<A: Future, B: Future, C: Future>(a: A, b: B, c: C) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut out_a, mut out_b, mut out_c) = (None, None, None);
    poll_fn(|cx| {
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
        if out_c.is_none() {
            if let Poll::Ready(out) = c.as_mut().poll(cx) {
                out_c = Some(out);
            }
        }
        if out_a.is_some() && out_b.is_some() && out_c.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap(), out_c.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Runs the workload's three tasks in one task (any executor).
pub async fn run_joined(ends: Ends) {
    let Tasks { host_writer, host_reader, guest } = tasks(ends);
    let (writer, reader, guest) = join3(host_writer, host_reader, guest).await;
    check(writer, reader, guest);
}

/// Runs the workload under tokio: the guest and the host's reader as
/// spawned tasks (on worker threads, with a multi-thread runtime).
#[cfg(feature = "tokio")]
pub async fn run_tokio(ends: Ends) {
    let Tasks { host_writer, host_reader, guest } = tasks(ends);
    let guest = tokio::spawn(guest);
    let host_reader = tokio::spawn(host_reader);
    let writer = host_writer.await;
    let guest = guest.await.expect("guest task");
    let reader = host_reader.await.expect("host reader task");
    check(writer, reader, guest);
}
