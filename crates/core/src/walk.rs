//! One iterative lookup on the Mainline DHT, and the store that may follow it (sans-IO).
//!
//! A [`Walk`] asks nodes for one target (BEP 44 `get`) from one socket with one node ID: it
//! starts from the seeds it is given, asks at most [`Limits::alpha`] nodes at a time, always
//! the closest to the target not yet asked, follows the nodes they name, and ends when the
//! [`Limits::k`] closest nodes it knows have answered. A node that has not answered within
//! [`Limits::straggle_ms`] stops holding up the walk (it may still answer until
//! [`Limits::timeout_ms`]): one slow or silent node, common on the real DHT, costs the walk a
//! fraction of a second instead of the two seconds a lookup that waits for every node takes.
//! With an item to store, the walk then sends a `put` to the closest nodes that gave it a
//! token, and ends when they have answered (or, once one has stored it, when the rest are
//! stragglers).
//!
//! The walk takes datagrams and time in and gives datagrams, values found and the time of its
//! next timeout out; the driver owns the socket. It keeps one node ID and one counter of
//! transaction IDs, given by the driver, so that the driver decides which queries may share
//! them (`net::dht`: only those of one target in one epoch).

use std::net::SocketAddr;

use crate::bep42;
use crate::krpc::{self, TxIds};

/// How a walk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Queries in flight at once (not counting stragglers).
    pub alpha: usize,
    /// How many of the closest nodes must have answered (and get the item, if any).
    pub k: usize,
    /// After this long without an answer a query no longer holds the walk up.
    pub straggle_ms: u64,
    /// After this long without an answer a query has failed.
    pub timeout_ms: u64,
    /// Most queries of the get phase (a bound on what one walk costs the network).
    pub max_queries: usize,
    /// Most nodes kept as candidates (a node naming thousands cannot grow the walk).
    pub max_candidates: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            alpha: 3,
            k: 8,
            straggle_ms: 400,
            timeout_ms: 2000,
            max_queries: 40,
            max_candidates: 96,
        }
    }
}

/// A mutable item to store once the walk has found the closest nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Ed25519 public key.
    pub key: [u8; 32],
    /// Sequence number.
    pub seq: i64,
    /// Signature over [`krpc::signable`]`(seq, value)`.
    pub sig: [u8; 64],
    /// At most [`krpc::MAX_VALUE_LEN`] bytes.
    pub value: Vec<u8>,
}

/// A value a node answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The node that sent it.
    pub from: SocketAddr,
    /// Its sequence number.
    pub seq: i64,
    /// The value (not checked here: the reader opens it).
    pub value: Vec<u8>,
}

/// Why an item cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// Larger than DHT nodes store.
    #[error("the value is larger than DHT nodes store")]
    TooLarge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    New,
    Asked { txid: [u8; 4], at: u64 },
    Answered { token: Option<Vec<u8>> },
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    addr: SocketAddr,
    /// Unknown for a seed given by address only (a bootstrap node) until it answers.
    id: Option<[u8; 20]>,
    /// Where BEP 42 puts it (`crate::bep42`): 0, a public address the ID fits; 1, an address
    /// BEP 42 exempts (private, loopback, link-local); 2, a public address the ID does not
    /// fit, or an ID not known yet.
    class: u8,
    state: State,
}

impl Candidate {
    fn new(addr: SocketAddr, id: Option<[u8; 20]>) -> Self {
        Self {
            addr,
            id,
            class: id.map_or(2, |id| class_of(addr, &id)),
            state: State::New,
        }
    }

    fn learn_id(&mut self, id: [u8; 20]) {
        self.id = Some(id);
        self.class = class_of(self.addr, &id);
    }
}

/// See [`Candidate::class`]. Exempt addresses rank after public ones that fit: on the public
/// DHT a node named at a private address is unreachable or on the asker's own LAN, and
/// anyone can name one with any ID; on a private DHT every node is exempt, so distance
/// alone decides.
fn class_of(addr: SocketAddr, id: &[u8; 20]) -> u8 {
    if bep42::exempt(addr.ip()) {
        1
    } else if bep42::fits(addr.ip(), id) {
        0
    } else {
        2
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PutState {
    Unsent,
    Asked { txid: [u8; 4], at: u64 },
    Stored,
    Failed,
}

#[derive(Debug)]
enum Phase {
    Get,
    Put(Vec<(SocketAddr, PutState)>),
    Done,
}

/// One lookup (and optional store) for one target. See the module documentation.
#[derive(Debug)]
pub struct Walk {
    target: [u8; 20],
    node_id: [u8; 20],
    txids: TxIds,
    seq: Option<i64>,
    limits: Limits,
    /// Nodes whose ID fits their public address (BEP 42) first, then nodes at exempt
    /// (private) addresses, then those whose ID does not fit, then those of unknown ID;
    /// closest first within each.
    candidates: Vec<Candidate>,
    queries: usize,
    item: Option<Item>,
    phase: Phase,
    found: Vec<Found>,
    stored: usize,
}

/// XOR distance between two IDs, comparable as bytes.
pub fn distance(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    let mut d = [0u8; 20];
    for i in 0..20 {
        d[i] = a[i] ^ b[i];
    }
    d
}

impl Walk {
    /// A walk towards `target` from `seeds` (address, and ID when known), asking with
    /// `node_id` and transaction IDs from `txids`; nodes are asked to leave values out unless
    /// newer than `seq`.
    pub fn new(
        target: [u8; 20],
        node_id: [u8; 20],
        txids: TxIds,
        seq: Option<i64>,
        seeds: &[(SocketAddr, Option<[u8; 20]>)],
        limits: Limits,
    ) -> Self {
        let mut walk = Self {
            target,
            node_id,
            txids,
            seq,
            limits,
            candidates: Vec::new(),
            queries: 0,
            item: None,
            phase: Phase::Get,
            found: Vec::new(),
            stored: 0,
        };
        for (addr, id) in seeds {
            walk.add(*addr, *id);
        }
        walk
    }

    /// Stores `item` at the closest nodes once they are found.
    pub fn store(mut self, item: Item) -> Result<Self, ItemError> {
        if item.value.len() > krpc::MAX_VALUE_LEN {
            return Err(ItemError::TooLarge);
        }
        self.item = Some(item);
        Ok(self)
    }

    /// The transaction counter, to go on with in the next walk of the same target and epoch.
    pub fn txids(&self) -> TxIds {
        self.txids.clone()
    }

    /// True once the walk has ended.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// How many nodes confirmed they stored the item.
    pub fn stored(&self) -> usize {
        self.stored
    }

    /// Queries sent so far (gets and puts).
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// Values found so far, taken out.
    pub fn take_found(&mut self) -> Vec<Found> {
        std::mem::take(&mut self.found)
    }

    /// The closest nodes that answered, closest first (at most `k`): where to ask next time.
    pub fn closest(&self) -> Vec<(SocketAddr, [u8; 20])> {
        self.answered_nodes().take(self.limits.k).collect()
    }

    /// Every node that answered (to remember as a place to start later walks).
    pub fn answered(&self) -> Vec<(SocketAddr, [u8; 20])> {
        self.answered_nodes().collect()
    }

    /// Nodes that answered and told their ID, closest first.
    fn answered_nodes(&self) -> impl Iterator<Item = (SocketAddr, [u8; 20])> + '_ {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Answered { .. }))
            .filter_map(|c| Some((c.addr, c.id?)))
    }

    /// Where a node ranks: a node whose ID fits its public address (BEP 42) before any at an
    /// exempt address and any whose ID does not fit, so that a node that chose its ID next to
    /// the target is asked and stored at only when too few others are known; by distance
    /// within each class.
    fn key(&self, c: &Candidate) -> (bool, u8, [u8; 20]) {
        match c.id {
            Some(id) => (false, c.class, distance(&id, &self.target)),
            None => (true, 2, [0xff; 20]),
        }
    }

    fn add(&mut self, addr: SocketAddr, id: Option<[u8; 20]>) {
        if id == Some(self.node_id) {
            return;
        }
        if let Some(i) = self.candidates.iter().position(|c| c.addr == addr) {
            // A seed known by address only, not asked yet, that a node now names with its
            // ID: from the end of the list (where IDs unknown wait) to its place, or the
            // walk could end without asking the very closest nodes (a bootstrap list that
            // holds them, as a small network's does).
            let c = &self.candidates[i];
            if let (None, Some(id), State::New) = (c.id, id, &c.state) {
                let mut moved = self.candidates.remove(i);
                moved.learn_id(id);
                let key = self.key(&moved);
                let at = self.candidates.partition_point(|c| self.key(c) <= key);
                self.candidates.insert(at, moved);
            }
            return;
        }
        let fresh = Candidate::new(addr, id);
        let key = self.key(&fresh);
        let at = self.candidates.partition_point(|c| self.key(c) <= key);
        self.candidates.insert(at, fresh);
        if self.candidates.len() > self.limits.max_candidates {
            // Drop the farthest node not yet asked; one that is asked stays to be matched.
            if let Some(i) = self
                .candidates
                .iter()
                .rposition(|c| matches!(c.state, State::New))
            {
                self.candidates.remove(i);
            }
        }
    }

    fn straggling(&self, at: u64, now: u64) -> bool {
        now.saturating_sub(at) >= self.limits.straggle_ms
    }

    /// Indexes of the nodes that still count: the `k` closest that have not failed and are
    /// not straggling.
    fn frontier(&self, now: u64) -> Vec<usize> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| match c.state {
                State::Failed => false,
                State::Asked { at, .. } => !self.straggling(at, now),
                _ => true,
            })
            .map(|(i, _)| i)
            .take(self.limits.k)
            .collect()
    }

    /// The next datagram to send and where, if any is due at `now`.
    pub fn poll_transmit(&mut self, now: u64) -> Option<(SocketAddr, Vec<u8>)> {
        self.advance(now);
        match &mut self.phase {
            Phase::Done => None,
            Phase::Put(asks) => {
                let item = self.item.as_ref()?;
                let (addr, state) = asks.iter_mut().find(|(_, s)| *s == PutState::Unsent)?;
                let txid = self.txids.next_id();
                *state = PutState::Asked { txid, at: now };
                let token = self
                    .candidates
                    .iter()
                    .find(|c| c.addr == *addr)
                    .and_then(|c| match &c.state {
                        State::Answered { token } => token.clone(),
                        _ => None,
                    })
                    .unwrap_or_default();
                let query = krpc::put_query(
                    txid,
                    &krpc::Put {
                        node_id: self.node_id,
                        target: self.target,
                        token: &token,
                        key: item.key,
                        seq: item.seq,
                        sig: item.sig,
                        value: &item.value,
                    },
                );
                self.queries += 1;
                Some((*addr, query))
            }
            Phase::Get => {
                if self.queries >= self.limits.max_queries {
                    return None;
                }
                let in_flight = self
                    .candidates
                    .iter()
                    .filter(
                        |c| matches!(c.state, State::Asked { at, .. } if !self.straggling(at, now)),
                    )
                    .count();
                if in_flight >= self.limits.alpha {
                    return None;
                }
                let i = self
                    .frontier(now)
                    .into_iter()
                    .find(|i| self.candidates[*i].state == State::New)?;
                let txid = self.txids.next_id();
                self.candidates[i].state = State::Asked { txid, at: now };
                self.queries += 1;
                let query = krpc::get_query(txid, self.node_id, self.target, self.seq);
                Some((self.candidates[i].addr, query))
            }
        }
    }

    /// A datagram that arrived from `from` at `now`. Anything that is not an answer to one of
    /// our queries from the node we asked is ignored.
    pub fn handle(&mut self, now: u64, from: SocketAddr, datagram: &[u8]) {
        match &mut self.phase {
            Phase::Done => {}
            Phase::Put(asks) => {
                for (addr, state) in asks.iter_mut() {
                    let PutState::Asked { txid, .. } = state else {
                        continue;
                    };
                    if *addr != from {
                        continue;
                    }
                    match krpc::reply(datagram, *txid) {
                        Some(Ok(_)) => {
                            *state = PutState::Stored;
                            self.stored += 1;
                        }
                        Some(Err(_)) => *state = PutState::Failed,
                        None => {}
                    }
                }
            }
            Phase::Get => {
                let Some(i) = self.candidates.iter().position(|c| c.addr == from) else {
                    return;
                };
                let State::Asked { txid, .. } = self.candidates[i].state else {
                    return;
                };
                let answer = match krpc::reply(datagram, txid) {
                    None => return,
                    Some(Err(_)) => {
                        self.candidates[i].state = State::Failed;
                        self.advance(now);
                        return;
                    }
                    Some(Ok(a)) => a,
                };
                if let (Some(seq), Some(value)) = (answer.seq, answer.value) {
                    if value.len() <= krpc::MAX_VALUE_LEN {
                        self.found.push(Found {
                            from,
                            seq,
                            value: value.to_vec(),
                        });
                    }
                }
                let token = answer
                    .token
                    .filter(|t| !t.is_empty() && t.len() <= 64)
                    .map(<[u8]>::to_vec);
                let named: Vec<_> = answer
                    .nodes
                    .map(|n| krpc::compact_nodes(n).collect())
                    .unwrap_or_default();
                let mut answered = self.candidates.remove(i);
                answered.state = State::Answered { token };
                if let (None, Some(id)) = (answered.id, answer.id) {
                    answered.learn_id(id);
                }
                let key = self.key(&answered);
                let at = self.candidates.partition_point(|c| self.key(c) <= key);
                self.candidates.insert(at, answered);
                for (id, addr) in named {
                    self.add(addr, Some(id));
                }
            }
        }
        self.advance(now);
    }

    /// When the walk next needs [`Self::handle_timeout`] (or a [`Self::poll_transmit`]).
    pub fn poll_timeout(&self, now: u64) -> Option<u64> {
        let pending: Vec<u64> = match &self.phase {
            Phase::Done => return None,
            Phase::Get => self
                .candidates
                .iter()
                .filter_map(|c| match c.state {
                    State::Asked { at, .. } => Some(at),
                    _ => None,
                })
                .collect(),
            Phase::Put(asks) => asks
                .iter()
                .filter_map(|(_, s)| match s {
                    PutState::Asked { at, .. } => Some(*at),
                    _ => None,
                })
                .collect(),
        };
        pending
            .into_iter()
            .map(|at| {
                if self.straggling(at, now) {
                    at + self.limits.timeout_ms
                } else {
                    at + self.limits.straggle_ms
                }
            })
            .min()
    }

    /// Time has reached `now`: queries out too long have failed.
    pub fn handle_timeout(&mut self, now: u64) {
        let timeout = self.limits.timeout_ms;
        match &mut self.phase {
            Phase::Done => {}
            Phase::Get => {
                for c in &mut self.candidates {
                    if matches!(c.state, State::Asked { at, .. } if now.saturating_sub(at) >= timeout)
                    {
                        c.state = State::Failed;
                    }
                }
            }
            Phase::Put(asks) => {
                for (_, s) in asks.iter_mut() {
                    if matches!(s, PutState::Asked { at, .. } if now.saturating_sub(*at) >= timeout)
                    {
                        *s = PutState::Failed;
                    }
                }
            }
        }
        self.advance(now);
    }

    /// Moves to the next phase when this one has nothing left that counts.
    fn advance(&mut self, now: u64) {
        match &self.phase {
            Phase::Done => {}
            Phase::Get => {
                let frontier = self.frontier(now);
                let waiting = frontier.iter().any(|i| match self.candidates[*i].state {
                    State::New => self.queries < self.limits.max_queries,
                    State::Asked { .. } => true,
                    _ => false,
                });
                if waiting {
                    return;
                }
                self.phase = match &self.item {
                    None => Phase::Done,
                    Some(_) => {
                        let targets: Vec<_> = self
                            .candidates
                            .iter()
                            .filter(|c| {
                                matches!(&c.state, State::Answered { token: Some(_) })
                                    && c.id.is_some()
                            })
                            .take(self.limits.k)
                            .map(|c| (c.addr, PutState::Unsent))
                            .collect();
                        if targets.is_empty() {
                            Phase::Done
                        } else {
                            Phase::Put(targets)
                        }
                    }
                };
            }
            Phase::Put(asks) => {
                let unsent = asks.iter().any(|(_, s)| *s == PutState::Unsent);
                let waiting = asks.iter().any(|(_, s)| match s {
                    PutState::Asked { at, .. } => {
                        // Once one node has stored it, stragglers do not hold the walk.
                        self.stored == 0 || !self.straggling(*at, now)
                    }
                    _ => false,
                });
                if !unsent && !waiting {
                    self.phase = Phase::Done;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
