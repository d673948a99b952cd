//! Silence for strangers: a listening node sends not one byte to anyone who does not prove
//! its ticket or a contact's key in the first flight, on every path (issue 16). Each test
//! plays an attacker with a plain UDP socket and counts what comes back, beside a control
//! that the same socket does get an answer when it carries the proof.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use extrasafe_net::core::access::{AccessKey, DropReason};
use extrasafe_net::core::{Identity, Ticket};
use extrasafe_net::{AcceptPolicy, CallError, CallEvent, Node, NodeConfig};

/// The datagrams of a real QUIC client's first flight to `to` (ALPN and TLS as ours, a
/// random key), with `dcid` choosing what it proves. Caught on a plain socket, never sent to
/// the node.
async fn first_flight(
    to: &Ticket,
    dcid: std::sync::Arc<dyn Fn() -> quinn::ConnectionId + Send + Sync>,
) -> Vec<Vec<u8>> {
    let catcher = UdpSocket::bind("127.0.0.1:0").unwrap();
    catcher
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut client = raw_client_config(&extrasafe_net::new_identity(), to);
    client.initial_dst_cid_provider(dcid);
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = ep
        .connect_with(client, catcher.local_addr().unwrap(), "x")
        .unwrap();
    let caught = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65_536];
        // The ClientHello with a post-quantum key share spans two datagrams.
        while got.len() < 2 {
            let (n, _) = catcher
                .recv_from(&mut buf)
                .expect("the client's first flight");
            got.push(buf[..n].to_vec());
        }
        got
    })
    .await
    .unwrap();
    drop(connecting);
    ep.close(0u32.into(), b"");
    caught
}

/// Sends `datagrams` from `sock` to `to` and counts the datagrams that come back within
/// `wait` (an outcome, zero or not; the wait only bounds the test).
fn replies(sock: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>], wait: Duration) -> usize {
    for d in datagrams {
        sock.send_to(d, to).unwrap();
    }
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65_536];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn fresh_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn random_dcid() -> std::sync::Arc<dyn Fn() -> quinn::ConnectionId + Send + Sync> {
    extrasafe_net::gate::dcid_provider(None, None)
}

const QUIET: Duration = Duration::from_millis(1500);

// Multi-threaded: `replies` blocks its thread while the node answers (or not) on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_not_a_single_byte() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let t = ticket(&target);
    let to = addr(&target);
    // A client with our ALPN and TLS but a random key and no proof.
    let no_proof = first_flight(&t, random_dcid()).await;
    // A forged ticket: a throw-away key and the listener's address, with some secret.
    let throwaway = Ticket {
        peer: extrasafe_net::new_identity().peer_id(),
        secret: Some(extrasafe_net::gate::random_ticket_secret()),
        addrs: t.addrs.clone(),
    };
    let forged = first_flight(&t, proof(&throwaway)).await;
    // The right key but a secret of its own (an old or guessed ticket).
    let wrong_secret = first_flight(
        &t,
        proof(&Ticket {
            secret: Some(extrasafe_net::gate::random_ticket_secret()),
            ..t.clone()
        }),
    )
    .await;
    // Packets that make a QUIC stack answer without a handshake: an unknown version (Version
    // Negotiation) and a short header for an unknown connection (Stateless Reset).
    let mut unknown_version = no_proof[0].clone();
    unknown_version[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    let mut short = vec![0x40u8];
    short.extend((0..1199).map(|i| (i * 37 % 251) as u8));
    for (what, datagrams) in [
        ("no proof", no_proof),
        ("forged ticket", forged),
        ("wrong secret", wrong_secret),
        ("unknown version", vec![unknown_version]),
        ("short header", vec![short]),
    ] {
        let sock = fresh_socket();
        assert_eq!(replies(&sock, to, &datagrams, QUIET), 0, "{what}: answered");
    }
    assert!(target.dropped(DropReason::NoProof) >= 3);
    assert!(target.dropped(DropReason::NotQuic) >= 1);
    assert!(target.dropped(DropReason::UnknownCid) >= 1);
    // Nothing reached the application.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), target.incoming())
            .await
            .is_err()
    );
    // Control: the same client with the ticket's proof is answered.
    let honest = first_flight(&t, proof(&t)).await;
    assert!(replies(&fresh_socket(), to, &honest, QUIET) > 0);
}

// Multi-threaded: `replies` blocks its thread while the node answers (or not) on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_first_flight_gets_nothing_and_rings_nobody() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let t = ticket(&target);
    let to = addr(&target);
    let captured = first_flight(&t, proof(&t)).await;
    // The genuine sender is answered (the control).
    let original = fresh_socket();
    assert!(replies(&original, to, &captured, QUIET) > 0);
    // The same bytes from anywhere else: silence.
    for _ in 0..3 {
        assert_eq!(replies(&fresh_socket(), to, &captured, QUIET), 0);
    }
    assert!(target.dropped(DropReason::Replay) >= 3);
    // No handshake completed, so nobody was rung.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), target.incoming())
            .await
            .is_err()
    );
}

// Multi-threaded: `replies` blocks its thread while the node answers (or not) on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_dht_nodes_were_pinged_from_stays_silent() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let to = addr(&target);
    // A "DHT node" the listener asks for its address: the ping opens the way back through
    // any NAT, and anyone can run such a node.
    let dht_node = fresh_socket();
    let at = dht_node.local_addr().unwrap();
    let nodes = [at];
    let obs = target.observe(&nodes, &[], Duration::from_millis(600));
    let pinged = tokio::task::spawn_blocking(move || {
        dht_node
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = dht_node.recv_from(&mut buf).expect("a DHT ping");
        assert_eq!(from, to, "pinged from the call socket");
        assert!(buf[..n].starts_with(b"d"), "a KRPC query");
        dht_node
    });
    let (_, dht_node) = tokio::join!(obs, pinged);
    let dht_node = dht_node.unwrap();
    // The observation is over: the rest of its pings (it asks a few times) are read away.
    let pings = replies(&dht_node, to, &[], Duration::from_millis(300));
    assert!(pings <= 5, "{pings} pings");
    // From that very address and port: a client with no proof gets nothing.
    let t = ticket(&target);
    let no_proof = first_flight(&t, random_dcid()).await;
    assert_eq!(replies(&dht_node, to, &no_proof, QUIET), 0);
    // Control: with the ticket's proof, the same socket is answered.
    let honest = first_flight(&t, proof(&t)).await;
    assert!(replies(&dht_node, to, &honest, QUIET) > 0);
}

/// A listener whose ticket secret and contacts are set as the front ends set them.
async fn listener(contacts: Vec<(extrasafe_net::core::PeerId, AccessKey)>) -> (Identity, Node) {
    let id = extrasafe_net::new_identity();
    let node = Node::bind(
        &id,
        NodeConfig {
            contacts,
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    (id, node)
}

async fn caller(id: &Identity, contacts: Vec<(extrasafe_net::core::PeerId, AccessKey)>) -> Node {
    Node::bind(
        id,
        NodeConfig {
            listen: false,
            contacts,
            ..config(AcceptPolicy::Ask)
        },
    )
    .await
    .unwrap()
}

async fn reaches(from: &Node, t: &Ticket, to: &Node) -> bool {
    match from.call(t).await {
        Ok(mut out) => {
            let mut inc = incoming(to).await;
            until_connected(&mut out).await;
            until_connected(&mut inc).await;
            out.hangup();
            while !matches!(next(&mut inc).await, CallEvent::Ended(_)) {}
            until_idle(to).await;
            until_idle(from).await;
            true
        }
        Err(CallError::Unreachable { .. }) => false,
        Err(e) => panic!("unexpected failure: {e:?}"),
    }
}

#[tokio::test]
async fn ticket_holders_and_contacts_get_in_and_a_new_ticket_ends_the_old_ones() {
    let alice_id = extrasafe_net::new_identity();
    let (bob_id, bob) = listener(Vec::new()).await;
    // Bob has Alice as a contact, and she him.
    bob.set_contacts(extrasafe_net::gate::contact_keys(
        &bob_id,
        &[alice_id.peer_id()],
    ));
    let alice = caller(
        &alice_id,
        extrasafe_net::gate::contact_keys(&alice_id, &[bob.peer_id()]),
    )
    .await;
    let carol = caller(&extrasafe_net::new_identity(), Vec::new()).await;
    let old = ticket(&bob);
    let bare = Ticket {
        secret: None,
        ..old.clone()
    };
    assert!(reaches(&carol, &old, &bob).await, "a ticket holder");
    assert!(
        reaches(&alice, &bare, &bob).await,
        "a contact without a ticket"
    );
    assert!(
        !reaches(&carol, &bare, &bob).await,
        "a stranger without one"
    );

    // A new ticket: the old one stops working; the new one and contacts work.
    bob.set_ticket_secret(Some(extrasafe_net::gate::random_ticket_secret()));
    let new = ticket(&bob);
    assert_ne!(new, old);
    assert!(!reaches(&carol, &old, &bob).await, "an old ticket");
    assert!(reaches(&carol, &new, &bob).await, "the new ticket");
    assert!(
        reaches(&alice, &old, &bob).await,
        "a contact with the old ticket"
    );

    // No ticket at all (contacts only): a removed contact is out too.
    bob.set_ticket_secret(None);
    assert!(!reaches(&carol, &new, &bob).await, "tickets off");
    assert!(reaches(&alice, &bare, &bob).await, "contacts still");
    bob.set_contacts(Vec::new());
    assert!(!reaches(&alice, &bare, &bob).await, "a removed contact");
}

#[tokio::test]
async fn a_caller_changes_nothing_before_it_is_answered() {
    let a = caller(&extrasafe_net::new_identity(), Vec::new()).await;
    let (_b_id, b) = node(AcceptPolicy::Ask).await;
    let mut out = a.call(&ticket(&b)).await.unwrap();
    let mut inc = incoming(&b).await;
    assert_eq!(next(&mut inc).await, CallEvent::Incoming);
    assert_eq!(next(&mut out).await, CallEvent::Ringing);
    // The caller told us where it sees us (right after its hello, long arrived): held.
    assert_eq!(b.observed_by_peer(), None);
    inc.accept();
    until_connected(&mut inc).await;
    until_connected(&mut out).await;
    assert_eq!(b.observed_by_peer(), Some(b.local_addr()));
}

#[tokio::test]
async fn ring_spam_from_one_caller_alerts_three_times_then_goes_unheard() {
    let spammer = Node::bind(
        &extrasafe_net::new_identity(),
        NodeConfig {
            listen: false,
            session: extrasafe_net::core::SessionConfig {
                ring_timeout: Duration::from_secs(2),
                ..Default::default()
            },
            ..config(AcceptPolicy::Ask)
        },
    )
    .await
    .unwrap();
    // The listener keeps the default limit.
    let b = Node::bind(
        &extrasafe_net::new_identity(),
        NodeConfig {
            ring_burst: extrasafe_net::core::access::RING_BURST,
            ..config(AcceptPolicy::Ask)
        },
    )
    .await
    .unwrap();
    // Every call looks the same to the spammer (it rings, nobody answers); only the first
    // three reach Bob's application.
    let mut alerted = 0;
    for _ in 0..5 {
        let mut out = spammer.call(&ticket(&b)).await.unwrap();
        assert_eq!(next(&mut out).await, CallEvent::Ringing);
        let delivered = tokio::time::timeout(Duration::from_millis(500), b.incoming()).await;
        if let Ok(Some(mut inc)) = delivered {
            alerted += 1;
            out.hangup();
            while !matches!(next(&mut inc).await, CallEvent::Ended(_)) {}
        }
        // Refused or not, the spammer's ring runs out or it hangs up.
        while !matches!(next(&mut out).await, CallEvent::Ended(_)) {}
        until_idle(&spammer).await;
        until_idle(&b).await;
    }
    let rang = alerted;
    assert_eq!(rang, extrasafe_net::core::access::RING_BURST);
}
