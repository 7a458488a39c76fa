//! Peer servers for side-by-side runs with the same load generator, each written the way
//! its documentation shows: `holdfast-bench peer tokio-tungstenite --listen ADDR`.
//!
//! tokio-tungstenite: tokio's multi-threaded runtime (one worker per CPU, its default),
//! `accept_async` per connection, then read each message and write it back, as the crate's
//! `echo-server` example does.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    /// tokio-tungstenite 0.30 on tokio's multi-thread runtime.
    TokioTungstenite,
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
    /// Runtime worker threads (default: tokio's, one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Run the peer until killed. Prints `listening on ADDR` once bound.
pub fn run(a: PeerArgs) -> std::io::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = a.threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        match a.kind {
            PeerKind::TokioTungstenite => loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(msg)) = rx.next().await {
                        if (msg.is_binary() || msg.is_text()) && tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
            },
        }
    })
}
