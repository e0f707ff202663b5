//! What a measured run comes to: IOPS, bandwidth, latency percentiles,
//! CPU per request.

use std::time::Duration;

/// One side's numbers for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Requests finished.
    pub ios: u64,
    /// Requests per second.
    pub iops: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// CPU time per request, microseconds (the host process's for the
    /// device, the thread's for the bound).
    pub cpu_us_per_io: f64,
}

impl Measured {
    /// From per-request latencies (nanoseconds), the run's wall time, bytes
    /// per request and the CPU nanoseconds spent.
    pub fn new(mut latencies: Vec<u64>, elapsed: Duration, block: u64, cpu_nanos: u64) -> Self {
        latencies.sort_unstable();
        let ios = latencies.len() as u64;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let percentile = |p: f64| {
            let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(index).map_or(0.0, |&nanos| nanos as f64 / 1000.0)
        };
        Self {
            ios,
            iops: ios as f64 / seconds,
            mb_per_s: (ios * block) as f64 / seconds / 1e6,
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
            cpu_us_per_io: if ios == 0 { 0.0 } else { cpu_nanos as f64 / ios as f64 / 1000.0 },
        }
    }
}
