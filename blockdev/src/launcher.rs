//! Starting a host process and meeting it on a Unix socket.

use crate::error::DeviceError;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How often a wait for a child process looks at it.
const LOOK_EVERY: Duration = Duration::from_millis(2);

/// How to start a host: a program and its arguments; `--socket PATH` is
/// appended, the socket the host connects to for its set-up message.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The program, usually this executable.
    pub program: PathBuf,
    /// Its arguments before `--socket PATH`.
    pub args: Vec<OsString>,
}

/// A running host process.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
}

/// Removes the socket path when dropped.
struct SocketPath(PathBuf);

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl Launcher {
    /// Starts a host and waits (up to `stall`) for it to connect.
    pub fn start(&self, stall: Duration) -> Result<(HostProcess, UnixStream), DeviceError> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let name = format!("vmbus-blockdev-{}-{}.sock", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed));
        let path = SocketPath(std::env::temp_dir().join(name));
        let _ = fs::remove_file(&path.0);
        let listener = UnixListener::bind(&path.0)?;
        listener.set_nonblocking(true)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .arg("--socket")
            .arg(&path.0)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|error| DeviceError::Host(format!("cannot start {}: {error}", self.program.display())))?;
        let mut host = HostProcess { child };
        let deadline = Instant::now() + stall;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    return Ok((host, stream));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error.into()),
            }
            if let Some(status) = host.child.try_wait()? {
                return Err(DeviceError::Host(format!("the host exited before connecting: {status}")));
            }
            if Instant::now() >= deadline {
                host.kill();
                return Err(DeviceError::Stalled(stall, "the host connecting"));
            }
            thread::sleep(LOOK_EVERY);
        }
    }
}

impl HostProcess {
    /// Kills the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; kills it
    /// after that. Fails if it failed or had to be killed.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<(), DeviceError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait()? {
                Some(status) if status.success() => return Ok(()),
                Some(status) => return Err(DeviceError::Host(format!("the host exited with {status}"))),
                None if Instant::now() >= deadline => {
                    self.kill();
                    return Err(DeviceError::Stalled(timeout, "the host exiting"));
                }
                None => thread::sleep(LOOK_EVERY),
            }
        }
    }
}
