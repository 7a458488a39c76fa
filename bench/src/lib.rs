//! Holdfast benchmark harness: shared pieces of the criterion benchmarks.
//!
//! The micro-benchmarks (`benches/`) compare the protocol core with tungstenite on identical
//! input; [`report`] is the one-command density and performance report (`holdfast-bench
//! density|echo|fanout|storm|all`), driving holdfast and the [`peers`] with the load generator.

pub mod broadcast;
pub mod cpupair;
pub mod fanmeter;
pub mod floor;
pub mod hold;
pub mod meter;
pub mod peers;
pub mod pollmeter;
pub mod proc;
pub mod report;
pub mod upmeter;

use std::io::{self, Cursor, Read, Write};

/// Today's date (UTC) as YYYY-MM-DD, for result file names.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}

use holdfast::ws::frame::encode_frame;
use holdfast::ws::OpCode;

/// A masking key that is not all zeros, so unmasking does real work.
pub const MASK: [u8; 4] = [0x9a, 0x3c, 0x51, 0xe7];

/// `count` masked client frames of `size` bytes each, back to back, as a server receives them.
pub fn client_frames(size: usize, count: usize, op: OpCode) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::with_capacity(count * (size + 14));
    for _ in 0..count {
        encode_frame(&mut wire, true, op, Some(MASK), &payload);
    }
    wire
}

/// How many frames of `size` bytes make a batch of about 256 KiB (at least one).
pub fn batch_count(size: usize) -> usize {
    ((256 * 1024) / (size + 6)).max(1)
}

/// An in-memory stream: reads come from `input`, writes are kept in `output`. It lets
/// tungstenite run its real code paths with no socket underneath.
#[derive(Debug)]
pub struct Duplex<'a> {
    /// What the peer "sent".
    pub input: Cursor<&'a [u8]>,
    /// What was written back.
    pub output: Vec<u8>,
}

impl<'a> Duplex<'a> {
    /// A stream that yields `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            input: Cursor::new(input),
            output: Vec::with_capacity(256),
        }
    }
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // Like a non-blocking socket with nothing more to read.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A browser-like upgrade request (the size and header set of a real one).
pub const UPGRADE_REQUEST: &[u8] = b"GET /ws?topics=prices HTTP/1.1\r\n\
Host: edge.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Connection: keep-alive, Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\r\n";
