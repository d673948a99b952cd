//! The node: one UDP socket, listening and calling.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use extrasafe_core::access::{AccessKey, Gate, TicketSecret};
use extrasafe_core::call::CallMachine;
use extrasafe_core::sas::{safety_number, SAS_EXPORTER_LABEL, SAS_EXPORTER_LEN};
use extrasafe_core::{Identity, PeerId, Role, SessionConfig, Ticket};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::sync::{mpsc, watch, Mutex, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::call::{Call, CallInfo};
use crate::driver::{close, Driver};
use crate::error::{CallError, HandshakeFailure, NodeError};
use crate::probe_socket::canonical;
use crate::tls::{self, PinObservation};

/// Who may ring this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Anyone who proves a key; answered automatically.
    Anyone,
    /// Anyone; the application asks its user ([`crate::CallEvent::Incoming`]).
    Ask,
    /// Only these peers, answered automatically; everyone else is declined.
    Only(Vec<PeerId>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Accept,
    Ask,
    Refuse,
}

/// How a node listens and calls.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// UDP address to bind. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Who may ring.
    pub policy: AcceptPolicy,
    /// Session timers.
    pub session: SessionConfig,
    /// Answer calls. A node that only places calls (`false`) runs a client-only endpoint:
    /// nobody who learns its address can connect to it and learn its key.
    pub listen: bool,
    /// Connections handled at once; further ones are refused before any crypto work. Once
    /// half are taken, new callers must first prove their address (a QUIC Retry, one extra
    /// round trip), so spoofed packets cannot fill the rest.
    pub max_connections: usize,
    /// Connections handled at once from one source: an IPv4 address, or an IPv6 /64.
    pub max_connections_per_ip: usize,
    /// Longest a QUIC/TLS handshake may take (either side).
    pub handshake_timeout: Duration,
    /// A QUIC connection that hears nothing for this long is closed. A call that loses its
    /// connection this way is not over: it reconnects (see the session's `reconnect_window`).
    pub idle_timeout: Duration,
    /// Congestion controller for this node's connections.
    pub congestion: Congestion,
    /// Hole-punching timers.
    pub punch: extrasafe_core::punch::PunchConfig,
    /// The secret of our ticket: callers who hold it are answered. `None`: only contacts
    /// are. The default is a random secret, good for this run only.
    pub ticket_secret: Option<TicketSecret>,
    /// Our contacts and the pair key we share with each: they are answered (and our calls
    /// to them prove it), whatever ticket they hold.
    pub contacts: Vec<(PeerId, AccessKey)>,
    /// Rings one source may make in a row before it is refused quietly (a source: anyone's
    /// IPv4 address or IPv6 /64, and each caller's identity; contacts count by identity only).
    pub ring_burst: u32,
    /// One more ring per source this often.
    pub ring_refill: Duration,
    /// Our contacts' rendezvous roots: in each call with a contact both sides replace the
    /// pair's root (forward secrecy for the records). `None`: roots are left alone.
    pub roots: Option<Arc<crate::roots::Roots>>,
    /// Our inbox chain (`extrasafe_core::inbox`), told to contacts in calls with them (with
    /// [`Self::roots`], which says who is a contact).
    pub inbox: Option<extrasafe_core::inbox::InboxChain>,
}

/// QUIC congestion controllers (see bench/RESULTS.md for how they fare on a lossy link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), loss-based: a little faster on loopback and short loss-free paths,
    /// but crawls (4 % of the link) where packets are lost at random over a real delay.
    Cubic,
    /// NewReno (RFC 9002's default), loss-based, like CUBIC.
    NewReno,
    /// BBR, model-based: does not read random loss as congestion (87 % of a 200 Mbit/s,
    /// 40 ms, 1 %-loss link against 4 % for CUBIC), so the default.
    #[default]
    Bbr,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Self::Cubic),
            "newreno" => Ok(Self::NewReno),
            "bbr" => Ok(Self::Bbr),
            other => Err(format!(
                "unknown congestion controller `{other}` (cubic, newreno, bbr)"
            )),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            policy: AcceptPolicy::Ask,
            session: SessionConfig::default(),
            listen: true,
            max_connections: 32,
            max_connections_per_ip: 8,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            congestion: Congestion::default(),
            punch: Default::default(),
            ticket_secret: Some(crate::gate::random_ticket_secret()),
            contacts: Vec::new(),
            ring_burst: extrasafe_core::access::RING_BURST,
            ring_refill: extrasafe_core::access::RING_REFILL,
            roots: None,
            inbox: None,
        }
    }
}

pub(crate) struct Shared {
    peer_id: PeerId,
    /// Signs our presence records, when we have an inbox chain (a copy of the identity:
    /// the TLS key above is the same secret).
    presence_signer: Option<Identity>,
    key: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
    /// Peers whose connection to us was just secured (ends an answering punch).
    pub(crate) secured: tokio::sync::broadcast::Sender<PeerId>,
    /// For connections we open (the callee may open no stream).
    transport: Arc<TransportConfig>,
    pub(crate) config: NodeConfig,
    in_call: AtomicBool,
    /// Call drivers still running (a driver outlives its call while it lingers to deliver
    /// the last words): shutting down waits for them.
    pub(crate) drivers: std::sync::atomic::AtomicUsize,
    incoming: mpsc::Sender<Call>,
    shutdown: watch::Sender<bool>,
    /// Our address as the last peer saw it, and when it told us.
    pub(crate) observed: StdMutex<Option<(SocketAddr, Instant)>>,
    /// The secret our tickets carry.
    ticket_secret: StdMutex<Option<TicketSecret>>,
    /// Rings per source.
    rings: StdMutex<extrasafe_core::access::RingLimiter>,
    /// The socket, whose gate knows our contacts (their rings count by identity only).
    socket: Arc<crate::probe_socket::ProbeSocket>,
    /// Calls we were called in that can resume on a new connection: their token, the peer,
    /// and where to hand such a connection.
    pub(crate) resumable: StdMutex<HashMap<[u8; 32], Resumable>>,
    /// How many of our calls are reconnecting now: while any is, the DHT service measures
    /// our addresses on every round (the path may have been lost because they changed), so
    /// that the presence a reconnecting contact reads says where we are now.
    pub(crate) reconnecting: watch::Sender<usize>,
}

/// A call that can be resumed: its peer, and where a new connection for it goes.
pub(crate) type Resumable = (PeerId, mpsc::UnboundedSender<crate::driver::Link>);

/// Marks the node as in a call until dropped.
pub(crate) struct SlotGuard(Arc<Shared>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.in_call.store(false, Ordering::Release);
    }
}

impl Shared {
    /// Our inbox chain as it is now: the one on disk (a removed contact renews it, possibly
    /// in another process), else the one configured (made at time 0: every contact who told
    /// us theirs holds it).
    pub(crate) fn own_inbox(&self) -> Option<extrasafe_core::inbox::OwnInbox> {
        self.config
            .roots
            .as_ref()
            .and_then(|r| r.own_inbox())
            .or_else(|| {
                self.config
                    .inbox
                    .clone()
                    .map(|chain| extrasafe_core::inbox::OwnInbox {
                        chain,
                        since_ms: 0,
                        previous: None,
                    })
            })
    }

    pub(crate) fn decide(&self, peer: &PeerId) -> Decision {
        match &self.config.policy {
            AcceptPolicy::Anyone => Decision::Accept,
            AcceptPolicy::Ask => Decision::Ask,
            AcceptPolicy::Only(list) if list.contains(peer) => Decision::Accept,
            AcceptPolicy::Only(_) => Decision::Refuse,
        }
    }

    /// True if a ring from `ip` by `peer` is within the rate limit (and counts it).
    pub(crate) fn allow_ring(&self, now: Instant, ip: IpAddr, peer: PeerId) -> bool {
        let contact = self
            .socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .contact_key(&peer)
            .is_some();
        self.rings
            .lock()
            .expect("ring limiter lock poisoned")
            .allow(now, ip, peer, contact)
    }

    pub(crate) fn claim_slot(self: &Arc<Self>) -> Option<SlotGuard> {
        self.in_call
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SlotGuard(self.clone()))
    }

    /// Hands an incoming call to the application; false if it has a backlog.
    pub(crate) fn deliver(&self, call: Call) -> bool {
        self.incoming.try_send(call).is_ok()
    }
}

/// A running EXTRA SAFE node.
pub struct Node {
    endpoint: Endpoint,
    pub(crate) socket: Arc<crate::probe_socket::ProbeSocket>,
    pub(crate) shared: Arc<Shared>,
    incoming: Mutex<mpsc::Receiver<Call>>,
    accept_task: tokio::task::JoinHandle<()>,
    /// Follows the contact list on disk (see [`follow_removals`]).
    removals: Option<tokio::task::JoinHandle<()>>,
}

/// What finding and reaching a peer needs of a node (its sockets and shared state), held
/// without the node itself: a call that must find its peer again keeps one.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) endpoint: Endpoint,
    pub(crate) socket: Arc<crate::probe_socket::ProbeSocket>,
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The bound UDP address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// See [`Node::observed_by_peer`].
    pub(crate) fn observed_by_peer(&self) -> Option<SocketAddr> {
        let seen = *self.shared.observed.lock().expect("observed lock poisoned");
        seen.filter(|(_, at)| at.elapsed() < Duration::from_secs(600))
            .map(|(a, _)| a)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.shared.peer_id)
            .finish_non_exhaustive()
    }
}

/// Flow-control window of each stream: enough for a file transfer at 400 MB/s over a 40 ms
/// round trip.
pub(crate) const TRANSFER_WINDOW: u32 = 16 * 1024 * 1024;

/// Flow-control window of a connected call: room for every transfer at once plus one window
/// to spare, so file data can never take all of it and stall the control stream (chat,
/// pings, hang-up) behind a slow link or a slow disk.
pub(crate) const CALL_WINDOW: u32 = TRANSFER_WINDOW * (crate::transfer::MAX_TRANSFERS + 1);

/// Largest UDP payload we offer to receive and probe for (loopback carries 65,535-byte IP
/// packets; an Ethernet path stops discovery at its own limit).
const MAX_UDP_PAYLOAD: u16 = 65_000;

/// Transport settings; `peer_streams` is how many bidirectional streams the other side may
/// open: one (the control stream) when it calls us, none when we call it.
fn transport_config(peer_streams: u32, congestion: Congestion, idle: Duration) -> TransportConfig {
    let mut t = TransportConfig::default();
    match congestion {
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        Congestion::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()))
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
    };
    // Anything beyond the control stream is refused by flow control.
    t.max_concurrent_bidi_streams(peer_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(idle)
            .unwrap_or_else(|_| IdleTimeout::from(quinn::VarInt::from_u32(30_000))),
    ));
    // Session-level pings keep NAT mappings alive and measure RTT; no transport keep-alive.
    t.keep_alive_interval(None);
    // Streams may take a lot (a file transfer needs large windows to fill a fast path), but
    // the connection as a whole only 256 KiB until the call is up: before that, a peer can
    // make us hold little. Connected, the call raises it (see the driver).
    t.stream_receive_window(quinn::VarInt::from_u32(TRANSFER_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(256 * 1024));
    t.send_window(256 * 1024);
    // Path MTU discovery searches up to what the link really carries: 1452 on Ethernet, more
    // on jumbo-frame LANs and loopback, where bigger packets cost far less CPU per byte.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    // Media datagrams: a large video keyframe may arrive at once; the sorting task takes
    // them off at once. Video keeps its own queue and leaves QUIC's nearly empty, so audio
    // never waits behind it.
    t.datagram_receive_buffer_size(Some(1024 * 1024));
    t.datagram_send_buffer_size(crate::call::DATAGRAM_SEND_BUFFER);
    t
}

impl Node {
    /// Binds the UDP socket and starts answering. Must run inside a tokio runtime.
    pub async fn bind(identity: &Identity, config: NodeConfig) -> Result<Self, NodeError> {
        let warm = tokio::task::spawn_blocking(tls::warm_up);
        let provider = tls::provider();
        let key = tls::certified_key(identity)?;
        let transport = Arc::new(transport_config(0, config.congestion, config.idle_timeout));
        let bind_error = |source| NodeError::Bind {
            addr: config.bind,
            source,
        };
        let server = if config.listen {
            let server_tls = tls::server_config(key.clone(), provider.clone())?;
            let server_quic = QuicServerConfig::try_from(server_tls)
                .map_err(|e| NodeError::Tls(rustls::Error::General(e.to_string())))?;
            let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
            server.transport_config(Arc::new(transport_config(
                1,
                config.congestion,
                config.idle_timeout,
            )));
            server.max_incoming(config.max_connections * 2);
            Some(server)
        } else {
            None
        };
        let socket = std::net::UdpSocket::bind(config.bind).map_err(bind_error)?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let local = crate::gate::new_local_key();
        let mut gate = Gate::new(local.clone(), config.listen);
        gate.set_ticket(
            config
                .ticket_secret
                .as_ref()
                .map(|s| s.access_key(&identity.peer_id())),
        );
        gate.set_contacts(config.contacts.clone());
        let socket = Arc::new(crate::probe_socket::ProbeSocket::new(
            quinn::Runtime::wrap_udp_socket(&*runtime, socket).map_err(bind_error)?,
            gate,
        ));
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.cid_generator(move || Box::new(crate::gate::GateCids(local.clone())));
        endpoint_config
            .max_udp_payload_size(MAX_UDP_PAYLOAD)
            .expect("a valid UDP payload size");
        // Probes share the socket and are told apart by that bit: QUIC packets must keep it.
        endpoint_config.grease_quic_bit(false);
        let endpoint =
            Endpoint::new_with_abstract_socket(endpoint_config, server, socket.clone(), runtime)
                .map_err(bind_error)?;
        let (tx, rx) = mpsc::channel(4);
        let (shutdown, _) = watch::channel(false);
        let config_ticket = config.ticket_secret.clone();
        let config_rings = (config.ring_burst, config.ring_refill);
        let shared = Arc::new(Shared {
            peer_id: identity.peer_id(),
            presence_signer: (config.inbox.is_some()
                || config
                    .roots
                    .as_ref()
                    .is_some_and(|r| r.own_inbox().is_some()))
            .then(|| Identity::from_seed(&identity.seed())),
            key,
            provider,
            secured: tokio::sync::broadcast::channel(4).0,
            transport,
            config,
            in_call: AtomicBool::new(false),
            drivers: std::sync::atomic::AtomicUsize::new(0),
            incoming: tx,
            shutdown,
            observed: StdMutex::new(None),
            ticket_secret: StdMutex::new(config_ticket),
            rings: StdMutex::new(extrasafe_core::access::RingLimiter::new(
                config_rings.0,
                config_rings.1,
            )),
            socket: socket.clone(),
            reconnecting: watch::channel(0).0,
            resumable: StdMutex::new(HashMap::new()),
        });
        let accept_task = if shared.config.listen {
            tokio::spawn(accept_loop(endpoint.clone(), shared.clone()))
        } else {
            tokio::spawn(async {})
        };
        // A contact removed from the list on disk (by `contact remove` beside a listener)
        // is no longer answered as a contact.
        let removals = match (&shared.config.roots, shared.config.listen) {
            (Some(roots), true) => {
                Some(tokio::spawn(follow_removals(roots.clone(), socket.clone())))
            }
            _ => None,
        };
        let _ = warm.await;
        Ok(Self {
            endpoint,
            socket,
            shared,
            incoming: Mutex::new(rx),
            accept_task,
            removals,
        })
    }

    /// This node's public identity.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Our call socket's address as a peer saw it in the last 10 minutes (its observed-address
    /// message, sent inside the authenticated session).
    pub fn observed_by_peer(&self) -> Option<SocketAddr> {
        self.handle().observed_by_peer()
    }

    /// The node's sockets and shared state, for what outlives a borrow of the node.
    pub(crate) fn handle(&self) -> Handle {
        Handle {
            endpoint: self.endpoint.clone(),
            socket: self.socket.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// A ticket naming this node, the secret that makes it answer, and the addresses it can
    /// be reached at.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            peer: self.peer_id(),
            secret: self.ticket_secret(),
            addrs: crate::addrs::reachable(self.local_addr()),
        }
    }

    fn ticket_secret(&self) -> Option<TicketSecret> {
        self.shared
            .ticket_secret
            .lock()
            .expect("ticket lock poisoned")
            .clone()
    }

    /// From now on only holders of a ticket with `secret` (or none, with `None`) are
    /// answered; calls already up go on.
    pub fn set_ticket_secret(&self, secret: Option<TicketSecret>) {
        self.socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .set_ticket(secret.as_ref().map(|s| s.access_key(&self.peer_id())));
        *self
            .shared
            .ticket_secret
            .lock()
            .expect("ticket lock poisoned") = secret;
    }

    /// Our inbox chain and the identity that signs our presence, if we have one.
    pub(crate) fn own_inbox(&self) -> Option<(extrasafe_core::inbox::OwnInbox, &Identity)> {
        Some((
            self.shared.own_inbox()?,
            self.shared.presence_signer.as_ref()?,
        ))
    }

    /// Our contacts' rendezvous roots, which this node's calls replace (see
    /// [`NodeConfig::roots`]).
    pub fn roots(&self) -> Option<Arc<crate::roots::Roots>> {
        self.shared.config.roots.clone()
    }

    /// From now on these contacts are answered (the list replaces the previous one).
    pub fn set_contacts(&self, contacts: Vec<(PeerId, AccessKey)>) {
        self.socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .set_contacts(contacts);
    }

    /// Whether a first flight proving `peer`'s pair key is let in now.
    #[doc(hidden)]
    pub fn answers_contact(&self, peer: &PeerId) -> bool {
        self.socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .contact_key(peer)
            .is_some()
    }

    /// Answers first flights that prove `key` as a ticket key instead of our own ticket's:
    /// what a modified node holding someone else's ticket would do (tests play such
    /// impostors with it).
    #[doc(hidden)]
    pub fn answer_ticket_key(&self, key: Option<AccessKey>) {
        self.socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .set_ticket(key);
    }

    /// Datagrams the gate dropped unanswered, by reason (for tests and diagnostics).
    pub fn dropped(&self, reason: extrasafe_core::access::DropReason) -> u64 {
        self.socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .dropped(reason)
    }

    /// True while a call (ringing or active) holds this node.
    pub fn in_call(&self) -> bool {
        self.shared.in_call.load(Ordering::Acquire)
    }

    /// True while a call `peer` placed to us is up or reconnecting: a punch we answer for
    /// them then belongs to that call finding its way back, not to a new call.
    pub fn answered_call_with(&self, peer: &PeerId) -> bool {
        self.shared
            .resumable
            .lock()
            .expect("resumable lock poisoned")
            .values()
            .any(|(p, _)| p == peer)
    }

    /// A ticket naming this node at one given address.
    pub fn ticket_for(&self, addr: SocketAddr) -> Ticket {
        Ticket {
            peer: self.peer_id(),
            secret: self.ticket_secret(),
            addrs: vec![addr],
        }
    }

    /// The next incoming call that passed the policy. With [`AcceptPolicy::Ask`] it starts with
    /// [`crate::CallEvent::Incoming`]; otherwise it is already answered.
    pub async fn incoming(&self) -> Option<Call> {
        if !self.shared.config.listen {
            return None;
        }
        self.incoming.lock().await.recv().await
    }

    /// Calls the peer named in `ticket`, trying its addresses in parallel (each a little after
    /// the previous), and returns once the connection is secured and the ring is sent.
    pub async fn call(&self, ticket: &Ticket) -> Result<Call, CallError> {
        self.call_with(ticket, None).await
    }

    /// [`Node::call`], proving `contact` (the pair key of a rendezvous) in the first flight
    /// instead of the key of our contact list.
    pub(crate) async fn call_with(
        &self,
        ticket: &Ticket,
        contact: Option<AccessKey>,
    ) -> Result<Call, CallError> {
        if ticket.peer == self.shared.peer_id {
            return Err(CallError::CallingSelf);
        }
        if ticket.addrs.is_empty() {
            return Err(CallError::NoAddress);
        }
        if *self.shared.shutdown.borrow() {
            return Err(CallError::Closed);
        }
        let slot = self.shared.claim_slot().ok_or(CallError::AlreadyInCall)?;
        let started = Instant::now();
        let (conn, redial) = self.connect(ticket, contact).await?;
        let handshake = started.elapsed();
        let (send, recv) = conn.open_bi().await.map_err(|e| {
            HandshakeFailure::from_connection(&e)
                .unwrap_or_else(|| HandshakeFailure::Lost(e.to_string()))
        })?;
        let info = call_info(
            &conn,
            ticket.peer,
            self.shared.peer_id,
            Role::Caller,
            started,
            handshake,
        );
        let mut session = CallMachine::new(
            Role::Caller,
            self.shared.config.session.clone(),
            Instant::now(),
        );
        session.tell_observed(Instant::now(), canonical(conn.remote_address()));
        let (call, driver) = assemble(&self.shared, conn, send, recv, session, info);
        let mut driver = driver;
        driver.slot = Some(slot);
        driver.resume.redial = Some(redial);
        tokio::spawn(driver.run());
        Ok(call)
    }

    /// Connects to the peer of `ticket`; also returns how to connect to it again (for a
    /// call that reconnects).
    async fn connect(
        &self,
        ticket: &Ticket,
        contact: Option<AccessKey>,
    ) -> Result<(Connection, crate::driver::Redial), CallError> {
        let observation = Arc::new(PinObservation::default());
        let tls = tls::client_config(
            self.shared.key.clone(),
            self.shared.provider.clone(),
            ticket.peer,
            observation.clone(),
        )
        .map_err(HandshakeFailure::from)?;
        let quic =
            QuicClientConfig::try_from(tls).map_err(|e| HandshakeFailure::Local(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(self.shared.transport.clone());
        // The first flight proves what we hold: their ticket's secret, our pair key.
        let contact_key = contact.or_else(|| {
            self.socket
                .gate
                .lock()
                .expect("gate lock poisoned")
                .contact_key(&ticket.peer)
                .cloned()
        });
        let ticket_key = ticket.secret.as_ref().map(|s| s.access_key(&ticket.peer));
        client.initial_dst_cid_provider(crate::gate::dcid_provider(ticket_key, contact_key));

        let timeout = self.shared.config.handshake_timeout;
        // A socket bound to IPv4 cannot reach IPv6 addresses (a dual-stack IPv6 socket reaches
        // both); skip what this socket cannot send to instead of failing on it.
        let v4_only = self.local_addr().is_ipv4();
        let usable: Vec<SocketAddr> = ticket
            .addrs
            .iter()
            .copied()
            .filter(|a| !(v4_only && a.is_ipv6()))
            .collect();
        if usable.is_empty() {
            return Err(CallError::NoAddress);
        }
        let redial = crate::driver::Redial {
            endpoint: self.endpoint.clone(),
            client: client.clone(),
            addrs: usable.clone(),
            attempt: timeout,
            lan: None,
            dht: None,
        };
        let mut attempts = JoinSet::new();
        for (i, addr) in usable.iter().copied().enumerate() {
            let endpoint = self.endpoint.clone();
            let client = client.clone();
            attempts.spawn(async move {
                // Stagger so the preferred address usually wins without wasted handshakes.
                // (No zero sleep for the first: a timer rounds up to the next millisecond.)
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(250) * i as u32).await;
                }
                let connecting = endpoint
                    .connect_with(client, addr, "extrasafe")
                    .map_err(|e| {
                        debug!(error = %e, "connection attempt not started");
                        None
                    })?;
                // Only an answer from the other side says more than "unreachable".
                connecting.await.map_err(|e| {
                    debug!(error = %e, "connection attempt failed");
                    HandshakeFailure::from_connection(&e)
                })
            });
        }
        let mut refusal = None;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = attempts.join_next() => match next {
                    Some(Ok(Ok(conn))) => return Ok((conn, redial)),
                    // An answer that refused us; silence or a panicked attempt says nothing.
                    Some(Ok(Err(Some(h)))) => refusal = Some(h),
                    Some(Ok(Err(None))) | Some(Err(_)) => {}
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        if let Some(actual) = observation.proved().filter(|p| *p != ticket.peer) {
            return Err(CallError::WrongPeer {
                expected: ticket.peer,
                actual,
            });
        }
        match refusal {
            Some(e) => Err(CallError::Handshake(e)),
            None => Err(CallError::Unreachable {
                tried: usable.len(),
                secs: timeout.as_secs(),
            }),
        }
    }

    /// Hangs up every call politely, stops listening and waits (briefly) until the peers
    /// were told.
    pub async fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        self.accept_task.abort();
        if let Some(t) = &self.removals {
            t.abort();
        }
        // Give drivers time to send their hang-up and linger: closing the endpoint first
        // would throw away a hang-up still waiting to be sent.
        let _ = tokio::time::timeout(Duration::from_millis(1500), async {
            while self.shared.drivers.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        self.endpoint.close(close::DONE, b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.accept_task.abort();
        if let Some(t) = &self.removals {
            t.abort();
        }
    }
}

fn call_info(
    conn: &Connection,
    peer: PeerId,
    me: PeerId,
    role: Role,
    started: Instant,
    handshake: Duration,
) -> CallInfo {
    CallInfo {
        peer,
        remote: conn.remote_address(),
        role,
        sas: Default::default(),
        safety_number: safety_number(&me, &peer),
        key_exchange: tls::KEY_EXCHANGE,
        started,
        handshake,
    }
}

/// Starts the verification code of `session` from this connection's exporter and a fresh
/// nonce.
fn begin_verification(conn: &Connection, session: &mut CallMachine) {
    let mut exporter = [0u8; SAS_EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, SAS_EXPORTER_LABEL, b"")
        .expect("a completed TLS 1.3 handshake can export 32 bytes");
    session.begin_verification(Instant::now(), exporter, crate::gate::random());
}

fn assemble(
    shared: &Arc<Shared>,
    conn: Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    mut session: CallMachine,
    info: CallInfo,
) -> (Call, Driver) {
    begin_verification(&conn, &mut session);
    let media = crate::call::MediaLink::new(conn.clone());
    // The call's media runs on its driver's task, beside the session, in one machine.
    let ctl = media.engine_slot().install();
    let sas = info.sas.clone();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let started = info.started;
    let peer = info.peer;
    let transfers = Arc::new(crate::transfer::TransferBook::default());
    let call = Call {
        info,
        media,
        commands: cmd_tx,
        events: ev_rx,
        transfers: transfers.clone(),
    };
    let driver = Driver {
        conn,
        writer: crate::driver::Writer::spawn(send),
        recv,
        call: session,
        parts: crate::engine::Parts::default(),
        ctl: Some(ctl),
        commands: cmd_rx,
        events: ev_tx,
        shared: shared.clone(),
        shutdown: shared.shutdown.subscribe(),
        started,
        pending: None,
        slot: None,
        close_code: (close::DONE, b"bye"),
        transfers,
        sas,
        held_observation: None,
        commands_open: true,
        peer,
        pair: crate::driver::PairExchange::new(),
        media: call.media.clone(),
        resume: crate::driver::Resume::new(),
    };
    (call, driver)
}

/// Counts a connection against its source IP until dropped.
struct PerIp {
    ip: IpAddr,
    counts: Arc<StdMutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("per-IP counter lock poisoned");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Connections at once from contacts, beside [`NodeConfig::max_connections`] for holders of
/// our ticket: strangers with a ticket cannot crowd contacts out.
const CONTACT_CONNECTIONS: usize = 16;

async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let max = shared.config.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let contact_limit = Arc::new(Semaphore::new(CONTACT_CONNECTIONS));
    let counts: Arc<StdMutex<HashMap<IpAddr, usize>>> = Default::default();
    while let Some(incoming) = endpoint.accept().await {
        // Every connection here passed the gate; it says as whom.
        let admission = shared
            .socket
            .gate
            .lock()
            .expect("gate lock poisoned")
            .admission_of(&incoming.orig_dst_cid()[..]);
        if let Some(extrasafe_core::access::Admission::Contact(_)) = admission {
            let Ok(permit) = contact_limit.clone().try_acquire_owned() else {
                debug!("too many connections from contacts; ignoring one");
                incoming.ignore();
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                handle_incoming(incoming, shared).await;
                drop(permit);
            });
            continue;
        }
        // Under load, make new callers prove their address first (QUIC Retry: stateless,
        // costs them one round trip), so spoofed Initials cannot hold the remaining slots.
        if limit.available_permits() <= max / 2 && !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        // One party holds a whole IPv6 /64: counted as one source.
        let ip = extrasafe_core::access::source_prefix(incoming.remote_address().ip());
        let per_ip = {
            let mut c = counts.lock().expect("per-IP counter lock poisoned");
            let n = c.entry(ip).or_insert(0);
            if *n >= shared.config.max_connections_per_ip {
                None
            } else {
                *n += 1;
                Some(PerIp {
                    ip,
                    counts: counts.clone(),
                })
            }
        };
        let (Some(per_ip), Ok(permit)) = (per_ip, limit.clone().try_acquire_owned()) else {
            // Silently: even a ticket holder learns nothing from a full node.
            debug!("too many connections; ignoring one");
            incoming.ignore();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            handle_incoming(incoming, shared).await;
            drop((permit, per_ip));
        });
    }
}

async fn handle_incoming(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let started = Instant::now();
    let from = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return debug!(%from, error = %e, "incoming connection dropped"),
    };
    let conn = match tokio::time::timeout(shared.config.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return debug!(%from, error = %e, "handshake failed"),
        Err(_) => return debug!(%from, "handshake timed out"),
    };
    let handshake = started.elapsed();
    // rustls already refuses other protocols; checked again because everything after this
    // point assumes our control protocol.
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    if alpn.as_deref() != Some(tls::ALPN) {
        conn.close(close::PROTOCOL, b"alpn");
        return;
    }
    let Some(peer) = tls::peer_of(&conn) else {
        conn.close(close::PROTOCOL, b"no identity");
        return;
    };
    info!("incoming connection secured");
    let _ = shared.secured.send(peer);
    debug!(peer = %peer.short(), %from, "incoming connection");
    // The hello deadline runs from the end of the handshake, whether or not a stream opens.
    let secured = Instant::now();
    let streams = tokio::time::timeout(shared.config.session.hello_timeout, conn.accept_bi()).await;
    let (send, recv) = match streams {
        Ok(Ok(s)) => s,
        _ => {
            conn.close(close::SILENT, b"silent");
            return;
        }
    };
    let info = call_info(
        &conn,
        peer,
        shared.peer_id,
        Role::Callee,
        started,
        handshake,
    );
    let mut session = CallMachine::new(Role::Callee, shared.config.session.clone(), secured);
    session.tell_observed(secured, canonical(conn.remote_address()));
    let (call, mut driver) = assemble(&shared, conn, send, recv, session, info);
    driver.pending = Some(call);
    driver.run().await;
}

/// How often a listener looks whether its contact list on disk changed (one `stat`).
const CONTACTS_CHECK: Duration = Duration::from_secs(2);

/// Drops from the gate each contact that leaves the list on disk: another process (the CLI's
/// `contact remove` beside a running listener) changed it. Contacts added are let in by
/// whoever adds them ([`Node::set_contacts`]), so a list read before an addition was saved
/// never takes a new contact out.
async fn follow_removals(
    roots: Arc<crate::roots::Roots>,
    socket: Arc<crate::probe_socket::ProbeSocket>,
) {
    let mut known: Option<std::collections::HashSet<PeerId>> = None;
    let mut tick = tokio::time::interval(CONTACTS_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = roots.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || r.contacts()).await else {
            continue;
        };
        if let Some(before) = &known {
            let gone: std::collections::HashSet<PeerId> =
                before.difference(&now).copied().collect();
            if !gone.is_empty() {
                let dropped = socket
                    .gate
                    .lock()
                    .expect("gate lock poisoned")
                    .retain_contacts(|p| !gone.contains(p));
                debug!(
                    dropped,
                    "contacts removed from the list are no longer answered"
                );
            }
        }
        known = Some(now);
    }
}
