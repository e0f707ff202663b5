//! End of stream on pipes, as Linux's hv_sock speaks it: a zero-length data
//! packet ends one direction. Reading it, sending it once (shutdown, close,
//! drop), half-closes both ways, a ring full of data, a peer that lies about
//! its read index, and a peer that goes on after its end.

mod common;

use common::{bounded, send_and_receive};
use futures_io::{AsyncRead, AsyncWrite};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::thread;
use vmbus_channel::{
    block_on, connected_pair, BytePipe, ChannelError, InProcessChannel, InProcessSignal, MessagePipe, Queue,
    RawChannel, Signal,
};
use vmbus_ring::wire::pipe::{DATA, END_OF_STREAM_SIZE};
use vmbus_ring::{ControlPage, ControlWord, FlatRingMem, OutgoingPacket, OutgoingRing, PacketKind, RingState};

type Messages = MessagePipe<FlatRingMem, InProcessSignal>;
type Bytes = BytePipe<FlatRingMem, InProcessSignal>;
type RawQueue = Queue<FlatRingMem, InProcessSignal>;

fn message_pair(data_len: usize) -> (Messages, Messages) {
    let (a, b) = connected_pair(data_len).unwrap();
    (MessagePipe::new(a), MessagePipe::new(b))
}

fn byte_pair(data_len: usize) -> (Bytes, Bytes) {
    let (a, b) = connected_pair(data_len).unwrap();
    (BytePipe::new(a), BytePipe::new(b))
}

/// The pipe header of a data message of `len` bytes.
fn header(len: u32) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&DATA.to_le_bytes());
    bytes[4..].copy_from_slice(&len.to_le_bytes());
    bytes
}

/// Bytes whose values depend on `seed` and position.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

async fn read(pipe: &mut Bytes, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *pipe).poll_read(cx, buf)).await
}

async fn write(pipe: &mut Bytes, buf: &[u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *pipe).poll_write(cx, buf)).await
}

/// Reads every packet in `raw`'s incoming ring as `(kind, payload)`.
fn drain_raw(raw: &mut RawQueue) -> Vec<(PacketKind, Vec<u8>)> {
    let mut packets = Vec::new();
    loop {
        match raw.reader_mut().try_read() {
            Ok(Some(packet)) => packets.push((packet.header.kind, packet.payload)),
            Ok(None) | Err(ChannelError::Closed) => return packets,
            Err(error) => panic!("{error}"),
        }
    }
}

/// The end-of-stream packet as it sits in the ring: in-band, the pipe
/// header with `len` 0 and nothing else.
fn end_of_stream() -> (PacketKind, Vec<u8>) {
    (PacketKind::InBand, header(0).to_vec())
}

/// A data packet carrying `message`, as the receiver reads it (padded to 8).
fn data_packet(message: &[u8]) -> (PacketKind, Vec<u8>) {
    let mut payload = header(message.len() as u32).to_vec();
    payload.extend_from_slice(message);
    payload.resize(payload.len().next_multiple_of(8), 0);
    (PacketKind::InBand, payload)
}

#[test]
fn byte_pipe_reads_end_of_file_after_the_bytes_and_from_then_on() {
    let (mut host, mut guest) = byte_pair(4 * 4096);
    block_on(async {
        assert_eq!(write(&mut host, b"abc").await.unwrap(), 3);
        assert_eq!(write(&mut host, b"defgh").await.unwrap(), 5);
        host.shutdown().await.unwrap();
        let refused = write(&mut host, b"late").await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::BrokenPipe);
        let inner = refused.into_inner().unwrap().downcast::<ChannelError>().unwrap();
        assert_eq!(*inner, ChannelError::ShutDown);

        let mut buf = [0; 64];
        assert_eq!(read(&mut guest, &mut buf).await.unwrap(), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
        for _ in 0..3 {
            assert_eq!(read(&mut guest, &mut buf).await.unwrap(), 0);
        }
    });
}

#[test]
fn byte_pipe_read_stops_short_of_the_end_then_reports_it() {
    // Bytes and the end arrive together: the read that gets the bytes does
    // not swallow the end, the next one reports it.
    let (mut host, mut guest) = byte_pair(4 * 4096);
    block_on(async {
        write(&mut host, b"one").await.unwrap();
        write(&mut host, b"two").await.unwrap();
        host.shutdown().await.unwrap();
        let mut buf = [0; 64];
        assert_eq!(read(&mut guest, &mut buf).await.unwrap(), 6);
        assert_eq!(&buf[..6], b"onetwo");
        assert_eq!(read(&mut guest, &mut buf).await.unwrap(), 0);
    });
}

#[test]
fn message_pipe_reports_end_of_stream_after_the_messages_and_from_then_on() {
    let (mut host, mut guest) = message_pair(4 * 4096);
    block_on(async {
        host.send(b"one").await.unwrap();
        host.send(b"two").await.unwrap();
        host.shutdown().await.unwrap();
        assert_eq!(host.send(b"late").await, Err(ChannelError::ShutDown));
        assert_eq!(host.try_send(b"late"), Err(ChannelError::ShutDown));

        assert_eq!(guest.recv().await.unwrap(), b"one");
        let mut buf = [0; 2];
        assert_eq!(guest.recv_into(&mut buf).await, Ok(2));
        assert_eq!(guest.recv().await.unwrap(), b"o", "the rest of a message comes before the end");
        assert_eq!(guest.recv().await, Err(ChannelError::EndOfStream));
        assert_eq!(guest.recv_into(&mut buf).await, Err(ChannelError::EndOfStream));
        assert_eq!(guest.try_recv(), Err(ChannelError::EndOfStream));
        assert_eq!(guest.try_recv_into(&mut buf), Err(ChannelError::EndOfStream));
    });
}

#[test]
fn shutdown_sends_exactly_one_end_of_stream_packet() {
    let (host, raw) = connected_pair(4 * 4096).unwrap();
    let (mut host, mut raw) = (MessagePipe::new(host), Queue::new(raw));
    block_on(async {
        host.send(b"data").await.unwrap();
        host.shutdown().await.unwrap();
        host.shutdown().await.unwrap();
        host.close().await.unwrap();
        host.close().await.unwrap();
    });
    assert_eq!(host.counters().packets_sent, 2);
    drop(host);
    assert_eq!(drain_raw(&mut raw), [data_packet(b"data"), end_of_stream()]);
}

#[test]
fn dropping_a_pipe_ends_its_direction() {
    let (host, raw) = connected_pair(4 * 4096).unwrap();
    let (host, mut raw) = (BytePipe::new(host), Queue::new(raw));
    drop(host);
    assert_eq!(drain_raw(&mut raw), [end_of_stream()]);

    let (mut host, mut guest) = message_pair(4 * 4096);
    host.try_send(b"last").unwrap();
    drop(host);
    assert_eq!(guest.try_recv().unwrap().unwrap(), b"last");
    assert_eq!(guest.try_recv(), Err(ChannelError::EndOfStream), "a dropped pipe ended its stream");
}

#[test]
fn a_channel_gone_without_an_end_of_stream_is_closed() {
    // A peer that died sent no end of stream: the message pipe says so
    // apart from an orderly end; the byte pipe reads end-of-file either way.
    let (raw, guest) = connected_pair(4 * 4096).unwrap();
    let mut guest = MessagePipe::new(guest);
    let mut raw = Queue::new(raw);
    raw.writer_mut().try_write(&OutgoingPacket::in_band(0), &[&header(2), b"hi"]).unwrap();
    drop(raw);
    assert_eq!(guest.try_recv().unwrap().unwrap(), b"hi");
    assert_eq!(guest.try_recv(), Err(ChannelError::Closed));

    let (raw, guest) = connected_pair(4 * 4096).unwrap();
    let mut guest = BytePipe::new(guest);
    drop(raw);
    assert_eq!(block_on(read(&mut guest, &mut [0; 8])).unwrap(), 0);
}

#[test]
fn shutdown_keeps_the_other_direction_open_and_close_does_not() {
    let (mut host, mut guest) = message_pair(4 * 4096);
    block_on(async {
        host.shutdown().await.unwrap();
        guest.send(b"still open").await.unwrap();
        assert_eq!(host.recv().await.unwrap(), b"still open");
        assert_eq!(guest.recv().await, Err(ChannelError::EndOfStream));

        host.close().await.unwrap();
        assert_eq!(guest.send(b"too late").await, Err(ChannelError::Closed));
    });
}

#[test]
fn half_close_works_both_ways_at_once() {
    // Each end streams through a one-page ring, ends its direction, and
    // goes on reading the other's until that ends too: both shut down
    // while the other's bytes are still flowing.
    let (mut host, mut guest) = byte_pair(4096);
    let to_guest = pattern(1, 300_000);
    let to_host = pattern(2, 77_777);
    let (expected_by_guest, expected_by_host) = (to_guest.clone(), to_host.clone());
    let guest_thread =
        thread::spawn(move || bounded("guest", move || block_on(send_and_receive(&mut guest, &to_host))));
    let received_by_host = bounded("host", move || block_on(send_and_receive(&mut host, &to_guest)));
    let received_by_guest = guest_thread.join().unwrap();
    assert!(received_by_host == expected_by_host, "host got {} bytes", received_by_host.len());
    assert!(received_by_guest == expected_by_guest, "guest got {} bytes", received_by_guest.len());
}

#[test]
fn one_side_ends_while_the_other_keeps_sending() {
    let (mut host, mut guest) = byte_pair(4096);
    let from_guest = pattern(3, 200_000);
    let expected = from_guest.clone();
    let guest_thread = thread::spawn(move || {
        bounded("guest", move || {
            block_on(async {
                let mut buf = [0; 16];
                // The host ended first: end-of-file here, then the guest streams on.
                assert_eq!(read(&mut guest, &mut buf).await.unwrap(), 0);
                let mut at = 0;
                while at < from_guest.len() {
                    at += write(&mut guest, &from_guest[at..]).await.unwrap();
                }
                guest.shutdown().await.unwrap();
            })
        })
    });
    let received = bounded("host", move || {
        block_on(async {
            host.shutdown().await.unwrap();
            let mut received = Vec::new();
            let mut buf = vec![0; 5000];
            loop {
                match read(&mut host, &mut buf).await.unwrap() {
                    0 => break received,
                    n => received.extend_from_slice(&buf[..n]),
                }
            }
        })
    });
    guest_thread.join().unwrap();
    assert!(received == expected, "host got {} of {} bytes", received.len(), expected.len());
}

#[test]
fn end_of_stream_fits_a_ring_full_of_data() {
    for close in [false, true] {
        let (mut host, mut guest) = message_pair(4096);
        // Greedily, the largest message that still fits, down to one byte:
        // the ring ends as full as data may make it.
        let mut sent = Vec::new();
        let mut len = 3000;
        while len > 0 {
            let message = pattern(sent.len() as u8, len);
            match host.try_send(&message) {
                Ok(()) => sent.push(message),
                Err(ChannelError::Full { .. }) => len -= 1,
                Err(error) => panic!("{error}"),
            }
        }
        // The ring is as full as data may make it; the end still goes in at
        // once, with nothing read.
        let mut end = Box::pin(async {
            if close {
                host.close().await
            } else {
                host.shutdown().await
            }
        });
        assert_eq!(common::poll_once(&mut end, std::task::Waker::noop()), Poll::Ready(Ok(())));
        for message in &sent {
            assert_eq!(&guest.try_recv().unwrap().unwrap(), message);
        }
        assert_eq!(guest.try_recv(), Err(ChannelError::EndOfStream), "close: {close}");
    }
}

#[test]
fn byte_pipe_end_of_stream_fits_a_ring_full_of_data() {
    let (mut host, mut guest) = byte_pair(4096);
    let data = pattern(9, 50_000);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut at = 0;
    while let Poll::Ready(written) = Pin::new(&mut host).poll_write(&mut cx, &data[at..]) {
        at += written.unwrap();
    }
    assert!(at < data.len(), "the ring never filled");
    assert!(matches!(Pin::new(&mut host).poll_close(&mut cx), Poll::Ready(Ok(()))));
    let mut received = Vec::new();
    let mut buf = vec![0; 4096];
    block_on(async {
        loop {
            match read(&mut guest, &mut buf).await.unwrap() {
                0 => break,
                n => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    assert!(received == data[..at], "got {} of {at} bytes", received.len());
}

#[test]
fn end_of_stream_waits_for_space_a_lying_peer_took() {
    // A peer can hand over a ring whose read index leaves less room than a
    // pipe keeps (here 8 bytes). The end of stream then waits for space, as
    // data would, and goes out once the peer frees it and signals.
    let (host, guest) = connected_pair(4096).unwrap();
    let (incoming, outgoing, signal) = host.into_parts();
    let host_ring: FlatRingMem = outgoing.memory().clone();
    host_ring.store(ControlWord::ReadIndex, 16, Ordering::Release);
    let host = RawChannel::from_parts(incoming, OutgoingRing::new(host_ring.clone()).unwrap(), signal);
    assert!((RingState::read(&host_ring).bytes_free.unwrap() as usize) < END_OF_STREAM_SIZE);
    let guest_signal = guest.signal().clone();
    let mut host = MessagePipe::new(host);
    assert!(matches!(host.try_send(b"data"), Err(ChannelError::Full { .. })));

    let (waker, wakes) = common::counting_waker();
    let mut end = Box::pin(host.shutdown());
    assert!(common::poll_once(&mut end, &waker).is_pending());
    host_ring.store(ControlWord::ReadIndex, 0, Ordering::Release);
    guest_signal.signal_peer();
    assert!(wakes.get() > 0, "the freed space woke the waiting end of stream");
    assert_eq!(common::poll_once(&mut end, &waker), Poll::Ready(Ok(())));
    drop(end);
    drop(host);

    let mut raw: RawQueue = Queue::new(guest);
    assert_eq!(drain_raw(&mut raw), [end_of_stream()]);
}

/// A raw peer writing `packets` (pipe payloads) to a pipe, then gone.
fn raw_peer_sends(payloads: &[&[&[u8]]]) -> InProcessChannel {
    let (raw, pipe) = connected_pair(4 * 4096).unwrap();
    let mut raw = Queue::new(raw);
    for payload in payloads {
        raw.writer_mut().try_write(&OutgoingPacket::in_band(0), payload).unwrap();
    }
    pipe
}

#[test]
fn nothing_after_the_peers_end_is_delivered() {
    // A broken peer sends data after its end, and more ends: the receiver
    // stops at the first end and reports it from then on, leaving the rest
    // in the ring unread.
    let payloads: [&[&[u8]]; 5] = [&[&header(1), b"a"], &[&header(0)], &[&header(4), b"late"], &[&header(0)], &[]];
    let pipe = raw_peer_sends(&payloads);
    let incoming = pipe.incoming().memory().clone();
    let mut messages = MessagePipe::new(pipe);
    assert_eq!(messages.try_recv().unwrap().unwrap(), b"a");
    for _ in 0..3 {
        assert_eq!(messages.try_recv(), Err(ChannelError::EndOfStream));
        assert_eq!(block_on(messages.recv()), Err(ChannelError::EndOfStream));
    }
    assert!(RingState::read(&incoming).bytes_used.unwrap() > 0, "the packets after the end stay unread");

    let mut bytes = BytePipe::new(raw_peer_sends(&payloads));
    let mut buf = [0; 16];
    assert_eq!(block_on(read(&mut bytes, &mut buf)).unwrap(), 1);
    for _ in 0..3 {
        assert_eq!(block_on(read(&mut bytes, &mut buf)).unwrap(), 0);
    }
}

#[test]
fn close_right_after_send_never_loses_the_message() {
    // The peer commits and closes while the receiver may be between looking
    // at the ring and looking at the close.
    for i in 0..500 {
        let (mut host, mut guest) = message_pair(4096);
        thread::scope(|scope| {
            scope.spawn(move || {
                host.try_send(b"last words").unwrap();
                block_on(host.close()).unwrap();
            });
            assert_eq!(block_on(guest.recv()).unwrap(), b"last words", "round {i}");
        });
        assert_eq!(block_on(guest.recv()), Err(ChannelError::EndOfStream));
    }
}
