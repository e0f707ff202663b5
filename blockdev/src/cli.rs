//! The command line of `vmbus-blockdev`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Usage text.
pub const USAGE: &str = "\
usage: vmbus-blockdev [OPTIONS]            the report, then a short verify run
       vmbus-blockdev --verify [OPTIONS]   a verify run only
       vmbus-blockdev host --disk PATH --socket PATH   (started by the guest)

  --seconds S           time per report job (default 0.5)
  --channels LIST       channel counts for the report, e.g. 1,4 (default 1,4);
                        the verify run uses the largest (with --verify: default 4)
  --ios N               requests in the verify run (default 20000)
  --depth N             requests in flight in the verify run (default 16, at most 64)
  --kill-host-every N   kill the host (SIGKILL) after every N completed requests
                        of the verify run; a new host takes over (default 5000;
                        0: never)
  --disk PATH           the disk image, overwritten with zeros (default: a file
                        in /dev/shm, or else the temp directory, removed after)
  --disk-mib N          its size in MiB (default 256)";

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Print the usage.
    Help,
    /// Serve as a host.
    Host {
        /// The image.
        disk: PathBuf,
        /// Where the guest listens.
        socket: PathBuf,
    },
    /// Be the guest: the report unless `verify_only`, then the verify run.
    Guest(Options),
}

/// The guest's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Only the verify run.
    pub verify_only: bool,
    /// Time per report job.
    pub seconds: Duration,
    /// Channel counts of the report; the largest is the verify run's.
    pub channels: Vec<usize>,
    /// Requests of the verify run.
    pub ios: u64,
    /// Requests in flight in the verify run.
    pub depth: usize,
    /// Kill the host after every this many completions.
    pub kill_every: u64,
    /// The image path, if given.
    pub disk: Option<PathBuf>,
    /// The image size in bytes.
    pub disk_size: u64,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Mode, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|arg| arg == "host") {
        args.next();
        let (mut disk, mut socket) = (None, None);
        while let Some(arg) = args.next() {
            let value = args.next().map(PathBuf::from).ok_or_else(|| format!("{arg:?} needs a value"))?;
            match arg.to_str() {
                Some("--disk") => disk = Some(value),
                Some("--socket") => socket = Some(value),
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        return match (disk, socket) {
            (Some(disk), Some(socket)) => Ok(Mode::Host { disk, socket }),
            _ => Err("host needs --disk and --socket".into()),
        };
    }
    let mut options = Options {
        verify_only: false,
        seconds: Duration::from_millis(500),
        channels: vec![1, 4],
        ios: 20_000,
        depth: 16,
        kill_every: 5_000,
        disk: None,
        disk_size: 256 << 20,
    };
    let mut channels_given = false;
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|arg| format!("unexpected argument {arg:?}"))?;
        if arg == "-h" || arg == "--help" {
            return Ok(Mode::Help);
        }
        if arg == "--verify" {
            options.verify_only = true;
            continue;
        }
        let value =
            args.next().and_then(|value| value.into_string().ok()).ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{arg} wants a number up to {max}, not {value:?}"))
        };
        match arg.as_str() {
            "--seconds" => {
                let seconds = value.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0);
                options.seconds = Duration::from_secs_f64(seconds.ok_or("--seconds wants (0, 3600]")?);
            }
            "--channels" => {
                options.channels = value
                    .split(',')
                    .map(|count| count.parse::<usize>().ok().filter(|count| (1..=4).contains(count)))
                    .collect::<Option<_>>()
                    .ok_or("--channels wants counts from 1 to 4, comma-separated")?;
                channels_given = true;
            }
            "--ios" => options.ios = number(u64::MAX)?,
            "--depth" => options.depth = number(64)?.max(1) as usize,
            "--kill-host-every" => options.kill_every = number(u64::MAX)?,
            "--disk" => options.disk = Some(PathBuf::from(&value)),
            "--disk-mib" => options.disk_size = number(1 << 20)?.max(2) << 20,
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if options.verify_only && !channels_given {
        options.channels = vec![4];
    }
    Ok(Mode::Guest(options))
}
