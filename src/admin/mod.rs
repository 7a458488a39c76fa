//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /drain`, and pub/sub's
//! `POST /publish?topic=T` and `GET /topics`; and the optional observe-only listener
//! (`--metrics-listen`: metrics and health, no control).
//!
//! Plain blocking threads, one per admin connection (at most [`MAX_CONNECTIONS`] per
//! listener; when full, the connection waiting longest on its client makes room, see
//! [`conns`]): admin traffic is small next to the data plane, and keeping it off the
//! workers' rings keeps it so. Every request is bounded ([`http`]: head size, one deadline
//! for the whole request, body cap); control endpoints need the bearer token when one is
//! configured and refuse browser requests (any `Origin`), so a web page can neither drain
//! the node nor publish.

mod closing;
mod conns;
mod http;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use crate::metrics::{self, WorkerMetrics};
use crate::pubsub::Hub;
use crate::pubsub::Payload;
pub use conns::MAX_CONNECTIONS;
use conns::{Admit, Slot, Table};
use http::Request;

/// Each listener's connections, for making room when one is full and for `/metrics`.
#[derive(Debug, Default)]
pub struct Listeners {
    admin: Table,
    observe: Table,
}

impl Listeners {
    fn of(&self, role: Role) -> &Table {
        match role {
            Role::Admin => &self.admin,
            Role::Observe => &self.observe,
        }
    }

    /// Each listener's figures for `/metrics`.
    fn figures(&self) -> [metrics::AdminListener; 2] {
        let of = |name, t: &Table| metrics::AdminListener {
            name,
            serving: t.serving() as u64,
            displaced: t.displaced.load(Ordering::Relaxed),
            refused: t.refused.load(Ordering::Relaxed),
        };
        [of("admin", &self.admin), of("observe", &self.observe)]
    }
}

/// What the admin listener reads and changes: the lifecycle flags, every worker's counters
/// and the pub/sub hub.
#[derive(Debug)]
pub struct State {
    /// Drain and stop flags.
    pub life: Arc<Lifecycle>,
    /// Every worker's counters.
    pub metrics: Vec<Arc<WorkerMetrics>>,
    /// Pub/sub: topics, numbering, replay windows, fan-out to workers.
    pub hub: Arc<Hub>,
    /// Publishes, users and presence, on this node or across the fleet.
    pub backplane: Arc<crate::backplane::Backplane>,
    /// The process's RSS once the workers were ready, before any connection (bytes).
    pub rss_baseline: std::sync::atomic::AtomicU64,
    /// `--max-connections`, exposed so capacity alerts need no copy of the configuration.
    pub max_connections: usize,
    /// The storm signal (setup rate against its baseline), updated once a second.
    pub storm: Arc<crate::storm::Shared>,
    /// The process-wide memory budget (for `/metrics`).
    pub memory: Arc<crate::budget::MemoryBudget>,
    /// Largest `POST /publish` body (the `--max-message` limit).
    pub max_publish: usize,
    /// The bearer token control endpoints require (`--admin-token-file`), if any.
    pub token: Option<String>,
    /// How long one request may take to arrive, head and body.
    pub request_deadline: Duration,
    /// The TLS certificate store, when TLS is on (for its metrics).
    pub tls: Option<Arc<crate::tls::CertStore>>,
    /// Live upgrades (`POST /upgrade`, `GET /upgrade`), once the server is up.
    pub upgrader: std::sync::OnceLock<Arc<crate::handover::parent::Upgrader>>,
    /// The connections each listener serves.
    pub listeners: Listeners,
    /// The last `/metrics` text rendered, shared by scrapes that come together.
    pub scrapes: Scrapes,
}

/// The least time from the end of one `/metrics` render to the start of the next.
///
/// A render reads every worker's histograms and the hub's topics, and each admin connection
/// has its own thread: scrapers in a loop on the observe listener (the one exposed to
/// scrapers) each rendered at once, on every CPU the workers have. Now renders go one at a
/// time and at most one per gap; a scrape waits for the next render rather than make its
/// own, and one that starts after a scrape arrived answers it too (what it shows is never
/// older than the request).
pub const SCRAPE_GAP: Duration = Duration::from_millis(50);

/// The last `/metrics` render (when it started and ended, and its text), and the counts.
#[derive(Debug, Default)]
pub struct Scrapes {
    last: Mutex<Option<(Instant, Instant, Arc<str>)>>,
    asked: AtomicU64,
    rendered: AtomicU64,
}

impl Scrapes {
    /// A render that started after `asked`, or a new one (after waiting out the gap).
    /// `render` gets the counts so far (this scrape and this render included).
    fn text(&self, asked: Instant, render: impl FnOnce(u64, u64) -> String) -> Arc<str> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((started, ended, text)) = &*last {
            if *started >= asked {
                return text.clone();
            }
            // Holding the lock: the scrapes behind wait, and take what this one renders.
            let wait = (*ended + SCRAPE_GAP).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let started = Instant::now();
        let rendered = self.rendered.fetch_add(1, Ordering::Relaxed) + 1;
        let text: Arc<str> = render(self.asked.load(Ordering::Relaxed), rendered).into();
        *last = Some((started, Instant::now(), text.clone()));
        text
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: observation and control.
    Admin,
    /// `/metrics`, `/healthz`, `/readyz` only: safe to expose to a scraper.
    Observe,
}

/// How often a thread blocked in accept, or a connection idle between requests, looks
/// whether its listener is stopping.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A listener being served; [`Listening::stop`] ends it gracefully.
#[derive(Debug)]
pub struct Listening {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its descriptor (open for as long as the process runs, for the next upgrade to hand
    /// over).
    pub fd: std::os::fd::RawFd,
    stop: Arc<AtomicBool>,
    shared: Arc<State>,
    role: Role,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Listening {
    /// Stop accepting (a connection not yet accepted stays queued on the listener, for
    /// whichever process shares it next), then wait up to `grace` for the connections
    /// being served to finish: a request in flight gets its answer, an idle keep-alive
    /// connection is closed between requests. Returns how many were still open when the
    /// grace ran out. Without this, a process leaving after a live upgrade reset the admin
    /// requests it had accepted from the shared listener in its last milliseconds.
    pub fn stop(mut self, grace: Duration) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accepting.take() {
            // Within STOP_CHECK; afterwards the table holds every connection it accepted.
            let _ = t.join();
        }
        let table = self.shared.listeners.of(self.role);
        let until = std::time::Instant::now() + grace;
        let open = table.alive();
        if open > 0 {
            tracing::info!(
                connections = open,
                listener = %self.addr,
                "answering the admin connections open before exiting"
            );
        }
        loop {
            let left = table.alive();
            if left == 0 || std::time::Instant::now() >= until {
                return left;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Bind a listener with `role` and serve it on background threads.
pub fn spawn(addr: SocketAddr, shared: Arc<State>, role: Role) -> std::io::Result<Listening> {
    spawn_on(TcpListener::bind(addr)?, shared, role)
}

/// Serve `listener` (bound here, or handed over by the previous process in a live upgrade)
/// with `role` on background threads until [`Listening::stop`].
pub fn spawn_on(
    listener: TcpListener,
    shared: Arc<State>,
    role: Role,
) -> std::io::Result<Listening> {
    use std::os::fd::AsRawFd;
    let local = listener.local_addr()?;
    let fd = listener.as_raw_fd();
    crate::io::sys::set_accept_timeout(&listener, STOP_CHECK)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (stop1, shared1) = (stop.clone(), shared.clone());
    let accepting = std::thread::Builder::new()
        .name("holdfast-admin".into())
        .spawn(move || {
            let (stop, shared) = (stop1, shared1);
            let table = shared.listeners.of(role);
            let mut backoff = Duration::from_millis(10);
            let (mut displaced_line, mut refused_line) = (Notice::default(), Notice::default());
            // Refused connections, kept until their client has read the 503.
            let mut closing = closing::Closing::default();
            // The listener stays open after this loop: its descriptor may be handed over.
            let listener = std::mem::ManuallyDrop::new(listener);
            while !stop.load(Ordering::SeqCst) {
                let accepted = listener.accept();
                closing.sweep(Instant::now());
                let s = match accepted {
                    Ok((s, _)) => s,
                    // The accept timeout: look at the stop flag again.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Out of fds (EMFILE) and the like: back off instead of spinning on
                        // a listener that stays readable.
                        tracing::warn!("admin accept failed: {e}; retrying in {backoff:?}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                backoff = Duration::from_millis(10);
                let (slot, key) = match table.admit(s) {
                    Admit::Full(s) => {
                        if let Some(unlogged) = refused_line.due() {
                            tracing::warn!(
                                listener = %local,
                                max = MAX_CONNECTIONS,
                                suppressed = unlogged,
                                "admin listener full with every connection being answered: \
                                 answered 503"
                            );
                        }
                        let mut answer = Vec::new();
                        let body = "too many admin connections\n";
                        let _ = http::respond(&mut answer, 503, "text/plain", body, false, "");
                        closing.add(s, &answer, Instant::now());
                        continue;
                    }
                    Admit::Serve {
                        slot,
                        key,
                        displaced,
                    } => {
                        if let Some(c) = displaced {
                            if let Some(unlogged) = displaced_line.due() {
                                tracing::warn!(
                                    listener = %local,
                                    max = MAX_CONNECTIONS,
                                    closed = c.phase.name(),
                                    waited_ms = c.waited.as_millis() as u64,
                                    suppressed = unlogged,
                                    "admin listener full: closed the connection waiting \
                                     longest on its client to serve a new one"
                                );
                            }
                        }
                        (slot, key)
                    }
                };
                let (shared, stop2) = (shared.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("holdfast-admin-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(&slot, &shared, role, &stop2) {
                            tracing::debug!("admin connection ended: {e}");
                        }
                        shared.listeners.of(role).leave(key);
                    });
                if let Err(e) = spawned {
                    // The thread never ran: give its slot back.
                    table.leave(key);
                    tracing::warn!("cannot start an admin thread: {e}");
                }
            }
        })?;
    Ok(Listening {
        addr: local,
        fd,
        stop,
        shared,
        role,
        accepting: Some(accepting),
    })
}

/// A warning repeated at most every [`Notice::EVERY`]: under attack the counter in
/// `/metrics` keeps the count, and the log keeps a line.
#[derive(Debug, Default)]
struct Notice {
    last: Option<Instant>,
    unlogged: u64,
}

impl Notice {
    const EVERY: Duration = Duration::from_secs(10);

    /// Whether to log this occurrence; if so, how many went unlogged since the last line.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// How long a connection accepted just before its listener stopped may take to send the
/// first byte of its request (its client connected expecting an answer; one round trip
/// of a distant client is well inside this).
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// What a wait for a request's first byte ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Bytes are there: read the request.
    Data,
    /// The peer closed (or the socket failed).
    Closed,
    /// The listener is stopping and nothing arrived within the grace.
    Stopped,
    /// The request deadline passed with nothing sent.
    Deadline,
}

/// Wait for a request's first byte, looking at `stop` every [`STOP_CHECK`]. Once the
/// listener stops, bytes are waited for `grace` more (from when the stop is seen): bytes
/// that arrived before are always taken as a request.
fn wait_for_request(
    stream: &TcpStream,
    stop: &AtomicBool,
    deadline: Duration,
    grace: Duration,
) -> Next {
    let now = std::time::Instant::now;
    let until = now() + deadline;
    let mut stopped_at = None;
    let mut byte = [0u8; 1];
    loop {
        if stopped_at.is_none() && stop.load(Ordering::SeqCst) {
            stopped_at = Some(now());
        }
        let mut left = until.saturating_duration_since(now());
        if let Some(at) = stopped_at {
            let grace_left = (at + grace).saturating_duration_since(now());
            if grace_left < left {
                left = grace_left.max(Duration::from_millis(1));
            }
        }
        if left.is_zero() {
            return Next::Deadline;
        }
        if stream.set_read_timeout(Some(left.min(STOP_CHECK))).is_err() {
            return Next::Closed;
        }
        match stream.peek(&mut byte) {
            Ok(0) => return Next::Closed,
            Ok(_) => return Next::Data,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if stopped_at.is_some_and(|at| now() >= at + grace) {
                    return Next::Stopped;
                }
            }
            Err(_) => return Next::Closed,
        }
    }
}

fn serve_connection(
    slot: &Slot,
    shared: &State,
    role: Role,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let stream = &slot.stream;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        if !first {
            slot.idle();
        }
        // Before a request starts, a stopping listener closes the connection (after a short
        // grace for the first one, whose client has just connected); a request once started
        // is read and answered.
        if buf.is_empty() {
            let grace = if first {
                FIRST_REQUEST_GRACE
            } else {
                Duration::ZERO
            };
            match wait_for_request(stream, stop, shared.request_deadline, grace) {
                Next::Data => {}
                // (Also a connection closed to make room while idle.)
                Next::Closed | Next::Stopped => return Ok(()),
                // A keep-alive connection idle past the deadline just closes; a first
                // request that never came is answered 408, as `read_request` would.
                Next::Deadline if !first => return Ok(()),
                Next::Deadline => return refuse(stream, http::ReadError::TimedOut),
            }
        }
        first = false;
        slot.reading();
        let req = match http::read_request(
            stream,
            &mut buf,
            shared.max_publish,
            shared.request_deadline,
        ) {
            Ok(r) => r,
            // Its reading side was shut to make room for a newer connection: say so.
            Err(_) if slot.displaced() => return refuse(stream, http::ReadError::Displaced),
            Err(e) => return refuse(stream, e),
        };
        slot.working();
        let (status, ctype, mut body) = route(&req, shared, role);
        // (`respond` adds Retry-After to every 503 itself: this sent it twice.)
        let mut extra = String::new();
        if status == 401 {
            extra.push_str("WWW-Authenticate: Bearer\r\n");
        }
        let options = req.method == "OPTIONS";
        if status == 405 || (options && status != 404) {
            if let Some(allow) = allowed(&req.path) {
                extra = format!("{extra}Allow: {allow}\r\n");
            }
        }
        if options {
            body.clear();
        }
        // A stopping listener answers what it read and ends the connection with it.
        let keep_alive = req.keep_alive && !stop.load(Ordering::SeqCst);
        slot.writing();
        // HEAD: GET's head, its Content-Length included, without the body (RFC 9110 §9.3.2).
        let send_body = req.method != "HEAD";
        http::answer(
            &mut &*stream,
            status,
            ctype,
            &body,
            send_body,
            keep_alive,
            &extra,
        )?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// End a connection whose request could not be read: the status that says why (then a
/// linger so the answer is not lost to a reset), or nothing when the peer left.
fn refuse(stream: &TcpStream, e: http::ReadError) -> std::io::Result<()> {
    let (status, body) = match e {
        http::ReadError::Closed => return Ok(()),
        http::ReadError::Io(e) => return Err(e),
        http::ReadError::TimedOut => (408, "request not received in time\n".into()),
        http::ReadError::Displaced => (
            408,
            format!(
                "the admin listener is full ({MAX_CONNECTIONS} connections) and this request \
                 was the slowest to arrive; retry\n"
            ),
        ),
        // The data port's status and reason for the same fault.
        http::ReadError::Http(e) => (e.http_status().unwrap_or(400), format!("{}\n", e.reason())),
        http::ReadError::LengthRequired => (
            411,
            "chunked bodies are not accepted; send Content-Length\n".into(),
        ),
        http::ReadError::TooLarge { length, max } => (
            413,
            format!("body of {length} bytes exceeds --max-message {max}\n"),
        ),
        http::ReadError::Malformed(why) => (400, format!("{why}\n")),
    };
    http::respond(&mut &*stream, status, "text/plain", &body, false, "")?;
    http::linger(stream);
    Ok(())
}

/// Whether `host` (a Host header) names this machine by address or as `localhost`: what a
/// legitimate local client sends, and what a DNS-rebinding page cannot.
fn local_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Constant-time comparison (the token must not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a control request may act: not from a browser, and with the token when one is
/// configured (without a token the listener is loopback-only, enforced at start-up, and
/// the Host must name this machine).
fn authorize(req: &Request, shared: &State) -> Result<(), (u16, &'static str, String)> {
    if req.origin.is_some() {
        return Err((
            403,
            "text/plain",
            "browser requests are refused on the admin API\n".into(),
        ));
    }
    match shared.token.as_deref() {
        Some(token) => {
            // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is as good.
            let given = req
                .authorization
                .as_deref()
                .and_then(|a| a.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, t)| t);
            if !same(given.trim().as_bytes(), token.as_bytes()) {
                return Err((401, "text/plain", "a bearer token is required\n".into()));
            }
        }
        None => {
            if !req.host.as_deref().is_none_or(local_host) {
                return Err((
                    403,
                    "text/plain",
                    "Host must name this machine (an address or localhost)\n".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The value of `key` in a query string (no percent-decoding: topic names do not need it).
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The live page: self-contained (no external assets), it polls `/metrics` once a second.
const UI_PAGE: &str = include_str!("ui.html");

/// The methods a path serves (its `Allow` header), or None for a path not served here.
fn allowed(path: &str) -> Option<&'static str> {
    Some(match path {
        "/metrics" | "/healthz" | "/readyz" | "/ui" | "/topics" | "/presence" => {
            "GET, HEAD, OPTIONS"
        }
        "/drain" | "/publish" | "/users/disconnect" => "POST, OPTIONS",
        "/upgrade" => "GET, HEAD, POST, OPTIONS",
        _ => return None,
    })
}

/// The `/metrics` text: every worker's counters and histograms, the hub, memory, the
/// backplane, TLS, storm, limits, admin listeners and upgrades.
fn metrics_text(shared: &State, draining: bool) -> String {
    // The process's RSS before this scrape allocates anything: the histogram copies
    // it makes (~0.6 MB) would otherwise be counted as connections' memory.
    let rss = metrics::resident_bytes().unwrap_or(0);
    let mut text = metrics::render(&shared.metrics, draining);
    metrics::render_pubsub(&mut text, &shared.hub);
    metrics::render_memory(&mut text, &shared.memory);
    metrics::render_backplane(&mut text, &shared.backplane);
    if let Some(store) = &shared.tls {
        metrics::render_tls(&mut text, store);
    }
    let hists: Vec<&crate::histograms::Shared> = shared.metrics.iter().map(|m| &m.hist).collect();
    crate::histograms::render(&mut text, &hists);
    metrics::render_storm(&mut text, shared.storm.get());
    metrics::render_limit(&mut text, shared.max_connections);
    metrics::render_admin(&mut text, &shared.listeners.figures());
    if let Some(u) = shared.upgrader.get() {
        u.render(&mut text);
    }
    let baseline = shared
        .rss_baseline
        .load(std::sync::atomic::Ordering::Relaxed);
    metrics::render_resident(&mut text, &shared.metrics, baseline, rss);
    text
}

fn route(req: &Request, shared: &State, role: Role) -> (u16, &'static str, String) {
    let draining = shared.life.draining();
    let control = matches!(
        req.path.as_str(),
        "/drain" | "/publish" | "/topics" | "/presence" | "/users/disconnect" | "/upgrade"
    );
    if control && role == Role::Observe {
        return (
            404,
            "text/plain",
            "not found (this listener only observes)\n".to_string(),
        );
    }
    if control {
        if let Err(refusal) = authorize(req, shared) {
            return refusal;
        }
        // `?topic=a&topic=b` published to a: a proxy in front may have read b.
        let once = ["topic", "user", "members", "binary"];
        if let Some(name) = crate::ws::handshake::repeated_param(&req.query, &once) {
            let why = format!("duplicate_parameter {name} (give it once)\n");
            return (400, "text/plain", why);
        }
    }
    let method = match req.method.as_str() {
        // HEAD is answered as GET, without the body (the caller leaves it out).
        "HEAD" => "GET",
        // A probe: HAProxy's `option httpchk` sends OPTIONS unless told otherwise. Answered
        // with GET's status (503 while draining), without a body.
        "OPTIONS" if matches!(req.path.as_str(), "/healthz" | "/readyz") => "GET",
        "OPTIONS" if allowed(&req.path).is_some() => return (200, "text/plain", String::new()),
        m => m,
    };
    match (method, req.path.as_str()) {
        ("GET", "/metrics") => {
            let text = shared.scrapes.text(req.arrived, |asked, rendered| {
                let mut text = metrics_text(shared, draining);
                metrics::render_scrapes(&mut text, asked, rendered);
                text
            });
            (200, "text/plain; version=0.0.4", text.to_string())
        }
        ("GET", "/ui") => (200, "text/html; charset=utf-8", UI_PAGE.to_string()),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if draining => (503, "text/plain", "draining\n".to_string()),
        ("GET", "/readyz") => (200, "text/plain", "ready\n".to_string()),
        ("POST", "/drain") => {
            if shared.life.drain() {
                tracing::info!("drain requested through the admin API");
                crate::notify::stopping();
            }
            (202, "text/plain", "draining\n".to_string())
        }
        ("POST", "/upgrade") => match shared.upgrader.get() {
            None => (
                503,
                "text/plain",
                "not ready for upgrades yet\n".to_string(),
            ),
            Some(u) => match u.start() {
                Ok(()) => {
                    tracing::info!("live upgrade requested through the admin API");
                    (202, "application/json", u.status().json())
                }
                Err(why) => (409, "text/plain", format!("{why}\n")),
            },
        },
        ("GET", "/upgrade") => match shared.upgrader.get() {
            None => (
                503,
                "text/plain",
                "not ready for upgrades yet\n".to_string(),
            ),
            Some(u) => (200, "application/json", u.status().json()),
        },
        ("POST", "/publish") => publish(req, shared),
        ("GET", "/topics") => (200, "application/json", topics_json(shared)),
        ("GET", "/presence") => presence(req, shared),
        ("POST", "/users/disconnect") => disconnect(req, shared),
        (_, p) if allowed(p).is_some() => (405, "text/plain", "method not allowed\n".to_string()),
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

/// Publish `payload` to `topic` through the backplane: the admin API's answer (status,
/// content type, body). Also what a live upgrade's new process answers for a publish the
/// old one forwarded.
pub fn publish_topic(
    bp: &crate::backplane::Backplane,
    topic: &str,
    payload: Payload<'_>,
) -> (u16, &'static str, String) {
    match bp.publish(topic, payload, Some(std::time::Instant::now())) {
        Ok(p) => (
            200,
            "application/json",
            serde_json::json!({
                "topic": topic, "seq": p.seq, "epoch": crate::pubsub::format_epoch(p.epoch),
                "subscribers": p.subscribers, "workers": p.workers, "node": &**bp.node(),
            })
            .to_string()
                + "\n",
        ),
        Err(e) => (e.status(), "text/plain", format!("{}\n", e.reason())),
    }
}

/// `POST /publish?topic=T` (or `?user=U`): the body is the message. `Content-Type:
/// application/octet-stream` publishes binary; anything else must be UTF-8 and publishes
/// text. 503 + Retry-After when a worker's delivery queue is full or the broker is
/// unreachable (backpressure: the message is not numbered, nothing is lost).
fn publish(req: &Request, shared: &State) -> (u16, &'static str, String) {
    let topic = query_param(&req.query, "topic");
    let user = query_param(&req.query, "user").map(percent_decode);
    // Binary by `?binary=1` or by its type, as on the data port.
    let Some(binary) = crate::ws::handshake::zero_or_one(query_param(&req.query, "binary"), false)
    else {
        return (400, "text/plain", "bad_parameter binary (0 or 1)\n".into());
    };
    let payload =
        if binary || req.content_type.starts_with("application/octet-stream") {
            Payload::Binary(&req.body)
        } else {
            match std::str::from_utf8(&req.body) {
                Ok(t) => Payload::Text(t),
                Err(_) => return (
                    400,
                    "text/plain",
                    "body is not UTF-8; send binary with Content-Type: application/octet-stream\n"
                        .into(),
                ),
            }
        };
    let bp = &shared.backplane;
    let binary = matches!(payload, Payload::Binary(_));
    match (topic, user) {
        (Some(topic), None) => match publish_topic(bp, topic, payload) {
            // Numbering moved to the new process of a live upgrade: it numbers this one.
            (503, _, body) if body.starts_with("handing_over") => shared
                .upgrader
                .get()
                .and_then(|u| u.forward_publish(topic, binary, &req.body))
                .map_or((503, "text/plain", body), |(status, body)| {
                    let ct = if status == 200 {
                        "application/json"
                    } else {
                        "text/plain"
                    };
                    (status, ct, body)
                }),
            answer => answer,
        },
        (None, Some(Ok(user))) => match bp.to_user(&user, Some(payload)) {
            Ok(nodes) => (
                200,
                "application/json",
                serde_json::json!({"user": user, "nodes": nodes}).to_string() + "\n",
            ),
            Err(e) => (e.status(), "text/plain", format!("{}\n", e.reason())),
        },
        (None, Some(Err(why))) => (400, "text/plain", format!("?user=: {why}\n")),
        _ => (
            400,
            "text/plain",
            "give ?topic= (a topic's subscribers) or ?user= (every connection of a user)\n".into(),
        ),
    }
}

/// `POST /users/disconnect?user=U`: close every connection of the user, on every node
/// (close code 4403).
fn disconnect(req: &Request, shared: &State) -> (u16, &'static str, String) {
    let user = match query_param(&req.query, "user").map(percent_decode) {
        Some(Ok(u)) if !u.is_empty() => u,
        Some(Err(why)) => return (400, "text/plain", format!("?user=: {why}\n")),
        _ => return (400, "text/plain", "missing ?user=\n".into()),
    };
    match shared.backplane.to_user(&user, None) {
        Ok(nodes) => (
            200,
            "application/json",
            serde_json::json!({"user": user, "nodes": nodes}).to_string() + "\n",
        ),
        Err(e) => (e.status(), "text/plain", format!("{}\n", e.reason())),
    }
}

/// `GET /presence?topic=T[&members=0]`: who is on a presence topic, across the fleet.
fn presence(req: &Request, shared: &State) -> (u16, &'static str, String) {
    let Some(topic) = query_param(&req.query, "topic") else {
        return (400, "text/plain", "missing ?topic=\n".into());
    };
    if let Err(e) = crate::pubsub::validate_topic(topic, &crate::pubsub::TopicLimits::default()) {
        return (400, "text/plain", format!("{}\n", e.reason()));
    }
    if !shared.backplane.is_presence(topic) {
        return (
            404,
            "text/plain",
            "not a presence topic (see --presence-prefix)\n".into(),
        );
    }
    let members = query_param(&req.query, "members");
    let Some(list) = crate::ws::handshake::zero_or_one(members, true) else {
        return (400, "text/plain", "bad_parameter members (0 or 1)\n".into());
    };
    use crate::backplane::presence::{report_json, ADMIN_MAX_MEMBERS};
    match shared
        .backplane
        .who(topic, if list { ADMIN_MAX_MEMBERS } else { 0 })
    {
        Ok(r) => (200, "application/json", report_json(topic, &r) + "\n"),
        Err(e) => (e.status(), "text/plain", format!("{}\n", e.reason())),
    }
}

/// `%XX` escapes decoded (and `+` as a space), as UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("a % without two hex digits")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "a bad % escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad % escape")?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8")
}

/// `GET /topics`: every topic with its subscribers, in total and per worker.
fn topics_json(shared: &State) -> String {
    let topics: Vec<_> = shared
        .hub
        .presence()
        .into_iter()
        .map(|(t, per)| {
            serde_json::json!({
                "topic": t, "subscribers": per.iter().sum::<u64>(), "per_worker": per,
            })
        })
        .collect();
    serde_json::json!({ "topics": topics }).to_string() + "\n"
}
