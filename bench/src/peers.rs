//! Peer servers for side-by-side runs with the same load generator, each written the way
//! its documentation shows: `holdfast-bench peer tokio-tungstenite --listen ADDR`.
//!
//! tokio-tungstenite: tokio's multi-threaded runtime (one worker per CPU, its default),
//! `accept_async` per connection, then read each message and write it back, as the crate's
//! `echo-server` example does.
//!
//! fastwebsockets: as its `echo_server` example — a current-thread tokio runtime (the
//! "single-threaded fastwebsockets" of the comparison), hyper 1 HTTP/1 with upgrades,
//! `upgrade::upgrade`, a `FragmentCollector`, and each data frame written back; auto pong and
//! auto close are the crate's defaults.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    /// tokio-tungstenite 0.30 on tokio's multi-thread runtime.
    TokioTungstenite,
    /// fastwebsockets 0.10 (hyper 1 upgrade) on a current-thread runtime.
    Fastwebsockets,
    /// Pub/sub: tokio-tungstenite with a tokio broadcast channel per topic
    /// (`crate::broadcast`; publishes on --admin).
    TokioTungsteniteBroadcast,
}

/// Options of `holdfast-bench peer`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Which server.
    #[arg(value_enum)]
    pub kind: PeerKind,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Runtime worker threads for tokio-tungstenite (default: tokio's, one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Publish address of the broadcast peer (`POST /publish?topic=T`).
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub admin: SocketAddr,
}

async fn fastwebsockets_client(
    fut: fastwebsockets::upgrade::UpgradeFut,
) -> Result<(), fastwebsockets::WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            fastwebsockets::OpCode::Close => break,
            fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {
                ws.write_frame(frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn fastwebsockets_upgrade(
    mut req: hyper::Request<hyper::body::Incoming>,
) -> Result<
    hyper::Response<http_body_util::Empty<hyper::body::Bytes>>,
    fastwebsockets::WebSocketError,
> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(fastwebsockets_client(fut)).await;
    });
    Ok(response)
}

fn run_fastwebsockets(listen: SocketAddr) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    serve(&rt, listen, |stream| async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, hyper::service::service_fn(fastwebsockets_upgrade))
            .with_upgrades();
        let _ = conn.await;
    })
}

/// Bind, say `listening on ADDR`, and run `handle` as a task per accepted connection.
fn serve<F, Fut>(rt: &tokio::runtime::Runtime, listen: SocketAddr, handle: F) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        holdfast::say!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(handle(stream));
        }
    })
}

/// Run the peer until killed. Prints `listening on ADDR` once bound.
pub fn run(a: PeerArgs) -> std::io::Result<()> {
    match a.kind {
        PeerKind::TokioTungstenite => run_tokio_tungstenite(a.listen, a.threads),
        PeerKind::Fastwebsockets => run_fastwebsockets(a.listen),
        PeerKind::TokioTungsteniteBroadcast => crate::broadcast::run(a.listen, a.admin, a.threads),
    }
}

fn run_tokio_tungstenite(listen: SocketAddr, threads: Option<usize>) -> std::io::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    serve(&rt, listen, |stream| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if (msg.is_binary() || msg.is_text()) && tx.send(msg).await.is_err() {
                break;
            }
        }
    })
}
