//! The packet queue as its users rely on it: every packet type arrives
//! intact, batches commit and signal once, halves work on separate threads,
//! a slow reader makes the writer wait instead of spin, and closing the
//! channel ends reads and writes without losing packets already sent.

mod common;

use common::{
    assert_in_band, assert_payload, counting_waker, hooked_pair, join2, padded, payload, poll_once, queues, sizes,
    spawn, InProcessQueue, Rng, DEADLINE, PAGE,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;
use vmbus_channel::{
    block_on, connected_pair, ChannelError, InProcessSignal, Packet, PacketWithPayload, Queue, RawChannel,
};
use vmbus_ring::{
    in_band_size, ControlPage, ControlWord, FlatRingMem, GpaRangeBuf, OutgoingPacket, OwnedPacketKind, PacketKind,
    RingMem, RingState, TransferPageRange, WriteError,
};

// ---------------------------------------------------------------------------
// Packet types, both ways
// ---------------------------------------------------------------------------

/// Payload lengths around the 8-byte padding boundary, and a large one.
const LENGTHS: [usize; 9] = [0, 1, 7, 8, 9, 15, 16, 100, 3000];

#[test]
fn in_band_packets_arrive_intact_both_ways() {
    let (mut host, mut guest) = queues(PAGE);
    for (seq, &len) in LENGTHS.iter().enumerate() {
        let seq = seq as u64 + 1;
        let bytes = payload(seq, len);
        // Host to guest, then guest to host, with and without the flag.
        let request = OutgoingPacket::in_band(seq).with_completion_requested();
        host.writer_mut().try_write(&request, &[bytes]).unwrap();
        let packet = guest.reader_mut().try_read().unwrap().expect("a packet was written");
        assert_eq!(packet.header.kind, PacketKind::InBand);
        assert_eq!(packet.header.transaction_id, seq);
        assert!(packet.header.completion_requested);
        assert_payload(&packet.payload, bytes);

        guest.writer_mut().try_write(&OutgoingPacket::in_band(!seq), &[bytes]).unwrap();
        let packet = host.reader_mut().try_read().unwrap().expect("a packet was written");
        assert_eq!(packet.header.transaction_id, !seq);
        assert!(!packet.header.completion_requested);
        assert_payload(&packet.payload, bytes);
    }
}

#[test]
fn payload_gather_list_arrives_concatenated() {
    let (mut host, mut guest) = queues(PAGE);
    block_on(host.writer_mut().write(&OutgoingPacket::in_band(1), &[b"head", b"", b"er:", b"body-bytes"])).unwrap();
    let packet = guest.reader_mut().try_read().unwrap().unwrap();
    assert_payload(&packet.payload, b"header:body-bytes");
}

#[test]
fn completions_reach_the_reader_of_a_queue_without_transactions() {
    let (mut host, mut guest) = queues(PAGE);
    for (id, &len) in LENGTHS.iter().enumerate() {
        let id = 1000 + id as u64;
        let bytes = payload(id, len);
        guest.writer_mut().try_write(&OutgoingPacket::completion(id), &[bytes]).unwrap();
        let packet = host.reader_mut().try_read().unwrap().expect("a completion was written");
        assert_eq!(packet.header.kind, PacketKind::Completion);
        assert_eq!(packet.header.transaction_id, id);
        assert_payload(&packet.payload, bytes);

        host.writer_mut().try_write(&OutgoingPacket::completion(id), &[bytes]).unwrap();
        let packet = guest.reader_mut().try_read().unwrap().unwrap();
        assert_eq!((packet.header.kind, packet.header.transaction_id), (PacketKind::Completion, id));
        assert_payload(&packet.payload, bytes);
    }
}

/// Writes `packet` host to guest (`forward`) or guest to host, and reads it.
fn round_trip(
    host: &mut InProcessQueue,
    guest: &mut InProcessQueue,
    forward: bool,
    packet: &OutgoingPacket<'_>,
    bytes: &[u8],
) -> Packet {
    let (from, to) = if forward { (host, guest) } else { (guest, host) };
    from.writer_mut().try_write(packet, &[bytes]).unwrap();
    to.reader_mut().try_read().unwrap().expect("a packet was written")
}

#[test]
fn transfer_page_packets_keep_set_and_ranges_both_ways() {
    let (mut host, mut guest) = queues(2 * PAGE);
    let ranges = [
        TransferPageRange::new(1, 0),
        TransferPageRange::new(4096, 4096),
        TransferPageRange::new(1500, 0x10_0000),
        TransferPageRange::new(u32::MAX, u32::MAX - 7),
    ];
    let cases: [(&[TransferPageRange], u16, bool, usize); 4] = [
        (&ranges[..1], 0, false, 0),
        (&ranges, 7, true, 13),
        (&ranges[1..], u16::MAX, false, 64),
        (&ranges, 1, true, 0),
    ];
    for (round, &(ranges, set_id, owns, len)) in cases.iter().enumerate() {
        let bytes = payload(round as u64, len);
        let packet = OutgoingPacket::transfer_pages(round as u64 + 50, set_id, owns, ranges);
        for forward in [true, false] {
            let received = round_trip(&mut host, &mut guest, forward, &packet, bytes);
            assert_eq!(received.header.transaction_id, round as u64 + 50);
            let OwnedPacketKind::TransferPages { set_id: got_set, sender_owns_set: got_owns, ranges: got } =
                &received.kind
            else {
                panic!("expected transfer pages, got {:?}", received.kind);
            };
            assert_eq!(*got_set, set_id);
            assert_eq!(*got_owns, owns);
            assert_eq!(got.as_slice(), ranges);
            assert_payload(&received.payload, bytes);
        }
    }
}

#[test]
fn gpa_direct_packets_keep_ranges_both_ways() {
    let (mut host, mut guest) = queues(2 * PAGE);
    let mut ranges = GpaRangeBuf::new();
    ranges.push(0, 4096, &[0x10]).unwrap();
    ranges.push(100, 5000, &[0x20, 0x21]).unwrap(); // spans two pages
    ranges.push_contiguous(0x7_0FF0, 32).unwrap(); // crosses a page boundary
    ranges.push(4095, 1, &[u64::MAX]).unwrap();
    let mut single = GpaRangeBuf::new();
    single.push(8, 8, &[3]).unwrap();
    for (round, (ranges, len)) in [(&ranges, 0), (&ranges, 21), (&single, 200)].into_iter().enumerate() {
        let bytes = payload(round as u64, len);
        let packet = OutgoingPacket::gpa_direct(round as u64 + 9, ranges.ranges()).with_completion_requested();
        for forward in [true, false] {
            let received = round_trip(&mut host, &mut guest, forward, &packet, bytes);
            assert_eq!(received.header.transaction_id, round as u64 + 9);
            assert!(received.header.completion_requested);
            let OwnedPacketKind::GpaDirect(got) = &received.kind else {
                panic!("expected GPA direct, got {:?}", received.kind);
            };
            assert_eq!(got, ranges);
            let got: Vec<_> = got
                .ranges()
                .iter()
                .map(|r| (r.byte_offset, r.byte_count, r.page_numbers().collect::<Vec<_>>()))
                .collect();
            let sent: Vec<_> = ranges
                .ranges()
                .iter()
                .map(|r| (r.byte_offset, r.byte_count, r.page_numbers().collect::<Vec<_>>()))
                .collect();
            assert_eq!(got, sent);
            assert_payload(&received.payload, bytes);
        }
    }
}

#[test]
fn mixed_packet_types_in_one_batch_arrive_in_order() {
    let (mut host, mut guest) = queues(PAGE);
    let pages = [TransferPageRange::new(64, 128)];
    let mut gpa = GpaRangeBuf::new();
    gpa.push_contiguous(0x1234_5000, 8192).unwrap();
    let bodies: Vec<&[u8]> = (0..4).map(|i| payload(i, 10 + i as usize)).collect();
    let pieces: Vec<[&[u8]; 1]> = bodies.iter().map(|&b| [b]).collect();
    let packets: [PacketWithPayload<'_>; 4] = [
        (OutgoingPacket::in_band(0), &pieces[0]),
        (OutgoingPacket::completion(1), &pieces[1]),
        (OutgoingPacket::transfer_pages(2, 4, false, &pages), &pieces[2]),
        (OutgoingPacket::gpa_direct(3, gpa.ranges()), &pieces[3]),
    ];
    block_on(host.writer_mut().write_batch(&packets)).unwrap();
    let mut kinds = Vec::new();
    for (id, body) in bodies.iter().enumerate() {
        let packet = guest.reader_mut().try_read().unwrap().expect("four packets were written");
        assert_eq!(packet.header.transaction_id, id as u64);
        assert_payload(&packet.payload, body);
        kinds.push(std::mem::discriminant(&packet.kind));
    }
    let expected = [
        OwnedPacketKind::InBand,
        OwnedPacketKind::Completion,
        OwnedPacketKind::TransferPages { set_id: 4, sender_owns_set: false, ranges: pages.to_vec() },
        OwnedPacketKind::GpaDirect(gpa.clone()),
    ];
    assert_eq!(kinds, expected.iter().map(std::mem::discriminant).collect::<Vec<_>>());
    assert_eq!(guest.reader_mut().try_read(), Ok(None));
}

#[test]
fn try_read_returns_none_on_an_empty_ring() {
    let (mut host, mut guest) = queues(PAGE);
    assert_eq!(guest.reader_mut().try_read(), Ok(None), "fresh ring");
    assert_eq!(guest.reader_mut().try_read_batch(10, |_, _| panic!("nothing to handle")), Ok(0));
    host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"x"]).unwrap();
    assert!(guest.reader_mut().try_read().unwrap().is_some());
    assert_eq!(guest.reader_mut().try_read(), Ok(None), "drained ring");
    assert_eq!(guest.state().counters.read_waits, 0, "try_read never waits");
}

#[test]
fn try_write_reports_full_with_needed_and_free_then_succeeds_after_a_read() {
    let (mut host, mut guest) = queues(PAGE);
    let bytes = payload(0, 1000);
    let mut written = 0u64;
    let full = loop {
        match host.writer_mut().try_write(&OutgoingPacket::in_band(written), &[bytes]) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 100, "a 4096-byte ring cannot take 100 packets of 1000 bytes");
    };
    assert_eq!(written, 3);
    let ChannelError::Full { needed, free } = full else { panic!("expected Full, got {full:?}") };
    assert_eq!(needed, in_band_size(1000));
    assert_eq!(free, PAGE - 8 - 3 * in_band_size(1000));
    assert!(free < needed);
    assert_eq!(host.state().outgoing.bytes_free, Some(free as u32));
    // The failed write left nothing behind; freeing one packet makes room.
    let first = guest.reader_mut().try_read().unwrap().unwrap();
    assert_eq!(first.header.transaction_id, 0);
    assert_payload(&first.payload, bytes);
    host.writer_mut().try_write(&OutgoingPacket::in_band(3), &[bytes]).unwrap();
    for seq in 1..=3 {
        let packet = guest.reader_mut().try_read().unwrap().unwrap();
        assert_eq!(packet.header.transaction_id, seq);
        assert_payload(&packet.payload, bytes);
    }
    assert_eq!(guest.reader_mut().try_read(), Ok(None));
}

#[test]
fn packet_larger_than_the_ring_fails_instead_of_waiting() {
    let (mut host, _guest) = queues(PAGE);
    let huge = vec![0; PAGE];
    let outcome = block_on(host.writer_mut().write(&OutgoingPacket::in_band(1), &[&huge]));
    assert!(
        matches!(outcome, Err(ChannelError::Write(WriteError::TooLarge { max: 4088, .. }))),
        "expected TooLarge, got {outcome:?}"
    );
    assert_eq!(host.state().counters.write_waits, 0);
    // The largest packet that fits does go through on an empty ring.
    let max_payload = 4088 - in_band_size(0);
    block_on(host.writer_mut().write(&OutgoingPacket::in_band(2), &[&huge[..max_payload]])).unwrap();
}

#[test]
fn unsupported_packet_types_are_skipped_and_counted() {
    // A well-formed type-8 (data using GPADL) packet placed in the ring by a
    // peer, followed by an in-band packet written through the queue.
    let guest_to_host = FlatRingMem::new(PAGE).unwrap();
    let host_to_guest = FlatRingMem::new(PAGE).unwrap();
    let mut raw = Vec::new();
    raw.extend_from_slice(&8u16.to_le_bytes()); // type
    raw.extend_from_slice(&2u16.to_le_bytes()); // data_offset8
    raw.extend_from_slice(&2u16.to_le_bytes()); // length8
    raw.extend_from_slice(&0u16.to_le_bytes()); // flags
    raw.extend_from_slice(&77u64.to_le_bytes()); // transaction id
    raw.extend_from_slice(&0u64.to_le_bytes()); // footer: started at offset 0
    guest_to_host.write_data(0, &raw);
    guest_to_host.store(ControlWord::WriteIndex, raw.len() as u32, Ordering::Release);
    let (host_signal, guest_signal) = InProcessSignal::pair();
    let mut host = Queue::new(RawChannel::new(guest_to_host.clone(), host_to_guest.clone(), host_signal).unwrap());
    let mut guest = Queue::new(RawChannel::new(host_to_guest, guest_to_host, guest_signal).unwrap());

    guest.writer_mut().try_write(&OutgoingPacket::in_band(5), &[b"after"]).unwrap();
    let packet = host.reader_mut().try_read().unwrap().expect("the in-band packet after the unsupported one");
    assert_eq!(packet.header.transaction_id, 5);
    assert_payload(&packet.payload, b"after");
    let counters = host.state().counters;
    assert_eq!(counters.unsupported_skipped, 1);
    assert_eq!(counters.packets_received, 1);
    assert_eq!(host.state().incoming.bytes_used, Some(0), "the skipped packet's space was freed too");
}

#[test]
fn payload_in_the_ring_reads_at_offsets_and_rejects_overruns() {
    let (mut host, mut guest) = queues(PAGE);
    let bytes = payload(1, 21);
    host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[bytes]).unwrap();
    let handled = guest
        .reader_mut()
        .try_read_batch(1, |_, payload| {
            assert_eq!(payload.len(), 24);
            assert!(!payload.is_empty());
            let mut middle = [0; 5];
            payload.read_at(10, &mut middle).unwrap();
            assert_eq!(middle, bytes[10..15]);
            let mut tail = [0xFF; 3];
            payload.read_at(21, &mut tail).unwrap();
            assert_eq!(tail, [0; 3], "padding reads as zeros");
            let mut over = [0; 4];
            assert!(payload.read_at(21, &mut over).is_err(), "past the padded payload");
            assert!(payload.read_at(usize::MAX, &mut over).is_err());
        })
        .unwrap();
    assert_eq!(handled, 1);
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

#[test]
fn read_batch_returns_at_most_max_and_frees_with_one_commit() {
    let (host, guest) = connected_pair(PAGE).unwrap();
    let ring = guest.outgoing().memory().clone(); // the ring the host reads
    let (mut host, mut guest) = (Queue::new(host), Queue::new(guest));
    for seq in 0..10 {
        guest.writer_mut().try_write(&OutgoingPacket::in_band(seq), &[payload(seq, 40)]).unwrap();
    }
    let mut next = 0;
    for expected in [4, 4, 2] {
        let read_index_before = RingState::read(&ring).read_index;
        let handled = block_on(host.reader_mut().read_batch(4, |header, body| {
            assert_eq!(header.transaction_id, next);
            assert_payload(&body.to_vec(), payload(next, 40));
            assert_eq!(RingState::read(&ring).read_index, read_index_before, "nothing is freed inside a batch");
            next += 1;
        }))
        .unwrap();
        assert_eq!(handled, expected);
        let after = RingState::read(&ring).read_index;
        assert_eq!(after as usize, read_index_before as usize + expected * in_band_size(40), "one commit per batch");
    }
    assert_eq!(host.reader_mut().try_read_batch(4, |_, _| panic!("ring is drained")), Ok(0));
}

#[test]
fn read_batch_signals_a_waiting_writer_once_when_space_crosses_its_need() {
    let (mut host, guest) = queues(PAGE);
    let (guest_reader, mut guest_writer) = guest.split();
    let small = payload(0, 200);
    let mut seq = 0;
    while guest_writer.try_write(&OutgoingPacket::in_band(seq), &[small]).is_ok() {
        seq += 1;
    }
    let big = payload(99, 1000);
    let needed = in_band_size(1000);
    let (waker, woken) = counting_waker();
    let (packet, body) = (OutgoingPacket::in_band(seq), [big]);
    let mut write = Box::pin(guest_writer.write(&packet, &body));
    assert!(poll_once(&mut write, &waker).is_pending(), "the ring is full");
    assert_eq!(host.state().incoming.pending_send_size as usize, needed, "the writer announced what it needs");

    let mut signals = 0;
    while let Some(free) = host.state().incoming.bytes_free {
        let before = host.reader_mut().counters().signals_sent;
        let handled = host.reader_mut().try_read_batch(2, |_, _| {}).unwrap();
        let sent = host.reader_mut().counters().signals_sent - before;
        assert!(sent <= 1, "a batch signals at most once, sent {sent}");
        signals += sent;
        let now_free = host.state().incoming.bytes_free.unwrap() as usize;
        let crossed = free as usize >= needed || now_free >= needed;
        assert_eq!(woken.get() > 0, crossed, "woken exactly once the free space reached the need ({now_free} free)");
        if handled == 0 {
            break;
        }
    }
    assert_eq!(signals, 1, "one signal for the one crossing");
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_once(&mut write, &waker), Poll::Ready(Ok(())));
    drop(write);
    assert_eq!(host.state().incoming.pending_send_size, 0, "cleared once the write went through");
    let counters = guest_reader.counters();
    assert_eq!((counters.ring_full, counters.write_waits), (1, 1));
    let packet = host.reader_mut().try_read().unwrap().unwrap();
    assert_eq!(packet.header.transaction_id, seq);
    assert_payload(&packet.payload, big);
}

#[test]
fn write_batch_into_an_empty_ring_signals_once_and_arrives_in_order() {
    let (mut host, mut guest) = queues(PAGE);
    let bodies: Vec<&[u8]> = (0..40).map(|seq| payload(seq, seq as usize)).collect();
    let pieces: Vec<[&[u8]; 1]> = bodies.iter().map(|&b| [b]).collect();
    let packets: Vec<PacketWithPayload<'_>> =
        pieces.iter().enumerate().map(|(seq, piece)| (OutgoingPacket::in_band(seq as u64), &piece[..])).collect();

    block_on(host.writer_mut().write_batch(&packets)).unwrap();
    assert_eq!(host.state().counters.signals_sent, 1, "one signal for the whole batch");
    assert_eq!(host.state().counters.packets_sent, 40);
    assert_eq!(guest.state().counters.signals_received, 1);

    // A second batch into the still non-empty ring needs no signal.
    block_on(host.writer_mut().write_batch(&packets[..5])).unwrap();
    assert_eq!(host.state().counters.signals_sent, 1, "the reader has unread packets: no signal");

    for seq in (0..40).chain(0..5) {
        assert_in_band(&guest.reader_mut().try_read().unwrap().expect("45 packets were written"), seq, seq as usize);
    }
    assert_eq!(guest.reader_mut().try_read(), Ok(None));
}

#[test]
fn write_batch_larger_than_the_ring_completes_while_a_reader_drains_on_the_same_thread() {
    const COUNT: usize = 300;
    let (host, guest) = queues(PAGE);
    let (_host_reader, mut writer) = host.split();
    let (mut reader, _guest_writer) = guest.split();
    let lengths = sizes(3, COUNT, 700);
    let bodies: Vec<&[u8]> = lengths.iter().enumerate().map(|(seq, &len)| payload(seq as u64, len)).collect();
    let pieces: Vec<[&[u8]; 1]> = bodies.iter().map(|&b| [b]).collect();
    let packets: Vec<PacketWithPayload<'_>> =
        pieces.iter().enumerate().map(|(seq, piece)| (OutgoingPacket::in_band(seq as u64), &piece[..])).collect();

    let write = async { writer.write_batch(&packets).await };
    let read = async {
        let mut next = 0;
        while next < COUNT {
            reader
                .read_batch(5, |header, body| {
                    assert_eq!(header.transaction_id, next as u64);
                    assert_payload(&body.to_vec(), bodies[next]);
                    next += 1;
                })
                .await?;
        }
        Ok::<_, ChannelError>(next)
    };
    let (written, read) = join2(write, read);
    written.unwrap();
    assert_eq!(read.unwrap(), COUNT);
    let counters = writer.counters();
    assert_eq!(counters.packets_sent, COUNT as u64);
    assert!(counters.ring_full > 0 && counters.write_waits > 0, "a 4096-byte ring had to fill: {counters:?}");
}

// ---------------------------------------------------------------------------
// Halves on threads
// ---------------------------------------------------------------------------

#[test]
fn split_halves_on_two_threads_deliver_everything_in_order() {
    const COUNT: usize = 20_000;
    let lengths = Arc::new(sizes(11, COUNT, 1500));
    let (host, guest) = queues(2 * PAGE);
    let deadline = Instant::now() + DEADLINE;
    let (host_reader, mut writer) = host.split();
    let (mut reader, guest_writer) = guest.split();

    let writer_lengths = lengths.clone();
    let writer_thread = spawn("writer", move || {
        for (seq, &len) in writer_lengths.iter().enumerate() {
            writer.write_blocking(&OutgoingPacket::in_band(seq as u64), &[payload(seq as u64, len)]).unwrap();
        }
        writer
    });
    let reader_thread = spawn("reader", move || {
        for (seq, &len) in lengths.iter().enumerate() {
            assert_in_band(&reader.read_blocking().unwrap(), seq as u64, len);
        }
        assert_eq!(reader.try_read(), Ok(None), "nothing beyond what was sent");
        reader
    });
    let reader = reader_thread.join_by(deadline);
    let writer = writer_thread.join_by(deadline);
    assert_eq!(writer.counters().packets_sent, COUNT as u64);
    assert_eq!(reader.counters().packets_received, COUNT as u64);
    drop((host_reader, guest_writer));
}

#[test]
fn full_duplex_on_four_threads_delivers_both_directions_in_order() {
    const COUNT: usize = 10_000;
    let (host, guest) = queues(PAGE);
    let deadline = Instant::now() + DEADLINE;
    let (host_reader, host_writer) = host.split();
    let (guest_reader, guest_writer) = guest.split();
    let host_lengths = Arc::new(sizes(21, COUNT, 1200));
    let guest_lengths = Arc::new(sizes(22, COUNT, 1200));

    let send = |name: &str, mut writer: vmbus_channel::QueueWriter<_, _>, lengths: Arc<Vec<usize>>, base: u64| {
        spawn(name, move || {
            for (seq, &len) in lengths.iter().enumerate() {
                let seq = base + seq as u64;
                writer.write_blocking(&OutgoingPacket::in_band(seq), &[payload(seq, len)]).unwrap();
            }
            writer
        })
    };
    let receive = |name: &str, mut reader: vmbus_channel::QueueReader<_, _>, lengths: Arc<Vec<usize>>, base: u64| {
        spawn(name, move || {
            for (seq, &len) in lengths.iter().enumerate() {
                assert_in_band(&reader.read_blocking().unwrap(), base + seq as u64, len);
            }
            reader
        })
    };
    let threads = (
        send("host writer", host_writer, host_lengths.clone(), 0),
        send("guest writer", guest_writer, guest_lengths.clone(), 1 << 32),
        receive("guest reader", guest_reader, host_lengths, 0),
        receive("host reader", host_reader, guest_lengths, 1 << 32),
    );
    let guest_reader = threads.2.join_by(deadline);
    let host_reader = threads.3.join_by(deadline);
    let (host_writer, guest_writer) = (threads.0.join_by(deadline), threads.1.join_by(deadline));
    let (host, guest) = (host_reader.counters(), guest_reader.counters());
    assert_eq!((host.packets_sent, host.packets_received), (COUNT as u64, COUNT as u64));
    assert_eq!((guest.packets_sent, guest.packets_received), (COUNT as u64, COUNT as u64));
    drop((host_writer, guest_writer));
}

// ---------------------------------------------------------------------------
// Back-pressure
// ---------------------------------------------------------------------------

/// A one-page ring, 100,000 packets of 0..=2000 bytes, and a reader that
/// reads at most 3 packets a batch and hashes each payload several times:
/// the writer keeps finding the ring full and must wait for the reader's
/// signal rather than poll.
#[test]
fn slow_reader_makes_the_writer_wait_for_signals_instead_of_spinning() {
    const COUNT: usize = 100_000;
    let lengths = Arc::new(sizes(7, COUNT, 2000));
    let (host, guest) = queues(PAGE);
    let deadline = Instant::now() + DEADLINE;

    let writer_lengths = lengths.clone();
    let writer_thread = spawn("writer", move || {
        let mut host = host;
        let mut chunks = Rng::new(5);
        let mut seq = 0;
        while seq < COUNT {
            let end = (seq + 1 + chunks.up_to(15)).min(COUNT);
            let bodies: Vec<&[u8]> = (seq..end).map(|s| payload(s as u64, writer_lengths[s])).collect();
            let pieces: Vec<[&[u8]; 1]> = bodies.iter().map(|&b| [b]).collect();
            let packets: Vec<PacketWithPayload<'_>> = pieces
                .iter()
                .enumerate()
                .map(|(i, piece)| (OutgoingPacket::in_band((seq + i) as u64), &piece[..]))
                .collect();
            block_on(host.writer_mut().write_batch(&packets)).unwrap();
            seq = end;
        }
        host // kept open until the reader is done
    });
    let reader_thread = spawn("reader", move || {
        let mut guest = guest;
        let mut next = 0;
        let mut digest = 0u64;
        while next < COUNT {
            let handled = block_on(guest.reader_mut().read_batch(3, |header, body| {
                let bytes = body.to_vec();
                assert_eq!(header.transaction_id, next as u64, "out of order");
                assert_payload(&bytes, payload(next as u64, lengths[next]));
                for round in 0..4u64 {
                    for &byte in &bytes {
                        digest = digest.rotate_left(7) ^ u64::from(byte) ^ round;
                    }
                }
                next += 1;
            }))
            .unwrap();
            assert!((1..=3).contains(&handled));
        }
        assert_eq!(guest.reader_mut().try_read(), Ok(None));
        (guest, std::hint::black_box(digest))
    });
    let (guest, _) = reader_thread.join_by(deadline);
    let host = writer_thread.join_by(deadline);
    let (writer, reader) = (host.state().counters, guest.state().counters);
    println!("writer {writer:?}\nreader {reader:?}");

    assert_eq!(writer.packets_sent, COUNT as u64);
    assert_eq!(reader.packets_received, COUNT as u64);
    assert!(writer.ring_full > 0, "the ring never filled: the test did not exercise back-pressure");
    assert!(writer.write_waits > 0, "the writer never waited");
    // Every wait ends with a wake; the only wakes are the reader's signals.
    assert!(
        writer.write_waits <= reader.signals_sent + 2,
        "the writer woke more often ({}) than the reader signalled ({}): it is spinning",
        writer.write_waits,
        reader.signals_sent
    );
    assert_eq!(writer.signals_received, reader.signals_sent);
    // The reader signals only a writer that found the ring full, once per
    // crossing; the writer signals only a reader that had caught up. A ring
    // holds about 3.5 of these packets, so about one signal each way per
    // ring-full is expected (~0.2-0.35 per packet); one per packet would
    // mean signalling per packet, not per batch.
    for (side, signals) in [("writer", writer.signals_sent), ("reader", reader.signals_sent)] {
        let per_packet = signals as f64 / COUNT as f64;
        assert!(per_packet < 0.5, "the {side} sent {per_packet:.3} signals per packet: signalling is not batched");
    }
}

// ---------------------------------------------------------------------------
// Close
// ---------------------------------------------------------------------------

#[test]
fn packets_sent_before_close_are_delivered_then_reads_fail_closed() {
    let (mut host, mut guest) = queues(PAGE);
    for seq in 0..5 {
        guest.writer_mut().try_write(&OutgoingPacket::in_band(seq), &[payload(seq, 100)]).unwrap();
    }
    drop(guest);
    for seq in 0..5 {
        assert_in_band(&host.reader_mut().read_blocking().unwrap(), seq, 100);
    }
    assert_eq!(host.reader_mut().read_blocking(), Err(ChannelError::Closed));
    assert_eq!(host.reader_mut().read_blocking(), Err(ChannelError::Closed), "and stays closed");
    assert_eq!(block_on(host.reader_mut().read_batch(8, |_, _| {})), Err(ChannelError::Closed));
}

#[test]
fn non_waiting_reads_deliver_what_was_sent_then_fail_closed() {
    let (mut host, mut guest) = queues(PAGE);
    assert_eq!(host.reader_mut().try_read(), Ok(None), "open and empty");
    for seq in 0..3 {
        guest.writer_mut().try_write(&OutgoingPacket::in_band(seq), &[payload(seq, 40)]).unwrap();
    }
    drop(guest);
    assert_in_band(&host.reader_mut().try_read().unwrap().expect("sent before the close"), 0, 40);
    let mut seen = Vec::new();
    let read = host.reader_mut().try_read_batch(8, |packet, _| seen.push(packet.transaction_id));
    assert_eq!((read, seen), (Ok(2), vec![1, 2]), "the rest, in one batch");
    assert_eq!(host.reader_mut().try_read(), Err(ChannelError::Closed));
    assert_eq!(host.reader_mut().try_read_batch(8, |_, _| {}), Err(ChannelError::Closed), "and stays closed");
}

#[test]
fn a_read_of_no_packets_does_not_report_a_close_before_the_ring_is_drained() {
    let (mut host, mut guest) = queues(PAGE);
    guest.writer_mut().try_write(&OutgoingPacket::in_band(7), &[payload(7, 16)]).unwrap();
    drop(guest);
    assert_eq!(host.reader_mut().try_read_batch(0, |_, _| {}), Ok(0), "asked for nothing");
    assert_in_band(&host.reader_mut().try_read().unwrap().expect("sent before the close"), 7, 16);
    assert_eq!(host.reader_mut().try_read(), Err(ChannelError::Closed));
}

#[test]
fn dropping_the_peer_queue_wakes_a_reader_blocked_in_another_thread() {
    let (host, guest) = queues(PAGE);
    let (mut reader, writer) = host.split();
    let (guest_reader, mut guest_writer) = guest.split();
    guest_writer.try_write(&OutgoingPacket::in_band(1), &[b"first"]).unwrap();
    let blocked = spawn("blocked reader", move || {
        let first = reader.read_blocking();
        let second = reader.read_blocking(); // blocks until the drop below
        (first, second, reader)
    });
    // Dropping both halves of the guest end closes the channel. Whether the
    // reader is already waiting or not, it must finish.
    drop(guest_writer);
    drop(guest_reader);
    let (first, second, reader) = blocked.join();
    assert_payload(&first.unwrap().payload, b"first");
    assert_eq!(second, Err(ChannelError::Closed));
    drop((reader, writer));
}

#[test]
fn dropping_a_peer_raw_channel_wakes_a_blocked_reader() {
    let (host, guest) = connected_pair(PAGE).unwrap();
    let mut host = Queue::new(host);
    let blocked = spawn("blocked reader", move || host.reader_mut().read_blocking());
    drop(guest); // never wrapped in a queue
    assert_eq!(blocked.join(), Err(ChannelError::Closed));
}

#[test]
fn writes_fail_with_closed_once_the_peer_is_gone() {
    let (mut host, guest) = queues(PAGE);
    drop(guest);
    let packet = OutgoingPacket::in_band(1);
    assert_eq!(host.writer_mut().try_write(&packet, &[b"x"]), Err(ChannelError::Closed));
    assert_eq!(host.writer_mut().write_blocking(&packet, &[b"x"]), Err(ChannelError::Closed));
    assert_eq!(block_on(host.writer_mut().write_batch(&[(packet, &[b"x"])])), Err(ChannelError::Closed));
    assert_eq!(host.state().counters.packets_sent, 0);
}

#[test]
fn dropping_the_peer_wakes_a_writer_blocked_on_a_full_ring() {
    let (host, guest) = queues(PAGE);
    let (reader, mut writer) = host.split();
    let fill = payload(0, 1000);
    while writer.try_write(&OutgoingPacket::in_band(0), &[fill]).is_ok() {}
    let blocked = spawn("blocked writer", move || {
        let outcome = writer.write_blocking(&OutgoingPacket::in_band(1), &[fill]);
        (outcome, writer)
    });
    drop(guest);
    let (outcome, _writer) = blocked.join();
    assert_eq!(outcome, Err(ChannelError::Closed));
    drop(reader);
}

/// Systematic interleavings: the peer writes a packet (and signals as the
/// rules say) at each point where the reader consults its notifier. The
/// reader must either return the packet or have been woken: never sleep
/// with a packet in the ring.
#[test]
fn reader_never_sleeps_on_a_packet_the_peer_wrote_at_any_step() {
    for step in 1..=16 {
        let (host, guest, hook) = hooked_pair(PAGE);
        let mut host = Queue::new(host);
        let guest = Arc::new(parking_lot::Mutex::new(guest));
        let peer = guest.clone();
        hook.arm(step, move || {
            let mut guest = peer.lock();
            if guest.outgoing_mut().write(&OutgoingPacket::in_band(7), &[b"racing"]).unwrap() {
                vmbus_channel::Signal::signal_peer(&**guest.signal());
            }
        });
        let (waker, woken) = counting_waker();
        let mut read = Box::pin(host.reader_mut().read());
        let mut seen_wakes = 0;
        let outcome = loop {
            match poll_once(&mut read, &waker) {
                Poll::Ready(outcome) => break Some(outcome),
                Poll::Pending if woken.get() > seen_wakes => seen_wakes = woken.get(),
                Poll::Pending => break None,
            }
        };
        drop(read);
        match outcome {
            Some(packet) => assert_payload(&packet.unwrap().payload, b"racing"),
            None if hook.fired() => panic!("step {step}: the reader sleeps, unwoken, with a packet in the ring"),
            // The reader went to sleep before reaching this step: every step is covered.
            None => {
                assert!(step > 2, "the hook must have run at the steps before and after the ring check");
                break;
            }
        }
    }
}

/// The same for a writer waiting for space: the peer frees the ring (and
/// signals as the rules say) at each point where the writer consults its
/// notifier. The write must complete or the writer must have been woken.
#[test]
fn writer_never_sleeps_on_space_the_reader_freed_at_any_step() {
    for step in 1..=16 {
        let (host, guest, hook) = hooked_pair(PAGE);
        let mut host = Queue::new(host);
        let fill = payload(0, 1000);
        while host.writer_mut().try_write(&OutgoingPacket::in_band(0), &[fill]).is_ok() {}
        let guest = Arc::new(parking_lot::Mutex::new(guest));
        let peer = guest.clone();
        hook.arm(step, move || {
            let mut guest = peer.lock();
            let mut batch = guest.incoming_mut().read_batch();
            while let Ok(Some(_)) = batch.next() {}
            if batch.commit() {
                vmbus_channel::Signal::signal_peer(&**guest.signal());
            }
        });
        let (waker, woken) = counting_waker();
        let (packet, body) = (OutgoingPacket::in_band(1), [fill]);
        let mut write = Box::pin(host.writer_mut().write(&packet, &body));
        let mut seen_wakes = 0;
        let outcome = loop {
            match poll_once(&mut write, &waker) {
                Poll::Ready(outcome) => break Some(outcome),
                Poll::Pending if woken.get() > seen_wakes => seen_wakes = woken.get(),
                Poll::Pending => break None,
            }
        };
        drop(write);
        match outcome {
            Some(outcome) => assert_eq!(outcome, Ok(())),
            None if hook.fired() => panic!("step {step}: the writer sleeps, unwoken, with the ring empty"),
            None => {
                assert!(step > 3, "the hook must have run before and after the pending send size was set");
                break;
            }
        }
    }
}

/// The peer writes a packet and then closes, at each point where the reader
/// consults its notifier. The packet was committed before the close, so the
/// reader must deliver it before reporting `Closed`.
#[test]
fn packet_committed_just_before_close_is_delivered_before_closed() {
    for step in 1..=16 {
        let (host, guest, hook) = hooked_pair(PAGE);
        let mut host = Queue::new(host);
        let guest = Arc::new(parking_lot::Mutex::new(Some(guest)));
        let peer = guest.clone();
        hook.arm(step, move || {
            let mut guest = peer.lock().take().unwrap();
            if guest.outgoing_mut().write(&OutgoingPacket::in_band(7), &[b"last"]).unwrap() {
                vmbus_channel::Signal::signal_peer(&**guest.signal());
            }
            drop(guest); // closes the channel
        });
        let (waker, woken) = counting_waker();
        let mut read = Box::pin(host.reader_mut().read());
        let mut seen_wakes = 0;
        let outcome = loop {
            match poll_once(&mut read, &waker) {
                Poll::Ready(outcome) => break Some(outcome),
                Poll::Pending if woken.get() > seen_wakes => seen_wakes = woken.get(),
                Poll::Pending => break None,
            }
        };
        drop(read);
        match outcome {
            Some(Ok(packet)) => assert_payload(&packet.payload, b"last"),
            Some(Err(error)) => {
                let left = host.state().incoming.bytes_used;
                panic!("step {step}: read() returned {error:?} with {left:?} bytes still in the ring")
            }
            None if hook.fired() => panic!("step {step}: the reader sleeps, unwoken, after the peer closed"),
            None => break,
        }
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[test]
fn state_reports_counters_and_ring_states_consistently() {
    let (mut host, mut guest) = queues(PAGE);
    let host_lengths = sizes(31, 200, 300);
    let guest_lengths = sizes(32, 150, 300);
    let (mut from_host, mut from_guest) = (0, 0);
    // Interleave writes and reads both ways, draining as the rings fill.
    while from_host < host_lengths.len() || from_guest < guest_lengths.len() {
        for _ in 0..3 {
            if let Some(&len) = host_lengths.get(from_host) {
                if host.writer_mut().try_write(&OutgoingPacket::in_band(from_host as u64), &[payload(0, len)]).is_ok() {
                    from_host += 1;
                }
            }
            if let Some(&len) = guest_lengths.get(from_guest) {
                if guest.writer_mut().try_write(&OutgoingPacket::in_band(from_guest as u64), &[payload(1, len)]).is_ok()
                {
                    from_guest += 1;
                }
            }
        }
        // One end's outgoing ring is the other end's incoming ring: both
        // snapshots read the same control page.
        assert_eq!(host.state().outgoing, guest.state().incoming);
        assert_eq!(guest.state().outgoing, host.state().incoming);
        guest.reader_mut().try_read_batch(4, |_, _| {}).unwrap();
        host.reader_mut().try_read_batch(2, |_, _| {}).unwrap();
    }
    while guest.reader_mut().try_read_batch(64, |_, _| {}).unwrap() > 0 {}
    while host.reader_mut().try_read_batch(64, |_, _| {}).unwrap() > 0 {}

    let (h, g) = (host.state(), guest.state());
    assert_eq!(h.counters.packets_sent, 200);
    assert_eq!(g.counters.packets_sent, 150);
    assert_eq!(h.counters.packets_sent, g.counters.packets_received);
    assert_eq!(g.counters.packets_sent, h.counters.packets_received);
    assert_eq!(h.counters.bytes_sent, host_lengths.iter().sum::<usize>() as u64, "bytes sent: payload bytes");
    assert_eq!(
        g.counters.bytes_received,
        host_lengths.iter().map(|&len| padded(len)).sum::<usize>() as u64,
        "bytes received: payload bytes with padding"
    );
    assert_eq!(h.counters.signals_sent, g.counters.signals_received);
    assert_eq!(g.counters.signals_sent, h.counters.signals_received);
    assert_eq!(h.outgoing, g.incoming);
    assert_eq!(g.outgoing, h.incoming);
    for ring in [h.incoming, h.outgoing] {
        assert_eq!(ring.data_len as usize, PAGE);
        assert_eq!(ring.bytes_used, Some(0), "drained");
        assert_eq!(ring.read_index, ring.write_index);
        assert_eq!(ring.bytes_free, Some(PAGE as u32 - 8));
        assert_eq!(ring.pending_send_size, 0);
        assert_eq!(ring.interrupt_mask, 0);
        assert_eq!(ring.feature_bits & 1, 1, "the queue's writer advertises pending send size");
    }
}

#[test]
fn a_read_batch_of_zero_packets_returns_at_once_even_with_packets_waiting() {
    let (mut host, mut guest) = queues(PAGE);
    host.writer_mut().try_write(&OutgoingPacket::in_band(1), &[b"waiting"]).unwrap();
    assert_eq!(block_on(guest.reader_mut().read_batch(0, |_, _| panic!("max is 0"))), Ok(0));
    assert_eq!(guest.reader_mut().try_read().unwrap().map(|packet| packet.header.transaction_id), Some(1));
}
