//! Signals between the two ends: a signal moves the peer's generation, a
//! waiter never misses a signal sent before it started waiting, async
//! waiters are woken, and a dropped end closes its peer. For the in-process
//! and (on Linux) the eventfd implementation, and a queue over eventfds.

mod common;

use common::{counting_waker, spawn, DEADLINE};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use vmbus_channel::{block_on, InProcessSignal, Notifier, PeerEvent, Signal};

/// Waits on `signal` through `poll_signal` under `block_on`: the async path.
fn wait_async(signal: &impl Signal, seen: u64) -> PeerEvent {
    block_on(poll_fn(|cx| signal.poll_signal(cx, seen))).unwrap()
}

/// Waits on `signal` in this thread: the blocking path.
fn wait_blocking(signal: &impl Signal, seen: u64) -> PeerEvent {
    signal.wait(seen, None).expect("no deadline")
}

/// Two threads bounce `rounds` signals between `a` and `b`, each waiting for
/// the other's signal before sending the next one, through `wait` (blocking)
/// or `poll_wait` (async). A lost wakeup leaves both waiting: the deadline
/// turns that into a failure.
fn ping_pong<S: Signal>(a: S, b: S, rounds: u64, blocking: bool) {
    let deadline = Instant::now() + DEADLINE;
    let wait = move |signal: &S, seen: u64| {
        if blocking {
            wait_blocking(signal, seen)
        } else {
            wait_async(signal, seen)
        }
    };
    let ponger = spawn("pong", move || {
        for round in 0..rounds {
            wait(&b, round);
            assert_eq!(b.notifier().generation(), round + 1, "exactly one signal per ping");
            b.signal_peer();
        }
        b
    });
    let pinger = spawn("ping", move || {
        for round in 0..rounds {
            a.signal_peer();
            wait(&a, round);
            assert_eq!(a.notifier().generation(), round + 1, "exactly one signal per pong");
        }
        a
    });
    let a = pinger.join_by(deadline);
    let b = ponger.join_by(deadline);
    assert!(!a.notifier().is_closed() && !b.notifier().is_closed());
}

// ---------------------------------------------------------------------------
// In-process signals and the notifier
// ---------------------------------------------------------------------------

#[test]
fn signal_peer_moves_only_the_peers_generation() {
    let (a, b) = InProcessSignal::pair();
    for n in 1..=5 {
        a.signal_peer();
        assert_eq!(b.notifier().generation(), n);
        assert_eq!(a.notifier().generation(), 0, "signalling does not notify oneself");
    }
    b.signal_peer();
    assert_eq!((a.notifier().generation(), b.notifier().generation()), (1, 5));
    assert!(!a.notifier().is_closed() && !b.notifier().is_closed());
}

#[test]
fn wait_returns_for_a_signal_sent_before_the_wait_started() {
    let (a, b) = InProcessSignal::pair();
    let seen = b.notifier().generation();
    a.signal_peer(); // between reading `seen` and waiting: must not be lost
    let b = common::bounded("waiter", move || {
        b.notifier().wait(seen);
        b
    });
    assert_eq!(b.notifier().generation(), seen + 1);
    // A stale `seen` returns at once as well, however many signals passed.
    a.signal_peer();
    a.signal_peer();
    common::bounded("stale waiter", move || b.notifier().wait(seen));
}

#[test]
fn blocking_ping_pong_loses_no_wakeup() {
    let (a, b) = InProcessSignal::pair();
    ping_pong(a, b, 10_000, true);
}

#[test]
fn async_ping_pong_loses_no_wakeup() {
    let (a, b) = InProcessSignal::pair();
    ping_pong(a, b, 10_000, false);
}

#[test]
fn poll_wait_registers_the_waker_once_and_a_signal_wakes_it() {
    let (a, b) = InProcessSignal::pair();
    let (waker, woken) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let seen = b.notifier().generation();
    assert_eq!(b.notifier().poll_wait(&mut cx, seen), Poll::Pending);
    assert_eq!(b.notifier().poll_wait(&mut cx, seen), Poll::Pending, "polled again: still nothing new");
    assert_eq!(woken.get(), 0);
    a.signal_peer();
    assert_eq!(woken.get(), 1, "woken once, though it polled twice");
    assert_eq!(b.notifier().poll_wait(&mut cx, seen), Poll::Ready(PeerEvent::Signalled));
    // A wake consumes the registration: the next signal wakes only a waker
    // that registered again.
    a.signal_peer();
    assert_eq!(woken.get(), 1);
    let seen = b.notifier().generation();
    assert_eq!(b.notifier().poll_wait(&mut cx, seen), Poll::Pending);
    a.signal_peer();
    assert_eq!(woken.get(), 2);
}

#[test]
fn poll_wait_wakes_every_registered_waiter() {
    let (a, b) = InProcessSignal::pair();
    let wakers: Vec<_> = (0..5).map(|_| counting_waker()).collect();
    let seen = b.notifier().generation();
    for (waker, _) in &wakers {
        assert!(b.notifier().poll_wait(&mut Context::from_waker(waker), seen).is_pending());
    }
    a.signal_peer();
    assert!(wakers.iter().all(|(_, woken)| woken.get() == 1), "a reader and a writer half share a notifier");
}

#[test]
fn poll_wait_is_ready_at_once_for_a_signal_sent_before_it() {
    let (a, b) = InProcessSignal::pair();
    let (waker, woken) = counting_waker();
    let seen = b.notifier().generation();
    a.signal_peer();
    assert_eq!(b.notifier().poll_wait(&mut Context::from_waker(&waker), seen), Poll::Ready(PeerEvent::Signalled));
    a.signal_peer();
    assert_eq!(woken.get(), 0, "a ready poll registers nothing");
}

#[test]
fn dropping_an_end_closes_the_peers_notifier_and_wakes_its_waiters() {
    let (a, b) = InProcessSignal::pair();
    let b = Arc::new(b);
    let seen = b.notifier().generation();
    let (waker, woken) = counting_waker();
    assert!(b.notifier().poll_wait(&mut Context::from_waker(&waker), seen).is_pending());
    let blocked = {
        let b = b.clone();
        spawn("blocked waiter", move || b.notifier().wait(seen))
    };
    assert!(!b.notifier().is_closed());
    drop(a);
    assert!(b.notifier().is_closed());
    assert_eq!(woken.get(), 1, "the async waiter is woken by the close");
    blocked.join(); // and the blocked thread returns
    assert_eq!(b.notifier().generation(), seen, "closing is not a signal");
    // Once closed, every wait is over at once, whatever `seen` is.
    assert_eq!(b.notifier().poll_wait(&mut Context::from_waker(&waker), seen), Poll::Ready(PeerEvent::Closed));
    assert_eq!(b.notifier().wait(b.notifier().generation()), PeerEvent::Closed);
}

#[test]
fn close_is_one_sided_and_idempotent() {
    let (a, b) = InProcessSignal::pair();
    a.close();
    a.close();
    assert!(b.notifier().is_closed(), "closing tells the peer");
    assert!(!a.notifier().is_closed(), "not oneself: the peer may still be there");
    b.signal_peer();
    assert_eq!(a.notifier().generation(), 1, "the peer can still signal a closed end");
    drop(a); // dropping after an explicit close is fine
    assert!(b.notifier().is_closed());
}

#[test]
fn a_standalone_notifier_counts_and_closes() {
    let notifier = Notifier::new();
    assert_eq!((notifier.generation(), notifier.is_closed()), (0, false));
    notifier.notify();
    notifier.notify();
    assert_eq!(notifier.generation(), 2);
    notifier.wait(1);
    notifier.close();
    notifier.close();
    assert!(notifier.is_closed());
    notifier.wait(2);
}

// ---------------------------------------------------------------------------
// Eventfd signals (Linux)
// ---------------------------------------------------------------------------

#[cfg(target_os = "linux")]
mod eventfd {
    use super::*;
    use common::{assert_payload, payload, sizes, PAGE};
    use vmbus_channel::{ChannelError, EventFdSignal, Queue, RawChannel};
    use vmbus_ring::{FlatRingMem, GpaRangeBuf, OutgoingPacket, OwnedPacketKind, PacketKind, TransferPageRange};

    fn pair() -> (EventFdSignal, EventFdSignal) {
        EventFdSignal::pair().unwrap()
    }

    type EventFdQueue = Queue<FlatRingMem, EventFdSignal>;

    /// Two queues in one process over heap rings of `data_len` bytes and
    /// eventfd signals, and the guest's signal (to tell it the host is gone).
    fn queues(data_len: usize) -> (EventFdQueue, EventFdQueue, Arc<EventFdSignal>) {
        let host_to_guest = FlatRingMem::new(data_len).unwrap();
        let guest_to_host = FlatRingMem::new(data_len).unwrap();
        let (host_signal, guest_signal) = pair();
        let host = RawChannel::new(guest_to_host.clone(), host_to_guest.clone(), host_signal).unwrap();
        let guest = RawChannel::new(host_to_guest, guest_to_host, guest_signal).unwrap();
        let guest_signal = guest.signal().clone();
        (Queue::new(host), Queue::new(guest), guest_signal)
    }

    #[test]
    fn signal_reaches_the_peers_notifier() {
        let (a, b) = pair();
        let seen = b.notifier().generation();
        a.signal_peer();
        let b = common::bounded("waiter", move || {
            assert_eq!(wait_blocking(&b, seen), PeerEvent::Signalled);
            b
        });
        assert!(b.notifier().generation() > seen);
        a.receive();
        assert_eq!(a.notifier().generation(), 0, "signalling does not notify oneself");
        assert!(!b.notifier().is_closed());
    }

    #[test]
    fn writing_the_exposed_eventfd_signals_the_peer() {
        // What an irqfd/ioeventfd does: write the counter directly.
        let (a, b) = pair();
        let seen = b.notifier().generation();
        rustix::io::write(a.to_peer_fd(), &1u64.to_ne_bytes()).unwrap();
        let b = common::bounded("waiter", move || {
            assert_eq!(wait_async(&b, seen), PeerEvent::Signalled);
            b
        });
        assert!(b.notifier().generation() > seen);
        drop(a);
    }

    #[test]
    fn blocking_ping_pong_loses_no_wakeup() {
        let (a, b) = pair();
        ping_pong(a, b, 2_000, true);
    }

    #[test]
    fn async_ping_pong_loses_no_wakeup() {
        let (a, b) = pair();
        ping_pong(a, b, 2_000, false);
    }

    #[test]
    fn peer_closed_wakes_blocked_and_async_waiters() {
        let (a, b) = pair();
        let b = Arc::new(b);
        let seen = b.notifier().generation();
        let blocked = {
            let b = b.clone();
            spawn("blocked waiter", move || wait_blocking(&*b, seen))
        };
        let async_blocked = {
            let b = b.clone();
            spawn("async waiter", move || wait_async(&*b, seen))
        };
        drop(a);
        b.peer_closed();
        assert_eq!(blocked.join(), PeerEvent::Closed);
        assert_eq!(async_blocked.join(), PeerEvent::Closed);
        assert!(b.notifier().is_closed());
        assert_eq!(b.notifier().generation(), seen, "closing is not a signal");
    }

    #[test]
    fn queue_over_eventfds_carries_every_packet_type_both_ways() {
        let (mut host, mut guest, _) = queues(2 * PAGE);
        let pages = [TransferPageRange::new(300, 4096), TransferPageRange::new(7, 0)];
        let mut gpa = GpaRangeBuf::new();
        gpa.push(12, 9000, &[40, 41, 42]).unwrap();
        let packets = [
            OutgoingPacket::in_band(1).with_completion_requested(),
            OutgoingPacket::completion(2),
            OutgoingPacket::transfer_pages(3, 9, true, &pages),
            OutgoingPacket::gpa_direct(4, gpa.ranges()),
        ];
        for (forward, packet) in [true, false].into_iter().flat_map(|dir| packets.iter().map(move |p| (dir, p))) {
            let body = payload(packet.transaction_id, 10 * packet.transaction_id as usize + 3);
            let (from, to) = if forward { (&mut host, &mut guest) } else { (&mut guest, &mut host) };
            from.writer_mut().write_blocking(packet, &[body]).unwrap();
            let received = to.reader_mut().read_blocking().unwrap();
            assert_eq!(received.header.transaction_id, packet.transaction_id);
            assert_eq!(received.header.completion_requested, packet.completion_requested);
            match (&received.kind, packet.transaction_id) {
                (OwnedPacketKind::InBand, 1) | (OwnedPacketKind::Completion, 2) => {}
                (OwnedPacketKind::TransferPages { set_id, sender_owns_set, ranges }, 3) => {
                    assert_eq!((*set_id, *sender_owns_set, ranges.as_slice()), (9, true, &pages[..]));
                }
                (OwnedPacketKind::GpaDirect(got), 4) => assert_eq!(got, &gpa),
                (kind, id) => panic!("packet {id} arrived as {kind:?}"),
            }
            assert_payload(&received.payload, body);
        }
    }

    /// An echo server over eventfds: the guest sends back every packet; the
    /// host's writer and reader run on their own threads through one-page
    /// rings, so both directions fill and wait on eventfd signals, two
    /// threads blocking on one signal at once. The host's end of stream
    /// (`peer_closed`, as a VMM would say it) ends the guest's loop.
    #[test]
    fn echo_over_eventfds_with_back_pressure_then_close() {
        const COUNT: usize = 5_000;
        let (host, guest, guest_signal) = queues(PAGE);
        let deadline = Instant::now() + DEADLINE;
        let lengths = Arc::new(sizes(41, COUNT, 1500));
        let echo = spawn("guest echo", move || {
            let mut guest = guest;
            let mut echoed = 0;
            loop {
                match guest.reader_mut().read_blocking() {
                    Ok(packet) => {
                        let id = packet.header.transaction_id;
                        guest.writer_mut().write_blocking(&OutgoingPacket::completion(id), &[&packet.payload]).unwrap();
                        echoed += 1;
                    }
                    Err(ChannelError::Closed) => break echoed,
                    Err(error) => panic!("guest read failed: {error}"),
                }
            }
        });
        let (mut reader, mut writer) = host.split();
        let writer_lengths = lengths.clone();
        let sender = spawn("host writer", move || {
            for (seq, &len) in writer_lengths.iter().enumerate() {
                writer.write_blocking(&OutgoingPacket::in_band(seq as u64), &[payload(seq as u64, len)]).unwrap();
            }
            writer
        });
        let receiver = spawn("host reader", move || {
            for (seq, &len) in lengths.iter().enumerate() {
                let packet = reader.read_blocking().unwrap();
                assert_eq!(packet.header.kind, PacketKind::Completion);
                assert_eq!(packet.header.transaction_id, seq as u64, "echoes out of order");
                // The echo carries the padded payload, padded again: same bytes.
                assert_payload(&packet.payload, payload(seq as u64, len));
            }
            reader
        });
        let reader = receiver.join_by(deadline);
        let writer = sender.join_by(deadline);
        let counters = reader.counters();
        assert_eq!((counters.packets_sent, counters.packets_received), (COUNT as u64, COUNT as u64));
        assert!(counters.signals_received > 0);
        drop((reader, writer));
        guest_signal.peer_closed();
        assert_eq!(echo.join_by(deadline), COUNT, "the guest echoed everything, then saw the close");
    }
}

#[test]
fn wakers_of_abandoned_waits_do_not_pile_up() {
    let notifier = Notifier::new();
    let seen = notifier.generation();
    let (first, first_wakes) = counting_waker();
    assert!(notifier.poll_wait(&mut Context::from_waker(&first), seen).is_pending());
    // Many waits that are then abandoned, each with its own waker.
    let mut abandoned = Vec::new();
    for _ in 0..10_000 {
        let (waker, count) = counting_waker();
        assert!(notifier.poll_wait(&mut Context::from_waker(&waker), seen).is_pending());
        abandoned.push(count);
    }
    // The earliest were woken early instead of being kept forever...
    assert!(first_wakes.get() >= 1, "old wakers are released, not accumulated");
    // ...and a signal still wakes the most recent waiter.
    notifier.notify();
    assert!(abandoned.last().unwrap().get() >= 1);
}
