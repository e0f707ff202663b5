//! The report's fio-like jobs: fixed-size reads or writes, random or
//! sequential, for a time, recording each request's offset and latency.

use crate::drive::Workload;
use crate::error::DeviceError;
use crate::guest::{Done, Guest, IoRequest};
use crate::request::{Op, Status, SECTOR_SIZE};
use crate::validate::Segment;
use std::time::{Duration, Instant};

/// One job of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Reads or writes.
    pub op: Op,
    /// Random offsets (else sequential, wrapping at the end of the disk).
    pub random: bool,
    /// Bytes per request (a multiple of 4096).
    pub block: u32,
    /// Requests in flight, over all channels.
    pub depth: usize,
}

impl Job {
    /// The job's name, fio-style: `4k randread`.
    pub fn name(&self) -> String {
        let kind = match (self.random, self.op) {
            (true, Op::Read) => "randread",
            (true, _) => "randwrite",
            (false, Op::Read) => "read",
            (false, _) => "write",
        };
        format!("{}k {kind}", self.block / 1024)
    }
}

/// A job running until its deadline.
#[derive(Debug)]
pub struct Load {
    job: Job,
    rng: fastrand::Rng,
    blocks: u64,
    next_sequential: u64,
    deadline: Instant,
    /// The disk offset of every request sent, in order (for the bound).
    pub offsets: Vec<u64>,
    /// The latency of every request finished, in nanoseconds.
    pub latencies: Vec<u64>,
}

impl Load {
    /// `job` on a disk of `disk_size` bytes, sending requests for `time`.
    pub fn new(job: Job, disk_size: u64, time: Duration, seed: u64) -> Self {
        Self {
            job,
            rng: fastrand::Rng::with_seed(seed),
            blocks: disk_size / u64::from(job.block),
            next_sequential: 0,
            deadline: Instant::now() + time,
            offsets: Vec::new(),
            latencies: Vec::new(),
        }
    }

    /// The offsets of a job: random or sequential blocks.
    fn next_offset(&mut self) -> u64 {
        let block = if self.job.random {
            self.rng.u64(0..self.blocks)
        } else {
            let block = self.next_sequential;
            self.next_sequential = (block + 1) % self.blocks;
            block
        };
        block * u64::from(self.job.block)
    }
}

impl Workload for Load {
    fn next(&mut self, guest: &Guest, tag: usize) -> Result<Option<IoRequest>, DeviceError> {
        if self.blocks == 0 || Instant::now() >= self.deadline {
            return Ok(None);
        }
        let offset = self.next_offset();
        self.offsets.push(offset);
        let segments = vec![Segment { address: guest.layout().slot(tag), len: self.job.block as usize }];
        Ok(Some(IoRequest { op: self.job.op, sector: offset / SECTOR_SIZE, length: self.job.block, segments }))
    }

    fn finished(&mut self, _guest: &Guest, done: &Done) -> Result<bool, DeviceError> {
        match done.completion.status() {
            Status::Ok => {
                self.latencies.push(done.latency.as_nanos() as u64);
                Ok(false)
            }
            status => Err(DeviceError::Request(status)),
        }
    }
}
