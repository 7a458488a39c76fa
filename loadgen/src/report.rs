//! What goes into every report: the machine, HDR histograms (percentile tables and the
//! encoded histogram), process CPU time.

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Quantiles listed in every percentile table.
pub const QUANTILES: [f64; 10] = [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999, 1.0];

/// CPU seconds of process `pid`, all its threads (exited ones too), None if it is gone. A
/// running total: only the difference of two readings means anything.
///
/// The first reading of a process opens a task-clock counter on each of its threads
/// (inherited by the threads they create), and later readings add what those counted to
/// the first reading's scheduler clock. Where counters cannot be opened (no CAP_PERFMON,
/// `perf_event_paranoid` too high) every reading is the scheduler clock:
/// [`cpu_meter`] says which. Why not always the scheduler clock: on a CPU where the
/// process wakes ksoftirqd (loopback sends under PREEMPT_NONE), the scheduler charged
/// 20-35% of a server's time to ksoftirqd (docs/loadgen.md, "Reading CPU time").
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    on_cpu::seconds(pid).or_else(|| scheduler_cpu_seconds(pid))
}

/// Which meter [`proc_cpu_seconds`] reads on this machine: "task-clock" (perf counters,
/// on-CPU time measured at context switches) or "scheduler clock".
pub fn cpu_meter() -> &'static str {
    if on_cpu::available() {
        "task-clock"
    } else {
        "scheduler clock"
    }
}

/// The scheduler's account of process `pid`: its process CPU clock (nanoseconds), else
/// `/proc/PID/stat` (clock ticks).
pub fn scheduler_cpu_seconds(pid: u32) -> Option<f64> {
    if let Some(t) = holdfast::io::sys::process_cpu_time(pid) {
        return Some(t.as_secs_f64());
    }
    proc_stat_cpu_seconds(pid)
}

/// How many times the threads of process `pid` went to sleep waiting for something (the sum
/// of `voluntary_ctxt_switches` over `/proc/PID/task/*/status`), None if it is gone: each
/// is a wake-up to come. A running total like [`proc_cpu_seconds`], read over spans in which
/// the process's threads live on (a thread that exits takes its count with it).
///
/// What it shows beside a server's CPU per connection: how the client's arrivals fell. A
/// client whose requests come in batches wakes the server once per batch; one whose requests
/// trickle in wakes it for each, and every wake-up costs the server a context switch and
/// its wait's setup (docs/loadgen.md, "What each client looked like").
pub fn proc_wakeups(pid: u32) -> Option<u64> {
    let mut sum = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        // A thread that exited between the listing and the read counts no more.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some(n) = voluntary_switches(&status) {
            sum += n;
            any = true;
        }
    }
    any.then_some(sum)
}

/// `voluntary_ctxt_switches` of one `/proc/.../status` text.
fn voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Task-clock counters per process, opened at its first reading and kept until it is gone.
mod on_cpu {
    use std::collections::HashMap;
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;

    struct Counted {
        /// `/proc/PID/stat` start time: a reused pid is another process.
        started: u64,
        /// The scheduler clock when the counters were opened.
        base: f64,
        counters: Vec<OwnedFd>,
    }

    static COUNTED: Mutex<Option<HashMap<u32, Counted>>> = Mutex::new(None);

    /// Whether counters open here (probed once, on this process's own thread).
    pub(super) fn available() -> bool {
        static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *PROBE.get_or_init(|| {
            holdfast::io::sys::task_clock_counter(holdfast::io::sys::thread_id()).is_ok()
        })
    }

    fn start_time(pid: u32) -> Option<u64> {
        *super::stat_fields(pid)?.get(19)?
    }

    fn open(pid: u32, started: u64) -> Option<Counted> {
        let base = holdfast::io::sys::process_cpu_time(pid)?.as_secs_f64();
        let mut counters = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            match holdfast::io::sys::task_clock_counter(tid) {
                Ok(fd) => counters.push(fd),
                // It exited between the listing and the open: its time is in `base`.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(_) => return None,
            }
        }
        Some(Counted {
            started,
            base,
            counters,
        })
    }

    pub(super) fn seconds(pid: u32) -> Option<f64> {
        if pid == 0 || !available() {
            return None;
        }
        let mut map = COUNTED.lock().unwrap_or_else(|e| e.into_inner());
        let map = map.get_or_insert_with(HashMap::new);
        // Counters of processes that are gone are closed (a bench run starts many servers).
        map.retain(|&p, c| p == pid || start_time(p) == Some(c.started));
        let Some(started) = start_time(pid) else {
            map.remove(&pid);
            return None;
        };
        if map.get(&pid).is_none_or(|c| c.started != started) {
            map.insert(pid, open(pid, started)?);
        }
        let c = map.get(&pid)?;
        let mut ns = 0u64;
        for fd in &c.counters {
            ns += holdfast::io::sys::read_counter(fd)?;
        }
        Some(c.base + ns as f64 / 1e9)
    }
}

/// The fields of `/proc/PID/stat` after the parenthesised command name, parsed as numbers
/// (index 0 is field 3, the state, which does not parse: utime and stime, fields 14 and 15,
/// are indexes 11 and 12; starttime is 19).
fn stat_fields(pid: u32) -> Option<Vec<Option<u64>>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(|f| f.parse().ok()).collect())
}

/// The same sum from `/proc/PID/stat`, in clock ticks.
fn proc_stat_cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let ticks = (*f.get(11)?)? + (*f.get(12)?)?;
    Some(ticks as f64 / holdfast::io::sys::clock_ticks_per_second())
}

/// The machine the run was on: CPU, cores, memory, kernel, rlimits and relevant sysctls.
pub fn machine() -> Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .replace('\t', " ")
    };
    let cpu = cpu_identity(&read("/proc/cpuinfo"));
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let sysctls = [
        "net.ipv4.ip_local_port_range",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_mem",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.netfilter.nf_conntrack_max",
        "fs.file-max",
        "fs.nr_open",
    ];
    let sysctl: serde_json::Map<String, Value> = sysctls
        .iter()
        .map(|k| {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            (k.to_string(), Value::String(read(&path)))
        })
        .collect();
    json!({
        "cpu": cpu.name,
        // A model name such as "AMD EPYC" can stand for several generations (two guests of
        // that name differed by one: family 25 model 17 and family 26 model 2), so the
        // numbers that tell them apart go beside it.
        "cpu_vendor": cpu.vendor,
        "cpu_family": cpu.family,
        "cpu_model": cpu.model,
        "cpu_stepping": cpu.stepping,
        // The machine's CPUs online, not this process's share of them (`taskset`).
        "cores": std::fs::read_to_string("/sys/devices/system/cpu/online")
            .map(|s| holdfast::topology::parse_cpu_list(&s).len())
            .ok()
            .filter(|n| *n > 0)
            .or_else(|| std::thread::available_parallelism().map(|n| n.get()).ok())
            .unwrap_or(0),
        "cpus_allowed": holdfast::topology::allowed_cpus(),
        "memory": mem,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "rlimit_nofile_soft": holdfast::io::sys::nofile_soft_limit(),
        // How every "CPU seconds" figure in the report was read (see `proc_cpu_seconds`).
        "cpu_meter": cpu_meter(),
        "sysctl": sysctl,
    })
}

/// The first CPU's identity in `/proc/cpuinfo`: its model name, vendor, family, model and
/// stepping (each `None` where the kernel does not print it, as on some architectures).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CpuIdentity {
    pub name: String,
    pub vendor: Option<String>,
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub stepping: Option<u32>,
}

/// Read [`CpuIdentity`] from the text of `/proc/cpuinfo` (only the first CPU's block).
pub fn cpu_identity(cpuinfo: &str) -> CpuIdentity {
    let mut id = CpuIdentity::default();
    for line in cpuinfo.lines() {
        if line.trim().is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "model name" => id.name = value.to_string(),
            "vendor_id" => id.vendor = Some(value.to_string()),
            "cpu family" => id.family = value.parse().ok(),
            "model" => id.model = value.parse().ok(),
            "stepping" => id.stepping = value.parse().ok(),
            _ => {}
        }
    }
    id
}

/// A histogram as JSON: count, mean, p50/p90/p99/p99.9/max, a percentile table, and the
/// whole histogram encoded (HdrHistogram V2 + deflate, base64 — readable by every
/// HdrHistogram implementation). Values are divided by `divisor` for display (e.g. ns → µs
/// with 1000); the encoded histogram keeps the recorded unit, named in `recorded_unit_divisor`.
pub fn hist_json(h: &Histogram<u64>, divisor: f64) -> Value {
    let v = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            (h.value_at_quantile(q) as f64 / divisor * 1000.0).round() / 1000.0
        }
    };
    let mut encoded = Vec::new();
    let encoded = match V2DeflateSerializer::new().serialize(h, &mut encoded) {
        Ok(_) => base64_encode(&encoded),
        Err(e) => format!("error: {e:?}"),
    };
    json!({
        "count": h.len(),
        "mean": if h.is_empty() { 0.0 } else { (h.mean() / divisor * 1000.0).round() / 1000.0 },
        "p50": v(0.5),
        "p90": v(0.9),
        "p99": v(0.99),
        "p99.9": v(0.999),
        "max": if h.is_empty() { 0.0 } else { h.max() as f64 / divisor },
        "percentiles": QUANTILES.iter().map(|q| json!([q, v(*q)])).collect::<Vec<_>>(),
        "recorded_unit_divisor": divisor,
        "hdr_v2_deflate_base64": encoded,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// CPU a server may spend in a 50 ms window and still count as at rest: 0.5 ms, 1% of a
/// CPU. An idle server still wakes for its timers (Holdfast's worker and admin threads tick
/// ten times a second, ~0.1 ms per 50 ms in all), so "two readings agree" — the rule before
/// task-clock counters made readings exact to the nanosecond — never held for it: it read
/// for the full 2 s and charged those ticks to its closes, where a peer with no timers
/// settled at once.
const AT_REST_PER_WINDOW: f64 = 0.000_5;

/// The server's CPU seconds once they stop moving (a 50 ms window in which it spent less
/// than [`AT_REST_PER_WINDOW`]; at most 2 s): its share of a teardown ends after the
/// client's.
pub fn settled_cpu(pid: Option<u32>) -> Option<f64> {
    settle(
        || pid.and_then(proc_cpu_seconds),
        || std::thread::sleep(std::time::Duration::from_millis(50)),
    )
}

/// [`settled_cpu`] over any meter (`read`) and pause (`wait`): at most 40 windows.
fn settle(mut read: impl FnMut() -> Option<f64>, mut wait: impl FnMut()) -> Option<f64> {
    let mut last = read()?;
    for _ in 0..40 {
        wait();
        let now = read()?;
        if now - last < AT_REST_PER_WINDOW {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn wakeups_are_the_voluntary_switches_of_every_thread() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(voluntary_switches(status), Some(42));
        assert_eq!(voluntary_switches("Name:\tx\n"), None);
        // This process: a thread that sleeps adds at least one.
        let me = std::process::id();
        let before = proc_wakeups(me).expect("this process has threads");
        std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(5)))
            .join()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(proc_wakeups(me).unwrap() > before);
        assert_eq!(proc_wakeups(u32::MAX), None);
    }

    #[test]
    fn cpu_identity_reads_the_first_cpu_only() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n\
                    model\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 1\n\n\
                    processor\t: 1\nvendor_id\t: Other\ncpu family\t: 25\nmodel\t\t: 17\n";
        let id = cpu_identity(text);
        assert_eq!(
            id,
            CpuIdentity {
                name: "AMD EPYC".into(),
                vendor: Some("AuthenticAMD".into()),
                family: Some(26),
                model: Some(2),
                stepping: Some(1),
            }
        );
        // An architecture that prints none of the numbers (or no cpuinfo at all).
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n";
        assert_eq!(cpu_identity(arm), CpuIdentity::default());
        assert_eq!(cpu_identity(""), CpuIdentity::default());
    }

    #[test]
    fn encoded_histogram_round_trips() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in [10, 20, 30, 1000, 50_000] {
            h.record(v).unwrap();
        }
        let j = hist_json(&h, 1000.0);
        assert_eq!(j["count"], 5);
        assert_eq!(j["p50"], 0.03);
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(j["hdr_v2_deflate_base64"].as_str().unwrap())
            .unwrap();
        let back: Histogram<u64> = Deserializer::new().deserialize(&mut &raw[..]).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn cpu_time_of_this_process_is_readable() {
        assert!(proc_cpu_seconds(std::process::id()).is_some());
        assert!(proc_cpu_seconds(u32::MAX).is_none());
        assert!(
            proc_cpu_seconds(0).is_none(),
            "pid 0 is no process, not this one"
        );
    }

    /// A thread that spins for `ms` of its own CPU time and exits.
    fn spin_thread(ms: u64) {
        std::thread::spawn(move || {
            let start = holdfast::io::sys::thread_usage().0;
            while holdfast::io::sys::thread_usage().0 - start < std::time::Duration::from_millis(ms)
            {
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cpu_time_counts_exited_threads_finer_than_a_clock_tick() {
        let me = std::process::id();
        let ticks = || proc_stat_cpu_seconds(me).unwrap();
        let (t0, k0) = (proc_cpu_seconds(me).unwrap(), ticks());
        // Born after the first reading (the counters are inherited), gone before the next.
        spin_thread(50);
        let (t1, k1) = (proc_cpu_seconds(me).unwrap(), ticks());
        assert!(
            t1 - t0 >= 0.05,
            "the exited thread's 50 ms are counted: {}",
            t1 - t0
        );
        // About the same as /proc/PID/stat: nothing here wakes ksoftirqd, so the two clocks
        // differ by ticks (other test threads run too; both readings see them).
        let tick = 1.0 / holdfast::io::sys::clock_ticks_per_second();
        assert!(
            ((t1 - t0) - (k1 - k0)).abs() <= 2.0 * tick + 0.05,
            "{} vs {}",
            t1 - t0,
            k1 - k0
        );
        // Finer than a tick: two readings with a little work between differ by less.
        let a = proc_cpu_seconds(me).unwrap();
        let mut x = 0u64;
        for i in 0..10_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = proc_cpu_seconds(me).unwrap();
        assert!(b > a && b - a < tick, "{a} → {b}");
    }

    #[test]
    fn another_process_is_read_by_task_clock_when_counters_open() {
        // A child that spins ~0.3 s of CPU (any sh loop) is read from outside; its readings
        // rise with its work and stop when it is gone.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let first = proc_cpu_seconds(pid).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut last = first;
        while last - first < 0.1 {
            assert!(std::time::Instant::now() < deadline, "{first} → {last}");
            std::thread::sleep(std::time::Duration::from_millis(20));
            last = proc_cpu_seconds(pid).unwrap();
        }
        // The same work on the scheduler's clock, within a tick and 20%.
        let sched = scheduler_cpu_seconds(pid).unwrap();
        let on_cpu = proc_cpu_seconds(pid).unwrap();
        assert!(
            (on_cpu - sched).abs() <= 0.02 + 0.2 * sched,
            "{on_cpu} vs {sched} ({})",
            cpu_meter()
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(proc_cpu_seconds(pid).is_none(), "gone: no reading");
    }

    /// A meter that replays `steps` (CPU seconds spent in each window) and counts windows.
    fn replay(steps: &[f64]) -> (Option<f64>, usize) {
        let mut total = 1.0;
        let mut i = 0;
        let mut waited = 0;
        let got = settle(
            || {
                let at = total;
                if let Some(s) = steps.get(i) {
                    total += s;
                }
                i += 1;
                Some(at)
            },
            || waited += 1,
        );
        (got, waited)
    }

    #[test]
    fn a_server_settles_once_a_window_holds_no_more_than_its_timers() {
        // Busy closing for three windows, then ticking at ~0.1 ms a window.
        let (got, waited) = replay(&[0.04, 0.04, 0.02, 0.0001, 0.0001, 0.0001]);
        assert_eq!(waited, 4, "settles in the first quiet window");
        assert!((got.unwrap() - 1.1001).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn a_server_that_never_rests_is_read_after_two_seconds() {
        let (got, waited) = replay(&[0.01; 50]);
        assert_eq!(waited, 40);
        assert!((got.unwrap() - 1.4).abs() < 1e-9, "{got:?}");
    }
}
