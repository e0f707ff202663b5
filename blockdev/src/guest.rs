//! The guest driver: owns guest memory, starts the host process, sends
//! requests over its channels and collects their completions; when the
//! host dies it starts a new one and sends again what was in flight.

use crate::channel::ChannelEnd;
use crate::error::DeviceError;
use crate::launcher::{HostProcess, Launcher};
use crate::memory::{self, Layout, Memory};
use crate::request::{CompletionHeader, Op, RequestHeader};
use crate::setup::Setup;
use crate::validate::Segment;
use crate::wait::wait_readable;
use std::fs::File;
use std::future::Future;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmbus_channel::{block_on_until, ChannelError, Completion, Side};
use vmbus_ring::wire::PAGE_SIZE;
use vmbus_ring::{GpaRangeBuf, GpaRangeError, OutgoingPacket};
use zerocopy::IntoBytes;

/// A request as the guest describes it: the header's fields and the guest
/// memory the data goes to or comes from (empty for a flush).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoRequest {
    /// What to do.
    pub op: Op,
    /// Disk address in sectors.
    pub sector: u64,
    /// Bytes.
    pub length: u32,
    /// Guest buffers, one GPA range each.
    pub segments: Vec<Segment>,
}

/// A finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// The tag it was submitted with.
    pub tag: usize,
    /// The host's completion.
    pub completion: CompletionHeader,
    /// From the first submission to the completion.
    pub latency: Duration,
}

#[derive(Debug)]
struct InFlight {
    channel: usize,
    request: IoRequest,
    /// The segments as the packet's GPA ranges.
    ranges: GpaRangeBuf,
    submitted: Instant,
    /// `None` while the request waits to be sent again to a new host.
    completion: Option<Completion>,
}

/// The guest's side of the device.
#[derive(Debug)]
pub struct Guest {
    memory: Memory,
    memfd: File,
    layout: Layout,
    launcher: Launcher,
    host: Option<HostProcess>,
    channels: Vec<ChannelEnd>,
    in_flight: Vec<Option<InFlight>>,
    restarts: u64,
    stall: Duration,
}

impl Guest {
    /// Makes guest memory for `layout` and starts a host with `launcher`;
    /// `stall` bounds every wait for the host.
    pub fn start(layout: Layout, launcher: Launcher, stall: Duration) -> Result<Self, DeviceError> {
        let (memory, memfd) = memory::create(layout.memory_size())?;
        let mut guest = Self {
            memory,
            memfd,
            layout,
            launcher,
            host: None,
            channels: Vec::new(),
            in_flight: (0..layout.slots).map(|_| None).collect(),
            restarts: 0,
            stall,
        };
        guest.connect()?;
        Ok(guest)
    }

    /// Guest memory, to fill and check data buffers.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Where things are in guest memory.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Times a new host was started after the first.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|slot| slot.is_some()).count()
    }

    /// Sends `request` on channel `tag % channels`, under `tag` (below the
    /// layout's slot count, and not in flight).
    pub fn submit(&mut self, tag: usize, request: IoRequest) -> Result<(), DeviceError> {
        let channel = tag % self.layout.channels;
        let slot = self.in_flight.get_mut(tag).filter(|slot| slot.is_none()).ok_or(DeviceError::Tag(tag))?;
        let ranges = gpa_ranges(&request.segments)?;
        *slot = Some(InFlight { channel, request, ranges, submitted: Instant::now(), completion: None });
        if !self.send(tag)? {
            self.restart()?;
        }
        Ok(())
    }

    /// Sends the request under `tag` to the current host; `Ok(false)` if
    /// the host is gone.
    fn send(&mut self, tag: usize) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + self.stall;
        let Some(entry) = self.in_flight.get_mut(tag).and_then(Option::as_mut) else { return Ok(true) };
        let Some(end) = self.channels.get_mut(entry.channel) else { return Ok(false) };
        let header = RequestHeader::new(entry.request.op, entry.request.sector, entry.request.length);
        let packet = if entry.ranges.is_empty() {
            OutgoingPacket::in_band(0)
        } else {
            OutgoingPacket::gpa_direct(0, entry.ranges.ranges())
        };
        let payload = [header.as_bytes()];
        match block_on_until(end.queue.writer_mut().request(&packet, &payload), deadline) {
            Some(Ok(completion)) => {
                entry.completion = Some(completion);
                Ok(true)
            }
            Some(Err(ChannelError::Closed)) => Ok(false),
            Some(Err(error)) => Err(error.into()),
            None => Err(DeviceError::Stalled(self.stall, "sending a request")),
        }
    }

    /// Waits for completions and appends them to `done`; returns once at
    /// least one arrived (or nothing is in flight). A host that died is
    /// replaced on the way, transparently.
    pub fn complete(&mut self, done: &mut Vec<Done>) -> Result<(), DeviceError> {
        let deadline = Instant::now() + self.stall;
        let mut cx = Context::from_waker(Waker::noop());
        while self.in_flight() > 0 {
            let (mut host_gone, mut read_any) = (false, false);
            for end in &mut self.channels {
                match end.queue.reader_mut().poll_read_batch(&mut cx, 64, |_, _| {}) {
                    Poll::Ready(Err(ChannelError::Closed)) => host_gone = true,
                    Poll::Ready(Err(error)) => return Err(error.into()),
                    // Packets may be left (a spent work budget): look again
                    // rather than sleep.
                    Poll::Ready(Ok(_)) => read_any = true,
                    Poll::Pending => {}
                }
            }
            let before = done.len();
            for (tag, slot) in self.in_flight.iter_mut().enumerate() {
                let Some(entry) = slot else { continue };
                let Some(completion) = entry.completion.as_mut() else { continue };
                match Pin::new(completion).poll(&mut cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(payload)) => {
                        let completion = CompletionHeader::parse(&payload);
                        done.push(Done { tag, completion, latency: entry.submitted.elapsed() });
                        *slot = None;
                    }
                    Poll::Ready(Err(_)) => {
                        entry.completion = None;
                        host_gone = true;
                    }
                }
            }
            if done.len() > before {
                return Ok(());
            }
            if host_gone {
                self.restart()?;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DeviceError::Stalled(self.stall, "completions"));
            }
            if read_any {
                continue;
            }
            let fds: Vec<_> = self.channels.iter().map(|end| end.queue.signal().as_fd()).collect();
            wait_readable(&fds, deadline - now)?;
        }
        Ok(())
    }

    /// Kills the host process (`SIGKILL`) and waits for it to be gone; the
    /// next call that finds its channels closed starts a new host.
    pub fn kill_host(&mut self) {
        if let Some(mut host) = self.host.take() {
            host.kill();
        }
    }

    /// Asks the host for its CPU time so far, in nanoseconds; nothing else
    /// may be in flight.
    pub fn host_cpu_nanos(&mut self) -> Result<u64, DeviceError> {
        if self.in_flight() > 0 {
            return Err(DeviceError::Host("host CPU time asked with requests in flight".into()));
        }
        self.submit(0, IoRequest { op: Op::Stats, sector: 0, length: 0, segments: Vec::new() })?;
        let mut done = Vec::new();
        self.complete(&mut done)?;
        let done = done.pop().ok_or(DeviceError::Host("no stats completion".into()))?;
        Ok(done.completion.value.get())
    }

    /// Closes the channels and waits for the host to exit.
    pub fn shut_down(mut self) -> Result<(), DeviceError> {
        self.channels.clear();
        match self.host.take() {
            Some(host) => host.wait_exit(self.stall),
            None => Ok(()),
        }
    }

    /// Replaces a dead (or dying) host: kills it for sure, starts a new one
    /// over fresh rings, and sends everything in flight again. A new host
    /// that dies at once is replaced too, a few times at most.
    fn restart(&mut self) -> Result<(), DeviceError> {
        /// New hosts started for one failure before giving up.
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            self.kill_host();
            self.restarts += 1;
            self.connect()?;
            let mut sent_all = true;
            for tag in 0..self.in_flight.len() {
                if !self.send(tag)? {
                    sent_all = false;
                    break;
                }
            }
            if sent_all {
                return Ok(());
            }
        }
        Err(DeviceError::Host(format!("{ATTEMPTS} new hosts in a row died at once")))
    }

    /// Starts a host and opens the channels with it over zeroed rings.
    fn connect(&mut self) -> Result<(), DeviceError> {
        // The old rings' endpoints go first: a new channel starts empty.
        self.channels.clear();
        for entry in self.in_flight.iter_mut().flatten() {
            entry.completion = None;
        }
        let layout = self.layout;
        let ring_pages = (layout.guest_to_host_pages + layout.host_to_guest_pages) as usize;
        let zeros = vec![0; ring_pages * PAGE_SIZE];
        let setup = Setup {
            memory_size: layout.memory_size(),
            guest_to_host_pages: layout.guest_to_host_pages,
            host_to_guest_pages: layout.host_to_guest_pages,
            first_pages: (0..layout.channels).map(|index| layout.first_page(index)).collect(),
        };
        let mut host_sockets = Vec::new();
        for index in 0..layout.channels {
            let first = GuestAddress(layout.first_page(index) * PAGE_SIZE as u64);
            self.memory.write_slice(&zeros, first).map_err(|error| DeviceError::Memory(error.to_string()))?;
            let (gpns, split) = setup.gpadl(index).ok_or(DeviceError::Setup("GPADL overflows".into()))?;
            let (ours, theirs) = UnixStream::pair()?;
            self.channels.push(ChannelEnd::open(&self.memory, &gpns, split, Side::Guest, ours, layout.slots + 1)?);
            host_sockets.push(theirs);
        }
        let (host, stream) = self.launcher.start(self.stall)?;
        let signals: Vec<_> = host_sockets.iter().map(|socket| socket.as_fd()).collect();
        setup.send(&stream, self.memfd.as_fd(), &signals)?;
        self.host = Some(host);
        Ok(())
    }
}

/// The GPA ranges of `segments`, one range each.
fn gpa_ranges(segments: &[Segment]) -> Result<GpaRangeBuf, DeviceError> {
    let mut ranges = GpaRangeBuf::new();
    for segment in segments {
        let len = u32::try_from(segment.len).map_err(|_| GpaRangeError::TooLong)?;
        ranges.push_contiguous(segment.address.0, len)?;
    }
    Ok(ranges)
}
