//! The `tracing` events (feature `tracing`): each situation a VMM's log
//! must show emits its event, with the fields that say what happened, and
//! a healthy exchange emits none.
#![cfg(feature = "tracing")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmbus_channel::{connected_pair, ChannelError, InProcessSignal, Queue, RawChannel};
use vmbus_ring::{ControlPage, ControlWord, FlatRingMem, OutgoingPacket};

/// Everything the subscriber wrote, one line per event.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with a subscriber that records every event of this thread,
/// `DEBUG` and up; returns the lines. What `body` returns is dropped after
/// the subscriber is gone (channel ends whose drop would log).
fn events_of<T>(body: impl FnOnce() -> T) -> Vec<String> {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .finish();
    let _unlogged = tracing::subscriber::with_default(subscriber, body);
    let bytes = log.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap().lines().map(str::to_owned).collect()
}

fn only<'a>(lines: &'a [String], needle: &str) -> &'a String {
    let found: Vec<_> = lines.iter().filter(|line| line.contains(needle)).collect();
    assert_eq!(found.len(), 1, "one event with {needle:?} in {lines:#?}");
    found[0]
}

#[test]
fn a_healthy_exchange_emits_nothing() {
    let lines = events_of(|| {
        let (host, guest) = connected_pair(4096).unwrap();
        let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
        for n in 0..100 {
            host.writer_mut().try_write(&OutgoingPacket::in_band(n), &[b"ping"]).unwrap();
            assert!(guest.reader_mut().try_read().unwrap().is_some());
        }
        (host, guest)
    });
    assert!(lines.is_empty(), "{lines:#?}");
}

#[test]
fn a_corrupt_incoming_ring_is_a_warning_naming_the_field() {
    let lines = events_of(|| {
        let (to_host, to_guest) = (FlatRingMem::new(4096).unwrap(), FlatRingMem::new(4096).unwrap());
        let (signal, _peer) = InProcessSignal::pair();
        let mut host = Queue::new(RawChannel::new(to_host.clone(), to_guest, signal).unwrap());
        to_host.store(ControlWord::WriteIndex, 13, std::sync::atomic::Ordering::Release);
        assert!(matches!(host.reader_mut().try_read(), Err(ChannelError::Corrupt(_))));
        host
    });
    let line = only(&lines, "corrupt ring");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("ring=\"incoming\"") && line.contains("value=13"), "{line}");
    assert!(line.contains("field=write index"), "{line}");
}

#[test]
fn the_peer_closing_is_logged_once() {
    let lines = events_of(|| {
        let (host, guest) = connected_pair(4096).unwrap();
        let mut host = Queue::new(host);
        drop(guest);
        assert_eq!(host.reader_mut().try_read(), Err(ChannelError::Closed));
        assert_eq!(host.reader_mut().try_read(), Err(ChannelError::Closed));
        host
    });
    assert!(only(&lines, "peer closed the channel").contains("INFO"));
}

#[test]
fn a_writer_blocked_on_a_full_ring_is_logged_once_per_wait() {
    let lines = events_of(|| {
        let (host, guest) = connected_pair(4096).unwrap();
        let mut host = Queue::new(host);
        let payload = [0u8; 1000];
        while host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[&payload]).is_ok() {}
        let soon = Instant::now() + Duration::from_millis(20);
        let result = host.writer_mut().write_batch_blocking(&[(OutgoingPacket::in_band(2), &[&payload])], Some(soon));
        assert_eq!(result, Err(ChannelError::TimedOut));
        (host, guest)
    });
    let line = only(&lines, "writer waits for room");
    assert!(line.contains("DEBUG") && line.contains("needed="), "{line}");
}

#[test]
fn an_unstick_signal_is_logged() {
    let lines = events_of(|| {
        let (host, guest) = connected_pair(4096).unwrap();
        let mut host = Queue::new(host);
        host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"unread"]).unwrap();
        assert!(host.unstick().unwrap());
        (host, guest)
    });
    let line = only(&lines, "stuck channel");
    assert!(line.contains("INFO") && line.contains("ring=\"outgoing\""), "{line}");
}

#[test]
fn a_request_given_up_and_its_late_completion_are_logged() {
    let lines = events_of(|| {
        let (host, guest) = connected_pair(4096).unwrap();
        let (mut host, mut guest) = (Queue::with_transactions(host, 4), Queue::new(guest));
        let completion = vmbus_channel::block_on(host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"ask"]));
        let id = completion.unwrap().transaction_id();
        // Dropping the completion gives the request up.
        let request = guest.reader_mut().try_read().unwrap().unwrap();
        guest.writer_mut().try_write(&OutgoingPacket::completion(request.header.transaction_id), &[b"late"]).unwrap();
        assert_eq!(host.reader_mut().try_read(), Ok(None));
        assert_eq!(host.state().counters.stale_completions, 1, "transaction {id}");
        (host, guest)
    });
    assert!(only(&lines, "request given up").contains("transaction_id=1"));
    assert!(only(&lines, "stale completions dropped").contains("count=1"));
}

#[test]
fn a_corrupt_outgoing_ring_found_by_try_write_is_a_warning() {
    let lines = events_of(|| {
        let (to_host, to_guest) = (FlatRingMem::new(4096).unwrap(), FlatRingMem::new(4096).unwrap());
        let (signal, peer) = InProcessSignal::pair();
        let mut host = Queue::new(RawChannel::new(to_host, to_guest.clone(), signal).unwrap());
        let payload = [0u8; 3000];
        host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[&payload]).unwrap();
        // The peer moves the read index past what this end has written; the
        // next write needs room, so it looks.
        to_guest.store(ControlWord::ReadIndex, 4000, std::sync::atomic::Ordering::Release);
        let result = host.writer_mut().try_write(&OutgoingPacket::in_band(2), &[&payload]);
        assert!(matches!(result, Err(ChannelError::Corrupt(_))), "{result:?}");
        (host, peer)
    });
    let line = only(&lines, "corrupt ring");
    assert!(line.contains("WARN") && line.contains("ring=\"outgoing\"") && line.contains("field=read index"), "{line}");
}
