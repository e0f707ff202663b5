//! Ring images and the ring decoder: images written through the crate's own
//! writer decode to the expected lines, round trip through `load_image`, and
//! corrupted images stop at the right packet with the reader's reason.

mod common;

use common::{endpoints_at, AnyMem, PAGE};
use std::sync::atomic::Ordering;
use vmbus_ring::{
    load_image, ring_image, ControlPage, ControlWord, CorruptError, DumpEnd, Field, FlatRingMem, GpaRangeBuf,
    IncomingRing, OpenError, OutgoingPacket, OutgoingRing, OwnedPacketKind, ReadError, RingDump, RingMem,
    TransferPageRange,
};

/// The offsets and transaction ids of the packets [`tour`] leaves unread.
const TOUR: [(u32, u64); 7] = [(0xfc0, 1), (0xff0, 1), (0x10, 2), (0x50, 3), (0xa0, 4), (0xc0, 5), (0xe0, 6)];

/// A one-page ring holding one unread packet of every kind, in a state an
/// earlier reader left: the writer started at 0xf80, the reader read and
/// committed the first packet (so the read index is 0xfc0), and the
/// second unread packet wraps the end of the data area. The packets at 0xa0
/// and 0xc0 are in-band packets whose type is then overwritten with 1
/// (synch, historic) and 99 (never defined).
fn tour() -> FlatRingMem {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let (mut writer, mut reader) = endpoints_at(&mem, 0xf80);
    writer.write(&OutgoingPacket::in_band(0x10), &[&[0xaa; 40]]).unwrap();
    let mut batch = reader.read_batch();
    assert_eq!(batch.next().unwrap().unwrap().offset, 0xf80);
    let _ = batch.commit();

    let transfer_ranges = [TransferPageRange::new(1500, 0), TransferPageRange::new(900, 0x1000)];
    let mut gpa = GpaRangeBuf::new();
    gpa.push_contiguous(0x1234_5010, 6000).unwrap();
    gpa.push(0, 512, &[0x99]).unwrap();
    let mut batch = writer.write_batch();
    batch.write(&OutgoingPacket::in_band(1).with_completion_requested(), &[&[1; 24]]).unwrap();
    batch.write(&OutgoingPacket::completion(1), &[b"status"]).unwrap();
    batch.write(&OutgoingPacket::transfer_pages(2, 3, false, &transfer_ranges), &[&[2; 16]]).unwrap();
    batch.write(&OutgoingPacket::gpa_direct(3, gpa.ranges()), &[b"scsi cdb"]).unwrap();
    batch.write(&OutgoingPacket::in_band(4), &[b"synch"]).unwrap();
    batch.write(&OutgoingPacket::in_band(5), &[b"unknown"]).unwrap();
    batch.write(&OutgoingPacket::in_band(6), &[]).unwrap();
    let _ = batch.commit();
    set_type(&mem, 0xa0, 1);
    set_type(&mem, 0xc0, 99);
    mem.store(ControlWord::InterruptMask, 1, Ordering::Relaxed);
    mem.store(ControlWord::PendingSendSize, 512, Ordering::Relaxed);
    mem
}

fn set_type(mem: &impl RingMem, packet: u32, packet_type: u16) {
    mem.write_data(packet as usize, &packet_type.to_le_bytes());
}

/// Overwrites bytes of an image's data area at `offset`.
fn patch(image: &mut [u8], offset: usize, bytes: &[u8]) {
    image[PAGE + offset..PAGE + offset + bytes.len()].copy_from_slice(bytes);
}

fn decode_image(image: &[u8]) -> RingDump {
    RingDump::decode(&load_image(image).unwrap())
}

fn last_line(dump: &RingDump) -> String {
    dump.to_string().lines().last().unwrap().to_string()
}

const TOUR_DUMP: &str = "\
data area: 4096 bytes
write index: 0xf8
read index: 0xfc0
interrupt mask: 0x1
pending send size: 512
feature bits: 0x1
bytes used: 312
bytes free: 3776
0xfc0: in-band data (type 6), tid 0x1, flags 0x1 (completion requested), data_offset8 2, length8 5 (header 0, payload 24 bytes)
0xff0: completion (type 11), tid 0x1, flags 0x0, data_offset8 2, length8 3 (header 0, payload 8 bytes), wraps
0x10: transfer pages (type 7), tid 0x2, flags 0x0, data_offset8 5, length8 7 (header 24, payload 16 bytes), set 3, ranges [1500 bytes at 0x0, 900 bytes at 0x1000]
0x50: GPA direct (type 9), tid 0x3, flags 0x0, data_offset8 8, length8 9 (header 48, payload 8 bytes), ranges [6000 bytes at 0x10 on pages 0x12345 0x12346, 512 bytes at 0x0 on page 0x99]
0xa0: synch (type 1, unsupported), tid 0x4, flags 0x0, data_offset8 2, length8 3 (header 0, payload 8 bytes)
0xc0: unknown (type 99, unsupported), tid 0x5, flags 0x0, data_offset8 2, length8 3 (header 0, payload 8 bytes)
0xe0: in-band data (type 6), tid 0x6, flags 0x0, data_offset8 2, length8 2 (header 0, payload 0 bytes)
end: 7 packets";

#[test]
fn every_packet_type_decodes_to_the_expected_lines() {
    let dump = RingDump::decode(&tour());
    assert_eq!(dump.to_string(), TOUR_DUMP);
    assert!(dump.is_clean());
}

#[test]
fn records_carry_the_reader_fields() {
    let dump = RingDump::decode(&tour());
    let found: Vec<(u32, u64)> = dump.packets.iter().map(|p| (p.offset, p.transaction_id)).collect();
    assert_eq!(found, TOUR);
    assert_eq!((dump.state.read_index, dump.state.write_index), (0xfc0, 0xf8));
    assert_eq!((dump.state.bytes_used, dump.state.bytes_free), (Some(312), Some(3776)));

    let [request, completion, transfer, gpa, synch, unknown, empty] = &dump.packets[..] else { panic!() };
    assert_eq!(request.kind, Some(OwnedPacketKind::InBand));
    assert!(request.completion_requested() && request.flags == 1 && !request.wraps);
    assert_eq!(completion.kind, Some(OwnedPacketKind::Completion));
    assert!(completion.wraps && !completion.completion_requested());
    assert_eq!((completion.size(), completion.payload_len()), (32, 8));

    let Some(OwnedPacketKind::TransferPages { set_id, sender_owns_set, ranges }) = &transfer.kind else {
        panic!("{transfer:?}")
    };
    assert_eq!((*set_id, *sender_owns_set), (3, false));
    assert_eq!(ranges[..], [TransferPageRange::new(1500, 0), TransferPageRange::new(900, 0x1000)]);
    assert_eq!((transfer.data_offset8, transfer.length8, transfer.header_len()), (5, 7, 24));

    let Some(OwnedPacketKind::GpaDirect(ranges)) = &gpa.kind else { panic!("{gpa:?}") };
    let ranges: Vec<(u32, u32, Vec<u64>)> =
        ranges.ranges().iter().map(|r| (r.byte_count, r.byte_offset, r.page_numbers().collect())).collect();
    assert_eq!(ranges, [(6000, 0x10, vec![0x12345, 0x12346]), (512, 0, vec![0x99])]);
    assert_eq!((gpa.header_len(), gpa.payload_len(), gpa.size()), (48, 8, 80));

    for (record, packet_type, name) in [(synch, 1, Some("synch")), (unknown, 99, None)] {
        assert!(!record.is_supported());
        assert_eq!((record.packet_type, record.type_name()), (packet_type, name));
        assert_eq!(record.payload_len(), 8);
    }
    assert_eq!((empty.payload_len(), empty.size()), (0, 24));
}

#[test]
fn decoding_changes_nothing() {
    let mem = tour();
    let before = ring_image(&mem);
    let dump = RingDump::decode(&mem);
    assert_eq!(ring_image(&mem), before);
    assert_eq!(RingDump::decode(&mem), dump);
    // A reader opened afterwards still starts at the first unread packet.
    let mut reader = IncomingRing::new(mem).unwrap();
    assert_eq!(reader.read_batch().next().unwrap().unwrap().offset, 0xfc0);
}

#[test]
fn images_round_trip_byte_for_byte() {
    for (name, mem) in AnyMem::all(2 * PAGE) {
        let (mut writer, mut reader) = endpoints_at(&mem, (2 * PAGE - 48) as u32);
        writer.write(&OutgoingPacket::in_band(1), &[&[7; 100]]).unwrap();
        let mut batch = reader.read_batch();
        batch.next().unwrap().unwrap();
        let _ = batch.commit();
        writer.write(&OutgoingPacket::completion(2).with_completion_requested(), &[&[8; 300]]).unwrap();
        mem.write_control(100, b"reserved bytes are kept too");

        let image = ring_image(&mem);
        assert_eq!(image.len(), PAGE + 2 * PAGE, "{name}");
        let loaded = load_image(&image).unwrap();
        assert_eq!(ring_image(&loaded), image, "{name}");
        assert_eq!(RingDump::decode(&loaded), RingDump::decode(&mem), "{name}");
        assert_eq!(RingDump::decode(&loaded).packets.len(), 1, "{name}");
    }
}

#[test]
fn load_image_rejects_bad_sizes() {
    for (len, data_len) in
        [(0, 0), (100, 0), (PAGE, 0), (PAGE + 8, 8), (2 * PAGE - 1, PAGE - 1), (2 * PAGE + 1, PAGE + 1)]
    {
        let image = vec![0; len];
        assert_eq!(load_image(&image).unwrap_err(), OpenError::InvalidSize { data_len }, "image of {len} bytes");
    }
    assert_eq!(load_image(&vec![0; 3 * PAGE]).unwrap().data_len(), 2 * PAGE);
}

/// Checks that `image` decodes the tour's packets before `offset`, then
/// stops there because `field` holds `value`.
fn assert_stops(image: &[u8], offset: u32, field: Field, value: u64) {
    let dump = decode_image(image);
    let kept = TOUR.iter().position(|&(at, _)| at == offset).unwrap();
    let found: Vec<(u32, u64)> = dump.packets.iter().map(|p| (p.offset, p.transaction_id)).collect();
    assert_eq!(found, TOUR[..kept], "{dump}");
    let error = CorruptError::new(field, value).in_packet(offset);
    assert_eq!(dump.end, DumpEnd::CorruptPacket { offset, error });
    assert_eq!(last_line(&dump), format!("stopped at data offset {offset:#x}: {error}"));
    // The reader on the same image fails the same way at the same packet.
    let mut reader = IncomingRing::new(load_image(image).unwrap()).unwrap();
    let mut batch = reader.read_batch();
    let outcome = std::iter::from_fn(|| match batch.next() {
        Ok(None) => None,
        other => Some(other),
    })
    .find_map(|read| read.err().filter(|error| !matches!(error, ReadError::Unsupported(_))));
    assert_eq!(outcome, Some(ReadError::Corrupt(error)));
}

#[test]
fn data_offset8_of_1_stops_at_its_packet() {
    let mut image = ring_image(&tour());
    patch(&mut image, 0x50 + 2, &1u16.to_le_bytes());
    assert_stops(&image, 0x50, Field::DataOffset8, 1);
    assert_eq!(
        last_line(&decode_image(&image)),
        "stopped at data offset 0x50: corrupt data_offset8: found 0x1 in the packet at data offset 0x50"
    );
}

#[test]
fn length_past_the_write_index_stops_at_its_packet() {
    let mut image = ring_image(&tour());
    // The last packet is 24 bytes and ends at the write index: one more word runs past it.
    patch(&mut image, 0xe0 + 4, &3u16.to_le_bytes());
    assert_stops(&image, 0xe0, Field::Length8, 3);
    // So does a length in the middle of the ring that reaches past the write index.
    let mut image = ring_image(&tour());
    patch(&mut image, 0x10 + 4, &0x400u16.to_le_bytes());
    assert_stops(&image, 0x10, Field::Length8, 0x400);
}

#[test]
fn gpa_byte_offset_4096_stops_at_its_packet() {
    let mut image = ring_image(&tour());
    // Descriptor (16), GPA-direct header (8), then the first range's byte_count and byte_offset.
    patch(&mut image, 0x50 + 16 + 8 + 4, &4096u32.to_le_bytes());
    assert_stops(&image, 0x50, Field::GpaByteOffset, 4096);
    assert_eq!(
        last_line(&decode_image(&image)),
        "stopped at data offset 0x50: corrupt GPA range byte_offset: found 0x1000 in the packet at data offset 0x50"
    );
}

#[test]
fn unknown_flag_bits_stop_at_their_packet() {
    let mut image = ring_image(&tour());
    // The wrapping packet: its descriptor sits in the last 16 bytes of the data area.
    patch(&mut image, 0xff0 + 6, &0x8001u16.to_le_bytes());
    assert_stops(&image, 0xff0, Field::Flags, 0x8001);
}

#[test]
fn unsupported_types_are_listed_and_decoding_continues() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    for tid in 0..5 {
        writer.write(&OutgoingPacket::in_band(tid).with_completion_requested(), &[&[0; 16]]).unwrap();
    }
    for (packet, packet_type) in [(0u32, 0u16), (2, 2), (3, 0xffff)] {
        set_type(&mem, packet * 40, packet_type);
    }
    let dump = RingDump::decode(&mem);
    assert!(dump.is_clean());
    let supported: Vec<bool> = dump.packets.iter().map(|p| p.is_supported()).collect();
    assert_eq!(supported, [false, true, false, false, true]);
    let lines: Vec<String> = dump.to_string().lines().skip(8).map(String::from).collect();
    assert_eq!(
        lines,
        [
            "0x0: invalid (type 0, unsupported), tid 0x0, flags 0x1 (completion requested), data_offset8 2, length8 4 (header 0, payload 16 bytes)",
            "0x28: in-band data (type 6), tid 0x1, flags 0x1 (completion requested), data_offset8 2, length8 4 (header 0, payload 16 bytes)",
            "0x50: add transfer page set (type 2, unsupported), tid 0x2, flags 0x1 (completion requested), data_offset8 2, length8 4 (header 0, payload 16 bytes)",
            "0x78: unknown (type 65535, unsupported), tid 0x3, flags 0x1 (completion requested), data_offset8 2, length8 4 (header 0, payload 16 bytes)",
            "0xa0: in-band data (type 6), tid 0x4, flags 0x1 (completion requested), data_offset8 2, length8 4 (header 0, payload 16 bytes)",
            "end: 5 packets",
        ]
    );
}

#[test]
fn a_corrupt_control_page_shows_its_words_and_no_packets() {
    let mut image = ring_image(&tour());
    image[..4].copy_from_slice(&0xfcu32.to_le_bytes()); // write index not a multiple of 8
    let dump = decode_image(&image);
    assert!(dump.packets.is_empty());
    let error = CorruptError::new(Field::WriteIndex, 0xfc);
    assert_eq!(dump.end, DumpEnd::CorruptControl(OpenError::Corrupt(error)));
    assert_eq!(
        dump.to_string(),
        "\
data area: 4096 bytes
write index: 0xfc
read index: 0xfc0
interrupt mask: 0x1
pending send size: 512
feature bits: 0x1
bytes used: ?
bytes free: ?
stopped at control page: corrupt write index: found 0xfc"
    );

    let mut image = ring_image(&tour());
    image[4..8].copy_from_slice(&0x1000u32.to_le_bytes()); // read index past the data area
    let dump = decode_image(&image);
    assert!(dump.packets.is_empty() && !dump.is_clean());
    assert_eq!(last_line(&dump), "stopped at control page: corrupt read index: found 0x1000");
}

#[test]
fn an_empty_ring_ends_with_no_packets() {
    let mem = FlatRingMem::new(PAGE).unwrap();
    let _ = endpoints_at(&mem, 0x100);
    let dump = RingDump::decode(&mem);
    assert!(dump.is_clean() && dump.packets.is_empty());
    assert_eq!(last_line(&dump), "end: 0 packets");
    assert!(dump.to_string().contains("\nbytes used: 0\nbytes free: 4088\n"));
}

/// Runs the built `ringdump` example over image files and checks its exit
/// codes. Skipped (with a message) when the example has not been built:
/// `cargo test -p vmbus_ring` builds it, `--test image` alone does not.
#[test]
fn ringdump_example_exit_codes() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(format!("ringdump{}", std::env::consts::EXE_SUFFIX)));
    let Some(example) = example.filter(|path| path.is_file()) else {
        println!("skipped: the ringdump example is not built (run `cargo build -p vmbus_ring --examples`)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("vmbus_ring-image-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clean = dir.join("clean.ring");
    std::fs::write(&clean, ring_image(&tour())).unwrap();
    let corrupt = dir.join("corrupt.ring");
    let mut image = ring_image(&tour());
    patch(&mut image, 0x50 + 2, &1u16.to_le_bytes());
    std::fs::write(&corrupt, image).unwrap();
    let short = dir.join("short.ring");
    std::fs::write(&short, [0; 100]).unwrap();

    let run = |args: &[&std::path::Path]| {
        let output = std::process::Command::new(&example).args(args).output().unwrap();
        (output.status.code(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    let (code, stdout, _) = run(&[&clean]);
    assert_eq!((code, stdout.as_str()), (Some(0), format!("{TOUR_DUMP}\n").as_str()));
    let (code, stdout, _) = run(&[&corrupt]);
    assert_eq!(code, Some(3));
    assert!(stdout.ends_with(
        "\nstopped at data offset 0x50: corrupt data_offset8: found 0x1 in the packet at data offset 0x50\n"
    ));
    let (code, _, stderr) = run(&[&short]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, _, stderr) = run(&[&dir.join("missing.ring")]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("usage: ringdump FILE"));
    let (code, _, _) = run(&[&clean, &corrupt]);
    assert_eq!(code, Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
