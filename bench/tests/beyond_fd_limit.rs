//! One server process holds more connections than `ulimit -n` allows (20,000 here): sockets
//! live only as io_uring direct descriptors, spread over several rings of one worker.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_bench::report::procs::{Kind, Server};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn one_process_holds_more_connections_than_its_fd_limit() {
    let limit = holdfast::io::sys::nofile_soft_limit() as usize;
    let n_per_client = 11_000;
    let clients = (limit + 1000).div_ceil(n_per_client).max(2);
    let total = clients * n_per_client;
    assert!(total > limit);
    // One worker, so one worker's rings must go past one file table (capped at `limit`).
    let server = Server::start(Kind::Holdfast, None, Some(1), &[]).expect("server");
    let mut children = Vec::new();
    for i in 0..clients {
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast-bench"))
            .args(["hold-client", "--addr", &server.addr])
            .args(["--connections", &n_per_client.to_string()])
            .args(["--source", &format!("127.0.{i}.2,127.0.{i}.3,127.0.{i}.4")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("hold-client");
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut up = 0.0;
    while up < total as f64 {
        assert!(
            Instant::now() < deadline,
            "only {up} of {total} connections"
        );
        std::thread::sleep(Duration::from_millis(250));
        up = server.metric("holdfast_websockets").expect("metrics");
    }
    let fds = open_fds(server.pid());
    let rings = server.metric("holdfast_rings").expect("metrics");
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(up, total as f64);
    assert!(
        fds < 100,
        "the server has {fds} fds: sockets leaked into the fd table"
    );
    assert!(
        rings >= 2.0,
        "{rings} rings for {total} connections with a {limit}-slot cap"
    );
}
