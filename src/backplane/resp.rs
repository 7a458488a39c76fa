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
    let mut pos = 0;
    match value(buf, &mut pos, limits, 0)? {
        Some(v) => Ok(Some((v, pos))),
        None => Ok(None),
    }
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

fn number(l: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("not a number: {:?}", String::from_utf8_lossy(l))))
}

fn value(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Value>, ProtocolError> {
    if depth > limits.depth {
        return Err(ProtocolError(format!(
            "nested deeper than {}",
            limits.depth
        )));
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(l) = line(buf, pos)? else {
        return Ok(None);
    };
    let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    Ok(Some(match tag {
        b'+' => Value::Simple(text(l)),
        b'-' => Value::Error(text(l)),
        b':' => Value::Int(number(l)?),
        b'$' => {
            let n = number(l)?;
            if n < 0 {
                return Ok(Some(Value::Bulk(None)));
            }
            let n = n as usize;
            if n > limits.bulk {
                return Err(ProtocolError(format!(
                    "bulk of {n} bytes (max {})",
                    limits.bulk
                )));
            }
            if buf.len() < *pos + n + 2 {
                return Ok(None);
            }
            if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                return Err(ProtocolError("bulk not followed by CRLF".into()));
            }
            let b = buf[*pos..*pos + n].to_vec();
            *pos += n + 2;
            Value::Bulk(Some(b))
        }
        b'*' => {
            let n = number(l)?;
            if n < 0 {
                return Ok(Some(Value::Array(None)));
            }
            let n = n as usize;
            if n > limits.elements {
                return Err(ProtocolError(format!(
                    "array of {n} elements (max {})",
                    limits.elements
                )));
            }
            // Each element takes at least 3 bytes: do not reserve for what cannot be there.
            let mut items = Vec::with_capacity(n.min((buf.len() - *pos) / 3 + 1));
            for _ in 0..n {
                match value(buf, pos, limits, depth + 1)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            Value::Array(Some(items))
        }
        t => {
            return Err(ProtocolError(format!("unknown type byte 0x{t:02x}")));
        }
    }))
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
