//! Ring-time benchmark for calling a contact with no known address (issue 5).
//!
//! On a private Mainline testnet on 127.0.0.1 (20 nodes, Mainline's default 2 s request
//! timeout), Bob listens: his node publishes sealed records for his contacts and polls theirs
//! every 2 s. Alice calls him by peer ID alone (`Node::call_contact`): read his record,
//! publish her intent, punch, QUIC. Measured per call: from `call_contact` to Bob's node
//! delivering the incoming call (the moment his app rings).
//!
//! * warm caller: Alice's node and DHT client stay up between calls (the desktop app);
//! * cold caller: a new node and DHT client per call (the `extrasafe call` command);
//! * baseline, same run: the same call by ticket (address known), no DHT;
//! * through the inbox (issue 17): the two have swapped inbox chains in an earlier call, so
//!   Bob publishes one presence record and polls one inbox (every 4 s on average, one of its
//!   2 closest nodes in turn) instead of a record per contact; Alice reads his presence and
//!   writes her intent into his inbox. Warm and cold caller again.
//!
//! Polling cost: UDP datagrams and bytes in this network namespace while Bob idles with 1 and
//! with 10 contacts, minus the testnet's own idle traffic; run it in a namespace of its own so
//! nothing else is counted: `bash bench/ring.sh` (root).
#![forbid(unsafe_code)]

#[path = "stats.rs"]
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use extrasafe_core::inbox::{inbox_epoch_of, InboxChain};
use extrasafe_core::{Identity, PeerId, SessionConfig};
use extrasafe_net::dht::{self, DhtConfig, Rendezvous};
use extrasafe_net::roots::Roots;
use extrasafe_net::{AcceptPolicy, Node, NodeConfig};
use stats::{median, pct};
use tokio::sync::mpsc;

const CALLS: usize = 20;
const IDLE: Duration = Duration::from_secs(60);

fn cfg() -> NodeConfig {
    NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: AcceptPolicy::Anyone,
        session: SessionConfig::default(),
        // The benchmark rings the same node many times from one address on purpose.
        ring_burst: 1_000_000,
        ..NodeConfig::default()
    }
}

fn s(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// UDP datagrams sent and loopback bytes so far in this network namespace.
fn counters() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let out = snmp
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let bytes = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (out, bytes)
}

/// A fresh inbox chain starting now.
fn new_chain() -> InboxChain {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    InboxChain::new(seed, inbox_epoch_of(now))
}

/// In-memory roots for `me`'s contact `them`, holding `their` inbox chain.
fn roots_holding(me: &Identity, them: PeerId, their: &InboxChain) -> Arc<Roots> {
    let roots = Roots::in_memory(me, &[them]);
    // Bob's chain is the configured one (made at time 0): `them` holds it.
    assert!(roots.store_inbox(&them, their.clone(), Some(0)).unwrap());
    roots
}

/// Bob: listens, answers intents, reports when each call rings, hangs up. With `inbox`
/// (his chain, and the roots holding his contacts' chains), his contacts find him through
/// his presence and inbox.
async fn bob(
    identity: &Identity,
    contacts: &[PeerId],
    dht_config: &DhtConfig,
    inbox: Option<(InboxChain, Arc<Roots>)>,
) -> (Arc<Node>, mpsc::UnboundedReceiver<Instant>, Stop) {
    let (inbox, roots) = inbox.unzip();
    let node = Arc::new(
        Node::bind(
            identity,
            NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(identity, contacts),
                inbox,
                roots,
                ..cfg()
            },
        )
        .await
        .unwrap(),
    );
    let rv = Rendezvous::start(dht::pair_secrets(identity, contacts).unwrap(), dht_config).unwrap();
    let mut served = dht::serve(node.clone(), Arc::new(rv), dht_config.clone());
    while served.published.borrow().is_none() {
        served.published.changed().await.unwrap();
    }
    let (rang_tx, rang_rx) = mpsc::unbounded_channel();
    let intents = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(plan) = served.intents.recv().await {
                let node = node.clone();
                tokio::spawn(async move { node.answer_punch(plan).await });
            }
        })
    };
    let incoming = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(call) = node.incoming().await {
                let _ = rang_tx.send(Instant::now());
                call.hangup();
            }
        })
    };
    (node, rang_rx, Stop(vec![intents, incoming]))
}

/// Stops a Bob when dropped: his DHT service (which would otherwise go on polling and
/// skew the next section's figures) and his call handling.
struct Stop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn until_idle(node: &Node) {
    while node.in_call() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // RUST_LOG=extrasafe_net=debug shows each poll, put and punch (to stderr).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // EXTRASAFE_RING_CALLS=N: fewer (or more) calls per kind than 20.
    let calls: usize = std::env::var("EXTRASAFE_RING_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CALLS);
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(20).build().unwrap())
        .await
        .unwrap();
    let dht_config = DhtConfig {
        bootstrap: testnet.bootstrap.clone(),
        bind: std::net::Ipv4Addr::LOCALHOST,
        ..DhtConfig::default()
    };
    println!(
        "ring bench: 20-node testnet on 127.0.0.1, request timeout {:?}, poll every {:?}",
        dht_config.request_timeout, dht_config.poll
    );

    // Idle traffic of the testnet alone, to subtract.
    let (p0, b0) = counters();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (p1, b1) = counters();
    let base_rate = ((p1 - p0) as f64 / 20.0, (b1 - b0) as f64 / 20.0);

    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let (bob_node, mut rang, stop) = bob(&bob_id, &[alice_id.peer_id()], &dht_config, None).await;
    let bob_peer = bob_id.peer_id();

    // Baseline: by ticket.
    let direct_caller = Node::bind(&alice_id, cfg()).await.unwrap();
    let mut direct = Vec::new();
    for _ in 0..calls {
        let t0 = Instant::now();
        let call = direct_caller.call(&bob_node.ticket()).await.unwrap();
        let at = rang.recv().await.unwrap();
        direct.push(at - t0);
        drop(call);
        until_idle(&direct_caller).await;
        until_idle(&bob_node).await;
    }
    drop(direct_caller);

    // Warm caller.
    let alice = Node::bind(&alice_id, cfg()).await.unwrap();
    let alice_rv = Rendezvous::start(
        dht::pair_secrets(&alice_id, &[bob_peer]).unwrap(),
        &dht_config,
    )
    .unwrap();
    let mut warm = Vec::new();
    let mut failures = 0;
    for _ in 0..calls {
        let t0 = Instant::now();
        match alice.call_contact(&alice_rv, bob_peer).await {
            Ok(call) => {
                let at = rang.recv().await.unwrap();
                warm.push(at - t0);
                drop(call);
            }
            Err(e) => {
                failures += 1;
                eprintln!("warm call failed after {}: {e}", s(t0.elapsed()));
            }
        }
        until_idle(&alice).await;
        until_idle(&bob_node).await;
    }
    drop(alice_rv);
    drop(alice);

    // Cold caller: everything new per call.
    let mut cold = Vec::new();
    for _ in 0..calls {
        let t0 = Instant::now();
        let alice = Node::bind(&alice_id, cfg()).await.unwrap();
        let rv = Rendezvous::start(
            dht::pair_secrets(&alice_id, &[bob_peer]).unwrap(),
            &dht_config,
        )
        .unwrap();
        match alice.call_contact(&rv, bob_peer).await {
            Ok(call) => {
                let at = rang.recv().await.unwrap();
                cold.push(at - t0);
                drop(call);
            }
            Err(e) => {
                failures += 1;
                eprintln!("cold call failed after {}: {e}", s(t0.elapsed()));
            }
        }
        until_idle(&alice).await;
        until_idle(&bob_node).await;
    }
    drop(stop);
    drop(bob_node);

    // Through the inbox: the two hold each other's chains (as after a first call).
    let (alice_chain, bob_chain) = (new_chain(), new_chain());
    let (bob_node, mut rang, stop) = bob(
        &bob_id,
        &[alice_id.peer_id()],
        &dht_config,
        Some((
            bob_chain.clone(),
            roots_holding(&bob_id, alice_id.peer_id(), &alice_chain),
        )),
    )
    .await;
    let alice_cfg = || NodeConfig {
        roots: Some(roots_holding(&alice_id, bob_peer, &bob_chain)),
        inbox: Some(alice_chain.clone()),
        ..cfg()
    };
    let alice = Node::bind(&alice_id, alice_cfg()).await.unwrap();
    let alice_rv = Rendezvous::start(
        dht::pair_secrets(&alice_id, &[bob_peer]).unwrap(),
        &dht_config,
    )
    .unwrap();
    let mut inbox_warm = Vec::new();
    for _ in 0..calls {
        let t0 = Instant::now();
        match alice.call_contact(&alice_rv, bob_peer).await {
            Ok(call) => {
                let at = rang.recv().await.unwrap();
                inbox_warm.push(at - t0);
                drop(call);
            }
            Err(e) => {
                failures += 1;
                eprintln!("warm call through the inbox failed: {e}");
            }
        }
        until_idle(&alice).await;
        until_idle(&bob_node).await;
    }
    drop(alice_rv);
    drop(alice);
    let mut inbox_cold = Vec::new();
    for _ in 0..calls {
        let t0 = Instant::now();
        let alice = Node::bind(&alice_id, alice_cfg()).await.unwrap();
        let rv = Rendezvous::start(
            dht::pair_secrets(&alice_id, &[bob_peer]).unwrap(),
            &dht_config,
        )
        .unwrap();
        match alice.call_contact(&rv, bob_peer).await {
            Ok(call) => {
                let at = rang.recv().await.unwrap();
                inbox_cold.push(at - t0);
                drop(call);
            }
            Err(e) => {
                failures += 1;
                eprintln!("cold call through the inbox failed: {e}");
            }
        }
        until_idle(&alice).await;
        until_idle(&bob_node).await;
    }
    drop(stop);
    drop(bob_node);

    println!();
    println!("| call | median | p90 | ratio to by-ticket median |");
    println!("|---|---|---|---|");
    let d = median(direct.clone());
    for (name, v) in [
        ("by ticket (baseline, no DHT)", &direct),
        ("by peer ID, warm caller", &warm),
        ("by peer ID, cold caller", &cold),
        ("through the inbox, warm caller", &inbox_warm),
        ("through the inbox, cold caller", &inbox_cold),
    ] {
        if v.is_empty() {
            continue;
        }
        println!(
            "| {name} ({} calls) | {} | {} | {:.0}x |",
            v.len(),
            s(median(v.clone())),
            s(pct(v.clone(), 0.9)),
            median(v.clone()).as_secs_f64() / d.as_secs_f64()
        );
    }
    println!("failed calls: {failures}");

    // Polling cost: Bob idles with 1 contact (who publishes), then with 10 (9 never online).
    println!();
    println!(
        "| Bob idle, polling every {:?} | datagrams/hour | kB/hour | per contact per hour |",
        dht_config.poll
    );
    println!("|---|---|---|---|");
    for n in [1usize, 10] {
        let mut contacts = vec![alice_id.peer_id()];
        while contacts.len() < n {
            contacts.push(extrasafe_net::new_identity().peer_id());
        }
        // Alice publishes once so one contact has a record to read.
        let alice = Node::bind(&alice_id, cfg()).await.unwrap();
        let alice_rv = Arc::new(
            Rendezvous::start(
                dht::pair_secrets(&alice_id, &[bob_peer]).unwrap(),
                &dht_config,
            )
            .unwrap(),
        );
        let us = dht::reachability(&alice, &alice_rv).await;
        alice_rv.publish(&bob_peer, &us, None, None).await.unwrap();
        drop(alice_rv);
        drop(alice);
        let (node, _rang, stop) =
            bob(&extrasafe_net::new_identity(), &contacts, &dht_config, None).await;
        // Let the first (cold) lookups settle, then count.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (p0, b0) = counters();
        tokio::time::sleep(IDLE).await;
        let (p1, b1) = counters();
        let secs = IDLE.as_secs_f64();
        let pkts = ((p1 - p0) as f64 / secs - base_rate.0) * 3600.0;
        let bytes = ((b1 - b0) as f64 / secs - base_rate.1) * 3600.0;
        println!(
            "| {n} contact(s) | {:.0} | {:.0} | {:.0} datagrams, {:.0} kB |",
            pkts,
            bytes / 1000.0,
            pkts / n as f64,
            bytes / 1000.0 / n as f64
        );
        drop(stop);
        drop(node);
    }
    println!("(datagrams count both directions: Bob's requests and the nodes' answers)");
}
