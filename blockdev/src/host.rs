//! The host device: serves every channel from one event loop.
//!
//! The loop reads each channel without waiting
//! ([`poll_read_batch`](vmbus_channel::QueueReader::poll_read_batch) with a
//! no-op waker and the [`ExternalReactor`]), answers a batch of requests
//! with one batch of completions, and when no channel has work, sleeps in
//! `poll(2)` on all the channels' signal sockets.

use crate::disk::Disk;
use crate::error::DeviceError;
use crate::memory::{self, Memory};
use crate::request::CompletionHeader;
use crate::service::respond;
use crate::setup::Setup;
use crate::wait::wait_readable;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use vmbus_channel::{
    ChannelError, ExternalReactor, GuestRingMem, PacketWithPayload, Queue, RawChannel, Side, SocketSignal,
};
use vmbus_ring::OutgoingPacket;
use zerocopy::IntoBytes;

/// A channel end whose rings are in guest memory, signalled over a socket.
pub type Channel = Queue<GuestRingMem<()>, SocketSignal>;

/// Requests read from one channel in one batch.
const BATCH: usize = 64;

/// One channel end, with a copy of its signal socket for the event loop's `poll`.
#[derive(Debug)]
pub struct ChannelEnd {
    /// The queue.
    pub queue: Channel,
    /// The signal socket, to sleep on.
    pub fd: OwnedFd,
}

impl ChannelEnd {
    /// Opens `side`'s end of the channel whose rings are the GPADL `gpns`
    /// split at `split` in `memory`, signalled through `socket` (one of a
    /// stream socket pair). `transactions`: requests this end may have
    /// outstanding (the guest's); 0 for an end that sends none (the host's).
    pub fn open(
        memory: &Memory,
        gpns: &[u64],
        split: usize,
        side: Side,
        socket: impl Into<OwnedFd>,
        transactions: usize,
    ) -> Result<Self, DeviceError> {
        let signal = SocketSignal::new(socket)?.with_reactor(ExternalReactor);
        let fd = signal.as_fd().try_clone_to_owned()?;
        let raw = RawChannel::from_gpadl(memory, gpns, split, side, signal)?;
        let queue = if transactions > 0 { Queue::with_transactions(raw, transactions) } else { Queue::new(raw) };
        Ok(Self { queue, fd })
    }
}

/// The host end of a device: guest memory, the disk, the channels.
#[derive(Debug)]
pub struct Host {
    memory: Memory,
    disk: Disk,
    channels: Vec<ChannelEnd>,
    stall: Duration,
}

impl Host {
    /// A host serving `channels` over `memory` from `disk`; `stall` bounds
    /// how long it waits for the guest to take completions.
    pub fn new(memory: Memory, disk: Disk, channels: Vec<ChannelEnd>, stall: Duration) -> Self {
        Self { memory, disk, channels, stall }
    }

    /// Connects to the guest at `socket`, takes its set-up message and
    /// opens guest memory and the channels.
    pub fn connect(socket: &std::path::Path, disk: Disk, stall: Duration) -> Result<Self, DeviceError> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(stall))?;
        let (setup, memfd, signals) = Setup::receive(&stream)?;
        let memory = memory::open(memfd, setup.memory_size)?;
        let mut channels = Vec::with_capacity(signals.len());
        for (index, socket) in signals.into_iter().enumerate() {
            let (gpns, split) = setup.gpadl(index).ok_or_else(|| DeviceError::Setup("GPADL overflows".into()))?;
            channels.push(ChannelEnd::open(&memory, &gpns, split, Side::Host, socket, 0)?);
        }
        Ok(Self::new(memory, disk, channels, stall))
    }

    /// Serves until the guest closes a channel (`Ok`) or a channel fails.
    /// Sleeps at most `idle` at a time with no work, so a caller's bound on
    /// the whole run holds.
    pub fn serve(&mut self, idle: Duration) -> Result<(), DeviceError> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut replies: Vec<(u64, CompletionHeader)> = Vec::with_capacity(BATCH);
        loop {
            let mut busy = false;
            for channel in &mut self.channels {
                let (memory, disk) = (&self.memory, &mut self.disk);
                let read = channel.queue.reader_mut().poll_read_batch(&mut cx, BATCH, |packet, payload| {
                    let completion = respond(memory, disk, packet, payload);
                    if packet.completion_requested {
                        replies.push((packet.transaction_id, completion));
                    }
                });
                match read {
                    Poll::Pending => {}
                    Poll::Ready(Ok(_)) => busy = true,
                    Poll::Ready(Err(ChannelError::Closed)) => return Ok(()),
                    Poll::Ready(Err(error)) => return Err(error.into()),
                }
                if !replies.is_empty() {
                    match complete(&mut channel.queue, &replies, Instant::now() + self.stall) {
                        Err(ChannelError::Closed) => return Ok(()),
                        Err(ChannelError::TimedOut) => return Err(DeviceError::Stalled(self.stall, "completions")),
                        other => other?,
                    }
                    replies.clear();
                }
            }
            if !busy {
                let fds: Vec<_> = self.channels.iter().map(|channel| channel.fd.as_fd()).collect();
                wait_readable(&fds, idle)?;
            }
        }
    }
}

/// Sends `replies` as one batch of completions.
fn complete(queue: &mut Channel, replies: &[(u64, CompletionHeader)], deadline: Instant) -> Result<(), ChannelError> {
    let pieces: Vec<[&[u8]; 1]> = replies.iter().map(|(_, completion)| [completion.as_bytes()]).collect();
    let packets: Vec<PacketWithPayload<'_>> =
        replies.iter().zip(&pieces).map(|((id, _), piece)| (OutgoingPacket::completion(*id), &piece[..])).collect();
    queue.writer_mut().write_batch_blocking(&packets, Some(deadline))
}
