//! The verify run: checksummed patterns written, read back and checked
//! against the guest's own record of what each block should hold.

use crate::drive::Workload;
use crate::error::DeviceError;
use crate::guest::{Done, Guest, IoRequest};
use crate::pattern::{self, BLOCK};
use crate::request::{Op, Status, SECTOR_SIZE};
use crate::scatter::{read_from, scatter, write_into};
use crate::validate::Segment;

/// A flush every this many requests.
const FLUSH_EVERY: u64 = 64;
/// Blocks a read-back request reads (1 MiB).
const READ_BACK_BLOCKS: u64 = 256;
/// Tries to find blocks no request in flight touches.
const PICK_TRIES: usize = 64;

/// What a verify run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// Requests completed (reads, writes and flushes).
    pub ios: u64,
    /// Blocks read back that did not hold what they should.
    pub mismatches: u64,
    /// Reads, writes and flushes among them.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Bytes read and written.
    pub bytes: u64,
}

#[derive(Debug)]
struct Pending {
    op: Op,
    first: u64,
    count: u64,
    generation: u32,
    segments: Vec<Segment>,
}

/// The verify workload over a disk of `blocks` 4 KiB blocks, all zero at
/// the start.
#[derive(Debug)]
pub struct Verify {
    rng: fastrand::Rng,
    generations: Vec<u32>,
    busy: Vec<bool>,
    next_generation: u32,
    to_send: u64,
    sent: u64,
    kill_every: Option<u64>,
    pending: Vec<Option<Pending>>,
    /// In the read-back phase: the next block to read back.
    read_back: Option<u64>,
    data: Vec<u8>,
    result: Verified,
}

impl Verify {
    /// `ios` requests over `blocks` blocks, with up to `depth` in flight;
    /// the host is killed after every `kill_every` completions.
    pub fn new(blocks: u64, ios: u64, depth: usize, kill_every: Option<u64>, seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            generations: vec![0; blocks as usize],
            busy: vec![false; blocks as usize],
            next_generation: 1,
            to_send: ios,
            sent: 0,
            kill_every: kill_every.filter(|&every| every > 0),
            pending: (0..depth).map(|_| None).collect(),
            read_back: None,
            data: Vec::new(),
            result: Verified::default(),
        }
    }

    /// What the run did so far.
    pub fn result(&self) -> Verified {
        self.result
    }

    /// Blocks per request: mostly one, some up to 16, a few up to 256 (1 MiB).
    fn pick_count(&mut self) -> u64 {
        match self.rng.u32(0..100) {
            0..70 => 1,
            70..95 => self.rng.u64(2..=16),
            95..99 => self.rng.u64(17..=64),
            _ => self.rng.u64(65..=256),
        }
    }

    /// A run of `count` blocks no request in flight touches, or one block.
    fn pick_blocks(&mut self) -> Option<(u64, u64)> {
        let blocks = self.generations.len() as u64;
        for attempt in 0..PICK_TRIES {
            let count = if attempt < PICK_TRIES / 2 { self.pick_count().min(blocks) } else { 1 };
            let first = self.rng.u64(0..=blocks - count);
            let range = first as usize..(first + count) as usize;
            if !self.busy[range.clone()].contains(&true) {
                self.busy[range].fill(true);
                return Some((first, count));
            }
        }
        None
    }

    /// The next request of the random phase: a flush every 64, else a read
    /// or a write of blocks nothing in flight touches.
    fn random(&mut self, guest: &Guest, tag: usize) -> Result<Pending, DeviceError> {
        self.sent += 1;
        let flush = Pending { op: Op::Flush, first: 0, count: 0, generation: 0, segments: Vec::new() };
        Ok(match (self.sent % FLUSH_EVERY, self.pick_blocks()) {
            (0, blocks) | (_, blocks @ None) => {
                if let Some((first, count)) = blocks {
                    self.busy[first as usize..(first + count) as usize].fill(false);
                }
                flush
            }
            (_, Some((first, count))) => {
                let len = count as usize * BLOCK;
                let segments = scatter(&mut self.rng, guest.layout().slot(tag), len);
                if self.rng.bool() {
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1).max(1);
                    self.data.resize(len, 0);
                    for (index, block) in self.data.chunks_exact_mut(BLOCK).enumerate() {
                        pattern::fill(block, first + index as u64, generation);
                    }
                    write_into(guest.memory(), &segments, &self.data)
                        .map_err(|error| DeviceError::Memory(error.to_string()))?;
                    Pending { op: Op::Write, first, count, generation, segments }
                } else {
                    Pending { op: Op::Read, first, count, generation: 0, segments }
                }
            }
        })
    }

    /// Switches to reading back every block of the disk, 1 MiB a request,
    /// for the next [`drive`](crate::drive::drive); call it once the random
    /// phase has finished.
    pub fn read_back_everything(&mut self) {
        self.read_back = Some(0);
    }

    /// Blocks of the read-back request starting at `first`, `None` past the end.
    fn read_back_count(&self, first: u64) -> Option<u64> {
        let left = (self.generations.len() as u64).checked_sub(first).filter(|&left| left > 0)?;
        Some(left.min(READ_BACK_BLOCKS))
    }
}

impl Workload for Verify {
    fn next(&mut self, guest: &Guest, tag: usize) -> Result<Option<IoRequest>, DeviceError> {
        let pending = match self.read_back {
            Some(first) => {
                let Some(count) = self.read_back_count(first) else { return Ok(None) };
                self.read_back = Some(first + count);
                let segments = scatter(&mut self.rng, guest.layout().slot(tag), count as usize * BLOCK);
                Pending { op: Op::Read, first, count, generation: 0, segments }
            }
            None if self.sent == self.to_send || self.generations.is_empty() => return Ok(None),
            None => self.random(guest, tag)?,
        };
        let length = (pending.count as usize * BLOCK) as u32;
        let request = IoRequest {
            op: pending.op,
            sector: pending.first * (BLOCK as u64 / SECTOR_SIZE),
            length,
            segments: pending.segments.clone(),
        };
        self.pending[tag] = Some(pending);
        Ok(Some(request))
    }

    fn finished(&mut self, guest: &Guest, done: &Done) -> Result<bool, DeviceError> {
        let status = done.completion.status();
        if status != Status::Ok {
            return Err(DeviceError::Request(status));
        }
        let Some(pending) = self.pending.get_mut(done.tag).and_then(Option::take) else {
            return Ok(false);
        };
        let blocks = pending.first as usize..(pending.first + pending.count) as usize;
        match pending.op {
            Op::Write => {
                self.generations[blocks.clone()].fill(pending.generation);
                self.result.writes += 1;
            }
            Op::Read => {
                self.data.resize(blocks.len() * BLOCK, 0);
                read_from(guest.memory(), &pending.segments, &mut self.data)
                    .map_err(|error| DeviceError::Memory(error.to_string()))?;
                for (block, data) in blocks.clone().zip(self.data.chunks_exact(BLOCK)) {
                    if !pattern::check(data, block as u64, self.generations[block]) {
                        self.result.mismatches += 1;
                    }
                }
                self.result.reads += 1;
            }
            Op::Flush | Op::Stats => self.result.flushes += 1,
        }
        self.result.bytes += (blocks.len() * BLOCK) as u64;
        self.busy[blocks].fill(false);
        self.result.ios += 1;
        Ok(self.kill_every.is_some_and(|every| self.result.ios.is_multiple_of(every)))
    }
}
