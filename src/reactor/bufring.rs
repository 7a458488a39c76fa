//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free buffer for
//! each multishot receive completion, so idle connections own no receive buffer at all.
//!
//! Both the ring of descriptors and the buffers are anonymous mappings: pages become
//! resident only when the kernel first writes into them, so a large pool costs memory only
//! as far as it is used concurrently.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// A registered ring of `entries` buffers of `size` bytes each, buffer group `bgid`.
#[derive(Debug)]
pub struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    bufs: NonNull<u8>,
    bufs_bytes: usize,
    entries: u16,
    size: u32,
    tail: u16,
    /// The buffer group id used in RecvMulti.
    pub bgid: u16,
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

impl BufRing {
    /// Map, fill and register the ring on `uring`.
    pub fn new(uring: &IoUring, entries: u16, size: u32, bgid: u16) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = usize::from(entries) * size as usize;
        let ring = map(ring_bytes)?.cast::<BufRingEntry>();
        let bufs = map(bufs_bytes)?;
        let mut me = Self {
            ring,
            ring_bytes,
            bufs,
            bufs_bytes,
            entries,
            size,
            tail: 0,
            bgid,
        };
        for bid in 0..entries {
            me.push(bid);
        }
        me.publish();
        // SAFETY: the ring mapping is page-aligned, `entries` long, and lives until Drop,
        // which happens after the IoUring is dropped (the worker owns both and drops the
        // ring first) or after unregistering.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.as_ptr() as u64,
                entries,
                bgid,
                0,
            )?;
        }
        Ok(me)
    }

    /// The bytes the kernel wrote into buffer `bid`.
    pub fn slice_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.entries && len <= self.size as usize);
        // SAFETY: `bid` indexes a buffer inside the mapping (checked above); the kernel
        // filled `len` bytes of it and handed it to us with the completion, and will not
        // write it again until we give it back with `recycle`. The &mut self borrow keeps
        // callers from holding two views at once.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs
                    .as_ptr()
                    .add(usize::from(bid) * self.size as usize),
                len,
            )
        }
    }

    fn push(&mut self, bid: u16) {
        let mask = self.entries - 1;
        // SAFETY: `tail & mask` is < entries, so the pointer stays inside the ring mapping;
        // the kernel only reads entries between its head and our published tail, and this
        // slot is past the published tail.
        let entry = unsafe { &mut *self.ring.as_ptr().add(usize::from(self.tail & mask)) };
        entry.set_addr(self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.size));
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field in the shared ring; the
        // kernel reads it with acquire semantics, so a release store makes the entries
        // written by `push` visible before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Give buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    /// Buffer size in bytes.
    pub const fn buffer_size(&self) -> u32 {
        self.size
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both mappings were created by `map` with these lengths and are not used
        // after this point (the ring that referenced them is gone or the group unregistered).
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_bytes);
        }
    }
}
