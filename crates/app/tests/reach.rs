//! The application layer's reachability and dial strategy, on real sockets and a local
//! Mainline testnet (127.0.0.1 only, never the public DHT; the LAN is left off because its
//! multicast would leave loopback).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use extrasafe_app::dial::{place, search_secrets};
use extrasafe_app::{Presence, ReachConfig, ReachEvent};
use extrasafe_core::{Identity, SessionConfig};
use extrasafe_net::dht::DhtConfig;
use extrasafe_net::dial::{DialError, DialStep};
use extrasafe_net::{AcceptPolicy, CallEvent, Node, NodeConfig};
use tokio::sync::mpsc;

fn node_config(contacts: &Identity, of: &[&Identity], listen: bool) -> NodeConfig {
    NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        listen,
        policy: AcceptPolicy::Anyone,
        contacts: extrasafe_net::gate::contact_keys(
            contacts,
            &of.iter().map(|i| i.peer_id()).collect::<Vec<_>>(),
        ),
        session: SessionConfig {
            hello_timeout: Duration::from_secs(1),
            ..SessionConfig::default()
        },
        handshake_timeout: Duration::from_secs(3),
        ring_burst: 10_000,
        ..NodeConfig::default()
    }
}

fn reach(testnet: &mainline::Testnet) -> ReachConfig {
    ReachConfig {
        lan: false,
        dht: true,
        dht_bootstrap: testnet.bootstrap.clone(),
        stun: Vec::new(),
        // No router here: the mapper would only ask the default gateway, off loopback.
        port_mapping: false,
        dht_settings: DhtConfig {
            bind: std::net::Ipv4Addr::LOCALHOST,
            poll: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            ..DhtConfig::default()
        },
    }
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<ReachEvent>) -> ReachEvent {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no reachability event within 20 s")
        .expect("events ended")
}

async fn until_connected(call: &mut extrasafe_net::Call) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), call.next_event())
            .await
            .expect("no call event within 10 s")
            .expect("events ended");
        match e {
            CallEvent::Connected { .. } => return,
            CallEvent::Ended(r) => panic!("the call ended: {r:?}"),
            _ => {}
        }
    }
}

/// Bob's presence stores his records and answers Alice's intent by itself; Alice's dial
/// strategy finds him with no address at all: the whole path both front ends take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_with_no_address_is_found_through_the_presence_and_dial_strategy() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = reach(&testnet);
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let bob = Arc::new(
        Node::bind(&bob_id, node_config(&bob_id, &[&alice_id], true))
            .await
            .unwrap(),
    );
    let (tx, mut bob_events) = mpsc::unbounded_channel();
    let presence = Presence::start(bob.clone(), &bob_id, &[alice_id.peer_id()], &config, tx).await;
    assert!(presence.dht_on && !presence.lan_on);
    assert!(presence.port_mapping().is_none());
    assert!(matches!(
        next_event(&mut bob_events).await,
        ReachEvent::DhtJoining { contacts: 1 }
    ));
    match next_event(&mut bob_events).await {
        ReachEvent::Reachable { contacts, us } => {
            assert_eq!(contacts, 1);
            assert!(us.candidates.contains(&bob.local_addr()), "{us:?}");
        }
        other => panic!("expected Reachable, got {other:?}"),
    }

    // Alice knows Bob only by his key: no ticket, no address.
    let alice = Node::bind(&alice_id, node_config(&alice_id, &[&bob_id], false))
        .await
        .unwrap();
    let secrets = search_secrets(&alice_id, bob_id.peer_id()).unwrap();
    let (atx, _alice_events) = mpsc::unbounded_channel();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let (mut call, outgoing) = place(
        &alice,
        bob_id.peer_id(),
        None,
        Some(secrets),
        &config,
        &atx,
        None,
        move |s| seen.lock().unwrap().push(s),
    )
    .await
    .expect("Alice reaches Bob through the DHT");
    assert!(!outgoing.mapping(), "port mapping was off");
    let mut inc = tokio::time::timeout(Duration::from_secs(10), bob.incoming())
        .await
        .expect("Bob's node took no call")
        .unwrap();
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    assert_eq!(inc.info().peer, alice_id.peer_id());
    assert_eq!(*steps.lock().unwrap(), vec![DialStep::Dht]);
    call.hangup();
    outgoing.stop().await;
    presence.stop().await;
}

/// With nowhere to look the dial says so, typed, before any packet is sent.
#[tokio::test]
async fn nowhere_to_look_is_a_typed_error() {
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let alice = Node::bind(&alice_id, node_config(&alice_id, &[&bob_id], false))
        .await
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let off = ReachConfig {
        lan: false,
        dht: false,
        ..ReachConfig::default()
    };
    // A contact, but the LAN and DHT are off; and a stranger with no ticket.
    let secrets = search_secrets(&alice_id, bob_id.peer_id()).unwrap();
    for secrets in [Some(secrets), None] {
        let r = place(
            &alice,
            bob_id.peer_id(),
            None,
            secrets,
            &off,
            &tx,
            None,
            |_| {},
        )
        .await;
        assert!(matches!(r, Err(DialError::NowhereToLook)), "{:?}", r.err());
    }
}

/// With no contacts (or the LAN and DHT off), no service runs and nothing is reported.
#[tokio::test]
async fn no_contacts_no_services() {
    let bob_id = extrasafe_net::new_identity();
    let bob = Arc::new(
        Node::bind(&bob_id, node_config(&bob_id, &[], true))
            .await
            .unwrap(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = Presence::start(
        bob.clone(),
        &bob_id,
        &[],
        &ReachConfig::default(),
        tx.clone(),
    )
    .await;
    assert!(!p.lan_on && !p.dht_on && p.port_mapping().is_none());
    let off = ReachConfig {
        lan: false,
        dht: false,
        ..ReachConfig::default()
    };
    let q = Presence::start(
        bob,
        &bob_id,
        &[extrasafe_net::new_identity().peer_id()],
        &off,
        tx,
    )
    .await;
    assert!(!q.lan_on && !q.dht_on);
    drop((p, q));
    assert!(rx.try_recv().is_err(), "nothing ran, nothing to report");
}
