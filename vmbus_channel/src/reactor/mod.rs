//! Reactors: what tells a waiting task that a signal's fd became readable.
//!
//! An fd-backed signal ([`SocketSignal`](crate::SocketSignal),
//! [`EventFdSignal`](crate::EventFdSignal)) owns no thread. A task waiting
//! on one has the signal's fd watched by a [`Reactor`], chosen when the
//! signal is made:
//!
//! - [`Driver`]: one thread of ours, an epoll loop serving any number of
//!   fds; [`Driver::shared`] is the default, started the first time a task
//!   waits on a signal that was given no other reactor.
//! - `TokioReactor` (feature `tokio`): the fds go to a tokio runtime's
//!   reactor (`AsyncFd`); no thread of ours at all.
//! - `AsyncIoReactor` (feature `async-io`): the fds go to async-io's
//!   reactor, which smol and async-std use.
//! - [`ExternalReactor`]: your own loop watches the fd (the signal is
//!   [`AsFd`](std::os::fd::AsFd)) and polls the queue again when it is
//!   readable; or implement [`Reactor`] and [`FdWatch`] over your loop.
//!
//! Blocking calls (the `_blocking` methods, [`Signal::wait`](crate::Signal::wait))
//! need no reactor: they poll the signal's fd in the calling thread.

mod driver;
mod external;

#[cfg(feature = "async-io")]
mod async_io;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "async-io")]
pub use self::async_io::AsyncIoReactor;
#[cfg(feature = "tokio")]
pub use self::tokio::TokioReactor;
pub use driver::Driver;
pub use external::ExternalReactor;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Something that watches fds for readability on behalf of tasks: the
/// event loop an fd-backed signal hands its fd to.
pub trait Reactor: Send + Sync + std::fmt::Debug + 'static {
    /// Starts watching `fd`, which stays open as long as the returned watch
    /// lives; dropping the watch stops watching it.
    fn watch(&self, fd: Arc<OwnedFd>) -> io::Result<Box<dyn FdWatch>>;
}

/// One fd watched by a [`Reactor`].
pub trait FdWatch: Send + Sync + std::fmt::Debug {
    /// `Ready` if the fd may have become readable since this last returned
    /// `Ready` (or since the watch began); otherwise arranges for `cx`'s
    /// waker to be woken when it does.
    ///
    /// A spurious `Ready` is harmless (the signal reads the fd without
    /// waiting and finds nothing); a missed one is a lost wake-up.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}
