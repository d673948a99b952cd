//! Rendezvous on the Mainline DHT (BEP 44 mutable items): the I/O shell around
//! `core::rendezvous`. Each contact pair has its own per-hour, per-direction DHT key; values
//! are sealed and of one size (docs/REACH.md). A listening node publishes its candidates for
//! every contact and polls each contact's record for a call intent; a caller reads the
//! callee's record, publishes its intent, and both punch.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::portmap::MapState;
use extrasafe_core::krpc;
use extrasafe_core::punch::{is_public, Candidate, CandidateKind, NatMapping, PunchKey};
use extrasafe_core::rendezvous::{
    epoch_of, CallIntent, PairSecret, Record, RecordKeys, RendezvousError, EPOCH_MS, MAX_CANDIDATES,
};
use extrasafe_core::{Identity, PeerId};
use futures_lite::StreamExt;
use mainline::{Dht, MutableItem, SigningKey};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use crate::error::CallError;
use crate::node::Node;
use crate::punch::PunchPlan;

/// How the node joins the DHT.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bootstrap nodes (`host:port`). Empty means Mainline's public bootstrap nodes.
    pub bootstrap: Vec<String>,
    /// Local address for the DHT socket (IPv4: Mainline is IPv4 only).
    pub bind: Ipv4Addr,
    /// How often a listening node reads each contact's record.
    pub poll: Duration,
    /// Republish our records this often within an hour (DHT nodes drop old items).
    pub republish: Duration,
    /// How long a DHT request may go unanswered. A lookup or store finishes only when its
    /// last request answered or timed out, so this bounds how long a call takes to ring.
    pub request_timeout: Duration,
    /// STUN servers the user chose, also asked for our public address (none by default:
    /// DHT nodes already tell us; see `observe`).
    pub stun: Vec<SocketAddr>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            bind: Ipv4Addr::UNSPECIFIED,
            poll: Duration::from_secs(2),
            republish: Duration::from_secs(20 * 60),
            request_timeout: mainline::DEFAULT_REQUEST_TIMEOUT,
            stun: Vec::new(),
        }
    }
}

/// Why the DHT could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The DHT socket could not be opened.
    #[error("cannot join the DHT: {0}")]
    Start(#[from] std::io::Error),
    /// The contact's key cannot give a shared secret.
    #[error(transparent)]
    Record(#[from] RendezvousError),
    /// The record could not be stored on the DHT (no nodes answered).
    #[error("could not publish on the DHT: {0}")]
    Publish(String),
}

/// Answers no DHT request: we use the DHT, we do not serve it.
#[derive(Debug, Clone)]
struct RefuseAll;

impl mainline::RequestFilter for RefuseAll {
    fn allow_request(&self, _: &mainline::RequestSpecific, _: std::net::SocketAddrV4) -> bool {
        false
    }
}

/// Our side of the DHT: one node, and the pair secrets of our contacts.
pub struct Rendezvous {
    dht: mainline::async_dht::AsyncDht,
    pairs: HashMap<PeerId, PairSecret>,
    /// Bootstrap nodes given as addresses (also asked what address they see).
    bootstrap: Vec<SocketAddr>,
    /// For each record key polled: the few nodes closest to it, found once by a full lookup,
    /// so a poll is a handful of datagrams instead of a walk across the DHT.
    closest: std::sync::Mutex<HashMap<[u8; 32], ClosestNodes>>,
    /// The socket each record key is polled from: one per key (so one per pair, direction
    /// and hour), kept while it is in use, never shared with another key.
    poll_sockets: std::sync::Mutex<HashMap<[u8; 32], Arc<PollSocket>>>,
    bind: Ipv4Addr,
    /// Our addresses as last measured, reused for a minute (a caller that stays up need not
    /// ask DHT nodes again for every call).
    measured: std::sync::Mutex<Option<(Reachability, std::time::Instant)>>,
    /// STUN servers to ask for our address.
    stun: Vec<SocketAddr>,
    /// The router's port mapping for the call socket, when a mapper runs.
    port_map: std::sync::Mutex<Option<watch::Receiver<MapState>>>,
}

/// The nodes closest to one record key, and when they were found.
type ClosestNodes = (Vec<SocketAddr>, std::time::Instant);

/// Nodes asked directly on each poll.
const POLL_NODES: usize = 3;
/// How long the closest nodes found for a record key are trusted before looking again (nodes
/// join and leave; a record's key changes every hour anyway).
const CLOSEST_FOR: Duration = Duration::from_secs(10 * 60);

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("contacts", &self.pairs.len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The secrets `identity` shares with each of `contacts` (computed once, so the identity key
/// need not stay in memory while the node runs).
pub fn pair_secrets(identity: &Identity, contacts: &[PeerId]) -> Result<Vec<PairSecret>, DhtError> {
    contacts
        .iter()
        .map(|p| PairSecret::new(identity, p).map_err(DhtError::from))
        .collect()
}

/// Candidates as a record carries them: addresses only, their kind read back from the range
/// (a private address is a host candidate; a public one may be either, and is tried the same).
pub fn as_candidates(addrs: &[SocketAddr]) -> Vec<Candidate> {
    addrs
        .iter()
        .map(|a| Candidate {
            addr: *a,
            kind: if is_public(a.ip()) {
                CandidateKind::Reflexive
            } else {
                CandidateKind::Host
            },
        })
        .collect()
}

impl Rendezvous {
    /// Joins the DHT as a client (it stores nothing for others), knowing the secrets `pairs`
    /// it shares with contacts (see [`pair_secrets`]).
    pub fn start(pairs: Vec<PairSecret>, config: &DhtConfig) -> Result<Self, DhtError> {
        let pairs = pairs.into_iter().map(|p| (p.peer(), p)).collect();
        let mut builder = Dht::builder();
        builder
            .bind_address(config.bind)
            .request_timeout(config.request_timeout)
            // Mainline turns a reachable client into a server after a while; we never store
            // or answer anything for others.
            .server_settings(mainline::ServerSettings {
                max_info_hashes: 0,
                max_peers_per_info_hash: 0,
                max_immutable_values: 0,
                max_mutable_values: 0,
                filter: Box::new(RefuseAll),
            });
        if !config.bootstrap.is_empty() {
            builder.bootstrap(&config.bootstrap);
        }
        let dht = builder.build()?.as_async();
        let bootstrap = config
            .bootstrap
            .iter()
            .filter_map(|b| b.parse().ok())
            .collect();
        Ok(Self {
            dht,
            pairs,
            bootstrap,
            closest: Default::default(),
            poll_sockets: Default::default(),
            bind: config.bind,
            measured: Default::default(),
            port_map: Default::default(),
            stun: config.stun.clone(),
        })
    }

    /// Publishes the port the router forwards to us (see [`crate::portmap`]) as our best
    /// candidate while the mapper holds one.
    pub fn use_port_mapping(&self, state: watch::Receiver<MapState>) {
        *self.port_map.lock().expect("port map lock poisoned") = Some(state);
    }

    fn port_map(&self) -> Option<watch::Receiver<MapState>> {
        self.port_map
            .lock()
            .expect("port map lock poisoned")
            .clone()
    }

    /// Waits until the DHT node has found others (up to `limit`); false if it has not.
    pub async fn bootstrapped(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.dht.bootstrapped())
            .await
            .unwrap_or(false)
    }

    fn pair(&self, peer: &PeerId) -> Option<&PairSecret> {
        self.pairs.get(peer)
    }

    /// Addresses of DHT nodes we know (to ask what address they see for the call socket):
    /// our routing table's, then the bootstrap nodes given as addresses.
    pub async fn dht_nodes(&self) -> Vec<SocketAddr> {
        let mut nodes: Vec<SocketAddr> = self
            .dht
            .to_bootstrap()
            .await
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        for b in &self.bootstrap {
            if !nodes.contains(b) {
                nodes.push(*b);
            }
        }
        nodes
    }

    /// Publishes our record for `peer`: where we are, and a call intent if we call.
    pub async fn publish(
        &self,
        peer: &PeerId,
        us: &Reachability,
        intent: Option<CallIntent>,
    ) -> Result<(), DhtError> {
        let pair = self
            .pair(peer)
            .ok_or(DhtError::Publish("not a contact".into()))?;
        let sent_at_ms = now_ms();
        let keys = pair.outgoing(epoch_of(sent_at_ms));
        let record = Record {
            sent_at_ms,
            candidates: us.candidates.iter().copied().take(MAX_CANDIDATES).collect(),
            nat: us.nat,
            intent,
        };
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let value = keys.seal(&record, nonce)?;
        let signer = SigningKey::from_bytes(&keys.signing_seed());
        let item = MutableItem::new(signer, &value, sent_at_ms as i64, None);
        self.dht
            .put_mutable(item, None)
            .await
            .map(|_| ())
            .map_err(|e| DhtError::Publish(e.to_string()))
    }

    /// The newest record `peer` published for us this hour (or, early in the hour, the last
    /// one), newer than `after` (a `sent_at_ms`) if given: asks the nodes closest to it, and
    /// walks the DHT if they have nothing.
    pub async fn lookup(&self, peer: &PeerId, after: Option<u64>) -> Option<Record> {
        self.read(peer, after, true).await
    }

    /// Like [`Self::lookup`], but trusts the closest nodes when they answer (a poll every few
    /// seconds must cost a handful of datagrams, not a walk across the DHT).
    pub async fn poll(&self, peer: &PeerId, after: Option<u64>) -> Option<Record> {
        self.read(peer, after, false).await
    }

    async fn read(&self, peer: &PeerId, after: Option<u64>, thorough: bool) -> Option<Record> {
        let pair = self.pair(peer)?;
        let now = now_ms();
        let mut epochs = vec![epoch_of(now)];
        if now % EPOCH_MS < 60_000 {
            epochs.push(epoch_of(now) - 1);
        }
        let mut best: Option<Record> = None;
        for epoch in epochs {
            let keys = pair.incoming(epoch);
            if let Some(found) = self.poll_closest(&keys, after).await {
                if found.is_some() {
                    best = found;
                    break;
                }
                if !thorough {
                    continue;
                }
            }
            let more_recent = after.map(|a| a as i64);
            let mut items = self.dht.get_mutable(&keys.dht_key(), None, more_recent);
            // Nodes answer as the lookup proceeds; the first valid answer is usually the
            // newest (a record changes seldom), so stop at the first that opens and wait only
            // briefly for a newer one.
            let deadline = tokio::time::sleep(Duration::from_millis(1500));
            tokio::pin!(deadline);
            loop {
                let item = tokio::select! {
                    item = items.next() => item,
                    _ = &mut deadline => None,
                };
                let Some(item) = item else { break };
                match keys.open(item.value(), now_ms()) {
                    // The signed sequence number must be the sealed time, or a node replays
                    // an old value under a higher number.
                    Ok(r) if r.sent_at_ms as i64 == item.seq() => {
                        if best.as_ref().is_none_or(|b| r.sent_at_ms > b.sent_at_ms) {
                            best = Some(r);
                        }
                        break;
                    }
                    Ok(_) => debug!("rendezvous record with a mismatched sequence ignored"),
                    Err(e) => debug!(error = %e, "rendezvous record ignored"),
                }
            }
            if best.is_some() {
                break;
            }
        }
        best.filter(|r| after.is_none_or(|a| r.sent_at_ms > a))
    }

    /// Reads a record straight from the nodes closest to it (learned once per record key):
    /// `None` if none of them answered (the caller then does a full lookup), else what they
    /// hold that is newer than `after`.
    async fn poll_closest(&self, keys: &RecordKeys, after: Option<u64>) -> Option<Option<Record>> {
        let dht_key = keys.dht_key();
        let target = MutableItem::target_from_key(&dht_key, None);
        let known = self
            .closest
            .lock()
            .expect("closest-nodes lock poisoned")
            .get(&dht_key)
            .filter(|(_, at)| at.elapsed() < CLOSEST_FOR)
            .map(|(n, _)| n.clone());
        let nodes = match known {
            Some(n) => n,
            None => {
                let found: Vec<SocketAddr> = self
                    .dht
                    .get_closest_nodes(target)
                    .await
                    .iter()
                    .take(POLL_NODES)
                    .map(|n| SocketAddr::V4(n.address()))
                    .collect();
                // Too few: our routing table is still filling up; walk the DHT this time.
                if found.len() < POLL_NODES {
                    return None;
                }
                let mut cache = self.closest.lock().expect("closest-nodes lock poisoned");
                // One entry per contact and hour is all a poller needs.
                if cache.len() > 4 * self.pairs.len() + 8 {
                    cache.clear();
                }
                cache.insert(dht_key, (found.clone(), std::time::Instant::now()));
                found
            }
        };
        let poller = self.poll_socket(&dht_key).await?;
        // One poll at a time per socket: a caller's read and the listener's poll of the same
        // key would otherwise take each other's answers.
        let mut state = poller.state.lock().await;
        let socket = &poller.socket;
        let mut asked = Vec::new();
        for node in &nodes {
            let txid = state.0.next_id();
            let query = krpc::get_query(txid, state.1, *target.as_bytes(), after.map(|a| a as i64));
            if socket.send_to(&query, node).await.is_ok() {
                asked.push((*node, txid));
            }
        }
        let mut answered = 0;
        let mut best: Option<Record> = None;
        let mut buf = [0u8; 1500];
        let deadline = tokio::time::Instant::now() + POLL_WAIT;
        while answered < asked.len() {
            let Ok(Ok((n, from))) =
                tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            else {
                break;
            };
            let from = crate::probe_socket::canonical(from);
            let Some((_, txid)) = asked.iter().find(|(a, _)| *a == from) else {
                continue;
            };
            let Some(answer) = krpc::response(&buf[..n], *txid) else {
                continue;
            };
            answered += 1;
            let (Some(seq), Some(value)) = (answer.seq, answer.value) else {
                continue;
            };
            match keys.open(value, now_ms()) {
                // The signed sequence number must be the sealed time, or a node replays an
                // old value under a higher number.
                Ok(r) if r.sent_at_ms as i64 == seq => {
                    if best.as_ref().is_none_or(|b| r.sent_at_ms > b.sent_at_ms) {
                        best = Some(r);
                    }
                }
                Ok(_) => debug!("rendezvous record with a mismatched sequence ignored"),
                Err(e) => debug!(error = %e, "rendezvous record ignored"),
            }
        }
        debug!(
            asked = asked.len(),
            answered,
            found = best.is_some(),
            "polled the closest nodes"
        );
        if answered == 0 {
            // The nodes went away: find the closest ones again next time.
            self.closest
                .lock()
                .expect("closest-nodes lock poisoned")
                .remove(&dht_key);
            return None;
        }
        Some(best.filter(|r| after.is_none_or(|a| r.sent_at_ms > a)))
    }

    /// The socket `dht_key` is polled from, opened on first use (with its own node ID and
    /// transaction counter, as one DHT client would have); sockets of keys not polled for
    /// two minutes (last hour's, a former contact's) are closed.
    async fn poll_socket(&self, dht_key: &[u8; 32]) -> Option<Arc<PollSocket>> {
        let now = std::time::Instant::now();
        if let Some(p) = self
            .poll_sockets
            .lock()
            .expect("poll socket lock poisoned")
            .get(dht_key)
        {
            *p.used.lock().expect("poll socket lock poisoned") = now;
            return Some(p.clone());
        }
        let socket = tokio::net::UdpSocket::bind((self.bind, 0)).await.ok()?;
        let (mut start, mut id) = ([0u8; 4], [0u8; 20]);
        getrandom::fill(&mut start).expect("the OS random source works");
        getrandom::fill(&mut id).expect("the OS random source works");
        let fresh = Arc::new(PollSocket {
            socket,
            state: tokio::sync::Mutex::new((krpc::TxIds::new(start), id)),
            used: std::sync::Mutex::new(now),
        });
        let mut all = self.poll_sockets.lock().expect("poll socket lock poisoned");
        all.retain(|_, p| {
            p.used
                .lock()
                .map(|u| u.elapsed() < POLL_SOCKET_IDLE)
                .unwrap_or(false)
        });
        // Another poll of the same key may have opened one meanwhile: keep the first.
        Some(all.entry(*dht_key).or_insert(fresh).clone())
    }

    /// The key that lets us into `peer`'s node (and them into ours).
    pub fn access_key(&self, peer: &PeerId) -> Option<extrasafe_core::access::AccessKey> {
        self.pair(peer).map(|p| p.access_key())
    }

    /// The probe key for a call attempt with `peer`.
    pub fn punch_key(&self, peer: &PeerId, call_id: &[u8; 16]) -> Option<PunchKey> {
        self.pair(peer).map(|p| p.punch_key(call_id))
    }
}

/// Where we can be reached, as published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reachability {
    /// Our addresses, best first (at most [`MAX_CANDIDATES`]).
    pub candidates: Vec<SocketAddr>,
    /// How our NAT maps the call socket.
    pub nat: NatMapping,
    /// The public address our router forwards to the call socket (also first among the
    /// candidates).
    pub mapped: Option<SocketAddr>,
}

/// How long a side whose router forwards a port to it waits for the other side's first probe
/// before probing itself. Probing first would make the router's NAT give the outgoing probes
/// another port, and on a symmetric NAT that outgoing mapping then clashes with the forwarded
/// one, which drops the peer's probes. The caller waits for the callee to read its intent
/// (a poll interval and a poll); the callee, whose caller is already probing, a round trip.
pub const CALLER_HOLD: Duration = Duration::from_secs(5);
/// See [`CALLER_HOLD`].
pub const CALLEE_HOLD: Duration = Duration::from_secs(1);

/// Our addresses worth publishing: the call socket's public address as DHT nodes see it
/// (asked from the call socket itself), else our public IP as the DHT saw it with the call
/// port (right behind the many NATs that keep the port); then the interface addresses.
pub async fn reachability(node: &Node, rendezvous: &Rendezvous) -> Reachability {
    reachability_within(node, rendezvous, Duration::ZERO).await
}

/// [`reachability`], waiting up to `settle` (alongside the measurement) for the router's
/// answer about a port mapping: a listener's first record waits, so that the record contacts
/// read first already has the forwarded port. A caller waits only behind a symmetric NAT (see
/// [`CALLER_SETTLE`]).
async fn reachability_within(
    node: &Node,
    rendezvous: &Rendezvous,
    settle: Duration,
) -> Reachability {
    let port_map = rendezvous.port_map();
    let (mut r, _) = tokio::join!(measure(node, rendezvous), async {
        if let (Some(mut pm), false) = (port_map.clone(), settle.is_zero()) {
            let _ = tokio::time::timeout(settle, pm.wait_for(|s| *s != MapState::Asking)).await;
        }
    });
    let mapped = port_map.and_then(|pm| match *pm.borrow() {
        MapState::Mapped(m) => Some(m.external),
        _ => None,
    });
    if let Some(m) = mapped {
        r.candidates.retain(|a| *a != m);
        r.candidates.insert(0, m);
        r.candidates.truncate(MAX_CANDIDATES);
        r.mapped = Some(m);
    }
    r
}

async fn measure(node: &Node, rendezvous: &Rendezvous) -> Reachability {
    if let Some((r, at)) = rendezvous
        .measured
        .lock()
        .expect("measurement lock poisoned")
        .clone()
    {
        if at.elapsed() < REGATHER {
            return r;
        }
    }
    let bound = node.local_addr();
    let mut dht_nodes = rendezvous.dht_nodes().await;
    if dht_nodes.len() < 2 {
        // Right after start the routing table is empty, and bootstrap nodes given by name
        // are not listed: wait until there is somebody to ask.
        rendezvous.bootstrapped(Duration::from_secs(5)).await;
        dht_nodes = rendezvous.dht_nodes().await;
    }
    let observed = node
        .observe(&dht_nodes, &rendezvous.stun, Duration::from_secs(2))
        .await;
    debug!(?observed, "call socket's address as DHT nodes see it");
    let mut out = Vec::new();
    // Only an address observers in several networks agree on: a single DHT node could
    // otherwise choose where our contacts' probes go, and learn who calls us and when
    // (`core::observe`). With no agreement we publish no public address; our contacts then
    // find us by our host addresses, a forwarded port, or the address their probes come from.
    if let Some(a) = observed.reflexive().filter(|a| is_public(a.ip())) {
        out.push(a);
    }
    // What the last peer saw, told inside our authenticated session: only a port the
    // observers did not see on the IP they agreed on. A contact could otherwise plant an
    // address of its own in the records all our contacts read, and learn who calls us when
    // their probes arrive there.
    if let Some(a) = node
        .observed_by_peer()
        .filter(|a| is_public(a.ip()) && observed.verdict.ip() == Some(a.ip()))
    {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    for a in crate::addrs::reachable(bound) {
        // Loopback only reaches this machine: offered only by a node bound to it alone.
        if !out.contains(&a) && (!a.ip().is_loopback() || bound.ip().is_loopback()) {
            out.push(a);
        }
    }
    out.truncate(MAX_CANDIDATES);
    let r = Reachability {
        candidates: out,
        nat: observed.verdict.mapping,
        mapped: None,
    };
    *rendezvous
        .measured
        .lock()
        .expect("measurement lock poisoned") = Some((r.clone(), std::time::Instant::now()));
    r
}

impl Node {
    /// Calls a contact with no known address: reads its rendezvous record, publishes a call
    /// intent with our candidates, and punches.
    pub async fn call_contact(
        &self,
        rendezvous: &Rendezvous,
        peer: PeerId,
    ) -> Result<crate::Call, CallError> {
        let started = std::time::Instant::now();
        let mut us = reachability(self, rendezvous).await;
        if us.mapped.is_none() && us.nat == NatMapping::Varies {
            // Behind a symmetric NAT a forwarded port is what lets most contacts reach us:
            // worth a moment for the router to answer. (Elsewhere punching works without it,
            // and a network with no such router would cost every call this wait.)
            if let Some(mut pm) = rendezvous.port_map() {
                let _ =
                    tokio::time::timeout(CALLER_SETTLE, pm.wait_for(|s| *s != MapState::Asking))
                        .await;
                us = reachability(self, rendezvous).await;
            }
        }
        debug!(took = ?started.elapsed(), "our addresses gathered");
        let mut call_id = [0u8; 16];
        getrandom::fill(&mut call_id).expect("the OS random source works");
        let intent = CallIntent {
            call_id,
            until_ms: now_ms() + 60_000,
        };
        // Storing the intent and reading their record each take a DHT lookup: at once. An
        // intent published for someone who turns out to be offline tells nobody anything.
        let (theirs, published) = tokio::join!(
            rendezvous.lookup(&peer, None),
            rendezvous.publish(&peer, &us, Some(intent))
        );
        debug!(took = ?started.elapsed(), "intent published and their record read");
        let theirs = theirs.ok_or(CallError::NotPublished)?;
        published.map_err(|e| CallError::Rendezvous(e.to_string()))?;
        let key = rendezvous
            .punch_key(&peer, &call_id)
            .ok_or(CallError::NotPublished)?;
        let access = rendezvous.access_key(&peer);
        self.call_punched_with(
            PunchPlan {
                peer,
                key,
                candidates: as_candidates(&theirs.candidates),
                our_nat: us.nat,
                their_nat: theirs.nat,
                hold: if us.mapped.is_some() {
                    CALLER_HOLD
                } else {
                    Duration::ZERO
                },
            },
            access,
        )
        .await
    }
}

/// One record key's polling socket.
struct PollSocket {
    socket: tokio::net::UdpSocket,
    /// Transaction IDs and node ID; locked for the length of a poll.
    state: tokio::sync::Mutex<(krpc::TxIds, [u8; 20])>,
    used: std::sync::Mutex<std::time::Instant>,
}

/// A polling socket unused this long is closed.
const POLL_SOCKET_IDLE: Duration = Duration::from_secs(120);

/// How long a poll waits for the nodes' answers.
const POLL_WAIT: Duration = Duration::from_millis(1000);

/// How long a caller behind a symmetric NAT waits for the router's answer about a port
/// mapping after measuring its addresses (a router that speaks PCP or NAT-PMP answers within
/// milliseconds; one that speaks none of them would hold the call for the seconds it takes
/// to give up on each).
const CALLER_SETTLE: Duration = Duration::from_millis(1500);

/// How soon a record that could not be stored is tried again.
const UNSTORED_RETRY: Duration = Duration::from_secs(30);

/// How often a listening node measures its addresses again.
const REGATHER: Duration = Duration::from_secs(60);

/// A listening node's presence on the DHT.
#[derive(Debug)]
pub struct Served {
    /// A plan to punch back for each contact's call intent.
    pub intents: mpsc::Receiver<PunchPlan>,
    /// What we last published, and for how many contacts it was stored.
    pub published: watch::Receiver<Option<(Reachability, usize)>>,
}

/// Keeps our records published and watches our contacts' records for call intents, until
/// the returned `Served` is dropped (at once between polls; a round already under way is
/// finished first).
pub fn serve(node: Arc<Node>, rendezvous: Arc<Rendezvous>, config: DhtConfig) -> Served {
    let (tx, rx) = mpsc::channel(8);
    let (stored_tx, stored_rx) = watch::channel(None);
    tokio::spawn(async move {
        let peers: Vec<PeerId> = rendezvous.pairs.keys().copied().collect();
        let mut published: Option<(u64, Reachability, tokio::time::Instant)> = None;
        let mut last_seen: HashMap<PeerId, u64> = HashMap::new();
        let mut answered: HashSet<[u8; 16]> = HashSet::new();
        let mut unstored: HashSet<PeerId> = HashSet::new();
        let mut retry_at = tokio::time::Instant::now();
        // Long enough for a router to answer, or for us to give up on PCP, NAT-PMP and UPnP.
        let mut settle = Duration::from_secs(4);
        loop {
            // Dropping `Served` (its intents) stops the service.
            if tx.is_closed() {
                return;
            }
            // Measured again once a minute (cached in between).
            let ours = reachability_within(&node, &rendezvous, settle).await;
            settle = Duration::ZERO;
            let epoch = epoch_of(now_ms());
            let stale = published.as_ref().is_none_or(|(e, c, at)| {
                *e != epoch || *c != ours || at.elapsed() >= config.republish
            });
            // A contact whose record could not be stored is tried again within half a
            // minute, not at the next republish.
            let due: Vec<PeerId> = if stale {
                peers.clone()
            } else if retry_at <= tokio::time::Instant::now() {
                unstored.iter().copied().collect()
            } else {
                Vec::new()
            };
            if !due.is_empty() {
                retry_at = tokio::time::Instant::now() + UNSTORED_RETRY;
            }
            if !due.is_empty() {
                let mut puts = JoinSet::new();
                for peer in due {
                    let (rv, ours) = (rendezvous.clone(), ours.clone());
                    puts.spawn(async move { (peer, rv.publish(&peer, &ours, None).await) });
                }
                let mut stored = 0;
                while let Some(r) = puts.join_next().await {
                    match r {
                        Ok((peer, Ok(()))) => {
                            stored += 1;
                            unstored.remove(&peer);
                        }
                        Ok((peer, Err(e))) => {
                            debug!(error = %e, "publishing a rendezvous record failed");
                            unstored.insert(peer);
                        }
                        Err(_) => {}
                    }
                }
                // Nothing stored (no DHT nodes yet): try again on the next round.
                if stored > 0 {
                    if stale {
                        published = Some((epoch, ours.clone(), tokio::time::Instant::now()));
                    }
                    let _ = stored_tx.send(Some((ours.clone(), peers.len() - unstored.len())));
                }
            }
            let polled = std::time::Instant::now();
            let mut reads = JoinSet::new();
            for peer in peers.iter().copied() {
                let (rv, after) = (rendezvous.clone(), last_seen.get(&peer).copied());
                reads.spawn(async move { (peer, rv.poll(&peer, after).await) });
            }
            while let Some(r) = reads.join_next().await {
                let Ok((peer, Some(record))) = r else {
                    continue;
                };
                last_seen.insert(peer, record.sent_at_ms);
                let Some(intent) = record.intent else {
                    continue;
                };
                if answered.len() > 1024 {
                    answered.clear();
                }
                if !answered.insert(intent.call_id) {
                    continue;
                }
                let Some(key) = rendezvous.punch_key(&peer, &intent.call_id) else {
                    continue;
                };
                let intent = PunchPlan {
                    peer,
                    key,
                    candidates: as_candidates(&record.candidates),
                    our_nat: ours.nat,
                    their_nat: record.nat,
                    hold: if ours.mapped.is_some() {
                        CALLEE_HOLD
                    } else {
                        Duration::ZERO
                    },
                };
                // Never block the loop (the application may be busy in a call): an intent
                // that finds the queue full is dropped, the caller's punch then fails.
                match tx.try_send(intent) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            debug!(took = ?polled.elapsed(), "contacts' records polled");
            // Not a fixed cadence, which would mark our queries among others': anywhere
            // between half and one and a half poll intervals.
            let mut r = [0u8; 2];
            getrandom::fill(&mut r).expect("the OS random source works");
            let gap = config
                .poll
                .mul_f64(0.5 + f64::from(u16::from_le_bytes(r)) / 65535.0);
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Served {
        intents: rx,
        published: stored_rx,
    }
}
