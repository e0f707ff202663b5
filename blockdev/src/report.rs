//! The fio-like report: each job through the device and through the bound,
//! side by side.

use crate::bound;
use crate::drive::drive;
use crate::error::DeviceError;
use crate::guest::Guest;
use crate::job::{Job, Load};
use crate::request::Op;
use crate::stats::Measured;
use std::fmt::Write as _;
use std::fs::File;
use std::time::{Duration, Instant};

/// The jobs of the report: 4 KiB random reads and writes at depths 1, 8
/// and 32, and 128 KiB sequential reads and writes at depth 8.
pub fn jobs() -> Vec<Job> {
    let mut jobs = Vec::new();
    for op in [Op::Read, Op::Write] {
        for depth in [1, 8, 32] {
            jobs.push(Job { op, random: true, block: 4096, depth });
        }
    }
    for op in [Op::Read, Op::Write] {
        jobs.push(Job { op, random: false, block: 128 * 1024, depth: 8 });
    }
    jobs
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The job.
    pub job: Job,
    /// Channels of the device.
    pub channels: usize,
    /// Through the device.
    pub device: Measured,
    /// Through `pread`/`pwrite` in a plain thread.
    pub bound: Measured,
}

/// Runs `job` for `time` on `guest`, then the same requests on `image`
/// through the bound.
pub fn run_job(guest: &mut Guest, image: &File, disk_size: u64, job: Job, time: Duration) -> Result<Row, DeviceError> {
    let mut load = Load::new(job, disk_size, time, 0x5eed ^ job.depth as u64);
    let cpu = guest.host_cpu_nanos()?;
    let started = Instant::now();
    drive(guest, job.depth, &mut load)?;
    let elapsed = started.elapsed();
    let cpu = guest.host_cpu_nanos()?.saturating_sub(cpu);
    let device = Measured::new(load.latencies, elapsed, u64::from(job.block), cpu);
    let bound = bound::run(image, job.op, job.block, &load.offsets)?;
    Ok(Row { job, channels: guest.layout().channels, device, bound })
}

/// The table, one line a row, with a header.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>2} {:>3} | {:>8} {:>8} {:>7} {:>7} {:>8} | {:>8} {:>8} {:>7} {:>7} {:>8} | {:>6}",
        "job",
        "ch",
        "qd",
        "IOPS",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "CPU µs",
        "IOPS",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "CPU µs",
        "ratio"
    );
    let _ = writeln!(
        out,
        "{:<21} | {:^50} | {:^50} |",
        "", "vmbus device (host CPU per I/O)", "pread/pwrite thread (bound)"
    );
    for row in rows {
        let (d, b) = (&row.device, &row.bound);
        let ratio = if b.iops > 0.0 { d.iops / b.iops } else { 0.0 };
        let _ = writeln!(
            out,
            "{:<14} {:>2} {:>3} | {:>8.0} {:>8.1} {:>7.1} {:>7.1} {:>8.2} | {:>8.0} {:>8.1} {:>7.1} {:>7.1} {:>8.2} | {:>6.3}",
            row.job.name(),
            row.channels,
            row.job.depth,
            d.iops,
            d.mb_per_s,
            d.p50_us,
            d.p99_us,
            d.cpu_us_per_io,
            b.iops,
            b.mb_per_s,
            b.p50_us,
            b.p99_us,
            b.cpu_us_per_io,
            ratio
        );
    }
    out
}
