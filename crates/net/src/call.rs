//! The application's handle on one call.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use extrasafe_core::session::SessionError;
use extrasafe_core::{EndReason, PeerId, Role};
use std::path::PathBuf;
use std::sync::Arc;

use extrasafe_core::transfer::offer::ValidOffer;
use tokio::sync::{mpsc, oneshot};

use crate::transfer::{
    disk, LocalFile, PendingOffer, TransferBook, TransferError, TransferHandle, TransferId,
};

use crate::error::CallError;

/// Facts about a call, fixed once the connection is secured.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// Who is on the other end (proved in the TLS handshake).
    pub peer: PeerId,
    /// The peer's address as seen by this node.
    pub remote: SocketAddr,
    /// Whether we called or were called.
    pub role: Role,
    /// Six digits both ends must show alike; different digits mean someone is in the middle.
    /// Settled by a commit-and-reveal inside the call (`core::sas`): read it with
    /// [`CallInfo::sas`] once the call rings (callee) or is answered (caller).
    pub(crate) sas: Arc<std::sync::OnceLock<String>>,
    /// The stable 60-digit safety number of this pair of identities.
    pub safety_number: String,
    /// The key-exchange group of this connection.
    pub key_exchange: &'static str,
    /// When the call began: `Node::call` for the caller, the first packet for the callee.
    pub started: Instant,
    /// Time to a secured connection (QUIC + TLS handshake), measured from `started`.
    pub handshake: Duration,
}

impl CallInfo {
    /// The verification code (`123 456`), once settled: before the callee's
    /// [`CallEvent::Incoming`] and before the caller's [`CallEvent::Ringing`].
    pub fn sas(&self) -> Option<String> {
        self.sas.get().cloned()
    }
}

/// What happens on a call, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// Callee with the `Ask` policy: someone is calling; answer with
    /// [`Call::accept`] or [`Call::decline`].
    Incoming,
    /// Caller: the other device is ringing.
    Ringing,
    /// The verification code is settled (`123 456`): show it. The caller has it by
    /// [`CallEvent::Ringing`]; the callee a round trip after its [`CallEvent::Incoming`].
    VerificationCode(String),
    /// The call is up.
    Connected {
        /// Time from `started` to this moment.
        after: Duration,
    },
    /// The call's path went dark or its connection was lost. The call is kept (chat waits;
    /// media goes on being sent, and is lost until a path is back: a datagram that arrives
    /// again is how a path that came back is noticed) while the caller dials the peer again, for up to the session's
    /// `reconnect_window` (90 s); then it ends with `PeerVanished`. Hanging up meanwhile
    /// works as ever. A file transfer under way stops (send it again: what arrived is kept).
    Reconnecting,
    /// The call has a path again: the old one came back, or the call resumed on a new
    /// connection to the same peer (proved as before; the verification code stays).
    Reconnected,
    /// A chat line from the peer. Sanitize with `extrasafe_core::text::for_display` before
    /// printing it to a terminal.
    Chat {
        /// The text.
        text: String,
        /// Local arrival time.
        at: SystemTime,
    },
    /// The peer offers files: answer with [`Call::accept_files`] or [`Call::decline_files`].
    /// Names are already checked (safe to create under a folder) but still the sender's words:
    /// defuse them with `extrasafe_core::text::for_display` before printing.
    FilesOffered {
        /// Names this offer in the answer.
        id: TransferId,
        /// The files.
        offer: ValidOffer,
    },
    /// The call is over.
    Ended(EndReason),
}

pub(crate) enum Command {
    Accept,
    Decline,
    Hangup,
    Chat(String, oneshot::Sender<Result<(), SessionError>>),
    /// Caller: if the call must reconnect, look for the peer on this network too.
    LookOnLan(extrasafe_core::lan::LanKey),
    /// Caller: if the path is lost, also look for the peer through the DHT.
    LookOnDht(crate::node::Handle, std::sync::Arc<crate::dht::Rendezvous>),
}

/// The call's path for media: unreliable QUIC datagrams on the call's own connection,
/// encrypted like everything else. Use it only once the call is connected.
///
/// Arriving datagrams are sorted by kind: audio (and anything unknown, so it is counted)
/// to [`MediaLink::recv`], video to [`MediaLink::recv_video`].
///
/// A call that reconnects moves its link to the new connection: the same `MediaLink` (and
/// every clone) then sends and receives there.
#[derive(Clone, Debug)]
pub struct MediaLink {
    path: Arc<MediaPath>,
    audio: Arc<tokio::sync::Mutex<mpsc::Receiver<bytes::Bytes>>>,
    video: Arc<tokio::sync::Mutex<mpsc::Receiver<bytes::Bytes>>>,
    /// The call's media engine (audio and video run on it).
    engine: Arc<crate::engine::EngineSlot>,
}

#[derive(Debug)]
struct MediaPath {
    /// The connection the call uses now.
    conn: std::sync::Mutex<quinn::Connection>,
    /// How many times the call moved to a new connection.
    moves: std::sync::atomic::AtomicU64,
    /// The queues' only strong senders, until the call is over: a sorting task holds weak
    /// ones, so the queues close when the call ends, whatever connection is still open.
    senders: std::sync::Mutex<Option<(mpsc::Sender<bytes::Bytes>, mpsc::Sender<bytes::Bytes>)>>,
}

/// QUIC's send buffer for datagrams (set in the transport configuration).
pub(crate) const DATAGRAM_SEND_BUFFER: usize = 256 * 1024;
/// Datagrams waiting for the audio task: a few seconds of audio.
const AUDIO_BACKLOG: usize = 256;
/// Datagrams waiting for the video task: more than a large keyframe.
const VIDEO_BACKLOG: usize = 4096;

/// A datagram could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("media datagram not sent: {0}")]
pub struct MediaSendError(String);

impl MediaLink {
    /// A link on `conn`; datagrams are read once [`MediaLink::start`] is called.
    pub(crate) fn new(conn: quinn::Connection) -> Self {
        let (atx, arx) = mpsc::channel(AUDIO_BACKLOG);
        let (vtx, vrx) = mpsc::channel(VIDEO_BACKLOG);
        Self {
            path: Arc::new(MediaPath {
                conn: std::sync::Mutex::new(conn),
                moves: std::sync::atomic::AtomicU64::new(0),
                senders: std::sync::Mutex::new(Some((atx, vtx))),
            }),
            audio: Arc::new(tokio::sync::Mutex::new(arx)),
            video: Arc::new(tokio::sync::Mutex::new(vrx)),
            engine: Arc::default(),
        }
    }

    /// The connection in use now.
    pub(crate) fn conn(&self) -> quinn::Connection {
        self.with_conn(quinn::Connection::clone)
    }

    /// `f` on the connection in use now (per datagram: no handle is cloned).
    fn with_conn<T>(&self, f: impl FnOnce(&quinn::Connection) -> T) -> T {
        f(&self.path.conn.lock().expect("media path lock"))
    }

    /// The call is up: sorts the connection's datagrams into the queues (one task, ending
    /// with the connection or the call). Until then QUIC holds what arrives.
    pub(crate) fn start(&self) {
        self.sort(self.conn());
    }

    /// The call resumed on `conn`: media goes there from now on.
    pub(crate) fn replace(&self, conn: quinn::Connection) {
        *self.path.conn.lock().expect("media path lock") = conn.clone();
        self.path
            .moves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sort(conn);
    }

    /// The call is over: the queues close (readers get `None`) once what is in them is read.
    pub(crate) fn close(&self) {
        self.path.senders.lock().expect("media path lock").take();
    }

    fn sort(&self, c: quinn::Connection) {
        let Some((atx, vtx)) = self
            .path
            .senders
            .lock()
            .expect("media path lock")
            .as_ref()
            .map(|(a, v)| (a.downgrade(), v.downgrade()))
        else {
            return;
        };
        tokio::spawn(async move {
            while let Ok(d) = c.read_datagram().await {
                let kind = extrasafe_core::video::datagram_kind(&d);
                let video = matches!(
                    kind,
                    Some(
                        extrasafe_core::video::wire::KIND_FRAGMENT
                            | extrasafe_core::video::wire::KIND_FEEDBACK
                    )
                );
                // The call is over: stop reading.
                let Some(tx) = (if video { vtx.upgrade() } else { atx.upgrade() }) else {
                    break;
                };
                // A full queue means its reader stalled or is absent: drop, as the network would.
                let _ = tx.try_send(d);
            }
        });
    }

    /// Where the call's media engine is kept.
    pub(crate) fn engine_slot(&self) -> Arc<crate::engine::EngineSlot> {
        self.engine.clone()
    }

    /// How many times the call has moved to a new connection (after a reconnect): media
    /// that measures its path starts measuring afresh when this changes.
    pub fn moves(&self) -> u64 {
        self.path.moves.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one datagram (dropped by the network or by congestion, never retransmitted).
    pub fn send(&self, datagram: &[u8]) -> Result<(), MediaSendError> {
        self.with_conn(|c| c.send_datagram(bytes::Bytes::copy_from_slice(datagram)))
            .map_err(|e| MediaSendError(e.to_string()))
    }
    /// The next audio (or unknown) datagram; `None` once the connection is closed.
    pub async fn recv(&self) -> Option<bytes::Bytes> {
        self.audio.lock().await.recv().await
    }
    /// An audio datagram that has already arrived, if any (never waits).
    pub fn try_recv(&self) -> Option<bytes::Bytes> {
        self.audio.try_lock().ok()?.try_recv().ok()
    }
    /// The next video datagram; `None` once the connection is closed.
    pub async fn recv_video(&self) -> Option<bytes::Bytes> {
        self.video.lock().await.recv().await
    }
    /// Bytes of datagrams queued in QUIC and not yet sent.
    pub fn datagrams_queued(&self) -> usize {
        DATAGRAM_SEND_BUFFER.saturating_sub(self.with_conn(|c| c.datagram_send_buffer_space()))
    }
    /// QUIC's congestion window, bytes.
    pub fn cwnd(&self) -> u64 {
        self.with_conn(|c| c.stats().path.cwnd)
    }
    /// Largest datagram the path takes now.
    pub fn max_datagram(&self) -> Option<usize> {
        self.with_conn(|c| c.max_datagram_size())
    }
    /// Current round-trip estimate.
    pub fn rtt(&self) -> Duration {
        self.with_conn(|c| c.rtt())
    }
    /// The peer's address: the direct path in use.
    pub fn remote(&self) -> SocketAddr {
        self.with_conn(|c| c.remote_address())
    }
    /// UDP bytes sent on this connection so far (all QUIC overhead included).
    pub fn udp_tx_bytes(&self) -> u64 {
        self.with_conn(|c| c.stats().udp_tx.bytes)
    }
}

/// A call in progress. Dropping it hangs up.
#[derive(Debug)]
pub struct Call {
    pub(crate) info: CallInfo,
    pub(crate) media: MediaLink,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) events: mpsc::Receiver<CallEvent>,
    pub(crate) transfers: Arc<TransferBook>,
}

impl Call {
    /// Facts about this call.
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The next event; `None` after `Ended` was delivered.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// Tests only: the token that names this call on a new connection (the exporter of
    /// the connection it uses now: the first one, unless it reconnected).
    #[doc(hidden)]
    pub fn resume_token_for_tests(&self) -> [u8; 32] {
        let mut token = [0u8; 32];
        self.media
            .conn()
            .export_keying_material(
                &mut token,
                extrasafe_core::session::RESUME_EXPORTER_LABEL,
                b"",
            )
            .expect("a TLS 1.3 connection exports 32 bytes");
        token
    }

    /// The media path of this call. Send nothing on it before `Connected`.
    pub fn media(&self) -> MediaLink {
        self.media.clone()
    }

    /// Answers an incoming call.
    pub fn accept(&self) {
        let _ = self.commands.send(Command::Accept);
    }

    /// Declines an incoming call; the caller learns only "declined".
    pub fn decline(&self) {
        let _ = self.commands.send(Command::Decline);
    }

    /// Ends the call (or cancels it while ringing).
    pub fn hangup(&self) {
        let _ = self.commands.send(Command::Hangup);
    }

    /// Caller: should the call have to reconnect, look for the peer on this network too
    /// (with `key`, the tag key of the pair), besides the addresses the call used.
    pub(crate) fn look_on_lan(&self, key: extrasafe_core::lan::LanKey) {
        let _ = self.commands.send(Command::LookOnLan(key));
    }

    /// Caller: should the call lose its path, the peer is also looked for through the DHT
    /// (see `driver::DhtRedial`).
    pub(crate) fn look_on_dht(
        &self,
        node: crate::node::Handle,
        rendezvous: std::sync::Arc<crate::dht::Rendezvous>,
    ) {
        let _ = self.commands.send(Command::LookOnDht(node, rendezvous));
    }

    /// Offers `files` (see [`crate::transfer::prepare`]) to the peer on a stream of their own;
    /// the peer answers, then the data flows. Call only once connected.
    pub async fn send_files(&self, files: Vec<LocalFile>) -> Result<TransferHandle, TransferError> {
        let (send, recv) = self
            .media
            .conn()
            .open_bi()
            .await
            .map_err(|e| TransferError::Connection(e.to_string()))?;
        // The control stream (chat, pings, hang-up) goes first when both have data.
        let _ = send.set_priority(-1);
        let id = self.transfers.next_id();
        Ok(crate::transfer::start(id, |progress, cancel| {
            crate::transfer::send(send, recv, files, progress, cancel)
        }))
    }

    /// Takes offer `id` into `dir` (which must exist). Content already there from an earlier,
    /// interrupted attempt at the same files is verified and kept; the rest must fit in the
    /// free space, or this fails and the offer stays open (decline it, or free space and try
    /// again).
    pub fn accept_files(
        &self,
        id: TransferId,
        dir: PathBuf,
    ) -> Result<TransferHandle, TransferError> {
        let folder = |why: String| TransferError::Folder {
            path: dir.clone(),
            why,
        };
        if !std::fs::metadata(&dir)
            .map_err(|e| folder(e.to_string()))?
            .is_dir()
        {
            return Err(folder("not a folder".into()));
        }
        let mut pending = self.transfers.pending.lock().expect("transfer book");
        let offer = &pending
            .get(&id)
            .ok_or(TransferError::NoSuchOffer(id))?
            .offer;
        let resume = disk::resumable(&dir, offer);
        let need = offer.total - resume.iter().sum::<u64>();
        let free = disk::free_space(&dir).map_err(|e| folder(e.to_string()))?;
        // Keep a margin: the file system needs room of its own.
        if need.saturating_add(16 << 20) > free {
            return Err(TransferError::NoSpace { need, free });
        }
        let taken = pending.remove(&id).ok_or(TransferError::NoSuchOffer(id))?;
        drop(pending);
        Ok(crate::transfer::start(id, |progress, cancel| {
            crate::transfer::receive(taken, dir, resume, progress, cancel)
        }))
    }

    /// Declines offer `id`: nothing is written, the sender learns "declined".
    pub async fn decline_files(&self, id: TransferId) -> Result<(), TransferError> {
        let taken = self
            .transfers
            .pending
            .lock()
            .expect("transfer book")
            .remove(&id)
            .ok_or(TransferError::NoSuchOffer(id))?;
        let PendingOffer {
            mut send, mut rx, ..
        } = taken;
        let bytes = rx.decline();
        let _ = send.write_all(&bytes).await;
        let _ = send.finish();
        Ok(())
    }

    /// Sends a chat line; fails if the call is not active or the line is too long.
    pub async fn send_chat(&self, text: impl Into<String>) -> Result<(), CallError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Chat(text.into(), tx))
            .map_err(|_| CallError::Session(SessionError::WrongState("over")))?;
        rx.await
            .map_err(|_| CallError::Session(SessionError::WrongState("over")))?
            .map_err(CallError::from)
    }
}
