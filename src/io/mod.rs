//! The io_uring layer, shared by the server and the load generator: rings that own what
//! their operations point into ([`ring`]), the provided-buffer pool ([`bufring`]), typed
//! completion tokens ([`token`]), one connection's io state with its read machine, sends
//! and shutdown-then-close ([`socket`]), listeners ([`listener`]), cross-thread wake-ups
//! ([`waker`]) and the few system calls around them ([`sys`]).
//!
//! **Architecture Invariant:** every `unsafe` block of the server and the load generator
//! outside the codec is in this module, and every operation it offers is safe to call: the
//! memory an operation points into is owned here until its final completion. It knows
//! nothing of WebSockets, sessions or services.

pub mod bufring;
pub mod listener;
pub mod passfd;
pub mod ring;
pub mod socket;
pub mod sys;
pub mod token;
pub mod waker;

pub use bufring::RecvBuf;
pub use ring::{AddrId, Completion, Extra, Ring, RingConfig, SendBuf};
pub use socket::{Read, ReadMode, Socket};
pub use token::{Op, Token};

use std::io;

use io_uring::IoUring;

/// Why io_uring cannot be used, with the fix an operator applies.
pub fn explain_setup_error(e: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring is not available in this kernel (ENOSYS): Holdfast needs \
                               Linux 6.1 or later built with CONFIG_IO_URING"
            .into(),
        Some(libc::EPERM) if disabled > 0 => format!(
            "io_uring is disabled by kernel.io_uring_disabled={disabled}: run \
             `sysctl -w kernel.io_uring_disabled=0` (or add this user to \
             kernel.io_uring_group when it is 1)"
        ),
        Some(libc::EPERM) => "io_uring_setup was refused (EPERM): a seccomp profile (a container \
                              runtime's default one, say) blocks it; allow io_uring_setup, \
                              io_uring_enter and io_uring_register"
            .into(),
        Some(libc::ENOMEM) => "io_uring_setup failed with ENOMEM: RLIMIT_MEMLOCK is too low for \
                               the ring on this kernel; raise it (`ulimit -l unlimited`, \
                               LimitMEMLOCK=infinity in the systemd unit)"
            .into(),
        _ => format!("io_uring setup failed: {e}"),
    }
}

/// Longest a thread that watches rings through their eventfds should sleep before it reads
/// their task-work flags ([`Ring::task_work_pending`](ring::Ring::task_work_pending)). On
/// this machine's kernel (6.18) a ring's eventfd signal for work queued from another
/// process's context came through an RCU callback 5–20 ms late (every time, in the traces
/// of holdfast's later rings and of the load generator's rings), while the kernel raises the
/// flag at once: the bound on how late such a ring's input is read, for a read of shared
/// memory per ring and at most 500 wake-ups a second per thread
/// (bench/results/2026-12-05-later-rings-41-notes.md, docs/loadgen.md "Waiting for
/// completions"). A thread that waits in the ring's own `io_uring_enter` needs none of it:
/// the kernel wakes that waiter directly.
pub const TASK_WORK_CHECK: std::time::Duration = std::time::Duration::from_millis(2);

/// Build a ring with SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN (+ TASKRUN_FLAG), falling
/// back step by step where the kernel refuses one (EINVAL); returns it with the refused
/// flags and why. TASKRUN_FLAG only makes the kernel mark the ring's SQ flags while task work
/// waits to be run ([`Ring::task_work_pending`](ring::Ring::task_work_pending)): a thread
/// that holds several rings reads it instead of entering each one to find out.
pub fn setup(sq_entries: u32, cq_entries: u32) -> io::Result<(IoUring, Vec<String>)> {
    let mut fallbacks = Vec::new();
    type Attempt = (&'static str, fn(&mut io_uring::Builder));
    let attempts: [Attempt; 3] = [
        (
            "single_issuer+defer_taskrun+coop_taskrun+taskrun_flag",
            |b| {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag();
            },
        ),
        ("single_issuer+coop_taskrun", |b| {
            b.setup_single_issuer().setup_coop_taskrun();
        }),
        ("no setup flags", |_| {}),
    ];
    let mut last = None;
    for (name, apply) in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries).setup_submit_all();
        apply(&mut b);
        match b.build(sq_entries) {
            Ok(ring) => return Ok((ring, fallbacks)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                fallbacks.push(format!("{name}: {e}"));
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no ring configuration worked")))
}

/// Like [`enter_nonblocking`], but runs *every* pending deferred item: it asks for a whole
/// completion queue with a zero timeout, so the kernel's per-call cap (max(20,
/// min_complete)) does not apply, and returns with ETIME instead of waiting. It costs a timed
/// wait (an hrtimer, a VM exit here) per call, so it is for bursts: a load generator's
/// ramp or reconnect storm, where each connect is a chain of deferred items and the cheap
/// call left thousands of them waiting for seconds.
pub fn enter_run_all(ring: &mut IoUring) -> io::Result<()> {
    let want = ring.params().cq_entries() as usize;
    let ts = io_uring::types::Timespec::new();
    let args = io_uring::types::SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(want, &args) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Submit what is queued and run deferred task work without waiting, so completions
/// become visible. `submit()` alone does not pass IORING_ENTER_GETEVENTS, which a
/// DEFER_TASKRUN ring needs before it posts anything. The kernel runs at most 20 deferred
/// items per such call, and a ring's eventfd fires only when its deferred list was empty,
/// so callers enter again while a call yields completions (and the worker sweeps every ring
/// each tick). Asking for a whole CQ with a zero timeout instead runs everything at once,
/// but goes through the timed wait path: measured, that cost half the loadgen's CPU in an
/// open-loop echo run.
pub fn enter_nonblocking(ring: &mut IoUring) -> io::Result<()> {
    const IORING_ENTER_GETEVENTS: u32 = 1;
    let to_submit = ring.submission().len() as u32;
    // SAFETY: no argument pointer is passed; the SQEs being submitted were pushed under
    // the worker's SAFETY contract (buffers outlive their operations).
    match unsafe {
        ring.submitter()
            .enter::<libc::sigset_t>(to_submit, 0, IORING_ENTER_GETEVENTS, None)
    } {
        Ok(_) => Ok(()),
        // EBUSY (the completion queue overflowed) is the caller's to handle: it reaps.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => Ok(()),
        Err(e) => Err(e),
    }
}
