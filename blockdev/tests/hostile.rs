//! A hostile guest against a host serving in a thread: every bad request
//! gets an error status, and the host keeps serving the good ones.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmbus_blockdev::channel::{Channel, ChannelEnd};
use vmbus_blockdev::disk::Disk;
use vmbus_blockdev::host::Host;
use vmbus_blockdev::request::{CompletionHeader, Op, RequestHeader, Status};
use vmbus_channel::Side;
use vmbus_ring::{GpaRangeBuf, OutgoingPacket};
use zerocopy::IntoBytes;

const DISK: u64 = 1 << 20;
const MEMORY: usize = 1 << 20;
const WAIT: Duration = Duration::from_secs(10);
/// The channel's GPADL: pages 0-1 the guest-to-host ring, 2-3 the other.
const GPADL: [u64; 4] = [0, 1, 2, 3];
/// A data buffer, off a page boundary.
const BUFFER: u64 = 0x1_0200;

/// Removes the disk image when dropped.
struct Image(PathBuf);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `packet` with `payload` and waits for its completion.
fn ask(guest: &mut Channel, id: u64, packet: OutgoingPacket<'_>, payload: &[u8]) -> CompletionHeader {
    let packet = OutgoingPacket { transaction_id: id, ..packet }.with_completion_requested();
    guest.writer_mut().write_batch_blocking(&[(packet, &[payload])], Some(Instant::now() + WAIT)).unwrap();
    let mut completion = None;
    let deadline = Instant::now() + WAIT;
    while completion.is_none() {
        guest
            .reader_mut()
            .read_batch_blocking(1, Some(deadline), |header, payload| {
                assert_eq!(header.transaction_id, id);
                completion = Some(CompletionHeader::parse(&payload.to_vec()));
            })
            .unwrap();
    }
    completion.unwrap()
}

fn transfer(op: Op, sector: u64, length: u32, ranges: &GpaRangeBuf) -> (OutgoingPacket<'_>, RequestHeader) {
    (OutgoingPacket::gpa_direct(0, ranges.ranges()), RequestHeader::new(op, sector, length))
}

fn contiguous(gpa: u64, len: u32) -> GpaRangeBuf {
    let mut ranges = GpaRangeBuf::new();
    ranges.push_contiguous(gpa, len).unwrap();
    ranges
}

#[test]
fn bad_requests_get_error_statuses_and_the_host_keeps_serving() {
    let image = Image(std::env::temp_dir().join(format!("vmbus-blockdev-hostile-{}.img", std::process::id())));
    std::fs::File::create(&image.0).unwrap().set_len(DISK).unwrap();
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEMORY)]).unwrap();
    let (host_socket, guest_socket) = UnixStream::pair().unwrap();
    let host_end = ChannelEnd::open(&memory, &GPADL, 2, Side::Host, host_socket, 0).unwrap();
    let mut guest = ChannelEnd::open(&memory, &GPADL, 2, Side::Guest, guest_socket, 0).unwrap().queue;
    let mut host = Host::new(memory.clone(), Disk::open(&image.0).unwrap(), vec![host_end], WAIT);
    let server = thread::spawn(move || host.serve(Duration::from_millis(100)));

    let good = contiguous(BUFFER, 8192);
    let outside = contiguous(MEMORY as u64 - 2048, 4096);
    let mut huge_page = GpaRangeBuf::new();
    huge_page.push(0, 4096, &[u64::MAX / 4096]).unwrap();
    let one_page = contiguous(BUFFER, 4096);
    let odd = contiguous(BUFFER, 1000);
    let cases = [
        (transfer(Op::Read, 0, 4096, &outside), Status::BadGuestAddress),
        (transfer(Op::Write, 0, 4096, &huge_page), Status::BadGuestAddress),
        (transfer(Op::Read, DISK / 512 - 8, 8192, &good), Status::OutOfRange),
        (transfer(Op::Write, u64::MAX / 2, 8192, &good), Status::OutOfRange),
        (transfer(Op::Read, 0, 4096, &good), Status::LengthMismatch),
        (transfer(Op::Flush, 0, 0, &one_page), Status::LengthMismatch),
        (transfer(Op::Read, 0, 1000, &odd), Status::BadLength),
        ((OutgoingPacket::in_band(0), RequestHeader::new(Op::Read, 0, 4096)), Status::LengthMismatch),
    ];
    for (index, ((packet, header), status)) in cases.into_iter().enumerate() {
        assert_eq!(ask(&mut guest, index as u64 + 1, packet, header.as_bytes()).status(), status, "case {index}");
    }
    let mut unknown = RequestHeader::new(Op::Read, 0, 0);
    unknown.op = 42.into();
    assert_eq!(ask(&mut guest, 100, OutgoingPacket::in_band(0), unknown.as_bytes()).status(), Status::Unsupported);
    assert_eq!(ask(&mut guest, 101, OutgoingPacket::in_band(0), b"short").status(), Status::Malformed);

    // Still serving: a write, a flush, and a read back into other memory.
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    memory.write_slice(&data, GuestAddress(BUFFER)).unwrap();
    let (packet, header) = transfer(Op::Write, 16, 8192, &good);
    let written = ask(&mut guest, 200, packet, header.as_bytes());
    assert_eq!((written.status(), written.value.get()), (Status::Ok, 8192));
    let flush = RequestHeader::new(Op::Flush, 0, 0);
    assert_eq!(ask(&mut guest, 201, OutgoingPacket::in_band(0), flush.as_bytes()).status(), Status::Ok);
    let mut split = GpaRangeBuf::new();
    split.push_contiguous(0x4_0100, 512).unwrap();
    split.push_contiguous(0x5_0000, 7680).unwrap();
    let (packet, header) = transfer(Op::Read, 16, 8192, &split);
    assert_eq!(ask(&mut guest, 202, packet, header.as_bytes()).status(), Status::Ok);
    let mut back = vec![0; 8192];
    memory.read_slice(&mut back[..512], GuestAddress(0x4_0100)).unwrap();
    memory.read_slice(&mut back[512..], GuestAddress(0x5_0000)).unwrap();
    assert_eq!(back, data);

    // The guest goes away: the host's loop ends cleanly.
    drop(guest);
    server.join().unwrap().unwrap();
}
