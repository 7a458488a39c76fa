//! When io_uring cannot be used, the server exits non-zero naming the cause and the fix.
//!
//! This flips `kernel.io_uring_disabled` system-wide, so it lives in its own test binary
//! (`cargo test` runs test binaries one after another; under cargo-nextest, which runs
//! binaries in parallel, run it alone) and restores the value on every path.

use std::process::Command;

const KEY: &str = "/proc/sys/kernel/io_uring_disabled";

struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(KEY, &self.0);
    }
}

#[test]
fn disabled_io_uring_is_reported_with_the_fix() {
    let Ok(before) = std::fs::read_to_string(KEY) else {
        eprintln!("skipped: {KEY} does not exist on this kernel");
        return;
    };
    if std::fs::write(KEY, "2").is_err() {
        eprintln!("skipped: {KEY} is not writable (not root?)");
        return;
    }
    let _restore = Restore(before.trim().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--workers",
            "1",
        ])
        .output()
        .unwrap();
    drop(_restore);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kernel.io_uring_disabled=2"), "{err}");
    assert!(
        err.contains("sysctl -w kernel.io_uring_disabled=0"),
        "{err}"
    );
}
