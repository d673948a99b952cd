//! A whole call with one peer as one sans-IO machine: its session (the control stream, the
//! call's states, chat, verification, reconnecting), its media ([`CallMedia`]: audio and
//! video) and the decisions that concern both, behind one input type and one output type.
//!
//! ```text
//!  CallInput ──► CallMachine ──► CallOutput
//!   Timeout                        Audio(work)   audio's work first
//!   Control(bytes read)            Transmit      a media datagram (audio's, then video's)
//!   Datagram ──► media             Control       bytes to write on the control stream
//!   Heard / ConnectionLost         Event         what the user should learn
//!   Media(encoded, path, ...)      Frame         a whole video frame, for the decoder
//! ```
//!
//! What it decides across the parts:
//! - **Admission.** Nothing the peer sends on the media path is taken before the call is up
//!   (answered, by the user or the policy): a datagram of a ringing call, of a refused one or
//!   of one that ended is counted and dropped, never parsed by a medium
//!   ([`CallMachineStats::refused_datagrams`]). Streams the peer opens are admitted by the
//!   session's rules ([`CallMachine::admit_stream`]).
//! - **Liveness.** A media datagram from the peer is the peer heard: a call whose control
//!   stream is quiet but whose media flows is not reconnecting.
//! - **The end.** Once the session ended, no media leaves and none is taken in (the driver
//!   may still read the media's final figures).
//! - **A new path.** A call resumed on a new connection tells its media the path changed
//!   (what was learnt of the old one is forgotten), in the same step as the session's resume.
//! - **Order.** Audio's work and datagrams first, then the control stream's bytes and the
//!   user's events, then video.
//!
//! A call with several peers is one of these per peer.

use std::time::Instant;

use crate::media::AudioWork;
use crate::session::{
    Event, PeerStream, Role, Session, SessionConfig, SessionError, StreamAdmission, Violation,
};
use crate::video::AssembledFrame;

use super::{CallMedia, MediaInput, MediaOutput};

/// What happened, for [`CallMachine::handle_input`].
#[derive(Debug)]
pub enum CallInput<'a> {
    /// Time passed.
    Timeout,
    /// Bytes read from the control stream.
    Control(&'a [u8]),
    /// A datagram of the call arrived.
    Datagram(&'a [u8]),
    /// The transport heard the peer (any packet, acknowledgements included) since the last
    /// time it said so.
    Heard,
    /// The connection, or its control stream, is gone.
    ConnectionLost,
    /// The answer to media work, or the transport's state (see [`MediaInput`]); a
    /// [`MediaInput::Datagram`] here is the same as [`CallInput::Datagram`].
    Media(MediaInput<'a>),
}

/// What to do, from [`CallMachine::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum CallOutput {
    /// Audio work for the driver (take in what arrived, encode a frame, play one).
    Audio(AudioWork),
    /// Send this media datagram now.
    Transmit(Vec<u8>),
    /// Write these bytes to the control stream.
    Control(Vec<u8>),
    /// Something the user should learn about.
    Event(Event),
    /// A whole video frame for the decoder, in order.
    Frame(AssembledFrame),
}

/// Counters of the machine's own decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallMachineStats {
    /// Media datagrams that arrived while the call was not up (ringing, refused, over):
    /// dropped unread.
    pub refused_datagrams: u64,
}

/// One call with one peer. See the module docs.
#[derive(Debug)]
pub struct CallMachine {
    session: Session,
    media: CallMedia,
    stats: CallMachineStats,
}

impl CallMachine {
    /// A call at its start (see [`Session::new`]); media starts when the driver starts it.
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Self {
        Self {
            session: Session::new(role, config, now),
            media: CallMedia::new(),
            stats: CallMachineStats::default(),
        }
    }

    /// The session, to read its state.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The media, to read its state and figures.
    pub fn media(&self) -> &CallMedia {
        &self.media
    }

    /// Counters.
    pub fn stats(&self) -> CallMachineStats {
        self.stats
    }

    /// Media may flow: the call is up and not over, and (callee) it was not refused. Until
    /// then (and after) the media's own deadlines mean nothing: a driver waits for the
    /// session's alone ([`CallMachine::poll_timeout`] does).
    pub fn media_open(&self) -> bool {
        self.session.is_active() && !self.session.is_quiet()
    }

    // ---- inputs ----

    /// Something happened at `now`.
    pub fn handle_input(&mut self, now: Instant, input: CallInput<'_>) {
        match input {
            CallInput::Timeout => {
                self.session.handle_timeout(now);
                if self.media_open() {
                    self.media.handle_input(now, MediaInput::Timeout);
                }
            }
            CallInput::Control(bytes) => self.session.handle_stream_data(now, bytes),
            CallInput::Datagram(d) | CallInput::Media(MediaInput::Datagram(d)) => {
                if !self.media_open() {
                    self.stats.refused_datagrams += 1;
                    return;
                }
                self.session.note_heard(now);
                self.media.handle_input(now, MediaInput::Datagram(d));
            }
            CallInput::Heard => self.session.note_heard(now),
            CallInput::ConnectionLost => self.session.handle_connection_lost(now),
            CallInput::Media(m) => {
                if self.media_open() {
                    self.media.handle_input(now, m);
                }
            }
        }
    }

    /// The peer opened a stream: what becomes of it (a transfer, or a violation that ends
    /// the call).
    pub fn admit_stream(&mut self, now: Instant, kind: PeerStream) -> StreamAdmission {
        self.session.admit_stream(now, kind)
    }

    /// The peer broke the protocol below the session (it stopped reading, say).
    pub fn handle_protocol_violation(&mut self, now: Instant, what: Violation) {
        self.session.handle_protocol_violation(now, what);
    }

    /// The call moved to a new connection: the session resumes there (as `role`'s side,
    /// the caller naming the call with `token`) and the media forgets the old path.
    pub fn handle_new_path(&mut self, now: Instant, token: [u8; 32]) -> Result<(), SessionError> {
        match self.session.role() {
            Role::Caller => self.session.resume_as_caller(now, token)?,
            Role::Callee => self.session.resume_as_callee(now)?,
        }
        self.media.handle_input(now, MediaInput::NewPath);
        Ok(())
    }

    // ---- the media's parts, switched on and off by the driver ----

    /// Starts the audio (see [`CallMedia::start_audio`]).
    pub fn start_audio(&mut self, config: crate::media::AudioStreamConfig, now: Instant) {
        self.media.start_audio(config, now);
    }

    /// Stops the audio.
    pub fn stop_audio(&mut self) {
        self.media.stop_audio();
    }

    /// Starts the video (see [`CallMedia::start_video`]).
    pub fn start_video(
        &mut self,
        config: crate::video::VideoLinkConfig,
        epoch: Instant,
        now: Instant,
    ) {
        self.media.start_video(config, epoch, now);
    }

    /// Stops the video.
    pub fn stop_video(&mut self) {
        self.media.stop_video();
    }

    /// What the video encoder should do now; `None` without video or once the call is not up.
    pub fn poll_advice(&mut self, now: Instant) -> Option<crate::video::CaptureAdvice> {
        if !self.media_open() {
            return None;
        }
        self.media.poll_advice(now)
    }

    // ---- the user's and the node's decisions, for the session ----

    /// Starts the verification code (see [`Session::begin_verification`]).
    pub fn begin_verification(&mut self, now: Instant, exporter: [u8; 32], nonce: [u8; 32]) {
        self.session.begin_verification(now, exporter, nonce);
    }

    /// Callee: let the call ring.
    pub fn alert(&mut self, now: Instant) -> Result<(), SessionError> {
        self.session.alert(now)
    }

    /// Callee: answer.
    pub fn accept(&mut self, now: Instant) -> Result<(), SessionError> {
        self.session.accept(now)
    }

    /// Callee: decline (quietly: see the session).
    pub fn decline(&mut self, now: Instant) -> Result<(), SessionError> {
        self.session.decline(now)
    }

    /// Callee: busy (quietly).
    pub fn busy(&mut self, now: Instant) -> Result<(), SessionError> {
        self.session.busy(now)
    }

    /// Hang up.
    pub fn hangup(&mut self, now: Instant) {
        self.session.hangup(now);
    }

    /// We shut down.
    pub fn shutdown(&mut self, now: Instant) {
        self.session.shutdown(now);
    }

    /// Sends a chat line; its id.
    pub fn send_chat(&mut self, now: Instant, text: &str) -> Result<u64, SessionError> {
        self.session.send_chat(now, text)
    }

    /// Tells the peer the address we see it at.
    pub fn tell_observed(&mut self, now: Instant, addr: std::net::SocketAddr) {
        self.session.tell_observed(now, addr);
    }

    /// Sends the checks of the rendezvous roots we hold for the pair.
    pub fn send_pair_checks(
        &mut self,
        now: Instant,
        checks: Vec<[u8; 8]>,
    ) -> Result<(), SessionError> {
        self.session.send_pair_checks(now, checks)
    }

    /// Says we stored the new root.
    pub fn send_pair_stored(&mut self, now: Instant, check: [u8; 8]) -> Result<(), SessionError> {
        self.session.send_pair_stored(now, check)
    }

    /// Tells our inbox chain.
    pub fn send_inbox_chain(
        &mut self,
        now: Instant,
        chain: &crate::inbox::InboxChain,
    ) -> Result<(), SessionError> {
        self.session.send_inbox_chain(now, chain)
    }

    /// Callee: the call a `Resume` named is not ours (see [`Session::refuse_resume`]).
    pub fn refuse_resume(&mut self, now: Instant) {
        self.session.refuse_resume(now);
    }

    /// Callee: what followed a `Resume` on this connection, for the call it names.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        self.session.take_leftover()
    }

    // ---- outputs ----

    /// The next thing to do at `now`: audio's work and datagrams, then the control stream's
    /// bytes and events, then video's. `None` when there is nothing until
    /// [`CallMachine::poll_timeout`] or the next input.
    pub fn poll_output(&mut self, now: Instant) -> Option<CallOutput> {
        let media_open = self.media_open();
        if let Some(o) = media_open.then(|| self.media.poll_audio(now)).flatten() {
            return Some(Self::media_output(o));
        }
        let mut buf = Vec::new();
        if self.session.poll_transmit(&mut buf) {
            return Some(CallOutput::Control(buf));
        }
        if let Some(e) = self.session.poll_event() {
            return Some(CallOutput::Event(e));
        }
        if media_open {
            return self.media.poll_video(now).map(Self::media_output);
        }
        None
    }

    fn media_output(o: MediaOutput) -> CallOutput {
        match o {
            MediaOutput::Audio(w) => CallOutput::Audio(w),
            MediaOutput::Transmit(d) => CallOutput::Transmit(d),
            MediaOutput::Frame(f) => CallOutput::Frame(f),
        }
    }

    /// When to give [`CallInput::Timeout`] next; `None` once the call is over.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let s = self.session.poll_timeout()?;
        match self
            .media_open()
            .then(|| self.media.poll_timeout(now))
            .flatten()
        {
            Some(m) => Some(s.min(m)),
            None => Some(s),
        }
    }

    /// When the session alone wants [`CallInput::Timeout`] (a driver that wakes for the
    /// media on its own clock).
    pub fn session_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
}

#[cfg(test)]
#[path = "call_machine_tests.rs"]
mod tests;
