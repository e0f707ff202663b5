//! VMBus channels over [`vmbus_ring`]: an incoming and an outgoing ring
//! paired with a way to signal the peer, and a runtime-agnostic packet queue
//! on top.
//!
//! ```
//! use vmbus_channel::{block_on, connected_pair, Queue};
//! use vmbus_ring::{OutgoingPacket, PacketKind};
//!
//! // Two ends in one process; across processes use ChannelFds and MemfdChannel.
//! let (host, guest) = connected_pair(16 * 4096)?;
//! let mut host = Queue::with_transactions(host, 64);
//! let mut guest = Queue::new(guest);
//!
//! block_on(async {
//!     // The host sends a request; the queue assigns the transaction id.
//!     let completion = host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"ping"]).await?;
//!     // The guest answers it.
//!     let request = guest.reader_mut().read().await?;
//!     assert!(request.header.completion_requested);
//!     let id = request.header.transaction_id;
//!     guest.writer_mut().write(&OutgoingPacket::completion(id), &[b"pong"]).await?;
//!     // The host's reader routes the completion to the request.
//!     assert_eq!(host.reader_mut().try_read()?, None);
//!     assert_eq!(&completion.await?[..4], b"pong");
//!     Ok::<_, vmbus_channel::ChannelError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! - [`Signal`]: signalling the peer and learning of its signals and closing,
//!   polled by the waiting task or thread, never by a thread of its own:
//!   [`InProcessSignal`] and, on Linux, [`SocketSignal`] (safe against a
//!   hostile peer process) and [`EventFdSignal`] (KVM-shaped: an ioeventfd
//!   and an irqfd, for a trusted peer).
//! - [`Reactor`] (Linux): what wakes a task waiting on an fd-backed signal:
//!   [`Driver`], one thread of ours for any number of channel ends (the
//!   default); `TokioReactor` (feature `tokio`); `AsyncIoReactor` (feature
//!   `async-io`, for smol); or your own event loop ([`ExternalReactor`],
//!   or your own [`Reactor`]).
//!   Every fd-backed signal is [`AsFd`](std::os::fd::AsFd) as well.
//! - [`RawChannel`]: incoming ring + outgoing ring + signal; made by
//!   [`connected_pair`] in one process, [`ChannelFds`] and
//!   [`MemfdChannel::from_fds`] across processes (Linux), or from a GPADL
//!   over guest memory (feature `vm-memory`).
//! - [`Queue`]: batched reads and writes that wait on signals instead of
//!   spinning, split into [`QueueReader`] and [`QueueWriter`], with
//!   NIC-style counters in [`QueueState`] and transactions ([`Completion`]).
//! - [`MessagePipe`] and [`BytePipe`]: the pipe framing, the latter as
//!   `futures-io` `AsyncRead` + `AsyncWrite`, with end of stream and
//!   half-close as Linux's hv_sock speaks them.
//! - [`block_on`] and the `_blocking` methods for code without an executor;
//!   the `_blocking` methods wait on the signal in the calling thread.
//!
//! # Features
//!
//! - `tokio` (off by default, Linux): `TokioReactor`, which hands signal
//!   fds to a tokio runtime's reactor.
//! - `async-io` (off by default, Linux): `AsyncIoReactor`, which hands
//!   them to async-io's reactor (smol, async-std).
//! - `valuable` (off by default): `valuable::Valuable` for [`QueueCounters`]
//!   and [`QueueState`], for structured logs.
//! - `tracing` (off by default): `tracing` events, target `vmbus_channel`,
//!   for a corrupt ring (`WARN`, naming the field), the peer closing
//!   (`INFO`), a stuck-channel signal (`INFO`), a writer starting to wait on
//!   a full ring, a request given up and a stale completion dropped
//!   (`DEBUG`). None on the per-packet path.
//! - `vm-memory` (off by default): channel ends whose rings live in guest
//!   memory, built from a GPADL's page list over a `vm-memory` (rust-vmm)
//!   `GuestMemoryMmap`, with `RawChannel::from_gpadl` or `gpadl_rings`.
//!   A VMM opens the host end; a test or an emulated guest can open the
//!   guest end over the same memory:
//!
//! ```
//! # #[cfg(feature = "vm-memory")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//! use vmbus_channel::{InProcessSignal, Queue, RawChannel, Side};
//! use vmbus_ring::OutgoingPacket;
//!
//! // Guest memory in two regions, and a GPADL of six scattered pages: pages
//! // [0, 3) hold the guest-to-host ring, [3, 6) the host-to-guest ring.
//! let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x8000), (GuestAddress(0x100000), 0x8000)])?;
//! let gpadl = [0x102, 5, 0x107, 1, 0x100, 3];
//! let (host_signal, guest_signal) = InProcessSignal::pair();
//! let mut host = Queue::new(RawChannel::from_gpadl(&memory, &gpadl, 3, Side::Host, host_signal)?);
//! let mut guest = Queue::new(RawChannel::from_gpadl(&memory, &gpadl, 3, Side::Guest, guest_signal)?);
//!
//! guest.writer_mut().write_blocking(&OutgoingPacket::in_band(1), &[b"hello host"])?;
//! assert_eq!(&host.reader_mut().read_blocking()?.payload[..10], b"hello host");
//! host.writer_mut().write_blocking(&OutgoingPacket::completion(1), &[b"hello guest"])?;
//! assert_eq!(&guest.reader_mut().read_blocking()?.payload[..11], b"hello guest");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "vm-memory"))]
//! # fn main() {}
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod channel;
#[cfg(target_os = "linux")]
mod cross_process;
mod error;
mod events;
#[cfg(feature = "vm-memory")]
mod gpadl;
mod pipe;
mod queue;
#[cfg(target_os = "linux")]
mod reactor;
#[cfg(target_os = "linux")]
mod ring_files;
mod signal;
mod transaction;

pub use blocking::{block_on, block_on_until};
pub use channel::{connected_pair, InProcessChannel, RawChannel};
#[cfg(target_os = "linux")]
pub use cross_process::{ChannelFds, MemfdChannel, ProcessSignal, SignalFds};
pub use error::ChannelError;
#[cfg(feature = "vm-memory")]
pub use gpadl::{gpadl_rings, GpadlError, GpadlRing, GpadlRings, GuestRingMem, Side};
pub use pipe::{BytePipe, MessagePipe};
pub use queue::{Packet, PacketWithPayload, Payload, Queue, QueueCounters, QueueReader, QueueState, QueueWriter};
#[cfg(all(target_os = "linux", feature = "async-io"))]
pub use reactor::AsyncIoReactor;
#[cfg(all(target_os = "linux", feature = "tokio"))]
pub use reactor::TokioReactor;
#[cfg(target_os = "linux")]
pub use reactor::{Driver, ExternalReactor, FdWatch, Reactor};
#[cfg(target_os = "linux")]
pub use ring_files::ReceiveLimits;
#[cfg(target_os = "linux")]
pub use signal::{EventFdSignal, SocketSignal};
pub use signal::{InProcessSignal, Notifier, PeerEvent, Signal};
pub use transaction::Completion;
