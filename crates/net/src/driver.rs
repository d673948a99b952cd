//! Runs one call over one QUIC connection (and the next, if it reconnects): the only place
//! where the call's machine (`core::call::CallMachine`: its session and its media) meets
//! sockets, devices and clocks. One task per call steps the machine: the control stream's
//! bytes, the media's datagrams, the user's commands, the media's orders (start, stop, mute)
//! and time go in; audio work (done at once on this task: a 20 ms frame read and encoded,
//! one decoded and played, well under a millisecond), datagrams, whole video frames (to the
//! decode thread), events and the control stream's bytes come out. Those bytes are written
//! by a task of their own ([`Writer`]): a peer that reads slowly never holds the audio up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use extrasafe_core::call::{CallInput, CallMachine, CallOutput, MediaOutput};
use extrasafe_core::lan::LanKey;
use extrasafe_core::session::{
    Event, PeerStream, StreamAdmission, Violation, RESUME_EXPORTER_LABEL,
};
use extrasafe_core::wire::MAX_FRAME;
use extrasafe_core::{EndReason, PeerId};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::call::{Call, CallEvent, Command};
use crate::engine::{Ctl, Parts};
use crate::node::{Decision, Shared, SlotGuard};
use crate::transfer::TransferBook;

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

/// Rounds of dialling a reconnecting call's peer begin at most this often. Each attempt of
/// a round runs for the node's whole handshake timeout (QUIC resends its first flight
/// meanwhile), so a slow path still completes, and few first flights are spent: the
/// listener remembers each (against replays) for minutes, a limited number per contact.
const REDIAL_SPACING: Duration = Duration::from_secs(3);

/// A new connection to the peer of a reconnecting call, with its control stream.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    /// Callee: what the caller sent after its `Resume`, already read off the stream.
    pub(crate) leftover: Vec<u8>,
}

/// Caller: how to reach the peer again (the addresses that reached it, proved as the first
/// time: the same pinned identity and the same access keys in the first flight).
#[derive(Clone)]
pub(crate) struct Redial {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client: quinn::ClientConfig,
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    /// How long one attempt may take (the node's handshake timeout).
    pub(crate) attempt: Duration,
    /// A contact found on this network: who, and the key of their LAN tags. Each round
    /// then also looks for them there (they may have a new address: a new lease, another
    /// access point), and what it finds is dialled too.
    pub(crate) lan: Option<(PeerId, LanKey)>,
    /// A contact who may be found through the DHT: while reconnecting, we also read where
    /// they are now, write our call intent with where we are now, and punch (their router
    /// or ours may have given either side a new address), and dial what the punch opened.
    pub(crate) dht: Option<DhtRedial>,
}

/// How to find a reconnecting call's peer through the DHT (see [`Redial::dht`]).
#[derive(Clone)]
pub(crate) struct DhtRedial {
    pub(crate) peer: PeerId,
    pub(crate) node: crate::node::Handle,
    pub(crate) rendezvous: Arc<crate::dht::Rendezvous>,
}

/// Searches through the DHT start this often while a call reconnects (each writes a call
/// intent the peer answers with a punch), at most [`DHT_SEARCHES`] at once: a punch towards
/// where the peer was runs until the punch gives up, while the next one may already read
/// where it is now.
const DHT_REDIAL_SPACING: Duration = Duration::from_secs(5);
const DHT_SEARCHES: usize = 2;

impl DhtRedial {
    /// Sends on `found` each address a punch towards the peer opened, until dropped.
    async fn search(self, found: mpsc::UnboundedSender<std::net::SocketAddr>) {
        let mut searches = tokio::task::JoinSet::new();
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next), if searches.len() < DHT_SEARCHES => {
                    searches.spawn(self.clone().search_once());
                    next = tokio::time::Instant::now() + DHT_REDIAL_SPACING;
                }
                Some(done) = searches.join_next() => {
                    if let Ok(Some(addr)) = done {
                        if found.send(addr).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One search: where the peer is now, our intent, a punch; the address it opened.
    async fn search_once(self) -> Option<std::net::SocketAddr> {
        // Our own address may be what changed: measured again for each intent.
        self.rendezvous.forget_measurement();
        match crate::dht::contact_plan(&self.node, &self.rendezvous, self.peer).await {
            Ok((plan, _)) => match self.node.punch(plan).await {
                Ok(punched) => {
                    debug!("reconnecting: a punch through the DHT opened a path");
                    Some(punched.remote)
                }
                Err(e) => {
                    debug!(error = %e, "reconnecting: no path punched through the DHT");
                    None
                }
            },
            Err(e) => {
                debug!(error = %e, "reconnecting: not found through the DHT");
                None
            }
        }
    }
}

impl Redial {
    /// Tries every address (the last one that worked first) until one connects and opens
    /// its control stream; runs until it succeeds or is dropped.
    async fn link(self, last: std::net::SocketAddr) -> Link {
        let mut addrs = vec![last];
        addrs.extend(self.addrs.iter().copied().filter(|a| *a != last));
        // What this socket can reach (one bound to IPv4 cannot send to IPv6).
        let v4_only = self.endpoint.local_addr().is_ok_and(|a| a.is_ipv4());
        let lan = self.lan.as_ref().and_then(|(peer, key)| {
            crate::lan::Lan::for_peer(*peer, key.clone())
                .inspect_err(|e| debug!(error = %e, "reconnecting: no LAN lookup"))
                .ok()
                .map(|lan| (*peer, lan))
        });
        // Found through the DHT: a path punched to the peer, dialled at once.
        let (found_tx, mut found) = mpsc::unbounded_channel();
        let _search = self
            .dht
            .clone()
            .map(|d| AbortOnDrop(tokio::spawn(d.search(found_tx))));
        let attempt = |attempts: &mut tokio::task::JoinSet<Option<Link>>, addr| {
            let (endpoint, client) = (self.endpoint.clone(), self.client.clone());
            attempts.spawn(async move {
                let conn = endpoint
                    .connect_with(client, addr, "extrasafe")
                    .ok()?
                    .await
                    .ok()?;
                let (send, recv) = conn.open_bi().await.ok()?;
                Some(Link {
                    conn,
                    send,
                    recv,
                    leftover: Vec::new(),
                })
            });
        };
        loop {
            let spacing = tokio::time::sleep(REDIAL_SPACING);
            let round = tokio::time::sleep(self.attempt.max(REDIAL_SPACING));
            tokio::pin!(round);
            let mut attempts = tokio::task::JoinSet::new();
            for addr in addrs.iter().copied() {
                attempt(&mut attempts, addr);
            }
            let look = async {
                match &lan {
                    Some((peer, lan)) => lan.find(peer, crate::dial::LAN_LOOK).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(look);
            let mut looked = lan.is_none();
            loop {
                tokio::select! {
                    next = attempts.join_next(), if !attempts.is_empty() => match next {
                        Some(Ok(Some(link))) => return link,
                        _ => continue,
                    },
                    found = &mut look, if !looked => {
                        looked = true;
                        for addr in found.unwrap_or_default() {
                            if addrs.contains(&addr) || (v4_only && addr.is_ipv6()) {
                                continue;
                            }
                            debug!("reconnecting: the peer answers on this network elsewhere");
                            addrs.push(addr);
                            attempt(&mut attempts, addr);
                        }
                    },
                    Some(addr) = found.recv() => {
                        if !addrs.contains(&addr) {
                            addrs.push(addr);
                        }
                        attempt(&mut attempts, addr);
                    },
                    _ = &mut round => break,
                }
                // Every attempt failed (refused, or nothing listens there now) and the
                // network was looked at: the next round after the spacing, not at once.
                if attempts.is_empty() && looked {
                    break;
                }
            }
            // A path punched meanwhile starts the next round at once.
            tokio::select! {
                _ = spacing => {}
                Some(addr) = found.recv() => {
                    addrs.retain(|a| *a != addr);
                    addrs.insert(0, addr);
                }
            }
            debug!("reconnecting: no answer yet, trying again");
        }
    }
}

/// How long to wait for the peer to read our last words before closing.
const LINGER: Duration = Duration::from_secs(1);
/// Events held for a slow application before reading from the peer pauses.
const EVENT_BACKLOG: usize = 64;
/// A peer that does not read its control stream cannot stall us for longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Driver {
    pub(crate) conn: Connection,
    /// Writes the control stream (on a task of its own).
    pub(crate) writer: Writer,
    pub(crate) recv: RecvStream,
    /// The call: its session and its media, one machine.
    pub(crate) call: CallMachine,
    /// The media's devices, codecs and video threads, driven with the machine.
    pub(crate) parts: Parts,
    /// Orders for the media (from the call's `AudioCall` and `VideoCall`).
    pub(crate) ctl: Option<mpsc::UnboundedReceiver<Ctl>>,
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
    /// File transfers of this call.
    pub(crate) transfers: Arc<TransferBook>,
    /// The verification code, once settled (shared with the call's info).
    pub(crate) sas: Arc<std::sync::OnceLock<String>>,
    /// Callee: the address the caller says it sees us at, held until the call is answered
    /// (nothing a caller says changes what we publish before we took its call).
    pub(crate) held_observation: Option<std::net::SocketAddr>,
    /// The application still holds the call handle.
    pub(crate) commands_open: bool,
    /// Who the peer is (authenticated by the handshake).
    pub(crate) peer: extrasafe_core::PeerId,
    /// Replacing the pair's rendezvous root with a contact.
    pub(crate) pair: PairExchange,
    /// The call's media path (moved to a new connection when the call resumes).
    pub(crate) media: crate::call::MediaLink,
    /// Finding a new path when the call's is lost.
    pub(crate) resume: Resume,
}

/// A call's way back when its path is lost (see `extrasafe_core::session`, "Reconnecting").
pub(crate) struct Resume {
    /// New connections for this call: from our own redial (caller) or handed over by the
    /// node's listener (callee).
    tx: mpsc::UnboundedSender<Link>,
    rx: mpsc::UnboundedReceiver<Link>,
    /// The token naming this call (exporter of its first connection), once it is up.
    token: Option<[u8; 32]>,
    /// Caller: how to dial again; `None` for a callee.
    pub(crate) redial: Option<Redial>,
    /// Caller: the redial under way.
    dialing: Option<AbortOnDrop>,
    /// The current connection is gone (its streams are not read until a new one comes).
    dead: bool,
    /// Packets the current connection had received when we last looked.
    heard: u64,
    /// The control stream takes writes.
    writable: bool,
    /// Callee, on a connection that asked to resume: the call it names takes it over.
    handoff: Option<mpsc::UnboundedSender<Link>>,
    /// Callee: our entry in the node's table of calls that can be resumed.
    listed: Option<Listed>,
    /// Counted among the node's reconnecting calls.
    marked: Option<Reconnecting>,
}

impl Resume {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            token: None,
            redial: None,
            dialing: None,
            dead: false,
            heard: 0,
            writable: true,
            handoff: None,
            listed: None,
            marked: None,
        }
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a call among the node's reconnecting ones until dropped.
struct Reconnecting(Arc<Shared>);

impl Reconnecting {
    fn new(shared: Arc<Shared>) -> Self {
        shared.reconnecting.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for Reconnecting {
    fn drop(&mut self) {
        self.0
            .reconnecting
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Removes a call from the node's table of resumable calls when dropped.
struct Listed(Arc<Shared>, [u8; 32]);

impl Drop for Listed {
    fn drop(&mut self) {
        self.0
            .resumable
            .lock()
            .expect("resumable lock poisoned")
            .remove(&self.1);
    }
}

/// The TLS exporter label the rendezvous root ratchet takes its secret from.
const RATCHET_EXPORTER_LABEL: &[u8] = b"EXTRA SAFE rendezvous ratchet v1";

/// What a disk task of the root exchange reports back.
pub(crate) enum PairDone {
    /// The checks of what we hold (`None`: the peer is not a contact), and our inbox chain
    /// as it is now (read off the call's thread too: it lives on disk).
    Checks(
        Option<Vec<[u8; 8]>>,
        Option<extrasafe_core::inbox::OwnInbox>,
    ),
    /// The new root is stored; its check (`None`: nothing was stored).
    Stored(Option<[u8; 8]>),
    /// A write finished (the previous root erased, a contact's inbox chain kept), or found
    /// nothing to do.
    Written,
}

/// One call's replacement of the pair's rendezvous root (see `extrasafe_core::inbox::RootState`):
/// both send the checks of what they hold once the call is up, ratchet from the newest root
/// they share with this session's exporter, store it (off the call's thread), and say so;
/// the older root is erased once the peer said it stored the new one.
pub(crate) struct PairExchange {
    tx: mpsc::UnboundedSender<PairDone>,
    rx: mpsc::UnboundedReceiver<PairDone>,
    /// We told the peer our checks (it is a contact of ours).
    sent: bool,
    /// The peer's checks, held until ours are sent.
    theirs: Option<Vec<[u8; 8]>>,
    /// The check of the root we stored.
    stored: Option<[u8; 8]>,
    /// The peer's word that it stored, held until we did.
    their_stored: Option<[u8; 8]>,
    /// The peer's inbox chain, held until we know it is a contact of ours.
    their_inbox: Option<extrasafe_core::inbox::InboxChain>,
    /// We told the peer our chain: the one made then (its `since_ms`).
    told_ours: Option<u64>,
    /// Disk tasks not finished yet: the call's end waits for them (briefly), so that a
    /// program exiting right after a call does not cut a write short.
    in_flight: usize,
    /// What was to be said (our checks and chain, our word that we stored) while the call
    /// was reconnecting: said once it is back.
    unsent: Vec<PairDone>,
}

impl PairExchange {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            sent: false,
            theirs: None,
            stored: None,
            their_stored: None,
            their_inbox: None,
            told_ours: None,
            in_flight: 0,
            unsent: Vec::new(),
        }
    }
}

/// The call's clock (tokio's: virtual in tests that pause it).
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Writes a call's control stream on a task of its own, so that a peer that reads slowly
/// never holds up the call's task, which carries its audio. A write that fails, or takes
/// longer than [`WRITE_TIMEOUT`], is reported ([`Writer::failed`]) and ends the writer.
pub(crate) struct Writer {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    failed: tokio::sync::oneshot::Receiver<()>,
    /// The writer has not reported yet.
    pub(crate) watching: bool,
    task: Option<tokio::task::JoinHandle<Option<SendStream>>>,
}

impl Writer {
    pub(crate) fn spawn(mut send: SendStream) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (fail_tx, failed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                let write = tokio::time::timeout(WRITE_TIMEOUT, send.write_all(&bytes)).await;
                if !matches!(write, Ok(Ok(()))) {
                    let _ = fail_tx.send(());
                    return None;
                }
            }
            Some(send)
        });
        Self {
            tx: Some(tx),
            failed,
            watching: true,
            task: Some(task),
        }
    }

    /// Queues bytes for the stream.
    fn write(&self, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(bytes);
        }
    }

    /// Resolves once the writer ended: `true` if a write failed (cancel-safe).
    async fn failed(&mut self) -> bool {
        let failed = (&mut self.failed).await.is_ok();
        self.watching = false;
        failed
    }

    /// Writes what is queued and gives the stream back (`None` if a write failed).
    async fn close(&mut self) -> Option<SendStream> {
        self.tx = None;
        let task = self.task.take()?;
        task.await.ok().flatten()
    }
}

/// Counts a running driver until dropped.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .drivers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Driver {
    pub(crate) async fn run(mut self) {
        self.shared
            .drivers
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _running = Running(self.shared.clone());
        // Events the application has not taken yet. Reading from the peer pauses while this is
        // full, so a flood waits in QUIC flow control, not in our memory; commands, timers
        // and the media keep being served meanwhile.
        let mut backlog: VecDeque<CallEvent> = VecDeque::new();
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let now = clock();
            let media_wake = self.step(now, &mut backlog);
            while let Some(ev) = backlog.pop_front() {
                match self.events.try_send(ev) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(ev)) => {
                        backlog.push_front(ev);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => backlog.clear(),
                }
            }
            if self.resume.handoff.is_some() {
                break;
            }
            self.redial_if_needed();
            // Refused: over for the user, so the node is free for another call while this
            // connection waits in silence for the caller to give up.
            if self.call.session().is_quiet() {
                drop(self.slot.take());
            }
            if self.call.session().is_ended() {
                break;
            }
            let deadline = match (self.call.session_timeout(), media_wake) {
                (Some(s), Some(m)) => s.min(m),
                (s, m) => s.or(m).unwrap_or(now + Duration::from_secs(3600)),
            };
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            let room = backlog.len() < EVENT_BACKLOG && !self.resume.dead;
            let alive = !self.resume.dead;
            let events = self.events.clone();
            let ctl_open = self.ctl.is_some();
            tokio::select! {
                // Orders first (rare, and quick to take), then the clock, then what arrives.
                // Every wake-up steps the machine's time too, so a flood of datagrams or
                // control bytes cannot hold audio's sending or playout up.
                biased;
                c = async { self.ctl.as_mut()?.recv().await }, if ctl_open => match c {
                    Some(c) => self.parts.on_ctl(clock(), c, &mut self.call, &self.media),
                    None => self.ctl = None,
                },
                cmd = self.commands.recv(), if self.commands_open => self.on_command(cmd),
                _ = self.shutdown.changed() => self.call.shutdown(clock()),
                failed = self.writer.failed(), if self.writer.watching => {
                    if failed {
                        self.on_write_failed(clock());
                    }
                }
                permit = events.reserve(), if !backlog.is_empty() => match permit {
                    Ok(p) => p.send(backlog.pop_front().expect("guarded by the branch condition")),
                    Err(_) => backlog.clear(),
                },
                _ = &mut sleep => {}
                // The control stream, a new connection and the disk's answers before media
                // datagrams: a flood of datagrams must not hold a hang-up or a resume back.
                chunk = self.recv.read_chunk(MAX_FRAME + 2, true), if room => match chunk {
                    Ok(Some(c)) => self.call.handle_input(clock(), CallInput::Control(&c.bytes)),
                    Ok(None) | Err(_) => self.lost(clock()),
                },
                Some(link) = self.resume.rx.recv() => self.on_new_link(link),
                Some(done) = self.pair.rx.recv() => self.on_pair_done(done),
                woke = self.parts.next(&self.media) => {
                    self.parts.on_woke(clock(), woke, &mut self.call);
                }
                stream = self.conn.accept_bi(), if alive => match stream {
                    Ok((send, recv)) => {
                        let kind = PeerStream::Bidirectional;
                        if self.call.admit_stream(clock(), kind) == StreamAdmission::Transfer {
                            tokio::spawn(crate::transfer::intake(
                                self.transfers.clone(),
                                self.events.clone(),
                                send,
                                recv,
                            ));
                        }
                    }
                    Err(_) => self.lost(clock()),
                },
                stream = self.conn.accept_uni(), if alive => match stream {
                    Ok(_) => {
                        self.call.admit_stream(clock(), PeerStream::Unidirectional);
                    }
                    Err(_) => self.lost(clock()),
                },
            }
        }
        // Callee, on a connection that resumes another call: that call takes it over.
        if let Some(to) = self.resume.handoff.take() {
            let leftover = self.call.take_leftover();
            let send = self.writer.close().await;
            let Driver { conn, recv, .. } = self;
            match send {
                Some(send) => {
                    let _ = to.send(Link {
                        conn,
                        send,
                        recv,
                        leftover,
                    });
                }
                None => {
                    debug!("the resuming connection's stream failed; not handed over");
                    conn.close(close::DONE, b"bye");
                }
            }
            return;
        }
        self.resume.dialing = None;
        self.resume.listed = None;
        // The media's final figures (a recording is finished off this task).
        let now = clock();
        self.parts.finish(now, &mut self.call, &self.media);
        self.media.close();
        // Orders that came as the call ended (a part started just then) are answered at
        // once, finished with what they had; later ones find the call's engine gone (and the
        // one they get instead ends at once: the call's datagrams are closed).
        if let Some(mut ctl) = self.ctl.take() {
            ctl.close();
            while let Ok(c) = ctl.try_recv() {
                self.parts.on_ctl(now, c, &mut self.call, &self.media);
            }
            self.parts.finish(now, &mut self.call, &self.media);
        }
        // The node is free for the next call as soon as this one is over.
        drop(self.slot.take());
        self.finish_pair_writes().await;
        self.linger().await;
        // Whatever the application has not read yet (at least `Ended`) is still its due.
        for ev in backlog {
            if self.events.send(ev).await.is_err() {
                break;
            }
        }
    }

    /// One step of the call's machine at `now`: whether the transport heard the peer (when
    /// the session's deadline has come: media datagrams count), time, the transport's state
    /// for video, then everything the machine hands out: audio's work and datagrams, bytes
    /// for the control stream (to the writer), events, video. Returns when the media needs
    /// the next step.
    fn step(&mut self, now: Instant, backlog: &mut VecDeque<CallEvent>) -> Option<Instant> {
        if self.call.session_timeout().is_some_and(|t| t <= now) {
            let heard = self.conn.stats().udp_rx.datagrams;
            if heard != self.resume.heard {
                self.resume.heard = heard;
                if !self.resume.dead {
                    self.call.handle_input(now, CallInput::Heard);
                }
            }
        }
        self.call.handle_input(now, CallInput::Timeout);
        self.parts.before(now, &mut self.call, &self.media);
        while let Some(out) = self.call.poll_output(now) {
            let media = match out {
                CallOutput::Control(bytes) => {
                    if self.resume.writable && !self.resume.dead {
                        self.writer.write(bytes);
                    }
                    continue;
                }
                CallOutput::Event(e) => {
                    if let Some(ev) = self.on_event(e) {
                        backlog.push_back(ev);
                    }
                    continue;
                }
                CallOutput::Audio(w) => MediaOutput::Audio(w),
                CallOutput::Transmit(d) => MediaOutput::Transmit(d),
                CallOutput::Frame(f) => MediaOutput::Frame(f),
            };
            self.parts.output(now, media, &mut self.call, &self.media);
        }
        let wake = self.parts.after(now, &mut self.call, &self.media);
        // A part started before the call is up waits with it: its clock does not run.
        wake.filter(|_| self.call.media_open())
    }

    /// A write to the control stream failed or timed out: the connection is gone, or the
    /// peer stopped reading while it stayed up.
    fn on_write_failed(&mut self, now: Instant) {
        self.resume.writable = false;
        if self.conn.close_reason().is_some() {
            self.lost(now);
        } else {
            self.call
                .handle_protocol_violation(now, Violation::StoppedReading);
        }
    }

    /// The connection (or its control stream) is gone.
    fn lost(&mut self, now: Instant) {
        self.resume.dead = true;
        self.call.handle_input(now, CallInput::ConnectionLost);
    }

    /// Caller, reconnecting: dial the peer again unless already dialling; a call that is
    /// back (on its old path) stops dialling.
    fn redial_if_needed(&mut self) {
        if !self.call.session().is_reconnecting() {
            self.resume.dialing = None;
            self.resume.marked = None;
            return;
        }
        if self.resume.marked.is_none() {
            self.resume.marked = Some(Reconnecting::new(self.shared.clone()));
        }
        if self.call.session().is_resuming() || self.resume.dialing.is_some() {
            return;
        }
        let Some(redial) = &self.resume.redial else {
            return;
        };
        let redial = redial.clone();
        let (last, tx) = (self.conn.remote_address(), self.resume.tx.clone());
        debug!("reconnecting: dialling the peer again");
        self.resume.dialing = Some(AbortOnDrop(tokio::spawn(async move {
            let _ = tx.send(redial.link(last).await);
        })));
    }

    /// A new connection for this call: the caller's redial, or one the listener handed
    /// over (callee). The call carries on there; the old connection is closed.
    fn on_new_link(&mut self, link: Link) {
        let now = clock();
        self.resume.dialing = None;
        // The session resumes there and the media forgets the old path, in one step.
        let resumed = match self.resume.token {
            Some(token) => self.call.handle_new_path(now, token),
            None => Err(extrasafe_core::session::SessionError::WrongState(
                "not resumable",
            )),
        };
        if resumed.is_err() {
            // The call came back on its old path meanwhile (or is over): not needed.
            link.conn.close(close::DONE, b"bye");
            return;
        }
        debug!("the call goes on over a new connection");
        let old = std::mem::replace(&mut self.conn, link.conn);
        // The old stream's writer ends with its connection; the new one gets its own.
        self.writer = Writer::spawn(link.send);
        self.recv = link.recv;
        old.close(close::DONE, b"moved");
        self.resume.dead = false;
        self.resume.writable = true;
        self.resume.heard = self.conn.stats().udp_rx.datagrams;
        self.media.replace(self.conn.clone());
        self.open_for_call();
        // Callee: what the caller sent right after its `Resume` (a hang-up, say).
        if !link.leftover.is_empty() {
            self.call
                .handle_input(now, CallInput::Control(&link.leftover));
        }
    }

    /// The call is up on this connection: room for file transfers (streams and windows).
    fn open_for_call(&self) {
        self.conn.set_max_concurrent_bi_streams(VarInt::from_u32(
            self.call.session().peer_stream_limit(),
        ));
        self.conn
            .set_receive_window(VarInt::from_u32(crate::node::CALL_WINDOW));
        self.conn
            .set_send_window(u64::from(crate::node::CALL_WINDOW));
    }

    /// The call is up: name it for a resume, and (callee) let the listener find it.
    fn make_resumable(&mut self) {
        if !self.call.session().can_resume() {
            return;
        }
        let mut token = [0u8; 32];
        if self
            .conn
            .export_keying_material(&mut token, RESUME_EXPORTER_LABEL, b"")
            .is_err()
        {
            return;
        }
        self.resume.token = Some(token);
        if self.call.session().role() == extrasafe_core::Role::Callee {
            self.shared
                .resumable
                .lock()
                .expect("resumable lock poisoned")
                .insert(token, (self.peer, self.resume.tx.clone()));
            self.resume.listed = Some(Listed(self.shared.clone(), token));
        }
    }

    /// Callee, on a new connection whose first words ask to resume the call `token` names:
    /// hand it over if that call is ours and the same peer's, else say the call is over.
    fn on_resume_requested(&mut self, now: Instant, token: [u8; 32]) {
        let found = self
            .shared
            .resumable
            .lock()
            .expect("resumable lock poisoned")
            .get(&token)
            .filter(|(peer, _)| *peer == self.peer)
            .map(|(_, tx)| tx.clone());
        match found {
            Some(tx) => self.resume.handoff = Some(tx),
            None => {
                debug!("asked to resume a call that is over or unknown");
                self.call.refuse_resume(now);
            }
        }
    }

    fn on_command(&mut self, cmd: Option<Command>) {
        let now = clock();
        match cmd {
            Some(Command::Accept) => {
                let _ = self.call.accept(now);
            }
            Some(Command::Decline) => {
                let _ = self.call.decline(now);
            }
            Some(Command::Hangup) => self.call.hangup(now),
            None => {
                self.commands_open = false;
                // A refused call stays quiet until the caller gives up, handle or not.
                if !self.call.session().is_quiet() {
                    self.call.hangup(now);
                }
            }
            Some(Command::Chat(text, reply)) => {
                let _ = reply.send(self.call.send_chat(now, &text).map(|_| ()));
            }
            Some(Command::LookOnLan(key)) => {
                if let Some(r) = &mut self.resume.redial {
                    r.lan = Some((self.peer, key));
                }
            }
            Some(Command::LookOnDht(node, rendezvous)) => {
                if let Some(r) = &mut self.resume.redial {
                    r.dht = Some(DhtRedial {
                        peer: self.peer,
                        node,
                        rendezvous,
                    });
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event) -> Option<CallEvent> {
        let now = clock();
        Some(match ev {
            Event::IncomingCall { .. } => return self.decide_incoming(now),
            Event::Ringing => CallEvent::Ringing,
            Event::Connected => {
                if let Some(addr) = self.held_observation.take() {
                    self.note_observed(addr);
                }
                self.open_for_call();
                self.media.start();
                self.make_resumable();
                self.start_pair_exchange();
                CallEvent::Connected {
                    after: now.saturating_duration_since(self.started),
                }
            }
            Event::Observed(addr) => {
                // We chose to call them; a caller is heard only once its call is answered.
                if self.call.session().role() == extrasafe_core::Role::Caller
                    || self.call.session().is_active()
                {
                    self.note_observed(addr);
                } else {
                    self.held_observation = Some(addr);
                }
                return None;
            }
            Event::PairChecks(theirs) => {
                self.pair.theirs = Some(theirs);
                self.maybe_ratchet();
                return None;
            }
            Event::PairStored(check) => {
                self.pair.their_stored = Some(check);
                self.maybe_confirm();
                return None;
            }
            Event::InboxChain(chain) => {
                self.pair.their_inbox = Some(chain);
                self.maybe_keep_inbox();
                return None;
            }
            Event::Reconnecting => CallEvent::Reconnecting,
            Event::Reconnected => {
                self.retry_pair_sends();
                CallEvent::Reconnected
            }
            Event::ResumeRequested(token) => {
                self.on_resume_requested(now, token);
                return None;
            }
            Event::VerificationCode(code) => {
                let _ = self.sas.set(code.clone());
                CallEvent::VerificationCode(code)
            }
            Event::Chat { text, .. } => CallEvent::Chat {
                text,
                at: SystemTime::now(),
            },
            Event::Ended(reason) => {
                debug!(?reason, "call ended");
                self.close_code = close_code(&reason);
                CallEvent::Ended(reason)
            }
            _ => return None,
        })
    }

    /// The call is up: look up (off this thread) what we hold for the peer.
    fn start_pair_exchange(&mut self) {
        let Some(roots) = self.shared.config.roots.clone() else {
            return;
        };
        let (peer, tx, shared) = (self.peer, self.pair.tx.clone(), self.shared.clone());
        self.pair.in_flight += 1;
        tokio::task::spawn_blocking(move || {
            let checks = roots.checks(&peer);
            let own = checks.is_some().then(|| shared.own_inbox()).flatten();
            let _ = tx.send(PairDone::Checks(checks, own));
        });
    }

    fn on_pair_done(&mut self, done: PairDone) {
        self.pair.in_flight = self.pair.in_flight.saturating_sub(1);
        self.apply_pair(done);
    }

    /// Says what a disk task of the root exchange found, or holds it while reconnecting.
    fn apply_pair(&mut self, done: PairDone) {
        let says = matches!(
            done,
            PairDone::Checks(Some(_), _) | PairDone::Stored(Some(_))
        );
        if says && self.call.session().is_reconnecting() {
            self.pair.unsent.push(done);
            return;
        }
        let now = clock();
        match done {
            PairDone::Checks(Some(checks), own) => {
                if self.call.send_pair_checks(now, checks).is_ok() {
                    self.pair.sent = true;
                    // Our inbox, as it is this epoch: from it they can compute the later ones.
                    if let Some(own) = own {
                        let epoch = extrasafe_core::inbox::inbox_epoch_of(unix_ms());
                        if let Ok(now_chain) = own.chain.at(epoch.max(own.chain.epoch())) {
                            if self.call.send_inbox_chain(now, &now_chain).is_ok() {
                                self.pair.told_ours = Some(own.since_ms);
                            }
                        }
                    }
                    self.maybe_ratchet();
                    self.maybe_keep_inbox();
                }
            }
            PairDone::Checks(None, _) | PairDone::Stored(None) | PairDone::Written => {}
            PairDone::Stored(Some(check)) => {
                if self.call.send_pair_stored(now, check).is_ok() {
                    self.pair.stored = Some(check);
                    self.maybe_confirm();
                }
            }
        }
    }

    /// The call is back: what the root exchange could not send while it reconnected.
    fn retry_pair_sends(&mut self) {
        for done in std::mem::take(&mut self.pair.unsent) {
            self.apply_pair(done);
        }
    }

    /// Both checks are known: ratchet and store (off this thread), once.
    fn maybe_ratchet(&mut self) {
        let Some(roots) = self.shared.config.roots.clone() else {
            return;
        };
        if !self.pair.sent {
            return;
        }
        let Some(theirs) = self.pair.theirs.take() else {
            return;
        };
        let mut exporter = zeroize::Zeroizing::new([0u8; 32]);
        if self
            .conn
            .export_keying_material(&mut exporter[..], RATCHET_EXPORTER_LABEL, b"")
            .is_err()
        {
            return;
        }
        let (peer, tx) = (self.peer, self.pair.tx.clone());
        self.pair.in_flight += 1;
        tokio::task::spawn_blocking(move || {
            let stored = match roots.ratchet(&peer, &theirs, &exporter) {
                Ok(check) => check,
                Err(e) => {
                    tracing::warn!(error = %e, "the new rendezvous root could not be stored");
                    None
                }
            };
            let _ = tx.send(PairDone::Stored(stored));
        });
    }

    /// We stored and the peer said it stored: erase the previous root (off this thread).
    fn maybe_confirm(&mut self) {
        let Some(roots) = self.shared.config.roots.clone() else {
            return;
        };
        if self.pair.stored.is_none() {
            return;
        }
        let Some(check) = self.pair.their_stored.take() else {
            return;
        };
        let (peer, tx) = (self.peer, self.pair.tx.clone());
        self.pair.in_flight += 1;
        tokio::task::spawn_blocking(move || {
            match roots.confirm(&peer, &check) {
                Ok(erased) => debug!(erased, "peer confirmed the new rendezvous root"),
                Err(e) => tracing::warn!(error = %e, "the old rendezvous root could not be erased"),
            }
            let _ = tx.send(PairDone::Written);
        });
    }

    /// The peer told its inbox chain and is a contact of ours: keep it (off this thread).
    fn maybe_keep_inbox(&mut self) {
        let Some(roots) = self.shared.config.roots.clone() else {
            return;
        };
        if !self.pair.sent {
            return;
        }
        let Some(chain) = self.pair.their_inbox.take() else {
            return;
        };
        let (peer, tx, told) = (self.peer, self.pair.tx.clone(), self.pair.told_ours);
        self.pair.in_flight += 1;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = roots.store_inbox(&peer, chain, told) {
                tracing::warn!(error = %e, "a contact's inbox chain could not be stored");
            }
            let _ = tx.send(PairDone::Written);
        });
    }

    /// Waits (up to two seconds) for the root exchange's disk writes still under way.
    async fn finish_pair_writes(&mut self) {
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        while self.pair.in_flight > 0 {
            tokio::select! {
                Some(_) = self.pair.rx.recv() => {
                    self.pair.in_flight = self.pair.in_flight.saturating_sub(1);
                }
                _ = &mut deadline => break,
            }
        }
    }

    fn note_observed(&self, addr: std::net::SocketAddr) {
        *self.shared.observed.lock().expect("observed lock poisoned") =
            Some((addr, std::time::Instant::now()));
    }

    /// Applies the node's policy to a ring; returns the event for the application, if any.
    /// Every refusal is the quiet one: the caller only ever learns "no answer".
    fn decide_incoming(&mut self, now: Instant) -> Option<CallEvent> {
        let peer = self.pending.as_ref().map(|c| c.info.peer)?;
        let ip = self.conn.remote_address().ip();
        if !self.shared.allow_ring(now, ip, peer) {
            debug!(peer = %peer.short(), "ring over the rate limit; refused quietly");
            let _ = self.call.decline(now);
            return None;
        }
        match self.shared.decide(&peer) {
            Decision::Refuse => {
                debug!(peer = %peer.short(), "caller refused by policy");
                let _ = self.call.decline(now);
                None
            }
            decision => {
                let Some(slot) = self.shared.claim_slot() else {
                    let _ = self.call.busy(now);
                    return None;
                };
                let call = self.pending.take().expect("checked above");
                if !self.shared.deliver(call) {
                    let _ = self.call.busy(now);
                    return None;
                }
                self.slot = Some(slot);
                let _ = self.call.alert(now);
                if decision == Decision::Accept {
                    let _ = self.call.accept(now);
                    None
                } else {
                    Some(CallEvent::Incoming)
                }
            }
        }
    }

    /// Lets the peer read our last frames, then closes. Both sides finish their stream when
    /// the session ends, so a crossing hang-up closes at once rather than after the linger;
    /// on a dead connection every step returns at once.
    async fn linger(&mut self) {
        // Our last frames are written first (a write that failed leaves nothing to finish).
        let mut send = self.writer.close().await;
        if let Some(s) = &mut send {
            let _ = s.finish();
        }
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn close_code(reason: &EndReason) -> (VarInt, &'static [u8]) {
    match reason {
        EndReason::ProtocolError(Violation::ExtraStream) => (close::STREAM, b"unexpected stream"),
        EndReason::ProtocolError(Violation::Silent) => (close::SILENT, b"silent"),
        EndReason::ProtocolError(_) | EndReason::IncompatibleVersion { .. } => {
            (close::PROTOCOL, b"protocol error")
        }
        _ => (close::DONE, b"bye"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_code_follows_the_kind_of_violation_not_its_wording() {
        let code = |v: Violation| close_code(&EndReason::ProtocolError(v)).0;
        assert_eq!(code(Violation::ExtraStream), close::STREAM);
        assert_eq!(code(Violation::Silent), close::SILENT);
        for v in [
            Violation::Malformed("opened an extra stream; in time".into()),
            Violation::Commitment,
            Violation::StoppedReading,
            Violation::Unexpected {
                what: "ring",
                state: "in a call",
            },
        ] {
            assert_eq!(code(v.clone()), close::PROTOCOL, "{v:?}");
        }
        assert_eq!(close_code(&EndReason::RemoteHangup).0, close::DONE);
    }
}
