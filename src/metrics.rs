//! Per-worker counters, written by their worker only and summed by the admin thread.
//!
//! Each worker owns one [`WorkerMetrics`]. Its thread is the only writer, so an increment is
//! a relaxed load and store (no locked instruction, no cache line shared with another
//! writer); a scrape reads them all with relaxed loads. A scrape may see a counter a few
//! increments behind its neighbour, which Prometheus tolerates.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::ws::Error;

/// A single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (only the owning worker calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    /// Add one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Subtract one (a gauge).
    #[inline]
    pub fn dec(&self) {
        self.add(u64::MAX);
    }
    /// Set a gauge value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    /// Read.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Why a connection attempt was refused by policy before it became a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Limit {
    /// `--max-connections` reached (503).
    MaxConnections = 0,
    /// Draining (503).
    Draining = 1,
    /// Unknown path (404).
    NotFound = 2,
    /// accept failed with EMFILE/ENFILE/ENOMEM and the connection was shed.
    AcceptResources = 3,
    /// Over the accept rate (503).
    AcceptRate = 4,
    /// Source IP at its cap (429).
    PerIp = 5,
    /// A bad subscription in the pub/sub handshake's query (400).
    BadRequest = 6,
    /// The process-wide memory budget is exhausted (503).
    MemoryBudget = 7,
    /// No valid token (401).
    Unauthorized = 8,
    /// The Origin is not in `--allowed-origins` (403).
    Origin = 9,
    /// The user is at `--max-connections-per-user` (429).
    UserCap = 10,
    /// The token grants no access to a channel asked for in the query, or the endpoint is
    /// turned off (403).
    Forbidden = 11,
}

impl Limit {
    const ALL: [Self; 12] = [
        Self::MaxConnections,
        Self::Draining,
        Self::NotFound,
        Self::AcceptResources,
        Self::AcceptRate,
        Self::PerIp,
        Self::BadRequest,
        Self::MemoryBudget,
        Self::Unauthorized,
        Self::Origin,
        Self::UserCap,
        Self::Forbidden,
    ];
    /// The label value in metrics and log lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::Draining => "draining",
            Self::NotFound => "not_found",
            Self::AcceptResources => "accept_resources",
            Self::AcceptRate => "accept_rate",
            Self::PerIp => "per_ip",
            Self::BadRequest => "bad_subscription",
            Self::MemoryBudget => "memory_budget",
            Self::Unauthorized => "unauthorized",
            Self::Origin => "origin",
            Self::UserCap => "user_cap",
            Self::Forbidden => "forbidden",
        }
    }
}

/// The transports a connection can be, as the `transport` label says them.
pub const TRANSPORTS: [&str; 4] = ["websocket", "sse", "poll", "http"];

impl WorkerMetrics {
    /// Whether an event stream is open on this worker.
    pub fn streams_open(&self) -> bool {
        TRANSPORTS
            .iter()
            .position(|t| *t == "sse")
            .is_some_and(|i| self.open_by_transport[i].get() > 0)
    }

    /// A connection of `transport` was established (`true`) or has gone.
    pub fn transport_open(&self, transport: &str, open: bool) {
        if let Some(i) = TRANSPORTS.iter().position(|t| *t == transport) {
            if open {
                self.open_by_transport[i].inc();
            } else {
                self.open_by_transport[i].dec();
            }
        }
    }
}

/// Close codes counted individually; anything else is counted as "other".
const CLOSE_CODES: [u16; 10] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013];

/// Who sent the first Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Side {
    /// The server closed (errors, limits, drain, idle).
    Server = 0,
    /// The client closed.
    Client = 1,
}

/// Counters by [`Error`] variant (index into `Error::ALL`): more of them than the arrays
/// `Default` is derived for.
#[derive(Debug)]
pub struct ByError([Counter; Error::ALL.len()]);

impl Default for ByError {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Counter::default()))
    }
}

impl std::ops::Deref for ByError {
    type Target = [Counter; Error::ALL.len()];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// One worker's counters and gauges.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Gauge: open connections (handshaking or established).
    pub connections: Counter,
    /// Gauge: established WebSocket connections.
    pub websockets: Counter,
    /// TCP connections accepted.
    pub accepted: Counter,
    /// Handshakes completed (101 sent).
    pub upgrades: Counter,
    /// Event streams opened (server-sent events: 200 and the stream's head sent).
    pub streams_opened: Counter,
    /// Long polls accepted.
    pub polls_opened: Counter,
    /// Long polls answered (with messages or at the end of the hold).
    pub polls_answered: Counter,
    /// Calls accepted on the data port's HTTP API (`POST /publish`, `GET /presence`).
    pub calls: Counter,
    /// CORS preflights answered.
    pub preflights: Counter,
    /// Plain requests (polls, calls, preflights) answered on a connection that stayed open for the
    /// next one (HTTP/1.1 keep-alive).
    pub keepalive_reuses: Counter,
    /// Kept-alive connections that ended while idle between requests (closed by the
    /// client, or by the server when no request came in time).
    pub keepalive_ends: Counter,
    /// Gauges: established connections by transport ([`TRANSPORTS`]).
    pub open_by_transport: [Counter; TRANSPORTS.len()],
    /// Handshake failures, by [`Error`] variant (index into `Error::ALL`).
    pub handshake_failures: ByError,
    /// Handshakes that timed out.
    pub handshake_timeouts: Counter,
    /// Protocol errors that failed a WebSocket, by [`Error`] variant.
    pub protocol_errors: ByError,
    /// Closes by code (CLOSE_CODES, then "other") and by side.
    pub closes: [[Counter; CLOSE_CODES.len() + 1]; 2],
    /// Messages received.
    pub messages_in: Counter,
    /// Messages sent.
    pub messages_out: Counter,
    /// Payload bytes received.
    pub bytes_in: Counter,
    /// Bytes handed to send (frames, handshake answers).
    pub bytes_out: Counter,
    /// Pings sent.
    pub pings_sent: Counter,
    /// Connections closed for silence.
    pub idle_timeouts: Counter,
    /// Connections closed as slow consumers (1008).
    pub slow_consumers: Counter,
    /// Connections handed to a new process (a binary upgrade), acknowledged by it.
    pub handover_moved: Counter,
    /// Connections taken over from the previous process.
    pub handover_adopted: Counter,
    /// Gauge: bytes queued for sending across this worker's connections.
    pub outbound_bytes: Counter,
    /// Refusals by policy, by [`Limit`].
    pub rejected: [Counter; 12],
    /// Connections that ended without a closing handshake (reset, EOF, errors).
    pub aborted: Counter,
    /// Gauge: io_uring rings this worker runs.
    pub rings: Counter,
    /// Timer ticks the worker has run (its loop is alive while this moves; the systemd
    /// watchdog is fed from it).
    pub ticks: Counter,
    /// Turns that ended with a pacing pause (`reactor::pace`).
    pub paused_turns: Counter,
    /// Times a turn whose sends were going out took in messages published meanwhile
    /// (`--fanout-join`, `Worker::joinable`).
    pub turns_joined: Counter,
    /// Held connections driven when their phase came (`--fanout-send-interval`,
    /// `reactor::spacing`).
    pub spaced_sends: Counter,
    /// Deliveries kept for held connections and offered at their phase (`reactor::deferred`).
    pub deferred_deliveries: Counter,
    /// Poll removals retried as an async cancel (`io::Ring::poll_remove`).
    pub poll_removals_retried: Counter,
    /// Gauge: 1 while the worker paces its fan-out turns (its CPU is shared and it is
    /// delivering a lot), else 0.
    pub pacing: Counter,
    /// Gauge: 1 while the worker spaces its subscribers' sends (always with
    /// `--fanout-send-interval`; while it paces with `--fanout-pace-interval`), else 0.
    pub spacing: Counter,
    /// Gauge: the interval, in µs, at which the worker spaces its subscribers' sends while
    /// it does (pacing's is sized to the load, `reactor::gaps`), else 0.
    pub spacing_interval_us: Counter,
    /// Gauge: bytes of the slab of connection state (capacity × entry size).
    pub slab_bytes: Counter,
    /// Gauge: heap bytes held by connections for split frames, messages and queues.
    pub conn_heap_bytes: Counter,
    /// Published messages queued to a local subscriber (one per recipient).
    pub deliveries: Counter,
    /// Deliveries dropped by the `drop` slow-consumer policy (each later named in a gap).
    pub delivery_drops: Counter,
    /// Times the `drop` policy had to drop for a connection.
    pub slow_drop_events: Counter,
    /// Connections closed (1008) by the `close` slow-consumer policy.
    pub slow_policy_closes: Counter,
    /// Control messages refused (bad JSON, bad topic, limits, publish disabled).
    pub control_errors: Counter,
    /// Subscribes and unsubscribes refused by `--subscribe-rate`.
    pub subscribe_rate_limited: Counter,
    /// Messages published by clients (when allowed).
    pub client_publishes: Counter,
    /// Gauge: subscriptions held by this worker's connections.
    pub subscriptions: Counter,
    /// Subscribes with a resume point whose missed messages were all replayed.
    pub resumes_recovered: Counter,
    /// Subscribes with a resume point that could not be recovered (gap, other epoch,
    /// beyond the newest number).
    pub resumes_not_recovered: Counter,
    /// Connections closed (1008) for sending more pings than answered per interval.
    pub ping_floods: Counter,
    /// Connections closed to shed memory under the budget (1009 / 1013).
    pub memory_sheds: Counter,
    /// Receive-buffer bytes in circulation on this worker's rings (grows and shrinks).
    pub recv_buffer_bytes: Counter,
    /// Poll-mode receives that waited for a free provided buffer (the receive gate).
    pub recv_buffer_waits: Counter,
    /// Tokens refused, by [`crate::auth::AuthError::index`].
    pub auth_failures: [Counter; 9],
    /// Connections closed (4401) because their token expired without a refresh.
    pub token_expired_closes: Counter,
    /// Token refreshes accepted.
    pub token_refreshes: Counter,
    /// Token refreshes refused.
    pub token_refresh_failures: Counter,
    /// Close log lines written.
    pub close_log_lines: Counter,
    /// Traced connections whose line the close log's rate suppressed.
    pub close_log_suppressed: Counter,
    /// Connections sampled for tracing but not traced (the trace bucket was empty, or the
    /// worker traced its maximum).
    pub close_log_untraced: Counter,
    /// TLS handshakes completed: [full, resumed].
    pub tls_handshakes: [Counter; 2],
    /// TLS connections failed, by [`TlsFailure`].
    pub tls_failures: [Counter; TlsFailure::ALL.len()],
    /// Gauge: connections on TLS (handshaking or established).
    pub tls_connections: Counter,
    /// Histograms, published by the worker once a tick.
    pub hist: crate::histograms::Shared,
}

/// Why a TLS connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer sent a fatal alert (it did not trust the certificate, say).
    PeerAlert,
    /// The peer broke the TLS protocol or the handshake could not agree.
    Protocol,
    /// A plain HTTP request arrived on the TLS port (answered 400).
    PlainHttp,
    /// More of one record than a connection may hold.
    Oversized,
}

impl TlsFailure {
    /// Every reason, in counter order.
    pub const ALL: [Self; 4] = [
        Self::PeerAlert,
        Self::Protocol,
        Self::PlainHttp,
        Self::Oversized,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::PeerAlert => "peer_alert",
            Self::Protocol => "protocol",
            Self::PlainHttp => "plain_http",
            Self::Oversized => "oversized_record",
        }
    }
}

impl WorkerMetrics {
    /// Count a close with `code` sent first by `side`.
    pub fn close(&self, side: Side, code: u16) {
        let i = CLOSE_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CLOSE_CODES.len());
        self.closes[side as usize][i].inc();
    }
    /// Count a policy refusal.
    pub fn reject(&self, limit: Limit) {
        self.rejected[limit as usize].inc();
    }
}

fn error_index(e: Error) -> usize {
    Error::ALL.iter().position(|&x| x == e).unwrap_or(0)
}

/// Count a handshake failure.
pub fn handshake_failure(m: &WorkerMetrics, e: Error) {
    m.handshake_failures[error_index(e)].inc();
}

/// Count a protocol error.
pub fn protocol_error(m: &WorkerMetrics, e: Error) {
    m.protocol_errors[error_index(e)].inc();
}

/// A metric family's HELP and TYPE lines.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP holdfast_{name} {help}\n# TYPE holdfast_{name} {kind}"
    );
}

/// A family with one unlabelled sample.
fn single(o: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(o, name, kind, help);
    let _ = writeln!(o, "holdfast_{name} {value}");
}

/// The TLS certificate's reloads, and whether the kernel encrypts records (never, yet).
pub fn render_tls(o: &mut String, store: &crate::tls::CertStore) {
    let (ok, failed) = store.reloads();
    family(
        o,
        "tls_cert_reloads_total",
        "counter",
        "TLS certificate reloads (SIGHUP), by result; a failed one keeps the certificate in use.",
    );
    let _ = writeln!(o, "holdfast_tls_cert_reloads_total{{result=\"ok\"}} {ok}");
    let _ = writeln!(
        o,
        "holdfast_tls_cert_reloads_total{{result=\"error\"}} {failed}"
    );
    // This version encrypts every record in userspace (docs/architecture.md "TLS").
    single(
        o,
        "tls_kernel_offload",
        "gauge",
        "1 when TLS records are encrypted by the kernel (kTLS), 0 when in userspace.",
        0,
    );
}

/// Render every worker's metrics in the Prometheus text format (version 0.0.4).
pub fn render(workers: &[std::sync::Arc<WorkerMetrics>], draining: bool) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let sum = |f: &dyn Fn(&WorkerMetrics) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let by_worker = [
        (
            "connections",
            "gauge",
            "Open connections (handshaking or established), by worker.",
            (|w| w.connections.get() as f64) as fn(&WorkerMetrics) -> f64,
        ),
        (
            "worker_ticks_total",
            "counter",
            "Timer ticks each worker has run (10 a second while its loop is alive).",
            |w| w.ticks.get() as f64,
        ),
        (
            "worker_spacing_interval_seconds",
            "gauge",
            "The interval at which each worker spaces its subscribers' sends while it does: --fanout-send-interval, or while it paces, the gap between a connection's eager sends times 2.5 within --fanout-pace-interval; 0 while it sends eagerly.",
            |w| w.spacing_interval_us.get() as f64 / 1e6,
        ),
    ];
    for (name, kind, help, value) in by_worker {
        family(&mut o, name, kind, help);
        for (i, w) in workers.iter().enumerate() {
            let _ = writeln!(o, "holdfast_{name}{{worker=\"{i}\"}} {}", value(w));
        }
    }
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&WorkerMetrics) -> u64,
    );
    let simple: [Family; 50] = [
        (
            "connections_open",
            "gauge",
            "Open connections, all workers.",
            |w| w.connections.get(),
        ),
        (
            "websockets",
            "gauge",
            "Established WebSocket connections.",
            |w| w.websockets.get(),
        ),
        ("rings", "gauge", "io_uring rings, all workers.", |w| {
            w.rings.get()
        }),
        (
            "workers_pacing",
            "gauge",
            "Workers pacing their fan-out because their CPU is shared and they deliver a lot: they space their subscribers' sends (--fanout-pace-interval) or, with that 0, pause --fanout-pause after each turn that delivered.",
            |w| w.pacing.get(),
        ),
        (
            "workers_spacing",
            "gauge",
            "Workers spacing their subscribers' sends: always with --fanout-send-interval, or while they pace with --fanout-pace-interval (see holdfast_workers_pacing).",
            |w| w.spacing.get(),
        ),
        (
            "paused_turns_total",
            "counter",
            "Worker turns that ended with a fan-out pause (see holdfast_workers_pacing).",
            |w| w.paused_turns.get(),
        ),
        (
            "fanout_turns_joined_total",
            "counter",
            "Times a fan-out turn whose sends were going out took in messages published meanwhile (--fanout-join): the recipients it had not yet sent to took them in the same send.",
            |w| w.turns_joined.get(),
        ),
        (
            "fanout_spaced_sends_total",
            "counter",
            "Connections whose next send was held until their phase (--fanout-send-interval) and driven when it came (each sends what was offered meanwhile, if anything).",
            |w| w.spaced_sends.get(),
        ),
        (
            "fanout_deferred_deliveries_total",
            "counter",
            "Deliveries kept for connections whose send was held (--fanout-send-interval) and offered when their phase came, or earlier when input or a message that must follow reached them.",
            |w| w.deferred_deliveries.get(),
        ),
        (
            "poll_removals_retried_total",
            "counter",
            "Poll removals that met their poll mid-wake-up (EALREADY, which leaves it armed and its socket open) and were retried as an async cancel.",
            |w| w.poll_removals_retried.get(),
        ),
        (
            "accepted_total",
            "counter",
            "TCP connections accepted.",
            |w| w.accepted.get(),
        ),
        (
            "upgrades_total",
            "counter",
            "Opening handshakes completed (101 sent).",
            |w| w.upgrades.get(),
        ),
        (
            "sse_streams_opened_total",
            "counter",
            "Event streams opened (GET /sse answered 200).",
            |w| w.streams_opened.get(),
        ),
        (
            "long_polls_total",
            "counter",
            "Long polls accepted (GET /poll).",
            |w| w.polls_opened.get(),
        ),
        (
            "long_polls_answered_total",
            "counter",
            "Long polls answered 200 (with messages, or empty at the end of the hold).",
            |w| w.polls_answered.get(),
        ),
        (
            "api_calls_total",
            "counter",
            "Calls accepted on the data port's HTTP API (POST /publish, GET /presence).",
            |w| w.calls.get(),
        ),
        (
            "cors_preflights_total",
            "counter",
            "CORS preflights (OPTIONS) answered on the data port.",
            |w| w.preflights.get(),
        ),
        (
            "http_keepalive_reuses_total",
            "counter",
            "Long polls, calls and CORS preflights answered on a connection kept open for the next request.",
            |w| w.keepalive_reuses.get(),
        ),
        (
            "http_keepalive_idle_ends_total",
            "counter",
            "Kept-alive connections that ended idle between requests (client close, or none in --handshake-timeout).",
            |w| w.keepalive_ends.get(),
        ),
        (
            "handshake_timeouts_total",
            "counter",
            "Handshakes not completed in time.",
            |w| w.handshake_timeouts.get(),
        ),
        (
            "messages_received_total",
            "counter",
            "WebSocket messages received.",
            |w| w.messages_in.get(),
        ),
        (
            "messages_sent_total",
            "counter",
            "WebSocket messages sent.",
            |w| w.messages_out.get(),
        ),
        (
            "received_bytes_total",
            "counter",
            "Payload bytes received.",
            |w| w.bytes_in.get(),
        ),
        (
            "sent_bytes_total",
            "counter",
            "Bytes queued for sending.",
            |w| w.bytes_out.get(),
        ),
        (
            "pings_sent_total",
            "counter",
            "Heartbeat pings sent.",
            |w| w.pings_sent.get(),
        ),
        (
            "idle_timeouts_total",
            "counter",
            "Connections closed for silence.",
            |w| w.idle_timeouts.get(),
        ),
        (
            "slow_consumer_closes_total",
            "counter",
            "Connections closed as slow consumers (1008): echo queues over the cap, and subscribers under the close policy.",
            |w| w.slow_consumers.get(),
        ),
        (
            "handover_connections_moved_total",
            "counter",
            "Connections handed to a new process by a live upgrade (acknowledged by it).",
            |w| w.handover_moved.get(),
        ),
        (
            "handover_connections_adopted_total",
            "counter",
            "Connections taken over from the previous process by a live upgrade.",
            |w| w.handover_adopted.get(),
        ),
        (
            "outbound_queue_bytes",
            "gauge",
            "Bytes queued for sending, all connections.",
            |w| w.outbound_bytes.get(),
        ),
        (
            "aborted_total",
            "counter",
            "Connections ended without a closing handshake.",
            |w| w.aborted.get(),
        ),
        (
            "connection_state_bytes",
            "gauge",
            "Connection state: the slab slots ever used (its high-water mark; the rest of the table is reserved address space, not resident) times the slot size.",
            |w| w.slab_bytes.get(),
        ),
        (
            "connection_heap_bytes",
            "gauge",
            "Heap held by connections (splits, queues).",
            |w| w.conn_heap_bytes.get(),
        ),
        (
            "pubsub_deliveries_total",
            "counter",
            "Published messages queued to subscribers (one per recipient).",
            |w| w.deliveries.get(),
        ),
        (
            "pubsub_dropped_total",
            "counter",
            "Deliveries dropped for slow consumers under the drop policy (each named in a gap).",
            |w| w.delivery_drops.get(),
        ),
        (
            "pubsub_slow_consumer_drops_total",
            "counter",
            "Times the drop policy dropped messages for a slow consumer.",
            |w| w.slow_drop_events.get(),
        ),
        (
            "pubsub_slow_consumer_closes_total",
            "counter",
            "Subscribers closed (1008) by the close policy.",
            |w| w.slow_policy_closes.get(),
        ),
        (
            "pubsub_control_errors_total",
            "counter",
            "Control messages refused with an error reply.",
            |w| w.control_errors.get(),
        ),
        (
            "pubsub_subscribe_rate_limited_total",
            "counter",
            "Subscribe and unsubscribe messages refused by --subscribe-rate (not acted on).",
            |w| w.subscribe_rate_limited.get(),
        ),
        (
            "pubsub_client_publishes_total",
            "counter",
            "Messages published by clients.",
            |w| w.client_publishes.get(),
        ),
        (
            "pubsub_subscriptions",
            "gauge",
            "Subscriptions held, all workers.",
            |w| w.subscriptions.get(),
        ),
        (
            "ping_flood_closes_total",
            "counter",
            "Connections closed (1008) for sending more pings per heartbeat interval than --max-client-pings.",
            |w| w.ping_floods.get(),
        ),
        (
            "recv_buffer_bytes",
            "gauge",
            "Provided receive-buffer bytes in circulation, all rings (grows under load, shrinks back when idle).",
            |w| w.recv_buffer_bytes.get(),
        ),
        (
            "recv_buffer_waits_total",
            "counter",
            "Poll-mode receives that waited for a free provided buffer and went in a later round (the pools grow when this costs over 1,000 extra submissions a second per ring).",
            |w| w.recv_buffer_waits.get(),
        ),
        (
            "token_expired_closes_total",
            "counter",
            "Connections closed (4401) because their token expired without a refresh.",
            |w| w.token_expired_closes.get(),
        ),
        (
            "token_refreshes_total",
            "counter",
            "Token refreshes over the socket that were accepted.",
            |w| w.token_refreshes.get(),
        ),
        (
            "token_refresh_failures_total",
            "counter",
            "Token refreshes over the socket that were refused (the connection keeps its old token until it expires).",
            |w| w.token_refresh_failures.get(),
        ),
        (
            "close_log_lines_total",
            "counter",
            "Close log lines written (connection closed or refused; sampled, see --close-log-rate).",
            |w| w.close_log_lines.get(),
        ),
        (
            "close_log_suppressed_total",
            "counter",
            "Traced connections whose close log line the rate limit suppressed (the next line states how many).",
            |w| w.close_log_suppressed.get(),
        ),
        (
            "close_log_untraced_total",
            "counter",
            "Connections sampled for the close log but not traced: the trace bucket was empty or the worker traced its maximum.",
            |w| w.close_log_untraced.get(),
        ),
    ];
    for (name, kind, help, f) in simple {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "holdfast_{name} {}", sum(&f));
    }
    family(
        &mut o,
        "tls_connections",
        "gauge",
        "Connections on TLS (handshaking or established).",
    );
    let _ = writeln!(
        o,
        "holdfast_tls_connections {}",
        sum(&|w| w.tls_connections.get())
    );
    family(
        &mut o,
        "open_connections",
        "gauge",
        "Established connections by transport (websocket, sse: event streams, poll: long polls until their answer is written, http: API calls until their answer is written).",
    );
    for (i, t) in TRANSPORTS.iter().enumerate() {
        let v = sum(&|w| w.open_by_transport[i].get());
        let _ = writeln!(o, "holdfast_open_connections{{transport=\"{t}\"}} {v}");
    }
    family(
        &mut o,
        "tls_handshakes_total",
        "counter",
        "TLS handshakes completed, full or resumed (a session ticket or ID).",
    );
    for (i, kind) in ["full", "resumed"].iter().enumerate() {
        let v = sum(&|w| w.tls_handshakes[i].get());
        let _ = writeln!(o, "holdfast_tls_handshakes_total{{kind=\"{kind}\"}} {v}");
    }
    family(
        &mut o,
        "tls_failures_total",
        "counter",
        "TLS connections failed, by reason.",
    );
    for (i, r) in TlsFailure::ALL.iter().enumerate() {
        let v = sum(&|w| w.tls_failures[i].get());
        let _ = writeln!(
            o,
            "holdfast_tls_failures_total{{reason=\"{}\"}} {v}",
            r.label()
        );
    }
    let open = sum(&|w| w.connections.get());
    family(
        &mut o,
        "connection_state_bytes_per_connection",
        "gauge",
        "Connection state (slab) and connection heap divided by open connections: the part the server accounts for itself.",
    );
    let state = sum(&|w| w.slab_bytes.get() + w.conn_heap_bytes.get());
    let per = |bytes: f64| if open == 0 { 0.0 } else { bytes / open as f64 };
    let _ = writeln!(
        o,
        "holdfast_connection_state_bytes_per_connection {}",
        per(state as f64)
    );
    family(
        &mut o,
        "handshake_failures_total",
        "counter",
        "Failed opening handshakes, by reason.",
    );
    for (i, e) in Error::ALL.iter().enumerate() {
        if e.http_status().is_some() {
            let v = sum(&|w| w.handshake_failures[i].get());
            let _ = writeln!(
                o,
                "holdfast_handshake_failures_total{{reason=\"{}\"}} {v}",
                e.reason()
            );
        }
    }
    family(
        &mut o,
        "protocol_errors_total",
        "counter",
        "WebSocket connections failed, by rule broken.",
    );
    for (i, e) in Error::ALL.iter().enumerate() {
        if e.close_code().is_some() {
            let v = sum(&|w| w.protocol_errors[i].get());
            let _ = writeln!(
                o,
                "holdfast_protocol_errors_total{{reason=\"{}\"}} {v}",
                e.reason()
            );
        }
    }
    family(
        &mut o,
        "closes_total",
        "counter",
        "Closing handshakes started, by code and side.",
    );
    for (s, side) in ["server", "client"].iter().enumerate() {
        for i in 0..=CLOSE_CODES.len() {
            let code = CLOSE_CODES
                .get(i)
                .map_or("other".to_string(), |c| c.to_string());
            let v = sum(&|w| w.closes[s][i].get());
            let _ = writeln!(
                o,
                "holdfast_closes_total{{code=\"{code}\",side=\"{side}\"}} {v}"
            );
        }
    }
    family(
        &mut o,
        "rejected_total",
        "counter",
        "Connections refused by a limit, by limit.",
    );
    for l in Limit::ALL {
        let v = sum(&|w| w.rejected[l as usize].get());
        let _ = writeln!(o, "holdfast_rejected_total{{limit=\"{}\"}} {v}", l.label());
    }
    family(
        &mut o,
        "auth_failures_total",
        "counter",
        "Tokens refused at the handshake (401) or in a refresh, by reason.",
    );
    for (i, reason) in crate::auth::AuthError::LABELS.iter().enumerate() {
        let v = sum(&|w| w.auth_failures[i].get());
        let _ = writeln!(o, "holdfast_auth_failures_total{{reason=\"{reason}\"}} {v}");
    }
    family(
        &mut o,
        "pubsub_resumes_total",
        "counter",
        "Subscribes with a resume point, by whether every missed message was recovered.",
    );
    for (label, f) in [
        (
            "true",
            (|w| w.resumes_recovered.get()) as fn(&WorkerMetrics) -> u64,
        ),
        ("false", |w| w.resumes_not_recovered.get()),
    ] {
        let _ = writeln!(
            o,
            "holdfast_pubsub_resumes_total{{recovered=\"{label}\"}} {}",
            sum(&f)
        );
    }
    family(&mut o, "draining", "gauge", "1 while the server drains.");
    let _ = writeln!(o, "holdfast_draining {}", u8::from(draining));
    o
}

/// The process's resident set, bytes (VmRSS in /proc/self/status), if readable.
pub fn resident_bytes() -> Option<u64> {
    crate::units::kb_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

/// Append the process's resident memory and what each open connection adds to it:
/// (`rss`, read before the scrape allocated anything, − the RSS measured once the workers
/// were ready, before any connection) / open
/// connections — buffer pools, slab growth, queues and allocator overhead included, so it
/// agrees with RSS by construction.
pub fn render_resident(
    o: &mut String,
    workers: &[std::sync::Arc<WorkerMetrics>],
    baseline: u64,
    rss: u64,
) {
    single(
        o,
        "process_resident_bytes",
        "gauge",
        "Resident memory of the process (VmRSS).",
        rss,
    );
    let open: u64 = workers.iter().map(|w| w.connections.get()).sum();
    let per = if open == 0 {
        0.0
    } else {
        rss.saturating_sub(baseline) as f64 / open as f64
    };
    single(
        o,
        "userspace_bytes_per_connection",
        "gauge",
        "Resident memory above the idle process's, divided by open connections (everything a connection costs in userspace; agrees with RSS).",
        per,
    );
}

/// Append the configured connection limit.
pub fn render_limit(o: &mut String, max_connections: usize) {
    single(
        o,
        "connections_limit",
        "gauge",
        "--max-connections: the WebSockets this process accepts at most.",
        max_connections,
    );
}

/// How often `/metrics` was asked for and rendered (scrapes that come together share one).
pub fn render_scrapes(o: &mut String, asked: u64, rendered: u64) {
    single(
        o,
        "metrics_scrapes_total",
        "counter",
        "Scrapes of /metrics answered, on either admin listener.",
        asked,
    );
    single(
        o,
        "metrics_renders_total",
        "counter",
        "/metrics texts rendered: scrapes that come together share one, at most one per 50 ms.",
        rendered,
    );
}

/// One admin listener's connections, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct AdminListener {
    /// The `listener` label (`admin`, `observe`).
    pub name: &'static str,
    /// Connections served now.
    pub serving: u64,
    /// Connections closed to make room for a new one.
    pub displaced: u64,
    /// Connections answered 503.
    pub refused: u64,
}

/// Append the admin listeners' connections: how many each serves, and what a full one did.
pub fn render_admin(o: &mut String, listeners: &[AdminListener]) {
    let families = [
        (
            "admin_connections",
            "gauge",
            "Connections an admin listener serves (at most 64 each).",
        ),
        (
            "admin_connections_displaced_total",
            "counter",
            "Connections a full admin listener closed to serve a new one: each the one that \
             had waited longest on its client (idle, sending its request slowly, or not \
             reading its answer).",
        ),
        (
            "admin_connections_refused_total",
            "counter",
            "Connections a full admin listener answered 503: every connection it served was \
             being answered.",
        ),
    ];
    for (i, (name, kind, help)) in families.into_iter().enumerate() {
        family(o, name, kind, help);
        for l in listeners {
            let v = [l.serving, l.displaced, l.refused][i];
            let _ = writeln!(o, "holdfast_{name}{{listener=\"{}\"}} {v}", l.name);
        }
    }
}

/// Append the storm signal: the setup rate, its baseline and their ratio.
pub fn render_storm(o: &mut String, r: crate::storm::Reading) {
    for (name, help, v) in [
        (
            "setup_rate",
            "WebSocket upgrades per second over the last 10 s.",
            r.rate,
        ),
        (
            "setup_rate_baseline",
            "WebSocket upgrades per second over the last 10 min.",
            r.baseline,
        ),
        (
            "setup_rate_ratio",
            "setup_rate / max(setup_rate_baseline, 1): far above 1 in a reconnect storm.",
            r.ratio(),
        ),
    ] {
        single(o, name, "gauge", help, v);
    }
}

/// Append the memory budget's figures: the budget, what it holds by kind, refusals and
/// connections shed.
pub fn render_memory(o: &mut String, b: &crate::budget::MemoryBudget) {
    single(o, "memory_budget_bytes", "gauge", "The process-wide budget for partial messages, outbound queues and replay (--memory-budget).", b.limit());
    let u = b.usage();
    family(
        o,
        "memory_used_bytes",
        "gauge",
        "Bytes held under the memory budget, by kind.",
    );
    for (kind, v) in [
        ("partial", u.partial),
        ("outbound", u.outbound),
        ("deferred", u.deferred),
        ("replay", u.replay),
    ] {
        let _ = writeln!(o, "holdfast_memory_used_bytes{{kind=\"{kind}\"}} {v}");
    }
    let ((upgrades, publishes), (partial, outbound)) = (b.refusals(), b.sheds());
    for (name, help, label, values) in [
        (
            "memory_refused_total",
            "Work refused while the memory budget was exhausted, by kind.",
            "kind",
            [("upgrade", upgrades), ("publish", publishes)],
        ),
        (
            "memory_shed_total",
            "Connections closed to shed memory, by what they held (partial: 1009, outbound: 1013).",
            "held",
            [("partial", partial), ("outbound", outbound)],
        ),
    ] {
        family(o, name, "counter", help);
        for (value, n) in values {
            let _ = writeln!(o, "holdfast_{name}{{{label}=\"{value}\"}} {n}");
        }
    }
}

/// Per-topic subscriber series shown on `/metrics` (the busiest first); the rest are summed
/// into `topic="_other"` so a server with a million topics does not produce a million series.
/// `GET /topics` lists every topic.
pub const TOPIC_SERIES: usize = 100;

/// Append the hub's figures: topics held, replay bytes, presence per topic and worker.
pub fn render_pubsub(o: &mut String, hub: &crate::pubsub::Hub) {
    let (topics, bytes) = hub.totals();
    single(
        o,
        "pubsub_topics",
        "gauge",
        "Topics held by the hub.",
        topics,
    );
    single(
        o,
        "pubsub_replay_bytes",
        "gauge",
        "Frame bytes held in replay windows, all topics.",
        bytes,
    );
    single(
        o,
        "pubsub_published_total",
        "counter",
        "Messages published (admin API and clients).",
        hub.published(),
    );
    single(
        o,
        "pubsub_publish_refused_total",
        "counter",
        "Publishes refused because a worker's delivery queue was full (503 / error reply).",
        hub.refused(),
    );
    let (evicted, expired) = hub.evictions();
    single(
        o,
        "pubsub_replay_evicted_total",
        "counter",
        "Messages evicted from replay windows by the process-wide --replay-budget (oldest first).",
        evicted,
    );
    single(
        o,
        "pubsub_topics_expired_total",
        "counter",
        "Topics forgotten after --topic-idle-expiry seconds without subscribers or publishes.",
        expired,
    );
    let busiest = hub.busiest(TOPIC_SERIES);
    family(
        o,
        "topic_subscribers",
        "gauge",
        "Subscribers per topic and worker (the busiest topics; the rest as _other).",
    );
    for (topic, per) in &busiest.top {
        for (w, n) in per.iter().enumerate() {
            let _ = writeln!(
                o,
                "holdfast_topic_subscribers{{topic=\"{topic}\",worker=\"{w}\"}} {n}"
            );
        }
    }
    if busiest.topics > TOPIC_SERIES {
        for (w, n) in busiest.other.iter().enumerate() {
            let _ = writeln!(
                o,
                "holdfast_topic_subscribers{{topic=\"_other\",worker=\"{w}\"}} {n}"
            );
        }
    }
}

/// The backplane's state and counters.
pub fn render_backplane(o: &mut String, bp: &crate::backplane::Backplane) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &bp.stats;
    let engine = if bp.is_broker() { "redis" } else { "memory" };
    o.push_str(
        "# HELP holdfast_backplane_up Whether the backplane can publish (1), by engine.\n\
         # TYPE holdfast_backplane_up gauge\n",
    );
    o.push_str(&format!(
        "holdfast_backplane_up{{engine=\"{engine}\"}} {}\n",
        u8::from(bp.up())
    ));
    let rows: [(&str, &str, &str, u64); 9] = [
        ("backplane_reconnects_total", "counter", "Connections to the broker made again after it went away.", s.reconnects.load(Relaxed)),
        ("backplane_resubscribes_total", "counter", "Topic and user channels listened to again after a reconnect.", s.resubscribes.load(Relaxed)),
        ("backplane_received_total", "counter", "Messages received from the broker.", s.received.load(Relaxed)),
        ("backplane_published_total", "counter", "Messages this node published through the broker.", s.published.load(Relaxed)),
        ("backplane_publish_refused_total", "counter", "Publishes refused because the broker was unreachable or the backplane's queue was full.", s.refused.load(Relaxed)),
        ("backplane_catch_ups_total", "counter", "Topics caught up from their stream (a message past the next number, another epoch).", s.catch_ups.load(Relaxed)),
        ("backplane_caught_up_messages_total", "counter", "Messages delivered from streams by catch-ups.", s.caught_up.load(Relaxed)),
        ("backplane_malformed_total", "counter", "Messages from the broker that could not be used (malformed, not UTF-8 text, too large).", s.malformed.load(Relaxed)),
        ("backplane_jobs_dropped_total", "counter", "Requests to the backplane refused because its queue was full.", s.dropped_jobs.load(Relaxed)),
    ];
    for (name, kind, help, v) in rows {
        single(o, name, kind, help, v);
    }
    single(
        o,
        "backplane_lag_seconds",
        "gauge",
        "Publish (broker clock) to receipt here, the last message received.",
        s.lag_us.load(Relaxed) as f64 / 1e6,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn render_sums_workers_and_names_families() {
        let a = Arc::new(WorkerMetrics::default());
        let b = Arc::new(WorkerMetrics::default());
        a.accepted.add(3);
        b.accepted.add(4);
        a.close(Side::Server, 1012);
        b.close(Side::Client, 4000);
        handshake_failure(&a, Error::InvalidKey);
        let text = render(&[a, b], false);
        assert!(text.contains("holdfast_accepted_total 7\n"), "{text}");
        assert!(text.contains("holdfast_closes_total{code=\"1012\",side=\"server\"} 1\n"));
        assert!(text.contains("holdfast_closes_total{code=\"other\",side=\"client\"} 1\n"));
        assert!(text.contains("holdfast_handshake_failures_total{reason=\"invalid_key\"} 1\n"));
        assert!(text.contains("# TYPE holdfast_accepted_total counter\n"));
    }
}
