//! `hold-client`: open N WebSocket connections from one source address and hold them,
//! answering the server's pings, until told to stop. One process stays under the fd cap
//! (`ulimit -n`), so the density benchmark runs several. This is a plain epoll client; the
//! io_uring load generator with direct descriptors (`holdfast-loadgen`) supersedes it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use holdfast::ws::assembler::{Assembler, Message};
use holdfast::ws::client::{self, Response};
use holdfast::ws::frame::{encode_close, encode_frame};
use holdfast::ws::{Decoder, OpCode, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What to hold.
#[derive(Debug, Clone, clap::Args)]
pub struct HoldArgs {
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections to open.
    #[arg(long)]
    pub connections: usize,
    /// Source addresses to bind, comma-separated, used in turn. Keep each under ~5,000
    /// connections to one destination: connect(2) prefers even ports (half of
    /// ip_local_port_range) and its port search slows sharply once they run out.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub source: Vec<IpAddr>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Request path.
    #[arg(long, default_value = "/echo")]
    pub path: String,
}

#[derive(Default)]
struct Counts {
    established: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    pings: AtomicUsize,
}

pub(crate) async fn handshake(args: &HoldArgs, i: usize) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let source = args.source[i % args.source.len().max(1)];
    let sock = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Let connect(2), not bind(2), pick the source port (a previous run leaves tens of
    // thousands of TIME_WAIT ports that bind must avoid).
    holdfast::io::sys::set_bind_address_no_port(&sock)?;
    sock.bind(SocketAddr::new(source, 0))?;
    let mut s = sock.connect(args.addr).await?;
    // The key only has to be valid base64 of 16 bytes; vary it per connection.
    let mut key = *b"AAAAAAAAAAAAAAAAAAAAAA==";
    for (k, b) in key
        .iter_mut()
        .take(6)
        .zip(format!("{:06}", i % 1_000_000).bytes())
    {
        *k = b'A' + (b - b'0');
    }
    let key = std::str::from_utf8(&key).unwrap_or("AAAAAAAAAAAAAAAAAAAAAA==");
    let req = client::request(&args.addr.to_string(), &args.path, key, &[]);
    s.write_all(&req.bytes).await?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        match client::scan_response(&head, &req.accept) {
            Ok(None) => {}
            Ok(Some(Response::Upgraded { head_len })) => return Ok((s, head[head_len..].to_vec())),
            Ok(Some(Response::Refused { status, .. })) => {
                return Err(std::io::Error::other(format!("upgrade refused: {status}")))
            }
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

async fn hold(mut s: TcpStream, first: Vec<u8>, counts: &Counts) {
    let mut asm = Assembler::new(Decoder::new(Role::Client));
    let mut buf = [0u8; 256];
    let mut pending = first;
    loop {
        let mut replies = Vec::new();
        let mut closed = false;
        let fed = asm.feed(&pending, u32::MAX, |m| match m {
            Message::Ping(p) => {
                counts.pings.fetch_add(1, Relaxed);
                encode_frame(&mut replies, true, OpCode::Pong, Some([1, 2, 3, 4]), p);
            }
            Message::Close(code, _, reply) => {
                if let Some(echo) = reply {
                    encode_close(&mut replies, echo, "", Some([1, 2, 3, 4]));
                }
                let _ = code;
                closed = true;
            }
            _ => {}
        });
        if !replies.is_empty() && s.write_all(&replies).await.is_err() {
            break;
        }
        if fed.is_err() || closed {
            break;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pending = buf[..n].to_vec(),
        }
    }
    counts.closed.fetch_add(1, Relaxed);
}

/// Run the client until stdin closes; prints `established E failed F closed C pings P`
/// lines every 500 ms.
pub fn run(args: HoldArgs) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let counts = Arc::new(Counts::default());
        let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let args = Arc::new(args);
        for i in 0..args.connections {
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let (args, counts) = (args.clone(), counts.clone());
            tokio::spawn(async move {
                let r = tokio::time::timeout(Duration::from_secs(30), handshake(&args, i)).await;
                drop(permit);
                match r {
                    Ok(Ok((s, rest))) => {
                        counts.established.fetch_add(1, Relaxed);
                        hold(s, rest, &counts).await;
                    }
                    _ => {
                        counts.failed.fetch_add(1, Relaxed);
                    }
                }
            });
        }
        let report = counts.clone();
        tokio::spawn(async move {
            loop {
                holdfast::say!(
                    "established {} failed {} closed {} pings {}",
                    report.established.load(Relaxed),
                    report.failed.load(Relaxed),
                    report.closed.load(Relaxed),
                    report.pings.load(Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        // Hold until the parent closes our stdin.
        let mut stdin = tokio::io::stdin();
        let mut b = [0u8; 64];
        while let Ok(n) = stdin.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    });
}
