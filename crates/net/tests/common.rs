//! Shared helpers for the network tests (all traffic stays on 127.0.0.1).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_net::core::{Identity, SessionConfig, Ticket};
use extrasafe_net::tls::{self, PinObservation};
use extrasafe_net::{AcceptPolicy, Call, CallEvent, Node, NodeConfig};

pub fn config(policy: AcceptPolicy) -> NodeConfig {
    NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        policy,
        session: SessionConfig {
            hello_timeout: Duration::from_secs(1),
            ..SessionConfig::default()
        },
        handshake_timeout: Duration::from_secs(3),
        // Every test caller comes from 127.0.0.1: one source. The limit has its own test.
        ring_burst: 10_000,
        ..NodeConfig::default()
    }
}

pub async fn node(policy: AcceptPolicy) -> (Identity, Node) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let id = extrasafe_net::new_identity();
    let node = Node::bind(&id, config(policy)).await.unwrap();
    (id, node)
}

/// Waits for the next event, failing the test after 5 s. The verification code's event is
/// passed over (tests read the code with [`until_code`]).
pub async fn next(call: &mut Call) -> CallEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), call.next_event())
            .await
            .expect("no call event within 5 s")
            .expect("event stream ended");
        if !matches!(ev, CallEvent::VerificationCode(_)) {
            return ev;
        }
    }
}

pub async fn incoming(node: &Node) -> Call {
    tokio::time::timeout(Duration::from_secs(5), node.incoming())
        .await
        .expect("no incoming call within 5 s")
        .expect("node closed")
}

pub async fn until_connected(call: &mut Call) {
    loop {
        match next(call).await {
            CallEvent::Connected { .. } => return,
            CallEvent::Ringing | CallEvent::Incoming => continue,
            other => panic!("expected connected, got {other:?}"),
        }
    }
}

/// Waits until `node` holds no call any more (its slot frees when the session ends).
/// Waits until the call's verification code is settled (a callee that answered at once gets
/// it a round trip after the ring); returns it.
pub async fn until_code(call: &mut Call) -> String {
    loop {
        if let Some(code) = call.info().sas() {
            return code;
        }
        let ev = tokio::time::timeout(Duration::from_secs(5), call.next_event())
            .await
            .expect("no code within 5 s")
            .expect("event stream ended");
        if let CallEvent::Ended(r) = ev {
            panic!("ended before the code: {r:?}");
        }
    }
}

pub async fn until_idle(node: &Node) {
    tokio::time::timeout(Duration::from_secs(2), async {
        while node.in_call() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the node still holds a call 2 s after it ended");
}

/// `from` calls `to` (which must answer automatically); returns both ends once connected.
pub async fn connected(from: &Node, to: &Node) -> (Call, Call) {
    let mut out = from.call(&ticket(to)).await.expect("call");
    let mut inc = incoming(to).await;
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    (out, inc)
}

/// A raw QUIC client speaking our TLS with its own identity, for misbehaving on purpose.
pub fn raw_client(me: &Identity, expected: &Ticket) -> (quinn::Endpoint, quinn::ClientConfig) {
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (ep, raw_client_config(me, expected))
}

/// The first-flight proof a client holding `t` sends (its secret, no contact key).
pub fn proof(t: &Ticket) -> std::sync::Arc<dyn Fn() -> quinn::ConnectionId + Send + Sync> {
    extrasafe_net::gate::dcid_provider(t.secret.as_ref().map(|s| s.access_key(&t.peer)), None)
}

pub fn raw_client_config(me: &Identity, expected: &Ticket) -> quinn::ClientConfig {
    let provider = tls::provider();
    let key = tls::certified_key(me).unwrap();
    let cfg = tls::client_config(
        key,
        provider,
        expected.peer,
        Arc::new(PinObservation::default()),
    )
    .unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.initial_dst_cid_provider(proof(expected));
    client
}

/// A client with this TLS configuration that holds ticket `t` (so the node's gate lets its
/// first flight through, and TLS decides).
pub fn client_from_rustls(
    cfg: rustls::ClientConfig,
    t: &Ticket,
) -> (quinn::Endpoint, quinn::ClientConfig) {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.initial_dst_cid_provider(proof(t));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (ep, client)
}

pub fn addr(node: &Node) -> SocketAddr {
    node.local_addr()
}

/// A ticket for `node` on loopback.
pub fn ticket(node: &Node) -> Ticket {
    node.ticket_for(node.local_addr())
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The node still takes an honest call after whatever a test did to it.
pub async fn still_serves(target: &Node) {
    let (_id, honest) = node(AcceptPolicy::Ask).await;
    let mut call = honest.call(&ticket(target)).await.expect("honest call");
    let mut inc = incoming(target).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    call.hangup();
    while !matches!(next(&mut inc).await, CallEvent::Ended(_)) {}
    until_idle(target).await;
}

/// Stores the rendezvous record `from` would have left `to` at `then` (Unix ms), carrying
/// `chain` and an address where nothing listens now; returns that address.
pub async fn old_record(
    from: &Identity,
    to: extrasafe_net::core::PeerId,
    chain: &extrasafe_net::core::inbox::InboxChain,
    then: u64,
    config: &extrasafe_net::dht::DhtConfig,
) -> SocketAddr {
    use extrasafe_net::dht::{self, Rendezvous};
    let gone = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rv = Rendezvous::start(dht::pair_secrets(from, &[to]).unwrap(), config).unwrap();
    rv.publish_as_of(
        &to,
        &dht::Reachability {
            candidates: vec![gone],
            ..Default::default()
        },
        None,
        Some(chain),
        then,
    )
    .await
    .unwrap();
    gone
}

/// `caller` calls `callee` by name through `rendezvous` while the callee answers the first
/// intent it reads (which must come from `from`), after `adjust` has had its say on the plan;
/// returns the two ends, connected.
pub async fn ring_by_name(
    caller: &Node,
    rendezvous: &extrasafe_net::dht::Rendezvous,
    callee: &Arc<Node>,
    intents: &mut tokio::sync::mpsc::Receiver<extrasafe_net::punch::PunchPlan>,
    from: extrasafe_net::core::PeerId,
    adjust: impl FnOnce(&mut extrasafe_net::punch::PunchPlan),
) -> (Call, Call) {
    let to = callee.peer_id();
    let answer = async {
        let mut intent = tokio::time::timeout(Duration::from_secs(20), intents.recv())
            .await
            .expect("no intent in 20 s")
            .expect("an intent");
        assert_eq!(intent.peer, from, "whose intent it is");
        adjust(&mut intent);
        callee.answer_punch(intent).await
    };
    let (call, answered) = tokio::join!(caller.call_contact(rendezvous, to), answer);
    let mut call = call.unwrap_or_else(|e| panic!("{e}"));
    answered.unwrap();
    let mut inc = incoming(callee).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    assert_eq!(inc.info().peer, from);
    assert_eq!(call.info().peer, to);
    (call, inc)
}
