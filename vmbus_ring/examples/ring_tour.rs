//! A tour of the ring: writes packets of every type through a small ring so
//! that they wrap around its end, reads each one back, checks it, and prints
//! what happened.
//!
//! Run with `cargo run -p vmbus_ring --example ring_tour`.

use std::error::Error;
use vmbus_ring::{
    FlatRingMem, GpaRangeBuf, IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, PacketKind, RingMem,
    TransferPageRange,
};

const DATA_LEN: usize = 4096;
const ROUNDS: u64 = 12;

fn main() -> Result<(), Box<dyn Error>> {
    if let Some(arg) = std::env::args_os().nth(1) {
        return Err(format!("ring_tour takes no arguments, not {arg:?}").into());
    }
    let mem = FlatRingMem::new(DATA_LEN)?;
    let mut writer = OutgoingRing::new(mem.clone())?;
    let mut reader = IncomingRing::new(mem)?;
    println!("ring: one control page + {DATA_LEN} data bytes");
    println!("start: {}", writer.state());

    let transfer_ranges = [TransferPageRange::new(1500, 0), TransferPageRange::new(900, 4096)];
    let mut gpa = GpaRangeBuf::new();
    gpa.push_contiguous(0x1234_5010, 6000)?;
    gpa.push(0, 512, &[0x99])?;

    let mut wraps = 0;
    let mut packets = 0;
    for round in 0..ROUNDS {
        let payload: Vec<u8> = (0..(round * 97 % 700) as usize).map(|i| (i as u64 * 7 + round) as u8).collect();
        let tid = round * 10;
        let batch_of_every_type = [
            OutgoingPacket::in_band(tid).with_completion_requested(),
            OutgoingPacket::completion(tid + 1),
            OutgoingPacket::transfer_pages(tid + 2, 3, false, &transfer_ranges),
            OutgoingPacket::gpa_direct(tid + 3, gpa.ranges()),
        ];

        let mut batch = writer.write_batch();
        for packet in &batch_of_every_type {
            batch.write(packet, &[&payload])?;
        }
        let bytes = batch.bytes();
        let signal_reader = batch.commit();

        let mut batch = reader.read_batch();
        for sent in &batch_of_every_type {
            let received = batch.next()?.ok_or("no packet")?;
            let mut copy = vec![0; payload.len()];
            batch.read_payload(received.payload, 0, &mut copy)?;
            assert_eq!(copy, payload, "payload of packet {}", received.transaction_id);
            assert_eq!(received.transaction_id, sent.transaction_id);
            let end = received.offset as usize + sent.size(payload.len());
            if end > DATA_LEN {
                wraps += 1;
            }
            if round < 2 || end > DATA_LEN {
                println!("  {}", describe(&received, end > DATA_LEN));
            }
            packets += 1;
        }
        let signal_writer = batch.commit();
        println!(
            "round {round:2}: wrote 4 packets with {} payload bytes each ({bytes} ring bytes), signal reader: {signal_reader}, signal writer: {signal_writer}",
            payload.len()
        );
    }
    back_pressure(&mut writer, &mut reader)?;
    println!("end:   {}", reader.state());
    println!("{packets} packets written and read back intact; {wraps} of them wrapped around the end of the {} byte data area", reader.memory().data_len());
    Ok(())
}

/// Fills the ring until a write is refused, then shows the pending-send-size
/// handshake: the writer asks for space, the reader's commit says to wake it.
fn back_pressure(
    writer: &mut OutgoingRing<FlatRingMem>,
    reader: &mut IncomingRing<FlatRingMem>,
) -> Result<(), Box<dyn Error>> {
    let packet = OutgoingPacket::in_band(1000);
    let payload = [0x5a; 1000];
    let mut written = 0;
    let needed = loop {
        match writer.write(&packet, &[&payload]) {
            Ok(_) => written += 1,
            Err(vmbus_ring::WriteError::Full { needed, free }) => {
                println!("full after {written} packets: the next needs {needed} bytes, {free} are free");
                break needed;
            }
            Err(other) => return Err(other.into()),
        }
    };
    let may_write_now = writer.set_pending_send_size(needed)?;
    println!("writer sets pending send size {needed}; may write now: {may_write_now}");
    let mut batch = reader.read_batch();
    batch.next()?.ok_or("no packet")?;
    let signal_writer = batch.commit();
    println!("reader frees one packet; signal writer: {signal_writer}");
    writer.write(&packet, &[&payload])?;
    writer.clear_pending_send_size();
    let mut batch = reader.read_batch();
    while let Ok(Some(_)) = batch.next() {}
    let _ = batch.commit();
    Ok(())
}

fn describe(packet: &IncomingPacket, wrapped: bool) -> String {
    let kind = match &packet.kind {
        PacketKind::InBand => "in-band".to_string(),
        PacketKind::Completion => "completion".to_string(),
        PacketKind::TransferPages(pages) => {
            format!("transfer pages (set {}, {} ranges)", pages.set_id, pages.ranges.len())
        }
        PacketKind::GpaDirect(ranges) => format!("GPA direct ({} ranges)", ranges.len()),
    };
    let wrap = if wrapped { ", wraps" } else { "" };
    format!(
        "read {kind} at {:#06x}: tid {}, completion requested {}, payload {} bytes{wrap}",
        packet.offset,
        packet.transaction_id,
        packet.completion_requested,
        packet.payload.len()
    )
}
