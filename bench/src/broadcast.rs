//! The pub/sub comparison peer: a tokio-tungstenite broadcast server built the idiomatic way
//! (a `tokio::sync::broadcast` channel per topic, a task per connection that forwards what
//! it receives), speaking the subset of holdfast's protocol the loadgen's `fanout` uses, so
//! the same load generator drives both:
//!
//! - `GET /ws?topics=a,b` upgrades and subscribes; the server answers
//!   `{"type":"subscribed","topic":T,"seq":N}` per topic.
//! - `POST /publish?topic=T` on the admin address (keep-alive) numbers the body per topic and
//!   broadcasts the binary frame `[len][topic][seq BE][body]`, answering `{"seq":N}`.
//!
//! A receiver that lags past the channel's capacity loses messages (tokio reports how many);
//! the loadgen sees that as sequence jumps. Like holdfast's queues, the capacity bounds
//! memory per slow subscriber.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Messages a topic's channel holds for its slowest receiver.
const CAPACITY: usize = 4096;

struct Topic {
    seq: u64,
    tx: broadcast::Sender<Bytes>,
}

#[derive(Default)]
struct Topics(Mutex<HashMap<String, Topic>>);

impl Topics {
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let t = map.entry(name.to_string()).or_insert_with(|| Topic {
            seq: 0,
            tx: broadcast::channel(CAPACITY).0,
        });
        f(t)
    }
}

/// Run until killed; prints `listening on ADDR` and `admin listening on ADDR`.
pub fn run(listen: SocketAddr, admin: SocketAddr, threads: Option<usize>) -> std::io::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let topics = Arc::new(Topics::default());
        let ws = tokio::net::TcpListener::bind(listen).await?;
        let adm = tokio::net::TcpListener::bind(admin).await?;
        holdfast::say!("admin listening on {}", adm.local_addr()?);
        holdfast::say!("listening on {}", ws.local_addr()?);
        let t = topics.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = adm.accept().await {
                tokio::spawn(publisher(s, t.clone()));
            }
        });
        loop {
            let (s, _) = ws.accept().await?;
            tokio::spawn(subscriber(s, topics.clone()));
        }
    })
}

async fn subscriber(stream: tokio::net::TcpStream, topics: Arc<Topics>) {
    let mut query = String::new();
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    let cb = |req: &Request, resp: Response| {
        query = req.uri().query().unwrap_or("").to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
        return;
    };
    let names: Vec<String> = query
        .split('&')
        .filter_map(|p| p.strip_prefix("topics="))
        .flat_map(|v| v.split(',').map(str::to_string))
        .filter(|t| !t.is_empty())
        .collect();
    let (mut tx, mut rx) = ws.split();
    let mut subs = futures_util::stream::SelectAll::new();
    for name in &names {
        let (seq, r) = topics.with(name, |t| (t.seq, t.tx.subscribe()));
        let ack = serde_json::json!({"type": "subscribed", "topic": name, "seq": seq});
        if tx.send(Message::text(ack.to_string())).await.is_err() {
            return;
        }
        subs.push(tokio_stream_of(r));
    }
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
            Some(frame) = subs.next() => {
                if tx.send(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A broadcast receiver as a stream; lagged receivers skip ahead (the loss shows as a jump in
/// sequence numbers).
fn tokio_stream_of(
    r: broadcast::Receiver<Bytes>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>> {
    Box::pin(futures_util::stream::unfold(r, |mut r| async move {
        loop {
            match r.recv().await {
                Ok(b) => return Some((b, r)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

async fn publisher(stream: tokio::net::TcpStream, topics: Arc<Topics>) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        let mut keep = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection") {
                    keep = v.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        let mut body = vec![0u8; len.min(1 << 20)];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let topic = target
            .split_once("topic=")
            .map(|(_, t)| t.split('&').next().unwrap_or(""))
            .unwrap_or("");
        let (status, answer) = if topic.is_empty() || topic.len() > 255 {
            (400, "bad topic\n".to_string())
        } else {
            let seq = topics.with(topic, |t| {
                t.seq += 1;
                let mut frame = Vec::with_capacity(9 + topic.len() + body.len());
                frame.push(topic.len() as u8);
                frame.extend_from_slice(topic.as_bytes());
                frame.extend_from_slice(&t.seq.to_be_bytes());
                frame.extend_from_slice(&body);
                let _ = t.tx.send(Bytes::from(frame));
                t.seq
            });
            (200, format!("{{\"seq\":{seq},\"topic\":\"{topic}\"}}\n"))
        };
        let conn = if keep { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: {conn}\r\n\r\n{answer}",
            answer.len()
        );
        if w.write_all(head.as_bytes()).await.is_err() || !keep {
            return;
        }
    }
}
