//! Our call socket's public address, as DHT nodes (`core::krpc`) or STUN servers the user
//! configured (`core::stun`) see it, and whether our NAT keeps it for every destination.
//! Answers are votes counted by `core::observe`: no single observer decides.

use std::net::SocketAddr;
use std::time::Duration;

use extrasafe_core::observe::{pick_observers, Sighting, Tally, Verdict};
use extrasafe_core::{krpc, stun};
use tokio::task::JoinSet;

use crate::node::Node;

/// What outside observers saw of the call socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Each counted answer (one per observer network), in the order they came.
    pub sightings: Vec<Sighting>,
    /// What they agree on: our public address only if observers in several networks saw it.
    pub verdict: Verdict,
}

impl Observation {
    /// Our public address, if enough observers agree on it (for a symmetric NAT only its IP
    /// is right, which still lets an address-filtering NAT on the other side open up to us).
    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.verdict.reflexive
    }
}

/// Reads an observer's answer: the address it saw, if the datagram answers our query.
type ReadAnswer = Box<dyn Fn(&[u8]) -> Option<SocketAddr> + Send + Sync>;

/// Who is asked what address our packets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    /// A Mainline DHT node (a read-only KRPC ping; BEP 42 makes it report our address).
    Dht(SocketAddr),
    /// A STUN server the user configured (a binding request).
    Stun(SocketAddr),
}

impl Observer {
    fn addr(self) -> SocketAddr {
        match self {
            Observer::Dht(a) | Observer::Stun(a) => a,
        }
    }

    /// A fresh query from `socket`, and how to read its answer.
    fn query(self, socket: &crate::probe_socket::ProbeSocket) -> (Vec<u8>, ReadAnswer) {
        match self {
            Observer::Dht(_) => {
                let (txid, id) = socket.krpc_ids();
                (
                    krpc::ping_query(txid, id),
                    Box::new(move |d| krpc::observed_address(d, txid)),
                )
            }
            Observer::Stun(_) => {
                let mut txid = [0u8; 12];
                getrandom::fill(&mut txid).expect("the OS random source works");
                (
                    stun::binding_request(txid).to_vec(),
                    Box::new(move |d| stun::mapped_address(d, txid)),
                )
            }
        }
    }
}

impl Node {
    /// Asks up to [`MAX_DHT_OBSERVERS`] of `dht_nodes` (picked at random, one per network)
    /// and the STUN servers `stun` (all at once, a few tries each within `limit`) which
    /// address our call socket's packets arrive from, until the answers still to come could
    /// no longer change what the votes say.
    pub async fn observe(
        &self,
        dht_nodes: &[SocketAddr],
        stun: &[SocketAddr],
        limit: Duration,
    ) -> Observation {
        self.handle().observe(dht_nodes, stun, limit).await
    }
}

impl crate::node::Handle {
    /// See [`Node::observe`].
    pub(crate) async fn observe(
        &self,
        dht_nodes: &[SocketAddr],
        stun: &[SocketAddr],
        limit: Duration,
    ) -> Observation {
        // IPv4 only, like the DHT: an IPv6 answer beside an IPv4 one would read as a NAT that
        // changes ports, and the address we publish first must be the IPv4 one.
        let mut asked: Vec<Observer> = stun
            .iter()
            .copied()
            .filter(|a| a.is_ipv4())
            .take(MAX_STUN)
            .map(Observer::Stun)
            .collect();
        let mut dht: Vec<SocketAddr> = dht_nodes.iter().copied().filter(|a| a.is_ipv4()).collect();
        shuffle(&mut dht);
        // One question per network: a second observer there could not vote.
        let taken: Vec<SocketAddr> = asked.iter().map(|o| o.addr()).collect();
        dht.retain(|d| {
            !taken.iter().any(|t| {
                extrasafe_core::observe::network_of(t.ip())
                    == extrasafe_core::observe::network_of(d.ip())
            })
        });
        asked.extend(
            pick_observers(&dht, MAX_DHT_OBSERVERS)
                .into_iter()
                .map(Observer::Dht),
        );
        // Whatever happens to this future (it may be dropped when another path wins), the
        // socket stops routing these observers' datagrams to us.
        let _forget = Forget {
            socket: self.socket.clone(),
            nodes: asked.iter().map(|o| o.addr()).collect(),
        };
        let mut asks = JoinSet::new();
        for &observer in &asked {
            let socket = self.socket.clone();
            asks.spawn(async move {
                let node = observer.addr();
                let mut answers = socket.expect_answer(node);
                // Each try is a new query with the socket's next transaction ID (as the DHT
                // library never re-sends one); an answer to any of them counts.
                let mut reads: Vec<ReadAnswer> = Vec::new();
                tokio::time::timeout(limit, async {
                    loop {
                        let (query, read) = observer.query(&socket);
                        reads.push(read);
                        socket.send_to(node, &query);
                        let wait = tokio::time::sleep(limit / 3);
                        tokio::pin!(wait);
                        loop {
                            tokio::select! {
                                a = answers.recv() => match a {
                                    Some(d) => if let Some(seen) = reads.iter().find_map(|r| r(&d)) {
                                        return (node, seen);
                                    },
                                    // Replaced by another ask of the same node: give up.
                                    None => std::future::pending::<()>().await,
                                },
                                _ = &mut wait => break,
                            }
                        }
                    }
                })
                .await
                .ok()
            });
        }
        let mut tally = Tally::new();
        let mut outstanding = asked.len();
        while let Some(r) = asks.join_next().await {
            outstanding -= 1;
            if let Ok(Some((observer, seen))) = r {
                tally.add(Sighting {
                    observer,
                    seen: crate::probe_socket::canonical(seen),
                });
            }
            if tally.settled(outstanding) {
                break;
            }
        }
        asks.abort_all();
        Observation {
            sightings: tally.votes().to_vec(),
            verdict: tally.verdict(),
        }
    }
}

/// STUN servers asked at most (each learns our address and when we are online).
pub const MAX_STUN: usize = 4;

/// DHT nodes asked at most for one measurement (each in its own network).
pub const MAX_DHT_OBSERVERS: usize = 5;

/// Fisher-Yates with the OS's randomness: which observers we ask is not for a liar to arrange.
fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("the OS random source works");
        let j = (u32::from_le_bytes(b) as usize) % (i + 1);
        v.swap(i, j);
    }
}

/// Removes the socket's waiters for DHT answers when dropped.
struct Forget {
    socket: std::sync::Arc<crate::probe_socket::ProbeSocket>,
    nodes: Vec<SocketAddr>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        for node in &self.nodes {
            self.socket.unexpect_answer(*node);
        }
    }
}
