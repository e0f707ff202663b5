//! An independent reading of the wire rules (`vmbus_ring::wire`), written without
//! the crate's parser, for the targets to check the crate's verdicts
//! against: which packets are sound, what they hold, and which field is to
//! blame when one is not.
//!
//! Where several fields of one packet are wrong, the wire rules do not say
//! which one a reader must name, so a corrupt verdict is a set of fields,
//! any of which the reader may report.

use vmbus_ring::{
    Field, GpaRangeBuf, IncomingPacket, OwnedPacketKind, PayloadRange, TransferPageRange, UnsupportedPacket,
};

/// Bytes per ring page and GPA page.
pub const PAGE: u32 = 4096;
const DESCRIPTOR: u32 = 16;
const FOOTER: u32 = 8;
const TYPE_HEADER: u32 = 8;

/// `len` bytes of the data area `area` from offset `at`, wrapping once.
pub fn wrapped(area: &[u8], at: u32, len: usize) -> Vec<u8> {
    let at = at as usize;
    assert!(at < area.len() && len <= area.len(), "oracle misuse: {len} bytes at {at}");
    area[at..].iter().chain(&area[..at]).take(len).copied().collect()
}

/// Whether `value` is a valid ring index for a `data_len`-byte data area.
pub fn index_valid(value: u32, data_len: u32) -> bool {
    value.is_multiple_of(8) && value < data_len
}

/// Bytes written and not yet read between two valid indices.
pub fn used(data_len: u32, write: u32, read: u32) -> u32 {
    (u64::from(write) + u64::from(data_len) - u64::from(read)) as u32 % data_len
}

/// Bytes a writer may use: the unused bytes less the 8 that keep a full
/// ring from reading as empty.
pub fn free(data_len: u32, write: u32, read: u32) -> u32 {
    data_len - used(data_len, write, read) - 8
}

/// `at + len` wrapped into the data area.
fn advance(data_len: u32, at: u32, len: u32) -> u32 {
    ((u64::from(at) + u64::from(len)) % u64::from(data_len)) as u32
}

/// One GPA range as the wire rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpaRangeModel {
    /// Offset into the first page.
    pub byte_offset: u32,
    /// Length in bytes.
    pub byte_count: u32,
    /// One guest page number per page spanned.
    pub gpns: Vec<u64>,
}

/// A sound GPA range list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpaListModel {
    /// Words the ranges take, from the start of the list.
    pub used_words: usize,
    /// The ranges.
    pub ranges: Vec<GpaRangeModel>,
}

/// Pages a range spans.
pub fn pages_spanned(byte_offset: u32, byte_count: u32) -> u64 {
    (u64::from(byte_offset) + u64::from(byte_count)).div_ceil(u64::from(PAGE))
}

/// Reads `count` GPA ranges from the start of `words`; `Err` holds the
/// fields the first bad range breaks.
pub fn parse_gpa(words: &[u64], count: u32) -> Result<GpaListModel, Vec<Field>> {
    let mut used = 0;
    let mut ranges = Vec::new();
    for _ in 0..count {
        let Some(&header) = words.get(used) else {
            return Err(vec![Field::RangeCount]);
        };
        let (byte_count, byte_offset) = (header as u32, (header >> 32) as u32);
        let pages = pages_spanned(byte_offset, byte_count);
        let left = (words.len() - used - 1) as u64;
        let mut broken = Vec::new();
        if byte_count == 0 {
            broken.push(Field::GpaByteCount);
        }
        if byte_offset >= PAGE {
            broken.push(Field::GpaByteOffset);
        }
        if pages > left {
            broken.push(Field::GpaPageCount);
        }
        if !broken.is_empty() {
            return Err(broken);
        }
        let gpns = words[used + 1..][..pages as usize].to_vec();
        ranges.push(GpaRangeModel { byte_offset, byte_count, gpns });
        used += 1 + pages as usize;
    }
    Ok(GpaListModel { used_words: used, ranges })
}

impl GpaListModel {
    /// The list built through the crate's builder.
    pub fn to_buf(&self) -> GpaRangeBuf {
        let mut buf = GpaRangeBuf::new();
        for range in &self.ranges {
            buf.push(range.byte_offset, range.byte_count, &range.gpns).expect("a range the rules accept must build");
        }
        buf
    }

    /// The wire words of the list.
    pub fn words(&self) -> Vec<u64> {
        let mut words = Vec::new();
        for range in &self.ranges {
            words.push(u64::from(range.byte_count) | u64::from(range.byte_offset) << 32);
            words.extend(&range.gpns);
        }
        words
    }
}

/// What a reader must make of the bytes at a packet position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The read position is at the write index.
    Empty,
    /// The packet breaks the wire rules; the reader may name any of these fields.
    Corrupt(Vec<Field>),
    /// A sound packet (or a sound one of a type the reader does not parse),
    /// taking `size` ring bytes, footer included.
    Packet {
        /// The packet as the reader must hand it out.
        result: Result<ExpectedPacket, UnsupportedPacket>,
        /// Its size in the ring.
        size: u32,
    },
}

/// A packet as the reader must hand it out, with its range list as the
/// batch must give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPacket {
    /// Data-area offset where the packet starts.
    pub offset: u32,
    /// Transaction id.
    pub transaction_id: u64,
    /// Whether the sender asked for a completion.
    pub completion_requested: bool,
    /// Kind, type-specific header and range list.
    pub kind: OwnedPacketKind,
    /// Where the payload lies.
    pub payload: PayloadRange,
}

impl ExpectedPacket {
    /// What the reader handed out: `packet`, with `kind` read through its batch.
    pub fn read(packet: &IncomingPacket, kind: OwnedPacketKind) -> Self {
        let IncomingPacket { offset, transaction_id, completion_requested, payload, .. } = *packet;
        Self { offset, transaction_id, completion_requested, kind, payload }
    }
}

/// Every field the type-specific checks can name.
const TYPE_FIELDS: [Field; 5] =
    [Field::DataOffset8, Field::RangeCount, Field::GpaByteCount, Field::GpaByteOffset, Field::GpaPageCount];

/// The packet at data-area offset `at` of `area`, with the writer's index at
/// `write` (both valid indices).
pub fn packet_at(area: &[u8], write: u32, at: u32) -> Expected {
    let data_len = area.len() as u32;
    let available = used(data_len, write, at);
    if available == 0 {
        return Expected::Empty;
    }
    let descriptor = wrapped(area, at, DESCRIPTOR as usize);
    let u16_at = |i: usize| u16::from_le_bytes([descriptor[i], descriptor[i + 1]]);
    let (packet_type, data_offset8, length8, flags) = (u16_at(0), u16_at(2), u16_at(4), u16_at(6));
    let transaction_id = u64::from_le_bytes(descriptor[8..16].try_into().unwrap());
    let size = u32::from(length8) * 8 + FOOTER;

    let mut broken = Vec::new();
    if size > available {
        broken.push(Field::Length8);
    }
    if data_offset8 < 2 || data_offset8 > length8 {
        broken.push(Field::DataOffset8);
    }
    if flags & !1 != 0 {
        broken.push(Field::Flags);
    }
    if !broken.is_empty() {
        // The framing is unsound, so the reader may also have looked at a
        // type-specific header first.
        if matches!(packet_type, 7 | 9) {
            broken.extend(TYPE_FIELDS);
        }
        return Expected::Corrupt(broken);
    }

    let data_offset = u32::from(data_offset8) * 8;
    let payload = PayloadRange::new(advance(data_len, at, data_offset), (u32::from(length8 - data_offset8)) * 8);
    let room = data_offset - DESCRIPTOR;
    let header_at = advance(data_len, at, DESCRIPTOR);
    let list_at = advance(data_len, at, DESCRIPTOR + TYPE_HEADER);
    let kind = match packet_type {
        6 => OwnedPacketKind::InBand,
        11 => OwnedPacketKind::Completion,
        7 | 9 if room < TYPE_HEADER => return Expected::Corrupt(vec![Field::DataOffset8]),
        7 => {
            let header = wrapped(area, header_at, TYPE_HEADER as usize);
            let set_id = u16::from_le_bytes([header[0], header[1]]);
            let count = u32::from_le_bytes(header[4..8].try_into().unwrap());
            if u64::from(count) * 8 > u64::from(room - TYPE_HEADER) {
                return Expected::Corrupt(vec![Field::RangeCount]);
            }
            let bytes = wrapped(area, list_at, count as usize * 8);
            let ranges: Vec<TransferPageRange> = bytes
                .chunks_exact(8)
                .map(|range| {
                    let byte_count = u32::from_le_bytes(range[..4].try_into().unwrap());
                    let byte_offset = u32::from_le_bytes(range[4..].try_into().unwrap());
                    TransferPageRange::new(byte_count, byte_offset)
                })
                .collect();
            OwnedPacketKind::TransferPages { set_id, sender_owns_set: header[2] != 0, ranges }
        }
        9 => {
            let header = wrapped(area, header_at, TYPE_HEADER as usize);
            let count = u32::from_le_bytes(header[4..8].try_into().unwrap());
            if count == 0 {
                return Expected::Corrupt(vec![Field::RangeCount]);
            }
            let bytes = wrapped(area, list_at, (room - TYPE_HEADER) as usize);
            let words: Vec<u64> = bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).collect();
            match parse_gpa(&words, count) {
                Ok(list) => OwnedPacketKind::GpaDirect(list.to_buf()),
                Err(fields) => return Expected::Corrupt(fields),
            }
        }
        other => {
            let unsupported = UnsupportedPacket { packet_type: other, transaction_id, offset: at, payload };
            return Expected::Packet { result: Err(unsupported), size };
        }
    };
    let completion_requested = flags & 1 != 0;
    let packet = ExpectedPacket { offset: at, transaction_id, completion_requested, kind, payload };
    Expected::Packet { result: Ok(packet), size }
}
