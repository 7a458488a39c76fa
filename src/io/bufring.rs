//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer for
//! each receive, so idle connections own no receive buffer at all.
//!
//! Both the ring of descriptors and the buffers are anonymous mappings: pages become
//! resident only when the kernel first writes into them, so a large pool costs memory only
//! as far as it is used concurrently. A received buffer reaches its handler as a
//! [`RecvBuf`], which gives the buffer back to the kernel when it is dropped, so no path
//! (a stale completion, an early return) can lose one.

use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

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
    /// Map, fill and register the ring on `uring` as buffer group 0.
    pub fn new(uring: &IoUring, entries: u16, size: u32) -> io::Result<Self> {
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
        };
        for bid in 0..entries {
            m.push(bid);
        }
        m.publish();
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
        RecvBuf {
            map: self.map.clone(),
            bid,
            len: len as u32,
        }
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
        self.map.push(self.bid);
        self.map.publish();
    }
}
