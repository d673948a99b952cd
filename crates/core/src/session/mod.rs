//! The call session: a sans-IO state machine over the control stream.
//!
//! It owns no socket and reads no clock. The driver feeds it the bytes read from the control
//! stream ([`Session::handle_stream_data`]), the passage of time ([`Session::handle_timeout`])
//! and the user's decisions ([`Session::accept`], [`Session::hangup`], ...). After every
//! input the driver drains [`Session::poll_transmit`] (bytes to write to the stream) and
//! [`Session::poll_event`] (what to show the user), then sleeps until
//! [`Session::poll_timeout`].
//!
//! ```text
//!  caller:  Handshake ──Hello──► Calling ──Ringing──► Calling(ringing) ──Accept──► Active
//!  callee:  Handshake ──Hello──► AwaitRing ──Ring──► Incoming ──accept()──► Active
//!  any state ──hangup / Hangup / timeout / protocol error──► Ended
//!  Active ──nothing heard for `stall_after`, or the connection lost──► Active(reconnecting)
//!         ──Resume/Resumed on a new connection, or the old path answers──► Active
//!         ──`reconnect_window` over──► Ended
//! ```
//!
//! **Reconnecting.** When both sides offered [`caps::RESUME`], a call that is up does not end
//! when its path goes dark: after [`SessionConfig::stall_after`] without a word from the peer
//! (the driver also reports packets the transport heard, [`Session::note_heard`]), or when
//! the connection is lost, both ends say [`Event::Reconnecting`] and keep the call. The
//! caller dials again and, on a new connection, sends `Resume` with the lost connection's
//! exporter ([`RESUME_EXPORTER_LABEL`]) before anything else ([`Session::resume_as_caller`]);
//! the callee's node reads it first on that connection ([`Event::ResumeRequested`]), hands
//! the connection to the call it names, which answers `Resumed`
//! ([`Session::resume_as_callee`]). Either way the call says [`Event::Reconnected`]; after
//! [`SessionConfig::reconnect_window`] it ends with [`EndReason::PeerVanished`].
//!
//! **Verification code.** With [`Session::begin_verification`] (the driver always calls it),
//! the caller commits to a nonce in its first flight; the callee sends its own nonce only
//! once it alerts (so every attempt to learn a code rings); the caller reveals (see
//! [`crate::sas`]). The caller takes no `Ringing` or `Accept` before the code is settled; the
//! callee's user sees it a round trip after the ring starts ([`Event::VerificationCode`]).
//!
//! **Refusing tells nothing.** A callee that declines, is busy, or whose policy refuses the
//! caller sends no refusal: the call goes on *quietly* ([`Session::is_quiet`]): over for the
//! user at once, but on the wire exactly a ringing device that nobody picks up (`Ringing`,
//! the code's nonce, pings, the same answers to violations) until the ring times out and it
//! says "no answer".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::{
    caps, Decoded, FrameDecoder, HangupReason, Message, MAX_CHAT_BYTES, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

#[cfg(test)]
mod tests;

/// The TLS exporter label of the token that names a call when it resumes on a new
/// connection (`Message::Resume`).
pub const RESUME_EXPORTER_LABEL: &[u8] = b"EXTRA SAFE call resume v1";

/// Which end of the call this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection and rings.
    Caller,
    /// Accepted the connection and is rung.
    Callee,
}

/// Timers of a session. The defaults suit calls over the open internet.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How long a call may ring unanswered.
    pub ring_timeout: Duration,
    /// How long the peer has to send `Hello` (and the callee to get `Ring`) after the
    /// session starts. Stops connections that hold a slot and say nothing.
    pub hello_timeout: Duration,
    /// Send a ping when nothing was sent for this long. Below the ~30 s after which many
    /// NATs forget an idle UDP mapping.
    pub keepalive_interval: Duration,
    /// Declare the peer gone when nothing was received for this long (a call that can
    /// resume reconnects instead: see `stall_after`).
    pub idle_timeout: Duration,
    /// While a call that can resume is up: ping this often, so a dark path is seen soon.
    pub call_ping_interval: Duration,
    /// While a call that can resume is up: nothing heard from the peer, or a ping left
    /// unanswered, for this long, and the call is reconnecting.
    pub stall_after: Duration,
    /// How long a reconnecting call waits for a path back before it ends. Zero: never
    /// reconnect (the call ends after `idle_timeout`, as with a peer that cannot resume).
    pub reconnect_window: Duration,
    /// Capability bits offered.
    pub capabilities: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            call_ping_interval: Duration::from_secs(1),
            stall_after: Duration::from_secs(4),
            reconnect_window: Duration::from_secs(90),
            capabilities: caps::CHAT | caps::RESUME,
        }
    }
}

/// How the peer broke the protocol: what the transport's close code is chosen from, and
/// what a front end words for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The control stream did not decode (the text says how).
    Malformed(String),
    /// A message the call's state does not allow.
    Unexpected {
        /// Which message.
        what: &'static str,
        /// The state the call was in.
        state: &'static str,
    },
    /// The verification nonce did not open the commitment the peer sent before it.
    Commitment,
    /// The peer opened a stream it may not open.
    ExtraStream,
    /// The peer stopped reading the control stream while the connection stayed up.
    StoppedReading,
    /// The peer did not start the call in time (a connection that stays silent).
    Silent,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => f.write_str(why),
            Self::Unexpected { what, state } => write!(f, "unexpected {what} while {state}"),
            Self::Commitment => f.write_str("the verification nonce does not open its commitment"),
            Self::ExtraStream => f.write_str("opened an extra stream"),
            Self::StoppedReading => f.write_str("stopped reading the control stream"),
            Self::Silent => f.write_str("the peer did not start the call in time"),
        }
    }
}

/// A stream the peer opened on the call's connection, besides the control stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStream {
    /// Both ways (a file transfer, once the call is up).
    Bidirectional,
    /// One way (never part of the protocol).
    Unidirectional,
}

/// What becomes of a stream the peer opened ([`Session::admit_stream`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamAdmission {
    /// A file transfer: its first bytes are an offer.
    Transfer,
    /// Refused: it broke the protocol, and the call ends.
    Refused,
}

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// We hung up.
    LocalHangup,
    /// The peer hung up.
    RemoteHangup,
    /// The callee declined (or its policy did). Nothing else is learned.
    Declined,
    /// We declined the incoming call.
    DeclinedLocally,
    /// The callee is in another call.
    Busy,
    /// We told the caller we are busy.
    RejectedBusy,
    /// The ring timed out (on either side).
    NoAnswer,
    /// Nothing heard from the peer within the idle timeout, or the connection vanished.
    PeerVanished,
    /// The peer broke the protocol, in this way.
    ProtocolError(Violation),
    /// The peer ended the call because of an error on its side.
    RemoteError(HangupReason),
    /// No protocol version in common.
    IncompatibleVersion {
        /// The peer's highest version.
        peer_max: u16,
        /// The peer's lowest accepted version.
        peer_min: u16,
    },
    /// We shut down.
    Shutdown,
}

/// Something the user should learn about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The verification code is settled: both ends show these digits (`123 456`).
    VerificationCode(String),
    /// Callee: the peer is ringing us. Decide with `accept`, `decline` or `busy`.
    IncomingCall {
        /// Capabilities the caller asked for.
        media: u64,
    },
    /// Caller: the callee's device is alerting.
    Ringing,
    /// The call is up on both ends.
    Connected,
    /// The call's path went dark (or its connection was lost): the call is kept while a new
    /// path is sought, for up to [`SessionConfig::reconnect_window`]. Caller: dial again and
    /// call [`Session::resume_as_caller`] on the new connection.
    Reconnecting,
    /// The call has a path again (the old one came back, or it resumed on a new connection).
    Reconnected,
    /// Callee, on a new connection: the peer asks to carry on the call this token names
    /// (instead of a `Hello`). Hand the connection to that call (which then calls
    /// [`Session::resume_as_callee`]), or, if there is none, [`Session::refuse_resume`].
    ResumeRequested([u8; 32]),
    /// A chat line from the peer, in order and without duplicates.
    Chat {
        /// Sender's sequence number.
        id: u64,
        /// Raw text; pass it through [`crate::text::for_display`] before printing.
        text: String,
    },
    /// The peer told us the address our packets reach it from (once per session).
    Observed(std::net::SocketAddr),
    /// While the call is up: the checks of the rendezvous roots the peer holds for this pair
    /// (once per session; see `crate::inbox::RootState`).
    PairChecks(Vec<[u8; 8]>),
    /// While the call is up: the peer stored the pair's new root, whose check this is (once
    /// per session).
    PairStored([u8; 8]),
    /// While the call is up: the peer's inbox chain (once per session).
    InboxChain(crate::inbox::InboxChain),
    /// The session is over; nothing more will happen.
    Ended(EndReason),
}

/// A request the session cannot honour in its current state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The call is not (or no longer) in a state that allows this.
    #[error("not possible now: the call is {0}")]
    WrongState(&'static str),
    /// A chat line over [`MAX_CHAT_BYTES`].
    #[error("message too long (at most {MAX_CHAT_BYTES} bytes)")]
    ChatTooLong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Calling { ringing: bool },
    AwaitRing,
    Incoming { alerted: bool },
    Active,
    Ended,
}

/// Where the verification code stands.
#[derive(Debug)]
enum Sas {
    /// Not asked for (sessions driven without a TLS exporter, as in unit tests).
    Off,
    /// Caller: committed to `nonce`.
    Committed { exporter: [u8; 32], nonce: [u8; 32] },
    /// Callee: waiting for the caller's commitment.
    AwaitCommit { exporter: [u8; 32], nonce: [u8; 32] },
    /// Callee: holds the commitment; sends its nonce once it alerts.
    AwaitReveal {
        exporter: [u8; 32],
        nonce: [u8; 32],
        commit: [u8; 32],
        sent: bool,
    },
    /// Settled.
    Done(String),
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Handshake | State::AwaitRing => "still connecting",
            State::Calling { .. } => "ringing",
            State::Incoming { .. } => "waiting for an answer",
            State::Active => "active",
            State::Ended => "over",
        }
    }
}

/// Counters for things the session tolerated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Optional messages of unknown type skipped.
    pub skipped_unknown: u64,
    /// Chat lines dropped because no call was active, or repeated.
    pub dropped_chat: u64,
    /// Pings sent.
    pub pings_sent: u64,
}

/// The call state machine. See the module docs for the driving contract.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: SessionConfig,
    state: State,
    started: Instant,
    ring_deadline: Option<Instant>,
    last_rx: Instant,
    last_tx: Instant,
    decoder: FrameDecoder,
    out: Vec<u8>,
    events: VecDeque<Event>,
    next_chat_id: u64,
    last_peer_chat_id: Option<u64>,
    /// The peer's observed-address message was heard.
    observed_heard: bool,
    pair_checks_heard: bool,
    pair_stored_heard: bool,
    inbox_heard: bool,
    ping: Option<(u64, Instant)>,
    next_ping_nonce: u64,
    rtt: Option<Duration>,
    peer_version: Option<u16>,
    peer_capabilities: u64,
    stats: SessionStats,
    sas: Sas,
    /// Callee: refused; the user was told, the wire still looks like ringing.
    quiet: bool,
    /// When the transport last heard the peer (stream data, or packets it reported).
    last_heard: Instant,
    /// Reconnecting since then.
    stalled: Option<Instant>,
    /// Caller: `Resume` went out on a new connection; waiting for `Resumed`.
    resume_sent: bool,
    /// Caller: past this, the answer to `Resume` is overdue and another connection is
    /// worth trying (a late `Resumed` on this one is still taken).
    resume_deadline: Option<Instant>,
    /// Callee, after a `Resume`: the frames that followed it in the same read, for the
    /// call it names (`Session::take_leftover`).
    leftover: Vec<u8>,
    /// Callee: our `Hello` waits for the peer's first message (which may be a `Resume`).
    hello_due: bool,
    /// Callee: the observed address to tell right after our `Hello`.
    observed_due: Option<std::net::SocketAddr>,
    /// Callee: this connection asked to resume another call; nothing more is read.
    resume_asked: bool,
}

impl Session {
    /// Starts a session. The caller's `Hello` and `Ring` are queued at once, so they leave in
    /// the same flight as the end of the TLS handshake.
    pub fn new(role: Role, mut config: SessionConfig, now: Instant) -> Self {
        // A session that will not reconnect does not offer to.
        if config.reconnect_window.is_zero() {
            config.capabilities &= !caps::RESUME;
        }
        let mut s = Self {
            role,
            state: State::Handshake,
            started: now,
            ring_deadline: None,
            last_rx: now,
            last_tx: now,
            decoder: FrameDecoder::default(),
            out: Vec::new(),
            events: VecDeque::new(),
            next_chat_id: 0,
            last_peer_chat_id: None,
            observed_heard: false,
            pair_checks_heard: false,
            pair_stored_heard: false,
            inbox_heard: false,
            ping: None,
            next_ping_nonce: 1,
            rtt: None,
            peer_version: None,
            peer_capabilities: 0,
            stats: SessionStats::default(),
            sas: Sas::Off,
            quiet: false,
            last_heard: now,
            stalled: None,
            resume_sent: false,
            resume_deadline: None,
            leftover: Vec::new(),
            hello_due: role == Role::Callee,
            observed_due: None,
            resume_asked: false,
            config,
        };
        // The callee answers the caller's first message: a `Hello`, or a `Resume` that hands
        // this connection to another call (which must not read a `Hello` of ours).
        if role == Role::Caller {
            s.send_hello(now);
            s.send(
                now,
                Message::Ring {
                    media: s.config.capabilities,
                },
            );
            s.ring_deadline = Some(now + s.config.ring_timeout);
        }
        s
    }

    /// Starts the verification code: `exporter` from this connection's TLS exporter
    /// ([`crate::sas::SAS_EXPORTER_LABEL`]), `nonce` 32 fresh random bytes. Call it right after
    /// [`Session::new`]; from then on the code must be settled before the call can ring.
    pub fn begin_verification(&mut self, now: Instant, exporter: [u8; 32], nonce: [u8; 32]) {
        if !matches!(self.sas, Sas::Off) || self.state == State::Ended {
            return;
        }
        match self.role {
            Role::Caller => {
                let commit = crate::sas::sas_commit(&exporter, &nonce);
                self.send(now, Message::SasCommit { commit });
                self.sas = Sas::Committed { exporter, nonce };
            }
            Role::Callee => self.sas = Sas::AwaitCommit { exporter, nonce },
        }
    }

    /// The verification code, once settled.
    pub fn verification_code(&self) -> Option<&str> {
        match &self.sas {
            Sas::Done(code) => Some(code),
            _ => None,
        }
    }

    /// False while a code was asked for and is not settled.
    fn code_ready(&self) -> bool {
        matches!(self.sas, Sas::Off | Sas::Done(_))
    }

    // ---- getters ----

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// True once the call is up and not yet over (reconnecting included).
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }
    /// True while the call is up but has no path: see [`Event::Reconnecting`].
    pub fn is_reconnecting(&self) -> bool {
        self.state == State::Active && self.stalled.is_some()
    }
    /// Caller: `Resume` went out on a new connection and its answer has not come yet.
    /// Past the answer's deadline this is false: another connection is worth trying.
    pub fn is_resuming(&self) -> bool {
        self.resume_sent && self.resume_deadline.is_some() && self.state == State::Active
    }
    /// Whether this call resumes on a new connection when its path is lost (both sides
    /// offered [`caps::RESUME`], and reconnecting is not switched off).
    pub fn can_resume(&self) -> bool {
        self.common_capabilities() & caps::RESUME != 0 && !self.config.reconnect_window.is_zero()
    }
    /// True once the session has ended.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }
    /// True while a refused call waits, in silence, for the caller to give up: it is over
    /// for the user, and holds no call slot.
    pub fn is_quiet(&self) -> bool {
        self.quiet && self.state != State::Ended
    }
    /// Latest round-trip time measured with ping/pong.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
    /// The negotiated protocol version, once both hellos were exchanged.
    pub fn version(&self) -> Option<u16> {
        self.peer_version.map(|v| v.min(PROTOCOL_VERSION))
    }
    /// Capabilities both sides offered.
    pub fn common_capabilities(&self) -> u64 {
        self.peer_capabilities & self.config.capabilities
    }
    /// Tolerated-input counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    // ---- inputs from the network and the clock ----

    /// Bytes read from the control stream.
    pub fn handle_stream_data(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Ended || self.resume_asked {
            return;
        }
        self.last_rx = now;
        self.last_heard = now;
        let mut decoded = Vec::new();
        let result = self.decoder.push(data, &mut decoded);
        // The old path answers again (a resumed one answers with `Resumed`); unless its
        // words are a goodbye, which ends the call instead.
        let goodbye = decoded
            .iter()
            .any(|d| matches!(d, Decoded::Message(Message::Hangup { .. })));
        if !decoded.is_empty() && !goodbye && !self.resume_sent && self.stalled.take().is_some() {
            // A ping from the dark time says nothing of the path now (nor of its round trip).
            self.ping = None;
            self.events.push_back(Event::Reconnected);
        }
        let mut rest = decoded.into_iter();
        while let Some(d) = rest.next() {
            if self.state == State::Ended {
                return;
            }
            if self.resume_asked {
                // Not ours to read: kept, as bytes, for the call the `Resume` named.
                for d in std::iter::once(d).chain(rest.by_ref()) {
                    if let Decoded::Message(m) = d {
                        let _ = m.encode(&mut self.leftover);
                    }
                }
                break;
            }
            match d {
                Decoded::Message(m) => self.handle_message(now, m),
                Decoded::Skipped(_) => self.stats.skipped_unknown += 1,
            }
        }
        if self.resume_asked {
            // A frame cut in two by the read goes along as it is.
            self.leftover.extend(self.decoder.take_pending());
            return;
        }
        if let Err(e) = result {
            self.protocol_error(now, Violation::Malformed(e.to_string()));
        }
    }

    /// The control stream or the connection closed without a goodbye. A call that can
    /// resume is kept ([`Event::Reconnecting`]); anything else ends.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if self.state == State::Active && self.can_resume() {
            // A new connection that died before `Resumed`: the caller dials again.
            self.resume_sent = false;
            self.resume_deadline = None;
            if self.stalled.is_none() {
                self.stall(now);
            }
        } else if self.state != State::Ended {
            self.end(EndReason::PeerVanished);
        }
    }

    /// The transport heard from the peer (any packet of this call's connection, media
    /// included): a call that hears its peer is not reconnecting.
    pub fn note_heard(&mut self, now: Instant) {
        if !self.resume_sent {
            self.last_heard = self.last_heard.max(now);
        }
    }

    /// Caller, reconnecting: a new connection to the same peer is up. From now on the
    /// session reads and writes that connection's control stream (the old one is
    /// forgotten): `Resume` with `token` (the lost connection's exporter under
    /// [`RESUME_EXPORTER_LABEL`]) goes first, and nothing else until the callee's `Resumed`.
    /// What was written to the old stream and not read is lost (a chat line in flight).
    pub fn resume_as_caller(&mut self, now: Instant, token: [u8; 32]) -> Result<(), SessionError> {
        if self.state != State::Active || self.role != Role::Caller || !self.can_resume() {
            return Err(SessionError::WrongState(self.state.name()));
        }
        // The old path came back meanwhile: the call stays where it is.
        if self.stalled.is_none() {
            return Err(SessionError::WrongState("not reconnecting"));
        }
        self.new_stream();
        self.resume_sent = true;
        self.resume_deadline = Some(now + 2 * self.config.stall_after);
        self.send(now, Message::Resume { token });
        Ok(())
    }

    /// Callee: a new connection from the peer asked to resume this call
    /// ([`Event::ResumeRequested`] with its token): from now on the session reads and writes
    /// that connection's control stream, and says `Resumed`.
    pub fn resume_as_callee(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.state != State::Active || self.role != Role::Callee || !self.can_resume() {
            return Err(SessionError::WrongState(self.state.name()));
        }
        self.new_stream();
        self.last_rx = now;
        self.last_heard = now;
        self.send(now, Message::Resumed);
        if self.stalled.take().is_some() {
            self.events.push_back(Event::Reconnected);
        }
        Ok(())
    }

    /// Callee, on a connection that asked to resume: the frames that came after the
    /// `Resume` (in the same read), to give to the call it names.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }

    /// Callee, on a connection that asked to resume a call we do not have (over, or never
    /// ours): tell the peer the call is over, and end this session.
    pub fn refuse_resume(&mut self, now: Instant) {
        if self.resume_asked && self.state != State::Ended {
            self.resume_asked = false;
            self.send(
                now,
                Message::Hangup {
                    reason: HangupReason::Normal,
                },
            );
            self.state = State::Ended;
        }
    }

    fn new_stream(&mut self) {
        self.decoder = FrameDecoder::default();
        self.out.clear();
        self.ping = None;
        self.resume_sent = false;
        self.resume_deadline = None;
    }

    fn stall(&mut self, now: Instant) {
        self.stalled = Some(now);
        self.events.push_back(Event::Reconnecting);
    }

    /// How many bidirectional streams the peer may have open at once on the call's
    /// connection (the transport's flow control enforces it): the control stream, opened by
    /// the caller; and once the call is up, one per file transfer, up to
    /// [`crate::transfer::MAX_TRANSFERS`]. A stream from the peer to us never.
    pub fn peer_stream_limit(&self) -> u32 {
        let control = u32::from(self.role == Role::Callee);
        let transfers = if self.is_active() {
            crate::transfer::MAX_TRANSFERS
        } else {
            0
        };
        control + transfers
    }

    /// The peer opened a stream (beside the control stream): a file transfer once the call is
    /// up (also while we hear nothing else: the path may work one way only); anything else
    /// (a unidirectional stream, a stream while the call rings) breaks the protocol, and
    /// the call ends.
    pub fn admit_stream(&mut self, now: Instant, kind: PeerStream) -> StreamAdmission {
        if kind == PeerStream::Bidirectional && self.is_active() {
            return StreamAdmission::Transfer;
        }
        self.handle_protocol_violation(now, Violation::ExtraStream);
        StreamAdmission::Refused
    }

    /// The transport saw the peer break the rules outside the control stream (for example by
    /// opening a stream it may not open).
    pub fn handle_protocol_violation(&mut self, now: Instant, what: Violation) {
        if self.state != State::Ended {
            self.protocol_error(now, what);
        }
    }

    /// The clock reached (or passed) the deadline from [`Session::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Ended {
            return;
        }
        if self.state == State::Active && self.can_resume() {
            if let Some(since) = self.stalled {
                if now >= since + self.config.reconnect_window {
                    self.end(EndReason::PeerVanished);
                    return;
                }
                if self.resume_deadline.is_some_and(|d| now >= d) {
                    self.resume_deadline = None;
                }
            } else if self.stall_due().is_some_and(|t| now >= t) {
                self.stall(now);
            }
        } else if now >= self.last_rx + self.config.idle_timeout {
            self.end(EndReason::PeerVanished);
            return;
        }
        let setup = matches!(self.state, State::Handshake | State::AwaitRing);
        if setup && now >= self.started + self.config.hello_timeout {
            self.protocol_error(now, Violation::Silent);
            return;
        }
        if let Some(deadline) = self.ring_deadline {
            if now >= deadline && self.state != State::Active {
                self.send(
                    now,
                    Message::Hangup {
                        reason: HangupReason::NoAnswer,
                    },
                );
                self.end(EndReason::NoAnswer);
                return;
            }
        }
        if self.ping_due().is_some_and(|t| now >= t) {
            let nonce = self.next_ping_nonce;
            self.next_ping_nonce += 1;
            // Keep the first outstanding ping's send time so a lost pong doesn't skew RTT.
            if self.ping.is_none() {
                self.ping = Some((nonce, now));
            }
            self.stats.pings_sent += 1;
            self.send(now, Message::Ping { nonce });
        }
    }

    // ---- user decisions ----

    /// Callee: tell the caller we are alerting the user.
    pub fn alert(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            State::Incoming { alerted: false } => {
                self.state = State::Incoming { alerted: true };
                // The nonce goes first: the caller settles the code before it reads Ringing.
                self.release_nonce(now);
                self.send(now, Message::Ringing);
                Ok(())
            }
            State::Incoming { alerted: true } => Ok(()),
            s => Err(SessionError::WrongState(s.name())),
        }
    }

    /// Callee: answer.
    pub fn accept(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.quiet {
            return Err(SessionError::WrongState("declined"));
        }
        match self.state {
            State::Incoming { alerted } => {
                if !alerted {
                    self.alert(now)?;
                }
                self.send(now, Message::Accept);
                self.state = State::Active;
                self.ring_deadline = None;
                self.events.push_back(Event::Connected);
                Ok(())
            }
            s => Err(SessionError::WrongState(s.name())),
        }
    }

    /// Callee: refuse. The caller learns nothing but, when its ring times out, "no answer".
    pub fn decline(&mut self, now: Instant) -> Result<(), SessionError> {
        self.refuse(now, EndReason::DeclinedLocally)
    }

    /// Callee: refuse because another call is on. Looks to the caller like [`Self::decline`].
    pub fn busy(&mut self, now: Instant) -> Result<(), SessionError> {
        self.refuse(now, EndReason::RejectedBusy)
    }

    fn refuse(&mut self, now: Instant, reason: EndReason) -> Result<(), SessionError> {
        match self.state {
            _ if self.quiet => Err(SessionError::WrongState("declined")),
            State::Incoming { .. } | State::AwaitRing if self.role == Role::Callee => {
                // Told to the user now, and never again; on the wire, a ringing device.
                self.events.push_back(Event::Ended(reason));
                self.quiet = true;
                if self.state == (State::Incoming { alerted: false }) {
                    self.alert(now)?;
                }
                Ok(())
            }
            s => Err(SessionError::WrongState(s.name())),
        }
    }

    /// Callee: sends our verification nonce once we hold the caller's commitment and alert.
    fn release_nonce(&mut self, now: Instant) {
        let alerted = matches!(
            self.state,
            State::Incoming { alerted: true } | State::Active
        );
        if let Sas::AwaitReveal { nonce, sent, .. } = &mut self.sas {
            if !*sent && alerted {
                *sent = true;
                let nonce = *nonce;
                self.send(now, Message::SasNonce { nonce });
            }
        }
    }

    /// Either side, any time: end the call.
    pub fn hangup(&mut self, now: Instant) {
        self.close(now, HangupReason::Normal, EndReason::LocalHangup);
    }

    /// The application is exiting.
    pub fn shutdown(&mut self, now: Instant) {
        self.close(now, HangupReason::Shutdown, EndReason::Shutdown);
    }

    fn close(&mut self, now: Instant, wire: HangupReason, reason: EndReason) {
        if self.state != State::Ended {
            self.send(now, Message::Hangup { reason: wire });
            self.end(reason);
        }
    }

    /// Tells the peer the address its packets come from (call right after creating the
    /// session: it follows our hello). Peers that predate the message skip it.
    pub fn tell_observed(&mut self, now: Instant, addr: std::net::SocketAddr) {
        if self.hello_due {
            self.observed_due = Some(addr);
        } else if self.state != State::Ended {
            self.send(now, Message::Observed { addr });
        }
    }

    /// While the call is up: tells the peer the checks of the rendezvous roots we hold.
    pub fn send_pair_checks(
        &mut self,
        now: Instant,
        checks: Vec<[u8; 8]>,
    ) -> Result<(), SessionError> {
        if self.state != State::Active || self.stalled.is_some() {
            return Err(SessionError::WrongState(self.state.name()));
        }
        self.send(now, Message::PairChecks { checks });
        Ok(())
    }

    /// While the call is up: tells the peer we stored the pair's new root.
    pub fn send_pair_stored(&mut self, now: Instant, check: [u8; 8]) -> Result<(), SessionError> {
        if self.state != State::Active || self.stalled.is_some() {
            return Err(SessionError::WrongState(self.state.name()));
        }
        self.send(now, Message::PairStored { check });
        Ok(())
    }

    /// While the call is up: tells the peer our inbox chain.
    pub fn send_inbox_chain(
        &mut self,
        now: Instant,
        chain: &crate::inbox::InboxChain,
    ) -> Result<(), SessionError> {
        if self.state != State::Active || self.stalled.is_some() {
            return Err(SessionError::WrongState(self.state.name()));
        }
        self.send(
            now,
            Message::InboxChain {
                value: *chain.to_bytes(),
                epoch: chain.epoch(),
            },
        );
        Ok(())
    }

    /// Sends a chat line; returns its sequence number.
    pub fn send_chat(&mut self, now: Instant, text: &str) -> Result<u64, SessionError> {
        if self.state != State::Active {
            return Err(SessionError::WrongState(self.state.name()));
        }
        if self.stalled.is_some() {
            return Err(SessionError::WrongState("reconnecting"));
        }
        if text.len() > MAX_CHAT_BYTES {
            return Err(SessionError::ChatTooLong);
        }
        let id = self.next_chat_id;
        self.next_chat_id += 1;
        self.send(
            now,
            Message::Chat {
                id,
                text: text.to_owned(),
            },
        );
        Ok(id)
    }

    // ---- outputs ----

    /// Appends the bytes to write to the control stream; returns whether there were any.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        buf.append(&mut self.out);
        true
    }

    /// The next thing to tell the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Session::handle_timeout`] next; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Ended {
            return None;
        }
        let resumable = self.state == State::Active && self.can_resume();
        let mut t = match (resumable, self.stalled) {
            (true, Some(since)) => {
                let end = since + self.config.reconnect_window;
                self.resume_deadline.map_or(end, |d| d.min(end))
            }
            (true, None) => self
                .stall_due()
                .expect("a call that can resume has a stall deadline"),
            (false, _) => self.last_rx + self.config.idle_timeout,
        };
        if let Some(p) = self.ping_due() {
            t = t.min(p);
        }
        if matches!(self.state, State::Handshake | State::AwaitRing) {
            t = t.min(self.started + self.config.hello_timeout);
        }
        if let Some(d) = self.ring_deadline {
            if self.state != State::Active {
                t = t.min(d);
            }
        }
        Some(t)
    }

    // ---- internals ----

    /// When a call that can resume counts as stalled, unless the peer is heard first.
    fn stall_due(&self) -> Option<Instant> {
        if self.state != State::Active || !self.can_resume() || self.stalled.is_some() {
            return None;
        }
        // (Stream data counts as heard: `last_heard` is never behind `last_rx`.)
        let mut t = self.last_heard + self.config.stall_after;
        // Heard, but our pings go unanswered: our packets are not getting through. Given
        // twice the time, so that a long queue on a busy uplink is not taken for it.
        if let Some((_, sent)) = self.ping {
            t = t.min(sent + 2 * self.config.stall_after);
        }
        Some(t)
    }

    /// When the next ping is due; none while a resume waits for its answer (nothing may
    /// follow `Resume` before `Resumed`).
    fn ping_due(&self) -> Option<Instant> {
        if self.resume_sent || self.resume_asked || self.hello_due {
            return None;
        }
        let interval = if self.state == State::Active && self.can_resume() {
            self.config.call_ping_interval
        } else {
            self.config.keepalive_interval
        };
        Some(self.last_tx + interval)
    }

    fn send_hello(&mut self, now: Instant) {
        self.hello_due = false;
        self.send(
            now,
            Message::Hello {
                max_version: PROTOCOL_VERSION,
                min_version: MIN_PROTOCOL_VERSION,
                capabilities: self.config.capabilities,
            },
        );
        if let Some(addr) = self.observed_due.take() {
            self.send(now, Message::Observed { addr });
        }
    }

    fn send(&mut self, now: Instant, msg: Message) {
        msg.encode(&mut self.out)
            .expect("the session only builds messages within the wire limits");
        self.last_tx = now;
    }

    fn end(&mut self, reason: EndReason) {
        self.state = State::Ended;
        // A quiet call told its user when it was refused.
        if !self.quiet {
            self.events.push_back(Event::Ended(reason));
        }
    }

    fn protocol_error(&mut self, now: Instant, what: Violation) {
        self.close(
            now,
            HangupReason::ProtocolError,
            EndReason::ProtocolError(what),
        );
    }

    fn unexpected(&mut self, now: Instant, what: &'static str) {
        let state = self.state.name();
        self.protocol_error(now, Violation::Unexpected { what, state });
    }

    fn handle_message(&mut self, now: Instant, msg: Message) {
        if self.state == State::Handshake {
            return match msg {
                Message::Hello {
                    max_version,
                    min_version,
                    capabilities,
                } => {
                    if self.hello_due {
                        self.send_hello(now);
                    }
                    self.handle_hello(now, max_version, min_version, capabilities)
                }
                Message::Resume { token } if self.hello_due => {
                    self.resume_asked = true;
                    self.events.push_back(Event::ResumeRequested(token));
                }
                // A hang-up may come before hello if the peer gives up at once.
                Message::Hangup { reason } => self.handle_hangup(reason),
                _ => self.unexpected(now, "message before hello"),
            };
        }
        match msg {
            Message::Hello { .. } => self.unexpected(now, "second hello"),
            Message::Resume { .. } => self.unexpected(now, "resume"),
            Message::Resumed => {
                if self.resume_sent {
                    self.resume_sent = false;
                    self.resume_deadline = None;
                    self.last_heard = now;
                    self.ping = None;
                    if self.stalled.take().is_some() {
                        self.events.push_back(Event::Reconnected);
                    }
                } else {
                    self.unexpected(now, "resumed");
                }
            }
            Message::Ping { nonce } => self.send(now, Message::Pong { nonce }),
            Message::SasCommit { commit } => match (&self.sas, self.role) {
                (Sas::AwaitCommit { exporter, nonce }, Role::Callee) => {
                    self.sas = Sas::AwaitReveal {
                        exporter: *exporter,
                        nonce: *nonce,
                        commit,
                        sent: false,
                    };
                    self.release_nonce(now);
                }
                _ => self.unexpected(now, "verification commitment"),
            },
            Message::SasNonce { nonce: theirs } => match (&self.sas, self.role) {
                (Sas::Committed { exporter, nonce }, Role::Caller) => {
                    let (exporter, nonce) = (*exporter, *nonce);
                    let code =
                        crate::sas::sas_digits(crate::sas::sas_number(&exporter, &nonce, &theirs));
                    self.send(now, Message::SasReveal { nonce });
                    self.settle(code);
                }
                _ => self.unexpected(now, "verification nonce"),
            },
            Message::SasReveal { nonce: theirs } => match (&self.sas, self.role) {
                (
                    Sas::AwaitReveal {
                        exporter,
                        nonce,
                        commit,
                        sent: true,
                    },
                    Role::Callee,
                ) => {
                    if crate::sas::sas_commit(exporter, &theirs) != *commit {
                        return self.protocol_error(now, Violation::Commitment);
                    }
                    let code =
                        crate::sas::sas_digits(crate::sas::sas_number(exporter, &theirs, nonce));
                    self.settle(code);
                }
                _ => self.unexpected(now, "verification reveal"),
            },
            Message::Observed { addr } => {
                // One per session: more would only be a peer trying to make us churn.
                if !self.observed_heard {
                    self.observed_heard = true;
                    self.events.push_back(Event::Observed(addr));
                }
            }
            // Only from a peer both sides admitted into a call, and once: before that, or a
            // second time, it is ignored (it could only make us churn the disk).
            Message::PairChecks { checks } => {
                if self.state == State::Active && !self.pair_checks_heard {
                    self.pair_checks_heard = true;
                    self.events.push_back(Event::PairChecks(checks));
                }
            }
            Message::PairStored { check } => {
                if self.state == State::Active && !self.pair_stored_heard {
                    self.pair_stored_heard = true;
                    self.events.push_back(Event::PairStored(check));
                }
            }
            Message::InboxChain { value, epoch } => {
                if self.state == State::Active && !self.inbox_heard {
                    self.inbox_heard = true;
                    self.events
                        .push_back(Event::InboxChain(crate::inbox::InboxChain::new(
                            value, epoch,
                        )));
                }
            }
            Message::Pong { nonce } => {
                if let Some((n, sent)) = self.ping {
                    if n <= nonce {
                        self.rtt = Some(now.saturating_duration_since(sent));
                        self.ping = None;
                    }
                }
            }
            Message::Hangup { reason } => self.handle_hangup(reason),
            Message::Chat { id, text } => {
                let fresh = self.last_peer_chat_id.is_none_or(|last| id > last);
                if self.state == State::Active && fresh {
                    self.last_peer_chat_id = Some(id);
                    self.events.push_back(Event::Chat { id, text });
                } else {
                    self.stats.dropped_chat += 1;
                }
            }
            Message::Ring { media } => match (self.role, self.state) {
                (Role::Callee, State::AwaitRing) => {
                    self.ring(now, media);
                    if self.quiet {
                        let _ = self.alert(now);
                    }
                }
                _ => self.unexpected(now, "ring"),
            },
            Message::Ringing | Message::Accept if !self.code_ready() => {
                self.unexpected(now, "answer before the verification code")
            }
            Message::Ringing => match self.state {
                State::Calling { ringing: false } => {
                    self.state = State::Calling { ringing: true };
                    self.events.push_back(Event::Ringing);
                }
                _ => self.unexpected(now, "ringing"),
            },
            Message::Accept => match self.state {
                State::Calling { .. } => {
                    self.state = State::Active;
                    self.ring_deadline = None;
                    self.events.push_back(Event::Connected);
                }
                _ => self.unexpected(now, "accept"),
            },
            Message::Decline | Message::Busy => match self.state {
                State::Calling { .. } => self.end(if msg == Message::Busy {
                    EndReason::Busy
                } else {
                    EndReason::Declined
                }),
                _ => self.unexpected(now, "decline"),
            },
        }
    }

    fn settle(&mut self, code: String) {
        if !self.quiet {
            self.events.push_back(Event::VerificationCode(code.clone()));
        }
        self.sas = Sas::Done(code);
    }

    fn ring(&mut self, now: Instant, media: u64) {
        self.state = State::Incoming { alerted: false };
        self.ring_deadline = Some(now + self.config.ring_timeout);
        if !self.quiet {
            self.events.push_back(Event::IncomingCall { media });
        }
    }

    fn handle_hello(&mut self, now: Instant, max: u16, min: u16, capabilities: u64) {
        let common = max.min(PROTOCOL_VERSION);
        if max < min || common < min.max(MIN_PROTOCOL_VERSION) {
            self.close(
                now,
                HangupReason::IncompatibleVersion,
                EndReason::IncompatibleVersion {
                    peer_max: max,
                    peer_min: min,
                },
            );
            return;
        }
        self.peer_version = Some(max);
        self.peer_capabilities = capabilities;
        self.state = match self.role {
            Role::Caller => State::Calling { ringing: false },
            Role::Callee => State::AwaitRing,
        };
    }

    fn handle_hangup(&mut self, reason: HangupReason) {
        self.end(match reason {
            HangupReason::Normal => EndReason::RemoteHangup,
            HangupReason::NoAnswer => EndReason::NoAnswer,
            r => EndReason::RemoteError(r),
        });
    }
}
