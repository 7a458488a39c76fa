//! The hand-over's wire format between the old process and the new one: a versioned frame
//! per message on a Unix stream socket, descriptors riding beside it (SCM_RIGHTS). Sans-IO:
//! bytes in, messages out, so it is unit-tested and fuzzed alone.
//!
//! Every frame is `"HFHO" | version u16 | kind u8 | length u32 | payload`, all integers
//! big-endian. The version is on every frame, so a new binary that speaks another format is
//! found out at its first frame (its `Hello`), before anything is handed to it. Strings and
//! byte strings are `length u32 | bytes`; a decoder never trusts a length beyond the bytes
//! it holds, and never allocates more than the frame it was given.

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"HFHO";
/// The format this build speaks. Bump it on any change to a message's layout.
pub const VERSION: u16 = 2;
/// Bytes before a frame's payload.
pub const HEADER: usize = 11;
/// The largest frame either side accepts (a batch of 256 connections with 1 MiB of queued
/// output each stays under it; a topic snapshot is split into frames below it).
pub const MAX_FRAME: usize = 512 << 20;
/// Connections per batch at most: one `sendmsg` carries their descriptors, and the kernel
/// takes at most 253 per message (`SCM_MAX_FD`).
pub const MAX_BATCH: usize = 250;

/// One message of the hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// New → old, first: the format it speaks and its pid.
    Hello {
        /// Its [`VERSION`].
        version: u16,
        /// Its process id.
        pid: u32,
    },
    /// Old → new: the listening sockets, in this order, as the frame's descriptors.
    Listeners {
        /// Data listeners (one per old worker: an SO_REUSEPORT group).
        data: u16,
        /// Whether the admin listener follows them.
        admin: bool,
        /// Whether the metrics listener follows.
        metrics: bool,
    },
    /// Old → new: topics numbered in the old process (no broker), with their windows. Sent
    /// after the old one stopped numbering; more than one frame may carry them.
    Topics(Vec<TopicSnap>),
    /// New → old: its workers run and accept on the listeners.
    Ready,
    /// Old → new: connections, each with its descriptor (the frame's descriptors, in order).
    Batch {
        /// The batch's number (acknowledged by it).
        id: u64,
        /// The connections.
        conns: Vec<ConnSnap>,
    },
    /// New → old: batch `id` and its descriptors are the new process's.
    Ack {
        /// The batch.
        id: u64,
    },
    /// Old → new: everything movable moved; the old process leaves.
    Done {
        /// Connections moved in all.
        moved: u64,
    },
    /// Either way: the hand-over is off, for this reason.
    Refuse {
        /// Why.
        reason: String,
    },
    /// Old → new, while connections move (numbering is the new process's): a publish that
    /// reached the old process's admin API, to be numbered there.
    Publish {
        /// Matches the answer.
        id: u64,
        /// The topic.
        topic: String,
        /// Binary (else UTF-8 text).
        binary: bool,
        /// The message.
        payload: Vec<u8>,
    },
    /// New → old: what the publish got (the admin API's answer).
    Published {
        /// The publish it answers.
        id: u64,
        /// HTTP status.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// A topic as the old process numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSnap {
    /// Its name.
    pub name: String,
    /// Its epoch.
    pub epoch: u64,
    /// Its newest sequence number.
    pub last: u64,
    /// Its replay window, oldest first: (seq, delivery frame).
    pub frames: Vec<(u64, Vec<u8>)>,
}

/// One connection's state: what the session, the services and the socket's TLS layer hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnSnap {
    /// The old worker that held it (the new process spreads by it).
    pub worker: u16,
    /// The protocol state.
    pub session: SessionSnap,
    /// Who it is, when tokens are on.
    pub identity: Option<IdentitySnap>,
    /// Its pub/sub membership, when it is a pub/sub connection.
    pub pubsub: Option<PubsubSnap>,
    /// Its TLS record layer, when it arrived over TLS.
    pub tls: Option<TlsSnap>,
}

/// An established TLS connection's record layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSnap {
    /// [`crate::tls::Records::export`].
    pub records: Vec<u8>,
    /// TLS-level bytes not yet sent (session tickets, close_notify).
    pub out: Vec<u8>,
}

/// A session between two reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionSnap {
    /// The frame decoder's state ([`crate::ws::Decoder::export`]).
    pub decoder: [u8; 16],
    /// Ticks since its last input (for the record: the new process counts silence from the
    /// moment it takes the connection up, as its input was paused during the move).
    pub idle_ticks: u32,
    /// Session flags (transport kind and the like).
    pub flags: u8,
    /// Pings from the peer this heartbeat interval.
    pub pings: u16,
    /// Received bytes not yet decoded (a split header).
    pub pending: Vec<u8>,
    /// A fragmented message joined so far.
    pub message: Vec<u8>,
    /// The kind of that message: 0 none, 1 text, 2 binary.
    pub kind: u8,
    /// Output queued and not yet sent, as the bytes the socket would carry.
    pub outbound: Vec<u8>,
}

/// An authenticated connection's identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentitySnap {
    /// The token's subject.
    pub user: Option<String>,
    /// When the token expires (Unix seconds).
    pub exp: Option<u64>,
    /// Its grants, as [`crate::auth::Grants::text`].
    pub grants: String,
}

/// A pub/sub connection's membership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubsubSnap {
    /// What the client said it is.
    pub client: Option<String>,
    /// An event stream rather than a WebSocket.
    pub stream: bool,
    /// Its subscriptions.
    pub subs: Vec<SubSnap>,
}

/// A subscription and its position: everything numbered up to `after` in `epoch` was
/// queued to the connection (and moves in its output); live delivery continues after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubSnap {
    /// The topic.
    pub topic: String,
    /// The epoch `after` belongs to.
    pub epoch: u64,
    /// The last number queued.
    pub after: u64,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not a hand-over frame (the magic is wrong).
    NotHandover,
    /// A format this build does not speak.
    Version(u16),
    /// An unknown message kind.
    Kind(u8),
    /// Shorter than it says, or a field runs past its end.
    Truncated,
    /// Over [`MAX_FRAME`].
    TooLarge(usize),
    /// A field holds an impossible value.
    Invalid(&'static str),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotHandover => write!(f, "not a hand-over frame"),
            Self::Version(v) => write!(
                f,
                "hand-over format version {v}, this build speaks {VERSION}"
            ),
            Self::Kind(k) => write!(f, "unknown hand-over message kind {k}"),
            Self::Truncated => write!(f, "truncated hand-over frame"),
            Self::TooLarge(n) => write!(f, "hand-over frame of {n} bytes is too large"),
            Self::Invalid(what) => write!(f, "invalid hand-over field: {what}"),
        }
    }
}

impl std::error::Error for FormatError {}

// ---------------------------------------------------------------------------- writing

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
            None => self.u8(0),
        }
    }
}

fn kind_of(m: &Msg) -> u8 {
    match m {
        Msg::Hello { .. } => 1,
        Msg::Listeners { .. } => 2,
        Msg::Topics(_) => 3,
        Msg::Ready => 4,
        Msg::Batch { .. } => 5,
        Msg::Ack { .. } => 6,
        Msg::Done { .. } => 7,
        Msg::Refuse { .. } => 8,
        Msg::Publish { .. } => 9,
        Msg::Published { .. } => 10,
    }
}

/// `m` as one frame.
pub fn encode(m: &Msg) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(64));
    o.0.extend_from_slice(&MAGIC);
    o.u16(VERSION);
    o.u8(kind_of(m));
    o.u32(0); // the payload's length, filled in below
    match m {
        Msg::Hello { version, pid } => {
            o.u16(*version);
            o.u32(*pid);
        }
        Msg::Listeners {
            data,
            admin,
            metrics,
        } => {
            o.u16(*data);
            o.u8(u8::from(*admin));
            o.u8(u8::from(*metrics));
        }
        Msg::Topics(list) => {
            o.u32(list.len() as u32);
            for t in list {
                o.bytes(t.name.as_bytes());
                o.u64(t.epoch);
                o.u64(t.last);
                o.u32(t.frames.len() as u32);
                for (seq, f) in &t.frames {
                    o.u64(*seq);
                    o.bytes(f);
                }
            }
        }
        Msg::Ready => {}
        Msg::Batch { id, conns } => {
            o.u64(*id);
            o.u32(conns.len() as u32);
            for c in conns {
                conn(&mut o, c);
            }
        }
        Msg::Ack { id } => o.u64(*id),
        Msg::Done { moved } => o.u64(*moved),
        Msg::Refuse { reason } => o.bytes(reason.as_bytes()),
        Msg::Publish {
            id,
            topic,
            binary,
            payload,
        } => {
            o.u64(*id);
            o.bytes(topic.as_bytes());
            o.u8(u8::from(*binary));
            o.bytes(payload);
        }
        Msg::Published { id, status, body } => {
            o.u64(*id);
            o.u16(*status);
            o.bytes(body.as_bytes());
        }
    }
    let len = (o.0.len() - HEADER) as u32;
    o.0[7..11].copy_from_slice(&len.to_be_bytes());
    o.0
}

fn conn(o: &mut Out, c: &ConnSnap) {
    o.u16(c.worker);
    let s = &c.session;
    o.0.extend_from_slice(&s.decoder);
    o.u32(s.idle_ticks);
    o.u8(s.flags);
    o.u16(s.pings);
    o.bytes(&s.pending);
    o.bytes(&s.message);
    o.u8(s.kind);
    o.bytes(&s.outbound);
    match &c.identity {
        Some(id) => {
            o.u8(1);
            o.opt_str(id.user.as_deref());
            match id.exp {
                Some(e) => {
                    o.u8(1);
                    o.u64(e);
                }
                None => o.u8(0),
            }
            o.bytes(id.grants.as_bytes());
        }
        None => o.u8(0),
    }
    match &c.pubsub {
        Some(p) => {
            o.u8(1);
            o.opt_str(p.client.as_deref());
            o.u8(u8::from(p.stream));
            o.u32(p.subs.len() as u32);
            for s in &p.subs {
                o.bytes(s.topic.as_bytes());
                o.u64(s.epoch);
                o.u64(s.after);
            }
        }
        None => o.u8(0),
    }
    match &c.tls {
        Some(t) => {
            o.u8(1);
            o.bytes(&t.records);
            o.bytes(&t.out);
        }
        None => o.u8(0),
    }
}

// ---------------------------------------------------------------------------- reading

struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, FormatError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| FormatError::Invalid("a string is not UTF-8"))
    }
    fn flag(&mut self) -> Result<bool, FormatError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FormatError::Invalid("a flag is neither 0 nor 1")),
        }
    }
    fn opt_string(&mut self) -> Result<Option<String>, FormatError> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    /// A count of items each at least `min` bytes long: never more than the bytes left allow,
    /// so a forged count cannot make the reader reserve memory.
    fn count(&mut self, min: usize) -> Result<usize, FormatError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.0.len() {
            return Err(FormatError::Truncated);
        }
        Ok(n)
    }
}

/// The payload length a frame header announces (`head` is [`HEADER`] bytes), after
/// checking its magic, version and size.
pub fn payload_len(head: &[u8; HEADER]) -> Result<usize, FormatError> {
    if head[..4] != MAGIC {
        return Err(FormatError::NotHandover);
    }
    let version = u16::from_be_bytes([head[4], head[5]]);
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let len = u32::from_be_bytes([head[7], head[8], head[9], head[10]]) as usize;
    if len > MAX_FRAME {
        return Err(FormatError::TooLarge(len));
    }
    Ok(len)
}

/// Decode one whole frame (header and payload, nothing after).
pub fn decode(frame: &[u8]) -> Result<Msg, FormatError> {
    let head: &[u8; HEADER] = frame
        .get(..HEADER)
        .and_then(|h| h.try_into().ok())
        .ok_or(FormatError::Truncated)?;
    let len = payload_len(head)?;
    if frame.len() != HEADER + len {
        return Err(FormatError::Truncated);
    }
    let mut i = In(&frame[HEADER..]);
    let m = match head[6] {
        1 => Msg::Hello {
            version: i.u16()?,
            pid: i.u32()?,
        },
        2 => Msg::Listeners {
            data: i.u16()?,
            admin: i.flag()?,
            metrics: i.flag()?,
        },
        3 => {
            // The smallest topic: a name's length and one byte, epoch, last, frame count.
            let n = i.count(25)?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                let name = i.string()?;
                let epoch = i.u64()?;
                let last = i.u64()?;
                let k = i.count(12)?;
                let mut frames = Vec::with_capacity(k);
                for _ in 0..k {
                    let seq = i.u64()?;
                    frames.push((seq, i.bytes()?.to_vec()));
                }
                list.push(TopicSnap {
                    name,
                    epoch,
                    last,
                    frames,
                });
            }
            Msg::Topics(list)
        }
        4 => Msg::Ready,
        5 => {
            let id = i.u64()?;
            let n = i.count(40)?;
            if n > MAX_BATCH {
                return Err(FormatError::Invalid("a batch over MAX_BATCH"));
            }
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                conns.push(read_conn(&mut i)?);
            }
            Msg::Batch { id, conns }
        }
        6 => Msg::Ack { id: i.u64()? },
        7 => Msg::Done { moved: i.u64()? },
        8 => Msg::Refuse {
            reason: i.string()?,
        },
        9 => Msg::Publish {
            id: i.u64()?,
            topic: i.string()?,
            binary: i.flag()?,
            payload: i.bytes()?.to_vec(),
        },
        10 => Msg::Published {
            id: i.u64()?,
            status: i.u16()?,
            body: i.string()?,
        },
        k => return Err(FormatError::Kind(k)),
    };
    if !i.0.is_empty() {
        return Err(FormatError::Invalid("bytes after the message"));
    }
    Ok(m)
}

fn read_conn(i: &mut In<'_>) -> Result<ConnSnap, FormatError> {
    let worker = i.u16()?;
    let decoder: [u8; 16] = i.take(16)?.try_into().expect("16");
    let idle_ticks = i.u32()?;
    let flags = i.u8()?;
    let pings = i.u16()?;
    let pending = i.bytes()?.to_vec();
    let message = i.bytes()?.to_vec();
    let kind = i.u8()?;
    if kind > 2 {
        return Err(FormatError::Invalid("a message kind"));
    }
    let outbound = i.bytes()?.to_vec();
    let identity = if i.flag()? {
        let user = i.opt_string()?;
        let exp = if i.flag()? { Some(i.u64()?) } else { None };
        Some(IdentitySnap {
            user,
            exp,
            grants: i.string()?,
        })
    } else {
        None
    };
    let pubsub = if i.flag()? {
        let client = i.opt_string()?;
        let stream = i.flag()?;
        let n = i.count(20)?;
        let mut subs = Vec::with_capacity(n);
        for _ in 0..n {
            subs.push(SubSnap {
                topic: i.string()?,
                epoch: i.u64()?,
                after: i.u64()?,
            });
        }
        Some(PubsubSnap {
            client,
            stream,
            subs,
        })
    } else {
        None
    };
    let tls = if i.flag()? {
        Some(TlsSnap {
            records: i.bytes()?.to_vec(),
            out: i.bytes()?.to_vec(),
        })
    } else {
        None
    };
    Ok(ConnSnap {
        tls,
        worker,
        session: SessionSnap {
            decoder,
            idle_ticks,
            flags,
            pings,
            pending,
            message,
            kind,
            outbound,
        },
        identity,
        pubsub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Msg> {
        let c = ConnSnap {
            worker: 1,
            session: SessionSnap {
                decoder: [7; 16],
                idle_ticks: 42,
                flags: 3,
                pings: 2,
                pending: vec![0x81],
                message: b"half".to_vec(),
                kind: 1,
                outbound: b"\x81\x02hi".to_vec(),
            },
            identity: Some(IdentitySnap {
                user: Some("ada".into()),
                exp: Some(99),
                grants: "s:news\n".into(),
            }),
            pubsub: Some(PubsubSnap {
                client: Some("web".into()),
                stream: false,
                subs: vec![SubSnap {
                    topic: "news".into(),
                    epoch: 0xfeed,
                    after: 17,
                }],
            }),
            tls: Some(TlsSnap {
                records: vec![2; 107],
                out: vec![23, 3, 3],
            }),
        };
        vec![
            Msg::Hello {
                version: VERSION,
                pid: 4242,
            },
            Msg::Listeners {
                data: 2,
                admin: true,
                metrics: false,
            },
            Msg::Topics(vec![TopicSnap {
                name: "news".into(),
                epoch: 1,
                last: 3,
                frames: vec![(2, vec![1, 2]), (3, vec![3])],
            }]),
            // The smallest topic there is: a one-byte name, nothing in its window (a
            // subscribed topic nobody published to). A count bound of 28 bytes a topic
            // refused it, and with it every live upgrade of a node holding such a topic.
            Msg::Topics(vec![TopicSnap {
                name: "a".into(),
                epoch: 7,
                last: 0,
                frames: vec![],
            }]),
            Msg::Ready,
            Msg::Batch {
                id: 9,
                conns: vec![c, ConnSnap::default()],
            },
            Msg::Ack { id: 9 },
            Msg::Done { moved: 12 },
            Msg::Refuse {
                reason: "no".into(),
            },
            Msg::Publish {
                id: 3,
                topic: "news".into(),
                binary: true,
                payload: vec![0, 1, 2],
            },
            Msg::Published {
                id: 3,
                status: 200,
                body: "{}".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in sample() {
            let f = encode(&m);
            assert_eq!(decode(&f), Ok(m));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for m in sample() {
            let f = encode(&m);
            for cut in 0..f.len() {
                assert!(decode(&f[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            let mut longer = f.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
        }
    }

    #[test]
    fn another_version_or_magic_is_named() {
        let mut f = encode(&Msg::Ready);
        let other = VERSION + 1;
        f[4..6].copy_from_slice(&other.to_be_bytes());
        assert_eq!(decode(&f), Err(FormatError::Version(other)));
        f[0] = b'X';
        assert_eq!(decode(&f), Err(FormatError::NotHandover));
    }

    #[test]
    fn a_forged_count_cannot_reserve_memory() {
        // A batch claiming 2^32-1 connections in a few bytes.
        let mut f = encode(&Msg::Batch {
            id: 1,
            conns: vec![],
        });
        let n = f.len();
        f[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&f), Err(FormatError::Truncated));
    }
}
