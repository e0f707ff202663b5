//! `pipe`: arbitrary in-band packets (pipe framed or not) read through a
//! `MessagePipe` or a `BytePipe`, with arbitrary buffer sizes.
//!
//! # Input layout
//!
//! All integers little-endian; a record cut short by the end of the input
//! takes what is there.
//!
//! Byte 0 is the config: bits 0–2 the ring's data pages − 1 (1 to 8 pages,
//! both rings of a `connected_pair`); bit 3 set reads through a `BytePipe`,
//! clear through a `MessagePipe`. Then records until the input ends, each a
//! tag byte whose low two bits say what it is:
//!
//! | tag & 3 | record | then |
//! | --- | --- | --- |
//! | 0 | a pipe data message: the writer frames it as `{DATA, len}` + bytes | `len: u16`, `len` bytes |
//! | 1 | a raw in-band packet: the bytes are the whole payload, a pipe header or not | `len: u16`, `len` bytes |
//! | 2 | a packet a pipe must refuse: `(tag >> 2) % 3` = completion, transfer pages, GPA direct | `len: u16`, `len` payload bytes |
//! | 3 | a read: tag bit 2 = the whole message (`recv`), else `recv_into` a `size`-byte buffer; tag bit 3 = the async call under `block_on` when a message is due, else the `try_` call | `size: u16` |
//!
//! The host end writes the packets into its outgoing ring directly (so any
//! payload can be sent); the guest end reads them through the pipe. When
//! the ring is full the reader drains it first. A data message of length 0
//! (a record 0 with no bytes, or a raw one) is the end of stream: the
//! reader must stop there, so whatever the host writes after it stays in
//! the ring, and once that fills the ring the host writes no more. At the
//! end the reader drains everything, the host closes, and the reader must
//! see the end of stream if one was sent, else the close.
//!
//! # Checks
//!
//! The expected outcome of every packet comes from the pipe framing rules
//! (a DATA header whose `len` fits the padded payload and the 16384-byte
//! maximum gives that message, or the end of stream for `len` 0; anything
//! else is a framing error). No panic; every error is `ChannelError::Pipe`
//! (or `EndOfStream` from the end on, `Closed` at the close, and for a
//! `BytePipe` an `InvalidData` I/O error wrapping `Pipe`); messages come
//! out byte-exact and in order, partial `recv_into` reads give the
//! message's next bytes and `remaining` counts what is left, and nothing
//! after the end of stream is ever delivered; a `BytePipe` gives the same
//! bytes and errors in the same order across message boundaries, then
//! end-of-file (for every read) at the end of stream or once the host closed.

use crate::{take, take_u16, take_u8};
use futures_io::AsyncRead;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use vmbus_channel::{block_on, connected_pair, BytePipe, ChannelError, InProcessChannel, MessagePipe, Signal};
use vmbus_ring::wire::pipe::{DATA, MAX_PAYLOAD};
use vmbus_ring::{FlatRingMem, GpaRangeBuf, OutgoingPacket, RingState, TransferPageRange, WriteError};

/// Config bit: read through a `BytePipe`.
pub const BYTE_PIPE: u8 = 1 << 3;

/// One record of a `pipe` input.
#[derive(Debug, Clone)]
pub enum Record {
    /// A pipe data message, framed by the writer.
    Data(Vec<u8>),
    /// A raw in-band payload.
    Raw(Vec<u8>),
    /// A packet of another kind: 0 completion, 1 transfer pages, 2 GPA direct.
    Foreign(u8, Vec<u8>),
    /// A read.
    Read {
        /// Buffer size for `recv_into`.
        size: u16,
        /// Receive the whole message instead.
        whole: bool,
        /// Use the async call under `block_on` when a message is due.
        blocking: bool,
    },
}

/// A `pipe` input: `data_pages` 1 to 8.
pub fn encode(data_pages: u8, byte_pipe: bool, records: &[Record]) -> Vec<u8> {
    assert!((1..=8).contains(&data_pages));
    let mut bytes = vec![(data_pages - 1) | if byte_pipe { BYTE_PIPE } else { 0 }];
    let with_bytes = |bytes: &mut Vec<u8>, tag: u8, payload: &[u8]| {
        bytes.push(tag);
        bytes.extend(u16::try_from(payload.len()).expect("at most 65535 bytes a record").to_le_bytes());
        bytes.extend(payload);
    };
    for record in records {
        match record {
            Record::Data(message) => with_bytes(&mut bytes, 0, message),
            Record::Raw(payload) => with_bytes(&mut bytes, 1, payload),
            Record::Foreign(kind, payload) => with_bytes(&mut bytes, 2 | kind << 2, payload),
            Record::Read { size, whole, blocking } => {
                bytes.push(3 | u8::from(*whole) << 2 | u8::from(*blocking) << 3);
                bytes.extend(size.to_le_bytes());
            }
        }
    }
    bytes
}

/// A raw in-band payload framed as a pipe data message.
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut payload = DATA.to_le_bytes().to_vec();
    payload.extend((message.len() as u32).to_le_bytes());
    payload.extend(message);
    payload
}

/// What a reader must get for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Message(Vec<u8>),
    Refused,
    End,
}

/// The framing rules applied to an in-band payload as the reader sees it:
/// padded with zeros to a multiple of 8.
fn outcome(payload: &[u8]) -> Outcome {
    let mut padded = payload.to_vec();
    padded.resize(payload.len().next_multiple_of(8), 0);
    if padded.len() < 8 {
        return Outcome::Refused;
    }
    let packet_type = u32::from_le_bytes(padded[..4].try_into().unwrap());
    let len = u32::from_le_bytes(padded[4..8].try_into().unwrap()) as usize;
    if packet_type != DATA || len > MAX_PAYLOAD || len > padded.len() - 8 {
        return Outcome::Refused;
    }
    if len == 0 {
        return Outcome::End;
    }
    Outcome::Message(padded[8..8 + len].to_vec())
}

/// The fuzz target's body.
pub fn run(bytes: &[u8]) {
    let mut input = bytes;
    let config = take_u8(&mut input);
    let data_len = (1 + usize::from(config & 7)) * 4096;
    let (host, guest) = connected_pair(data_len).unwrap();
    if config & BYTE_PIPE != 0 {
        Session::new(host, ByteReader::new(guest)).run(input)
    } else {
        Session::new(host, MessageReader::new(guest)).run(input)
    }
}

/// The reading side, as the session drives it.
trait Reader {
    /// A packet with this outcome was committed to the ring.
    fn expect(&mut self, outcome: Outcome);
    /// One read.
    fn read(&mut self, size: usize, whole: bool, blocking: bool);
    /// Reads until every packet written has been received.
    fn drain(&mut self);
    /// The writer has closed and everything is drained: the reader must see
    /// the end of stream if one was written, else the close.
    fn check_closed(&mut self);
}

struct Session<R> {
    host: InProcessChannel,
    reader: R,
    /// Whether an end of stream has been written: packets after it are
    /// never read.
    ended: bool,
}

impl<R: Reader> Session<R> {
    fn new(host: InProcessChannel, reader: R) -> Self {
        Self { host, reader, ended: false }
    }

    fn run(mut self, mut input: &[u8]) {
        while !input.is_empty() {
            let tag = take_u8(&mut input);
            if tag & 3 == 3 {
                let size = usize::from(take_u16(&mut input));
                self.reader.read(size, tag & 4 != 0, tag & 8 != 0);
                continue;
            }
            let len = usize::from(take_u16(&mut input));
            let bytes = take(&mut input, len);
            match tag & 3 {
                0 => {
                    let message = &bytes[..bytes.len().min(MAX_PAYLOAD)];
                    let payload = framed(message);
                    let expected = if message.is_empty() { Outcome::End } else { Outcome::Message(message.to_vec()) };
                    assert_eq!(outcome(&payload), expected);
                    self.write(&OutgoingPacket::in_band(0), &payload, expected);
                }
                1 => self.write(&OutgoingPacket::in_band(0), bytes, outcome(bytes)),
                _ => {
                    let ranges = [TransferPageRange::new(bytes.len() as u32, 0)];
                    let mut gpa = GpaRangeBuf::new();
                    gpa.push_contiguous(0x10_0000, 1 + bytes.len() as u32).unwrap();
                    let packet = match (tag >> 2) % 3 {
                        0 => OutgoingPacket::completion(u64::from(tag)),
                        1 => OutgoingPacket::transfer_pages(1, 3, true, &ranges),
                        _ => OutgoingPacket::gpa_direct(2, gpa.ranges()),
                    };
                    self.write(&packet, bytes, Outcome::Refused);
                }
            }
        }
        self.reader.drain();
        self.host.signal().close();
        self.reader.check_closed();
    }

    /// Writes one packet, draining the ring first if it is full. After an
    /// end of stream the reader frees nothing, so a full ring stays full.
    fn write(&mut self, packet: &OutgoingPacket<'_>, payload: &[u8], outcome: Outcome) {
        for attempt in 0..2 {
            match self.host.outgoing_mut().write(packet, &[payload]) {
                Ok(signal) => {
                    if signal {
                        self.host.signal().signal_peer();
                    }
                    if !self.ended {
                        self.ended = outcome == Outcome::End;
                        self.reader.expect(outcome);
                    }
                    return;
                }
                Err(WriteError::TooLarge { .. }) => return,
                Err(WriteError::Full { .. }) if attempt == 0 => self.reader.drain(),
                Err(WriteError::Full { .. }) if self.ended => return,
                Err(error) => panic!("writing {} bytes after draining: {error}", payload.len()),
            }
        }
    }
}

/// A `MessagePipe` and the outcomes it owes.
struct MessageReader {
    pipe: MessagePipe<FlatRingMem, vmbus_channel::InProcessSignal>,
    due: VecDeque<Outcome>,
    /// The message partly handed out, and how much of it.
    current: Vec<u8>,
    taken: usize,
}

impl MessageReader {
    fn new(guest: InProcessChannel) -> Self {
        Self { pipe: MessagePipe::new(guest), due: VecDeque::new(), current: Vec::new(), taken: 0 }
    }

    fn remaining(&self) -> usize {
        self.current.len() - self.taken
    }

    /// What the next read must give, for a `size`-byte buffer (`None`: a
    /// whole message), and the state after it: a message's next bytes, a
    /// framing error, or the end of stream (which stays due).
    fn next_expected(&mut self, size: Option<usize>) -> Option<Outcome> {
        if size == Some(0) {
            return Some(Outcome::Message(Vec::new()));
        }
        if self.remaining() == 0 {
            match self.due.front()? {
                Outcome::End => return Some(Outcome::End),
                Outcome::Refused => return self.due.pop_front(),
                Outcome::Message(_) => {
                    let Some(Outcome::Message(message)) = self.due.pop_front() else { unreachable!() };
                    (self.current, self.taken) = (message, 0);
                }
            }
        }
        let n = size.unwrap_or(usize::MAX).min(self.remaining());
        let bytes = self.current[self.taken..self.taken + n].to_vec();
        self.taken += n;
        if self.taken == self.current.len() {
            (self.current, self.taken) = (Vec::new(), 0);
        }
        Some(Outcome::Message(bytes))
    }

    fn check(got: Result<Option<Vec<u8>>, ChannelError>, expected: Option<Outcome>) {
        match (got, expected) {
            (Ok(Some(got)), Some(Outcome::Message(expected))) if got == expected => {}
            (Ok(None), None) => {}
            (Err(ChannelError::Pipe(_)), Some(Outcome::Refused)) => {}
            (Err(ChannelError::EndOfStream), Some(Outcome::End)) => {}
            (got, expected) => panic!("message pipe gave {got:?}, the framing rules say {expected:?}"),
        }
    }

    /// Whether everything before the end of stream has been received and
    /// the end is next.
    fn at_end(&self) -> bool {
        self.remaining() == 0 && self.due.front() == Some(&Outcome::End)
    }
}

impl Reader for MessageReader {
    fn expect(&mut self, outcome: Outcome) {
        self.due.push_back(outcome);
    }

    fn read(&mut self, size: usize, whole: bool, blocking: bool) {
        let due = self.remaining() > 0 || !self.due.is_empty();
        let expected = self.next_expected((!whole).then_some(size));
        let got = match (whole, blocking && due) {
            (true, true) => block_on(self.pipe.recv()).map(Some),
            (true, false) => self.pipe.try_recv(),
            (false, blocking) => {
                let mut buf = vec![0xa5; size];
                let n = if blocking {
                    block_on(self.pipe.recv_into(&mut buf)).map(Some)
                } else {
                    self.pipe.try_recv_into(&mut buf)
                };
                n.map(|n| {
                    n.map(|n| {
                        assert!(n <= size, "{n} bytes into a {size}-byte buffer");
                        buf.truncate(n);
                        buf
                    })
                })
            }
        };
        Self::check(got, expected);
        assert_eq!(self.pipe.remaining(), self.remaining());
    }

    fn drain(&mut self) {
        while !self.at_end() && (self.remaining() > 0 || !self.due.is_empty()) {
            self.read(4096, false, true);
        }
        if self.at_end() {
            assert_eq!(self.pipe.try_recv(), Err(ChannelError::EndOfStream), "a message after the end");
        } else {
            assert_eq!(self.pipe.try_recv(), Ok(None), "a message nobody sent");
        }
    }

    fn check_closed(&mut self) {
        let expected = if self.at_end() { ChannelError::EndOfStream } else { ChannelError::Closed };
        assert_eq!(block_on(self.pipe.recv()), Err(expected));
    }
}

/// What a `BytePipe` owes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    Refused,
    /// The end of stream: stays due once reached.
    End,
}

/// A `BytePipe` and the stream it owes.
struct ByteReader {
    pipe: BytePipe<FlatRingMem, vmbus_channel::InProcessSignal>,
    due: VecDeque<Token>,
    /// Packets written, for bounding the polls a drain may take.
    packets: usize,
    /// The ring the pipe reads, to see it drained.
    ring: FlatRingMem,
}

impl ByteReader {
    fn new(guest: InProcessChannel) -> Self {
        let ring = guest.incoming().memory().clone();
        Self { pipe: BytePipe::new(guest), due: VecDeque::new(), packets: 0, ring }
    }

    fn ring_empty(&self) -> bool {
        RingState::read(&self.ring).bytes_used == Some(0)
    }

    fn at_end(&self) -> bool {
        self.due.front() == Some(&Token::End)
    }

    /// One `poll_read`; `Some(true)` if it got bytes or an error, `Some(false)`
    /// on end-of-file, `None` if pending.
    fn poll(&mut self, size: usize) -> Option<bool> {
        let mut buf = vec![0xa5; size];
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.pipe).poll_read(&mut cx, &mut buf) {
            Poll::Pending => None,
            Poll::Ready(Ok(0)) if size == 0 => Some(true),
            Poll::Ready(Ok(0)) => {
                assert!(self.due.is_empty() || self.at_end(), "end-of-file with {:?} due", self.due.front());
                Some(false)
            }
            Poll::Ready(Ok(n)) => {
                assert!(n <= size, "{n} bytes into a {size}-byte buffer");
                for (i, &byte) in buf[..n].iter().enumerate() {
                    let expected = self.due.pop_front();
                    assert_eq!(expected, Some(Token::Byte(byte)), "byte {i} of a {n}-byte read");
                }
                Some(true)
            }
            Poll::Ready(Err(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
                let inner = error.get_ref().and_then(|inner| inner.downcast_ref::<ChannelError>());
                assert!(matches!(inner, Some(ChannelError::Pipe(_))), "{error:?}");
                assert_eq!(self.due.pop_front(), Some(Token::Refused), "a framing error where bytes were due");
                Some(true)
            }
        }
    }
}

impl Reader for ByteReader {
    fn expect(&mut self, outcome: Outcome) {
        self.packets += 1;
        match outcome {
            Outcome::Message(message) => self.due.extend(message.into_iter().map(Token::Byte)),
            Outcome::Refused => self.due.push_back(Token::Refused),
            Outcome::End => self.due.push_back(Token::End),
        }
    }

    fn read(&mut self, size: usize, _whole: bool, _blocking: bool) {
        self.poll(size);
    }

    fn drain(&mut self) {
        // Each poll fills its 4096-byte buffer or takes at least the rest of
        // a message or an error; beyond that many polls the pipe is stuck.
        let bound = self.packets + self.due.len() / 4096 + 4;
        let mut polls = 0;
        while !self.due.is_empty() && !self.at_end() {
            assert!(polls <= bound, "{} tokens still due after {polls} polls", self.due.len());
            polls += 1;
            if self.poll(4096) == Some(false) {
                panic!("end-of-file before the end of stream or the close");
            }
        }
        if self.at_end() {
            assert_eq!(self.poll(4096), Some(false), "no end-of-file at the end of stream");
        } else {
            assert!(self.ring_empty(), "packets left in the ring after the drain");
        }
    }

    fn check_closed(&mut self) {
        for _ in 0..self.packets + 4 {
            match self.poll(4096) {
                Some(false) => return,
                Some(true) => panic!("bytes after the drain"),
                None => {}
            }
        }
        panic!("no end-of-file after the writer closed");
    }
}
