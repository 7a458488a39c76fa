//! One client connection: its socket, where it is in its life, its frame decoder and what
//! it has queued to send. The engine drives it; scenarios add their per-message state.

use holdfast::io::Socket;
use holdfast::tls::TlsStream;
use holdfast::ws::assembler::Partial;
use holdfast::ws::{Decoder, Role};

/// Where a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The connect chain is in flight.
    Connecting,
    /// The upgrade request is sent; waiting for the 101.
    Handshaking,
    /// A WebSocket.
    Open,
    /// Our Close is sent; waiting for the server's.
    Closing,
    /// Shut down; the close of its slot is in flight (the entry goes when it completes).
    Closed,
}

/// Unsent bytes a connection may hold. An echo send beyond it is skipped and counted; a
/// control frame beyond it (a server that pings but never reads) ends the connection.
pub const MAX_QUEUED: usize = 1 << 20;

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// Its socket and what is in flight on it.
    pub socket: Socket,
    /// Where it is.
    pub phase: Phase,
    /// Index into the target list.
    pub target: u16,
    /// Storm: which reconnect attempt this is (0 for the first), if it is one.
    pub attempt: Option<u16>,
    /// The server's reconnect hint from its Close reason, ms (0: none).
    pub hint_ms: u32,
    /// When the connect started: µs since the run's epoch, wrapping (a handshake is far
    /// shorter than the 71 minutes a u32 of µs spans).
    pub started_us: u32,
    /// The first failed step of the connect chain (0: none).
    pub step_error: i32,
    /// Frames in.
    pub decoder: Decoder,
    /// A response head or frame split across reads, or a fragmented message.
    pub held: Option<Box<Partial>>,
    /// Bytes waiting for the send in flight to complete.
    pub queued: Vec<u8>,
    /// The last sent buffer, kept for reuse.
    pub spare: Vec<u8>,
    /// Fanout: the last sequence number received (or acknowledged at subscription).
    pub last_seq: u64,
    /// wss://: the TLS connection (bytes in and out pass through it).
    pub tls: Option<Box<TlsStream<rustls::client::UnbufferedClientConnection>>>,
    /// Long-poll: the cursor this poll asks from (Some: a poll after the first, of a client
    /// already counted as open).
    pub cursor: Option<Box<str>>,
}

impl Conn {
    /// A connection starting its connect chain.
    pub fn new(socket: Socket, target: u16, attempt: Option<u16>, started_us: u32) -> Self {
        Self {
            socket,
            phase: Phase::Connecting,
            target,
            attempt,
            hint_ms: 0,
            started_us,
            step_error: 0,
            decoder: Decoder::new(Role::Client),
            held: None,
            queued: Vec::new(),
            spare: Vec::new(),
            last_seq: 0,
            tls: None,
            cursor: None,
        }
    }

    /// Whether it still reads input.
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Closed
    }
}

/// `reconnect_after_ms` from a holdfast drain reason (`{"reason":"draining",
/// "reconnect_after_ms":N}`), capped at 10 minutes; 0 when absent.
pub fn reconnect_hint(reason: &[u8]) -> u32 {
    const KEY: &[u8] = b"\"reconnect_after_ms\":";
    let Some(at) = reason.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    let digits = reason[at + KEY.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(9)
        .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    digits.min(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_state_stays_small() {
        // Printed for the record (docs/loadgen.md); bounded so growth is a decision.
        let size = std::mem::size_of::<Conn>();
        println!("loadgen Conn: {size} bytes");
        assert!(size <= 144, "{size}");
    }

    #[test]
    fn drain_hint_is_read_from_the_close_reason() {
        assert_eq!(
            reconnect_hint(br#"{"reason":"draining","reconnect_after_ms":1234}"#),
            1234
        );
        assert_eq!(reconnect_hint(b"going away"), 0);
        assert_eq!(
            reconnect_hint(br#""reconnect_after_ms":99999999999"#),
            600_000
        );
    }
}
