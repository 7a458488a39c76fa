//! The command line: scenarios and their flags.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(version, about = "io_uring WebSocket load generator")]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Ramp to N connections, hold them for a duration answering pings, then close cleanly.
    Hold(HoldArgs),
    /// C connections exchanging B-byte messages: closed loop, or open loop at a target rate
    /// (latency from the intended send time, so it is free of coordinated omission).
    Echo(EchoArgs),
    /// Hold N, then every client loses its connection at once (the loadgen cuts them, the
    /// server drains, or something external restarts it) and reconnects with exponential
    /// backoff and full jitter; reports the time to full recovery.
    Storm(StormArgs),
    /// S subscribers over T topics of a holdfast pub/sub endpoint and a publisher at rate P
    /// (admin API or a client connection): publish → delivery latency (HDR), deliveries/s,
    /// losses, duplicates and ordering violations from sequence numbers, gaps.
    Fanout(FanoutArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    /// `POST /publish` to --admin (binary payloads).
    Admin,
    /// `POST /publish` to --admin with a text body (the stamp's digits): subscribers get the
    /// same text frames as from `ws`, without a client publisher (separates the frames'
    /// cost from the client-publish path).
    AdminText,
    /// `publish` control messages over a WebSocket to the first --url (text payloads; the
    /// server needs --client-publish).
    Ws,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub c: Common,
    /// Topics; connection i subscribes to one of them (`?topics=<prefix><k>` is added to
    /// each URL).
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Topic name prefix.
    #[arg(long, default_value = "fanout.")]
    pub topic_prefix: String,
    /// Messages published per second, over all topics (in turn).
    #[arg(long, default_value_t = 10.0)]
    pub publish_rate: f64,
    /// Payload bytes per message (at least 8: the publish stamp).
    #[arg(long, default_value_t = 16, value_parser = holdfast::units::bytes_usize)]
    pub size: usize,
    /// How to publish.
    #[arg(long, value_enum, default_value_t = PublishVia::Admin)]
    pub publish_via: PublishVia,
    /// The server's admin address (host:port) for --publish-via admin.
    #[arg(long)]
    pub admin: Option<String>,
    /// Seconds of publishing before the measurement starts.
    #[arg(long, default_value_t = 1.0, value_parser = holdfast::units::secs)]
    pub warmup: f64,
    /// Seconds to wait for deliveries still in flight after the publisher stops.
    #[arg(long, default_value_t = 10.0, value_parser = holdfast::units::secs)]
    pub settle: f64,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Target, e.g. ws://127.0.0.1:8080/echo; repeat for several targets (connections take
    /// them in turn).
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Connections to open.
    #[arg(long, value_parser = holdfast::units::count_usize)]
    pub connections: usize,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Connect + upgrade attempts in flight at once during the ramp.
    #[arg(long, default_value_t = 2048)]
    pub concurrency: usize,
    /// Seconds the scenario runs after the ramp (hold: holding; echo: measuring; storm: the
    /// longest wait for recovery after the event).
    #[arg(long, value_parser = holdfast::units::secs)]
    pub duration: Option<f64>,
    /// Seconds after which the run ends whatever happened (default: ramp time × 2 +
    /// duration + 60).
    #[arg(long, value_parser = holdfast::units::secs)]
    pub hard_timeout: Option<f64>,
    /// Threads (default: one per CPU). Each drives several rings when the connections need
    /// more file-table slots than one ring holds.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses: a.b.c.d, ranges a.b.c.d-a.b.c.e, comma-separated (default for a
    /// loopback target: 127.0.0.2-127.0.0.254).
    #[arg(long)]
    pub sources: Option<String>,
    /// Seconds allowed for connect + upgrade.
    #[arg(long, default_value_t = 10.0, value_parser = holdfast::units::secs)]
    pub handshake_timeout: f64,
    /// Long-poll: `kept` (a poll's connection carries the next poll when the server keeps
    /// it: HTTP/1.1, as browsers do) or `per-poll` (every poll asks `Connection: close` and
    /// the next one connects anew, as behind a proxy that does not keep connections).
    #[arg(long, value_enum, default_value_t = PollConnections::Kept)]
    pub poll_connections: PollConnections,
    /// Seconds the closing handshakes may take at the end before sockets are dropped.
    #[arg(long, default_value_t = 30.0, value_parser = holdfast::units::secs)]
    pub close_timeout: f64,
    /// Also send our own Ping on every open connection this often (seconds); pongs are
    /// counted.
    #[arg(long, value_parser = holdfast::units::secs)]
    pub ping_interval: Option<f64>,
    /// How connections read: `poll` (a multishot poll, then a receive when readable; 608 B
    /// less kernel memory per idle connection) or `recv` (a multishot receive each).
    #[arg(long, value_enum, default_value_t = ReadModeArg::Poll)]
    pub read_mode: ReadModeArg,
    /// The server's PID: its CPU time is reported beside the figures (messages per
    /// server-CPU-second, server CPU-µs per upgrade).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// wss:// targets: trust the CA certificates in this PEM file (default: the system's
    /// CA bundle).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// wss:// targets: accept any certificate (a self-signed test server). Never against a
    /// server you do not run.
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// wss:// targets: `on`: a reconnecting client resumes with a session ticket its
    /// earlier connection received (as browsers do; first connections are full
    /// handshakes); `off`: every handshake is a full one; `always`: every connection
    /// resumes when a ticket is at hand (measures the resumed handshake's cost).
    #[arg(long, value_enum, default_value_t = Resumption::On)]
    pub tls_resumption: Resumption,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resumption {
    /// Reconnects resume.
    On,
    /// Never.
    Off,
    /// Every connection that can.
    Always,
}

impl Common {
    /// The TLS client configuration for wss:// targets (None when every target is ws://).
    pub fn tls(&self) -> Result<Option<holdfast::tls::ClientConfigs>, String> {
        if !self.urls.iter().any(|u| u.starts_with("wss://")) {
            return Ok(None);
        }
        let trust = match (&self.tls_ca, self.tls_insecure) {
            (Some(ca), _) => holdfast::tls::Trust::Ca(ca.clone()),
            (None, true) => holdfast::tls::Trust::Insecure,
            (None, false) => holdfast::tls::Trust::System,
        };
        let mut c = holdfast::tls::client_configs(&trust, self.tls_resumption != Resumption::Off)?;
        if self.tls_resumption == Resumption::Always {
            c.fresh = c.returning.clone();
        }
        Ok(Some(c))
    }
}

#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub c: Common,
}

#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub c: Common,
    /// Payload bytes per message (at least 8: they carry the send stamp).
    #[arg(long, default_value_t = 32, value_parser = holdfast::units::bytes_usize)]
    pub size: usize,
    /// Open loop: messages per second over all connections. Absent: closed loop (one
    /// message in flight per connection).
    #[arg(long)]
    pub message_rate: Option<f64>,
    /// Seconds of traffic before the measurement starts.
    #[arg(long, default_value_t = 1.0, value_parser = holdfast::units::secs)]
    pub warmup: f64,
}

/// How a long-poll client uses its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PollConnections {
    /// One connection, kept from poll to poll while the server keeps it.
    Kept,
    /// A new connection for every poll.
    PerPoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadModeArg {
    /// Multishot poll + single-shot receive on readiness.
    Poll,
    /// Multishot receive into provided buffers.
    Recv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cause {
    /// The loadgen drops every connection at once (no closing handshake).
    Cut,
    /// `POST /drain` to the server's admin API (--admin): it closes every connection with
    /// 1012 over its drain window, then exits; something must start it again.
    Drain,
    /// Wait for the server to drop the connections (a restart done by hand or a harness).
    External,
}

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub c: Common,
    /// What takes the connections away.
    #[arg(long, value_enum, default_value_t = Cause::Cut)]
    pub cause: Cause,
    /// Admin address of the server for `--cause drain` (host:port).
    #[arg(long)]
    pub admin: Option<String>,
    /// Seconds to hold before the event.
    #[arg(long, default_value_t = 2.0, value_parser = holdfast::units::secs)]
    pub hold: f64,
    /// First backoff ceiling, ms.
    #[arg(long, default_value_t = 100)]
    pub base_ms: u64,
    /// Largest backoff ceiling, ms.
    #[arg(long, default_value_t = 5000)]
    pub cap_ms: u64,
    /// Attempts per client before it gives up.
    #[arg(long, default_value_t = 12)]
    pub max_attempts: u32,
    /// Every client waits exactly the ceiling: shows the thundering herd.
    #[arg(long)]
    pub no_jitter: bool,
    /// Ignore the server's `reconnect_after_ms` hint in its drain close reason.
    #[arg(long)]
    pub ignore_hint: bool,
}
