//! Starting the server: lay workers out on the CPUs, bind their listeners, start the admin
//! listener, take signals, and drain on SIGTERM/SIGINT or `POST /drain`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::config::ServeConfig;
use crate::metrics::WorkerMetrics;
use crate::pubsub::{Hub, PolicyTable, ReplayLimits, TopicLimits};
use crate::reactor::listener::{self, SockOpts};
use crate::reactor::waker::Waker;
use crate::reactor::worker::{self, Settings, WorkerSpec, TICK};
use crate::reactor::{self};
use crate::topology;
use crate::ws::handshake::Limits;

/// State the workers, the admin thread and the signal thread share (rarely touched).
#[derive(Debug)]
pub struct Shared {
    /// Set once to start the drain.
    pub draining: AtomicBool,
    /// Set to make every worker exit at once.
    pub stop: AtomicBool,
    /// Every worker's counters.
    pub metrics: Vec<Arc<WorkerMetrics>>,
    /// Pub/sub: topics, numbering, replay windows, fan-out to workers.
    pub hub: Arc<Hub>,
    /// Largest `POST /publish` body (the `--max-message` limit).
    pub max_publish: usize,
}

fn ticks(secs: f64) -> u32 {
    ((secs / TICK.as_secs_f64()).ceil() as u32).max(1)
}

/// Run the server until it has drained. Returns an error message for a failed start.
pub fn serve(cfg: ServeConfig) -> Result<(), String> {
    cfg.validate()?;
    let admin_addr = cfg.admin_addr()?;
    let allowed = topology::allowed_cpus();
    let workers = cfg.workers.unwrap_or(allowed.len());
    let nodes = topology::numa_nodes();
    let layout = topology::place(workers, &allowed, &nodes);

    // Each ring's file table is capped by RLIMIT_NOFILE's soft limit; a worker adds rings
    // as its tables fill, up to its share of the connection target (docs/architecture.md).
    let per_worker = cfg.max_connections.div_ceil(workers);
    let soft = reactor::nofile_soft_limit().min(1 << 20) as usize;
    let table_cap = match cfg.ring_files {
        0 => soft,
        n if n as usize > soft => {
            return Err(format!(
                "--ring-files {n} exceeds the RLIMIT_NOFILE soft limit {soft}, which caps a \
                 ring's file table; raise the limit (LimitNOFILE, ulimit -n) or lower it"
            ))
        }
        n => n as usize,
    };
    // Slots for connections still handshaking or closing beyond the target.
    let headroom = 256;
    let table = (per_worker + headroom).min(table_cap);
    let max_conns = per_worker;
    let rings = per_worker.div_ceil(table.saturating_sub(192).max(1));

    if let Some(max) = listener::somaxconn() {
        if cfg.backlog > max {
            tracing::warn!(
                "--backlog {} exceeds net.core.somaxconn={max}; the kernel uses {max} \
                 (sysctl -w net.core.somaxconn={})",
                cfg.backlog,
                cfg.backlog
            );
        }
    }
    let opts = SockOpts {
        backlog: cfg.backlog,
        sndbuf: cfg.sndbuf,
        rcvbuf: cfg.rcvbuf,
    };
    let (listeners, bound) = listener::bind_group(cfg.listen, workers, opts)
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;

    let settings = Settings {
        limits: Limits::default(),
        max_message: cfg.max_message,
        max_outbound: cfg.max_outbound,
        handshake_ticks: ticks(cfg.handshake_timeout),
        ping_ticks: ticks(cfg.ping_interval),
        idle_ticks: ticks(cfg.idle_timeout),
        close_ticks: ticks(cfg.drain_grace.min(5.0)),
        drain_ticks: ticks(cfg.drain_window),
        grace_ticks: ticks(cfg.drain_grace),
        recv_buffers: cfg.recv_buffers,
        recv_buffer_size: cfg.recv_buffer_size,
        read_mode: match cfg.read_mode {
            crate::config::ReadModeArg::Poll => worker::ReadMode::Poll,
            crate::config::ReadModeArg::Recv => worker::ReadMode::Recv,
        },
        sq_entries: 4096,
        cq_entries: 32768,
    };
    let metrics: Vec<Arc<WorkerMetrics>> = (0..workers)
        .map(|_| Arc::new(WorkerMetrics::default()))
        .collect();
    let wakers: Vec<Arc<Waker>> = (0..workers)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let topic_limits = TopicLimits {
        max_len: cfg.max_topic_len,
        max_per_connection: cfg.max_topics_per_connection,
    };
    let (hub, receivers) = Hub::new(
        wakers
            .iter()
            .map(|w| {
                let w = w.clone();
                Box::new(move || w.wake()) as Box<dyn Fn() + Send + Sync>
            })
            .collect(),
        topic_limits,
        ReplayLimits {
            messages: cfg.replay_messages,
            bytes: cfg.replay_bytes,
            max_topics: cfg.max_topics,
            queue_messages: cfg.publish_queue.max(1),
            queue_bytes: cfg.publish_queue_bytes,
        },
    );
    let mut receivers: Vec<Option<_>> = receivers.into_iter().map(Some).collect();
    let policies = Arc::new(PolicyTable::parse(cfg.slow_consumer, &cfg.topic_policy)?);
    let shared = Arc::new(Shared {
        draining: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        metrics: metrics.clone(),
        hub: hub.clone(),
        max_publish: cfg.max_message as usize,
    });

    let ip_table =
        (cfg.max_per_ip > 0).then(|| Arc::new(crate::limits::IpTable::new(cfg.max_per_ip)));
    reactor::block_signals();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut handles = Vec::with_capacity(workers);
    for (p, listener) in layout.iter().zip(listeners) {
        tracing::info!(
            worker = p.worker,
            cpu = p.cpu,
            numa_node = p.node,
            file_table = table,
            max_rings = rings,
            max_connections = max_conns,
            "worker layout"
        );
        let spec = WorkerSpec {
            id: p.worker,
            listener,
            max_conns,
            table_size: table as u32,
            settings,
            metrics: metrics[p.worker].clone(),
            shared: shared.clone(),
            ip_table: ip_table.clone(),
            accept_rate: cfg.accept_rate / workers as f64,
            pubsub: worker::PubsubSpec {
                hub: hub.clone(),
                rx: receivers[p.worker]
                    .take()
                    .ok_or("worker numbered twice in the layout")?,
                waker: wakers[p.worker].clone(),
                policies: policies.clone(),
                limits: topic_limits,
                client_publish: cfg.client_publish,
            },
        };
        let cpu = p.cpu;
        let tx = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("holdfast-w{}", p.worker))
            .spawn(move || {
                // Pin first so everything the worker allocates is first touched on its node.
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    tracing::warn!(worker = spec.id, cpu, "could not pin worker");
                }
                let id = spec.id;
                let ready = tx.clone();
                let r = worker::run(spec, move || {
                    let _ = ready.send((id, Ok(())));
                });
                if let Err(e) = r {
                    let _ = tx.send((id, Err(reactor::explain_setup_error(&e))));
                }
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((id, Err(msg))) => {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(format!("worker {id}: {msg}"));
            }
            Err(_) => return Err("a worker exited during start-up".into()),
        }
    }

    if let Some(addr) = admin_addr {
        let a = crate::admin::spawn(addr, shared.clone())
            .map_err(|e| format!("cannot bind admin listener {addr}: {e}"))?;
        tracing::info!("admin listening on {a}");
        println!("admin listening on {a}");
    }
    tracing::info!(workers, "listening on {bound}");
    // Tests and scripts read this line to find an ephemeral port.
    println!("listening on {bound}");

    let sig_shared = shared.clone();
    std::thread::Builder::new()
        .name("holdfast-signals".into())
        .spawn(move || {
            let sig = reactor::wait_for_signal();
            tracing::info!(
                signal = sig,
                "signal received: draining (send it again to exit now)"
            );
            sig_shared.draining.store(true, Ordering::Relaxed);
            let sig = reactor::wait_for_signal();
            tracing::warn!(signal = sig, "second signal: exiting now");
            std::process::exit(130);
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;

    for h in handles {
        let _ = h.join();
    }
    tracing::info!("drained; exiting");
    Ok(())
}
