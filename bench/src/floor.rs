//! `holdfast-bench echo-floor`: what an echo costs on holdfast's io layer with nothing else
//! above it. It is holdfast's own [`holdfast::io::Ring`] (the rings, provided buffers,
//! pooled accepts and owned sends the worker uses) with only what an echo needs above it:
//! the upgrade, the frame header and the unmasking. No sessions, services, metrics, limits,
//! timers or pub/sub. Measured beside holdfast and uWebSockets under the same client, it
//! tells how much of holdfast's CPU per echo is its own layers above the rings, and how
//! much the io layer and the kernel's loopback path.
//!
//! A yardstick, not a server: it checks little of what a client sends. A connection whose
//! unparsed bytes pass 64 KiB, or that announces a larger frame, is closed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use holdfast::io::listener::{bind_group, SockOpts};
use holdfast::io::{Completion, Extra, Op, Ring, RingConfig, SendBuf, Token};
use holdfast::ws::handshake;

/// How a connection's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorRead {
    /// One multishot receive per connection (a completion per arrival).
    Multi,
    /// A multishot poll, then a single-shot receive per readiness (holdfast's poll mode).
    Poll,
}

/// `holdfast-bench echo-floor` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9301")]
    pub listen: SocketAddr,
    /// How connections are read.
    #[arg(long, value_enum, default_value_t = FloorRead::Poll)]
    pub read: FloorRead,
}

/// Bytes a connection may leave unparsed (a head or a frame split across reads).
const PENDING_MAX: usize = 64 * 1024;
/// Accepts kept armed.
const ACCEPTS: usize = 64;

#[derive(Debug, Default)]
struct Conn {
    /// Which connection of its slot this is: a completion for an earlier one is ignored.
    generation: u32,
    upgraded: bool,
    closing: bool,
    /// Bytes received and not yet parsed (a partial head or frame).
    pending: Vec<u8>,
}

/// What [`echo`] made of a read.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Every whole frame answered; the rest (a partial frame) kept.
    More,
    /// The client sent a close frame: answered, now close.
    Close,
    /// A frame larger than [`PENDING_MAX`] was announced: close without an answer.
    TooLarge,
}

/// Answer every whole client frame in `data` into `out` (text and binary echoed unmasked,
/// ping answered with pong, close with close); returns how many bytes were used.
fn echo(data: &mut [u8], out: &mut Vec<u8>) -> (usize, Parsed) {
    let mut at = 0;
    while data.len() - at >= 2 {
        let (b0, b1) = (data[at], data[at + 1]);
        let (len, mut head) = match b1 & 0x7f {
            126 if data.len() - at >= 4 => {
                (u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize, 4)
            }
            127 if data.len() - at >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[at + 2..at + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if len > PENDING_MAX {
            return (at, Parsed::TooLarge);
        }
        let masked = b1 & 0x80 != 0;
        let key_at = at + head;
        if masked {
            head += 4;
        }
        if data.len() - at < head + len {
            break;
        }
        let payload = at + head..at + head + len;
        if masked {
            let key = [
                data[key_at],
                data[key_at + 1],
                data[key_at + 2],
                data[key_at + 3],
            ];
            for (i, b) in data[payload.clone()].iter_mut().enumerate() {
                *b ^= key[i & 3];
            }
        }
        let opcode = b0 & 0x0f;
        let reply = match opcode {
            0x8 => {
                out.extend_from_slice(&[0x88, 0]);
                return (at + head + len, Parsed::Close);
            }
            0x9 => 0x8a,
            0xa => {
                at += head + len;
                continue;
            }
            _ => b0,
        };
        out.push(reply);
        match len {
            0..=125 => out.push(len as u8),
            126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&data[payload]);
        at += head + len;
    }
    (at, Parsed::More)
}

/// The 101 for a whole request head at the start of `data`; None until the head is whole,
/// Err for a request that is not an upgrade.
fn upgrade(data: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, String> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let req = handshake::parse_request(&data[..end + 4]).map_err(|e| format!("{e:?}"))?;
    handshake::write_accept(out, &req.accept_key(), None);
    Ok(Some(end + 4))
}

struct Floor {
    ring: Ring,
    read: FloorRead,
    /// Connections by direct-descriptor slot.
    conns: Vec<Option<Conn>>,
    /// The next generation to give a slot's connection.
    generation: u32,
    /// Emptied send buffers, reused.
    spare: Vec<Vec<u8>>,
}

impl Floor {
    /// The token for `op` on the connection in `slot` now.
    fn token(&self, op: Op, slot: u32) -> Token {
        let generation = self.conns[slot as usize]
            .as_ref()
            .map_or(0, |c| c.generation);
        Token::new(op, slot, generation)
    }

    fn arm_read(&mut self, slot: u32) {
        let t = self.token(Op::Recv, slot);
        match self.read {
            FloorRead::Multi => self.ring.recv_multi(slot, t),
            FloorRead::Poll => self.ring.poll_socket(slot, t.with_op(Op::Poll)),
        }
    }

    /// A receive that found nothing (EAGAIN: a poll's wake-up raced another read) or no
    /// free buffer (ENOBUFS: the bytes wait in the socket).
    fn retry(&mut self, slot: u32, res: i32) {
        match self.read {
            FloorRead::Multi => self.arm_read(slot),
            FloorRead::Poll if res == -libc::ENOBUFS => {
                self.ring.recv_once(slot, self.token(Op::Recv, slot))
            }
            FloorRead::Poll => {}
        }
    }

    fn close(&mut self, slot: u32) {
        let Some(c) = self.conns.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        if self.read == FloorRead::Poll {
            self.ring.poll_remove(self.token(Op::Poll, slot));
        }
        self.ring.shutdown_close(slot, self.token(Op::Close, slot));
    }

    fn on_bytes(&mut self, slot: u32, mut buf: holdfast::io::RecvBuf) {
        let Some(conn) = self.conns.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if conn.closing {
            return;
        }
        let mut out = self.spare.pop().unwrap_or_default();
        let mut pending = std::mem::take(&mut conn.pending);
        let data: &mut [u8] = if pending.is_empty() {
            buf.bytes_mut()
        } else {
            pending.extend_from_slice(buf.bytes_mut());
            &mut pending
        };
        let mut used = 0;
        let mut close = false;
        if !conn.upgraded {
            match upgrade(data, &mut out) {
                Ok(Some(n)) => {
                    conn.upgraded = true;
                    used = n;
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("echo-floor: refused an upgrade: {e}");
                    close = true;
                }
            }
        }
        if conn.upgraded && !close {
            let (n, parsed) = echo(&mut data[used..], &mut out);
            used += n;
            close = parsed != Parsed::More;
        }
        let rest = data.len() - used;
        if !close && rest > 0 {
            if rest > PENDING_MAX {
                close = true;
            } else {
                let tail = data[used..].to_vec();
                conn.pending = tail;
            }
        }
        if out.is_empty() {
            self.spare.push(out);
        } else {
            let t = self.token(Op::Send, slot);
            self.ring.send(slot, SendBuf::Owned(out), t);
        }
        if close {
            self.close(slot);
        }
    }

    fn on(&mut self, c: Completion, listener: i32) {
        let slot = c.token.index;
        let more = c.more();
        if c.token.op == Op::Accept {
            if c.res >= 0 {
                let slot = c.res as u32;
                if self.conns.len() <= slot as usize {
                    self.conns.resize_with(slot as usize + 1, || None);
                }
                self.generation = self.generation.wrapping_add(1);
                self.conns[slot as usize] = Some(Conn {
                    generation: self.generation,
                    ..Conn::default()
                });
                self.arm_read(slot);
            }
            self.ring.arm_accepts(listener, ACCEPTS);
            return;
        }
        let current = self.conns.get(slot as usize).and_then(Option::as_ref);
        if !current.is_some_and(|conn| c.token.is_for(conn.generation)) {
            return; // an earlier connection's (its buffer goes back as `c` drops)
        }
        match (c.token.op, c.extra) {
            (Op::Poll, _) => {
                if c.res > 0 {
                    self.ring.recv_once(slot, c.token.with_op(Op::Recv));
                }
                if !more && c.res != -libc::ECANCELED {
                    self.arm_read(slot);
                }
            }
            (Op::Recv, Extra::Recv(buf)) => {
                self.on_bytes(slot, buf);
                if self.read == FloorRead::Multi && !more {
                    self.arm_read(slot);
                }
            }
            (Op::Recv, _) if c.res == -libc::EAGAIN || c.res == -libc::ENOBUFS => {
                self.retry(slot, c.res)
            }
            (Op::Recv, _) => self.close(slot), // end of stream or an error
            (Op::Send, Extra::Sent(SendBuf::Owned(mut v))) => {
                if c.res < 0 {
                    self.close(slot);
                }
                v.clear();
                if self.spare.len() < 1024 {
                    self.spare.push(v);
                }
            }
            (Op::Close, _) => self.conns[slot as usize] = None,
            _ => {}
        }
    }
}

/// The file table's size: the descriptor limit, as the server sizes its own.
fn files() -> u32 {
    holdfast::io::sys::nofile_soft_limit().clamp(1024, 1 << 20) as u32
}

/// Serve echo on `args.listen` until killed.
pub fn run(args: &FloorArgs) -> io::Result<()> {
    let opts = SockOpts {
        backlog: 4096,
        sndbuf: 0,
        rcvbuf: 0,
        // As holdfast's default (`--defer-accept 1`).
        defer_accept: 1,
    };
    let (listeners, bound) = bind_group(args.listen, 1, opts)?;
    let ring = Ring::new(RingConfig {
        sq_entries: 1024,
        cq_entries: 8192,
        files: files(),
        buffers: 1024,
        initial_buffers: 1024,
        buffer_size: 4096,
        eventfd: false,
        gate_receives: false,
    })?;
    let mut floor = Floor {
        ring,
        read: args.read,
        conns: Vec::new(),
        generation: 0,
        spare: Vec::new(),
    };
    let listener = listeners[0].as_raw_fd();
    floor.ring.arm_accepts(listener, ACCEPTS);
    // The report's launcher reads this line (as the peers').
    holdfast::say!("listening on {bound}");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut done = Vec::with_capacity(1024);
    loop {
        floor.ring.wait(Duration::from_secs(1))?;
        floor.ring.reap(&mut done);
        for c in done.drain(..) {
            floor.on(c, listener);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(op: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | op, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        f
    }

    #[test]
    fn echoes_whole_frames_unmasked_and_keeps_a_partial_one() {
        let mut data = client_frame(1, b"hello", [1, 2, 3, 4]);
        data.extend(client_frame(2, b"xy", [9, 9, 9, 9]));
        let whole = data.len();
        data.extend(&client_frame(1, b"later", [5, 6, 7, 8])[..4]);
        let mut out = Vec::new();
        let (used, parsed) = echo(&mut data, &mut out);
        assert_eq!((used, parsed), (whole, Parsed::More));
        assert_eq!(out, b"\x81\x05hello\x82\x02xy");
    }

    #[test]
    fn answers_ping_with_pong_and_close_with_close() {
        let mut data = client_frame(9, b"p", [0; 4]);
        data.extend(client_frame(8, b"", [0; 4]));
        data.extend(client_frame(1, b"after", [0; 4]));
        let mut out = Vec::new();
        let (used, parsed) = echo(&mut data, &mut out);
        assert_eq!(parsed, Parsed::Close);
        assert_eq!(used, 7 + 6);
        assert_eq!(out, b"\x8a\x01p\x88\x00");
    }

    #[test]
    fn refuses_a_frame_larger_than_it_keeps() {
        let mut data = client_frame(1, b"ok", [0; 4]);
        let whole = data.len();
        data.extend([0x82, 0x80 | 127]);
        data.extend(u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        assert_eq!(echo(&mut data, &mut out), (whole, Parsed::TooLarge));
        assert_eq!(out, b"\x81\x02ok");
    }

    #[test]
    fn upgrades_only_a_whole_websocket_request() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut out = Vec::new();
        assert_eq!(upgrade(&req[..20], &mut out), Ok(None));
        assert_eq!(upgrade(req, &mut out), Ok(Some(req.len())));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
        let mut out = Vec::new();
        assert!(upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out).is_err());
    }
}
