//! The channel's error type.

use thiserror::Error;
use vmbus_ring::{CorruptError, ReadError, WriteError};

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer closed the channel (or died), and the ring has nothing
    /// more to read.
    #[error("the peer closed the channel")]
    Closed,
    /// The ring is full; only the `try_` variants report this, the others wait.
    #[error("the ring is full: the packet needs {needed} bytes, {free} are free")]
    Full {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes free now.
        free: usize,
    },
    /// The peer broke the ring's wire rules.
    #[error(transparent)]
    Corrupt(#[from] CorruptError),
    /// The packet cannot be written (too large, malformed request).
    #[error(transparent)]
    Write(WriteError),
    /// A read failed in a way this version of the queue does not know
    /// (`vmbus_ring::ReadError` may gain variants).
    #[error(transparent)]
    Read(ReadError),
    /// A completion names a transaction id that is not outstanding: never
    /// issued, already completed, or issued by someone else.
    #[error("completion for transaction id {0}, which is not outstanding")]
    UnknownTransaction(u64),
    /// As many transactions as the limit allows are already outstanding.
    #[error("{limit} transactions are already outstanding")]
    TooManyTransactions {
        /// The configured limit.
        limit: usize,
    },
    /// [`QueueWriter::request`](crate::QueueWriter::request) on a queue made
    /// without transaction matching.
    #[error("this queue does not match transactions; make it with Queue::with_transactions")]
    TransactionsDisabled,
    /// A blocking call's deadline passed before the peer signalled.
    #[error("the deadline passed before the peer signalled")]
    TimedOut,
    /// The peer ended its direction of the pipe (it shut down or closed),
    /// and everything it sent before has been received. Lasts: every later
    /// receive reports it again.
    #[error("the peer ended the stream")]
    EndOfStream,
    /// This end already ended its direction of the pipe (shut down or
    /// closed): nothing more can be sent.
    #[error("this end of the pipe is shut down for sending")]
    ShutDown,
    /// A pipe cannot send an empty message: a zero-length data packet means
    /// end of stream to the peer.
    #[error("empty pipe message: a zero-length data packet means end of stream")]
    EmptyMessage,
    /// The peer sent a pipe message that breaks the pipe framing.
    #[error("bad pipe message: {0}")]
    Pipe(&'static str),
    /// The signal cannot be waited on: its reactor refused the fd (a limit
    /// on watched fds reached, a runtime without its I/O driver).
    #[error("cannot wait on the signal: {message}")]
    Signal {
        /// The kind of the underlying I/O error.
        kind: std::io::ErrorKind,
        /// What the error said.
        message: String,
    },
}

impl From<std::io::Error> for ChannelError {
    fn from(error: std::io::Error) -> Self {
        ChannelError::Signal { kind: error.kind(), message: error.to_string() }
    }
}

impl From<WriteError> for ChannelError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Full { needed, free } => ChannelError::Full { needed, free },
            WriteError::Corrupt(corrupt) => ChannelError::Corrupt(corrupt),
            other => ChannelError::Write(other),
        }
    }
}
