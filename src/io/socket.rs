//! One connection's io state (8 bytes) and the machines that drive it: keeping the read side
//! armed in either [`ReadMode`], one send at a time, and shutdown-then-close. The server and
//! the load generator both drive their connections through this; neither encodes an
//! operation of its own.
//!
//! # Reading
//! In [`ReadMode::Poll`] an idle socket keeps only a multishot POLLIN armed (~258 B of kernel
//! memory); readiness triggers one non-blocking receive into a provided buffer, repeated
//! while the buffer came back full, while readiness was reported during the receive, or
//! until EOF once the poll saw the peer's FIN (data and FIN can arrive in one wake-up, and
//! no further wake-up announces the FIN once the data is taken). [`ReadMode::PollOnce`] reads
//! the same way from a single-shot POLLIN, armed again when the input is handled
//! ([`Socket::resume`]): nothing is armed at a close that follows the socket's own input.
//! In [`ReadMode::Recv`] a multishot receive stays armed (~865 B) and every read is one
//! completion.
//!
//! The owner feeds each completion to [`Socket::on_poll`] / [`Socket::on_recv`], handles
//! the [`Read`] it gets, then calls [`Socket::resume`] with whether it still wants input.
//!
//! # Closing
//! [`Socket::close`] ends the armed multishot (poll removal or receive cancellation), then
//! closes the direct descriptor; the socket goes with its last reference. Only while a send
//! is in flight (it may be waiting for room the peer never makes) does a `shutdown(SHUT_RDWR)`
//! come first, hard-linked to the close, so the shutdown (which the kernel runs on a worker
//! thread and which looks the slot up only when it runs) can never hit the *next* socket
//! placed in the slot; a `shutdown(SHUT_WR)` still in flight is waited for first, for the
//! same reason. The owner releases its entry when the `Op::Close` completion arrives;
//! completions that come later carry a stale generation and are dropped by the owner (their
//! buffers go back to the ring on drop).

use super::bufring::RecvBuf;
use super::ring::{Completion, Extra, Ring, SendBuf};
use super::token::{Op, Token};

/// What each connection keeps armed in the kernel to learn that it has input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A multishot POLLIN (~258 B of kernel memory per connection); on readiness a
    /// single-shot receive takes a provided buffer. One more completion per read.
    Poll,
    /// A multishot receive (~865 B per connection); one completion per read.
    Recv,
    /// A single-shot POLLIN, armed again once the input it announced is read and handled
    /// (the same ~258 B while armed). One more submission per read than [`Self::Poll`], but
    /// a connection that ends on its own input (the peer's Close, EOF) has nothing armed at
    /// its close: no poll removal, whose lookup walks a bucket of the ring's cancel hash (at
    /// most 256 buckets whatever the ring's size). The two poll modes differ only in what
    /// [`Socket::arm`] submits, so an owner may choose per arming: the server arms single-shot
    /// until a connection sends its first message, multishot after.
    PollOnce,
}

impl ReadMode {
    /// Whether readiness comes from a poll (then one single-shot receive per readiness).
    pub const fn polls(self) -> bool {
        matches!(self, Self::Poll | Self::PollOnce)
    }

    /// The poll to arm on a connection that has (`active`) or has not yet sent a message:
    /// single-shot until then, so that one which ends on its own input (the peer's Close or
    /// EOF: a storm, a client's close) has nothing to remove at its close; multishot after,
    /// so that a busy one is not armed again per read. [`Self::Recv`] stays itself.
    pub const fn arming(self, active: bool) -> Self {
        match self {
            Self::Poll | Self::PollOnce if active => Self::Poll,
            Self::Poll | Self::PollOnce => Self::PollOnce,
            Self::Recv => Self::Recv,
        }
    }
}

/// The read-side multishot (poll or receive) is armed.
const ARMED: u8 = 1 << 0;
/// Poll mode: a single-shot receive is in flight.
const INFLIGHT: u8 = 1 << 1;
/// Poll mode: receive again when the current one completes (readiness came meanwhile, the
/// buffer came back full, or the peer's FIN is pending).
const AGAIN: u8 = 1 << 2;
/// Poll mode: the poll saw the peer's FIN: keep receiving until EOF.
const HUP: u8 = 1 << 3;
/// A send is in flight.
const SENDING: u8 = 1 << 4;
/// A shutdown(SHUT_WR) is in flight.
const SHUTTING: u8 = 1 << 5;
/// The owner asked to close; the close chain waits for `SHUTTING` to clear.
const CLOSING: u8 = 1 << 6;
/// The close (or the shutdown → close chain) is submitted.
const CLOSED: u8 = 1 << 7;
/// Once `CLOSING` is set: close with a reset (SO_LINGER 0). Shares `HUP`'s bit, which only
/// matters while the socket still reads (every read path checks `closing()` first).
const RESET: u8 = HUP;

/// Slots per ring a [`Socket`] can name (a ring's file table is capped by RLIMIT_NOFILE).
pub const MAX_SLOTS: u32 = 1 << 20;
/// Rings per worker a [`Socket`] can name.
pub const MAX_RINGS: usize = 1 << 12;

/// One connection's socket: which ring and slot hold it, its generation (which tells its
/// completions from those of an earlier socket in the same owner entry) and what is in
/// flight on it, in 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// `ring << 20 | slot`.
    place: u32,
    /// `generation << 8 | flags` (24 bits of generation, as in a [`Token`]).
    meta: u32,
}

const _: () = assert!(std::mem::size_of::<Socket>() == 8);

/// What a read completion means for the owner.
#[derive(Debug)]
pub enum Read {
    /// Bytes arrived: hand them to the session, then call [`Socket::resume`].
    Data(RecvBuf),
    /// The peer closed (0) or the socket failed (a negative errno): input is over.
    End(i32),
    /// Nothing for the owner (re-armed, retried, or waiting for readiness).
    Nothing,
}

impl Socket {
    /// The socket in `slot` of ring `ring`, owned at `generation`, nothing in flight.
    pub fn new(ring: usize, slot: u32, generation: u32) -> Self {
        assert!(
            ring < MAX_RINGS && slot < MAX_SLOTS,
            "socket place out of range"
        );
        Self {
            place: (ring as u32) << 20 | slot,
            meta: (generation & Token::GENERATION_MASK) << 8,
        }
    }

    /// Its slot in the ring's file table.
    pub const fn slot(&self) -> u32 {
        self.place & (MAX_SLOTS - 1)
    }

    /// Which of the owner's rings holds it.
    pub const fn ring(&self) -> usize {
        (self.place >> 20) as usize
    }

    /// The generation its operations are tagged with.
    pub const fn generation(&self) -> u32 {
        self.meta >> 8
    }

    /// Whether `tok` was issued for this socket (not an earlier one of the same entry).
    pub const fn owns(&self, tok: Token) -> bool {
        tok.is_for(self.generation())
    }

    /// The token for `op` on this socket of owner entry `index`.
    pub const fn token(&self, op: Op, index: u32) -> Token {
        Token::new(op, index, self.generation())
    }

    const fn flags(&self) -> u8 {
        self.meta as u8
    }

    fn set(&mut self, f: u8) {
        self.meta |= u32::from(f);
    }

    fn clear(&mut self, f: u8) {
        self.meta &= !u32::from(f);
    }

    /// Whether a send is in flight (the next waits for its completion).
    pub const fn sending(&self) -> bool {
        self.flags() & SENDING != 0
    }

    /// Whether a receive may take input without being asked again: one in flight or, in
    /// [`ReadMode::Recv`], the armed multishot. An armed poll only announces input, so a
    /// poll-mode socket whose owner stopped receiving ([`Socket::pause`]) is not receiving
    /// once its last receive completed, though its poll is still armed.
    pub const fn receiving(&self, mode: ReadMode) -> bool {
        match mode {
            ReadMode::Poll | ReadMode::PollOnce => self.flags() & INFLIGHT != 0,
            ReadMode::Recv => self.flags() & (ARMED | INFLIGHT) != 0,
        }
    }

    /// The token of its armed poll (poll mode), which outlives the socket's entry when a
    /// hand-over passes the socket on: the owner removes it later by this token.
    pub const fn armed_poll(&self, mode: ReadMode, index: u32) -> Option<Token> {
        match mode {
            ReadMode::Poll | ReadMode::PollOnce if self.flags() & ARMED != 0 => {
                Some(self.token(Op::Poll, index))
            }
            _ => None,
        }
    }

    /// Whether a close was asked for.
    pub const fn closing(&self) -> bool {
        self.flags() & (CLOSING | CLOSED) != 0
    }

    // ------------------------------------------------------------------ reading

    /// Arm the read side (after the socket is accepted or connected).
    pub fn arm(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32) {
        if self.flags() & (ARMED | CLOSING | CLOSED) != 0 {
            return;
        }
        self.set(ARMED);
        match mode {
            ReadMode::Poll => ring.poll_socket(self.slot(), self.token(Op::Poll, idx)),
            ReadMode::PollOnce => ring.poll_socket_once(self.slot(), self.token(Op::Poll, idx)),
            ReadMode::Recv => ring.recv_multi(self.slot(), self.token(Op::Recv, idx)),
        }
    }

    /// Start reading a socket whose first bytes are expected to be there already (one
    /// accepted from a listener that defers accept until the client's first bytes come): in
    /// a poll mode, one non-blocking receive now instead of a poll that would report those
    /// bytes at once. It finds them, or EAGAIN (a connection the kernel handed over without
    /// them: its deferral ran out, or SYN cookies completed it); either way the owner's
    /// [`Socket::resume`] after the completion arms the poll as [`Socket::arm`] would have.
    /// In [`ReadMode::Recv`] this is [`Socket::arm`].
    pub fn read_first(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32) {
        if !mode.polls() {
            return self.arm(ring, mode, idx);
        }
        if self.flags() & (ARMED | INFLIGHT | CLOSING | CLOSED) != 0 {
            return;
        }
        self.recv_once(ring, idx);
    }

    /// Poll mode: receive once now, or as soon as the receive in flight completes.
    fn recv_once(&mut self, ring: &mut Ring, idx: u32) {
        if self.flags() & INFLIGHT != 0 {
            self.set(AGAIN);
            return;
        }
        self.clear(AGAIN);
        self.set(INFLIGHT);
        ring.recv_once(self.slot(), self.token(Op::Recv, idx));
    }

    /// A completion of the armed poll. `wants_input`: whether the owner still reads.
    pub fn on_poll(
        &mut self,
        ring: &mut Ring,
        mode: ReadMode,
        c: &Completion,
        idx: u32,
        wants_input: bool,
    ) {
        let more = c.more();
        if !more {
            self.clear(ARMED);
        }
        if self.closing() {
            return;
        }
        let ready = if c.res < 0 {
            // The socket failed: let a receive report how.
            c.res != -libc::ECANCELED
        } else {
            if c.res & i32::from(libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                self.set(HUP);
            }
            c.res > 0
        };
        if ready && wants_input {
            self.recv_once(ring, idx);
        } else if ready {
            // Paused: the input waits in the kernel, and no further event may announce it
            // (the poll reports changes): [`Socket::resume`] receives it.
            self.set(AGAIN);
        }
        // A poll that ended (a single-shot one, or a multishot the kernel could not post
        // for) is armed again once the input it announced is read ([`Socket::resume`]), or
        // now if it announced nothing (the readiness was taken meanwhile).
        if !more && !ready && wants_input && c.res >= 0 {
            self.arm(ring, mode, idx);
        }
    }

    /// A receive completion (`c` is consumed: its buffer becomes the owner's). Call
    /// [`Socket::resume`] after handling what it returns, whatever that is.
    pub fn on_recv(&mut self, mode: ReadMode, c: Completion) -> Read {
        match mode {
            ReadMode::Poll | ReadMode::PollOnce => self.clear(INFLIGHT),
            ReadMode::Recv if !c.more() => self.clear(ARMED),
            ReadMode::Recv => {}
        }
        if self.closing() {
            return Read::Nothing;
        }
        if c.res > 0 {
            let Extra::Recv(buf) = c.extra else {
                return Read::Nothing;
            };
            if mode.polls() && (buf.is_full() || self.flags() & HUP != 0) {
                // There may be more waiting, with no further poll event to say so.
                self.set(AGAIN);
            }
            return Read::Data(buf);
        }
        match -c.res {
            // Nothing (more) to read: the armed poll announces the next input, unless
            // readiness came while this receive was in flight (AGAIN is set then).
            libc::EAGAIN if mode.polls() => Read::Nothing,
            // The armed receive was cancelled on purpose (a hand-over pauses reading).
            libc::ECANCELED => Read::Nothing,
            libc::ENOBUFS => {
                // Every provided buffer was in use (buffers go back as each completion is
                // handled): ask again.
                if mode.polls() {
                    self.set(AGAIN);
                }
                Read::Nothing
            }
            _ => Read::End(c.res),
        }
    }

    /// After handling a [`Read`]: keep reading if the owner wants input.
    pub fn resume(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32, wants_input: bool) {
        if self.closing() || !wants_input {
            return;
        }
        match mode {
            ReadMode::Poll | ReadMode::PollOnce if self.flags() & (AGAIN | INFLIGHT) == AGAIN => {
                self.recv_once(ring, idx);
            }
            // Read and handled, nothing more known to be waiting: a poll that ended is armed
            // again (a multishot one still armed stays as it is).
            ReadMode::Poll | ReadMode::PollOnce if self.flags() & INFLIGHT == 0 => {
                self.arm(ring, mode, idx);
            }
            ReadMode::Recv => self.arm(ring, mode, idx),
            ReadMode::Poll | ReadMode::PollOnce => {}
        }
    }

    /// Stop reading (a hand-over). The owner stops receiving: it passes `wants_input =
    /// false` to [`Socket::on_poll`] and [`Socket::resume`] from now on. In receive mode the
    /// armed multishot is cancelled (it would take input); in poll mode nothing is submitted:
    /// the poll stays armed, since removing one walks the ring's cancel hash bucket (a
    /// quarter of the old process's time in a hand-over of 200k connections), and readiness
    /// it reports meanwhile is kept for [`Socket::resume`]. The read side takes no input once
    /// [`Socket::receiving`] is false; [`Socket::arm`] then [`Socket::resume`] with
    /// `wants_input` start it again.
    pub fn pause(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32) {
        if self.flags() & ARMED == 0 || self.closing() {
            return;
        }
        match mode {
            ReadMode::Poll | ReadMode::PollOnce => {}
            ReadMode::Recv => ring.cancel(self.token(Op::Recv, idx)),
        }
    }

    // ------------------------------------------------------------------ sending

    /// Send `buf` (the ring owns it until the completion). One send at a time: callers
    /// queue behind [`Socket::sending`].
    pub fn send(&mut self, ring: &mut Ring, buf: SendBuf, idx: u32) {
        debug_assert!(!self.sending(), "one send at a time");
        self.set(SENDING);
        ring.send(self.slot(), buf, self.token(Op::Send, idx));
    }

    /// The send completed (the ring resubmitted short sends; its result is all it sent or
    /// the error that stopped it).
    pub fn on_sent(&mut self) {
        self.clear(SENDING);
    }

    // ------------------------------------------------------------------ closing

    /// Send our FIN (our last bytes are out) and keep reading until the peer closes.
    pub fn shutdown_write(&mut self, ring: &mut Ring, idx: u32) {
        if self.closing() || self.flags() & SHUTTING != 0 {
            return;
        }
        self.set(SHUTTING);
        ring.shutdown(self.slot(), libc::SHUT_WR, self.token(Op::Shutdown, idx));
    }

    /// A shutdown completed: ours from [`Socket::shutdown_write`], or the first link of the
    /// close chain.
    pub fn on_shutdown(&mut self, ring: &mut Ring, idx: u32) {
        if self.flags() & CLOSED == 0 {
            self.clear(SHUTTING);
            self.close_now(ring, idx);
        }
    }

    /// Close: end the armed multishot, then close (after any shutdown in flight; shutdown →
    /// close while a send is in flight).
    /// Idempotent. The owner releases its entry on the `Op::Close` completion.
    pub fn close(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32) {
        self.end(ring, mode, idx, false);
    }

    /// Abort: like [`Socket::close`], but the close resets the connection (SO_LINGER 0) and
    /// drops what is unsent — for a peer that stopped reading, whose socket would otherwise
    /// outlive the close with its send buffer full.
    pub fn abort(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32) {
        self.end(ring, mode, idx, true);
    }

    fn end(&mut self, ring: &mut Ring, mode: ReadMode, idx: u32, reset: bool) {
        if self.closing() {
            return;
        }
        self.clear(HUP);
        self.set(CLOSING);
        if reset {
            self.set(RESET);
        }
        if self.flags() & ARMED != 0 {
            // The armed multishot holds the file and would outlive the close: end it (its
            // last completion comes with ECANCELED, or carries data nobody reads).
            match mode {
                ReadMode::Poll | ReadMode::PollOnce => {
                    ring.poll_remove(self.token(Op::Poll, idx));
                }
                ReadMode::Recv => ring.cancel(self.token(Op::Recv, idx)),
            }
        }
        self.close_now(ring, idx);
    }

    fn close_now(&mut self, ring: &mut Ring, idx: u32) {
        if self.flags() & (CLOSING | SHUTTING | CLOSED) != CLOSING {
            return;
        }
        self.set(CLOSED);
        if self.flags() & RESET != 0 {
            ring.abort_close(self.slot(), self.token(Op::Close, idx));
        } else if self.flags() & SENDING != 0 {
            // A send waiting for room would hold the socket open past the close for as long
            // as the peer does not read: the shutdown fails it (EPIPE) first.
            ring.shutdown_close(self.slot(), self.token(Op::Close, idx));
        } else {
            // Nothing else holds the socket once the read side's multishot is gone (its
            // cancellation runs on this ring's next enter, and the socket is released with
            // its last reference, FIN or RST as close(2) decides). A shutdown first would
            // cost an io-wq thread per close: the kernel always runs it there.
            ring.close(self.slot(), self.token(Op::Close, idx));
        }
    }
}
