//! The system calls around the rings: file limits, signals, eventfds, thread priority.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The RLIMIT_NOFILE soft limit: the largest registered file table a ring may have.
pub fn nofile_soft_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

/// Block SIGTERM, SIGINT and ignore SIGPIPE in this thread (threads spawned afterwards
/// inherit the mask), so that one thread can take the signals with [`wait_for_signal`].
pub fn block_signals() {
    // SAFETY: the sigset is initialised by sigemptyset before use; pthread_sigmask and
    // signal only change this process's signal disposition.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Run `f` (which spawns threads) with every signal blocked in this thread, then restore
/// its mask: threads `f` starts inherit the full mask and never take a signal meant for
/// the process (a SIGTERM delivered to such a thread before the server blocks it would
/// otherwise terminate the process instead of starting a drain).
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: both sigsets are initialised (sigfillset / written by pthread_sigmask) before
    // use; pthread_sigmask changes only this thread's mask, and the old one is restored.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let out = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        out
    }
}

/// Wait for SIGTERM, SIGINT, SIGHUP or SIGUSR2 (blocked by [`block_signals`]); returns the signal
/// number.
pub fn wait_for_signal() -> i32 {
    // SAFETY: as in block_signals; sigwait writes the signal number into `sig`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

/// Let `fd` survive an exec (clear close-on-exec): the hand-over's socket for the new
/// binary.
pub fn inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; F_SETFD with 0 clears FD_CLOEXEC only.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Send `sig` to process `pid`.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-blocking eventfd for a ring to signal completions on.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with valid flags; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reset an eventfd's counter (non-blocking; nothing to read is fine).
pub fn drain_eventfd(fd: &OwnedFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a u64 we own from an eventfd we own.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// What the calling thread has had so far (`getrusage(RUSAGE_THREAD)`): CPU time (user +
/// system) and voluntary context switches (the times it waited, blocked in a syscall);
/// zeros if unknown.
pub fn thread_usage() -> (Duration, u64) {
    // SAFETY: getrusage writes one rusage into memory we own; zeroed is a valid rusage.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut u) != 0 {
            return (Duration::ZERO, 0);
        }
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(u.ru_utime) + tv(u.ru_stime), u.ru_nvcsw as u64)
}

/// How long this thread has been runnable but waiting for a CPU, when the kernel keeps it
/// (`/proc/thread-self/schedstat`, `CONFIG_SCHED_INFO`): its second field, in nanoseconds.
pub fn thread_queued() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Set this thread's nice value (best effort); whether it took. Raising a priority
/// (a negative value) needs CAP_SYS_NICE or a permissive RLIMIT_NICE.
pub fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: setpriority takes no pointers; failure (e.g. no permission) only leaves the
    // priority as it was. On Linux PRIO_PROCESS/0 names the calling thread.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}

/// `ppoll(2)` on `fds` for at most `timeout`; returns how many have events (≤ 0: none, or
/// interrupted).
pub fn poll_fds(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> i32 {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: i64::from(timeout.subsec_nanos()) as _,
    };
    // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfds; `ts`
    // outlives the call; no signal mask is passed.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    }
}

/// Whether `fd` is readable now (a listener: connections wait in its accept queue).
pub fn readable(fd: RawFd) -> bool {
    readable_within(fd, std::time::Duration::ZERO)
}

/// Whether `fd` is readable, or becomes so within `within`.
pub fn readable_within(fd: RawFd, within: std::time::Duration) -> bool {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    poll_fds(&mut p, within) > 0 && p[0].revents & libc::POLLIN != 0
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc/PID/stat` CPU times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    hz.max(1) as f64
}

/// CPU time process `pid` has used, all its threads, live and exited, to the nanosecond
/// (its process CPU clock, `clock_getcpuclockid(3)`); None when there is no such process.
/// `/proc/PID/stat` gives the same sum in clock ticks (10 ms), too coarse for per-event
/// figures over short phases (10,000 closes of ~10 µs each are 10 ticks).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    // Pid 0 would name the caller.
    let pid = libc::pid_t::try_from(pid).ok().filter(|&p| p > 0)?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t into memory we own.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    ))
}

/// `perf_event_attr` as far as its first published size (`PERF_ATTR_SIZE_VER0`, 64 bytes):
/// what a software counting event needs. The kernel reads `size` and treats the rest as
/// zero.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// Open a task-clock counter on thread `tid` (`perf_event_open(2)`, PERF_COUNT_SW_TASK_CLOCK,
/// user and kernel time, inherited by the threads it creates from now on): nanoseconds the
/// thread was on a CPU, measured at the context switches themselves. The scheduler's own
/// clock (`process_cpu_time`) can charge a thread's last stretch before a switch to the task
/// that replaces it (a skipped clock update after a wake-up, e.g. of ksoftirqd under
/// PREEMPT_NONE); this one cannot. Needs CAP_PERFMON (root) or `perf_event_paranoid` ≤ 1
/// for another user's process.
pub fn task_clock_counter(tid: u32) -> io::Result<OwnedFd> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
    const INHERIT: u64 = 1 << 1;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    let tid = libc::pid_t::try_from(tid)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_TASK_CLOCK,
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: INHERIT,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: perf_event_open reads `attr.size` (64) bytes from `attr`, which outlives the
    // call and is a valid VER0 perf_event_attr; the other arguments are plain integers
    // (any CPU, no group, close-on-exec).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The calling thread's id (`gettid(2)`).
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// A counter's value: nanoseconds for a task clock (its own thread and the threads it
/// created since it was opened, exited ones included); None if it cannot be read.
pub fn read_counter(fd: &OwnedFd) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a u64 we own from a perf event descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    (n == 8).then_some(v)
}

/// setsockopt(2) with a plain-data value `T` (an int, a timeval).
fn set_option<T: Copy>(
    fd: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from `value`, which outlives the
    // call; the fd is an open socket the caller owns; the callers pass the type the option
    // takes.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Let connect(2), not bind(2), pick the source port of `fd` (IP_BIND_ADDRESS_NO_PORT): it
/// chooses by the whole 4-tuple and may reuse TIME_WAIT ports, where bind must avoid every
/// port in use on the address.
pub fn set_bind_address_no_port(fd: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    set_option(
        fd,
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        1 as libc::c_int,
    )
}

/// Make a blocking accept(2) on the listening socket `fd` give up with EAGAIN after
/// `after` (SO_RCVTIMEO), so that the thread accepting can notice it should stop. The
/// option belongs to the socket, so every process sharing it (a live upgrade hands the
/// admin listener over) sees the same timeout.
pub fn set_accept_timeout(
    fd: &impl std::os::fd::AsRawFd,
    after: std::time::Duration,
) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: after.as_secs() as libc::time_t,
        tv_usec: after.subsec_micros() as libc::suseconds_t,
    };
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv)
}

/// Ask the kernel for the TCP upper-layer protocol `name` (`tls`: kernel TLS) on a fresh,
/// unconnected socket. `Ok(())` or ENOTCONN mean the kernel has it (it attaches only to
/// established sockets); ENOENT means it is not built or not loadable.
pub fn tcp_ulp_probe(name: &str) -> io::Result<()> {
    let sock = std::net::TcpListener::bind("127.0.0.1:0")?;
    // SAFETY: setsockopt reads `name.len()` bytes from `name`, which outlives the call; the
    // fd is an open socket owned by `sock` for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::IPPROTO_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_keeps_a_threads_run_queue_time_and_it_never_goes_back() {
        let first = thread_queued().expect("/proc/thread-self/schedstat on this kernel");
        // Runnable beside as many spinning threads as there are CPUs, it waits for one.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let (cpu0, _) = thread_usage();
        while thread_usage().0 - cpu0 < Duration::from_millis(200) {
            std::hint::spin_loop();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let second = thread_queued().unwrap();
        assert!(second > first, "{first:?} then {second:?}");
    }
}
