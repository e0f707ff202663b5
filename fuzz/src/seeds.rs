//! The seed corpus, generated: valid rings with every packet type, wrapping
//! rings, valid GPA range lists, valid pipe streams, operation sequences,
//! and a few corrupt ones of each.
//!
//! `cargo run --example seed_corpus` (in `fuzz/`) writes them into
//! `corpus/<target>/`, one file each, named after what they hold; the
//! corpus tests (`tests/corpus.rs`) run every target's body over them.

use crate::gpa_ranges::{encode_build, encode_parse, BuildStep};
use crate::parse::{encode_image, Backend};
use crate::pipe::{framed, Record};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use vmbus_hostile_tests::model::{Op, WriteKind};
use vmbus_ring::{
    ring_image, ControlPage, ControlWord, FlatRingMem, GpaRangeBuf, IncomingRing, OutgoingPacket, OutgoingRing,
    RingMem, TransferPageRange,
};

/// The targets, in the order their seeds are generated.
pub const TARGETS: [&str; 4] = ["parse", "ops", "gpa_ranges", "pipe"];

/// One seed: the target it is for, a file name saying what it holds, its bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target.
    pub target: &'static str,
    /// File name in `corpus/<target>/`.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    seeds.extend(parse_seeds().into_iter().map(|(name, bytes)| Seed { target: "parse", name, bytes }));
    seeds.extend(ops_seeds().into_iter().map(|(name, bytes)| Seed { target: "ops", name, bytes }));
    seeds.extend(gpa_seeds().into_iter().map(|(name, bytes)| Seed { target: "gpa_ranges", name, bytes }));
    seeds.extend(pipe_seeds().into_iter().map(|(name, bytes)| Seed { target: "pipe", name, bytes }));
    seeds
}

/// Writes every seed into `root/<target>/<name>`; returns how many.
pub fn write_corpus(root: &Path) -> io::Result<usize> {
    let seeds = all();
    for seed in &seeds {
        let dir = root.join(seed.target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(&seed.name), &seed.bytes)?;
    }
    Ok(seeds.len())
}

// ---------------------------------------------------------------------------
// parse

const BACKENDS: [Backend; 4] = [Backend::Flat, Backend::Paged, Backend::Mapped, Backend::DoubleMapped];

/// A ring of `pages` data pages with its two endpoints.
struct Ring {
    mem: FlatRingMem,
    writer: OutgoingRing<FlatRingMem>,
    reader: IncomingRing<FlatRingMem>,
}

impl Ring {
    fn new(pages: usize) -> Self {
        let mem = FlatRingMem::new(pages * 4096).unwrap();
        Self { writer: OutgoingRing::new(mem.clone()).unwrap(), reader: IncomingRing::new(mem.clone()).unwrap(), mem }
    }

    fn data_len(&self) -> u32 {
        self.mem.data_len() as u32
    }

    /// Moves both indices to `offset` by writing and consuming filler packets.
    fn move_to(&mut self, offset: u32) {
        loop {
            let distance = (offset + self.data_len() - self.writer.write_index()) % self.data_len();
            // A packet takes 24 to `data_len - 8` bytes: a shorter distance
            // is gone round half the ring first.
            let size = match distance {
                0 => return,
                1..24 => self.data_len() / 2,
                _ => distance,
            };
            self.writer.write(&OutgoingPacket::in_band(0), &[&vec![0xee; size as usize - 24]]).unwrap();
            let mut batch = self.reader.read_batch();
            batch.next().unwrap().unwrap();
            let _ = batch.commit();
        }
    }

    /// Writes one packet of each kind the writer supports.
    fn write_every_kind(&mut self, tid: u64, payload_len: usize) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i as u64 * 7 + tid) as u8).collect();
        let transfer =
            [TransferPageRange::new(1500, 0), TransferPageRange::new(900, 0x1000), TransferPageRange::new(1, 7)];
        let mut gpa = GpaRangeBuf::new();
        gpa.push_contiguous(0x1234_5010, 6000).unwrap();
        gpa.push(4095, 2, &[0xdead, 0xbeef]).unwrap();
        let mut batch = self.writer.write_batch();
        batch.write(&OutgoingPacket::in_band(tid).with_completion_requested(), &[&payload]).unwrap();
        batch.write(&OutgoingPacket::completion(tid + 1), &[&payload[..payload_len / 2]]).unwrap();
        batch.write(&OutgoingPacket::transfer_pages(tid + 2, 7, true, &transfer), &[&payload]).unwrap();
        batch.write(&OutgoingPacket::gpa_direct(tid + 3, gpa.ranges()), &[b"gpa"]).unwrap();
        batch.write(&OutgoingPacket::in_band(tid + 4), &[]).unwrap();
        let _ = batch.commit();
    }

    fn image(&self) -> Vec<u8> {
        ring_image(&self.mem)
    }
}

/// A raw packet: descriptor, `body` (type header and payload, a multiple of
/// 8 bytes), footer naming `start`.
fn raw_packet(packet_type: u16, data_offset8: u16, flags: u16, tid: u64, body: &[u8], start: u32) -> Vec<u8> {
    assert_eq!(body.len() % 8, 0);
    let length8 = (16 + body.len()) as u16 / 8;
    let mut bytes = Vec::new();
    for field in [packet_type, data_offset8, length8, flags] {
        bytes.extend(field.to_le_bytes());
    }
    bytes.extend(tid.to_le_bytes());
    bytes.extend(body);
    bytes.extend((u64::from(start) << 32).to_le_bytes());
    bytes
}

/// A one-page ring image holding `packets` (raw bytes) from offset 0, the
/// write index after them.
fn raw_ring(packets: &[Vec<u8>]) -> Vec<u8> {
    let mem = FlatRingMem::new(4096).unwrap();
    let mut at = 0;
    for packet in packets {
        mem.write_data(at, packet);
        at += packet.len();
    }
    mem.store(ControlWord::WriteIndex, at as u32, Ordering::Relaxed);
    ring_image(&mem)
}

fn parse_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |name: String, image: Vec<u8>, n: usize| {
        let backend = BACKENDS[n % BACKENDS.len()];
        seeds.push((format!("{name}-{backend:?}").to_lowercase(), encode_image(&image, backend)));
    };

    for (n, pages) in (1..=4).enumerate() {
        add(format!("empty-{pages}p"), Ring::new(pages).image(), n);
    }

    // Every packet kind, on each ring size, with several payload lengths.
    let mut n = 0;
    for pages in 1..=4 {
        for payload_len in [0, 5, 64, 300] {
            let mut ring = Ring::new(pages);
            ring.write_every_kind(0x100 * payload_len as u64 + 1, payload_len);
            add(format!("every-kind-{pages}p-payload{payload_len}"), ring.image(), n);
            n += 1;
        }
    }

    // Wrapping: the next packets start just before the end of the data
    // area, so descriptors, headers, payloads and footers wrap.
    for pages in [1, 2] {
        let data_len = pages * 4096;
        for back in [8, 16, 24, 40, 56, 200] {
            let mut ring = Ring::new(pages as usize);
            ring.move_to(data_len - back);
            ring.write_every_kind(back.into(), 40);
            add(format!("wrap-{pages}p-at-end-minus-{back}"), ring.image(), n);
            n += 1;
        }
    }

    // Partly read: the reader has committed some packets.
    {
        let mut ring = Ring::new(2);
        ring.write_every_kind(1, 100);
        let mut batch = ring.reader.read_batch();
        batch.next().unwrap().unwrap();
        batch.next().unwrap().unwrap();
        let _ = batch.commit();
        ring.write_every_kind(9, 10);
        add("partly-read-2p".into(), ring.image(), n);
        n += 1;
        // The writer waits for space, with a peer's odd pending send sizes.
        for pending in [64, 4095, 8191, 0xffff_ffff] {
            ring.mem.store(ControlWord::PendingSendSize, pending, Ordering::Relaxed);
            add(format!("partly-read-2p-pending{pending}"), ring.image(), n);
            n += 1;
        }
    }

    // Full rings: a writer cannot add even the smallest packet. The 4-page
    // one also makes libFuzzer's default -max_len cover a whole 4-page area.
    for pages in [1, 4] {
        let mut ring = Ring::new(pages);
        ring.move_to(1000);
        while ring.writer.write(&OutgoingPacket::in_band(3), &[&[1; 100]]).is_ok() {}
        while ring.writer.write(&OutgoingPacket::in_band(4), &[]).is_ok() {}
        add(format!("full-{pages}p"), ring.image(), n);
        n += 1;
    }

    // Types the reader does not parse, each followed by a good packet.
    for packet_type in [0u16, 1, 2, 3, 4, 5, 8, 10, 12, 13, 0x7fff, 0xffff] {
        let first = raw_packet(packet_type, 2, 0, 0x77, &[0xab; 16], 0);
        let second = raw_packet(6, 2, 1, 0x78, b"after it", first.len() as u32);
        add(format!("unsupported-type{packet_type}"), raw_ring(&[first, second]), n);
        n += 1;
    }

    // Corrupt packets after a good one.
    let good = raw_packet(6, 2, 0, 1, b"good one", 0);
    let at = good.len() as u32;
    let gpa_header = |reserved: u32, count: u32, words: &[u64]| {
        let mut body = reserved.to_le_bytes().to_vec();
        body.extend(count.to_le_bytes());
        words.iter().for_each(|word| body.extend(word.to_le_bytes()));
        body
    };
    let range = |count: u32, offset: u32| u64::from(count) | u64::from(offset) << 32;
    let transfer_header = |count: u32| {
        let mut body = vec![5, 0, 1, 0xff];
        body.extend(count.to_le_bytes());
        body.extend([0; 16]);
        body
    };
    let corrupt: Vec<(&str, Vec<u8>)> = vec![
        ("data-offset8-1", raw_packet(6, 1, 0, 2, &[0; 8], at)),
        ("data-offset8-past-length8", raw_packet(6, 9, 0, 2, &[0; 8], at)),
        ("flags-bit1", raw_packet(6, 2, 2, 2, &[0; 8], at)),
        ("gpa-no-range", raw_packet(9, 3, 0, 2, &gpa_header(0, 0, &[]), at)),
        ("gpa-header-missing", raw_packet(9, 2, 0, 2, &[0; 8], at)),
        ("gpa-offset-4096", raw_packet(9, 5, 0, 2, &gpa_header(0, 1, &[range(8, 4096), 1]), at)),
        ("gpa-count-0-bytes", raw_packet(9, 5, 0, 2, &gpa_header(0, 1, &[range(0, 0), 1]), at)),
        ("gpa-pages-missing", raw_packet(9, 5, 0, 2, &gpa_header(0, 1, &[range(5000, 0), 1]), at)),
        ("gpa-count-too-big", raw_packet(9, 5, 0, 2, &gpa_header(0, 2, &[range(8, 0), 1]), at)),
        ("gpa-count-max", raw_packet(9, 5, 0, 2, &gpa_header(0xffff_ffff, u32::MAX, &[range(8, 0), 1]), at)),
        ("transfer-count-too-big", raw_packet(7, 5, 0, 2, &transfer_header(3), at)),
        ("transfer-count-max", raw_packet(7, 5, 0, 2, &transfer_header(u32::MAX), at)),
        ("transfer-header-missing", raw_packet(7, 2, 0, 2, &[0; 8], at)),
    ];
    for (name, packet) in corrupt {
        add(format!("corrupt-{name}"), raw_ring(&[good.clone(), packet]), n);
        n += 1;
    }
    // Reserved fields holding garbage are ignored: a sound packet.
    let garbage = raw_packet(9, 5, 0, 2, &gpa_header(0xffff_ffff, 1, &[range(8, 0), 1]), at);
    add("gpa-reserved-garbage".into(), raw_ring(&[good.clone(), garbage]), n);
    n += 1;
    // A packet claiming more bytes than were written.
    {
        let mut image = raw_ring(&[good.clone(), raw_packet(6, 2, 0, 2, &[0; 64], at)]);
        image[..4].copy_from_slice(&(at + 32).to_le_bytes());
        add("corrupt-length8-past-write-index".into(), image, n);
        n += 1;
    }
    // Corrupt control words.
    for (name, write, read) in [
        ("write-unaligned", 0x44u32, 0u32),
        ("write-past-end", 4096, 0),
        ("read-unaligned", 0, 0x13),
        ("read-past-end", 0, 0x1_0000),
        ("both-max", u32::MAX, u32::MAX),
    ] {
        let mut image = raw_ring(std::slice::from_ref(&good));
        image[..4].copy_from_slice(&write.to_le_bytes());
        image[4..8].copy_from_slice(&read.to_le_bytes());
        add(format!("corrupt-control-{name}"), image, n);
        n += 1;
    }
    seeds
}

// ---------------------------------------------------------------------------
// ops

fn write(kind: WriteKind, payload_len: u16, range_count: u8) -> Op {
    Op::Write { kind, payload_len, range_count, completion_requested: payload_len % 2 == 1 }
}

fn ops_seeds() -> Vec<(String, Vec<u8>)> {
    use Op::*;
    use WriteKind::*;
    let every_kind = vec![
        write(InBand, 5, 0),
        write(Completion, 0, 0),
        write(TransferPages, 100, 3),
        write(GpaDirect, 17, 2),
        write(GpaDirect, 1, 0),
        CommitWrite,
        Read,
        Read,
        Read,
        Read,
        Read,
        CommitRead,
    ];
    let mut wrapping = Vec::new();
    for round in 0..12u16 {
        wrapping.extend([write(InBand, 700 + round * 40, 0), write(TransferPages, round * 3, (round % 4) as u8)]);
        wrapping.extend([CommitWrite, Read, Read, CommitRead]);
    }
    let batches = vec![
        write(InBand, 10, 0),
        write(InBand, 20, 0),
        RevertWrite,
        write(Completion, 30, 0),
        write(GpaDirect, 40, 4),
        CommitWrite,
        Read,
        RevertRead,
        Read,
        Read,
        Read,
        CommitRead,
        CommitRead,
        CommitWrite,
    ];
    let mut fill_and_wait = vec![SetInterruptMask(true)];
    fill_and_wait.extend((0..20).map(|i| write(InBand, 500 + i, 0)));
    fill_and_wait.extend([CommitWrite, SetPendingSendSize(3000), Read, Read, CommitRead, Read, Read, Read, CommitRead]);
    fill_and_wait.extend([ClearPendingSendSize, PrepareToSleep, write(InBand, 1, 0), CommitWrite, PrepareToSleep]);
    let mut foreign_pending = vec![write(InBand, 4000, 0), write(InBand, 4000, 0), CommitWrite];
    foreign_pending.extend([StorePendingSendSize(8191), Read, CommitRead, StorePendingSendSize(u32::MAX), Read]);
    foreign_pending.extend([CommitRead, StorePendingSendSize(4095), SetPendingSendSize(u16::MAX), PrepareToSleep]);
    let too_large = vec![write(InBand, u16::MAX, 0), write(GpaDirect, 8000, 255), SetPendingSendSize(9000), Read];
    let sleep = vec![PrepareToSleep, SetInterruptMask(true), write(Completion, 3, 0), CommitWrite, PrepareToSleep];

    let mut seeds: Vec<(String, Vec<Op>)> = vec![
        ("empty".into(), vec![]),
        ("every-kind".into(), every_kind),
        ("wrapping".into(), wrapping),
        ("batches".into(), batches),
        ("fill-and-wait".into(), fill_and_wait),
        ("foreign-pending-send-size".into(), foreign_pending),
        ("too-large".into(), too_large),
        ("sleep".into(), sleep),
    ];
    // A few long pseudo-random sequences.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for n in 0..4 {
        let ops = (0..200)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let r = state;
                match r % 10 {
                    0..=3 => write(
                        [InBand, Completion, TransferPages, GpaDirect][(r >> 8) as usize % 4],
                        (r >> 16) as u16 % 1500,
                        (r >> 32) as u8 % 6,
                    ),
                    4 => CommitWrite,
                    5 | 6 => Read,
                    7 => CommitRead,
                    8 => [RevertWrite, RevertRead, PrepareToSleep, SetInterruptMask(r & 1 << 40 != 0)]
                        [(r >> 41) as usize % 4]
                        .clone(),
                    _ => [SetPendingSendSize((r >> 20) as u16 % 5000), ClearPendingSendSize][(r >> 50) as usize % 2]
                        .clone(),
                }
            })
            .collect();
        seeds.push((format!("random-{n}"), ops));
    }
    seeds.into_iter().map(|(name, ops)| (name, crate::ops::encode(&ops))).collect()
}

// ---------------------------------------------------------------------------
// gpa_ranges

fn gpa_seeds() -> Vec<(String, Vec<u8>)> {
    let range = |count: u32, offset: u32| u64::from(count) | u64::from(offset) << 32;
    let mut seeds = vec![
        ("parse-empty".into(), encode_parse(0, &[])),
        ("parse-one-page".into(), encode_parse(1, &[range(100, 0), 7])),
        ("parse-two-pages".into(), encode_parse(1, &[range(5000, 100), 7, 8])),
        ("parse-last-byte-of-page".into(), encode_parse(1, &[range(1, 4095), 9])),
        ("parse-straddle".into(), encode_parse(1, &[range(2, 4095), 9, 10])),
        (
            "parse-three-ranges".into(),
            encode_parse(3, &[range(4096, 0), 1, range(8192, 8), 2, 3, 4, range(1, 0), u64::MAX]),
        ),
        ("parse-trailing-words".into(), encode_parse(1, &[range(8, 0), 1, 0xdead, 0xbeef])),
        ("parse-count-0-with-words".into(), encode_parse(0, &[range(8, 0), 1])),
        ("parse-count-max".into(), encode_parse(u32::MAX, &[range(8, 0), 1, range(8, 0), 2])),
        ("parse-count-too-big".into(), encode_parse(3, &[range(8, 0), 1, range(8, 0), 2])),
        ("parse-byte-count-0".into(), encode_parse(1, &[range(0, 0), 1])),
        ("parse-offset-4096".into(), encode_parse(1, &[range(8, 4096), 1])),
        ("parse-pages-missing".into(), encode_parse(1, &[range(9000, 0), 1, 2])),
        ("parse-huge-range".into(), encode_parse(1, &[range(u32::MAX, 4095), 1])),
    ];
    let many: Vec<u64> = (0..64).flat_map(|i| [range(4096 - i, i), i.into()]).collect();
    seeds.push(("parse-64-ranges".into(), encode_parse(64, &many)));

    let push = |byte_offset: u16, byte_count: u32, gpns: &[u64]| BuildStep::Push {
        byte_offset,
        byte_count,
        gpns: gpns.to_vec(),
    };
    let contiguous = |gpa: u64, byte_count: u32| BuildStep::Contiguous { gpa, byte_count };
    let builds = [
        ("build-one", vec![push(0, 4096, &[1])]),
        ("build-mixed", vec![push(100, 5000, &[7, 8]), contiguous(0x5_0010, 8192), push(4095, 1, &[3])]),
        (
            "build-errors",
            vec![push(0, 0, &[1]), push(4096, 8, &[1]), push(0, 4097, &[1]), contiguous(0, 0), push(1, 1, &[2])],
        ),
        ("build-contiguous-large", vec![contiguous(0xffff_f000, 1 << 20), contiguous(u64::MAX - 4095, 4096)]),
        ("build-too-long", vec![contiguous(0, u32::MAX), contiguous(4095, 65_532 * 4096), push(0, 1, &[1])]),
        ("build-empty", vec![]),
    ];
    seeds.extend(builds.into_iter().map(|(name, steps)| (name.to_string(), encode_build(&steps))));
    seeds
}

// ---------------------------------------------------------------------------
// pipe

fn pipe_seeds() -> Vec<(String, Vec<u8>)> {
    let read = |size: u16| Record::Read { size, whole: false, blocking: size.is_multiple_of(2) };
    let whole = |blocking: bool| Record::Read { size: 0, whole: true, blocking };
    let message = |len: usize, fill: u8| Record::Data((0..len).map(|i| fill.wrapping_add(i as u8)).collect());
    let header = |packet_type: u32, len: u32, body: &[u8]| {
        let mut payload = packet_type.to_le_bytes().to_vec();
        payload.extend(len.to_le_bytes());
        payload.extend(body);
        Record::Raw(payload)
    };

    let streams: Vec<(&str, u8, Vec<Record>)> = vec![
        (
            "messages",
            1,
            vec![message(5, 1), message(0, 0), message(100, 2), read(4096), whole(true), read(10), read(3), read(200)],
        ),
        (
            "partial-reads",
            2,
            vec![
                message(1000, 3),
                read(1),
                read(7),
                read(8),
                read(500),
                read(0),
                whole(false),
                message(9, 4),
                read(4),
                whole(true),
            ],
        ),
        ("max-message", 7, vec![message(16384, 5), read(16383), read(1), message(16384, 6), whole(true)]),
        ("fills-the-ring", 0, (0..40).map(|i| message(300 + i, i as u8)).collect()),
        ("repeated-ends", 0, (0..40).map(|_| message(0, 0)).chain([message(3, 9), read(2)]).collect()),
        (
            "end-of-stream",
            1,
            vec![
                message(7, 1),
                read(3),
                message(0, 0),
                read(4096),
                whole(true),
                message(5, 2),
                read(4096),
                whole(false),
            ],
        ),
        (
            "data-after-the-end-fills-the-ring",
            0,
            [message(0, 0)].into_iter().chain((0..40).map(|i| message(300 + i, i as u8))).collect(),
        ),
        (
            "bad-headers",
            1,
            vec![
                header(2, 4, b"part"),
                header(3, 0, b""),
                header(4, 0, b""),
                header(0, 0, b""),
                header(0xffff_ffff, 1, b"x"),
                header(1, 16385, &[0; 8]),
                header(1, 9, b"12345678"),
                header(1, 8, b"1234567"),
                Record::Raw(b"short".to_vec()),
                Record::Raw(Vec::new()),
                read(4096),
                Record::Raw(framed(b"framed by hand")),
                read(4),
                read(4096),
            ],
        ),
        (
            "foreign-packets",
            1,
            vec![
                Record::Foreign(0, framed(b"completion")),
                Record::Foreign(1, framed(b"transfer pages")),
                Record::Foreign(2, framed(b"gpa direct")),
                message(6, 7),
                whole(false),
                whole(true),
            ],
        ),
        ("padding-counts", 0, vec![header(1, 3, b"abc"), header(1, 8, b"abc"), read(2), read(100), read(100)]),
    ];
    let mut seeds = Vec::new();
    for (name, pages_less_one, records) in streams {
        seeds.push((format!("message-{name}"), crate::pipe::encode(pages_less_one + 1, false, &records)));
        seeds.push((format!("bytes-{name}"), crate::pipe::encode(pages_less_one + 1, true, &records)));
    }
    seeds
}
