//! Our call socket's public address, as DHT nodes (`core::krpc`) or STUN servers the user
//! configured (`core::stun`) see it, and whether our NAT keeps it for every destination.

use std::net::SocketAddr;
use std::time::Duration;

use extrasafe_core::punch::NatMapping;
use extrasafe_core::{krpc, stun};
use tokio::task::JoinSet;

use crate::node::Node;

/// What outside observers saw of the call socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The address each answering DHT node saw.
    pub seen: Vec<SocketAddr>,
    /// Whether those agree.
    pub mapping: NatMapping,
}

impl Observation {
    /// Our public address (for a symmetric NAT only its IP is right, which still lets an
    /// address-filtering NAT on the other side open up to us).
    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.seen.first().copied()
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

    /// A fresh query, and how to read its answer.
    fn query(self) -> (Vec<u8>, ReadAnswer) {
        match self {
            Observer::Dht(_) => {
                let mut txid = [0u8; 4];
                let mut id = [0u8; 20];
                getrandom::fill(&mut txid).expect("the OS random source works");
                getrandom::fill(&mut id).expect("the OS random source works");
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
    /// Asks up to three of `dht_nodes` and the STUN servers `stun` (all at once, a few tries
    /// each within `limit`) which address our call socket's packets arrive from; two answers
    /// are enough.
    pub async fn observe(
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
        asked.extend(
            dht_nodes
                .iter()
                .copied()
                .filter(|a| a.is_ipv4())
                .take(3)
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
                let (query, read) = observer.query();
                tokio::time::timeout(limit, async {
                    loop {
                        socket.send_to(node, &query);
                        let wait = tokio::time::sleep(limit / 3);
                        tokio::pin!(wait);
                        loop {
                            tokio::select! {
                                a = answers.recv() => match a {
                                    Some(d) => if let Some(seen) = read(&d) {
                                        return seen;
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
        let mut seen = Vec::new();
        while let Some(r) = asks.join_next().await {
            if let Ok(Some(a)) = r {
                seen.push(crate::probe_socket::canonical(a));
                if seen.len() == 2 {
                    break;
                }
            }
        }
        asks.abort_all();
        Observation {
            mapping: NatMapping::from_observations(&seen),
            seen,
        }
    }
}

/// STUN servers asked at most (each learns our address and when we are online).
pub const MAX_STUN: usize = 4;

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
