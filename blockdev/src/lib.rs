//! A VMBus block device over `vmbus_channel`, end to end: a guest driver
//! and a host device in two processes.
//!
//! The guest owns guest memory, a memfd mapped by both processes as a
//! `vm-memory` `GuestMemoryMmap`. Each channel's two rings live in that
//! memory as a GPADL ([`RawChannel::from_gpadl`](vmbus_channel::RawChannel::from_gpadl)),
//! as a VMM would have them, with a socket pair as the signal. A read or a
//! write is a GPA-direct packet whose ranges point at the guest's data
//! buffers and whose payload is a [`RequestHeader`](request::RequestHeader);
//! the host checks it ([`validate::plan`]), moves the data between the disk
//! image file and guest memory with no buffer in between ([`disk::Disk`]),
//! and completes it by transaction id with a
//! [`CompletionHeader`](request::CompletionHeader).
//!
//! ```no_run
//! use std::time::Duration;
//! use vmbus_blockdev::guest::{Guest, IoRequest};
//! use vmbus_blockdev::launcher::Launcher;
//! use vmbus_blockdev::memory::Layout;
//! use vmbus_blockdev::request::{Op, Status};
//! use vmbus_blockdev::validate::Segment;
//!
//! // The host is this program run as `vmbus-blockdev host --disk disk.img --socket PATH`.
//! let launcher = Launcher { program: "vmbus-blockdev".into(), args: vec!["host".into(), "--disk".into(), "disk.img".into()] };
//! let layout = Layout { channels: 1, guest_to_host_pages: 33, host_to_guest_pages: 9, slots: 8 };
//! let mut guest = Guest::start(layout, launcher, Duration::from_secs(10))?;
//! // Read 8 KiB at sector 16 into slot 0, 512 bytes into it, as two ranges.
//! let buffer = guest.layout().slot(0).0 + 512;
//! let segments = vec![
//!     Segment { address: vm_memory::GuestAddress(buffer), len: 4096 },
//!     Segment { address: vm_memory::GuestAddress(buffer + 8192), len: 4096 },
//! ];
//! guest.submit(0, IoRequest { op: Op::Read, sector: 16, length: 8192, segments })?;
//! let mut done = Vec::new();
//! guest.complete(&mut done)?;
//! assert_eq!(done[0].completion.status(), Status::Ok);
//! guest.shut_down()?;
//! # Ok::<(), vmbus_blockdev::error::DeviceError>(())
//! ```
//!
//! The host serves every channel from one event loop ([`host::Host::serve`]);
//! the guest, if its host dies, starts a new one and sends again what was in
//! flight ([`guest::Guest::complete`]). The binary `vmbus-blockdev` runs a
//! fio-like report against plain `pread`/`pwrite` and a verify run; see the
//! crate's README.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bound;
pub mod channel;
pub mod cli;
pub mod disk;
pub mod drive;
pub mod error;
pub mod guest;
pub mod host;
pub mod image;
pub mod job;
pub mod launcher;
pub mod memory;
pub mod pattern;
pub mod report;
pub mod request;
pub mod scatter;
pub mod service;
pub mod setup;
pub mod stats;
pub mod validate;
pub mod verify;
pub mod wait;
