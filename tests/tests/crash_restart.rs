//! Crash and restart: a writer in another process is killed with SIGKILL at
//! random points, and a new writer process reopens the same memfd ring.
//!
//! The parent (the test) reads the ring; each child (this test binary run
//! again, with only [`crash_child_writer`] selected) writes numbered packets
//! with checksummed payloads in random batches and commits each batch. The
//! parent reads a random number of packets, spins a random number of turns,
//! kills the child, drains what the child committed, and starts the next
//! child. What must hold:
//!
//! - every packet read is intact (its checksum, length and zero padding hold:
//!   never a torn packet) and packets arrive in order, exactly once: their
//!   sequence numbers are consecutive across all the children;
//! - after a kill, the committed write index is exactly where the reader
//!   stopped, and the next child, opening the ring afresh, writes from there
//!   (its first packet is at that offset and continues the sequence).
//!
//! `CRASH_ITERATIONS` sets the number of kills (default 100).

use std::io::Read as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmbus_ring::{
    ControlPage, ControlWord, IncomingRing, MappedRingMem, MappingLayout, OutgoingPacket, OutgoingRing, RingMem,
    WriteError,
};

const DATA_LEN: usize = 4 * 4096;
const CHILD_FD: &str = "VMBUS_CRASH_CHILD_FD";
const CHILD_START: &str = "VMBUS_CRASH_CHILD_START";
const CHILD_SEED: &str = "VMBUS_CRASH_CHILD_SEED";
/// How long a child writes before giving up on its own (if its parent died).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
/// How long the parent waits for packets before declaring the child stuck.
const STALL: Duration = Duration::from_secs(20);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A packet's payload: `[seq: u64][len: u32][fnv1a(data): u32][data]`.
fn encode(seq: u64, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(16 + data.len());
    payload.extend(seq.to_le_bytes());
    payload.extend((data.len() as u32).to_le_bytes());
    payload.extend(fnv1a(data).to_le_bytes());
    payload.extend(data);
    payload
}

/// Checks a received payload (padding included) and returns its sequence number.
fn decode(payload: &[u8]) -> Result<u64, String> {
    let header = payload.get(..16).ok_or_else(|| format!("payload of {} bytes has no header", payload.len()))?;
    let seq = u64::from_le_bytes(header[..8].try_into().unwrap());
    let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
    let sum = u32::from_le_bytes(header[12..].try_into().unwrap());
    let rest = &payload[16..];
    if len > rest.len() || rest.len() - len >= 8 {
        return Err(format!("packet {seq}: data length {len} does not match a padded payload of {}", rest.len()));
    }
    let (data, padding) = rest.split_at(len);
    if fnv1a(data) != sum {
        return Err(format!("packet {seq}: checksum mismatch (torn packet)"));
    }
    if padding.iter().any(|&b| b != 0) {
        return Err(format!("packet {seq}: non-zero padding"));
    }
    Ok(seq)
}

/// The child: writes packets from sequence number `VMBUS_CRASH_CHILD_START`
/// on, until killed. Does nothing unless started by the parent test.
#[test]
#[ignore = "run by crash_and_restart_the_writer in a child process"]
fn crash_child_writer() {
    let Ok(fd) = std::env::var(CHILD_FD) else { return };
    let start: u64 = env_or(CHILD_START, 0);
    let mut rng = fastrand::Rng::with_seed(env_or(CHILD_SEED, 0));
    // The inherited fd, reopened through /proc: the same sealed memfd.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{fd}")).unwrap();
    let layout = if rng.bool() { MappingLayout::Double } else { MappingLayout::Single };
    let mem = MappedRingMem::open_fd(&file, layout).unwrap();
    // Opening the ring reads the committed write index: the child goes on
    // from there, whatever the killed writer left beyond it.
    let mut writer = OutgoingRing::new(mem).unwrap();
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut seq = start;
    while Instant::now() < deadline {
        let mut batch = writer.write_batch();
        for _ in 0..rng.usize(1..=8) {
            let data: Vec<u8> = (0..rng.usize(0..1500)).map(|_| rng.u8(..)).collect();
            let payload = encode(seq, &data);
            // Descriptor and footer first, then the payload in pieces, with
            // now and then a pause: a kill can land inside a packet.
            let range = match batch.reserve(&OutgoingPacket::in_band(seq), payload.len()) {
                Ok(range) => range,
                Err(WriteError::Full { .. }) => break,
                Err(error) => panic!("child writer: {error}"),
            };
            for (i, piece) in payload.chunks(256).enumerate() {
                batch.write_payload(range, i * 256, piece).unwrap();
                if rng.u8(0..8) == 0 {
                    std::thread::yield_now();
                }
            }
            seq += 1;
        }
        if batch.packets() == 0 {
            std::thread::yield_now(); // full: wait for the reader
        }
        let _ = batch.commit();
    }
}

fn spawn_child(fd: &OwnedFd, start: u64, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_FD, fd.as_raw_fd().to_string())
        .env(CHILD_START, start.to_string())
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child writer")
}

/// A child that is no longer running: its status and what it said on stderr.
fn child_failure(child: &mut Child) -> Option<String> {
    let status = child.try_wait().unwrap()?;
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Some(format!("the child writer exited on its own ({status}): {stderr}"))
}

struct Reader {
    ring: IncomingRing<MappedRingMem>,
    next_seq: u64,
    read: u64,
}

impl Reader {
    /// Reads and checks the next packet; `Ok(false)` if the ring is empty.
    fn read_one(&mut self) -> Result<bool, String> {
        let mut batch = self.ring.read_batch();
        let packet = match batch.next() {
            Ok(Some(packet)) => packet,
            Ok(None) => return Ok(false),
            Err(error) => return Err(format!("reading after packet {}: {error}", self.next_seq)),
        };
        let mut payload = vec![0; packet.payload.len()];
        batch.read_payload(packet.payload, 0, &mut payload).map_err(|e| e.to_string())?;
        let seq = decode(&payload)?;
        if seq != self.next_seq || packet.transaction_id != seq {
            return Err(format!(
                "expected packet {}, got packet {seq} (transaction id {}): lost, repeated or out of order",
                self.next_seq, packet.transaction_id
            ));
        }
        let _ = batch.commit();
        self.next_seq += 1;
        self.read += 1;
        Ok(true)
    }
}

#[test]
fn crash_and_restart_the_writer() {
    let iterations: u64 = env_or("CRASH_ITERATIONS", 100);
    let seed: u64 = env_or("CRASH_SEED", fastrand::u64(..));
    println!("CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mem, fd) = MappedRingMem::create_memfd(DATA_LEN, MappingLayout::Single).unwrap();
    // A copy of the fd without close-on-exec, for the children to inherit.
    let inheritable = rustix::io::dup(&fd).unwrap();
    let mut reader = Reader { ring: IncomingRing::new(mem.clone()).unwrap(), next_seq: 0, read: 0 };
    let started = Instant::now();
    let mut mid_ring_restarts = 0;
    let mut uncommitted_at_kill = 0;

    for iteration in 0..iterations {
        // The committed write index the next child must go on from (the
        // reader has drained the ring up to it), and the sequence number.
        let resume_at = reader.ring.read_index();
        if resume_at != 0 {
            mid_ring_restarts += 1;
        }
        let first_seq = reader.next_seq;
        let mut child = spawn_child(&inheritable, first_seq, rng.u64(..));
        // Read a random number of packets, then whatever is there, then let
        // the child run on for a random number of spins, then kill it
        // wherever it is.
        let to_read = rng.u64(0..200);
        let mut last_progress = Instant::now();
        let mut read_here = 0;
        while read_here < to_read {
            match reader.read_one() {
                Ok(true) => {
                    read_here += 1;
                    last_progress = Instant::now();
                }
                Ok(false) => {
                    if let Some(failure) = child_failure(&mut child) {
                        panic!("iteration {iteration}: {failure}");
                    }
                    assert!(
                        last_progress.elapsed() < STALL,
                        "iteration {iteration}: the child wrote nothing for {STALL:?}"
                    );
                    std::thread::yield_now();
                }
                Err(error) => {
                    let _ = child.kill();
                    panic!("iteration {iteration}: {error}");
                }
            }
        }
        // Free the ring so the child is busy writing, not waiting for
        // space, when the kill comes.
        while reader.read_one().unwrap_or_else(|e| panic!("iteration {iteration}: {e}")) {}
        for _ in 0..rng.u32(0..20_000) {
            std::hint::spin_loop();
        }
        if let Some(failure) = child_failure(&mut child) {
            panic!("iteration {iteration}: {failure}");
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "iteration {iteration}: the child was killed, yet exited with {status}");

        // The writer is gone: drain everything it committed.
        while reader.read_one().unwrap_or_else(|e| panic!("iteration {iteration}, draining: {e}")) {}
        let committed = mem.load(ControlWord::WriteIndex, Ordering::Acquire);
        assert_eq!(
            committed,
            reader.ring.read_index(),
            "iteration {iteration}: the reader stopped short of the write index"
        );
        assert!(reader.next_seq >= first_seq);
        // Did the child die with packets written but not committed? The
        // descriptor beyond the write index then carries the next sequence
        // number (older bytes there carry smaller ones). The next child
        // overwrites them, and the reader must never see them.
        let mut descriptor = [0; 16];
        mem.read_data(committed as usize, &mut descriptor);
        if u64::from_le_bytes(descriptor[8..].try_into().unwrap()) == reader.next_seq {
            uncommitted_at_kill += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "crash and restart: {iterations} kills, {} packets read in order and intact, {uncommitted_at_kill} kills \
         with uncommitted packets in the ring, {mid_ring_restarts} restarts in the middle of the ring, in {elapsed:.1?}",
        reader.read
    );
    assert_eq!(reader.read, reader.next_seq);
    assert!(reader.read > 0, "no packet was ever read");
    // The ring is fine for a writer in this process too.
    let mut writer = OutgoingRing::new(mem.clone()).unwrap();
    let last = reader.next_seq;
    let _ = writer.write(&OutgoingPacket::in_band(last), &[&encode(last, b"after the crashes")]).unwrap();
    assert!(reader.read_one().unwrap());
}
