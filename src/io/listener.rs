//! The per-worker SO_REUSEPORT listening sockets.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn setsockopt_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed; the fd is open (borrowed).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Socket options applied to the listener; accepted sockets inherit them (Linux copies
/// TCP_NODELAY and the buffer sizes from the listener into each accepted socket).
#[derive(Debug, Clone, Copy)]
pub struct SockOpts {
    /// listen(2) backlog.
    pub backlog: u32,
    /// SO_SNDBUF, 0 for the kernel default.
    pub sndbuf: u32,
    /// SO_RCVBUF, 0 for the kernel default.
    pub rcvbuf: u32,
    /// TCP_DEFER_ACCEPT in seconds, 0 for none ([`set_defer_accept`]).
    pub defer_accept: u32,
}

/// Whether another socket already listens on `addr` (a fixed port): a plain bind without
/// SO_REUSEPORT fails then. A second server would otherwise join the port through
/// SO_REUSEPORT without a word and take part of the new connections.
pub fn port_taken(addr: SocketAddr) -> bool {
    addr.port() != 0
        && matches!(
            std::net::TcpListener::bind(addr),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse
        )
}

/// [`port_taken`], asked again every 20 ms for up to `patience` while it is. A process that
/// has just exited still holds its listener for a while: io_uring releases a ring's sockets
/// in a kernel worker after the process is gone (3–9 ms here with one connection open,
/// 10–12 ms with 10,000), so a restart right after an exit (`kill -9` then start, or a
/// service manager without delay) was refused as a second server.
pub fn port_taken_within(addr: SocketAddr, patience: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + patience;
    let mut said = false;
    while port_taken(addr) {
        if std::time::Instant::now() >= end {
            return true;
        }
        if !said {
            tracing::info!("{addr} is in use; waiting up to {patience:?} for it to be released");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Bind `count` SO_REUSEPORT listeners on `addr` (port 0: the first picks one and the rest
/// join it); returns them and the address bound.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    opts: SockOpts,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let mut out = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let l = bind_one(bound, opts)?;
        bound = l.local_addr()?;
        out.push(l);
    }
    Ok((out, bound))
}

fn bind_one(addr: SocketAddr, opts: SockOpts) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    setsockopt_int(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    if opts.sndbuf > 0 {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, opts.sndbuf as i32)?;
    }
    if opts.rcvbuf > 0 {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, opts.rcvbuf as i32)?;
    }
    if opts.defer_accept > 0 {
        set_defer_accept(&fd, opts.defer_accept)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for this address family.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on a bound socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), opts.backlog.min(i32::MAX as u32) as i32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Hold new connections in the kernel until their first bytes arrive (TCP_DEFER_ACCEPT), for
/// at most about `secs` seconds (the kernel rounds up to its SYN-ACK timeouts: 1 s, then 3,
/// 7, ...); 0 turns it off. For a listener whose clients speak first (an HTTP request, a TLS
/// ClientHello): a connection whose client has only completed the TCP handshake stays in
/// the SYN queue as a request socket (no descriptor, no slot) and is queued for accept with
/// its first bytes, so the accepting worker reads them in the same turn instead of going to
/// sleep and being woken when they come (server wake-ups per upgrade 0.4–0.9 → 0.01–0.03,
/// fifty-fourth sitting). A client that stays silent is accepted when the period ends (the
/// kernel sends its SYN-ACK again, the client's ACK completes it), and the server's
/// handshake timeout runs from there. Connections completed with SYN cookies (a full SYN
/// queue) are not deferred. Also applied to a listener inherited in a live upgrade, so the
/// new process's setting holds.
pub fn set_defer_accept(l: &impl AsRawFd, secs: u32) -> io::Result<()> {
    let secs = secs.min(i32::MAX as u32) as i32;
    setsockopt_int(l, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
}

/// A socket address in the kernel's form, with its length.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// net.core.somaxconn, if readable.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The address and port in a sockaddr the kernel filled in (accept's peer address).
pub fn peer_addr(storage: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it can contain.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(std::net::SocketAddr::new(ip, u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it can contain.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::IpAddr::from(sin6.sin6_addr.s6_addr);
            Some(std::net::SocketAddr::new(ip, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// Whether `l` has a connection to accept within `within`.
    fn acceptable(l: &TcpListener, within: Duration) -> bool {
        crate::io::sys::readable_within(l.as_raw_fd(), within)
    }

    fn listener(defer_accept: u32) -> TcpListener {
        let opts = SockOpts {
            backlog: 16,
            sndbuf: 0,
            rcvbuf: 0,
            defer_accept,
        };
        let (mut ls, _) = bind_group("127.0.0.1:0".parse().unwrap(), 1, opts).unwrap();
        ls.pop().unwrap()
    }

    #[test]
    fn a_deferred_connection_is_accepted_with_its_first_bytes_and_not_before() {
        const WAIT: Duration = Duration::from_secs(10);
        // Without the deferral the kernel queues a connection for accept at the handshake.
        let plain = listener(0);
        let _silent = std::net::TcpStream::connect(plain.local_addr().unwrap()).unwrap();
        assert!(acceptable(&plain, WAIT), "accepted at the handshake");

        let deferred = listener(1);
        let mut c = std::net::TcpStream::connect(deferred.local_addr().unwrap()).unwrap();
        // Connected as far as the client can tell, and still nothing to accept: the kernel
        // holds it (it would be queued within microseconds otherwise, as above).
        assert!(!acceptable(&deferred, Duration::from_millis(300)));
        c.write_all(b"GET").unwrap();
        assert!(acceptable(&deferred, WAIT));
        let (mut s, _) = deferred.accept().unwrap();
        // The bytes came with it: a non-blocking read finds them at once.
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(s.read(&mut b).unwrap(), 3);
        assert_eq!(&b[..3], b"GET");
    }

    #[test]
    fn a_silent_deferred_connection_is_accepted_when_the_period_ends() {
        let deferred = listener(1);
        let _c = std::net::TcpStream::connect(deferred.local_addr().unwrap()).unwrap();
        assert!(!acceptable(&deferred, Duration::from_millis(300)));
        // 1 s: one SYN-ACK timeout, then the kernel sends it again and the client's ACK
        // completes the connection (well under 10 s).
        assert!(acceptable(&deferred, Duration::from_secs(10)));
        let (_s, _) = deferred.accept().unwrap();
    }

    #[test]
    fn an_inherited_listener_takes_the_new_setting() {
        let l = listener(1);
        let get = |l: &TcpListener| {
            let mut v: i32 = 0;
            let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
            // SAFETY: `v` and `len` outlive the call and describe a 4-byte buffer.
            let r = unsafe {
                libc::getsockopt(
                    l.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&mut v as *mut i32).cast(),
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            v
        };
        assert!(get(&l) > 0);
        set_defer_accept(&l, 0).unwrap();
        assert_eq!(get(&l), 0);
    }
}
