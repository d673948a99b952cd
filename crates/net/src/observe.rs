//! Our call socket's public address, as DHT nodes see it (`core::krpc`), and whether our NAT
//! keeps it for every destination.

use std::net::SocketAddr;
use std::time::Duration;

use extrasafe_core::krpc;
use extrasafe_core::punch::NatMapping;
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

impl Node {
    /// Asks up to three of `dht_nodes` (at once, a few tries each within `limit`) which
    /// address our call socket's packets arrive from; two answers are enough.
    pub async fn observe(&self, dht_nodes: &[SocketAddr], limit: Duration) -> Observation {
        let mut asks = JoinSet::new();
        let asked: Vec<SocketAddr> = dht_nodes
            .iter()
            .copied()
            .filter(|a| a.is_ipv4())
            .take(3)
            .collect();
        // Whatever happens to this future (it may be dropped when another path wins), the
        // socket stops routing these nodes' datagrams to us.
        let _forget = Forget {
            socket: self.socket.clone(),
            nodes: asked.clone(),
        };
        for &node in &asked {
            let socket = self.socket.clone();
            asks.spawn(async move {
                let mut answers = socket.expect_krpc(node);
                let mut txid = [0u8; 4];
                let mut id = [0u8; 20];
                getrandom::fill(&mut txid).expect("the OS random source works");
                getrandom::fill(&mut id).expect("the OS random source works");
                let query = krpc::ping_query(txid, id);
                let seen = tokio::time::timeout(limit, async {
                    loop {
                        socket.send_to(node, &query);
                        let wait = tokio::time::sleep(limit / 3);
                        tokio::pin!(wait);
                        loop {
                            tokio::select! {
                                a = answers.recv() => match a {
                                    Some(d) => if let Some(seen) = krpc::observed_address(&d, txid) {
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
                .ok();
                seen
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

/// Removes the socket's waiters for DHT answers when dropped.
struct Forget {
    socket: std::sync::Arc<crate::probe_socket::ProbeSocket>,
    nodes: Vec<SocketAddr>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        for node in &self.nodes {
            self.socket.unexpect_krpc(*node);
        }
    }
}
