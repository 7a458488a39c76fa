//! uWebSockets as a peer: built from a source directory (`--uws-src DIR`, or
//! `HOLDFAST_UWS_SRC`; `../shared/peers/uWebSockets` holds a snapshot with uSockets inside)
//! with the system's C and C++ compilers, into a cache directory keyed by the source path
//! and our peer program (`bench/uws/peer.cpp`). Their library, our peer server.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The peer program's source.
const PEER: &str = include_str!("../../uws/peer.cpp");

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The built peer, once [`prepare`] succeeded.
pub fn binary() -> Option<&'static Path> {
    BINARY.get().map(PathBuf::as_path)
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first: String = err.lines().take(5).collect::<Vec<_>>().join(" / ");
    Err(format!("{:?} failed: {first}", cmd.get_program()))
}

/// Where a test finds uWebSockets' source: `HOLDFAST_UWS_SRC` when set (a wrong one then
/// fails the test in [`prepare`]), else the snapshot beside the project
/// (`../shared/peers/uWebSockets` from the workspace; `crate_dir` is the bench crate's
/// directory) when it is there. None, with a line saying why, when there is neither.
pub fn test_source(crate_dir: &Path) -> Option<PathBuf> {
    if let Some(src) = std::env::var_os("HOLDFAST_UWS_SRC") {
        return Some(PathBuf::from(src));
    }
    let snapshot = crate_dir.join("../../shared/peers/uWebSockets");
    if snapshot.join("src/App.h").exists() {
        return Some(snapshot);
    }
    eprintln!("no uWebSockets source (HOLDFAST_UWS_SRC or ../shared/peers/uWebSockets)");
    None
}

/// Build (or find in the cache) the uWebSockets peer from `src`; the reason when it cannot.
pub fn prepare(src: &Path) -> Result<PathBuf, String> {
    let app = src.join("src/App.h");
    let us = src.join("uSockets/src");
    if !app.exists() || !us.join("libusockets.h").exists() {
        return Err(format!(
            "{} is not a uWebSockets source directory (src/App.h and uSockets/src expected)",
            src.display()
        ));
    }
    if !have("gcc") || !have("g++") {
        return Err("gcc/g++ not found (apt-get install g++)".into());
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    src.canonicalize().unwrap_or(src.to_path_buf()).hash(&mut h);
    PEER.hash(&mut h);
    let dir = std::env::temp_dir().join(format!("holdfast-bench-uws-{:016x}", h.finish()));
    let exe = dir.join("uws-peer");
    if !exe.exists() {
        eprintln!(
            "uwebsockets: building the peer from {} into {}",
            src.display(),
            dir.display()
        );
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut objects = Vec::new();
        for sub in ["", "eventing", "crypto"] {
            let d = us.join(sub);
            let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "c") {
                    let name = format!("{sub}-{}.o", p.file_stem().unwrap().to_string_lossy());
                    let o = dir.join(name);
                    run(Command::new("gcc")
                        .args(["-O3", "-DLIBUS_NO_SSL", "-c"])
                        .arg("-I")
                        .arg(&us)
                        .arg(&p)
                        .arg("-o")
                        .arg(&o))?;
                    objects.push(o);
                }
            }
        }
        let peer = dir.join("peer.cpp");
        std::fs::write(&peer, PEER).map_err(|e| format!("{}: {e}", peer.display()))?;
        let tmp = dir.join("uws-peer.tmp");
        run(Command::new("g++")
            .args(["-O3", "-std=c++20", "-DLIBUS_NO_SSL", "-DUWS_NO_ZLIB"])
            .arg("-I")
            .arg(src.join("src"))
            .arg("-I")
            .arg(&us)
            .arg(&peer)
            .args(&objects)
            .arg("-o")
            .arg(&tmp))?;
        std::fs::rename(&tmp, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    }
    let _ = BINARY.set(exe.clone());
    Ok(exe)
}
