//! Prints the decoded contents of a ring image file: the control state, then
//! every packet between the read and the write index, one line each, checked
//! exactly as a reader checks them. The format is documented on
//! `vmbus_ring::RingDump`.
//!
//! A ring image is the ring's bytes: the 4096-byte control page, then the
//! data area (a non-zero multiple of 4096 bytes), as `vmbus_ring::ring_image`
//! returns them.
//!
//! ```text
//! cargo run -p vmbus_ring --example ringdump -- FILE
//! ```
//!
//! Exit status:
//!
//! - 0: the ring decoded cleanly, up to its write index;
//! - 1: the file cannot be read, or is not a ring image (wrong size);
//! - 2: bad arguments (usage printed to stderr);
//! - 3: decoding stopped on corruption (a corrupt index in the control page,
//!   or a corrupt packet; the packets before it are printed).

use std::ffi::OsString;
use std::process::ExitCode;
use vmbus_ring::{load_image, RingDump};

const USAGE: &str = "usage: ringdump FILE\n\nDecodes the ring image in FILE (a 4096-byte control page, then the data area).\nExit status: 0 clean, 1 unreadable or not a ring image, 2 bad arguments, 3 stopped on corruption.";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let path = match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [path] if !path.to_string_lossy().starts_with('-') => path,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let shown = path.to_string_lossy();
    let image = match std::fs::read(path) {
        Ok(image) => image,
        Err(error) => {
            eprintln!("ringdump: cannot read {shown}: {error}");
            return ExitCode::from(1);
        }
    };
    let mem = match load_image(&image) {
        Ok(mem) => mem,
        Err(error) => {
            eprintln!("ringdump: {shown} is not a ring image ({} bytes): {error}", image.len());
            return ExitCode::from(1);
        }
    };
    let dump = RingDump::decode(&mem);
    println!("{dump}");
    if dump.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
