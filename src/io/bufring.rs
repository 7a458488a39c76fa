//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer for
//! each receive, so idle connections own no receive buffer at all.
//!
//! Both the ring of descriptors and the buffers are anonymous mappings: pages become
//! resident only when the kernel first writes into them. The kernel takes buffers in ring
//! order, so every buffer in circulation is eventually written: the pool therefore keeps
//! only `active` buffers in circulation, starting small ([`INITIAL_BUFFERS`]), **growing**
//! (doubling, up to the ring's size) when it runs short, and **shrinking** (halving, see
//! [`BufPool::adjust`]) when a whole interval did not need them: a buffer past `active` is
//! not given back to the kernel when it returns, and its pages are released
//! (`MADV_DONTNEED`). A node with 15k idle connections thus holds a few hundred KiB of
//! receive buffers, not the whole pool.
//!
//! What "runs short" means depends on who takes the buffers:
//! - **Multishot receives** take them whenever data arrives, so the pool must stay ahead:
//!   it grows as soon as three quarters are lent (or a receive found none).
//! - **Gated single-shot receives** (poll mode; see `Ring`'s receive gate) are submitted
//!   only while a buffer is free for each, so a burst of ready connections never needs
//!   more buffers than the pool has: the rest wait for the next submission. The pool grows
//!   only when that waiting costs more than [`GATE_GROW_WAITS`] extra submissions a second
//!   (measured over the interval), and shrinks when it costs under a quarter of that. A
//!   burst of heartbeat pongs at 1M connections thus no longer grows every ring's pool.
//!
//! A received buffer reaches its handler as a [`RecvBuf`], which gives the buffer back to
//! the kernel when it is dropped, so no path (a stale completion, an early return) can lose
//! one.

use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Buffers a ring that accepts first starts with (and never shrinks below); see
/// [`BufPool::new`].
pub const INITIAL_BUFFERS: u16 = 64;

/// A gated pool doubles when receives that waited for a buffer, divided by the buffers in
/// circulation (≈ the extra submissions the waiting cost), exceed this in an interval of
/// about a second, and halves below a quarter of it. An extra submission costs about a
/// microsecond, so this trades at most ~0.1% of a core for the memory of the buffers.
pub const GATE_GROW_WAITS: u32 = 1000;

/// Where a buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never given to the kernel, or taken out of circulation (its pages released).
    Out,
    /// In the ring, for the kernel to pick.
    InRing,
    /// Picked by the kernel and lent to us (a completion carried it).
    Lent,
}

/// The two mappings and the producer tail; shared by the pool and its loaned buffers.
#[derive(Debug)]
struct Mapping {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    bufs: NonNull<u8>,
    bufs_bytes: usize,
    entries: u16,
    size: u32,
    tail: Cell<u16>,
    /// Buffers `0..active` circulate; a returning buffer at or past it goes out.
    active: Cell<u16>,
    /// The least `active` may shrink to.
    floor: u16,
    lent: Cell<u16>,
    /// Most buffers lent at once since the last check.
    peak: Cell<u16>,
    /// Buffers the kernel may pick now (pushed and not yet taken).
    in_ring: Cell<u16>,
    /// Single-shot receives are gated on free buffers (see the module docs).
    gated: bool,
    /// Receives that waited for a buffer since the last check (gated pools).
    waited: Cell<u32>,
    state: Box<[Cell<State>]>,
}

fn map(bytes: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
    // result is checked for MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Mapping {
    /// Put buffer `bid` at the tail (not yet visible to the kernel).
    fn push(&self, bid: u16) {
        let mask = self.entries - 1;
        let tail = self.tail.get();
        // SAFETY: `tail & mask` is < entries, so the pointer stays inside the ring mapping;
        // the kernel only reads entries between its head and our published tail, and this
        // slot is past the published tail. Only this thread writes the ring (the Rc is
        // !Send), so no other writer exists.
        let entry = unsafe { &mut *self.ring.as_ptr().add(usize::from(tail & mask)) };
        entry.set_addr(self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.size));
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail.set(tail.wrapping_add(1));
        self.in_ring.set(self.in_ring.get() + 1);
    }

    /// Put every buffer below `active` that is out back into the ring.
    fn fill(&self) {
        for bid in 0..self.active.get() {
            let st = &self.state[usize::from(bid)];
            if st.get() == State::Out {
                st.set(State::InRing);
                self.push(bid);
            }
        }
        self.publish();
    }

    /// Double the buffers in circulation (up to the ring's size).
    fn grow(&self) {
        let a = self.active.get();
        if a >= self.entries {
            return;
        }
        self.active.set(a.saturating_mul(2).min(self.entries));
        self.fill();
    }

    /// Halve the buffers in circulation (not below the floor).
    fn shrink(&self) {
        let to = (self.active.get() / 2).max(self.floor);
        self.active.set(to);
        // Buffers past the new size still in the ring stay there until the kernel picks
        // them, which on an idle node is never: their pages would stay resident (at 1M
        // connections a ramp's pools held 13 B per connection long after it). Release them
        // now; one the kernel picks later is written into fresh zero pages.
        for bid in to..self.entries {
            if self.state[usize::from(bid)].get() == State::InRing {
                self.release(bid);
            }
        }
    }

    /// Release buffer `bid`'s pages. Either it is out of circulation (lent to us and being
    /// dropped, so nothing reads it), or it sits unread in the ring: the kernel writes a
    /// provided buffer only while it runs a receive for this ring, which happens inside
    /// this thread's own `io_uring_enter` or its task work (which runs in this thread, with
    /// or without DEFER_TASKRUN; receives are never sent to io-wq: no IOSQE_ASYNC), never
    /// concurrently with this call; contents of a buffer in the ring are meaningless until
    /// the kernel fills it.
    fn release(&self, bid: u16) {
        let page = 4096usize;
        let size = self.size as usize;
        if size % page != 0 {
            return; // pages shared with circulating buffers: keep them
        }
        // SAFETY: the range is buffer `bid` inside the buffer mapping (bid < entries), page
        // aligned (the mapping is, and size is a multiple of the page size); no RecvBuf
        // refers to it (lent buffers are never released, a dropping one no longer reads)
        // and no kernel write into it can run concurrently (see above). MADV_DONTNEED on a
        // private anonymous mapping only drops the pages' contents, which nobody reads
        // before the kernel writes the buffer again (into fresh zero pages).
        unsafe {
            libc::madvise(
                self.bufs.as_ptr().add(usize::from(bid) * size).cast(),
                size,
                libc::MADV_DONTNEED,
            );
        }
    }

    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field in the shared ring; the
        // kernel reads it with acquire semantics, so a release store makes the entries
        // written by `push` visible before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail.get(), Ordering::Release);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: both mappings were created by `map` with these lengths. The last owner is
        // gone: the ring that used them was dropped with nothing in flight (a ring dropped
        // with operations in flight leaks its pool instead, see `Ring`'s Drop), and no
        // `RecvBuf` is left (each holds an owner).
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_bytes);
        }
    }
}

/// A registered ring of `entries` buffers of `size` bytes each, buffer group 0.
#[derive(Debug, Clone)]
pub struct BufPool {
    map: Rc<Mapping>,
}

impl BufPool {
    /// Map and register a ring of `entries` buffers on `uring` as buffer group 0, with
    /// `initial` (or `entries`, if fewer; at least one) in circulation, which is also the
    /// least the pool shrinks back to. `gated`: its receives are single-shot and submitted
    /// only while [`BufPool::available`] covers them (see the module docs).
    pub fn new(
        uring: &IoUring,
        entries: u16,
        size: u32,
        initial: u16,
        gated: bool,
    ) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = usize::from(entries) * size as usize;
        let ring = map(ring_bytes)?.cast::<BufRingEntry>();
        let bufs = match map(bufs_bytes) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: mapped just above with this length, used by nothing yet.
                unsafe { libc::munmap(ring.as_ptr().cast(), ring_bytes) };
                return Err(e);
            }
        };
        let m = Mapping {
            ring,
            ring_bytes,
            bufs,
            bufs_bytes,
            entries,
            size,
            tail: Cell::new(0),
            active: Cell::new(initial.clamp(1, entries)),
            floor: initial.clamp(1, entries),
            lent: Cell::new(0),
            peak: Cell::new(0),
            in_ring: Cell::new(0),
            gated,
            waited: Cell::new(0),
            state: (0..entries).map(|_| Cell::new(State::Out)).collect(),
        };
        m.fill();
        // SAFETY: the ring mapping is page-aligned and `entries` long; it stays mapped while
        // the ring may use it (the Mapping is dropped only after the ring, see Mapping's
        // Drop). On error `m` is dropped here, before the kernel ever saw it.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring.as_ptr() as u64, entries, 0, 0)?;
        }
        Ok(Self { map: Rc::new(m) })
    }

    /// Take buffer `bid`, which the kernel filled with `len` bytes and handed over with a
    /// completion. It returns to the kernel when the [`RecvBuf`] is dropped.
    pub fn take(&self, bid: u16, len: usize) -> RecvBuf {
        assert!(
            bid < self.map.entries && len <= self.map.size as usize,
            "a completion named a buffer outside the pool"
        );
        let m = &*self.map;
        let st = &m.state[usize::from(bid)];
        debug_assert_eq!(
            st.get(),
            State::InRing,
            "the kernel picked a buffer it did not have"
        );
        st.set(State::Lent);
        m.in_ring.set(m.in_ring.get().saturating_sub(1));
        let lent = m.lent.get() + 1;
        m.lent.set(lent);
        m.peak.set(m.peak.get().max(lent));
        if !m.gated && u32::from(lent) * 4 > u32::from(m.active.get()) * 3 {
            m.grow();
        }
        RecvBuf {
            map: self.map.clone(),
            bid,
            len: len as u32,
        }
    }

    /// A receive found no buffer (ENOBUFS): put more in circulation.
    pub fn starved(&self) {
        self.map.grow();
    }

    /// Buffers the kernel may pick now.
    pub fn available(&self) -> u16 {
        self.map.in_ring.get()
    }

    /// A gated receive had to wait for a buffer.
    pub fn note_waiting(&self) {
        let w = &self.map.waited;
        w.set(w.get().saturating_add(1));
    }

    /// Called about once a second. A pool fed by multishot receives halves when fewer than
    /// a quarter of its buffers were lent at once since the last call. A gated pool doubles
    /// when the receives that waited cost more than [`GATE_GROW_WAITS`] extra submissions,
    /// and halves when they cost under a quarter of that. Never below the initial count.
    /// Returns how many receives waited since the last call.
    pub fn adjust(&self) -> u32 {
        let m = &*self.map;
        let (active, peak) = (m.active.get(), m.peak.get());
        m.peak.set(m.lent.get());
        let waited = m.waited.replace(0);
        let extra_submissions = waited / u32::from(active);
        let idle = if m.gated {
            if extra_submissions > GATE_GROW_WAITS {
                m.grow();
                return waited;
            }
            extra_submissions * 4 < GATE_GROW_WAITS
        } else {
            u32::from(peak) * 4 < u32::from(active)
        };
        if idle && active > m.floor {
            m.shrink();
        }
        waited
    }

    /// Buffers in circulation now.
    pub fn active(&self) -> u16 {
        self.map.active.get()
    }

    /// Buffer size in bytes.
    pub fn buffer_size(&self) -> u32 {
        self.map.size
    }

    /// Keep the mappings for the life of the process: the ring that used them was torn
    /// down with operations in flight, and the kernel finishes that teardown asynchronously.
    pub(crate) fn leak(&self) {
        std::mem::forget(self.map.clone());
    }
}

/// One received buffer, lent by the kernel until this is dropped.
#[derive(Debug)]
pub struct RecvBuf {
    map: Rc<Mapping>,
    bid: u16,
    len: u32,
}

impl RecvBuf {
    /// The received bytes, writable (frames are unmasked in place).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `bid` < entries (checked in `take`), so the range lies inside the buffer
        // mapping, which the Rc keeps alive. The kernel filled `len` bytes and will not write
        // this buffer again until `drop` republishes it, and this value is its only holder
        // (one completion, one RecvBuf), so the slice is not aliased.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map
                    .bufs
                    .as_ptr()
                    .add(usize::from(self.bid) * self.map.size as usize),
                self.len as usize,
            )
        }
    }

    /// How many bytes were received.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was received (never, for a buffer the kernel filled).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the receive filled the whole buffer (more may wait in the socket).
    pub fn is_full(&self) -> bool {
        self.len == self.map.size
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        let m = &*self.map;
        m.lent.set(m.lent.get().saturating_sub(1));
        let st = &m.state[usize::from(self.bid)];
        if self.bid >= m.active.get() {
            st.set(State::Out);
            m.release(self.bid);
            return;
        }
        st.set(State::InRing);
        m.push(self.bid);
        m.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(p: &BufPool) -> u16 {
        p.map.tail.get()
    }

    #[test]
    fn the_pool_grows_under_use_and_shrinks_back_without_pushing_a_buffer_twice() {
        let uring = IoUring::new(8).expect("io_uring");
        let p = BufPool::new(&uring, 1024, 4096, INITIAL_BUFFERS, false).unwrap();
        assert_eq!(p.active(), INITIAL_BUFFERS);
        assert_eq!(pushed(&p), 64, "only the initial buffers circulate");
        // The kernel picks in ring order: lend 0..=48 — past three quarters of 64.
        let lent: Vec<RecvBuf> = (0..49).map(|bid| p.take(bid, 10)).collect();
        assert_eq!(p.active(), 128, "doubled");
        assert_eq!(
            pushed(&p),
            128,
            "64..128 added; the lent ones are not pushed"
        );
        drop(lent);
        assert_eq!(pushed(&p), 128 + 49, "each returned buffer goes back once");
        // A busy interval keeps the size; an idle one halves it.
        p.adjust();
        assert_eq!(p.active(), 128, "49 of 128 were lent at once");
        p.adjust();
        assert_eq!(p.active(), 64, "nothing was lent since");
        // A buffer past `active` that comes back leaves circulation (and is not pushed).
        let before = pushed(&p);
        drop(p.take(100, 1));
        assert_eq!(pushed(&p), before);
        assert_eq!(p.map.state[100].get(), State::Out);
        // Growing again puts it back exactly once; buffers still in the ring are skipped.
        let lent: Vec<RecvBuf> = (0..49).map(|bid| p.take(bid, 1)).collect();
        assert_eq!(p.active(), 128);
        assert_eq!(pushed(&p), before + 1, "only bid 100 was out below 128");
        drop(lent);
        p.starved();
        assert_eq!(
            p.active(),
            256,
            "a receive that found no buffer doubles it too"
        );
        p.adjust();
        p.adjust();
        p.adjust();
        assert_eq!(p.active(), INITIAL_BUFFERS, "never below the initial count");
    }

    #[test]
    fn a_gated_pool_grows_only_when_waiting_costs_many_submissions() {
        let uring = IoUring::new(8).expect("io_uring");
        let p = BufPool::new(&uring, 1024, 4096, 16, true).unwrap();
        assert_eq!(p.available(), 16);
        // A burst takes every buffer: a multishot pool would have grown; a gated one does
        // not (its receives wait instead).
        let lent: Vec<RecvBuf> = (0..16).map(|bid| p.take(bid, 10)).collect();
        assert_eq!((p.active(), p.available()), (16, 0));
        drop(lent);
        assert_eq!(p.available(), 16, "every returned buffer is free again");
        // Waiting that costs fewer extra submissions than the threshold keeps the size...
        for _ in 0..16 * GATE_GROW_WAITS {
            p.note_waiting();
        }
        assert_eq!(p.adjust(), 16 * GATE_GROW_WAITS, "the interval's waits");
        assert_eq!(p.active(), 16, "{GATE_GROW_WAITS} extra submissions: kept");
        // ...more doubles it, with the new buffers free at once.
        for _ in 0..16 * (GATE_GROW_WAITS + 1) {
            p.note_waiting();
        }
        p.adjust();
        assert_eq!((p.active(), p.available()), (32, 32));
        // Between a quarter and the threshold: kept; under a quarter: halved.
        for _ in 0..32 * (GATE_GROW_WAITS / 4) {
            p.note_waiting();
        }
        p.adjust();
        assert_eq!(p.active(), 32);
        p.adjust();
        assert_eq!(p.active(), 16, "an interval without waiting halves it");
        p.adjust();
        assert_eq!(p.active(), 16, "never below the floor");
        // A receive that found no buffer still grows it (the gate's count was off).
        p.starved();
        assert_eq!(p.active(), 32);
    }

    /// Pages of buffer `bid` resident now (mincore).
    fn resident_pages(p: &BufPool, bid: u16) -> usize {
        let size = p.map.size as usize;
        let mut v = vec![0u8; size / 4096];
        // SAFETY: the range is buffer `bid` inside the live mapping, page aligned; `v` has
        // one byte per page of it.
        let r = unsafe {
            libc::mincore(
                p.map.bufs.as_ptr().add(usize::from(bid) * size).cast(),
                size,
                v.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
        v.iter().filter(|b| **b & 1 == 1).count()
    }

    #[test]
    fn shrinking_releases_the_pages_of_buffers_left_in_the_ring() {
        let uring = IoUring::new(8).expect("io_uring");
        let p = BufPool::new(&uring, 256, 8192, INITIAL_BUFFERS, false).unwrap();
        // A busy moment: the pool grows to 256 and every buffer is written once (as the
        // kernel would) and returned to the ring.
        let mut lent: Vec<RecvBuf> = (0..200).map(|bid| p.take(bid, 8192)).collect();
        assert_eq!(p.active(), 256);
        for b in &mut lent {
            b.bytes_mut().fill(0xa5);
        }
        drop(lent);
        assert_eq!(resident_pages(&p, 150), 2, "written buffers are resident");
        // Keep one lent past the shrink: its pages must survive.
        let mut kept = p.take(199, 8192);
        kept.bytes_mut().fill(0x5a);
        p.adjust(); // 200 lent since the last check: stays
        assert_eq!(p.active(), 256);
        p.adjust(); // idle: 128
        p.adjust(); // 64
        assert_eq!(p.active(), INITIAL_BUFFERS);
        for bid in [64, 100, 150, 198] {
            assert_eq!(resident_pages(&p, bid), 0, "buffer {bid} still resident");
        }
        assert_eq!(resident_pages(&p, 10), 2, "circulating buffers keep theirs");
        assert!(
            kept.bytes_mut().iter().all(|b| *b == 0x5a),
            "a lent buffer is not touched"
        );
        assert_eq!(
            p.map.state[150].get(),
            State::InRing,
            "still the kernel's to pick"
        );
    }
}
