//! The host device: serves every channel from one event loop.
//!
//! The loop reads each channel without waiting
//! ([`poll_read_batch`](vmbus_channel::QueueReader::poll_read_batch) with a
//! no-op waker and the [`ExternalReactor`](vmbus_channel::ExternalReactor)), answers a batch of requests
//! with one batch of completions, and when no channel has work, sleeps in
//! `poll(2)` on all the channels' signal sockets.

use crate::channel::{Channel, ChannelEnd};
use crate::disk::Disk;
use crate::error::DeviceError;
use crate::memory::{self, Memory};
use crate::request::CompletionHeader;
use crate::service::respond;
use crate::setup::Setup;
use crate::wait::wait_readable;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use vmbus_channel::{ChannelError, PacketWithPayload, Side};
use vmbus_ring::OutgoingPacket;
use zerocopy::IntoBytes;

/// Requests read from one channel in one batch.
const BATCH: usize = 64;

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
                    let completion = respond(memory, disk, payload);
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
                let fds: Vec<_> = self.channels.iter().map(|channel| channel.queue.signal().as_fd()).collect();
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
