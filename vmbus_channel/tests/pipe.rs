//! Message and byte pipes: round trips, partial reads, back-pressure,
//! streaming, and malformed frames from the peer. End of stream has its own
//! file, `pipe_end_of_stream.rs`.

use futures_io::{AsyncRead, AsyncWrite};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::thread;
use vmbus_channel::{block_on, connected_pair, BytePipe, ChannelError, InProcessChannel, MessagePipe, Queue};
use vmbus_ring::wire::pipe::{DATA, MAX_PAYLOAD, PARTIAL, SETUP_GPA_DIRECT, TEARDOWN_GPA_DIRECT};
use vmbus_ring::wire::TransferPageRange;
use vmbus_ring::{FlatRingMem, GpaRangeBuf, OutgoingPacket, WriteError};

type Pipe = MessagePipe<FlatRingMem, vmbus_channel::InProcessSignal>;
type Bytes = BytePipe<FlatRingMem, vmbus_channel::InProcessSignal>;

fn message_pair(data_len: usize) -> (Pipe, Pipe) {
    let (a, b) = connected_pair(data_len).unwrap();
    (MessagePipe::new(a), MessagePipe::new(b))
}

fn byte_pair(data_len: usize) -> (Bytes, Bytes) {
    let (a, b) = connected_pair(data_len).unwrap();
    (BytePipe::new(a), BytePipe::new(b))
}

/// A message whose bytes depend on `seed` and position.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(17)) as u8).collect()
}

fn header(packet_type: u32, len: u32) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&packet_type.to_le_bytes());
    bytes[4..].copy_from_slice(&len.to_le_bytes());
    bytes
}

async fn write_all(pipe: &mut Bytes, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *pipe).poll_write(cx, data)).await?;
        assert!(n > 0 && n <= data.len());
        data = &data[n..];
    }
    Ok(())
}

async fn read(pipe: &mut Bytes, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *pipe).poll_read(cx, buf)).await
}

#[test]
fn messages_of_edge_sizes_round_trip_in_order() {
    let sizes = [1, 7, 8, 4095, 16383, MAX_PAYLOAD];
    let (mut host, mut guest) = message_pair(16 * 4096);
    block_on(async {
        for (seed, &size) in sizes.iter().enumerate() {
            host.send(&pattern(seed, size)).await.unwrap();
        }
        for (seed, &size) in sizes.iter().enumerate() {
            assert_eq!(guest.recv().await.unwrap(), pattern(seed, size), "message of {size} bytes");
        }
    });
    assert_eq!(guest.try_recv().unwrap(), None);
}

#[test]
fn empty_message_is_refused_and_nothing_is_written() {
    let (mut host, mut guest) = message_pair(4 * 4096);
    assert_eq!(block_on(host.send(b"")), Err(ChannelError::EmptyMessage));
    assert_eq!(host.try_send(b""), Err(ChannelError::EmptyMessage));
    assert_eq!(host.counters().packets_sent, 0);
    assert_eq!(guest.try_recv(), Ok(None), "an empty message would have read as end of stream");
    host.try_send(b"x").unwrap();
    assert_eq!(guest.try_recv().unwrap().unwrap(), b"x");
}

#[test]
fn oversized_message_is_refused_and_nothing_is_written() {
    let (mut host, mut guest) = message_pair(16 * 4096);
    let before = host.counters();
    let too_large = vec![1; MAX_PAYLOAD + 1];
    let refused = block_on(host.send(&too_large));
    assert!(matches!(refused, Err(ChannelError::Write(WriteError::TooLarge { .. }))), "{refused:?}");
    assert!(matches!(host.try_send(&too_large), Err(ChannelError::Write(WriteError::TooLarge { .. }))));
    assert_eq!(host.counters().packets_sent, before.packets_sent);
    assert_eq!(guest.try_recv().unwrap(), None);
    // The pipe still works.
    host.try_send(b"after").unwrap();
    assert_eq!(guest.try_recv().unwrap().unwrap(), b"after");

    // A legal message that can never fit a small ring is refused the same way.
    let (mut small, mut peer) = message_pair(4096);
    let refused = block_on(small.send(&[2; MAX_PAYLOAD]));
    assert!(matches!(refused, Err(ChannelError::Write(WriteError::TooLarge { .. }))), "{refused:?}");
    assert_eq!(small.counters().packets_sent, 0);
    assert_eq!(peer.try_recv().unwrap(), None);
}

#[test]
fn partial_reads_reassemble_full_size_messages() {
    for buf_len in [1, 7, 100, 4096] {
        let (mut host, mut guest) = message_pair(16 * 4096);
        let messages = [pattern(buf_len, MAX_PAYLOAD), pattern(buf_len + 1, MAX_PAYLOAD), b"tail".to_vec()];
        block_on(async {
            for message in &messages {
                host.send(message).await.unwrap();
            }
            let mut buf = vec![0; buf_len];
            for message in &messages[..2] {
                let mut got = Vec::new();
                // At most one call per byte.
                for _ in 0..MAX_PAYLOAD {
                    let n = guest.recv_into(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                    assert_eq!(guest.remaining(), MAX_PAYLOAD - got.len());
                    if guest.remaining() == 0 {
                        break;
                    }
                }
                assert_eq!(got.len(), MAX_PAYLOAD, "buffer of {buf_len}");
                assert!(got == *message, "buffer of {buf_len}: bytes differ");
            }
            // No bytes of the next message leaked into the last piece.
            assert_eq!(guest.recv().await.unwrap(), b"tail");
        });
    }
}

#[test]
fn recv_after_a_partial_read_returns_the_rest() {
    let (mut host, mut guest) = message_pair(4 * 4096);
    host.try_send(b"0123456789").unwrap();
    host.try_send(b"next").unwrap();
    let mut buf = [0; 4];
    assert_eq!(guest.try_recv_into(&mut buf).unwrap(), Some(4));
    assert_eq!(&buf, b"0123");
    assert_eq!(guest.try_recv_into(&mut []).unwrap(), Some(0));
    assert_eq!(guest.remaining(), 6);
    assert_eq!(guest.try_recv().unwrap().unwrap(), b"456789");
    assert_eq!(guest.try_recv_into(&mut buf).unwrap(), Some(4));
    assert_eq!(&buf, b"next");
    assert_eq!(guest.try_recv_into(&mut buf).unwrap(), None);
}

#[test]
fn many_messages_through_a_one_page_ring_arrive_in_order() {
    const COUNT: usize = 3000;
    let message = |i: usize| {
        let mut bytes = pattern(i, 4 + i * 37 % 2000);
        bytes[..4].copy_from_slice(&(i as u32).to_le_bytes());
        bytes
    };
    let (mut host, mut guest) = message_pair(4096);
    // Fill the ring first, so that the rest of the sends meet a full ring.
    let mut sent = 0;
    for _ in 0..4096 {
        match host.try_send(&message(sent)) {
            Ok(()) => sent += 1,
            Err(ChannelError::Full { .. }) => break,
            Err(error) => panic!("{error}"),
        }
    }
    assert!(sent < COUNT, "the ring never filled");
    thread::scope(|scope| {
        scope.spawn(move || {
            block_on(async {
                for i in sent..COUNT {
                    host.send(&message(i)).await.unwrap();
                }
            })
        });
        block_on(async {
            for i in 0..COUNT {
                assert!(guest.recv().await.unwrap() == message(i), "message {i}");
            }
        });
    });
    assert_eq!(guest.try_recv(), Err(ChannelError::EndOfStream), "every message received, and the host gone");
}

#[test]
fn byte_pipe_streams_a_mebibyte_across_threads() {
    let input = pattern(5, 1 << 20);
    let (mut host, mut guest) = byte_pair(2 * 4096);
    let output = thread::scope(|scope| {
        let input = &input;
        scope.spawn(move || {
            block_on(async {
                let chunk_sizes = [1, 7, 4093, 16385, 65537, 3, 999];
                let mut at = 0;
                for size in chunk_sizes.iter().cycle() {
                    if at == input.len() {
                        break;
                    }
                    let end = (at + size).min(input.len());
                    write_all(&mut host, &input[at..end]).await.unwrap();
                    at = end;
                }
                host.shutdown().await.unwrap();
            })
        });
        block_on(async {
            let mut output = Vec::new();
            let mut buf = vec![0; 16389];
            let buf_sizes = [3, 1000, 4097, 17, 16389, 1];
            // Every read but the last returns at least one byte.
            for size in buf_sizes.iter().cycle().take(input.len() + 1) {
                let n = read(&mut guest, &mut buf[..*size]).await.unwrap();
                if n == 0 {
                    break;
                }
                output.extend_from_slice(&buf[..n]);
            }
            output
        })
    });
    assert_eq!(output.len(), input.len());
    assert!(output == input, "streamed bytes differ");
}

/// A raw queue writing to a message pipe, for crafting frames.
fn raw_to_pipe() -> (Queue<FlatRingMem, vmbus_channel::InProcessSignal>, Pipe) {
    let (raw, pipe): (InProcessChannel, InProcessChannel) = connected_pair(16 * 4096).unwrap();
    (Queue::new(raw), MessagePipe::new(pipe))
}

/// Writes `packet` with `payload` raw, checks the pipe reports a framing
/// error containing `expected`, and that a good message after it still
/// arrives.
fn assert_rejected(packet: OutgoingPacket<'_>, payload: &[&[u8]], expected: &str) {
    let (mut raw, mut pipe) = raw_to_pipe();
    raw.writer_mut().try_write(&packet, payload).unwrap();
    raw.writer_mut().try_write(&OutgoingPacket::in_band(0), &[&header(DATA, 2), b"ok"]).unwrap();
    match pipe.try_recv() {
        Err(ChannelError::Pipe(message)) => {
            assert!(message.contains(expected), "{message:?} does not say {expected:?}")
        }
        other => panic!("expected a pipe error containing {expected:?}, got {other:?}"),
    }
    assert_eq!(pipe.try_recv().unwrap().unwrap(), b"ok");
    assert_eq!(pipe.try_recv().unwrap(), None);
}

#[test]
fn malformed_frames_are_pipe_errors() {
    let in_band = OutgoingPacket::in_band(0);
    // `len` beyond the payload (50 bytes, padded to 56).
    assert_rejected(in_band, &[&header(DATA, 100), &[0; 50]], "runs past");
    // `len` above the pipe maximum, though within the payload.
    let big = vec![0; MAX_PAYLOAD + 8];
    assert_rejected(in_band, &[&header(DATA, MAX_PAYLOAD as u32 + 8), &big], "16384");
    assert_rejected(in_band, &[&header(DATA, u32::MAX), &[0; 8]], "16384");
    // Partial is never legal from the peer.
    assert_rejected(in_band, &[&header(PARTIAL, 4), b"data"], "partial");
    // GPA direct set-up and tear-down are named as unsupported.
    assert_rejected(in_band, &[&header(SETUP_GPA_DIRECT, 0)], "set-up-GPA-direct");
    assert_rejected(in_band, &[&header(TEARDOWN_GPA_DIRECT, 0)], "tear-down-GPA-direct");
    assert_rejected(in_band, &[&header(99, 0)], "unknown pipe packet type");
    // Payload shorter than the header (an empty payload: shorter ones are padded to 8).
    assert_rejected(in_band, &[], "shorter than the 8-byte pipe header");
    // Packets that are not in-band.
    assert_rejected(OutgoingPacket::completion(3), &[&header(DATA, 2), b"hi"], "completion");
    let ranges = [TransferPageRange::new(16, 0)];
    assert_rejected(OutgoingPacket::transfer_pages(0, 1, false, &ranges), &[&header(DATA, 0)], "transfer-pages");
    let mut gpa = GpaRangeBuf::new();
    gpa.push(0, 16, &[42]).unwrap();
    assert_rejected(OutgoingPacket::gpa_direct(0, gpa.ranges()), &[&header(DATA, 0)], "GPA-direct");
}

#[test]
fn len_may_use_the_padding_but_no_more() {
    let (mut raw, mut pipe) = raw_to_pipe();
    // 5 data bytes padded to 8: `len` 8 is within the payload and reads padding zeros.
    raw.writer_mut().try_write(&OutgoingPacket::in_band(0), &[&header(DATA, 8), b"abcde"]).unwrap();
    assert_eq!(pipe.try_recv().unwrap().unwrap(), b"abcde\0\0\0");
    raw.writer_mut().try_write(&OutgoingPacket::in_band(0), &[&header(DATA, 9), b"abcde"]).unwrap();
    assert!(matches!(pipe.try_recv(), Err(ChannelError::Pipe(_))));
}

#[test]
fn byte_pipe_reports_malformed_frames_as_invalid_data_and_goes_on() {
    let (raw, pipe) = connected_pair(4 * 4096).unwrap();
    let (mut raw, mut pipe) = (Queue::new(raw), BytePipe::new(pipe));
    let writer = raw.writer_mut();
    writer.try_write(&OutgoingPacket::in_band(0), &[&header(DATA, 3), b"abc"]).unwrap();
    writer.try_write(&OutgoingPacket::in_band(0), &[&header(PARTIAL, 3), b"xyz"]).unwrap();
    writer.try_write(&OutgoingPacket::in_band(0), &[&header(DATA, 3), b"def"]).unwrap();
    drop(raw);
    block_on(async {
        let mut buf = [0; 16];
        // The bytes before the bad frame come first, the error next.
        assert_eq!(read(&mut pipe, &mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let error = read(&mut pipe, &mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let inner = error.into_inner().unwrap().downcast::<ChannelError>().unwrap();
        assert!(matches!(*inner, ChannelError::Pipe(_)));
        // The stream goes on after it.
        assert_eq!(read(&mut pipe, &mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"def");
        assert_eq!(read(&mut pipe, &mut buf).await.unwrap(), 0);
    });
}
