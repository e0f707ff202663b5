//! The device end to end: the binary as the host process, the library as
//! the guest, a verify run with the host killed mid-run.

use std::path::PathBuf;
use std::time::Duration;
use vmbus_blockdev::drive::drive;
use vmbus_blockdev::guest::Guest;
use vmbus_blockdev::image;
use vmbus_blockdev::launcher::Launcher;
use vmbus_blockdev::memory::Layout;
use vmbus_blockdev::pattern::{self, BLOCK};
use vmbus_blockdev::verify::Verify;

const DISK: u64 = 16 << 20;

/// Removes the disk image when dropped.
struct Image(PathBuf);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_verify_run_survives_host_kills_without_a_mismatch() {
    let image = Image(std::env::temp_dir().join(format!("vmbus-blockdev-e2e-{}.img", std::process::id())));
    image::create(&image.0, DISK).unwrap();
    let launcher = Launcher {
        program: env!("CARGO_BIN_EXE_vmbus-blockdev").into(),
        args: vec!["host".into(), "--disk".into(), image.0.clone().into()],
    };
    let depth = 8;
    let layout = Layout { channels: 2, guest_to_host_pages: 33, host_to_guest_pages: 9, slots: depth };
    let mut guest = Guest::start(layout, launcher, Duration::from_secs(10)).unwrap();
    let mut verify = Verify::new(DISK / BLOCK as u64, 3000, depth, Some(1000), 7);
    drive(&mut guest, depth, &mut verify).unwrap();
    // Killed after 1000 and 2000 completions, each time with requests in
    // flight; the kill after the last one is noticed by the read-back.
    assert_eq!(guest.restarts(), 2);
    verify.read_back_everything();
    drive(&mut guest, depth, &mut verify).unwrap();
    assert_eq!(guest.restarts(), 3);
    guest.shut_down().unwrap();
    let result = verify.result();
    // 16 MiB read back in 16 requests of 1 MiB.
    assert_eq!((result.ios, result.mismatches), (3000 + 16, 0));
    assert!(result.reads > 0 && result.writes > 0 && result.flushes > 0);
}

#[test]
fn a_disk_that_does_not_hold_what_was_written_is_caught() {
    let image = Image(std::env::temp_dir().join(format!("vmbus-blockdev-e2e-bad-{}.img", std::process::id())));
    // Not the zeros the verify run expects of blocks it never wrote.
    std::fs::write(&image.0, vec![0xff; DISK as usize]).unwrap();
    let launcher = Launcher {
        program: env!("CARGO_BIN_EXE_vmbus-blockdev").into(),
        args: vec!["host".into(), "--disk".into(), image.0.clone().into()],
    };
    let layout = Layout { channels: 1, guest_to_host_pages: 33, host_to_guest_pages: 9, slots: 4 };
    let mut guest = Guest::start(layout, launcher, Duration::from_secs(10)).unwrap();
    let mut verify = Verify::new(DISK / BLOCK as u64, 0, 4, None, 7);
    verify.read_back_everything();
    drive(&mut guest, 4, &mut verify).unwrap();
    guest.shut_down().unwrap();
    assert_eq!(verify.result().mismatches, DISK / BLOCK as u64);
}

#[test]
fn the_pattern_check_catches_a_flipped_byte_and_a_stale_generation() {
    let mut block = vec![0; BLOCK];
    pattern::fill(&mut block, 12, 5);
    assert!(pattern::check(&block, 12, 5));
    assert!(!pattern::check(&block, 12, 4), "an older generation");
    assert!(!pattern::check(&block, 13, 5), "another block's data");
    block[1000] ^= 1;
    assert!(!pattern::check(&block, 12, 5), "a flipped bit");
    assert!(pattern::check(&[0; BLOCK], 12, 0), "never written: zeros");
}
