//! Waking a worker: an eventfd that the worker's ring 0 polls, written at
//! most once per batch of hand-offs (a flag says a wake is already pending, so a burst of
//! publishes costs one write and one completion).
//!
//! A multishot `POLL_ADD` posts a completion for every write (each write wakes the eventfd's
//! wait queue, and the poll reports the eventfd readable), so the worker never reads the
//! counter: it only clears the flag ([`Waker::taken`]), and a hub wake costs it no system
//! call. The counter grows by one a wake; at a million wakes a second it would reach the
//! eventfd's limit (2^64 - 2) in half a million years. A thread that waits in `poll(2)`,
//! which reports the level, reads the counter back to zero instead ([`Waker::reset`]).
//!
//! The worker's own thread queues work for itself too (a client's publish to a topic with
//! subscribers here, the answer to its subscribe). Once it has [claimed](Waker::claim) its
//! waker, such a wake writes nothing: it is noted for the worker, which takes it
//! ([`Waker::take_own`]) before it next waits, as it would have taken the completion.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// The address of the waker the worker on this thread claimed (0: none). Compared with a
    /// waker's own address, never dereferenced.
    static CLAIMED: Cell<usize> = const { Cell::new(0) };
}

/// One worker's wake-up line.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
    /// The pending wake was raised on the worker's own thread and wrote nothing: the worker
    /// must take it before it waits. Only that thread reads or writes it.
    own: AtomicBool,
}

impl Waker {
    /// A new eventfd-backed waker.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: super::sys::eventfd()?,
            pending: AtomicBool::new(false),
            own: AtomicBool::new(false),
        })
    }

    /// The calling thread is this waker's worker: from now on a wake raised on it writes no
    /// eventfd, and the worker must call [`Waker::take_own`] before each wait.
    pub fn claim(&self) {
        CLAIMED.with(|c| c.set(self as *const Self as usize));
    }

    fn claimed_here(&self) -> bool {
        CLAIMED.with(|c| c.get() == self as *const Self as usize)
    }

    /// The eventfd the worker polls.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wake the worker unless a wake is already pending. Call after queueing its work.
    ///
    /// On the worker's own thread (once [claimed](Waker::claim)) the wake is only noted:
    /// the worker is awake and takes it before it waits. The flag stays raised until then,
    /// so other threads write nothing meanwhile either; what they queue is taken with it.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            if self.claimed_here() {
                self.own.store(true, Ordering::Relaxed);
                return;
            }
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

    /// The worker, before it waits: did its own thread raise the pending wake (no eventfd
    /// written, so no completion will come)? If so it is taken ([`Waker::taken`]) and the
    /// worker drains its queue as for a completion. A worker that waited with such a wake
    /// untaken would sleep on work queued for it, and other threads, seeing the flag up,
    /// would not write either.
    pub fn take_own(&self) -> bool {
        let own = self.own.swap(false, Ordering::Relaxed);
        if own {
            self.taken();
        }
        own
    }
}

impl Drop for Waker {
    /// A claim outlives its waker only on a thread that goes on without it: cleared here, so
    /// a later waker at the same address is not taken for this one.
    fn drop(&mut self) {
        if self.claimed_here() {
            CLAIMED.with(|c| c.set(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_batch_and_a_new_one_after_reset() {
        let w = Waker::new().unwrap();
        assert!(!readable(&w));
        w.wake();
        w.wake();
        assert!(readable(&w));
        w.reset();
        assert!(!readable(&w), "reset drains the counter");
        w.wake();
        assert!(readable(&w), "a wake after reset is visible again");
    }

    fn readable(w: &Waker) -> bool {
        let mut p = libc::pollfd {
            fd: w.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one pollfd we own, without waiting.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn the_claiming_thread_wakes_itself_without_a_write_and_others_still_write() {
        let w = std::sync::Arc::new(Waker::new().unwrap());
        assert!(!w.take_own(), "nothing raised yet");
        w.claim();
        w.wake();
        assert!(!readable(&w), "the worker's own wake writes nothing");
        // Another thread queues meanwhile: the flag is up, so it writes nothing either,
        // and its work is taken with the worker's own wake.
        let other = w.clone();
        std::thread::spawn(move || other.wake()).join().unwrap();
        assert!(!readable(&w));
        assert!(w.take_own(), "the worker takes its own wake");
        assert!(!w.take_own(), "once");
        // Taken: another thread's next wake writes, as before.
        let other = w.clone();
        std::thread::spawn(move || other.wake()).join().unwrap();
        assert!(readable(&w), "a wake from another thread is written");
        assert!(!w.take_own(), "and is not the worker's own");
        w.reset();
        // A waker this thread did not claim writes from it as from any other.
        let unclaimed = Waker::new().unwrap();
        unclaimed.wake();
        assert!(readable(&unclaimed));
        assert!(!unclaimed.take_own());
        // Dropped on the thread that claimed it, the claim goes with it.
        drop(w);
        assert_eq!(CLAIMED.with(Cell::get), 0);
    }
}
