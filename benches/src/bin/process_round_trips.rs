//! Round trips between two processes in a loop, for profilers and system
//! call counters: what the `queue/processes` benchmarks measure, without
//! criterion around it and with a known number of round trips.
//!
//! ```sh
//! cargo build --release -p vmbus_benches --bin process_round_trips
//! target/release/process_round_trips eventfd/blocking one_cpu 20000
//! perf stat -e 'raw_syscalls:sys_enter,syscalls:sys_enter_ppoll,context-switches' \
//!     target/release/process_round_trips eventfd/async two_cpus 20000
//! valgrind --tool=callgrind target/release/process_round_trips socket/blocking one_cpu 5000
//! ```
//!
//! Arguments: the variant (`raw`, `raw_poll`, or `<socket|eventfd>/<blocking|async>`),
//! the placement (`one_cpu` or `two_cpus`, see `Placement`), and the round
//! trips to time (default 20,000), after 1,000 that are not. `raw_poll` is
//! the raw eventfd ping-pong with this side waiting as the queue's blocking
//! wait does, `poll` then `read`. Prints the mean, p50 and p99 round trip.
//! Counters that include the peer (`perf stat` follows it) see setting up
//! and the 1,000 untimed round trips too.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("process_round_trips needs Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::ExitCode;
    use std::time::Duration;
    use vmbus_benches::processes::{
        serve_if_peer, timed_round_trips, Latencies, Placement, QueueApi, QueuePingPong, RawEventFdPingPong, SignalKind,
    };
    use vmbus_benches::{ring_len, Pinned};

    const USAGE: &str = "usage: process_round_trips <raw|raw_poll|socket/blocking|socket/async|eventfd/blocking|eventfd/async> <one_cpu|two_cpus> [ROUND_TRIPS]";
    /// Round trips before the timed ones.
    const UNTIMED: u64 = 1000;
    const REQUEST: usize = 64;

    pub fn main() -> ExitCode {
        serve_if_peer();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let placement = match args.get(1).map(String::as_str) {
            Some("one_cpu") => Placement::OneCpu,
            Some("two_cpus") => Placement::TwoCpus,
            _ => return usage(),
        };
        let Some(count) = args.get(2).map_or(Some(20_000), |count| count.parse::<u64>().ok()) else {
            return usage();
        };
        let mut round_trip: Box<dyn FnMut()> = match args.first().map(String::as_str) {
            Some("raw") => {
                let mut raw = RawEventFdPingPong::start(placement).expect("start the peer");
                Box::new(move || raw.round_trip())
            }
            Some("raw_poll") => {
                let mut raw = RawEventFdPingPong::start(placement).expect("start the peer");
                Box::new(move || raw.round_trip_polling())
            }
            Some(variant) => {
                let signal = match variant.split_once('/') {
                    Some(("socket", _)) => SignalKind::Socket,
                    Some(("eventfd", _)) => SignalKind::EventFd,
                    _ => return usage(),
                };
                let api = match variant.split_once('/') {
                    Some((_, "blocking")) => QueueApi::Blocking,
                    Some((_, "async")) => QueueApi::Async,
                    _ => return usage(),
                };
                let mut queue =
                    QueuePingPong::start(signal, api, placement, ring_len(0, 1), REQUEST).expect("start the peer");
                Box::new(move || queue.round_trip())
            }
            None => return usage(),
        };
        let _here = Pinned::to(0);
        for _ in 0..UNTIMED {
            round_trip();
        }
        let mut latencies = Latencies::new(Duration::ZERO);
        let elapsed = timed_round_trips(count, &mut latencies, &mut round_trip);
        let micros = |nanos: Option<u32>| nanos.map_or(f64::NAN, |nanos| f64::from(nanos) / 1e3);
        println!(
            "{} {}: {count} round trips, mean {:.2} µs, p50 {:.2} µs, p99 {:.2} µs",
            args[0],
            args[1],
            elapsed.as_secs_f64() * 1e6 / count.max(1) as f64,
            micros(latencies.percentile(50.0)),
            micros(latencies.percentile(99.0)),
        );
        ExitCode::SUCCESS
    }

    fn usage() -> ExitCode {
        eprintln!("{USAGE}");
        ExitCode::from(2)
    }
}
