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

/// The top-level keys of a bencoded dictionary, with the values of the short ones.
fn top_level(msg: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fn skip(b: &[u8], mut i: usize) -> usize {
        match b[i] {
            b'i' => b[i..].iter().position(|c| *c == b'e').unwrap() + i + 1,
            b'l' | b'd' => {
                i += 1;
                while b[i] != b'e' {
                    i = skip(b, i);
                }
                i + 1
            }
            _ => {
                let colon = b[i..].iter().position(|c| *c == b':').unwrap() + i;
                let n: usize = std::str::from_utf8(&b[i..colon]).unwrap().parse().unwrap();
                colon + 1 + n
            }
        }
    }
    assert_eq!(msg[0], b'd');
    let mut out = Vec::new();
    let mut i = 1;
    while msg[i] != b'e' {
        let k_end = skip(msg, i);
        let colon = msg[i..].iter().position(|c| *c == b':').unwrap() + i;
        let key = msg[colon + 1..k_end].to_vec();
        let v_end = skip(msg, k_end);
        out.push((key, msg[k_end..v_end].to_vec()));
        i = v_end;
    }
    assert_eq!(i + 1, msg.len());
    out
}

/// Our own KRPC queries have the form of the `mainline` crate's: the same keys in the same
/// order, its version, read-only, four-byte transaction IDs that count up per socket.
#[tokio::test]
async fn our_queries_look_like_the_dht_librarys_own() {
    let (_, node) = node(AcceptPolicy::Anyone).await;
    let fake = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = fake.local_addr().unwrap();
    // The library's first query, sent to its bootstrap node.
    let mut builder = mainline::Dht::builder();
    builder
        .bootstrap(&[at.to_string()])
        .bind_address(std::net::Ipv4Addr::LOCALHOST);
    let dht = builder.build().unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), fake.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let theirs = top_level(&buf[..n]);
    drop(dht);
    // Ours: two pings from the call socket.
    let asked = [at];
    let observe = node.observe(&asked, &[], Duration::from_millis(900));
    let read = async {
        let mut got = Vec::new();
        while got.len() < 2 {
            let (n, from) = fake.recv_from(&mut buf).await.unwrap();
            if from.port() == node.local_addr().port() {
                got.push(top_level(&buf[..n]));
            }
        }
        got
    };
    let (_, ours) = tokio::join!(observe, read);
    let keys = |m: &[(Vec<u8>, Vec<u8>)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let value = |m: &[(Vec<u8>, Vec<u8>)], k: &[u8]| {
        m.iter()
            .find(|(key, _)| key.as_slice() == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    for msg in &ours {
        assert_eq!(keys(msg), keys(&theirs), "same keys, same order");
        for k in [&b"v"[..], b"ro", b"y"] {
            assert_eq!(value(msg, k), value(&theirs, k));
        }
        assert_eq!(value(msg, b"t").len(), value(&theirs, b"t").len());
    }
    // Transaction IDs count up on one socket, as the library's do.
    let t0 = u32::from_be_bytes(value(&ours[0], b"t")[2..6].try_into().unwrap());
    let t1 = u32::from_be_bytes(value(&ours[1], b"t")[2..6].try_into().unwrap());
    assert_eq!(t1, t0.wrapping_add(1));
}
