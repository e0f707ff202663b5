//! Signals between two ends in one process.

use super::{Notifier, Signal};
use std::sync::Arc;

/// One end of an in-process signal pair: signalling the peer wakes whatever
/// waits on the peer's [`Notifier`]; dropping an end closes it for the peer.
///
/// ```
/// use vmbus_channel::{InProcessSignal, Signal};
/// let (host, guest) = InProcessSignal::pair();
/// let seen = guest.notifier().generation();
/// host.signal_peer();
/// assert_eq!(guest.notifier().generation(), seen + 1);
/// drop(host);
/// assert!(guest.notifier().is_closed());
/// ```
#[derive(Debug)]
pub struct InProcessSignal {
    ours: Arc<Notifier>,
    theirs: Arc<Notifier>,
}

impl InProcessSignal {
    /// Two connected ends.
    pub fn pair() -> (Self, Self) {
        let a = Arc::new(Notifier::new());
        let b = Arc::new(Notifier::new());
        (Self { ours: a.clone(), theirs: b.clone() }, Self { ours: b, theirs: a })
    }
}

impl Signal for InProcessSignal {
    fn signal_peer(&self) {
        self.theirs.notify();
    }

    fn notifier(&self) -> &Notifier {
        &self.ours
    }

    fn close(&self) {
        self.theirs.close();
    }
}

impl Drop for InProcessSignal {
    fn drop(&mut self) {
        self.close();
    }
}
