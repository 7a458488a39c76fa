//! Waking a worker from another thread: an eventfd that the worker's ring 0 polls, written at
//! most once per batch of hand-offs (a flag says a wake is already pending, so a burst of
//! publishes costs one write and one completion).
//!
//! A multishot `POLL_ADD` posts a completion for every write (each write wakes the eventfd's
//! wait queue, and the poll reports the eventfd readable), so the worker never reads the
//! counter: it only clears the flag ([`Waker::taken`]), and a hub wake costs it no system
//! call. The counter grows by one a wake; at a million wakes a second it would reach the
//! eventfd's limit (2^64 - 2) in half a million years. A thread that waits in `poll(2)`,
//! which reports the level, reads the counter back to zero instead ([`Waker::reset`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One worker's wake-up line.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    /// A new eventfd-backed waker.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: super::sys::eventfd()?,
            pending: AtomicBool::new(false),
        })
    }

    /// The eventfd the worker polls.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wake the worker unless a wake is already pending. Call after queueing its work.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a u64 we own to an eventfd this waker owns; a full
            // counter (EAGAIN) means a wake is already visible, which is all we need.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// A thread waiting in `poll(2)` took the wake: reset the counter and the flag. Call
    /// *before* draining the queue, so work queued after the drain started raises a new wake.
    pub fn reset(&self) {
        super::sys::drain_eventfd(&self.fd);
        self.taken();
    }

    /// A worker whose ring polls the eventfd multishot took the wake (a completion): clear
    /// the flag and leave the counter, which only a level-triggered wait needs at zero. Call
    /// *before* draining the queue, so work queued after the drain started raises a new wake
    /// — and, the poll being woken by every write, a new completion.
    pub fn taken(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_batch_and_a_new_one_after_reset() {
        let w = Waker::new().unwrap();
        let readable = |w: &Waker| {
            let mut p = libc::pollfd {
                fd: w.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one pollfd we own, without waiting.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        assert!(!readable(&w));
        w.wake();
        w.wake();
        assert!(readable(&w));
        w.reset();
        assert!(!readable(&w), "reset drains the counter");
        w.wake();
        assert!(readable(&w), "a wake after reset is visible again");
    }
}
