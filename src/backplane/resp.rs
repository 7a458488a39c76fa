//! RESP2, sans-IO: commands are encoded as arrays of bulk strings, replies and pushes are
//! decoded from a byte buffer that may hold less than one value (then `Ok(None)`: read more).
//!
//! Everything the broker sends is bounded before it is allocated: a bulk string's length,
//! an array's element count and the nesting depth are checked against [`Limits`], so a
//! broker (or whatever answers on its port) that sends `*999999999\r\n` or a 4 GB length
//! gets an error, not an allocation.

use std::fmt;

/// A decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bytes, or `$-1` (None).
    Bulk(Option<Vec<u8>>),
    /// `*n` values, or `*-1` (None).
    Array(Option<Vec<Self>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(Some(b)) => Some(b),
            Self::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as UTF-8.
    pub fn text(&self) -> Option<&str> {
        self.bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements of an array (an empty slice for a nil array).
    pub fn items(&self) -> Option<&[Self]> {
        match self {
            Self::Array(Some(v)) => Some(v),
            Self::Array(None) => Some(&[]),
            _ => None,
        }
    }

    /// An integer, or a string holding one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => self.text()?.parse().ok(),
        }
    }
}

/// Bounds on what one reply may make the decoder allocate.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string.
    pub bulk: usize,
    /// Most elements in one array.
    pub elements: usize,
    /// Deepest nesting.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bulk: 512 << 20, // Redis' own proto-max-bulk-len
            elements: 1 << 20,
            depth: 8,
        }
    }
}

/// Bytes that are not RESP, or a value past the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RESP protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Append `args` as one command.
pub fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decode one value from the front of `buf`: `Ok(Some((value, bytes used)))`, or `Ok(None)`
/// when `buf` does not hold a whole value yet.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, ProtocolError> {
    match Decoder::default().next(buf, limits)? {
        (Some(v), used) => Ok(Some((v, used))),
        (None, _) => Ok(None),
    }
}

/// A decoder that keeps the part of a value already decoded, so a reply that arrives in
/// many reads is decoded once in all, not again from its start after every read: until the
/// sixty-first sitting the connection re-decoded (and copied) every complete element of a
/// reply with each 16 KiB read, and a 30 MB reply kept the backplane's thread for seconds.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The arrays under way, outermost first: the elements decoded and how many are to come.
    open: Vec<(Vec<Value>, usize)>,
}

impl Decoder {
    /// Decode from the front of `buf`, which starts where the last call's used bytes ended:
    /// `(Some(value), used)` once a value is whole, else `(None, used)` — the bytes of whole
    /// elements kept here, which the caller drops from its buffer either way. After an
    /// error the decoder is in no useful state: drop the connection.
    pub fn next(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<(Option<Value>, usize), ProtocolError> {
        let mut pos = 0;
        loop {
            let start = pos;
            let Some(v) = self.element(buf, &mut pos, limits)? else {
                return Ok((None, start));
            };
            let mut v = match v {
                Element::Value(v) => v,
                Element::Array(n) => {
                    // Each element takes at least 3 bytes: do not reserve for what cannot be
                    // there yet.
                    let cap = n.min((buf.len() - pos) / 3 + 1);
                    self.open.push((Vec::with_capacity(cap), n));
                    continue;
                }
            };
            // Whole: into the array under way, closing every array it completes.
            loop {
                let Some((items, left)) = self.open.last_mut() else {
                    return Ok((Some(v), pos));
                };
                items.push(v);
                *left -= 1;
                if *left > 0 {
                    break;
                }
                let (items, _) = self.open.pop().unwrap_or_default();
                v = Value::Array(Some(items));
            }
        }
    }

    /// Every whole value at the front of `buf` into `out`, the bytes they (and the value
    /// under way) took drained from `buf`.
    pub fn values(
        &mut self,
        buf: &mut Vec<u8>,
        limits: &Limits,
        out: &mut Vec<Value>,
    ) -> Result<(), ProtocolError> {
        loop {
            let (v, used) = self.next(buf, limits)?;
            buf.drain(..used);
            match v {
                Some(v) => out.push(v),
                None => return Ok(()),
            }
        }
    }

    /// One scalar, or the head of a non-empty array, from `buf[*pos..]` (None: not all
    /// there yet, `pos` unmoved).
    fn element(
        &self,
        buf: &[u8],
        pos: &mut usize,
        limits: &Limits,
    ) -> Result<Option<Element>, ProtocolError> {
        if self.open.len() > limits.depth {
            return Err(ProtocolError(format!(
                "nested deeper than {}",
                limits.depth
            )));
        }
        let start = *pos;
        let Some(&tag) = buf.get(start) else {
            return Ok(None);
        };
        let mut at = start + 1;
        let Some(l) = line(buf, &mut at)? else {
            return Ok(None);
        };
        let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
        let e = match tag {
            b'+' => Element::Value(Value::Simple(text(l))),
            b'-' => Element::Value(Value::Error(text(l))),
            b':' => Element::Value(Value::Int(number(l)?)),
            b'$' => match length(l, limits.bulk, "bulk", "bytes")? {
                None => Element::Value(Value::Bulk(None)),
                Some(n) => {
                    if buf.len() < at + n + 2 {
                        return Ok(None);
                    }
                    if &buf[at + n..at + n + 2] != b"\r\n" {
                        return Err(ProtocolError("bulk not followed by CRLF".into()));
                    }
                    let b = buf[at..at + n].to_vec();
                    at += n + 2;
                    Element::Value(Value::Bulk(Some(b)))
                }
            },
            b'*' => match length(l, limits.elements, "array", "elements")? {
                None => Element::Value(Value::Array(None)),
                Some(0) => Element::Value(Value::Array(Some(Vec::new()))),
                Some(n) => Element::Array(n),
            },
            t => {
                return Err(ProtocolError(format!("unknown type byte 0x{t:02x}")));
            }
        };
        *pos = at;
        Ok(Some(e))
    }
}

/// What one step of [`Decoder::next`] read.
enum Element {
    Value(Value),
    /// The head of an array of this many elements (at least one).
    Array(usize),
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &buf[*pos..];
    let Some(cr) = rest.windows(2).position(|w| w == b"\r\n") else {
        if rest.len() > 64 * 1024 {
            return Err(ProtocolError("a line longer than 64 KiB".into()));
        }
        return Ok(None);
    };
    *pos += cr + 2;
    Ok(Some(&rest[..cr]))
}

/// A length line's value: None for a nil (any negative length), an error past `max`.
fn length(l: &[u8], max: usize, what: &str, unit: &str) -> Result<Option<usize>, ProtocolError> {
    let n = number(l)?;
    let Ok(n) = usize::try_from(n) else {
        return Ok(None);
    };
    if n > max {
        return Err(ProtocolError(format!("{what} of {n} {unit} (max {max})")));
    }
    Ok(Some(n))
}

fn number(l: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("not a number: {:?}", String::from_utf8_lossy(l))))
}

/// The hash slot of `key` in a Redis Cluster (CRC16/XMODEM of the key, or of the part
/// between the first `{` and the next `}` when that part is not empty, mod 16384).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Value {
        let (v, n) = decode(buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, buf.len());
        v
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn every_type_decodes_and_partial_input_asks_for_more() {
        let whole = b"*5\r\n+OK\r\n-ERR no\r\n:-7\r\n$3\r\na\r\n\r\n*2\r\n$-1\r\n*-1\r\n";
        let v = all(whole);
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Simple("OK".into()),
                Value::Error("ERR no".into()),
                Value::Int(-7),
                Value::Bulk(Some(b"a\r\n".to_vec())),
                Value::Array(Some(vec![Value::Bulk(None), Value::Array(None)])),
            ]))
        );
        for cut in 0..whole.len() {
            assert_eq!(decode(&whole[..cut], &Limits::default()), Ok(None), "{cut}");
        }
    }

    /// Feeds `whole` to a [`Decoder`] in `piece`-byte reads, as a connection does (dropping
    /// the used bytes from its buffer); returns the values and the most bytes the buffer held.
    fn in_pieces(whole: &[u8], piece: usize) -> (Vec<Value>, usize) {
        let (mut d, mut buf, mut out, mut most) = (Decoder::default(), Vec::new(), vec![], 0);
        for chunk in whole.chunks(piece) {
            buf.extend_from_slice(chunk);
            most = most.max(buf.len());
            d.values(&mut buf, &Limits::default(), &mut out).unwrap();
        }
        assert!(buf.is_empty() && d.open.is_empty());
        (out, most)
    }

    #[test]
    fn a_reply_read_in_pieces_is_decoded_once_not_again_from_its_start() {
        // A reply like a presence listing: 20,000 records (~1 MB), then a second reply.
        let parts: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("member {i} with its record {}", "x".repeat(i % 40)).into())
            .collect();
        let mut whole = Vec::new();
        encode(&mut whole, &parts);
        let one = whole.len();
        encode(&mut whole, &["PONG"]);
        for piece in [1, 7, 16 * 1024] {
            let (values, most) = in_pieces(&whole, piece);
            assert_eq!(values.len(), 2, "{piece}");
            assert_eq!(values[0], all(&whole[..one]), "{piece}");
            // The buffer holds at most one unfinished element and one read: what was
            // decoded is not kept to be decoded again.
            assert!(most < 100 + piece, "{piece}: the buffer held {most} bytes");
        }
        // Arrays nested and empty, split everywhere.
        let nested = b"*3\r\n*2\r\n*0\r\n$1\r\na\r\n*-1\r\n*1\r\n*1\r\n:5\r\n";
        assert_eq!(in_pieces(nested, 1).0, vec![all(nested)]);
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        let l = Limits::default();
        assert!(decode(b"*999999999\r\n", &l).is_err());
        assert!(decode(b"$99999999999\r\n", &l).is_err());
        assert!(decode(b"$3\r\nabcXY", &l).is_err());
        assert!(decode(b"?x\r\n", &l).is_err());
        assert!(decode(b":12a\r\n", &l).is_err());
        let deep = "*1\r\n".repeat(20);
        assert!(decode(deep.as_bytes(), &l).is_err());
        assert!(decode(&vec![b'+'; 70_000], &l).is_err());
    }

    #[test]
    fn slots_follow_the_cluster_specification() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}")); // empty tag: whole key
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }
}
