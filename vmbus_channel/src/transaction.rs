//! Transactions: requests that ask for a completion, matched to the
//! completions the peer sends back by transaction id.

use crate::events;
use crate::ChannelError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The table of outstanding transactions, shared by a queue's two halves.
#[derive(Debug)]
pub(crate) struct Transactions {
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    next_id: u64,
    limit: usize,
    closed: bool,
    slots: HashMap<u64, Slot>,
}

#[derive(Debug)]
enum Slot {
    /// Waiting for the completion; the waker of the task awaiting it.
    Waiting(Option<Waker>),
    /// Completed; the completion's payload, not yet taken.
    Completed(Vec<u8>),
}

/// What became of a completion that names an id this queue issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// It went to its waiting request.
    Delivered,
    /// Its request was given up or already completed: dropped.
    Stale,
}

impl Transactions {
    pub fn new(limit: usize) -> Self {
        Self { table: Mutex::new(Table { next_id: 1, limit, closed: false, slots: HashMap::new() }) }
    }

    /// Reserves a fresh id, or fails if the limit is reached or the channel
    /// closed. Ids count up from 1 and are never reused (2^64 of them), so a
    /// late completion for a request given up cannot complete another.
    pub fn begin(&self) -> Result<u64, ChannelError> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(ChannelError::Closed);
        }
        if table.slots.len() >= table.limit {
            return Err(ChannelError::TooManyTransactions { limit: table.limit });
        }
        let id = table.next_id;
        table.next_id += 1;
        table.slots.insert(id, Slot::Waiting(None));
        Ok(id)
    }

    /// Releases an id: its request was never sent, or was given up.
    pub fn cancel(&self, id: u64) {
        if let Some(Slot::Waiting(_)) = self.table.lock().slots.remove(&id) {
            events::request_given_up(id);
        }
    }

    /// Delivers a completion. One for an id issued here but no longer
    /// outstanding (its request given up, or completed already) is dropped
    /// as [`Delivery::Stale`]; one for an id never issued is an error.
    pub fn complete(&self, id: u64, payload: Vec<u8>) -> Result<Delivery, ChannelError> {
        let mut table = self.table.lock();
        let issued = id != 0 && id < table.next_id;
        match table.slots.get_mut(&id) {
            Some(slot @ Slot::Waiting(_)) => {
                if let Slot::Waiting(Some(waker)) = std::mem::replace(slot, Slot::Completed(payload)) {
                    waker.wake();
                }
                Ok(Delivery::Delivered)
            }
            Some(Slot::Completed(_)) => Ok(Delivery::Stale),
            None if issued => Ok(Delivery::Stale),
            None => Err(ChannelError::UnknownTransaction(id)),
        }
    }

    /// Fails every outstanding transaction with [`ChannelError::Closed`]
    /// and frees their slots; completions already in keep their payloads
    /// until taken.
    pub fn close(&self) {
        let mut table = self.table.lock();
        table.closed = true;
        table.slots.retain(|_, slot| match slot {
            Slot::Waiting(waker) => {
                if let Some(waker) = waker.take() {
                    waker.wake();
                }
                false
            }
            Slot::Completed(_) => true,
        });
    }

    /// Transactions outstanding, completed ones not yet taken included.
    pub fn outstanding(&self) -> usize {
        self.table.lock().slots.len()
    }
}

/// The completion of a request: resolves with the completion's payload, or
/// [`ChannelError::Closed`] if the channel closes first.
///
/// Completions arrive through the queue's read half, so something must be
/// reading it. Dropping this future gives the request up and frees its slot
/// at once, so a request that timed out (wrap the future in your runtime's
/// timeout) never holds a slot: a completion that comes later is dropped
/// and counted in
/// [`QueueCounters::stale_completions`](crate::QueueCounters::stale_completions).
#[derive(Debug)]
#[must_use = "a completion does nothing unless awaited"]
pub struct Completion {
    transactions: Arc<Transactions>,
    id: u64,
    done: bool,
}

impl Completion {
    pub(crate) fn new(transactions: Arc<Transactions>, id: u64) -> Self {
        Self { transactions, id, done: false }
    }

    /// The request's transaction id.
    pub fn transaction_id(&self) -> u64 {
        self.id
    }
}

impl Future for Completion {
    type Output = Result<Vec<u8>, ChannelError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        let mut table = self.transactions.table.lock();
        let closed = table.closed;
        let result = match table.slots.remove(&id) {
            Some(Slot::Completed(payload)) => Ok(payload),
            Some(Slot::Waiting(_)) if !closed => {
                table.slots.insert(id, Slot::Waiting(Some(cx.waker().clone())));
                return Poll::Pending;
            }
            _ => Err(ChannelError::Closed),
        };
        drop(table);
        self.done = true;
        Poll::Ready(result)
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.transactions.cancel(self.id);
    }
}
