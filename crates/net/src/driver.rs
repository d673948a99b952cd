//! Runs one call session over one QUIC connection: the only place where the session meets
//! sockets and clocks.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use extrasafe_core::session::{Event, Session};
use extrasafe_core::wire::MAX_FRAME;
use extrasafe_core::EndReason;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::call::{Call, CallEvent, Command};
use crate::node::{Decision, Shared, SlotGuard};

/// Application close codes (QUIC CONNECTION_CLOSE), so the peer's transport knows why.
pub(crate) mod close {
    use quinn::VarInt;
    /// The session ended by the rules (hang-up, decline, busy, no answer).
    pub(crate) const DONE: VarInt = VarInt::from_u32(0);
    /// The peer broke the control protocol.
    pub(crate) const PROTOCOL: VarInt = VarInt::from_u32(1);
    /// The peer opened a stream it may not open.
    pub(crate) const STREAM: VarInt = VarInt::from_u32(2);
    /// The peer said nothing within the hello timeout.
    pub(crate) const SILENT: VarInt = VarInt::from_u32(3);
}

/// How long to wait for the peer to read our last words before closing.
const LINGER: Duration = Duration::from_secs(1);
/// A peer that does not read its control stream cannot stall us for longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Driver {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) session: Session,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) events: mpsc::Sender<CallEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) started: Instant,
    /// Callee only: the call handle, delivered to the application once policy lets it through.
    pub(crate) pending: Option<Call>,
    /// Held while this connection counts as "in a call".
    pub(crate) slot: Option<SlotGuard>,
    /// What to tell the peer's transport when closing.
    pub(crate) close_code: (VarInt, &'static [u8]),
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut out = Vec::new();
        let mut writable = true;
        loop {
            if self.session.poll_transmit(&mut out) && writable {
                let write = tokio::time::timeout(WRITE_TIMEOUT, self.send.write_all(&out)).await;
                if !matches!(write, Ok(Ok(()))) {
                    writable = false;
                    let now = Instant::now();
                    if self.conn.close_reason().is_some() {
                        self.session.handle_connection_lost(now);
                    } else {
                        self.session
                            .handle_protocol_violation(now, "stopped reading the control stream");
                    }
                }
            }
            out.clear();
            let mut progressed = false;
            while let Some(ev) = self.session.poll_event() {
                progressed = true;
                self.on_event(ev).await;
            }
            // Handling an event can queue frames (the callee's policy answers), so drain
            // both until neither yields anything before waiting.
            if progressed {
                continue;
            }
            if self.session.is_ended() {
                break;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tracing::trace!(role = ?self.session.role(), "driver waits");
            tokio::select! {
                biased;
                cmd = self.commands.recv() => self.on_command(cmd),
                _ = self.shutdown.changed() => self.session.shutdown(Instant::now()),
                chunk = self.recv.read_chunk(MAX_FRAME + 2, true) => match chunk {
                    Ok(Some(c)) => {
                        tracing::trace!(role = ?self.session.role(), n = c.bytes.len(), "read");
                        self.session.handle_stream_data(Instant::now(), &c.bytes)
                    }
                    Ok(None) | Err(_) => self.session.handle_connection_lost(Instant::now()),
                },
                _ = self.conn.accept_bi() => self.violation("opened an extra stream"),
                _ = self.conn.accept_uni() => self.violation("opened an extra stream"),
                _ = sleep => self.session.handle_timeout(Instant::now()),
            }
        }
        self.linger().await;
        drop(self.slot.take());
    }

    fn violation(&mut self, what: &str) {
        self.session.handle_protocol_violation(Instant::now(), what);
    }

    fn on_command(&mut self, cmd: Option<Command>) {
        let now = Instant::now();
        match cmd {
            Some(Command::Accept) => {
                let _ = self.session.accept(now);
            }
            Some(Command::Decline) => {
                let _ = self.session.decline(now);
            }
            Some(Command::Hangup) | None => self.session.hangup(now),
            Some(Command::Chat(text, reply)) => {
                let _ = reply.send(self.session.send_chat(now, &text).map(|_| ()));
            }
        }
    }

    async fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        let out = match ev {
            Event::IncomingCall { .. } => {
                self.decide_incoming(now);
                return;
            }
            Event::Ringing => CallEvent::Ringing,
            Event::Connected => CallEvent::Connected {
                after: now.saturating_duration_since(self.started),
            },
            Event::Chat { text, .. } => CallEvent::Chat {
                text,
                at: SystemTime::now(),
            },
            Event::Ended(reason) => {
                debug!(?reason, "call ended");
                self.close_code = close_code(&reason);
                CallEvent::Ended(reason)
            }
            _ => return,
        };
        // A full queue means the application is not reading: wait, so the peer waits too
        // (QUIC flow control) instead of our memory growing.
        let _ = self.events.send(out).await;
    }

    fn decide_incoming(&mut self, now: Instant) {
        let peer = self.pending.as_ref().map(|c| c.info.peer);
        let Some(peer) = peer else { return };
        match self.shared.decide(&peer) {
            Decision::Refuse => {
                debug!(peer = %peer.short(), "caller refused by policy");
                let _ = self.session.decline(now);
            }
            decision => {
                let Some(slot) = self.shared.claim_slot() else {
                    let _ = self.session.busy(now);
                    return;
                };
                let call = self.pending.take().expect("checked above");
                if !self.shared.deliver(call) {
                    let _ = self.session.busy(now);
                    return;
                }
                self.slot = Some(slot);
                let _ = self.session.alert(now);
                if decision == Decision::Accept {
                    let _ = self.session.accept(now);
                } else {
                    let _ = self.events.try_send(CallEvent::Incoming);
                }
            }
        }
    }

    /// Lets the peer read our last frames, then closes. Both sides finish their stream when
    /// the session ends, so a crossing hang-up closes at once rather than after the linger;
    /// on a dead connection every step returns at once.
    async fn linger(&mut self) {
        let _ = self.send.finish();
        let deadline = tokio::time::sleep(LINGER);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                chunk = self.recv.read_chunk(MAX_FRAME + 2, true) => match chunk {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                },
                _ = self.conn.closed() => break,
                _ = &mut deadline => break,
            }
        }
        let (code, why) = self.close_code;
        self.conn.close(code, why);
    }
}

fn close_code(reason: &EndReason) -> (VarInt, &'static [u8]) {
    match reason {
        EndReason::ProtocolError(m) if m.contains("extra stream") => {
            (close::STREAM, b"unexpected stream")
        }
        EndReason::ProtocolError(m) if m.contains("in time") => (close::SILENT, b"silent"),
        EndReason::ProtocolError(_) | EndReason::IncompatibleVersion { .. } => {
            (close::PROTOCOL, b"protocol error")
        }
        _ => (close::DONE, b"bye"),
    }
}
