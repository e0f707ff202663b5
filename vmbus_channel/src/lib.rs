//! VMBus channels over [`vmbus_ring`]: an incoming and an outgoing ring
//! paired with a way to signal the peer, and a runtime-agnostic packet queue
//! on top.
//!
//! ```
//! use vmbus_channel::{block_on, connected_pair, Queue};
//! use vmbus_ring::{OutgoingPacket, PacketKind};
//!
//! // Two ends in one process; across processes use memfd rings and eventfds.
//! let (host, guest) = connected_pair(16 * 4096)?;
//! let mut host = Queue::with_transactions(host, 64);
//! let mut guest = Queue::new(guest);
//!
//! block_on(async {
//!     // The host sends a request; the queue assigns the transaction id.
//!     let completion = host.writer().request(&OutgoingPacket::in_band(0), &[b"ping"]).await?;
//!     // The guest answers it.
//!     let request = guest.reader().read().await?;
//!     assert!(request.header.completion_requested);
//!     let id = request.header.transaction_id;
//!     guest.writer().write(&OutgoingPacket::completion(id), &[b"pong"]).await?;
//!     // The host's reader routes the completion to the request.
//!     assert_eq!(host.reader().try_read()?, None);
//!     assert_eq!(&completion.await?[..4], b"pong");
//!     Ok::<_, vmbus_channel::ChannelError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
mod channel;
mod error;
mod queue;
mod signal;
mod transaction;

pub use blocking::block_on;
pub use channel::{connected_pair, InProcessChannel, RawChannel};
pub use error::ChannelError;
pub use queue::{Packet, PacketWithPayload, Payload, Queue, QueueCounters, QueueReader, QueueState, QueueWriter};
#[cfg(target_os = "linux")]
pub use signal::{EventFdSignal, EventFdSignalFds};
pub use signal::{InProcessSignal, Notifier, Signal};
pub use transaction::Completion;
