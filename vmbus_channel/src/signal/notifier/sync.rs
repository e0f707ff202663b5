//! The lock, condition variable and atomics the [`Notifier`](super::Notifier)
//! is built on: parking_lot's and std's, re-exported as they are; or, built
//! with `RUSTFLAGS="--cfg vmbus_channel_loom"`, loom's in parking_lot's shape, so that the
//! loom model (`loom_model.rs`) checks the notifier's own code.
//!
//! Under loom a deadline wait is a wait with no deadline (loom has no
//! clock): it never times out. The model waits without deadlines.

#[cfg(not(vmbus_channel_loom))]
pub(super) use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(vmbus_channel_loom))]
pub(super) use std::sync::atomic::{AtomicBool, AtomicU64};

#[cfg(vmbus_channel_loom)]
pub(super) use self::loom_shaped::{Condvar, Mutex, MutexGuard};
#[cfg(vmbus_channel_loom)]
pub(super) use loom::sync::atomic::{AtomicBool, AtomicU64};

#[cfg(vmbus_channel_loom)]
mod loom_shaped {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    /// loom's mutex; `lock` returns the guard, as parking_lot's does.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    /// loom's guard, `None` only inside [`Condvar::wait`].
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().unwrap()
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().unwrap()
        }
    }

    /// loom's condition variable; waits take the guard by `&mut`, as
    /// parking_lot's do.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    /// A deadline wait under loom, which never times out.
    pub(crate) struct WaitTimeoutResult;

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            false
        }
    }

    impl Condvar {
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.0.take().unwrap();
            guard.0 = Some(self.0.wait(held).unwrap());
        }

        /// [`wait`](Self::wait): loom has no clock, so no deadline.
        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, _deadline: Instant) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
