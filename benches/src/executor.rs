//! A small executor for the fan-in benchmark: many tasks on the calling
//! thread, each polled only when its waker was woken, the thread parked while
//! none was.
//!
//! What an executor must do and no more: a ready list that wakers push
//! their task onto (once until it is polled), and an unpark of the
//! executor's thread, which costs a system call only if the thread sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// A task: a future borrowing what it works on.
pub type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// What a run did, summed over the runs of one [`Executor`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Polls of a task.
    pub polls: u64,
    /// Times the thread parked with nothing to poll.
    pub parks: u64,
}

/// Tasks on the calling thread: made with [`new`](Self::new), polled once
/// each with [`poll_all`](Self::poll_all), then run to completion with
/// [`run`](Self::run).
pub struct Executor<'a> {
    tasks: Vec<Option<Task<'a>>>,
    wakers: Vec<(Arc<TaskWaker>, Waker)>,
    ready: Arc<Ready>,
    left: usize,
    batch: Vec<usize>,
    /// Polls and parks so far.
    pub stats: Stats,
}

struct Ready {
    ids: Mutex<Vec<usize>>,
    thread: Thread,
}

struct TaskWaker {
    id: usize,
    /// On the ready list, not yet polled.
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.ids.lock().expect("the ready list").push(self.id);
            self.ready.thread.unpark();
        }
    }
}

impl<'a> Executor<'a> {
    /// An executor of `tasks`, to be run on the calling thread; all of them
    /// start ready.
    pub fn new(tasks: Vec<Task<'a>>) -> Self {
        let ready = Arc::new(Ready { ids: Mutex::new((0..tasks.len()).collect()), thread: thread::current() });
        let wakers = (0..tasks.len())
            .map(|id| {
                let waker = Arc::new(TaskWaker { id, queued: AtomicBool::new(true), ready: ready.clone() });
                (waker.clone(), Waker::from(waker))
            })
            .collect();
        let left = tasks.len();
        Self {
            tasks: tasks.into_iter().map(Some).collect(),
            wakers,
            ready,
            left,
            batch: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Polls every ready task once; returns how many are left unfinished.
    pub fn poll_all(&mut self) -> usize {
        std::mem::swap(&mut self.batch, &mut *self.ready.ids.lock().expect("the ready list"));
        let mut batch = std::mem::take(&mut self.batch);
        for id in batch.drain(..) {
            self.poll(id);
        }
        self.batch = batch;
        self.left
    }

    /// Polls woken tasks until all are done, parking the thread while none
    /// is ready; gives up at `deadline` and returns how many are left.
    pub fn run(&mut self, deadline: Instant) -> usize {
        while self.left > 0 {
            if self.ready.ids.lock().expect("the ready list").is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                self.stats.parks += 1;
                thread::park_timeout(deadline - now);
                continue;
            }
            self.poll_all();
        }
        self.left
    }

    fn poll(&mut self, id: usize) {
        let (handle, waker) = &self.wakers[id];
        handle.queued.store(false, Ordering::Release);
        let Some(task) = &mut self.tasks[id] else { return };
        self.stats.polls += 1;
        if task.as_mut().poll(&mut Context::from_waker(waker)).is_ready() {
            self.tasks[id] = None;
            self.left -= 1;
        }
    }
}
