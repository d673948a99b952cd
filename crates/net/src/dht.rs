//! Rendezvous on the Mainline DHT (BEP 44 mutable items): the I/O shell around
//! `core::rendezvous` and `core::walk`. Each contact pair has its own per-epoch (ten-minute),
//! per-direction DHT key; values are sealed and of one size (docs/REACH.md). A listening node
//! publishes its candidates for every contact and polls each contact's record for a call
//! intent; a caller reads the callee's record, publishes its intent, and both punch. Every
//! lookup and store is a walk of our own from a socket and node ID used for one target only.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::portmap::MapState;
use extrasafe_core::inbox::{InboxChain, OwnInbox};
use extrasafe_core::krpc;
use extrasafe_core::punch::{is_public, Candidate, CandidateKind, NatMapping, PunchKey};
use extrasafe_core::rendezvous::{
    epoch_of, seal_inbox, CallIntent, PairSecret, Record, RecordKeys, RendezvousError, EPOCH_MS,
    MAX_CANDIDATES,
};
use extrasafe_core::walk::{self, Found, Item, Limits, Walk};
use extrasafe_core::{Identity, PeerId};
use mainline::{MutableItem, SigningKey};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use crate::error::CallError;
use crate::node::{Handle, Node};
use crate::punch::PunchPlan;

/// How the node joins the DHT.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bootstrap nodes (`host:port`). Empty means Mainline's public bootstrap nodes.
    pub bootstrap: Vec<String>,
    /// Local address for the DHT sockets (IPv4: Mainline is IPv4 only).
    pub bind: Ipv4Addr,
    /// How often a listening node reads each contact's record.
    pub poll: Duration,
    /// Republish our records this often within an epoch (DHT nodes drop old items).
    pub republish: Duration,
    /// How long a DHT request may go unanswered before it has failed (a walk stops waiting
    /// for it after a quarter of this, at most 400 ms: see `core::walk`).
    pub request_timeout: Duration,
    /// STUN servers the user chose, also asked for our public address (none by default:
    /// DHT nodes already tell us; see `observe`).
    pub stun: Vec<SocketAddr>,
    /// Records a listener stores per epoch for contacts who do not hold its inbox chain,
    /// covers included ([`PAIR_RECORDS`]): the same number whatever the number of contacts.
    pub pair_records: usize,
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
            pair_records: PAIR_RECORDS,
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
    /// The record cannot be stored as it is (larger than DHT nodes keep).
    #[error("could not publish on the DHT: {0}")]
    Item(#[from] walk::ItemError),
    /// No DHT node stored the record (none answered, or all refused it).
    #[error("could not publish on the DHT: no node stored the record")]
    NotStored,
    /// The peer is not one of our contacts (no pair secret with them).
    #[error("they are not one of your contacts")]
    NotAContact,
    /// An inbox chain cannot give this epoch's inbox (see [`ChainError`]).
    #[error("the inbox chain cannot be used now: {0}")]
    Chain(#[from] extrasafe_core::inbox::ChainError),
}

impl DhtError {
    /// Who can act on it: the network for what DHT nodes did (or did not do), this device
    /// for what it holds (a contact list or inbox chain it cannot use, a record too large).
    pub fn blame(&self) -> crate::Blame {
        match self {
            Self::Start(_) | Self::NotStored => crate::Blame::Network,
            Self::Record(_) | Self::Item(_) | Self::NotAContact | Self::Chain(_) => {
                crate::Blame::Local
            }
        }
    }
}

/// Our side of the DHT: the pair secrets of our contacts, and the nodes we know. We run no DHT
/// node of our own: every lookup is a [`Walk`] from a socket and node ID of its own (see
/// [`TargetSocket`]), so that nothing a DHT node or an observer sees joins two targets.
pub struct Rendezvous {
    pairs: HashMap<PeerId, PairSecret>,
    /// Bootstrap nodes as given (`host:port`).
    bootstrap: Vec<String>,
    /// The bootstrap nodes' addresses, once resolved.
    resolved: tokio::sync::Mutex<Option<Vec<SocketAddr>>>,
    /// Nodes that answered our walks: where later walks start.
    pool: std::sync::Mutex<NodePool>,
    /// The socket each record target is polled from: one per target (so one per pair,
    /// direction and epoch), kept while it is in use, never shared with another target.
    polls: std::sync::Mutex<HashMap<[u8; 20], Arc<TargetSocket>>>,
    bind: Ipv4Addr,
    limits: Limits,
    /// Our addresses as last measured, reused for a minute (a caller that stays up need not
    /// ask DHT nodes again for every call).
    measured: std::sync::Mutex<Option<(Reachability, std::time::Instant)>>,
    /// STUN servers to ask for our address.
    stun: Vec<SocketAddr>,
    /// The router's port mapping for the call socket, when a mapper runs.
    port_map: std::sync::Mutex<Option<watch::Receiver<MapState>>>,
    /// Where the pairs' current roots are kept (replaced in every call); without it records
    /// come from the pairs' first roots.
    roots: std::sync::Mutex<Option<Arc<crate::roots::Roots>>>,
}

/// Nodes that answered our walks, newest last.
#[derive(Debug, Default)]
struct NodePool(Vec<(SocketAddr, [u8; 20])>);

/// Most nodes remembered.
const POOL_SIZE: usize = 512;

impl NodePool {
    fn add(&mut self, nodes: impl IntoIterator<Item = (SocketAddr, [u8; 20])>) {
        for (addr, id) in nodes {
            self.0.retain(|(a, _)| *a != addr);
            self.0.push((addr, id));
        }
        let over = self.0.len().saturating_sub(POOL_SIZE);
        self.0.drain(..over);
    }

    /// The `n` nodes closest to `target`.
    fn closest(&self, target: &[u8; 20], n: usize) -> Vec<(SocketAddr, [u8; 20])> {
        let mut all = self.0.clone();
        all.sort_by_key(|(_, id)| walk::distance(id, target));
        all.truncate(n);
        all
    }
}

/// Nodes asked directly on each poll of a pair's record.
const POLL_NODES: usize = 3;
/// Nodes closest to our inbox that are polled, one per poll in turn (a caller stores its
/// intent at the 8 closest, so each of them has it; taking turns halves the gets of asking
/// both every time, and a node that lost the value delays the intent by one poll only).
const INBOX_POLL_NODES: usize = 2;
/// How long the closest nodes found for a target are trusted before walking again (nodes join
/// and leave; a target changes every epoch anyway).
const CLOSEST_FOR: Duration = Duration::from_secs(5 * 60);

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

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the OS random source works");
    out
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

/// The DHT target of a record: SHA-1 of its public key (BEP 44, no salt).
fn target_of(keys: &RecordKeys) -> [u8; 20] {
    *MutableItem::target_from_key(&keys.dht_key(), None).as_bytes()
}

/// A record found under `keys`, if `found` opens as one: the signed sequence number must be
/// the sealed time, or a node could replay an old value under a higher number.
fn open_found(keys: &RecordKeys, found: &Found) -> Option<Record> {
    checked(keys.open(&found.value, now_ms()), found)
}

/// What `found` opened as, if its sequence number is the sealed time.
fn checked(opened: Result<Record, RendezvousError>, found: &Found) -> Option<Record> {
    match opened {
        Ok(r) if r.sent_at_ms as i64 == found.seq => Some(r),
        Ok(_) => {
            debug!("rendezvous record with a mismatched sequence ignored");
            None
        }
        Err(e) => {
            debug!(error = %e, "rendezvous record ignored");
            None
        }
    }
}

impl Rendezvous {
    /// Our side of the DHT, knowing the secrets `pairs` we share with contacts (see
    /// [`pair_secrets`]). Opens nothing yet: each walk opens its own socket.
    pub fn start(pairs: Vec<PairSecret>, config: &DhtConfig) -> Result<Self, DhtError> {
        let pairs = pairs.into_iter().map(|p| (p.peer(), p)).collect();
        let bootstrap = if config.bootstrap.is_empty() {
            mainline::DEFAULT_BOOTSTRAP_NODES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            config.bootstrap.clone()
        };
        let timeout_ms = config.request_timeout.as_millis().clamp(100, 10_000) as u64;
        Ok(Self {
            pairs,
            bootstrap,
            resolved: Default::default(),
            pool: Default::default(),
            polls: Default::default(),
            bind: config.bind,
            limits: Limits {
                timeout_ms,
                straggle_ms: (timeout_ms / 4).clamp(50, 400),
                ..Limits::default()
            },
            measured: Default::default(),
            port_map: Default::default(),
            stun: config.stun.clone(),
            roots: Default::default(),
        })
    }

    /// Forgets our addresses as last measured: the next call or record measures them again.
    pub(crate) fn forget_measurement(&self) {
        *self.measured.lock().expect("measurement lock poisoned") = None;
    }

    /// Derives records from the roots `roots` holds (as calls replace them) instead of the
    /// pairs' first roots.
    pub fn use_roots(&self, roots: Arc<crate::roots::Roots>) {
        *self.roots.lock().expect("roots lock poisoned") = Some(roots);
    }

    /// The pair with `peer` as its records are derived now: under the current root and, while
    /// the peer has not confirmed it, the previous one too. Empty if not a contact.
    fn record_pairs(&self, peer: &PeerId) -> Vec<PairSecret> {
        let Some(pair) = self.pair(peer) else {
            return Vec::new();
        };
        let roots = self.roots.lock().expect("roots lock poisoned").clone();
        match roots {
            Some(r) => r.pairs(pair),
            None => vec![pair.with_root(pair.root())],
        }
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

    /// The bootstrap nodes' addresses (resolved once; names that do not resolve are left out).
    async fn bootstrap_addrs(&self) -> Vec<SocketAddr> {
        let mut resolved = self.resolved.lock().await;
        if let Some(r) = resolved.as_ref().filter(|r| !r.is_empty()) {
            return r.clone();
        }
        let mut out = Vec::new();
        for b in &self.bootstrap {
            if let Ok(a) = b.parse::<SocketAddr>() {
                out.push(a);
                continue;
            }
            if let Ok(Ok(addrs)) =
                tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host(b)).await
            {
                out.extend(addrs.filter(SocketAddr::is_ipv4));
            }
        }
        // Mainline is IPv4 only.
        out.retain(SocketAddr::is_ipv4);
        *resolved = Some(out.clone());
        out
    }

    /// Where a walk to `target` starts: the nodes we know closest to it, or, knowing too few,
    /// the bootstrap nodes.
    async fn seeds(&self, target: &[u8; 20]) -> Vec<(SocketAddr, Option<[u8; 20]>)> {
        let known = self
            .pool
            .lock()
            .expect("node pool lock poisoned")
            .closest(target, self.limits.k);
        let mut seeds: Vec<_> = known.into_iter().map(|(a, id)| (a, Some(id))).collect();
        if seeds.len() < self.limits.k {
            for b in self.bootstrap_addrs().await {
                if !seeds.iter().any(|(a, _)| *a == b) {
                    seeds.push((b, None));
                }
            }
        }
        seeds
    }

    /// Waits until we know DHT nodes (up to `limit`), walking towards a random target once if
    /// we know none; false if nobody answered.
    pub async fn bootstrapped(&self, limit: Duration) -> bool {
        if !self
            .pool
            .lock()
            .expect("node pool lock poisoned")
            .0
            .is_empty()
        {
            return true;
        }
        let target = random::<20>();
        let _ = tokio::time::timeout(limit, async {
            let seeds = self.seeds(&target).await;
            let socket = TargetSocket::open(self.bind).await.ok()?;
            let walk = socket.walk(target, None, &seeds, self.limits).await;
            self.learn(&walk);
            Some(())
        })
        .await;
        !self
            .pool
            .lock()
            .expect("node pool lock poisoned")
            .0
            .is_empty()
    }

    fn learn(&self, walk: &Walk) {
        self.pool
            .lock()
            .expect("node pool lock poisoned")
            .add(walk.answered());
    }

    fn pair(&self, peer: &PeerId) -> Option<&PairSecret> {
        self.pairs.get(peer)
    }

    /// Addresses of DHT nodes we know (to ask what address they see for the call socket):
    /// those that answered our walks, newest first, then the bootstrap nodes.
    pub async fn dht_nodes(&self) -> Vec<SocketAddr> {
        let mut nodes: Vec<SocketAddr> = self
            .pool
            .lock()
            .expect("node pool lock poisoned")
            .0
            .iter()
            .rev()
            .map(|(a, _)| *a)
            .collect();
        for b in self.bootstrap_addrs().await {
            if !nodes.contains(&b) {
                nodes.push(b);
            }
        }
        nodes
    }

    /// Publishes our record for `peer`: where we are, a call intent if we call, and our inbox
    /// chain if given (so that a contact who does not hold it yet writes its intents there).
    /// Walks to the record's target from a socket of its own and stores the record at the
    /// closest nodes that answer.
    pub async fn publish(
        &self,
        peer: &PeerId,
        us: &Reachability,
        intent: Option<CallIntent>,
        inbox: Option<&InboxChain>,
    ) -> Result<(), DhtError> {
        self.publish_as_of(peer, us, intent, inbox, now_ms()).await
    }

    /// [`Self::publish`] as if it were `sent_at_ms` (for tests: a record of an earlier
    /// epoch, as a listener with many contacts leaves for most of them).
    #[doc(hidden)]
    pub async fn publish_as_of(
        &self,
        peer: &PeerId,
        us: &Reachability,
        intent: Option<CallIntent>,
        inbox: Option<&InboxChain>,
        sent_at_ms: u64,
    ) -> Result<(), DhtError> {
        // Normally one root; two while the peer has not confirmed the last call's. Stored
        // under either is enough for the peer to find.
        let mut result = Err(DhtError::NotAContact);
        for pair in self.record_pairs(peer) {
            match self
                .publish_under(&pair, us, intent, inbox, sent_at_ms)
                .await
            {
                Ok(()) => result = Ok(()),
                Err(e) if result.is_err() => result = Err(e),
                Err(_) => {}
            }
        }
        result
    }

    async fn publish_under(
        &self,
        pair: &PairSecret,
        us: &Reachability,
        intent: Option<CallIntent>,
        inbox: Option<&InboxChain>,
        sent_at_ms: u64,
    ) -> Result<(), DhtError> {
        let epoch = epoch_of(sent_at_ms);
        let keys = pair.outgoing(epoch);
        let record = Record {
            sent_at_ms,
            candidates: us.candidates.iter().copied().take(MAX_CANDIDATES).collect(),
            nat: us.nat,
            intent,
            // This epoch's value: the reader can step it forward, never back.
            inbox: inbox.and_then(|c| c.at(epoch.max(c.epoch())).ok()),
        };
        let value = keys.seal(&record, random())?;
        self.store_value(&keys, value, sent_at_ms).await
    }

    /// Stores a record nobody will read: a fresh key, a value of the size of a pair's
    /// record that is random bytes (as a sealed one looks), from a socket of its own. Pads
    /// the records we store per epoch to a number that does not depend on how many contacts
    /// we have.
    pub async fn publish_cover(&self) -> Result<(), DhtError> {
        let signer = SigningKey::from_bytes(&random());
        let mut value = vec![0u8; extrasafe_core::rendezvous::VALUE_LEN];
        getrandom::fill(&mut value).expect("the OS random source works");
        let target =
            *MutableItem::target_from_key(&signer.verifying_key().to_bytes(), None).as_bytes();
        self.store_signed(signer, target, value, now_ms()).await
    }

    /// Stores `value` under `keys`' item (signed with its key, sequence `seq`) at the nodes
    /// closest to its target, walking there from a socket of its own.
    async fn store_value(
        &self,
        keys: &RecordKeys,
        value: Vec<u8>,
        seq: u64,
    ) -> Result<(), DhtError> {
        let signer = SigningKey::from_bytes(&keys.signing_seed());
        self.store_signed(signer, target_of(keys), value, seq).await
    }

    async fn store_signed(
        &self,
        signer: SigningKey,
        target: [u8; 20],
        value: Vec<u8>,
        seq: u64,
    ) -> Result<(), DhtError> {
        let item = MutableItem::new(signer, &value, seq as i64, None);
        let seeds = self.seeds(&target).await;
        let socket = TargetSocket::open(self.bind).await?;
        let stored = socket
            .store(
                target,
                &seeds,
                self.limits,
                Item {
                    key: *item.key(),
                    seq: item.seq(),
                    sig: *item.signature(),
                    value,
                },
            )
            .await?;
        self.learn(&stored);
        debug!(
            stored = stored.stored(),
            queries = stored.queries(),
            "record stored"
        );
        tracing::trace!(target = ?&target[..3], at = ?stored.closest(), "stored at");
        if stored.stored() == 0 {
            return Err(DhtError::NotStored);
        }
        Ok(())
    }

    /// The newest record `peer` published for us this epoch (or, early in the epoch, the last
    /// one), newer than `after` (a `sent_at_ms`) if given: a walk across the DHT from a socket
    /// of its own, ending at the first record that opens.
    pub async fn lookup(&self, peer: &PeerId, after: Option<u64>) -> Option<Record> {
        for pair in self.record_pairs(peer) {
            if let Some(r) = self.lookup_under(&pair, after).await {
                return Some(r);
            }
        }
        None
    }

    async fn lookup_under(&self, pair: &PairSecret, after: Option<u64>) -> Option<Record> {
        for epoch in epochs_to_read(now_ms()) {
            let keys = pair.incoming(epoch);
            let open = |f: &Found| open_found(&keys, f).map(|r| (r.sent_at_ms, r));
            if let Some(r) = self.lookup_target(target_of(&keys), after, open).await {
                return Some(r);
            }
        }
        None
    }

    /// The newest record `peer` published for us: this epoch's (as [`Self::lookup`]), or if
    /// there is none, the newest of the last `RECORD_LOOKBACK` epochs, all read at once. A
    /// listener with more contacts without its chain than `PAIR_RECORDS` gives each a
    /// record only every few epochs; what a caller needs from it is the chain (which steps
    /// forward to this epoch) and, if the presence under that chain is gone, the addresses.
    pub async fn lookup_recent(&self, peer: &PeerId) -> Option<Record> {
        if let Some(r) = self.lookup(peer, None).await {
            return Some(r);
        }
        let now = epoch_of(now_ms());
        let mut reads = Vec::new();
        for pair in self.record_pairs(peer) {
            for back in 1..=RECORD_LOOKBACK.min(now) {
                let keys = pair.incoming(now - back);
                reads.push(async move {
                    let open = |f: &Found| open_found(&keys, f).map(|r| (r.sent_at_ms, r));
                    self.lookup_target(target_of(&keys), None, open).await
                });
            }
        }
        join_all(reads)
            .await
            .into_iter()
            .flatten()
            .max_by_key(|r| r.sent_at_ms)
    }

    /// A walk to `target` from a socket of its own, ending at the first value `open` accepts
    /// (it gives the value's time and what it means) that is newer than `after`.
    async fn lookup_target<T>(
        &self,
        target: [u8; 20],
        after: Option<u64>,
        open: impl FnMut(&Found) -> Option<(u64, T)>,
    ) -> Option<T> {
        let seeds = self.seeds(&target).await;
        let socket = TargetSocket::open(self.bind).await.ok()?;
        let mut state = socket.state.lock().await;
        let (walk, found) = socket
            .read_with(&mut state, target, after, &seeds, self.limits, open)
            .await;
        self.learn(&walk);
        found
            .filter(|(at, _)| after.is_none_or(|a| *at > a))
            .map(|(_, t)| t)
    }

    /// Publishes our presence with this epoch's value of our inbox chain: our addresses,
    /// signed by `me`, sealed for every contact who holds the chain. One record for all of
    /// them.
    pub async fn publish_presence(
        &self,
        chain: &InboxChain,
        me: &Identity,
        us: &Reachability,
    ) -> Result<(), DhtError> {
        let sent_at_ms = now_ms();
        let chain = chain.at(epoch_of(sent_at_ms).max(chain.epoch()))?;
        let keys = RecordKeys::presence(&chain);
        let record = Record {
            sent_at_ms,
            candidates: us.candidates.iter().copied().take(MAX_CANDIDATES).collect(),
            nat: us.nat,
            intent: None,
            inbox: None,
        };
        let value = keys.seal_presence(&record, me, random())?;
        self.store_value(&keys, value, sent_at_ms).await
    }

    /// `peer`'s presence, read with the inbox chain it told us: where it is, signed by it.
    pub async fn lookup_presence(&self, peer: &PeerId, chain: &InboxChain) -> Option<Record> {
        for epoch in epochs_to_read(now_ms()) {
            let Ok(at) = chain.at(epoch) else {
                continue;
            };
            let keys = RecordKeys::presence(&at);
            let open = |f: &Found| match keys.open_presence(&f.value, peer, now_ms()) {
                Ok(r) if r.sent_at_ms as i64 == f.seq => Some((r.sent_at_ms, r)),
                _ => None,
            };
            if let Some(r) = self.lookup_target(target_of(&keys), None, open).await {
                return Some(r);
            }
        }
        None
    }

    /// Writes a call intent into `peer`'s inbox (found with the chain it told us), sealed
    /// under our pair's keys, so that only `peer` can read it and tell it is ours.
    pub async fn write_inbox(
        &self,
        peer: &PeerId,
        chain: &InboxChain,
        us: &Reachability,
        intent: CallIntent,
    ) -> Result<(), DhtError> {
        let sent_at_ms = now_ms();
        let epoch = epoch_of(sent_at_ms);
        let inbox = chain.at(epoch)?;
        // While the last call's root is not confirmed we cannot tell which of the two the
        // peer kept (it erased the older one if it heard we stored the newer; it holds only
        // the older one if its own write was lost): sealed under both.
        let pairs = self.record_pairs(peer);
        let (newer, older) = match pairs.as_slice() {
            [] => return Err(DhtError::NotAContact),
            [one] => (one, None),
            [newer, older, ..] => (newer, Some(older)),
        };
        let record = Record {
            sent_at_ms,
            candidates: us.candidates.iter().copied().take(MAX_CANDIDATES).collect(),
            nat: us.nat,
            intent: Some(intent),
            inbox: None,
        };
        let value = seal_inbox(
            &newer.outgoing(epoch),
            older.map(|p| p.outgoing(epoch)).as_ref(),
            &record,
            [random(), random()],
            random(),
        )?;
        self.store_value(&RecordKeys::inbox(&inbox), value, sent_at_ms)
            .await
    }

    /// Polls our inbox (this epoch's value of our chain) from the few nodes closest to it:
    /// the newest intent in it, newer than `after`, that opens under one of `contacts`'
    /// pairs, and whose it is. Whoever holds our chain can write there; only a contact's
    /// pair keys make a value we act on.
    pub async fn poll_inbox(
        &self,
        chain: &InboxChain,
        contacts: &[PeerId],
        after: Option<u64>,
    ) -> Option<(PeerId, Record)> {
        let pairs: Vec<(PeerId, PairSecret)> = contacts
            .iter()
            .flat_map(|p| self.record_pairs(p).into_iter().map(move |s| (*p, s)))
            .collect();
        for epoch in epochs_to_read(now_ms()) {
            let Ok(at) = chain.at(epoch) else {
                continue;
            };
            let target = target_of(&RecordKeys::inbox(&at));
            let open = |f: &Found| {
                pairs.iter().find_map(|(peer, pair)| {
                    let keys = pair.incoming(epoch);
                    let r = checked(keys.open_inbox(&f.value, now_ms()), f)?;
                    Some((r.sent_at_ms, (*peer, r)))
                })
            };
            if let Some(r) = self
                .poll_target(target, after, INBOX_POLL_NODES, 1, open)
                .await
            {
                return Some(r);
            }
        }
        None
    }

    /// Like [`Self::lookup`], but from the socket this target is polled from, asking the few
    /// nodes closest to it (found by a walk on the first poll): a poll every few seconds costs
    /// a handful of datagrams, not a walk across the DHT.
    pub async fn poll(&self, peer: &PeerId, after: Option<u64>) -> Option<Record> {
        for pair in self.record_pairs(peer) {
            if let Some(r) = self.poll_under(&pair, after).await {
                return Some(r);
            }
        }
        None
    }

    async fn poll_under(&self, pair: &PairSecret, after: Option<u64>) -> Option<Record> {
        for epoch in epochs_to_read(now_ms()) {
            let keys = pair.incoming(epoch);
            let open = |f: &Found| open_found(&keys, f).map(|r| (r.sent_at_ms, r));
            if let Some(r) = self
                .poll_target(target_of(&keys), after, POLL_NODES, POLL_NODES, open)
                .await
            {
                return Some(r);
            }
        }
        None
    }

    /// Polls `target` from the socket it is polled from: `per_poll` of the `nodes` nodes
    /// closest to it (found by a walk on the first poll). With `per_poll < nodes` the kept
    /// nodes take turns, each poll is exactly `per_poll` gets, and the list is walked for
    /// again every few minutes, or at once when the nodes asked did not answer; otherwise the poll may go on to closer nodes it hears of, and keeps the
    /// closest that answered. Returns the newest value `open` accepts that is newer than
    /// `after`.
    async fn poll_target<T>(
        &self,
        target: [u8; 20],
        after: Option<u64>,
        nodes: usize,
        per_poll: usize,
        open: impl FnMut(&Found) -> Option<(u64, T)>,
    ) -> Option<T> {
        let poller = self.poll_socket(&target).await?;
        // One poll at a time per socket: two would take each other's answers.
        let mut state = poller.state.lock().await;
        let kept = state
            .closest
            .as_ref()
            .filter(|(c, at)| !c.is_empty() && at.elapsed() < CLOSEST_FOR)
            .map(|(c, _)| c.clone());
        let turns = per_poll < nodes;
        let (seeds, limits) = match &kept {
            Some(c) if turns => {
                let ask = per_poll.clamp(1, c.len());
                let first = state.turn % c.len();
                state.turn = state.turn.wrapping_add(ask);
                (
                    (0..ask)
                        .map(|i| c[(first + i) % c.len()])
                        .map(|(a, id)| (a, Some(id)))
                        .collect(),
                    Limits {
                        k: ask,
                        max_queries: ask,
                        ..self.limits
                    },
                )
            }
            Some(c) => (
                c.iter()
                    .take(nodes)
                    .map(|(a, id)| (*a, Some(*id)))
                    .collect(),
                Limits {
                    k: nodes,
                    max_queries: 2 * nodes,
                    ..self.limits
                },
            ),
            None => (self.seeds(&target).await, self.limits),
        };
        let (walk, found) = poller
            .read_with(&mut state, target, after, &seeds, limits, open)
            .await;
        self.learn(&walk);
        let closest = walk.closest();
        tracing::trace!(target = ?&target[..3], asked = ?seeds, found = found.is_some(),
            answered = ?closest, "polled");
        match kept {
            Some(_) if turns => {
                // Not "a node asked named a closer one": routing tables name departed nodes
                // often enough that this would walk again at nearly every poll (measured: the
                // cold caller's ring time doubled).
                if closest.is_empty() {
                    state.closest = None;
                }
            }
            _ => {
                state.closest = (!closest.is_empty()).then(|| {
                    (
                        closest.into_iter().take(nodes).collect(),
                        std::time::Instant::now(),
                    )
                });
            }
        }
        found
            .filter(|(at, _)| after.is_none_or(|a| *at > a))
            .map(|(_, t)| t)
    }

    /// The socket `target` is polled from, opened on first use (with its own node ID and
    /// transaction counter, as one DHT client would have); sockets of targets not polled for
    /// two minutes (the last epoch's, a former contact's) are closed.
    async fn poll_socket(&self, target: &[u8; 20]) -> Option<Arc<TargetSocket>> {
        if let Some(p) = self
            .polls
            .lock()
            .expect("poll socket lock poisoned")
            .get(target)
        {
            p.touch();
            return Some(p.clone());
        }
        let fresh = Arc::new(TargetSocket::open(self.bind).await.ok()?);
        let mut all = self.polls.lock().expect("poll socket lock poisoned");
        all.retain(|_, p| p.idle() < POLL_SOCKET_IDLE);
        // Another poll of the same target may have opened one meanwhile: keep the first.
        Some(all.entry(*target).or_insert(fresh).clone())
    }

    /// How many polling sockets are open (one per target polled lately).
    pub fn polling_sockets(&self) -> usize {
        self.polls.lock().expect("poll socket lock poisoned").len()
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

/// Runs `futures` together on this task; their outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, done) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *done = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The epochs whose records a reader asks for at `now`: this one, and early in it the last
/// one too (the publisher's clock may be behind, or its new record not yet stored).
fn epochs_to_read(now: u64) -> Vec<u64> {
    let mut epochs = vec![epoch_of(now)];
    if now % EPOCH_MS < 60_000 {
        epochs.push(epoch_of(now).saturating_sub(1));
    }
    epochs
}

/// A UDP socket with a node ID and transaction counter of its own, used for one target (and
/// so one epoch) only: what one DHT node sees of it never joins two targets.
struct TargetSocket {
    socket: tokio::net::UdpSocket,
    state: tokio::sync::Mutex<TargetState>,
    used: std::sync::Mutex<std::time::Instant>,
}

struct TargetState {
    node_id: [u8; 20],
    txids: krpc::TxIds,
    /// The nodes closest to the target, and when they were found.
    closest: Option<(Vec<NodeRef>, std::time::Instant)>,
    /// Whose turn it is among `closest`, when polls ask only some of them.
    turn: usize,
}

/// A DHT node: its address and ID.
type NodeRef = (SocketAddr, [u8; 20]);

impl TargetSocket {
    async fn open(bind: Ipv4Addr) -> std::io::Result<Self> {
        Ok(Self {
            socket: tokio::net::UdpSocket::bind((bind, 0)).await?,
            state: tokio::sync::Mutex::new(TargetState {
                node_id: random(),
                txids: krpc::TxIds::new(random()),
                closest: None,
                turn: 0,
            }),
            used: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    fn touch(&self) {
        *self.used.lock().expect("socket lock poisoned") = std::time::Instant::now();
    }

    fn idle(&self) -> Duration {
        self.used.lock().expect("socket lock poisoned").elapsed()
    }

    /// A walk to `target` that stores nothing.
    async fn walk(
        &self,
        target: [u8; 20],
        seq: Option<i64>,
        seeds: &[(SocketAddr, Option<[u8; 20]>)],
        limits: Limits,
    ) -> Walk {
        let mut state = self.state.lock().await;
        let mut walk = Walk::new(
            target,
            state.node_id,
            state.txids.clone(),
            seq,
            seeds,
            limits,
        );
        self.drive(&mut walk, |_| false).await;
        state.txids = walk.txids();
        walk
    }

    /// A walk to `target` that stores `item` at the closest nodes.
    async fn store(
        &self,
        target: [u8; 20],
        seeds: &[(SocketAddr, Option<[u8; 20]>)],
        limits: Limits,
        item: Item,
    ) -> Result<Walk, walk::ItemError> {
        let mut state = self.state.lock().await;
        let mut walk = Walk::new(
            target,
            state.node_id,
            state.txids.clone(),
            None,
            seeds,
            limits,
        )
        .store(item)?;
        self.drive(&mut walk, |_| false).await;
        state.txids = walk.txids();
        Ok(walk)
    }

    /// A walk to `target` that ends at the first value `open` accepts (giving its time and
    /// meaning); the newest of those found at once is kept.
    async fn read_with<T>(
        &self,
        state: &mut TargetState,
        target: [u8; 20],
        after: Option<u64>,
        seeds: &[(SocketAddr, Option<[u8; 20]>)],
        limits: Limits,
        mut open: impl FnMut(&Found) -> Option<(u64, T)>,
    ) -> (Walk, Option<(u64, T)>) {
        let seq = after.map(|a| a as i64);
        let mut walk = Walk::new(
            target,
            state.node_id,
            state.txids.clone(),
            seq,
            seeds,
            limits,
        );
        let mut best: Option<(u64, T)> = None;
        self.drive(&mut walk, |found| {
            for f in found {
                if let Some((at, t)) = open(f) {
                    if best.as_ref().is_none_or(|(b, _)| at > *b) {
                        best = Some((at, t));
                    }
                }
            }
            best.is_some()
        })
        .await;
        state.txids = walk.txids();
        (walk, best)
    }

    /// Runs `walk` on this socket until it ends or `enough` says the values found so far are
    /// enough.
    async fn drive(&self, walk: &mut Walk, mut enough: impl FnMut(&[Found]) -> bool) {
        self.touch();
        let start = tokio::time::Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut buf = [0u8; 1500];
        // However the nodes behave, a walk ends.
        let give_up = start + WALK_LIMIT;
        loop {
            while let Some((to, query)) = walk.poll_transmit(now()) {
                if let Err(e) = self.socket.send_to(&query, to).await {
                    debug!(error = %e, "a DHT query could not be sent");
                }
            }
            let found = walk.take_found();
            if !found.is_empty() && enough(&found) {
                break;
            }
            if walk.is_done() {
                break;
            }
            let wake = walk
                .poll_timeout(now())
                .map(|t| start + Duration::from_millis(t))
                .unwrap_or(give_up)
                .min(give_up);
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        walk.handle(now(), crate::probe_socket::canonical(from), &buf[..n]);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= give_up {
                        break;
                    }
                    walk.handle_timeout(now());
                }
            }
        }
        self.touch();
    }
}

/// The longest one walk may take, whatever the nodes do.
const WALK_LIMIT: Duration = Duration::from_secs(15);

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
    reachability_within(&node.handle(), rendezvous, Duration::ZERO).await
}

/// [`reachability`], waiting up to `settle` (alongside the measurement) for the router's
/// answer about a port mapping: a listener's first record waits, so that the record contacts
/// read first already has the forwarded port. A caller waits only behind a symmetric NAT (see
/// [`CALLER_SETTLE`]).
async fn reachability_within(
    node: &Handle,
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

async fn measure(node: &Handle, rendezvous: &Rendezvous) -> Reachability {
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
        let (plan, access) = contact_plan(&self.handle(), rendezvous, peer).await?;
        self.call_punched_with(plan, access).await
    }
}

/// What punching towards a contact with no known address takes: reads its rendezvous record
/// (or presence), writes our call intent with our candidates where it reads them, and returns
/// the plan to punch with, and the pair's access key.
pub(crate) async fn contact_plan(
    node: &Handle,
    rendezvous: &Rendezvous,
    peer: PeerId,
) -> Result<(PunchPlan, Option<extrasafe_core::access::AccessKey>), CallError> {
    let started = std::time::Instant::now();
    let mut us = reachability_within(node, rendezvous, Duration::ZERO).await;
    if us.mapped.is_none() && us.nat == NatMapping::Varies {
        // Behind a symmetric NAT a forwarded port is what lets most contacts reach us:
        // worth a moment for the router to answer. (Elsewhere punching works without it,
        // and a network with no such router would cost every call this wait.)
        if let Some(mut pm) = rendezvous.port_map() {
            let _ =
                tokio::time::timeout(CALLER_SETTLE, pm.wait_for(|s| *s != MapState::Asking)).await;
            us = reachability_within(node, rendezvous, Duration::ZERO).await;
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
    // With the inbox chain they told us: their presence, and our intent into their inbox.
    let roots = node.shared.config.roots.clone();
    let chain = roots.as_ref().and_then(|r| r.inbox_of(&peer));
    let via_inbox = match &chain {
        Some(chain) => {
            let (theirs, written) = tokio::join!(
                rendezvous.lookup_presence(&peer, chain),
                rendezvous.write_inbox(&peer, chain, &us, intent)
            );
            debug!(took = ?started.elapsed(), found = theirs.is_some(), "intent written to their inbox and their presence read");
            match (theirs, written) {
                (Some(t), Ok(())) if !t.candidates.is_empty() => Some(t),
                (Some(t), Err(e)) if !t.candidates.is_empty() => {
                    return Err(CallError::Rendezvous(e))
                }
                // No presence under the chain (they lost ours, or run an older version),
                // or one with no address (they made a new chain since): their records
                // of their own, as before.
                _ => None,
            }
        }
        None => None,
    };
    let theirs = match via_inbox {
        Some(t) => t,
        None => {
            // Their record for us: where they are, and the inbox chain they publish
            // there for contacts who do not hold it yet (they poll no record per
            // contact): our intent goes into that inbox. With many such contacts a
            // listener gives each a record only every few epochs: the newest one.
            let mut theirs = rendezvous
                .lookup_recent(&peer)
                .await
                .ok_or(CallError::NotPublished)?;
            debug!(took = ?started.elapsed(), chain = theirs.inbox.is_some(), "their record read");
            match theirs.inbox.take() {
                Some(chain) => {
                    // Where they are now: their presence under that chain (the record
                    // may be from an earlier epoch), else the record's addresses.
                    let (presence, written) = tokio::join!(
                        rendezvous.lookup_presence(&peer, &chain),
                        rendezvous.write_inbox(&peer, &chain, &us, intent)
                    );
                    written.map_err(CallError::Rendezvous)?;
                    if let Some(p) = presence.filter(|p| !p.candidates.is_empty()) {
                        theirs.candidates = p.candidates;
                        theirs.nat = p.nat;
                    }
                    // Kept, so that the next call reads their presence at once (the
                    // call itself tells it again, with ours). Written beside the call,
                    // not before it: the punch does not wait for the disk.
                    if let Some(roots) = roots.clone() {
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = roots.store_inbox(&peer, chain, None) {
                                debug!(error = %e, "keeping a contact's inbox chain failed");
                            }
                        });
                    }
                }
                // A listener with no chain of its own: a record of ours, which it polls.
                None => rendezvous
                    .publish(&peer, &us, Some(intent), None)
                    .await
                    .map_err(CallError::Rendezvous)?,
            }
            debug!(took = ?started.elapsed(), "intent written");
            theirs
        }
    };
    let key = rendezvous
        .punch_key(&peer, &call_id)
        .ok_or(CallError::NotPublished)?;
    let access = rendezvous.access_key(&peer);
    Ok((
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
    ))
}

/// A polling socket unused this long is closed.
const POLL_SOCKET_IDLE: Duration = Duration::from_secs(120);

/// How long a caller behind a symmetric NAT waits for the router's answer about a port
/// mapping after measuring its addresses (a router that speaks PCP or NAT-PMP answers within
/// milliseconds; one that speaks none of them would hold the call for the seconds it takes
/// to give up on each).
const CALLER_SETTLE: Duration = Duration::from_millis(1500);

/// Records a listener stores per epoch besides its presence, whatever the number of contacts
/// who do not hold its chain yet: up to this many of them get a record of their own (those
/// whose last one is oldest), and covers fill the rest. With more such contacts each gets
/// one every few epochs, and a caller looks back for it (`RECORD_LOOKBACK`).
pub const PAIR_RECORDS: usize = 4;

/// How many epochs back a caller looks for a record of its own when this epoch has none: two
/// hours, about as long as Mainline nodes keep an item. So up to `PAIR_RECORDS` × 12 = 48
/// contacts without our chain always find one; beyond that some wait for their turn.
pub const RECORD_LOOKBACK: u64 = 12;

/// An epoch and the start of our inbox chain then (records are picked again for each).
type Slot = (u64, Option<u64>);

/// Which of the contacts without our chain get a record of their own in `epoch`: at most
/// `k`, first those never given one (by this process), then those whose last one is oldest;
/// ties in an order that changes with the epoch.
fn pick_records(
    unsynced: &[PeerId],
    last: &HashMap<PeerId, u64>,
    epoch: u64,
    k: usize,
) -> Vec<PeerId> {
    use std::hash::{Hash, Hasher};
    let mut order: Vec<(Option<u64>, u64, PeerId)> = unsynced
        .iter()
        .map(|p| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (epoch, p.as_bytes()).hash(&mut h);
            (last.get(p).copied(), h.finish(), *p)
        })
        .collect();
    order.sort_by_key(|a| (a.0, a.1));
    order.into_iter().take(k).map(|(_, _, p)| p).collect()
}

/// How soon a record that could not be stored is tried again.
const UNSTORED_RETRY: Duration = Duration::from_secs(30);

/// Our inbox is polled this many times less often than a pair's record: with the 2 s default,
/// every 4 s on average (2–6 s), one of its 2 closest nodes in turn: 15 gets a minute,
/// whatever the number of contacts.
const INBOX_POLL_FACTOR: f64 = 2.0;

/// `d` scaled by a random factor between 0.5 and 1.5.
fn jittered(d: Duration) -> Duration {
    let mut r = [0u8; 2];
    getrandom::fill(&mut r).expect("the OS random source works");
    d.mul_f64(0.5 + f64::from(u16::from_le_bytes(r)) / 65535.0)
}

/// How often a listening node measures its addresses again.
const REGATHER: Duration = Duration::from_secs(60);

/// Where a contact's intent was read.
#[derive(Clone, Copy)]
enum Via {
    /// A record of the pair's own.
    Pair,
    /// Our inbox.
    Inbox,
    /// The inbox of the chain ours replaced.
    Previous,
}

/// A listening node's presence on the DHT.
#[derive(Debug)]
pub struct Served {
    /// A plan to punch back for each contact's call intent.
    pub intents: mpsc::Receiver<PunchPlan>,
    /// What we last published, and for how many contacts it was stored.
    pub published: watch::Receiver<Option<(Reachability, usize)>>,
    /// How many contacts' own records the last round polled: none with an inbox chain of our
    /// own (every contact's intent is read in our inbox, or the previous chain's); every
    /// contact without one.
    pub polled_per_pair: watch::Receiver<usize>,
}

/// Keeps our records published and watches our contacts' records for call intents, until
/// the returned `Served` is dropped (at once between polls; a round already under way is
/// finished first).
pub fn serve(node: Arc<Node>, rendezvous: Arc<Rendezvous>, config: DhtConfig) -> Served {
    let (tx, rx) = mpsc::channel(8);
    let (stored_tx, stored_rx) = watch::channel(None);
    let (pairs_tx, pairs_rx) = watch::channel(0);
    // Records come from the roots the node's calls keep replacing.
    if let Some(r) = node.roots() {
        rendezvous.use_roots(r);
    }
    tokio::spawn(async move {
        let peers: Vec<PeerId> = rendezvous.pairs.keys().copied().collect();
        let handle = node.handle();
        let mut reconnecting = node.shared.reconnecting.subscribe();
        // Our inbox: one presence record and one inbox per epoch for every contact who holds
        // our chain, however many they are. The chain is read again every round: removing a
        // contact renews it (possibly in another process).
        let signer = node
            .own_inbox()
            .map(|(_, me)| Identity::from_seed(&me.seed()));
        let mut own: Option<OwnInbox> = None;
        let mut published: Option<(u64, Reachability, tokio::time::Instant)> = None;
        let mut presence: Option<(u64, Reachability, tokio::time::Instant)> = None;
        let mut last_seen: HashMap<PeerId, u64> = HashMap::new();
        let mut inbox_seen: Option<u64> = None;
        let mut previous_seen: Option<u64> = None;
        // Inbox polls alternate between our chain's and the previous one's while contacts
        // hold that: the same number of polls either way.
        let mut poll_previous = false;
        let mut answered: HashSet<[u8; 16]> = HashSet::new();
        let mut unstored: HashSet<PeerId> = HashSet::new();
        // The epoch, chain and addresses cover records were last stored for.
        let mut covered: Option<(Slot, Reachability)> = None;
        // The contacts without our chain given a record of their own for an epoch and chain,
        // and the epoch each was last given one.
        let mut picked: Option<(Slot, Vec<PeerId>)> = None;
        let mut last_record: HashMap<PeerId, u64> = HashMap::new();
        // Contacts with a record of their own stored since `published` was last stale.
        let mut recorded: HashSet<PeerId> = HashSet::new();
        let mut retry_at = tokio::time::Instant::now();
        let mut next_inbox = tokio::time::Instant::now();
        let mut presence_retry_at = tokio::time::Instant::now();
        // Long enough for a router to answer, or for us to give up on PCP, NAT-PMP and UPnP.
        let mut settle = Duration::from_secs(4);
        // The root each contact's records were last published under.
        let roots = node.roots();
        let mut published_roots = roots
            .as_ref()
            .map(|r| r.current_checks())
            .unwrap_or_default();
        loop {
            // Dropping `Served` (its intents) stops the service.
            if tx.is_closed() {
                return;
            }
            // Measured again once a minute (cached in between), and on every round while a
            // call of ours is reconnecting: our address may be what changed.
            if *reconnecting.borrow_and_update() > 0 {
                rendezvous.forget_measurement();
            }
            let ours = reachability_within(&handle, &rendezvous, settle).await;
            settle = Duration::ZERO;
            let epoch = epoch_of(now_ms());
            let now_own = node.own_inbox().map(|(o, _)| o);
            if now_own.as_ref().map(|o| o.since_ms) != own.as_ref().map(|o| o.since_ms) {
                // A new chain (a contact was removed): whoever holds the old one finds a
                // presence with no address there from now on (and falls back to records
                // of its own), and nothing more of ours.
                if let (Some(old), Some(me)) = (&own, &signer) {
                    if let Err(e) = rendezvous
                        .publish_presence(&old.chain, me, &Reachability::default())
                        .await
                    {
                        debug!(error = %e, "clearing our presence under the old chain failed");
                    }
                }
                presence = None;
                previous_seen = inbox_seen.take();
                presence_retry_at = tokio::time::Instant::now();
                next_inbox = tokio::time::Instant::now();
            }
            own = now_own;
            // Contacts who hold our chain (they told us theirs in a call since it was made,
            // and were told ours) find us through our presence and inbox; the others through
            // records of their own.
            let held: HashSet<PeerId> = match (&own, &roots) {
                (Some(o), Some(r)) => r.holding_ours(o.since_ms).into_iter().collect(),
                _ => HashSet::new(),
            };
            // Contacts who hold the chain ours replaced (those who stayed when one was
            // removed) write their intents into its inbox, which we still poll; for our
            // addresses they read records of their own, which we publish but do not poll.
            let held_previous: HashSet<PeerId> = match (&own, &roots) {
                (
                    Some(OwnInbox {
                        previous: Some((_, since)),
                        ..
                    }),
                    Some(r),
                ) => r.holding_ours(*since).into_iter().collect(),
                _ => HashSet::new(),
            };
            // A contact removed while we run gets nothing more from us.
            let current: Vec<PeerId> = match &roots {
                Some(r) => {
                    let now = r.contacts();
                    peers.iter().filter(|p| now.contains(p)).copied().collect()
                }
                None => peers.clone(),
            };
            let (synced, unsynced): (Vec<PeerId>, Vec<PeerId>) =
                current.iter().partition(|p| held.contains(p));
            // With a chain of our own, every contact's intent comes through an inbox: those
            // who do not hold the chain read it in the record we publish for them. Only a
            // listener with no chain (an older contact list) polls a record per contact.
            let polled_pairs: Vec<PeerId> = if own.is_some() {
                Vec::new()
            } else {
                unsynced
                    .iter()
                    .filter(|p| !held_previous.contains(p))
                    .copied()
                    .collect()
            };
            let on_previous: Vec<PeerId> = unsynced
                .iter()
                .filter(|p| held_previous.contains(p))
                .copied()
                .collect();
            // With a chain of our own, the same number of records per epoch whatever the
            // number of contacts without it: `PAIR_RECORDS` of them at most, picked once per
            // epoch (and again when the chain is renewed), the rest covers.
            let slot = (epoch, own.as_ref().map(|o| o.since_ms));
            if own.is_some() && picked.as_ref().map(|(k, _)| *k) != Some(slot) {
                let chosen = pick_records(&unsynced, &last_record, epoch, config.pair_records);
                picked = Some((slot, chosen));
                // A new epoch or a new chain: every picked contact needs a record of this
                // slot, even one stored earlier in the epoch under the old chain.
                recorded.clear();
            }
            let recordable: Vec<PeerId> = match (&own, &picked) {
                (Some(_), Some((_, chosen))) => unsynced
                    .iter()
                    .filter(|p| chosen.contains(p))
                    .copied()
                    .collect(),
                _ => unsynced.clone(),
            };
            let stale = published.as_ref().is_none_or(|(e, c, at)| {
                *e != epoch || *c != ours || at.elapsed() >= config.republish
            });
            // A contact whose record could not be stored is tried again within half a
            // minute, not at the next republish.
            let mut due: Vec<PeerId> = if stale {
                recorded.clear();
                recordable.clone()
            } else if retry_at <= tokio::time::Instant::now() {
                unstored.iter().copied().collect()
            } else {
                Vec::new()
            };
            due.retain(|p| recordable.contains(p));
            unstored.retain(|p| recordable.contains(p));
            recorded.retain(|p| recordable.contains(p));
            // A contact who no longer holds our chain (we made a new one) needs a record of
            // its own at once, not at the next republish.
            for p in &recordable {
                if !recorded.contains(p) && !unstored.contains(p) && !due.contains(p) {
                    due.push(*p);
                }
            }
            // A call replaced a contact's root: the records it reads are now under the new
            // one, so ours must be too, at once.
            if let Some(r) = &roots {
                let now = r.current_checks();
                for peer in &recordable {
                    if now.get(peer) != published_roots.get(peer) && !due.contains(peer) {
                        due.push(*peer);
                    }
                }
                published_roots = now;
            }
            let presence_due = own.is_some()
                && presence_retry_at <= tokio::time::Instant::now()
                && presence.as_ref().is_none_or(|(e, c, at)| {
                    *e != epoch || *c != ours || at.elapsed() >= config.republish
                });
            if !due.is_empty() {
                retry_at = tokio::time::Instant::now() + UNSTORED_RETRY;
            }
            let mut stored_any = false;
            if presence_due {
                if let (Some(o), Some(me)) = (&own, &signer) {
                    match rendezvous.publish_presence(&o.chain, me, &ours).await {
                        Ok(()) => {
                            stored_any = true;
                            presence = Some((epoch, ours.clone(), tokio::time::Instant::now()));
                        }
                        Err(e) => {
                            debug!(error = %e, "publishing our presence failed");
                            // Never stored yet (no DHT nodes answered): on the next round.
                            presence_retry_at = tokio::time::Instant::now()
                                + if presence.is_none() {
                                    Duration::ZERO
                                } else {
                                    UNSTORED_RETRY
                                };
                        }
                    }
                }
            }
            // Records nobody reads, so that an epoch's puts number `PAIR_RECORDS` however
            // few contacts need a record of their own. Once per epoch, chain and set of
            // addresses, whether or not the real ones could be stored (they are tried
            // again; the covers are not).
            // (Counted against the records this round stores, not those picked: a picked
            // contact who has called since holds the chain and needs none, and a missing
            // record would tell that someone called.)
            let covers = match &picked {
                Some(_) if own.is_some() && covered.as_ref() != Some(&(slot, ours.clone())) => {
                    covered = Some((slot, ours.clone()));
                    config.pair_records.saturating_sub(recordable.len())
                }
                _ => 0,
            };
            let real = due.len();
            if !due.is_empty() || covers > 0 {
                let mut puts = JoinSet::new();
                let chain = own.as_ref().map(|o| o.chain.clone());
                for peer in due {
                    let (rv, ours, chain) = (rendezvous.clone(), ours.clone(), chain.clone());
                    puts.spawn(async move {
                        (
                            Some(peer),
                            rv.publish(&peer, &ours, None, chain.as_ref()).await,
                        )
                    });
                }
                for _ in 0..covers {
                    let rv = rendezvous.clone();
                    puts.spawn(async move { (None, rv.publish_cover().await) });
                }
                let mut stored = 0;
                while let Some(r) = puts.join_next().await {
                    match r {
                        Ok((None, r)) => {
                            if let Err(e) = r {
                                debug!(error = %e, "storing a cover record failed");
                            }
                        }
                        Ok((Some(peer), Ok(()))) => {
                            stored += 1;
                            unstored.remove(&peer);
                            recorded.insert(peer);
                            // Its turn counts once its record is stored, not when picked.
                            last_record.insert(peer, epoch);
                        }
                        Ok((Some(peer), Err(e))) => {
                            debug!(error = %e, "publishing a rendezvous record failed");
                            unstored.insert(peer);
                        }
                        Err(_) => {}
                    }
                }
                // Nothing stored (no DHT nodes yet): try again on the next round.
                if stored > 0 {
                    stored_any = true;
                }
                if stale && (stored > 0 || real == 0) {
                    published = Some((epoch, ours.clone(), tokio::time::Instant::now()));
                }
            } else if stale && recordable.is_empty() {
                published = Some((epoch, ours.clone(), tokio::time::Instant::now()));
            }
            if stored_any {
                let reachable = current
                    .len()
                    .saturating_sub(unstored.len())
                    .saturating_sub(if presence.is_none() { synced.len() } else { 0 });
                let _ = stored_tx.send(Some((ours.clone(), reachable)));
            }
            let polled = std::time::Instant::now();
            pairs_tx.send_replace(polled_pairs.len());
            let mut reads = JoinSet::new();
            for peer in polled_pairs.iter().copied() {
                let (rv, after) = (rendezvous.clone(), last_seen.get(&peer).copied());
                reads.spawn(
                    async move { rv.poll(&peer, after).await.map(|r| (peer, r, Via::Pair)) },
                );
            }
            // Our inbox, on its own slower clock: whatever the number of contacts, the same
            // few queries (taking turns with the previous chain's while anyone holds that).
            if let Some(o) = own
                .as_ref()
                .filter(|_| next_inbox <= tokio::time::Instant::now())
            {
                // For as long as callers look back for records (`RECORD_LOOKBACK`) after we
                // renewed our chain, a contact who never held it may have found an older
                // record carrying the one it replaced, and writes there: any current contact
                // without our chain may write into the previous inbox then.
                let renewed_lately = o.previous.is_some()
                    && now_ms().saturating_sub(o.since_ms) < RECORD_LOOKBACK * EPOCH_MS;
                let previous_writers = if renewed_lately {
                    unsynced.clone()
                } else {
                    on_previous.clone()
                };
                poll_previous = !poll_previous && !previous_writers.is_empty();
                let (chain, writers, after, via) = match (&o.previous, poll_previous) {
                    (Some((chain, _)), true) => (
                        chain.clone(),
                        previous_writers,
                        previous_seen,
                        Via::Previous,
                    ),
                    // Any contact may write here: those who do not hold our chain read it
                    // in the record we publish for them.
                    _ => (o.chain.clone(), current.clone(), inbox_seen, Via::Inbox),
                };
                let rv = rendezvous.clone();
                reads.spawn(async move {
                    rv.poll_inbox(&chain, &writers, after)
                        .await
                        .map(|(peer, r)| (peer, r, via))
                });
                next_inbox =
                    tokio::time::Instant::now() + jittered(config.poll.mul_f64(INBOX_POLL_FACTOR));
            }
            while let Some(r) = reads.join_next().await {
                let Ok(Some((peer, record, via))) = r else {
                    continue;
                };
                match via {
                    Via::Inbox => inbox_seen = inbox_seen.max(Some(record.sent_at_ms)),
                    Via::Previous => previous_seen = previous_seen.max(Some(record.sent_at_ms)),
                    Via::Pair => {
                        last_seen.insert(peer, record.sent_at_ms);
                    }
                }
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
            // between half and one and a half poll intervals. With every contact on our
            // inbox, the next inbox poll is the only thing to wake for.
            let mut wake = tokio::time::Instant::now() + jittered(config.poll);
            if polled_pairs.is_empty() && own.is_some() {
                wake = next_inbox;
            }
            let replaced = async {
                match &roots {
                    Some(r) => r.replaced().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                // A call just replaced a root: publish under the new one now, not a poll
                // later (the contact may call back at once).
                _ = replaced => {}
                // A call lost its path: measure and republish at once if we moved.
                _ = reconnecting.changed() => {}
                _ = tx.closed() => return,
            }
        }
    });
    Served {
        intents: rx,
        published: stored_rx,
        polled_per_pair: pairs_rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|_| Identity::from_seed(&random()).peer_id())
            .collect()
    }

    /// However many contacts lack our chain, an epoch gives records to at most `k` of them,
    /// and each gets its turn within ⌈n / k⌉ epochs.
    #[test]
    fn records_per_epoch_are_capped_and_every_contact_gets_a_turn() {
        for n in [0, 1, 3, 4, 5, 20, 49] {
            let unsynced = peers(n);
            let mut last = HashMap::new();
            let mut turns: HashMap<PeerId, usize> = HashMap::new();
            let rounds = n.div_ceil(PAIR_RECORDS).max(1);
            for e in 0..rounds as u64 {
                let chosen = pick_records(&unsynced, &last, 1000 + e, PAIR_RECORDS);
                assert_eq!(chosen.len(), n.min(PAIR_RECORDS), "{n} contacts");
                // Nobody has a second turn while another waits for its first.
                if chosen.iter().any(|p| turns.contains_key(p)) {
                    assert!(
                        unsynced
                            .iter()
                            .all(|p| chosen.contains(p) || turns.contains_key(p)),
                        "{n} contacts, epoch {e}"
                    );
                }
                for p in chosen {
                    last.insert(p, 1000 + e);
                    *turns.entry(p).or_default() += 1;
                }
            }
            assert_eq!(turns.len(), n, "{n} contacts: every one had a turn");
        }
    }

    /// Failures stay typed up to the front end, sorted by who can act: publishing for someone
    /// who is not a contact is this device's doing, and asks no DHT node anything.
    #[tokio::test]
    async fn a_record_for_a_stranger_is_refused_typed_before_any_query() {
        let me = Identity::from_seed(&random());
        let friend = peers(1)[0];
        let config = DhtConfig {
            // Nowhere: a query would fail differently (no node stored it).
            bootstrap: vec!["127.0.0.1:9".into()],
            bind: Ipv4Addr::LOCALHOST,
            ..DhtConfig::default()
        };
        let rv = Rendezvous::start(pair_secrets(&me, &[friend]).unwrap(), &config).unwrap();
        let stranger = peers(1)[0];
        let e = rv
            .publish(&stranger, &Reachability::default(), None, None)
            .await
            .unwrap_err();
        assert!(matches!(e, DhtError::NotAContact), "{e:?}");
        assert_eq!(e.blame(), crate::Blame::Local);
        assert_eq!(DhtError::NotStored.blame(), crate::Blame::Network);
        let call = CallError::Rendezvous(DhtError::NotStored);
        assert_eq!(call.blame(), crate::Blame::Network);
    }

    /// A contact added later (never given a record) comes before those who had one.
    #[test]
    fn a_contact_never_given_a_record_comes_first() {
        let mut unsynced = peers(8);
        let last: HashMap<PeerId, u64> = unsynced.iter().map(|p| (*p, 7)).collect();
        let new = peers(1)[0];
        unsynced.push(new);
        assert!(pick_records(&unsynced, &last, 8, 1).contains(&new));
    }
}
