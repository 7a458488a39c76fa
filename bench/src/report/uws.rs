//! uWebSockets as a peer: built from a source directory (`--uws-src DIR`, or
//! `HOLDFAST_UWS_SRC`; `../shared/peers/uWebSockets` holds a snapshot with uSockets inside)
//! with the system's C and C++ compilers, into a cache directory keyed by the sources'
//! contents (not their path: a snapshot updated in place is rebuilt) and our peer program
//! (`bench/uws/peer.cpp`). Their library, our peer server.
//!
//! Two builds: `uws-peer` without TLS (`LIBUS_NO_SSL`) for every section, and `uws-peer-tls`
//! (`LIBUS_USE_OPENSSL`, uSockets' `crypto/`) for the TLS section, where it serves wss://
//! with the test certificate: against the system's OpenSSL (libssl-dev), or against BoringSSL
//! built from a source directory (`--uws-boringssl DIR`, with cmake), which uSockets'
//! Makefile prefers.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The peer program's source.
const PEER: &str = include_str!("../../uws/peer.cpp");

static BINARY: OnceLock<PathBuf> = OnceLock::new();
static BINARY_TLS: OnceLock<(PathBuf, String)> = OnceLock::new();

/// The built peer, once [`prepare`] succeeded.
pub fn binary() -> Option<&'static Path> {
    BINARY.get().map(PathBuf::as_path)
}

/// The peer built with TLS, once [`prepare_tls`] succeeded.
pub fn binary_tls() -> Option<&'static Path> {
    BINARY_TLS.get().map(|(p, _)| p.as_path())
}

/// The TLS library the TLS peer was built against (for the report), once built.
pub fn tls_library() -> Option<&'static str> {
    BINARY_TLS.get().map(|(_, l)| l.as_str())
}

/// Where OpenSSL's headers are looked for (Debian's libssl-dev).
const OPENSSL_HEADER: &str = "/usr/include/openssl/ssl.h";

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
    let exe = build(src, None)?;
    let _ = BINARY.set(exe.clone());
    Ok(exe)
}

/// Build (or find in the cache) the peer with TLS from `src`, against BoringSSL built from
/// `boringssl` when given, else the system's OpenSSL; the reason when it cannot (no OpenSSL
/// headers: `apt-get install libssl-dev`; no cmake for BoringSSL: `apt-get install cmake`).
pub fn prepare_tls(src: &Path, boringssl: Option<&Path>) -> Result<PathBuf, String> {
    let (lib, library) = match boringssl {
        Some(dir) => {
            let lib = build_boringssl(dir)?;
            let library = format!("BoringSSL ({})", dir.display());
            (TlsLib::Boring(lib), library)
        }
        None => {
            if !Path::new(OPENSSL_HEADER).exists() {
                return Err(format!(
                    "no OpenSSL headers ({OPENSSL_HEADER}: apt-get install libssl-dev) to build its TLS peer"
                ));
            }
            (TlsLib::System, openssl_version())
        }
    };
    let exe = build(src, Some(&lib))?;
    let _ = BINARY_TLS.set((exe.clone(), library));
    Ok(exe)
}

/// What the TLS peer links.
enum TlsLib {
    /// The system's OpenSSL (`-lssl -lcrypto`).
    System,
    /// BoringSSL: its include directory and its two static libraries.
    Boring(BoringLib),
}

struct BoringLib {
    include: PathBuf,
    ssl: PathBuf,
    crypto: PathBuf,
}

/// The system OpenSSL's version line (`openssl version`), or just "OpenSSL".
fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split(" (").next().map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "OpenSSL".into())
}

/// Build BoringSSL's `ssl` and `crypto` from `dir` with cmake (Release) into a build
/// directory kept per source path. The build runs every time: cmake's own dependency
/// tracking rebuilds what changed in the source (a tree updated in place) and costs about
/// half a second when nothing did.
fn build_boringssl(dir: &Path) -> Result<BoringLib, String> {
    if !dir.join("include/openssl/ssl.h").exists() || !dir.join("CMakeLists.txt").exists() {
        return Err(format!(
            "{} is not a BoringSSL source directory (include/openssl/ssl.h and CMakeLists.txt expected)",
            dir.display()
        ));
    }
    if !have("cmake") {
        return Err("cmake not found (apt-get install cmake) to build BoringSSL".into());
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.canonicalize().unwrap_or(dir.to_path_buf()).hash(&mut h);
    let build = std::env::temp_dir().join(format!("holdfast-bench-boringssl-{:016x}", h.finish()));
    let (ssl, crypto) = (build.join("libssl.a"), build.join("libcrypto.a"));
    if !ssl.exists() || !crypto.exists() {
        eprintln!(
            "uwebsockets: building BoringSSL from {} into {} (a few minutes)",
            dir.display(),
            build.display()
        );
    }
    if !build.join("CMakeCache.txt").exists() {
        run(Command::new("cmake")
            .args(["-DCMAKE_BUILD_TYPE=Release", "-S"])
            .arg(dir)
            .arg("-B")
            .arg(&build))?;
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(Command::new("cmake").arg("--build").arg(&build).args([
        "--target",
        "ssl",
        "crypto",
        "-j",
        &jobs.to_string(),
    ]))?;
    Ok(BoringLib {
        include: dir.join("include"),
        ssl,
        crypto,
    })
}

/// Add to `h` every C and C++ source and header under `dir` (recursively, in name order):
/// each one's path below `dir` and its contents. What a build of them depends on, wherever
/// the tree was copied.
fn hash_sources(dir: &Path, h: &mut impl Hasher) -> Result<(), String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("c" | "cc" | "cpp" | "h" | "hpp" | "inc")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        f.strip_prefix(dir).unwrap_or(&f).hash(h);
        std::fs::read(&f)
            .map_err(|e| format!("{}: {e}", f.display()))?
            .hash(h);
    }
    Ok(())
}

fn build(src: &Path, tls: Option<&TlsLib>) -> Result<PathBuf, String> {
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
    hash_sources(&src.join("src"), &mut h)?;
    hash_sources(&us, &mut h)?;
    PEER.hash(&mut h);
    let (name, ssl) = if tls.is_some() {
        ("uws-peer-tls", "-DLIBUS_USE_OPENSSL")
    } else {
        ("uws-peer", "-DLIBUS_NO_SSL")
    };
    // A TLS build's directory is keyed by the library too: BoringSSL's by its headers and
    // its two static libraries as they are now, so a rebuilt BoringSSL relinks the peer.
    let include = match tls {
        None => None,
        Some(TlsLib::System) => {
            name.hash(&mut h);
            None
        }
        Some(TlsLib::Boring(b)) => {
            name.hash(&mut h);
            hash_sources(&b.include, &mut h)?;
            for lib in [&b.ssl, &b.crypto] {
                std::fs::read(lib)
                    .map_err(|e| format!("{}: {e}", lib.display()))?
                    .hash(&mut h);
            }
            Some(b.include.as_path())
        }
    };
    let dir = std::env::temp_dir().join(format!("holdfast-bench-uws-{:016x}", h.finish()));
    let exe = dir.join(name);
    if !exe.exists() {
        eprintln!(
            "uwebsockets: building {name} from {} into {}",
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
                let (compiler, std) = match p.extension().and_then(|x| x.to_str()) {
                    Some("c") => ("gcc", None),
                    // uSockets' SNI tree, only in the TLS build.
                    Some("cpp") if tls.is_some() => ("g++", Some("-std=c++17")),
                    _ => continue,
                };
                let o = dir.join(format!(
                    "{sub}-{}.o",
                    p.file_stem().unwrap().to_string_lossy()
                ));
                let mut cc = Command::new(compiler);
                cc.args(["-O3", ssl, "-c"]).args(std);
                if let Some(i) = include {
                    cc.arg("-I").arg(i);
                }
                run(cc.arg("-I").arg(&us).arg(&p).arg("-o").arg(&o))?;
                objects.push(o);
            }
        }
        let peer = dir.join("peer.cpp");
        std::fs::write(&peer, PEER).map_err(|e| format!("{}: {e}", peer.display()))?;
        let tmp = dir.join(format!("{name}.tmp"));
        let mut link = Command::new("g++");
        link.args(["-O3", "-std=c++20", ssl, "-DUWS_NO_ZLIB"]);
        if let Some(i) = include {
            link.arg("-I").arg(i);
        }
        link.arg("-I")
            .arg(src.join("src"))
            .arg("-I")
            .arg(&us)
            .arg(&peer)
            .args(&objects)
            .arg("-o")
            .arg(&tmp);
        match tls {
            Some(TlsLib::System) => {
                link.args(["-lssl", "-lcrypto"]);
            }
            Some(TlsLib::Boring(b)) => {
                link.arg(&b.ssl).arg(&b.crypto).arg("-lpthread");
            }
            None => {}
        }
        run(&mut link)?;
        std::fs::rename(&tmp, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    }
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hash_sources(dir, &mut h).unwrap();
        h.finish()
    }

    #[test]
    fn the_build_key_follows_the_sources_contents_not_their_path() {
        let base = std::env::temp_dir().join(format!("holdfast-uws-key-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("eventing")).unwrap();
            std::fs::write(d.join("loop.c"), "int x;").unwrap();
            std::fs::write(d.join("eventing/epoll.h"), "#define E 1").unwrap();
        }
        // The same tree in two places: one key.
        assert_eq!(key(&a), key(&b));
        let before = key(&a);
        // A file that is not a source changes nothing.
        std::fs::write(a.join("README.md"), "notes").unwrap();
        assert_eq!(key(&a), before);
        // A header edited in place, in a subdirectory: a new key.
        std::fs::write(a.join("eventing/epoll.h"), "#define E 2").unwrap();
        assert_ne!(key(&a), before);
        // A source renamed with the same contents: a new key.
        std::fs::rename(b.join("loop.c"), b.join("loop2.c")).unwrap();
        assert_ne!(key(&b), before);
        // A directory that is not there is an error, not an empty key.
        assert!(hash_sources(
            &base.join("missing"),
            &mut std::collections::hash_map::DefaultHasher::new()
        )
        .is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
