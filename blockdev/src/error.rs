//! Why the device's processes stop.

use std::io;
use thiserror::Error;
use vmbus_channel::{ChannelError, GpadlError};

/// Why a guest driver or a host device stopped.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// A system call failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// A channel failed.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// A channel's rings could not be opened in guest memory.
    #[error("GPADL: {0}")]
    Gpadl(#[from] GpadlError),
    /// Guest memory could not be set up.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The set-up message from the guest is not one.
    #[error("bad set-up message: {0}")]
    Setup(String),
    /// The peer did not answer within the time allowed.
    #[error("the peer did not respond within {0:?} ({1})")]
    Stalled(std::time::Duration, &'static str),
    /// The host process could not be started or restarted.
    #[error("host process: {0}")]
    Host(String),
    /// A data buffer that cannot be described as a GPA range.
    #[error("a data buffer is not a GPA range: {0}")]
    Segment(#[from] vmbus_ring::GpaRangeError),
    /// A tag outside the layout's slots, or one already in flight.
    #[error("tag {0} is out of range or already in flight")]
    Tag(usize),
    /// A request completed with an error status the workload did not expect.
    #[error("request failed: {0}")]
    Request(#[from] crate::request::Status),
}
