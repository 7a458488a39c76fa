//! Refused admin connections, kept open until their client has read the refusal.
//!
//! A full admin listener that cannot make room answers the new connection 503 from its
//! accept thread, without reading the request. Closing a socket with unread bytes in its
//! receive queue makes the kernel send a reset instead of a FIN, and a reset that arrives
//! before the client has read the answer throws the answer away: the client sees
//! "connection reset", not the 503 and its `Retry-After` (fifty-sixth sitting: 31 of 194
//! probes against the listener as it was). A connection's own thread lingers for that
//! ([`super::http::linger`]); the accept thread must never wait on a client, so it hands the
//! socket here instead: the write side is shut down (the FIN follows the answer), and each
//! pass of the accept loop reads and discards what the client sent, without blocking, until
//! the client closes, [`LINGER`] has passed or it sent more than [`MAX_DISCARD`]. At most
//! [`MAX_CLOSING`] sockets linger; a further one closes the oldest at once.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long a refused connection is kept for its client to read the refusal.
pub(super) const LINGER: Duration = Duration::from_secs(1);

/// Refused connections lingering at once; the oldest gives way to a new one.
pub(super) const MAX_CLOSING: usize = 64;

/// Bytes read and discarded from one refused connection, at most: a client still sending
/// after this is not waiting for an answer.
pub(super) const MAX_DISCARD: usize = 64 * 1024;

struct Entry {
    stream: TcpStream,
    until: Instant,
    discarded: usize,
}

/// The refused connections lingering on one accept thread.
#[derive(Default)]
pub(super) struct Closing {
    entries: VecDeque<Entry>,
}

/// What reading a lingering socket found.
enum Drained {
    /// The client closed (or the connection failed): close it now.
    Done,
    /// Nothing more to read yet.
    Open,
}

impl Closing {
    /// Refuse a socket: write it `answer` without waiting (a fresh socket's send buffer is
    /// empty; a client that will not take a few hundred bytes loses them), shut its write
    /// side, discard what its client already sent, and keep it until its client closes or
    /// [`LINGER`] passes.
    pub(super) fn add(&mut self, stream: TcpStream, answer: &[u8], now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = (&stream).write_all(answer);
        let _ = stream.shutdown(Shutdown::Write);
        let mut e = Entry {
            stream,
            until: now + LINGER,
            discarded: 0,
        };
        if let Drained::Done = drain(&mut e) {
            return;
        }
        if self.entries.len() == MAX_CLOSING {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Read from every lingering socket without blocking; close those whose client closed,
    /// sent too much or ran out of time.
    pub(super) fn sweep(&mut self, now: Instant) {
        self.entries
            .retain_mut(|e| now < e.until && matches!(drain(e), Drained::Open));
    }

    /// Sockets lingering now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Read and discard what a lingering socket's client sent, without blocking.
fn drain(e: &mut Entry) -> Drained {
    let mut chunk = [0u8; 4096];
    loop {
        if e.discarded >= MAX_DISCARD {
            return Drained::Done;
        }
        match (&e.stream).read(&mut chunk) {
            Ok(0) => return Drained::Done,
            Ok(n) => e.discarded += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Drained::Open,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Drained::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A client that sends a request, then reads everything the server sends until EOF;
    /// the server side answers without reading the request, then closes the socket or hands
    /// it to `closing`. Returns what the client read, or its error.
    fn refused(linger: bool, request: &[u8], closing: &mut Closing) -> std::io::Result<Vec<u8>> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request).unwrap();
        let (mut s, _) = l.accept().unwrap();
        // Wait (bounded) until the whole request is in the server's receive queue, so that
        // closing without reading it is sure to reset.
        let deadline = Instant::now() + Duration::from_secs(10);
        s.set_nonblocking(true).unwrap();
        while unread(&s) < request.len() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        s.set_nonblocking(false).unwrap();
        let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        if linger {
            closing.add(s, answer, Instant::now());
        } else {
            s.write_all(answer).unwrap();
            drop(s);
        }
        let mut got = Vec::new();
        c.read_to_end(&mut got).map(|_| got)
    }

    fn unread(s: &TcpStream) -> usize {
        let mut buf = [0u8; 1 << 16];
        s.peek(&mut buf).unwrap_or(0)
    }

    #[test]
    fn a_refused_client_reads_its_answer_then_the_socket_closes() {
        let mut closing = Closing::default();
        let request = vec![b'x'; 2000];
        // Without lingering the unread request turns the close into a reset, and the
        // client loses the answer: what this module is for.
        let plain = refused(false, &request, &mut closing);
        assert_eq!(
            plain.map(|b| b.len()).map_err(|e| e.kind()),
            Err(ErrorKind::ConnectionReset)
        );
        let before = Instant::now();
        let read = refused(true, &request, &mut closing);
        let got = read.expect("the answer, then EOF");
        assert!(got.starts_with(b"HTTP/1.1 503"), "{got:?}");
        // The client has closed after reading (its stream dropped at the end of `refused`):
        // a sweep sees EOF and lets the socket go (swept at a time before its linger ends,
        // so EOF is what closes it). Bounded: the client's FIN is on loopback.
        let deadline = Instant::now() + Duration::from_secs(10);
        while closing.len() > 0 && Instant::now() < deadline {
            closing.sweep(before);
            std::thread::yield_now();
        }
        assert_eq!(closing.len(), 0);
    }

    #[test]
    fn lingering_is_bounded_in_time_count_and_bytes() {
        let mut closing = Closing::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        for _ in 0..MAX_CLOSING + 3 {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            closing.add(s, b"", Instant::now());
            clients.push(c);
        }
        // Clients that stay open and silent: the count holds at the bound.
        assert_eq!(closing.len(), MAX_CLOSING);
        closing.sweep(Instant::now());
        assert_eq!(closing.len(), MAX_CLOSING);
        // Past the linger, all go.
        closing.sweep(Instant::now() + LINGER);
        assert_eq!(closing.len(), 0);

        // A client that keeps sending past the discard bound is closed at once (the time
        // given to the sweeps is the time it was added: not its linger running out).
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let added = Instant::now();
        closing.add(s, b"", added);
        assert_eq!(closing.len(), 1);
        let writer = std::thread::spawn(move || {
            let _ = (&c).write_all(&vec![b'y'; MAX_DISCARD + 4096]);
            c
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while closing.len() > 0 && Instant::now() < deadline {
            closing.sweep(added);
            std::thread::yield_now();
        }
        drop(writer.join().unwrap());
        assert_eq!(closing.len(), 0);
    }
}
