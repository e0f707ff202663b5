//! Requests and their completions: matched by transaction id whatever the
//! order, bounded in number, robust against a peer's unknown or repeated
//! ids, abandoned requests, and a peer that goes away.

mod common;

use common::{assert_payload, counting_waker, payload, poll_once, queues, spawn, InProcessQueue, Rng, DEADLINE, PAGE};
use std::collections::{HashMap, VecDeque};
use std::task::Poll;
use std::time::Instant;
use vmbus_channel::{block_on, connected_pair, ChannelError, Completion, Packet, Queue};
use vmbus_ring::{OutgoingPacket, PacketKind};

/// A host queue that matches transactions (at most `limit`) and a plain guest.
fn pair(limit: usize) -> (InProcessQueue, InProcessQueue) {
    let (host, guest) = connected_pair(4 * PAGE).unwrap();
    (Queue::with_transactions(host, limit), Queue::new(guest))
}

/// Sends a request with payload `body` from `queue`.
fn request(queue: &mut InProcessQueue, body: &[u8]) -> Completion {
    block_on(queue.writer_mut().request(&OutgoingPacket::in_band(0), &[body])).unwrap()
}

/// The guest's view of a request: completion requested, an in-band packet.
fn read_request(guest: &mut InProcessQueue) -> Packet {
    let packet = guest.reader_mut().try_read().unwrap().expect("a request was sent");
    assert_eq!(packet.header.kind, PacketKind::InBand);
    assert!(packet.header.completion_requested, "requests ask for a completion");
    packet
}

fn complete(guest: &mut InProcessQueue, id: u64, body: &[u8]) {
    guest.writer_mut().try_write(&OutgoingPacket::completion(id), &[body]).unwrap();
}

#[test]
fn out_of_order_completions_resolve_the_right_requests() {
    let (mut host, mut guest) = pair(8);
    let mut completions = Vec::new();
    for n in 0..6u64 {
        completions.push((n, request(&mut host, payload(n, 10 + n as usize))));
    }
    let mut requests = Vec::new();
    for (n, completion) in &completions {
        let packet = read_request(&mut guest);
        assert_eq!(packet.header.transaction_id, completion.transaction_id(), "the id the guest sees");
        assert_payload(&packet.payload, payload(*n, 10 + *n as usize));
        requests.push((packet.header.transaction_id, *n));
    }
    Rng::new(4).shuffle(&mut requests);
    for &(id, n) in &requests {
        complete(&mut guest, id, payload(100 + n, 3 + n as usize));
    }
    // Every packet the guest sent is a completion: the host's reader routes
    // them all and hands none to the caller.
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_eq!(host.state().counters.packets_received, 6);
    for (n, completion) in completions {
        assert_payload(&block_on(completion).unwrap(), payload(100 + n, 3 + n as usize));
    }
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn request_ids_are_distinct_and_nonzero() {
    let (mut host, mut guest) = pair(64);
    let completions: Vec<Completion> = (0..64).map(|n| request(&mut host, payload(n, 8))).collect();
    let mut ids: Vec<u64> = completions.iter().map(Completion::transaction_id).collect();
    assert!(ids.iter().all(|&id| id != 0));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 64, "ids of outstanding requests are distinct");
    // The caller's transaction id is replaced by the queue's.
    for completion in &completions {
        assert_eq!(read_request(&mut guest).header.transaction_id, completion.transaction_id());
    }
}

#[test]
fn completion_payloads_of_every_length_arrive_exactly() {
    let (mut host, mut guest) = pair(4);
    for len in [0, 1, 7, 8, 9, 255, 4000] {
        let completion = request(&mut host, b"");
        let id = read_request(&mut guest).header.transaction_id;
        complete(&mut guest, id, payload(len as u64, len));
        assert_eq!(host.reader_mut().try_read(), Ok(None));
        assert_payload(&block_on(completion).unwrap(), payload(len as u64, len));
    }
}

#[test]
fn unknown_completion_id_is_reported_and_the_queue_keeps_working() {
    let (mut host, mut guest) = pair(4);
    let pending = request(&mut host, b"req");
    let id = read_request(&mut guest).header.transaction_id;
    for bogus in [0, id + 1000, u64::MAX] {
        complete(&mut guest, bogus, b"forged");
        assert_eq!(host.reader_mut().try_read(), Err(ChannelError::UnknownTransaction(bogus)));
    }
    assert_eq!(host.writer_mut().outstanding_transactions(), 1, "the real request is untouched");
    // The forged completions were consumed; ordinary traffic and the real
    // completion still flow.
    guest.writer_mut().try_write(&OutgoingPacket::in_band(5), &[b"data"]).unwrap();
    let packet = host.reader_mut().try_read().unwrap().expect("the in-band packet after the bad completions");
    assert_payload(&packet.payload, b"data");
    complete(&mut guest, id, b"real");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_payload(&block_on(pending).unwrap(), b"real");
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn unknown_completion_fails_an_async_read_too() {
    let (mut host, mut guest) = pair(4);
    complete(&mut guest, 42, b"");
    assert_eq!(host.reader_mut().read_blocking(), Err(ChannelError::UnknownTransaction(42)));
    guest.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"next"]).unwrap();
    assert_payload(&host.reader_mut().read_blocking().unwrap().payload, b"next");
}

#[test]
fn repeated_completion_is_dropped_and_counted() {
    let (mut host, mut guest) = pair(4);
    // Repeated after the first was taken by the request's future.
    let completion = request(&mut host, b"a");
    let id = read_request(&mut guest).header.transaction_id;
    complete(&mut guest, id, b"first");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_payload(&block_on(completion).unwrap(), b"first");
    complete(&mut guest, id, b"again");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_eq!(host.state().counters.stale_completions, 1);

    // Repeated before the future looked: the first completion wins.
    let completion = request(&mut host, b"b");
    let id = read_request(&mut guest).header.transaction_id;
    complete(&mut guest, id, b"winner");
    complete(&mut guest, id, b"duplicate");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_payload(&block_on(completion).unwrap(), b"winner");
    assert_eq!(host.state().counters.stale_completions, 2);
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn outstanding_limit_rejects_extra_requests_until_one_completes() {
    let (mut host, mut guest) = pair(3);
    let mut completions: Vec<Completion> = (0..3).map(|n| request(&mut host, payload(n, 16))).collect();
    assert_eq!(host.writer_mut().outstanding_transactions(), 3);
    let refused = block_on(host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"fourth"]));
    assert_eq!(refused.err(), Some(ChannelError::TooManyTransactions { limit: 3 }));
    assert_eq!(host.state().counters.packets_sent, 3, "a refused request is not sent");
    assert_eq!(host.writer_mut().outstanding_transactions(), 3);

    let ids: Vec<u64> = (0..3).map(|_| read_request(&mut guest).header.transaction_id).collect();
    assert_eq!(guest.reader_mut().try_read(), Ok(None));
    complete(&mut guest, ids[1], b"second");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    assert_payload(&block_on(completions.remove(1)).unwrap(), b"second");
    assert_eq!(host.writer_mut().outstanding_transactions(), 2);

    let fourth = request(&mut host, b"fourth");
    assert_payload(&read_request(&mut guest).payload, b"fourth");
    for (id, completion) in
        [ids[0], ids[2], fourth.transaction_id()].into_iter().zip(completions.into_iter().chain([fourth]))
    {
        complete(&mut guest, id, &id.to_le_bytes());
        assert_eq!(host.reader_mut().try_read(), Ok(None));
        assert_eq!(block_on(completion).unwrap(), id.to_le_bytes());
    }
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn abandoned_requests_free_their_slots_at_once() {
    // A limit of 4 and four requests given up (dropped, as a timeout does):
    // the next request still goes out, and the late completions are dropped
    // and counted, never delivered to another request.
    let (mut host, mut guest) = pair(4);
    let abandoned: Vec<u64> = (0..4)
        .map(|n| {
            let completion = request(&mut host, payload(n, 8));
            completion.transaction_id()
        })
        .collect();
    assert_eq!(host.writer_mut().outstanding_transactions(), 0, "dropping a completion frees its slot");
    let next = request(&mut host, b"next");
    let next_id = next.transaction_id();
    assert!(!abandoned.contains(&next_id), "ids of abandoned requests are not reused");

    for &id in &abandoned {
        assert_eq!(read_request(&mut guest).header.transaction_id, id);
        complete(&mut guest, id, b"late");
    }
    assert_eq!(read_request(&mut guest).header.transaction_id, next_id);
    complete(&mut guest, next_id, b"ok");
    assert_eq!(host.reader_mut().try_read(), Ok(None), "late completions are not errors");
    assert_eq!(host.state().counters.stale_completions, 4);
    assert_payload(&block_on(next).unwrap(), b"ok");
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn dropping_a_completed_but_unread_completion_frees_its_slot() {
    let (mut host, mut guest) = pair(2);
    let completion = request(&mut host, b"x");
    let id = read_request(&mut guest).header.transaction_id;
    complete(&mut guest, id, b"result");
    assert_eq!(host.reader_mut().try_read(), Ok(None));
    drop(completion);
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
}

#[test]
fn thousands_of_scrambled_transactions_leave_nothing_outstanding() {
    const COUNT: u64 = 3000;
    const LIMIT: usize = 16;
    let (mut host, mut guest) = pair(LIMIT);
    let mut rng = Rng::new(77);
    let mut in_flight: HashMap<u64, (u64, Completion)> = HashMap::new();
    let mut unanswered: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut sent, mut done) = (0u64, 0u64);
    while done < COUNT {
        // Fill up to the limit; each request carries its number and padding.
        while sent < COUNT && in_flight.len() < LIMIT {
            let body = [&sent.to_le_bytes()[..], payload(sent, rng.up_to(300))].concat();
            let completion = request(&mut host, &body);
            in_flight.insert(completion.transaction_id(), (sent, completion));
            sent += 1;
        }
        assert_eq!(host.writer_mut().outstanding_transactions(), in_flight.len());
        while let Some(packet) = guest.reader_mut().try_read().unwrap() {
            unanswered.push((packet.header.transaction_id, packet.payload[..8].to_vec()));
        }
        // Answer a random subset in a random order; the rest wait for a later round.
        rng.shuffle(&mut unanswered);
        let answered: Vec<_> = unanswered.drain(..1 + rng.up_to(unanswered.len() - 1)).collect();
        for (id, number) in &answered {
            complete(&mut guest, *id, number);
        }
        assert_eq!(host.reader_mut().try_read(), Ok(None));
        for (id, number) in answered {
            let (n, completion) = in_flight.remove(&id).expect("the guest answered an id the host issued");
            assert_eq!(number, n.to_le_bytes());
            assert_eq!(block_on(completion).unwrap(), n.to_le_bytes());
            done += 1;
        }
    }
    assert!(in_flight.is_empty() && unanswered.is_empty());
    assert_eq!(host.writer_mut().outstanding_transactions(), 0, "no transaction leaked");
    assert_eq!(host.state().counters.packets_sent, COUNT);
    assert_eq!(host.state().counters.packets_received, COUNT);
}

#[test]
fn completions_resolve_across_threads() {
    const COUNT: u64 = 2000;
    let (host, guest) = pair(4);
    let deadline = Instant::now() + DEADLINE;
    let (mut host_reader, mut host_writer) = host.split();
    // The host's reader routes completions until the guest goes away.
    let pump = spawn("host reader", move || {
        let outcome = host_reader.read_blocking();
        (outcome, host_reader)
    });
    // The guest answers every request, in batches and in reverse order.
    let responder = spawn("guest", move || {
        let mut guest = guest;
        let mut answered = 0;
        while answered < COUNT {
            let mut ids = Vec::new();
            block_on(guest.reader_mut().read_batch(4, |header, _| ids.push(header.transaction_id))).unwrap();
            for id in ids.into_iter().rev() {
                guest.writer_mut().write_blocking(&OutgoingPacket::completion(id), &[&(id * 3).to_le_bytes()]).unwrap();
                answered += 1;
            }
        }
        // Dropping the guest ends the host reader's wait with Closed.
    });
    let mut in_flight = VecDeque::new();
    for n in 0..COUNT {
        if in_flight.len() == 4 {
            let (id, completion): (u64, Completion) = in_flight.pop_front().unwrap();
            assert_eq!(block_on(completion).unwrap(), (id * 3).to_le_bytes());
        }
        let completion = block_on(host_writer.request(&OutgoingPacket::in_band(n), &[&n.to_le_bytes()])).unwrap();
        in_flight.push_back((completion.transaction_id(), completion));
    }
    for (id, completion) in in_flight {
        assert_eq!(block_on(completion).unwrap(), (id * 3).to_le_bytes());
    }
    assert_eq!(host_writer.outstanding_transactions(), 0);
    responder.join_by(deadline);
    let (outcome, _host_reader) = pump.join_by(deadline);
    assert_eq!(outcome, Err(ChannelError::Closed), "only completions came, then the guest closed");
}

#[test]
fn pending_completion_fails_with_closed_when_the_peer_drops() {
    let (mut host, mut guest) = pair(4);
    let answered = request(&mut host, b"a");
    let pending = request(&mut host, b"b");
    let first_id = read_request(&mut guest).header.transaction_id;
    complete(&mut guest, first_id, b"answered before the close");
    let (mut reader, mut writer) = host.split();
    // A reader blocked in another thread; a waiter on the pending completion
    // in a third. Dropping the guest must wake both.
    let blocked_reader = spawn("blocked reader", move || (reader.read_blocking(), reader));
    let blocked_waiter = spawn("completion waiter", move || block_on(pending));
    drop(guest);
    let (read, _reader) = blocked_reader.join();
    assert_eq!(read, Err(ChannelError::Closed));
    assert_eq!(blocked_waiter.join(), Err(ChannelError::Closed));
    // A completion that arrived before the close is still delivered.
    assert_payload(&block_on(answered).unwrap(), b"answered before the close");
    assert_eq!(writer.outstanding_transactions(), 0);
    let after = block_on(writer.request(&OutgoingPacket::in_band(0), &[b"late"]));
    assert_eq!(after.err(), Some(ChannelError::Closed));
    assert_eq!(writer.outstanding_transactions(), 0);
}

#[test]
fn dropping_the_requesting_queue_fails_its_pending_completions() {
    let (mut host, _guest) = pair(4);
    let pending = request(&mut host, b"a");
    let (waker, woken) = counting_waker();
    let mut pending = Box::pin(pending);
    assert!(poll_once(&mut pending, &waker).is_pending());
    drop(host);
    assert_eq!(woken.get(), 1, "the waiting task is woken");
    assert_eq!(poll_once(&mut pending, &waker), Poll::Ready(Err(ChannelError::Closed)));
}

#[test]
fn request_on_a_queue_without_transactions_is_refused() {
    let (mut host, mut guest) = queues(PAGE);
    let refused = block_on(host.writer_mut().request(&OutgoingPacket::in_band(0), &[b"x"]));
    assert_eq!(refused.map(|_| ()), Err(ChannelError::TransactionsDisabled));
    assert_eq!(host.writer_mut().outstanding_transactions(), 0);
    assert_eq!(guest.reader_mut().try_read(), Ok(None), "nothing was sent");
}

#[test]
fn request_cancelled_while_waiting_for_space_releases_its_slot() {
    let (host, guest) = connected_pair(PAGE).unwrap();
    let mut host = Queue::with_transactions(host, 1);
    let fill = payload(0, 1000);
    while host.writer_mut().try_write(&OutgoingPacket::in_band(0), &[fill]).is_ok() {}
    let (waker, _) = counting_waker();
    let (packet, body) = (OutgoingPacket::in_band(0), [fill]);
    let mut cancelled = Box::pin(host.writer_mut().request(&packet, &body));
    assert!(poll_once(&mut cancelled, &waker).is_pending(), "the ring is full");
    drop(cancelled);
    assert_eq!(host.writer_mut().outstanding_transactions(), 0, "the request was never sent");
    // With the ring drained, a new request must be possible (limit 1).
    let mut guest = Queue::new(guest);
    while guest.reader_mut().try_read().unwrap().is_some() {}
    assert!(block_on(host.writer_mut().request(&packet, &body)).is_ok());
}

/// An unknown completion met after other packets of a batch were handled
/// is reported by the next read, not lost with the batch.
#[test]
fn unknown_completion_inside_a_batch_is_reported() {
    let (mut host, mut guest) = pair(4);
    guest.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"before"]).unwrap();
    complete(&mut guest, 999, b"forged");
    guest.writer_mut().try_write(&OutgoingPacket::in_band(2), &[b"after"]).unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let mut ids = Vec::new();
        let outcome = host.reader_mut().try_read_batch(8, |header, _| ids.push(header.transaction_id));
        outcomes.push((outcome, ids));
    }
    let expected =
        [(Ok(1), vec![1]), (Err(ChannelError::UnknownTransaction(999)), vec![]), (Ok(1), vec![2]), (Ok(0), vec![])];
    assert_eq!(outcomes, expected, "packets before the bad completion, the error, then the packets after it");
}

#[test]
fn dropping_the_reader_half_fails_pending_completions() {
    let (host, _guest) = connected_pair(PAGE).unwrap();
    let (reader, mut writer) = Queue::with_transactions(host, 4).split();
    let completion = block_on(writer.request(&OutgoingPacket::in_band(0), &[b"lost"])).unwrap();
    drop(reader);
    assert_eq!(block_on(completion), Err(ChannelError::Closed), "no reader, so no completion can arrive");
    assert_eq!(writer.outstanding_transactions(), 0);
    let refused = block_on(writer.request(&OutgoingPacket::in_band(0), &[b"more"]));
    assert_eq!(refused.map(|_| ()), Err(ChannelError::Closed));
}
