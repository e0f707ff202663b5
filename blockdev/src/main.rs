//! `vmbus-blockdev`: the block device's report and verify run (the guest),
//! or, with `host`, the host device the guest starts. See the crate's README.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vmbus_blockdev::cli::{self, Mode, Options};
use vmbus_blockdev::disk::Disk;
use vmbus_blockdev::drive::drive;
use vmbus_blockdev::error::DeviceError;
use vmbus_blockdev::guest::Guest;
use vmbus_blockdev::host::Host;
use vmbus_blockdev::image;
use vmbus_blockdev::launcher::Launcher;
use vmbus_blockdev::memory::Layout;
use vmbus_blockdev::pattern::BLOCK;
use vmbus_blockdev::report::{jobs, run_job, table};
use vmbus_blockdev::verify::{Verified, Verify};

/// Longest wait for the other process before giving up on it.
const STALL: Duration = Duration::from_secs(10);
/// Longest the host sleeps between looks at its channels.
const IDLE: Duration = Duration::from_secs(1);
/// Pages of each guest-to-host ring (a control page and 32 data pages).
const GUEST_TO_HOST_PAGES: u32 = 33;
/// Pages of each host-to-guest ring (a control page and 8 data pages).
const HOST_TO_GUEST_PAGES: u32 = 9;
/// Requests in flight at most in the report.
const REPORT_SLOTS: usize = 32;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Mode::Help) => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Mode::Host { disk, socket }) => match serve(&disk, &socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("vmbus-blockdev host: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(Mode::Guest(options)) => match run(&options) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("vmbus-blockdev: {error}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("vmbus-blockdev: {message}\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

fn serve(disk: &Path, socket: &Path) -> Result<(), DeviceError> {
    let disk = Disk::open(disk)?;
    Host::connect(socket, disk, STALL)?.serve(IDLE)
}

/// Removes an image the run made itself.
struct TempImage(Option<PathBuf>);

impl Drop for TempImage {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The guest's run; `Ok(false)` if the verify run found a mismatch.
fn run(options: &Options) -> Result<bool, DeviceError> {
    let (path, _temp) = match &options.disk {
        Some(path) => (path.clone(), TempImage(None)),
        None => {
            let path = image_dir().join(format!("vmbus-blockdev-{}.img", std::process::id()));
            (path.clone(), TempImage(Some(path)))
        }
    };
    let launcher =
        Launcher { program: std::env::current_exe()?, args: vec!["host".into(), "--disk".into(), path.clone().into()] };
    println!(
        "vmbus-blockdev: {} MiB image {} (in the page cache: written through before each run, so the transport is \
         measured, not a disk); CPU: {}",
        options.disk_size >> 20,
        path.display(),
        cpu_model()
    );
    if !options.verify_only {
        let mut rows = Vec::new();
        for &channels in &options.channels {
            let image = image::create(&path, options.disk_size)?;
            let layout = layout(channels, REPORT_SLOTS);
            let mut guest = Guest::start(layout, launcher.clone(), STALL)?;
            for job in jobs() {
                rows.push(run_job(&mut guest, &image, options.disk_size, job, options.seconds)?);
            }
            guest.shut_down()?;
        }
        println!("{}", table(&rows));
        println!(
            "IOPS and MB/s per run; latency from submission to completion; CPU µs: the host process's CPU time per I/O \
             (device) and the thread's (bound); ratio: device IOPS / bound IOPS. The bound does the same requests one \
             at a time in one plain thread with pread/pwrite."
        );
    }
    image::create(&path, options.disk_size)?;
    let channels = options.channels.iter().copied().max().unwrap_or(4);
    let kill_every = (options.kill_every > 0).then_some(options.kill_every);
    let (verified, restarts) = verify(&launcher, channels, options, kill_every)?;
    println!(
        "verified: {} I/Os, {} mismatches ({} reads, {} writes, {} flushes, {:.1} GiB, every block read back at the end; \
         {} channels, depth {}, host killed and restarted {} times)",
        verified.ios,
        verified.mismatches,
        verified.reads,
        verified.writes,
        verified.flushes,
        verified.bytes as f64 / f64::from(1 << 30),
        channels,
        options.depth,
        restarts
    );
    Ok(verified.mismatches == 0)
}

fn verify(
    launcher: &Launcher,
    channels: usize,
    options: &Options,
    kill_every: Option<u64>,
) -> Result<(Verified, u64), DeviceError> {
    let mut guest = Guest::start(layout(channels, options.depth), launcher.clone(), STALL)?;
    let blocks = options.disk_size / BLOCK as u64;
    let mut workload = Verify::new(blocks, options.ios, options.depth, kill_every, 0x0b10c);
    drive(&mut guest, options.depth, &mut workload)?;
    workload.read_back_everything();
    drive(&mut guest, options.depth, &mut workload)?;
    let restarts = guest.restarts();
    guest.shut_down()?;
    Ok((workload.result(), restarts))
}

fn layout(channels: usize, slots: usize) -> Layout {
    Layout { channels, guest_to_host_pages: GUEST_TO_HOST_PAGES, host_to_guest_pages: HOST_TO_GUEST_PAGES, slots }
}

/// Where a default image goes: tmpfs (`/dev/shm`), whose files are nothing
/// but page cache, if there is one; the temp directory otherwise.
fn image_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// `lscpu`'s model name, from /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
