//! The new process's side of a live upgrade: say hello, take the listeners and the topics
//! before anything is started (so the server comes up on the same sockets with the same
//! numbering), then receive batches of connections and hand them to the workers.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::format::{self, Msg, TopicSnap};
use super::parent::{read, write};
use super::Links;

/// The environment variable naming the hand-over socket's descriptor in the new process.
pub const ENV: &str = "HOLDFAST_HANDOVER_FD";
/// Received descriptors not yet placed by a worker, at most: the receiving thread waits
/// above it, so a batch at a time, not the total, counts against `ulimit -n`.
const UNPLACED_MAX: usize = 4 * format::MAX_BATCH;

/// Numbers a publish forwarded by the old process: (topic, binary, payload) → (status, body).
pub type Publisher = Box<dyn Fn(&str, bool, &[u8]) -> (u16, String) + Send>;

/// What the old process handed over before the server starts.
#[derive(Debug)]
pub struct Inherited {
    sock: UnixStream,
    /// The data listeners.
    pub data: Vec<TcpListener>,
    /// The admin listener.
    pub admin: Option<TcpListener>,
    /// The metrics listener.
    pub metrics: Option<TcpListener>,
    /// The topics it numbered (none with a broker).
    pub topics: Vec<TopicSnap>,
}

impl Inherited {
    /// If this process was started by a live upgrade, take what the old one hands over.
    /// Ok(None): an ordinary start.
    pub fn take() -> Result<Option<Self>, String> {
        let Some(v) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let fd: i32 = v
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|&fd| fd > 2)
            .ok_or_else(|| format!("{ENV}={v:?} is not a descriptor"))?;
        // SAFETY: the old process left this descriptor open across exec for us and named
        // it in the environment; nothing else in this process knows or owns it.
        let mut sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if std::env::var_os("HOLDFAST_FAULT_HANDOVER_EXIT").is_some() {
            // Fault injection for the tests: the new binary dies before saying hello.
            std::process::exit(3);
        }
        write(
            &mut sock,
            &Msg::Hello {
                version: format::VERSION,
                pid: std::process::id(),
            },
            &[],
        )?;
        match Self::receive_start(&mut sock) {
            Ok((data, admin, metrics, topics)) => Ok(Some(Self {
                sock,
                data,
                admin,
                metrics,
                topics,
            })),
            Err(e) => {
                // Tell the old process why (it logs "the new process refused: …" and serves
                // on); it kills this process once it has read this, so nothing said after
                // would reach anyone.
                let _ = write(&mut sock, &Msg::Refuse { reason: e.clone() }, &[]);
                Err(e)
            }
        }
    }

    /// Everything the old process sends before this one starts: the listeners (data,
    /// admin, metrics) and the topics.
    #[allow(clippy::type_complexity)]
    fn receive_start(
        sock: &mut UnixStream,
    ) -> Result<
        (
            Vec<TcpListener>,
            Option<TcpListener>,
            Option<TcpListener>,
            Vec<TopicSnap>,
        ),
        String,
    > {
        let (m, fds) = read(sock)?;
        let Msg::Listeners {
            data,
            admin,
            metrics,
        } = m
        else {
            return Err(format!("expected the listeners, got {m:?}"));
        };
        let want = data as usize + usize::from(admin) + usize::from(metrics);
        if fds.len() != want || data == 0 {
            return Err(format!("{} listeners arrived, {want} announced", fds.len()));
        }
        let mut fds = fds.into_iter().map(TcpListener::from);
        let data: Vec<TcpListener> = fds.by_ref().take(data as usize).collect();
        let admin = if admin { fds.next() } else { None };
        let metrics = if metrics { fds.next() } else { None };
        let mut topics = Vec::new();
        loop {
            match read(sock)? {
                (Msg::Topics(t), _) => topics.extend(t),
                (Msg::Ready, _) => break,
                (Msg::Refuse { reason }, _) => return Err(format!("the old process: {reason}")),
                (m, _) => return Err(format!("expected topics, got {m:?}")),
            }
        }
        Ok((data, admin, metrics, topics))
    }

    /// The server is up: tell the old process, and take its connections on a thread;
    /// `publish` numbers the publishes the old process forwards (topic, binary, payload →
    /// the admin API's status and body).
    pub fn serve(mut self, links: Arc<Links>, publish: Publisher) -> Result<(), String> {
        write(&mut self.sock, &Msg::Ready, &[])?;
        let sock = self.sock;
        std::thread::Builder::new()
            .name("holdfast-takeover".into())
            .spawn(move || receive(sock, &links, &publish))
            .map(|_| ())
            .map_err(|e| format!("cannot start the take-over thread: {e}"))
    }
}

fn receive(mut sock: UnixStream, links: &Links, publish: &Publisher) {
    let workers = links.workers.len().max(1);
    let shared = &links.shared;
    let die_after: Option<u64> = std::env::var("HOLDFAST_FAULT_HANDOVER_DIE_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    // Fault injection for the tests: a slow new process (each batch acknowledged late).
    let slow = std::env::var("HOLDFAST_FAULT_HANDOVER_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis);
    let mut batches = 0u64;
    let mut done = false;
    loop {
        {
            // Wait until the workers have placed most of what arrived.
            let mut u = shared.unplaced.lock().unwrap_or_else(|p| p.into_inner());
            while *u > UNPLACED_MAX {
                u = shared.placed.wait(u).unwrap_or_else(|p| p.into_inner());
            }
        }
        let (m, fds) = match read(&mut sock) {
            Ok(x) => x,
            Err(_) if done => {
                tracing::info!("take-over: the old process has left");
                return;
            }
            Err(e) => {
                tracing::warn!("take-over: the old process went away ({e}); serving on");
                return;
            }
        };
        match m {
            Msg::Batch { id, conns } => {
                if conns.len() != fds.len() {
                    tracing::error!(
                        conns = conns.len(),
                        fds = fds.len(),
                        "take-over: a batch's descriptors do not match its connections"
                    );
                    let _ = write(
                        &mut sock,
                        &Msg::Refuse {
                            reason: "descriptors and states do not match".into(),
                        },
                        &[],
                    );
                    return;
                }
                batches += 1;
                if die_after.is_some_and(|n| batches > n) {
                    // Fault injection for the tests: die with a batch received and unanswered.
                    std::process::exit(3);
                }
                if let Some(d) = slow {
                    std::thread::sleep(d);
                }
                if write(&mut sock, &Msg::Ack { id }, &[]).is_err() {
                    tracing::warn!("take-over: the old process went away; serving on");
                    return;
                }
                let n = conns.len();
                *shared.unplaced.lock().unwrap_or_else(|p| p.into_inner()) += n;
                let mut per: Vec<super::Incoming> = (0..workers).map(|_| Vec::new()).collect();
                for (snap, fd) in conns.into_iter().zip(fds) {
                    let stream = std::net::TcpStream::from(fd);
                    let peer = stream.peer_addr().ok().map(|a| a.ip());
                    let w = usize::from(snap.worker) % workers;
                    per[w].push((snap, OwnedFd::from(stream), peer));
                }
                for (w, list) in per.into_iter().enumerate() {
                    if !list.is_empty() {
                        links.hand(w, list);
                    }
                }
            }
            Msg::Publish {
                id,
                topic,
                binary,
                payload,
            } => {
                let (status, body) = publish(&topic, binary, &payload);
                if write(&mut sock, &Msg::Published { id, status, body }, &[]).is_err() {
                    tracing::warn!("take-over: the old process went away; serving on");
                    return;
                }
            }
            Msg::Done { moved } => {
                tracing::info!(
                    moved,
                    "take-over complete: this process serves every moved connection"
                );
                crate::notify::notify(&format!("READY=1\nSTATUS=took over {moved} connections"));
                // Until the old process exits it may still forward publishes.
                done = true;
            }
            Msg::Refuse { reason } => {
                tracing::warn!("take-over: the old process stopped the upgrade: {reason}");
                return;
            }
            other => {
                tracing::warn!("take-over: unexpected {other:?}; stopping");
                return;
            }
        }
    }
}
