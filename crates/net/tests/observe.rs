//! No single DHT node decides the address we publish (`core::observe`): fake DHT nodes on
//! loopback, each on its own /16 of 127.0.0.0/8, answer the call socket's pings with the
//! address they claim to have seen. One of them lies, naming an address of its choosing
//! (where it would receive the probes of everyone who calls us). The lie is never believed
//! and never published, whichever node answers first; honest agreement still is.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use extrasafe_net::core::punch::NatMapping;
use extrasafe_net::dht::{self, DhtConfig, Rendezvous};
use extrasafe_net::AcceptPolicy;

/// What honest nodes saw (a public address our NAT gave us, in this story).
const US: &str = "203.0.113.5:40000";
/// Where the liar wants our contacts' probes to go.
const LIE: &str = "198.51.100.77:4444";

/// A fake DHT node at `ip` that answers every KRPC `ping` with `claim` as the address it saw
/// (BEP 42 `ip`), and counts the pings.
async fn observer(ip: &str, claim: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
    let at = sock.local_addr().unwrap();
    let claim: SocketAddr = claim.parse().unwrap();
    let SocketAddr::V4(claim) = claim else {
        unreachable!()
    };
    let pings = Arc::new(AtomicUsize::new(0));
    let counted = pings.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let q = &buf[..n];
            let Some(t) = q.windows(5).position(|w| w == b"1:t4:") else {
                continue;
            };
            if !q.windows(6).any(|w| w == b"4:ping") || q.len() < t + 9 {
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            // Keys sorted: ip, r, t, y.
            let mut r = b"d2:ip6:".to_vec();
            r.extend_from_slice(&claim.ip().octets());
            r.extend_from_slice(&claim.port().to_be_bytes());
            r.extend_from_slice(b"1:rd2:id20:");
            r.extend_from_slice(&[7; 20]);
            r.extend_from_slice(b"e1:t4:");
            r.extend_from_slice(&q[t + 5..t + 9]);
            r.extend_from_slice(b"1:y1:re");
            let _ = sock.send_to(&r, from).await;
        }
    });
    (at, pings)
}

#[tokio::test]
async fn a_lying_node_is_outvoted_and_honest_agreement_is_believed() {
    let (_, node) = node(AcceptPolicy::Anyone).await;
    let (liar, lies) = observer("127.9.0.1", LIE).await;
    let mut nodes = vec![liar];
    for ip in ["127.1.0.1", "127.2.0.1", "127.3.0.1"] {
        nodes.push(observer(ip, US).await.0);
    }
    let seen = node.observe(&nodes, &[], Duration::from_secs(2)).await;
    assert_eq!(seen.reflexive(), Some(US.parse().unwrap()), "{seen:?}");
    assert_eq!(seen.verdict.mapping, NatMapping::Stable);
    assert!(lies.load(Ordering::SeqCst) >= 1, "the liar was asked");
}

#[tokio::test]
async fn one_honest_node_against_one_liar_believes_neither() {
    let (_, node) = node(AcceptPolicy::Anyone).await;
    let (liar, lies) = observer("127.9.0.1", LIE).await;
    let (honest, _) = observer("127.1.0.1", US).await;
    let seen = node
        .observe(&[liar, honest], &[], Duration::from_secs(2))
        .await;
    assert_eq!(seen.sightings.len(), 2, "both answered: {seen:?}");
    assert_eq!(seen.reflexive(), None);
    assert_eq!(seen.verdict.mapping, NatMapping::Unknown);
    assert!(lies.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn many_lying_nodes_in_one_network_are_one_voice() {
    let (_, node) = node(AcceptPolicy::Anyone).await;
    let mut nodes = Vec::new();
    let mut counters = Vec::new();
    for i in 1..=4 {
        let (at, n) = observer(&format!("127.9.0.{i}"), LIE).await;
        nodes.push(at);
        counters.push(n);
    }
    nodes.push(observer("127.1.0.1", US).await.0);
    let seen = node.observe(&nodes, &[], Duration::from_secs(2)).await;
    assert_eq!(seen.reflexive(), None, "{seen:?}");
    // Only one of the four was even asked.
    let asked = counters
        .iter()
        .filter(|c| c.load(Ordering::SeqCst) > 0)
        .count();
    assert_eq!(asked, 1);
}

/// What a listener would put in its records: with the liar among the bootstrap nodes (the
/// nodes asked first), the lie is not among the candidates; the honest address is.
#[tokio::test]
async fn the_lie_is_never_published() {
    let (_, node) = node(AcceptPolicy::Anyone).await;
    let (liar, lies) = observer("127.9.0.1", LIE).await;
    let mut bootstrap = vec![liar.to_string()];
    for ip in ["127.1.0.1", "127.2.0.1"] {
        bootstrap.push(observer(ip, US).await.0.to_string());
    }
    let config = DhtConfig {
        bootstrap,
        bind: std::net::Ipv4Addr::LOCALHOST,
        request_timeout: Duration::from_millis(300),
        ..DhtConfig::default()
    };
    let rv = Rendezvous::start(Vec::new(), &config).unwrap();
    let us = dht::reachability(&node, &rv).await;
    let lie: SocketAddr = LIE.parse().unwrap();
    assert!(us.candidates.iter().all(|c| c.ip() != lie.ip()), "{us:?}");
    assert_eq!(us.candidates.first(), Some(&US.parse().unwrap()), "{us:?}");
    assert!(lies.load(Ordering::SeqCst) >= 1, "the liar was asked");
}
