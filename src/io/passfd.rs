//! Passing descriptors between processes over a Unix stream socket (SCM_RIGHTS), for the
//! hand-over: one frame per `sendmsg`, its descriptors attached to its first bytes.
//!
//! The receiver reads a frame's fixed-size header with `recvmsg` (which takes the
//! descriptors attached to it) and the payload with plain reads of exactly its length, so a
//! read never runs into the next frame, whose first bytes carry its own descriptors.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Send `frame` with `fds` attached (at most [`MAX_FDS`]). Blocks until all of it is sent.
pub fn send(sock: &mut UnixStream, frame: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more descriptors than one message carries",
        ));
    }
    if fds.is_empty() || frame.is_empty() {
        return sock.write_all(frame);
    }
    let space = cmsg_space(fds.len());
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: msghdr is plain old data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at `control`, which is CMSG_SPACE(n) bytes: room for one header
    // and n descriptors, so CMSG_FIRSTHDR is non-null and CMSG_DATA has n * 4 bytes.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(c),
            std::mem::size_of_val(fds),
        );
    }
    let sent = loop {
        // SAFETY: `msg` and what it points at (iov → frame, control) outlive the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // The descriptors went with the first bytes; the rest is plain data.
    sock.write_all(&frame[sent..])
}

fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Read exactly `head.len()` bytes, taking the descriptors attached to them (close-on-exec).
/// `Ok(false)`: the peer closed before the first byte.
pub fn recv_head(
    sock: &mut UnixStream,
    head: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<bool> {
    let space = cmsg_space(MAX_FDS);
    let mut control = vec![0u8; space];
    let mut got = 0;
    while got < head.len() {
        let mut iov = libc::iovec {
            iov_base: head[got..].as_mut_ptr().cast(),
            iov_len: head.len() - got,
        };
        // SAFETY: plain old data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // Take every descriptor that arrived before anything else can fail, so none leaks.
        // SAFETY: the kernel filled `control` up to msg_controllen with well-formed cmsgs;
        // CMSG_FIRSTHDR/NXTHDR walk them within that length, and each SCM_RIGHTS payload
        // holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors now owned by this process.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(c).cast::<RawFd>();
                    for k in 0..bytes / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(k).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other(
                "descriptors were cut off (the receiver's RLIMIT_NOFILE?)",
            ));
        }
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n as usize;
    }
    Ok(true)
}

/// Read exactly `buf.len()` bytes (a payload: no descriptors ride on it).
pub fn recv_exact(sock: &mut UnixStream, buf: &mut [u8]) -> io::Result<()> {
    sock.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    #[test]
    fn descriptors_arrive_with_their_frame_and_not_with_the_next() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut f1 = tempfile_with(b"one");
        let mut f2 = tempfile_with(b"two");
        send(
            &mut a,
            b"HEAD1payload-one",
            &[f1.as_raw_fd(), f2.as_raw_fd()],
        )
        .unwrap();
        send(&mut a, b"HEAD2payload-two", &[]).unwrap();
        let mut fds = Vec::new();
        let mut head = [0u8; 5];
        assert!(recv_head(&mut b, &mut head, &mut fds).unwrap());
        assert_eq!(&head, b"HEAD1");
        assert_eq!(fds.len(), 2);
        let mut body = [0u8; 11];
        recv_exact(&mut b, &mut body).unwrap();
        assert_eq!(&body, b"payload-one");
        let mut next = Vec::new();
        assert!(recv_head(&mut b, &mut head, &mut next).unwrap());
        assert_eq!(&head, b"HEAD2");
        assert!(next.is_empty());
        // The received descriptors are the same open files.
        let mut got = std::fs::File::from(fds.remove(1));
        let mut s = String::new();
        got.seek(std::io::SeekFrom::Start(0)).unwrap();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "two");
        f1.flush().unwrap();
        f2.flush().unwrap();
        recv_exact(&mut b, &mut body).unwrap();
        assert_eq!(&body, b"payload-two");
        drop(a);
        assert!(!recv_head(&mut b, &mut [0u8; 5], &mut next).unwrap(), "EOF");
    }

    fn tempfile_with(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "holdfast-passfd-{}-{}",
            std::process::id(),
            bytes[0]
        ));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(bytes).unwrap();
        f
    }
}
