//! Server configuration: command-line flags, optionally a TOML file, validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Every knob of `holdfast serve`, with its default.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the WebSocket listener binds (one SO_REUSEPORT socket per worker).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Join a port another process already listens on (SO_REUSEPORT), sharing new
    /// connections with it; without it such a start is refused.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub share_port: bool,

    /// Admin listener (/metrics, /healthz, /readyz, POST /drain, POST /publish, GET
    /// /topics); "off" disables it. A non-loopback address needs --admin-token-file.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: String,

    /// A file holding the bearer token that POST /drain, POST /publish and GET /topics
    /// require (`Authorization: Bearer <token>`; at least 16 characters).
    #[arg(long)]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// An observe-only listener (/metrics, /healthz, /readyz; no control), for scrapers and
    /// probes; "off" (default) for none.
    #[arg(long, default_value = "off")]
    pub metrics_listen: String,

    /// Seconds an admin request may take to arrive, head and body together.
    #[arg(long, default_value_t = 10.0, value_parser = crate::units::secs)]
    pub admin_request_timeout: f64,

    /// Worker threads, one per CPU; default: every CPU in the process's cpuset.
    #[arg(long)]
    pub workers: Option<usize>,

    /// Connections the whole server accepts; past it new upgrades get 503.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::units::count_usize)]
    pub max_connections: usize,

    /// Connections allowed from one source IP (0: no cap); past it upgrades get 429.
    #[arg(long, default_value_t = 0)]
    pub max_per_ip: u32,

    /// New connections accepted per second across the server (0: no limit); past it
    /// upgrades get 503 with Retry-After. Bursts up to one second's worth.
    #[arg(long, default_value_t = 0.0)]
    pub accept_rate: f64,

    /// Registered file-table slots per io_uring ring (0: the RLIMIT_NOFILE soft limit, which
    /// caps it, but at most 16,384 — a close walks its ring's cancel hash, which grows with
    /// the ring's connections). A worker adds rings as its tables fill, up to its share of
    /// --max-connections.
    #[arg(long, default_value_t = 0)]
    pub ring_files: u32,

    /// listen(2) backlog per worker socket (warned about when above net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    pub backlog: u32,

    /// Seconds the kernel holds a new connection whose client has sent nothing yet before a
    /// worker takes it (TCP_DEFER_ACCEPT; the kernel rounds up to 1, 3, 7, 15 ... s). Every
    /// client of this port speaks first (an HTTP request, a TLS ClientHello), so a worker
    /// takes a connection with its first bytes there and reads them at once; a silent one
    /// is taken when the period ends and its --handshake-timeout runs from then. 0: take
    /// connections at the TCP handshake.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub defer_accept: u32,

    /// Largest message accepted, in bytes (all fragments); larger ones close with 1009.
    #[arg(long, default_value_t = 1 << 20, value_parser = crate::units::bytes_u32)]
    pub max_message: u32,

    /// Outbound bytes queued per connection before it is closed as a slow consumer (1008).
    /// At least one frame of the largest message (`--max-message` + 14); the default holds
    /// two of them and 64 KiB of replies, so a client that reads gets every echo.
    #[arg(long, default_value_t = (2 << 20) + (64 << 10), value_parser = crate::units::bytes_usize)]
    pub max_outbound: usize,

    /// Seconds a client has to complete the opening handshake (and, on a connection kept
    /// alive after a long poll or a call, to send its next request).
    #[arg(long, default_value_t = 10.0, value_parser = crate::units::secs)]
    pub handshake_timeout: f64,

    /// Long polls and calls answered on one HTTP/1.1 connection before the server closes
    /// it (keep-alive, as browsers use); 1: every answer closes its connection.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=30000))]
    pub keepalive_requests: u16,

    /// Seconds between server pings to each connection (spread evenly over the interval).
    #[arg(long, default_value_t = 25.0, value_parser = crate::units::secs)]
    pub ping_interval: f64,

    /// Seconds of silence (no data, no pong) after which a connection is closed.
    #[arg(long, default_value_t = 60.0, value_parser = crate::units::secs)]
    pub idle_timeout: f64,

    /// Seconds over which a drain spreads its 1012 closes.
    #[arg(long, default_value_t = 30.0, value_parser = crate::units::secs)]
    pub drain_window: f64,

    /// Seconds to wait for close handshakes after the last 1012 before exiting.
    #[arg(long, default_value_t = 5.0, value_parser = crate::units::secs)]
    pub drain_grace: f64,

    /// The binary a live upgrade (SIGUSR2, `holdfast upgrade`, POST /upgrade) starts, with
    /// this process's arguments; default: the path this process was started from (so a
    /// new binary installed there is the one started).
    #[arg(long)]
    pub upgrade_binary: Option<PathBuf>,

    /// Seconds a live upgrade may take to move every connection (TLS ones included); what
    /// is left after it (still in a handshake, closing, or with a send in flight) is
    /// drained.
    #[arg(long, default_value_t = 60.0, value_parser = crate::units::secs)]
    pub upgrade_timeout: f64,

    /// SO_SNDBUF for client sockets in bytes (0: kernel default, autotuned).
    #[arg(long, default_value_t = 0, value_parser = crate::units::bytes_u32)]
    pub sndbuf: u32,

    /// SO_RCVBUF for client sockets in bytes (0: kernel default, autotuned).
    #[arg(long, default_value_t = 0, value_parser = crate::units::bytes_u32)]
    pub rcvbuf: u32,

    /// Provided receive buffers per worker, at most (a power of two, at most 32768): the
    /// pool starts with 64 in circulation and grows only when it runs short (in poll mode:
    /// when bursts of receives waiting for a free buffer cost over 1,000 extra submissions a
    /// second; in recv mode: when three quarters are in use), halving again when idle, so
    /// idle connections do not keep the whole pool resident.
    #[arg(long, default_value_t = 1024)]
    pub recv_buffers: u16,

    /// Size of each provided receive buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = crate::units::bytes_u32)]
    pub recv_buffer_size: u32,

    /// What idle connections keep armed for reading: `poll` (a POLLIN, ~258 B of kernel
    /// memory each, one extra completion per read: single-shot until the connection sends
    /// its first message, multishot after) or `recv` (a multishot receive, ~865 B each).
    /// See docs/architecture.md.
    #[arg(long, value_enum, default_value_t = ReadModeArg::Poll)]
    pub read_mode: ReadModeArg,

    /// Pub/sub: whether clients may publish with `{"op":"publish",...}` (the admin API's
    /// `POST /publish` always may). `--client-publish` alone means true.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub client_publish: bool,

    /// Backplane: `memory` (one node; the default) or `redis://[:PASSWORD@]HOST:PORT[,HOST:PORT…]`
    /// (Redis ≥ 7 or a Redis Cluster, started separately): the broker numbers every
    /// topic's messages so a fleet of nodes is one server (docs/backplane.md).
    #[arg(long, default_value = "memory")]
    pub backplane: String,

    /// Backplane: this node's name in presence and logs (default: host name and port).
    #[arg(long)]
    pub node_id: Option<String>,

    /// Backplane: seconds a topic's history stays at the broker after its last publish
    /// (0: forever). Its stream keeps --replay-messages messages.
    #[arg(long, default_value_t = 86_400, value_parser = crate::units::whole_secs)]
    pub history_ttl: u64,

    /// Long polls (`GET /poll`): how long one waits for a message before it is answered
    /// empty (the client polls again from the same cursor).
    #[arg(long, default_value_t = 20.0, value_parser = crate::units::secs)]
    pub poll_hold: f64,

    /// Presence: topics whose names start with this keep a member list (empty: none).
    #[arg(long, default_value = "presence:")]
    pub presence_prefix: String,

    /// Presence: seconds a member stays listed after its node last refreshed it (a node
    /// refreshes every third of it; a node that dies drops out within it).
    #[arg(long, default_value_t = 30, value_parser = crate::units::whole_secs)]
    pub presence_ttl: u64,

    /// Presence: send subscribers of presence topics join and leave events.
    #[arg(long)]
    pub presence_events: bool,

    /// Pub/sub: largest control message (subscribe, unsubscribe, publish) in bytes; a
    /// larger one is answered with an error before it is parsed.
    #[arg(long, default_value_t = 4096, value_parser = crate::units::bytes_usize)]
    pub max_control_message: usize,

    /// Pub/sub: topics one connection may subscribe to or unsubscribe from per second, with a
    /// burst of 64 (or --max-topics-per-connection, if larger; 0: no limit). Past it a control message is
    /// refused with an error, not acted on: each change costs every member of a presence
    /// topic an event, and the broker a write.
    #[arg(long, default_value_t = 20)]
    pub subscribe_rate: u32,

    /// Pub/sub: most topics one connection may subscribe to.
    #[arg(long, default_value_t = 64)]
    pub max_topics_per_connection: usize,

    /// Pub/sub: longest topic name in bytes.
    #[arg(long, default_value_t = 128)]
    pub max_topic_len: usize,

    /// Pub/sub: topics the server holds at once (each keeps a replay window).
    #[arg(long, default_value_t = 100_000, value_parser = crate::units::count_usize)]
    pub max_topics: usize,

    /// Pub/sub: messages each topic keeps for resuming clients (0: no replay).
    #[arg(long, default_value_t = 1024)]
    pub replay_messages: usize,

    /// Pub/sub: bytes of frames each topic keeps for resuming clients (the newest message is
    /// kept whatever its size; --replay-messages 0 keeps none).
    #[arg(long, default_value_t = 1 << 20, value_parser = crate::units::bytes_usize)]
    pub replay_bytes: usize,

    /// Pub/sub: frame bytes all topics' replay windows hold together (default: 256 MiB or a
    /// quarter of --memory-budget, whichever is smaller); past it the oldest message of any
    /// topic is evicted first.
    #[arg(long, value_parser = crate::units::bytes_usize)]
    pub replay_budget: Option<usize>,

    /// Pub/sub: seconds a topic with no subscriber keeps its replay window after its last
    /// publish or subscriber (0: forever); then it is forgotten and numbering starts again
    /// in a new epoch.
    #[arg(long, default_value_t = 3600, value_parser = crate::units::whole_secs)]
    pub topic_idle_expiry: u64,

    /// Bytes that partial messages, outbound queues and replay windows may hold together,
    /// process-wide (default: a quarter of the machine's memory). At it, upgrades and
    /// publishes are refused (503); over it, workers close their largest holders (1009 for a
    /// partial message, 1013 for an outbound queue).
    #[arg(long, value_parser = crate::units::bytes_usize)]
    pub memory_budget: Option<usize>,

    /// Pings from one client answered per --ping-interval; one more closes it (1008).
    #[arg(long, default_value_t = 250)]
    pub max_client_pings: u16,

    /// Pub/sub: messages waiting for one worker to deliver them, at most; past it (or
    /// --publish-queue-bytes) publishes are refused (503 / error reply) until it drains.
    #[arg(long, default_value_t = 65_536, value_parser = crate::units::count_usize)]
    pub publish_queue: usize,

    /// Pub/sub: frame bytes waiting for one worker to deliver them, at most.
    #[arg(long, default_value_t = 64 << 20, value_parser = crate::units::bytes_usize)]
    pub publish_queue_bytes: usize,

    /// Pub/sub: deliveries (messages × that worker's subscribers of their topic) waiting for
    /// one worker, at most: the bound on delivery latency under overload (a worker makes
    /// about two million deliveries a second); past it publishes are refused (503).
    #[arg(long, default_value_t = 4_000_000, value_parser = crate::units::count)]
    pub publish_queue_deliveries: u64,

    /// Pub/sub: what happens to a subscriber whose outbound queue would pass --max-outbound:
    /// `drop` (oldest undelivered messages of the topic go, a gap frame names them) or
    /// `close` (1008).
    #[arg(long, default_value = "drop")]
    pub slow_consumer: crate::pubsub::SlowPolicy,

    /// Pub/sub: per-topic policy overrides, comma-separated `name=drop|close` or
    /// `prefix*=drop|close` (exact names win, then the longest prefix).
    #[arg(long, default_value = "")]
    pub topic_policy: String,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Verify connection tokens (JWT, HS256/384/512) with the secret in this file (at least
    /// 32 bytes). With this or --auth-public-key-file, every connection needs a token
    /// (except under --auth-anonymous).
    #[arg(long)]
    pub auth_hmac_secret_file: Option<PathBuf>,

    /// Verify connection tokens with this PEM public key (RSA: RS*/PS*, EC P-256/P-384:
    /// ES256/384, Ed25519: EdDSA). Repeat for key rotation.
    #[arg(long)]
    pub auth_public_key_file: Vec<PathBuf>,

    /// Tokens must carry this `aud`.
    #[arg(long)]
    pub auth_audience: Option<String>,

    /// Tokens must carry this `iss`.
    #[arg(long)]
    pub auth_issuer: Option<String>,

    /// Clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, default_value_t = 30.0, value_parser = crate::units::secs)]
    pub auth_leeway: f64,

    /// With authentication on: connections without a token are admitted and may subscribe
    /// to these channel patterns (comma-separated: `name`, `prefix*`, `*`), and publish
    /// nowhere. Without it they get 401.
    #[arg(long)]
    pub auth_anonymous: Option<String>,

    /// Web pages (Origin) that may connect: `*` (any) or a comma-separated list of
    /// `https://host[:port]`, `https://*.domain`; empty: none. Others get 403. Clients that
    /// send no Origin (not browsers) are not affected.
    #[arg(long, default_value = "*")]
    pub allowed_origins: String,

    /// Connections one user (the token's `sub`) may hold across the process (0: no cap);
    /// past it, 429.
    #[arg(long, default_value_t = 0, value_parser = crate::units::count_u32)]
    pub max_connections_per_user: u32,

    /// Endpoints offered, comma-separated: `echo` (`/` and `/echo`), `pubsub` (`/ws`).
    #[arg(long, default_value = "echo,pubsub")]
    pub endpoints: String,

    /// Fan-out pacing: a worker that over the last 100 ms never waited for work, ran under
    /// 75% of its time (another thread holds its CPU) and delivered at least 50,000 messages
    /// a second paces: it spaces its subscribers' sends (--fanout-pace-interval) or, with
    /// that 0, ends each turn that delivered with a pause this long (seconds; `20ms`), so
    /// subscribers' frames leave in fewer, fuller sends and the neighbour gets its share of
    /// the CPU. A worker alone on its CPU, keeping up, or delivering less never paces. At
    /// most 100ms; 0 (with --fanout-pace-interval 0) turns pacing off.
    #[arg(long, default_value_t = 0.02, value_parser = crate::units::secs)]
    pub fanout_pause: f64,

    /// While a worker paces (see --fanout-pause: its CPU is shared, it never waits for work
    /// and it delivers at least 50,000 messages a second), its subscribers' sends are spaced,
    /// as --fanout-send-interval spaces them always, at an interval sized to the load — 2.5
    /// times the gap between a connection's sends while it sent eagerly, at least 20ms — and
    /// at most this long (seconds; `195ms`): a message that follows another to the same
    /// subscriber within the interval waits for its phase, at most the interval. It halves
    /// CPU per delivery where the load generator shares the CPUs, at the latency eager sends
    /// had there (docs/operations.md, "Fan-out pacing"). A worker whose eager sends carried
    /// about one frame each (under 1.5) keeps up and is not spaced. The worker stays spaced while it
    /// delivers that much and its CPU stays shared (over each second it waited, runnable,
    /// for the CPU at least a tenth of the time it ran), and sends eagerly again when either
    /// ends. At most 1s; 0 paces by pausing.
    #[arg(long, default_value_t = 0.195, value_parser = crate::units::secs)]
    pub fanout_pace_interval: f64,

    /// Fan-out turns take in messages published while their sends go out: the subscribers
    /// not yet sent to carry them in the same send, instead of a whole turn later. At
    /// saturation this cuts the fan-out's latency by about a third (18k subscribers × 60/s,
    /// two workers: p50 115 vs 183 ms) for ~15% more CPU per delivery, because messages are
    /// then offered one by one instead of in runs that piled up. Off by default; no effect
    /// with --fanout-send-interval, whose messages wait for their phase on purpose.
    #[arg(long)]
    pub fanout_join: bool,

    /// Send to each connection about once per this interval while it keeps getting
    /// messages (seconds; `500ms`): after a send, the next waits for the recipient's phase —
    /// a point that comes round once per interval, spread over the connections — and carries
    /// everything published meanwhile. A send costs about the same whatever it carries, so
    /// this trades latency (a message that follows another within the interval waits at
    /// most the interval, half of it on average) for CPU per delivery. A message to an idle
    /// connection (nothing sent since its last phase) goes at once. Input ends a hold
    /// (replies and echoes are never held, and come after the messages that waited); a
    /// backlog larger than one send drains at once. At most 1s; 0 (the default) sends as
    /// soon as the last send completed.
    #[arg(long, default_value_t = 0.0, value_parser = crate::units::secs)]
    pub fanout_send_interval: f64,

    /// Close log: at most this many lines per second (all workers together) of one line
    /// per closed or refused connection (target `holdfast::close`, level info). Above the
    /// rate connections are sampled and each line states its sampling. 0 turns it off.
    #[arg(long, default_value_t = 100, value_parser = crate::units::count_u32)]
    pub close_log_rate: u32,

    /// Serve TLS (wss://) on the listener with this PEM certificate chain (leaf first);
    /// needs --tls-key. Reloaded with the key on SIGHUP without dropping a connection.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A TOML file whose keys (the flag names with `_` for `-`) override the defaults;
    /// flags given on the command line still win.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `--read-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadModeArg {
    /// A poll (single-shot until the first message, multishot after), then a receive on
    /// readiness.
    Poll,
    /// Multishot receive.
    Recv,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServeConfig {
    /// Check every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secs = |flag: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::NotPositiveSeconds { flag, value: v })
            }
        };
        secs("handshake-timeout", self.handshake_timeout)?;
        secs("ping-interval", self.ping_interval)?;
        secs("idle-timeout", self.idle_timeout)?;
        secs("drain-window", self.drain_window)?;
        secs("drain-grace", self.drain_grace)?;
        secs("poll-hold", self.poll_hold)?;
        secs("admin-request-timeout", self.admin_request_timeout)?;
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::IdleNotAbovePing {
                idle: self.idle_timeout,
                ping: self.ping_interval,
            });
        }
        let range = |flag: &'static str, ok: bool, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { flag, rule })
            }
        };
        range(
            "recv-buffers",
            self.recv_buffers.is_power_of_two() && self.recv_buffers <= 32768,
            "a power of two up to 32768",
        )?;
        range(
            "recv-buffer-size",
            (256..=1 << 20).contains(&self.recv_buffer_size),
            "between 256 B and 1 MiB",
        )?;
        range("max-connections", self.max_connections > 0, "at least 1")?;
        range(
            "fanout-pause",
            self.fanout_pause <= 0.1,
            "at most 100ms (it adds to a subscriber's latency while the worker paces)",
        )?;
        range(
            "fanout-pace-interval",
            self.fanout_pace_interval <= 1.0,
            "at most 1s (a message waits up to the interval for its recipient's next send)",
        )?;
        range(
            "fanout-send-interval",
            self.fanout_send_interval <= 1.0,
            "at most 1s (a message waits up to the interval and a quarter for its recipient's \
             next send)",
        )?;
        range(
            "max-message",
            self.max_message >= 1,
            "at least 1 byte (there is no unlimited: 0 refused every message and publish)",
        )?;
        range(
            "max-outbound",
            self.max_outbound >= 4096,
            "at least 4096 bytes",
        )?;
        range(
            "max-outbound",
            self.max_outbound >= self.max_message as usize + MAX_FRAME_HEADER,
            "at least --max-message + 14 bytes (one frame of the largest message), or a \
             message the server accepts could never be delivered",
        )?;
        range(
            "accept-rate",
            self.accept_rate.is_finite() && self.accept_rate >= 0.0,
            "a non-negative number",
        )?;
        range(
            "ring-files",
            self.ring_files == 0 || self.ring_files >= 256,
            "0 (automatic) or at least 256",
        )?;
        range("workers", self.workers != Some(0), "at least 1")?;
        range(
            "max-topics-per-connection",
            self.max_topics_per_connection > 0,
            "at least 1",
        )?;
        range(
            "max-topic-len",
            (1..=255).contains(&self.max_topic_len),
            "between 1 and 255 (binary frames carry a one-byte length)",
        )?;
        range("max-topics", self.max_topics > 0, "at least 1")?;
        range(
            "subscribe-rate",
            self.subscribe_rate <= 1000,
            "at most 1000 a second (0: no limit)",
        )?;
        range(
            "max-control-message",
            self.max_control_message >= 256,
            "at least 256 bytes",
        )?;
        crate::pubsub::PolicyTable::parse(self.slow_consumer, &self.topic_policy)
            .map_err(ConfigError::TopicPolicy)?;
        Ok(())
    }

    /// The memory budget and the replay budget within it, given the text of /proc/meminfo
    /// for the default.
    pub fn budgets(&self, meminfo: Option<&str>) -> Result<(usize, usize), ConfigError> {
        let memory = self
            .memory_budget
            .unwrap_or_else(|| crate::budget::default_limit(meminfo));
        if memory < 16 << 20 {
            return Err(ConfigError::OutOfRange {
                flag: "memory-budget",
                rule: "at least 16 MiB",
            });
        }
        let replay = self.replay_budget.unwrap_or((256 << 20).min(memory / 4));
        if replay > memory / 2 {
            return Err(ConfigError::OutOfRange {
                flag: "replay-budget",
                rule: "at most half of --memory-budget (replay alone must never exhaust it)",
            });
        }
        Ok((memory, replay))
    }

    /// The backplane's options (`--backplane` and the presence flags).
    pub fn backplane_options(&self) -> Result<crate::backplane::Options, ConfigError> {
        let url = match self.backplane.as_str() {
            "memory" | "" => None,
            u => Some(crate::backplane::broker::Url::parse(u).map_err(ConfigError::Backplane)?),
        };
        let node = match &self.node_id {
            Some(n) if n.is_empty() || n.len() > 64 || n.contains(['/', '\n', ' ']) => {
                return Err(ConfigError::Backplane(format!(
                    "--node-id {n:?}: 1 to 64 bytes, no '/', space or newline"
                )))
            }
            Some(n) => n.clone(),
            None => format!("{}-{}", host_name(), self.listen.port()),
        };
        Ok(crate::backplane::Options {
            url,
            node: node.into(),
            history: self.replay_messages,
            history_bytes: self.replay_bytes,
            history_ttl: self.history_ttl,
            presence_prefix: self.presence_prefix.clone(),
            presence_ttl: self.presence_ttl.max(1),
            presence_events: self.presence_events,
        })
    }

    /// The admin address, or None when disabled.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let addr = parse_listen(&self.admin)?;
        if let Some(a) = addr {
            if !a.ip().is_loopback() && self.admin_token_file.is_none() {
                return Err(ConfigError::AdminExposed(a));
            }
        }
        Ok(addr)
    }

    /// The observe-only listener's address, or None.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen(&self.metrics_listen)
    }

    /// The admin bearer token, read from `--admin-token-file`.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = self.admin_token_file.as_ref() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let token = text.trim();
        if token.len() < 16 || token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::TokenFile {
                path: path.display().to_string(),
                reason: "the token must be at least 16 printable characters without spaces".into(),
            });
        }
        Ok(Some(token.to_string()))
    }

    /// The TLS certificate store and server configuration, when TLS is on (the files are
    /// read and the key checked against the certificate here, before serving).
    #[allow(clippy::type_complexity)]
    pub fn tls(
        &self,
    ) -> Result<
        Option<(
            std::sync::Arc<crate::tls::CertStore>,
            std::sync::Arc<rustls::ServerConfig>,
        )>,
        ConfigError,
    > {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(ConfigError::Tls(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
            return Ok(None);
        };
        let store = crate::tls::CertStore::load(crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .map_err(ConfigError::Tls)?;
        let store = std::sync::Arc::new(store);
        let cfg = crate::tls::server_config(store.clone()).map_err(ConfigError::Tls)?;
        Ok(Some((store, cfg)))
    }

    /// The edge policy: token verification, the Origin allowlist, the endpoints offered.
    pub fn edge(&self) -> Result<crate::services::identity::Edge, ConfigError> {
        let read = |flag: &str, p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| ConfigError::Auth(format!("--{flag} {}: {e}", p.display())))
        };
        let hmac_secret = match &self.auth_hmac_secret_file {
            Some(p) => {
                let bytes = read("auth-hmac-secret-file", p)?;
                // A trailing newline from `echo` or an editor is not part of the secret.
                let text_end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
                Some(bytes[..text_end.map_or(0, |i| i + 1)].to_vec())
            }
            None => None,
        };
        let public_keys = self
            .auth_public_key_file
            .iter()
            .map(|p| read("auth-public-key-file", p))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = crate::auth::Auth::new(&crate::auth::AuthConfig {
            hmac_secret,
            public_keys,
            audience: self.auth_audience.clone(),
            issuer: self.auth_issuer.clone(),
            leeway: self.auth_leeway.round() as u64,
            anonymous: self.auth_anonymous.clone(),
            max_per_user: self.max_connections_per_user,
        })
        .map_err(|e| ConfigError::Auth(format!("authentication: {e}")))?;
        if !auth.enabled() && (self.auth_anonymous.is_some() || self.max_connections_per_user > 0) {
            return Err(ConfigError::Auth(
                "--auth-anonymous and --max-connections-per-user need tokens: give \
                 --auth-hmac-secret-file or --auth-public-key-file"
                    .into(),
            ));
        }
        let origins = crate::auth::Origins::parse(&self.allowed_origins)
            .map_err(|e| ConfigError::Auth(format!("--allowed-origins: {e}")))?;
        let (mut echo, mut pubsub) = (false, false);
        for e in self
            .endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match e {
                "echo" => echo = true,
                "pubsub" => pubsub = true,
                other => {
                    return Err(ConfigError::Auth(format!(
                        "--endpoints: unknown endpoint `{other}` (echo, pubsub)"
                    )))
                }
            }
        }
        if !(echo || pubsub) {
            // An empty value (a template's unset variable) served nothing but 404s.
            return Err(ConfigError::Auth(
                "--endpoints: name at least one (echo, pubsub)".into(),
            ));
        }
        Ok(crate::services::identity::Edge {
            auth,
            origins,
            echo,
            pubsub,
        })
    }

    /// A duration from seconds.
    pub fn dur(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }
}

/// Merge a TOML config file into the `serve` arguments: every key names a flag (`_` or `-`
/// both work); keys given on the command line keep their command-line value. Returns the
/// new argument list (program name and subcommand included) or a clear error.
pub fn merge_config_file(args: Vec<String>) -> Result<Vec<String>, String> {
    use clap::CommandFactory as _;
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read config {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config {path} is not valid TOML: {e}"))?;
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        serve: ServeConfig,
    }
    let cmd = Probe::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut out = args.clone();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if flag == "config" || !known.contains(&flag) {
            return Err(format!(
                "config {path}: unknown key `{key}` (see holdfast serve --help)"
            ));
        }
        let given = args
            .iter()
            .any(|a| a == &format!("--{flag}") || a.starts_with(&format!("--{flag}=")));
        if given {
            continue;
        }
        let v = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config {path}: `{key}` has an unsupported value {}",
                    other.type_str()
                ))
            }
        };
        out.push(format!("--{flag}={v}"));
    }
    Ok(out)
}

fn config_path(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        c: ServeConfig,
    }

    /// The serve configuration `holdfast` with `extra` parses to.
    fn parse(extra: &[&str]) -> ServeConfig {
        use clap::Parser;
        let mut v = vec!["holdfast"];
        v.extend_from_slice(extra);
        Serve::try_parse_from(v).unwrap().c
    }

    #[test]
    fn a_zero_max_message_is_refused_not_taken_for_unlimited() {
        // Other limits read 0 as "none"; this one read it as "nothing": every message closed
        // 1009 and every publish was refused 413.
        let err = parse(&["--max-message", "0"]).validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--max-message must be at least 1 byte"),
            "{err}"
        );
        assert!(parse(&["--max-message", "1"]).validate().is_ok());
    }

    #[test]
    fn endpoints_must_name_at_least_one() {
        let err = parse(&["--endpoints", ""]).edge().map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("name at least one"), "{err}");
        let e = parse(&["--endpoints", "pubsub"]).edge().unwrap();
        assert!(e.pubsub && !e.echo);
    }

    #[test]
    fn fanout_turns_join_only_when_asked() {
        assert!(!parse(&[]).fanout_join);
        assert!(parse(&["--fanout-join"]).fanout_join);
    }

    #[test]
    fn paced_workers_space_sends_at_195ms_by_default_at_most_a_second() {
        assert_eq!(parse(&[]).fanout_pace_interval, 0.195);
        assert_eq!(
            parse(&["--fanout-pace-interval", "0"]).fanout_pace_interval,
            0.0
        );
        let err = parse(&["--fanout-pace-interval", "1500ms"])
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--fanout-pace-interval must be at most 1s"),
            "{err}"
        );
    }

    #[test]
    fn sends_are_spaced_only_when_asked_and_at_most_a_second_apart() {
        assert_eq!(parse(&[]).fanout_send_interval, 0.0);
        let c = parse(&["--fanout-send-interval", "300ms"]);
        assert_eq!(c.fanout_send_interval, 0.3);
        assert!(c.validate().is_ok());
        let err = parse(&["--fanout-send-interval", "2s"])
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--fanout-send-interval must be at most 1s"),
            "{err}"
        );
    }

    #[test]
    fn the_fanout_pause_is_20ms_by_default_can_be_off_and_is_bounded() {
        let c = parse(&[]);
        assert_eq!(c.fanout_pause, 0.02);
        assert!(c.validate().is_ok());
        assert_eq!(parse(&["--fanout-pause", "0"]).fanout_pause, 0.0);
        assert!(parse(&["--fanout-pause", "0"]).validate().is_ok());
        let err = parse(&["--fanout-pause", "200ms"]).validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--fanout-pause must be at most 100ms"),
            "{err}"
        );
    }

    #[test]
    fn file_values_apply_unless_given_on_the_command_line() {
        let dir = std::env::temp_dir().join(format!("holdfast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.toml");
        std::fs::write(
            &f,
            "max_connections = 5000\nping-interval = 10.5\nadmin = \"off\"\n",
        )
        .unwrap();
        let p = f.to_str().unwrap();
        let out = merge_config_file(args(&[
            "holdfast",
            "serve",
            "--config",
            p,
            "--admin",
            "127.0.0.1:1",
        ]))
        .unwrap();
        assert!(out.contains(&"--max-connections=5000".to_string()));
        assert!(out.contains(&"--ping-interval=10.5".to_string()));
        assert!(
            !out.iter().any(|a| a == "--admin=off"),
            "the command line wins: {out:?}"
        );

        std::fs::write(&f, "no_such_knob = 1\n").unwrap();
        let err = merge_config_file(args(&["holdfast", "serve", "--config", p])).unwrap_err();
        assert!(err.contains("unknown key `no_such_knob`"), "{err}");
        std::fs::write(&f, "max_connections = [1]\n").unwrap();
        assert!(merge_config_file(args(&["holdfast", "serve", "--config", p])).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}

fn parse_listen(v: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e: std::net::AddrParseError| ConfigError::AdminAddr {
            value: v.to_string(),
            reason: e.to_string(),
        })
}

/// The largest frame header (2 + 8 length bytes + 4 mask bytes).
const MAX_FRAME_HEADER: usize = 14;

/// A configuration the server refuses, naming the flag and the rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration flag that is not a positive number of seconds.
    NotPositiveSeconds {
        /// The flag, without dashes.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// `--idle-timeout` must exceed `--ping-interval`.
    IdleNotAbovePing {
        /// The idle timeout given.
        idle: f64,
        /// The ping interval given.
        ping: f64,
    },
    /// A value outside its range.
    OutOfRange {
        /// The flag, without dashes.
        flag: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// `--topic-policy` does not parse.
    TopicPolicy(String),
    /// The admin listener on a non-loopback address without a token: anyone who reaches it
    /// could drain the node or publish.
    AdminExposed(SocketAddr),
    /// The token file cannot be read or holds no usable token.
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The authentication or Origin settings are unusable.
    Auth(String),
    /// The TLS certificate or key cannot be used.
    Tls(String),
    /// `--backplane` or `--node-id` is unusable.
    Backplane(String),
    /// `--admin` (or `--metrics-listen`) is neither host:port nor `off`.
    AdminAddr {
        /// What was given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPositiveSeconds { flag, value } => {
                write!(
                    f,
                    "--{flag} must be a positive number of seconds, got {value}"
                )
            }
            Self::IdleNotAbovePing { idle, ping } => write!(
                f,
                "--idle-timeout ({idle}) must exceed --ping-interval ({ping}) or every idle \
                 client is closed before its pong can arrive"
            ),
            Self::OutOfRange { flag, rule } => write!(f, "--{flag} must be {rule}"),
            Self::TopicPolicy(e) => write!(f, "--topic-policy: {e}"),
            Self::AdminExposed(a) => write!(
                f,
                "--admin {a} is not a loopback address: control endpoints would be open to \
                 anyone who reaches it; give --admin-token-file, or bind 127.0.0.1 and expose \
                 only --metrics-listen"
            ),
            Self::TokenFile { path, reason } => write!(f, "--admin-token-file {path}: {reason}"),
            Self::Auth(e) => write!(f, "{e}"),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Backplane(e) => write!(f, "backplane: {e}"),
            Self::AdminAddr { value, reason } => {
                write!(f, "--admin {value:?}: {reason} (use host:port or \"off\")")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// This machine's host name (for the default node id).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "holdfast".into())
}
