//! The bound: the same requests done by a plain thread with `pread` and
//! `pwrite` on the same file, one at a time.

use crate::request::Op;
use crate::stats::Measured;
use rustix::time::{clock_gettime, ClockId};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Does `op` of `block` bytes at each of `offsets` on `file` in a new
/// thread, timing each.
pub fn run(file: &File, op: Op, block: u32, offsets: &[u64]) -> io::Result<Measured> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut buffer = vec![0x5a; block as usize];
                let mut latencies = Vec::with_capacity(offsets.len());
                let cpu = thread_cpu_nanos();
                let started = Instant::now();
                for &offset in offsets {
                    let one = Instant::now();
                    match op {
                        Op::Write => file.write_all_at(&buffer, offset)?,
                        _ => file.read_exact_at(&mut buffer, offset)?,
                    }
                    latencies.push(one.elapsed().as_nanos() as u64);
                }
                let elapsed = started.elapsed();
                let cpu = thread_cpu_nanos() - cpu;
                Ok(Measured::new(latencies, elapsed, u64::from(block), cpu))
            })
            .join()
            .map_err(|_| io::Error::other("the bound's thread panicked"))?
    })
}

fn thread_cpu_nanos() -> u64 {
    let time = clock_gettime(ClockId::ThreadCPUTime);
    (time.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec as u64)
}
