//! The uWebSockets peer (issue 19): built from a source directory, skipped with the reason
//! without one, and speaking what the bench's workloads need (echo; subscribe at the
//! handshake, admin publish, numbered binary deliveries).

use std::io::{Read, Write};
use std::path::PathBuf;

use holdfast_bench::report::procs::{Kind, Server};
use holdfast_bench::report::uws;
use tungstenite::Message;

fn source() -> Option<PathBuf> {
    std::env::var_os("HOLDFAST_UWS_SRC")
        .map(PathBuf::from)
        .or_else(|| {
            let p =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/uWebSockets");
            p.join("src/App.h").exists().then_some(p)
        })
}

#[test]
fn a_directory_without_uwebsockets_is_refused_with_the_reason() {
    let why = uws::prepare(std::path::Path::new("/nonexistent/uws")).unwrap_err();
    assert!(why.contains("not a uWebSockets source directory"), "{why}");
}

#[test]
fn the_peer_builds_from_source_and_echoes_and_publishes() {
    let Some(src) = source() else {
        // Nothing to build from on this machine: the report skips the peer (tested above).
        eprintln!("no uWebSockets source (HOLDFAST_UWS_SRC or ../shared/peers/uWebSockets)");
        return;
    };
    let exe = uws::prepare(&src).expect("the peer builds");
    assert!(exe.exists());
    let server = Server::start(Kind::Uws, None, None, &[]).expect("the peer starts");
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/echo", server.addr)).unwrap();
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3]));

    let (mut sub, _) = tungstenite::connect(format!("ws://{}/ws?topics=t", server.addr)).unwrap();
    let ack = sub.read().unwrap().into_text().unwrap();
    assert_eq!(ack.as_str(), r#"{"type":"subscribed","topic":"t","seq":0}"#);
    let admin = server.admin.clone().expect("admin address");
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"POST /publish?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.ends_with(r#"{"seq":1}"#), "{answer}");
    let frame = sub.read().unwrap().into_data();
    // [len][topic][seq BE][body]
    assert_eq!(&frame[..], &[1, b't', 0, 0, 0, 0, 0, 0, 0, 1, b'h', b'i']);
}
