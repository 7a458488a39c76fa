//! Connections to the broker: one blocking command connection per Redis master, routed by
//! hash slot when the broker is a Redis Cluster (`CLUSTER SLOTS` at connect, again after a
//! `MOVED`), and pipelined: a batch of commands is written per master and the replies read
//! back in order, so a burst of publishes costs one round trip per master, not one each.
//!
//! Only the backplane's own thread uses these; the data plane never waits on the broker.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::resp::{self, Limits, Value};

/// Where the broker is: `redis://[:PASSWORD@]HOST:PORT[,HOST:PORT…]` (any node of a
/// cluster will do; more are tried in turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` of each seed.
    pub seeds: Vec<String>,
    /// The password for `AUTH`, if any.
    pub password: Option<String>,
}

impl Url {
    /// Parse a `redis://` URL.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{s:?}: the backplane URL must start with redis://"))?;
        let (password, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => {
                let pw = auth.strip_prefix(':').unwrap_or(auth);
                (Some(pw.to_string()).filter(|p| !p.is_empty()), hosts)
            }
            None => (None, rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let seeds: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.to_string()
                } else {
                    format!("{h}:6379")
                }
            })
            .collect();
        if seeds.is_empty() {
            return Err(format!("{s:?}: no host in the backplane URL"));
        }
        Ok(Self { seeds, password })
    }
}

/// A broker connection's failure.
#[derive(Debug)]
pub enum BrokerError {
    /// The connection failed (or timed out): the broker is unreachable until reconnected.
    Io(io::Error),
    /// The broker answered with an error to this command (the connection is fine).
    Reply(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "broker connection failed: {e}"),
            Self::Reply(e) => write!(f, "broker refused: {e}"),
        }
    }
}

impl From<io::Error> for BrokerError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn protocol(e: resp::ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// One connection to one Redis node.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// What is decoded of the value under way (`buf` holds only what follows it).
    decoder: resp::Decoder,
    limits: Limits,
    /// The node's `host:port`.
    pub addr: String,
}

/// How long a command may take before the broker counts as down.
pub const TIMEOUT: Duration = Duration::from_secs(2);

impl Conn {
    /// Connect (and `AUTH` when a password is given).
    pub fn open(addr: &str, password: Option<&str>) -> io::Result<Self> {
        let sa = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"))
        })?;
        let stream = TcpStream::connect_timeout(&sa, TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut c = Self {
            stream,
            buf: Vec::new(),
            decoder: resp::Decoder::default(),
            limits: Limits::default(),
            addr: addr.to_string(),
        };
        if let Some(pw) = password {
            if let Value::Error(e) = c.call(&[b"AUTH".as_slice(), pw.as_bytes()])? {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
            }
        }
        Ok(c)
    }

    /// The socket (for poll).
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.stream.as_raw_fd()
    }

    /// Write one command.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        let mut out = Vec::new();
        resp::encode(&mut out, args);
        self.stream.write_all(&out)
    }

    /// Write several commands at once.
    pub fn send_all(&mut self, out: &[u8]) -> io::Result<()> {
        self.stream.write_all(out)
    }

    /// Read one value, waiting up to the timeout.
    pub fn read(&mut self) -> io::Result<Value> {
        loop {
            if let Some(v) = self.decode()? {
                return Ok(v);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} closed the connection", self.addr),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whatever values have arrived, without waiting (the socket is read once if it has
    /// bytes). For subscriber connections, polled by the backplane loop.
    pub fn read_ready(&mut self, out: &mut Vec<Value>) -> io::Result<()> {
        self.stream.set_nonblocking(true)?;
        let mut chunk = [0u8; 64 * 1024];
        let r = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} closed the connection", self.addr),
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
            if self.buf.len() > 8 << 20 {
                break Ok(()); // decode what is here first
            }
        };
        self.stream.set_nonblocking(false)?;
        self.decoder
            .values(&mut self.buf, &self.limits, out)
            .map_err(protocol)?;
        r
    }

    /// The next whole value from what has been read, if it is all there.
    fn decode(&mut self) -> io::Result<Option<Value>> {
        let (v, used) = self
            .decoder
            .next(&self.buf, &self.limits)
            .map_err(protocol)?;
        self.buf.drain(..used);
        Ok(v)
    }

    /// One command and its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Value> {
        self.send(args)?;
        self.read()
    }
}

/// The broker: standalone Redis or a cluster's masters, with a command connection each.
#[derive(Debug)]
pub struct Broker {
    url: Url,
    /// Slot ranges → master address; empty for a standalone server.
    slots: Vec<(u16, u16, String)>,
    conns: HashMap<String, Conn>,
    /// The address of a standalone server (or the seed that answered).
    primary: String,
}

/// A command and the key (or channel) that decides which master runs it.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The routing key.
    pub key: Vec<u8>,
    /// The command's arguments.
    pub args: Vec<Vec<u8>>,
}

impl Cmd {
    /// A command routed by `key`.
    pub fn new(key: impl Into<Vec<u8>>, args: Vec<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            args,
        }
    }
}

/// A command's argument from anything byte-like.
pub fn arg(a: impl AsRef<[u8]>) -> Vec<u8> {
    a.as_ref().to_vec()
}

impl Broker {
    /// Connect to the first seed that answers, and learn whether it is a cluster.
    pub fn connect(url: &Url) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no seed");
        for seed in &url.seeds {
            match Conn::open(seed, url.password.as_deref()) {
                Ok(c) => {
                    let mut b = Self {
                        url: url.clone(),
                        slots: Vec::new(),
                        conns: HashMap::new(),
                        primary: seed.clone(),
                    };
                    b.conns.insert(seed.clone(), c);
                    b.refresh()?;
                    return Ok(b);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether the broker is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Ask for the slot map again (after a `MOVED`, or at connect).
    pub fn refresh(&mut self) -> io::Result<()> {
        let primary = self.primary.clone();
        let reply = self.conn(&primary)?.call(&["CLUSTER", "SLOTS"])?;
        let Value::Array(Some(ranges)) = reply else {
            // "ERR This instance has cluster support disabled": a standalone server.
            self.slots.clear();
            return Ok(());
        };
        let mut slots = Vec::new();
        for r in &ranges {
            let items = r.items().unwrap_or(&[]);
            let (Some(a), Some(b), Some(master)) = (
                items.first().and_then(Value::int),
                items.get(1).and_then(Value::int),
                items.get(2).and_then(Value::items),
            ) else {
                continue;
            };
            let host = master.first().and_then(Value::text).unwrap_or("127.0.0.1");
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            let Some(port) = master.get(1).and_then(Value::int) else {
                continue;
            };
            slots.push((a as u16, b as u16, format!("{host}:{port}")));
        }
        slots.sort();
        self.slots = slots;
        Ok(())
    }

    /// The masters' addresses.
    pub fn masters(&self) -> Vec<String> {
        if self.slots.is_empty() {
            return vec![self.primary.clone()];
        }
        let mut m: Vec<String> = self.slots.iter().map(|s| s.2.clone()).collect();
        m.sort();
        m.dedup();
        m
    }

    /// The address of the master that owns `key`.
    pub fn owner(&self, key: &[u8]) -> String {
        if self.slots.is_empty() {
            return self.primary.clone();
        }
        let s = resp::slot(key);
        self.slots
            .iter()
            .find(|(a, b, _)| *a <= s && s <= *b)
            .map_or_else(|| self.primary.clone(), |r| r.2.clone())
    }

    /// The command connection to `addr`, opened if needed.
    pub fn conn(&mut self, addr: &str) -> io::Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::open(addr, self.url.password.as_deref())?;
            self.conns.insert(addr.to_string(), c);
        }
        Ok(self.conns.get_mut(addr).expect("just inserted"))
    }

    /// Open a new (subscriber) connection to `addr`.
    pub fn open(&self, addr: &str) -> io::Result<Conn> {
        Conn::open(addr, self.url.password.as_deref())
    }

    /// Run `cmds`, pipelined per master; replies in the order of `cmds`. A `MOVED` reply
    /// refreshes the slot map and the command is run once more where it now lives. An I/O
    /// failure fails the whole batch (the caller reconnects).
    pub fn run(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, BrokerError> {
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in cmds.iter().enumerate() {
            groups.entry(self.owner(&c.key)).or_default().push(i);
        }
        let mut moved = Vec::new();
        for (addr, idx) in groups {
            let mut out = Vec::new();
            for &i in &idx {
                resp::encode(&mut out, &cmds[i].args);
            }
            let conn = self.conn(&addr)?;
            if let Err(e) = conn.send_all(&out) {
                self.conns.remove(&addr);
                return Err(e.into());
            }
            for &i in &idx {
                let v = match self.conn(&addr)?.read() {
                    Ok(v) => v,
                    Err(e) => {
                        self.conns.remove(&addr);
                        return Err(e.into());
                    }
                };
                if matches!(&v, Value::Error(e) if e.starts_with("MOVED") || e.starts_with("ASK")) {
                    moved.push(i);
                }
                replies[i] = Some(v);
            }
        }
        if !moved.is_empty() {
            self.refresh()?;
            for i in moved {
                let addr = self.owner(&cmds[i].key);
                let v = self.conn(&addr)?.call(&cmds[i].args)?;
                replies[i] = Some(v);
            }
        }
        Ok(replies
            .into_iter()
            .map(|v| v.unwrap_or(Value::Bulk(None)))
            .collect())
    }

    /// One command routed by `key`; an error reply is a [`BrokerError::Reply`].
    pub fn call(&mut self, cmd: Cmd) -> Result<Value, BrokerError> {
        let v = self
            .run(std::slice::from_ref(&cmd))?
            .pop()
            .unwrap_or(Value::Bulk(None));
        match v {
            Value::Error(e) => Err(BrokerError::Reply(e)),
            v => Ok(v),
        }
    }

    /// Run `args` on every master (loading the function library).
    pub fn on_masters(&mut self, args: &[Vec<u8>]) -> Result<(), BrokerError> {
        for m in self.masters() {
            if let Value::Error(e) = self.conn(&m)?.call(args)? {
                return Err(BrokerError::Reply(format!("{m}: {e}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_seeds_and_a_password() {
        let u = Url::parse("redis://127.0.0.1:7001,127.0.0.2").unwrap();
        assert_eq!(u.seeds, ["127.0.0.1:7001", "127.0.0.2:6379"]);
        assert_eq!(u.password, None);
        let u = Url::parse("redis://:s3cret@localhost:6380/").unwrap();
        assert_eq!(
            (u.seeds[0].as_str(), u.password.as_deref()),
            ("localhost:6380", Some("s3cret"))
        );
        assert!(Url::parse("http://x").is_err());
        assert!(Url::parse("redis://").is_err());
    }
}
