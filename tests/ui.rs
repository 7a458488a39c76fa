//! The live page (`/ui` on the admin listener) in a real headless Chromium: it loads with no
//! external assets, polls `/metrics`, and shows the load a running server is under. A
//! screenshot is kept in the test's scratch directory.

mod support;

use std::process::Command;

use holdfast::ws::OpCode;
use support::{publish, Raw, Server};

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        if Command::new(name).arg("--version").output().is_ok() {
            return name;
        }
    }
    panic!("chromium is installed by the test command (.ci/test)");
}

fn headless(url: &str, extra: &[&str]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            // Virtual time: the page's one-second polls run without the test sleeping.
            "--virtual-time-budget=5000",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn attr<'a>(dom: &'a str, prefix: &str) -> &'a str {
    let i = dom
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not in the page"));
    let rest = &dom[i + prefix.len()..];
    &rest[..rest.find(['"', '<']).unwrap()]
}

#[test]
fn the_live_page_shows_the_load_in_headless_chromium() {
    let srv = Server::start(&[]);
    // The load: 30 echo connections exchanging messages, and subscribers with publishes.
    let mut clients: Vec<Raw> = (0..30).map(|_| Raw::connect(srv.addr)).collect();
    for c in &mut clients {
        c.send_frame(true, OpCode::Text, b"load");
        assert_eq!(c.recv_non_ping(), support::Got::Text("load".into()));
    }
    let _subs: Vec<Raw> = (0..5)
        .map(|_| Raw::connect_to(srv.addr, "/ws?topics=ui"))
        .collect();
    srv.wait_metric("holdfast_pubsub_subscriptions", |v| v == 5.0);
    for _ in 0..20 {
        assert_eq!(publish(srv.admin, "ui", b"tick", false).0, 200);
    }
    srv.wait_metric("holdfast_setup_rate", |v| v > 0.0);

    let url = format!("http://{}/ui", srv.admin);
    let (code, page) = support::http(srv.admin, "GET", "/ui");
    assert_eq!(code, 200);
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(!page.contains(external), "an external asset: {external}");
    }
    let dom = headless(&url, &["--dump-dom"]);
    let polls: u32 = attr(&dom, "data-polls=\"").parse().unwrap();
    assert!(
        polls >= 3,
        "the page polled {polls} times in 5 s of virtual time"
    );
    assert_eq!(
        attr(&dom, "data-connections=\""),
        "35",
        "the connections it shows"
    );
    assert_eq!(attr(&dom, "id=\"now-connections\">"), "35");
    let rate: f64 = attr(&dom, "id=\"now-setup-rate\">").parse().unwrap();
    assert!(rate > 0.0, "the setup rate shows the connections made");
    assert!(attr(&dom, "id=\"now-memory\">").ends_with("MiB"));

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("holdfast-ui.png");
    let _ = std::fs::remove_file(&shot);
    headless(&url, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
