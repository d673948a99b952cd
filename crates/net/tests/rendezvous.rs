//! Calling a contact by its rendezvous record on a local Mainline testnet (127.0.0.1 only,
//! never the public DHT): the callee publishes and polls, the caller reads, publishes its
//! intent and punches; the call rings within seconds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use extrasafe_net::dht::{self, DhtConfig, Rendezvous};
use extrasafe_net::{AcceptPolicy, CallError, Node};

fn dht_config(testnet: &mainline::Testnet) -> DhtConfig {
    DhtConfig {
        bootstrap: testnet.bootstrap.clone(),
        bind: std::net::Ipv4Addr::LOCALHOST,
        poll: Duration::from_millis(500),
        // On a loopback testnet every node answers at once; a short timeout only makes a
        // walk give up sooner on a node that has gone.
        request_timeout: Duration::from_millis(500),
        ..DhtConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_called_with_no_address_through_the_dht() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (alice_id, bob_id, carol_id) = (
        extrasafe_net::new_identity(),
        extrasafe_net::new_identity(),
        extrasafe_net::new_identity(),
    );
    let alice = Node::bind(&alice_id, common::config(AcceptPolicy::Anyone))
        .await
        .unwrap();
    // Bob answers his contact Alice (and holders of his ticket, which nobody here has).
    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[alice_id.peer_id()]),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    let alice_rv = Rendezvous::start(
        dht::pair_secrets(&alice_id, &[bob.peer_id()]).unwrap(),
        &config,
    )
    .unwrap();
    let bob_rv = Arc::new(
        Rendezvous::start(
            dht::pair_secrets(&bob_id, &[alice.peer_id()]).unwrap(),
            &config,
        )
        .unwrap(),
    );
    let served = dht::serve(bob.clone(), bob_rv.clone(), config.clone());
    let (mut intents, mut published) = (served.intents, served.published);

    // Carol is nobody's contact: she cannot find or open Bob's records.
    let carol_rv = Rendezvous::start(
        dht::pair_secrets(&carol_id, &[bob.peer_id()]).unwrap(),
        &config,
    )
    .unwrap();
    let carol = Node::bind(&carol_id, common::config(AcceptPolicy::Anyone))
        .await
        .unwrap();

    // Bob's first record is stored; then Alice calls by peer ID alone.
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's record was never stored")
        .unwrap();
    let started = Instant::now();
    let answer = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let intent = intents.recv().await.expect("an intent");
            let at = Instant::now();
            assert_eq!(intent.peer, alice_id.peer_id());
            let r = bob.answer_punch(intent).await;
            (at, r)
        })
    };
    let mut call = alice.call_contact(&alice_rv, bob.peer_id()).await.unwrap();
    let mut inc = incoming(&bob).await;
    let ring = started.elapsed();
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    let (intent_at, answered) = answer.await.unwrap();
    answered.unwrap();
    eprintln!(
        "rang in {ring:?}; intent seen after {:?}",
        intent_at - started
    );
    assert!(ring < Duration::from_secs(10), "{ring:?}");
    assert_eq!(inc.info().peer, alice.peer_id());

    // DHT nodes answer a ping from the call socket with the address they saw: here, the
    // socket itself. All of this testnet's nodes are on 127.0.0.1, one network: one vote,
    // which is not enough to believe it (tests/observe.rs has observers in several).
    let seen = alice
        .observe(&alice_rv.dht_nodes().await, &[], Duration::from_secs(2))
        .await;
    assert_eq!(seen.sightings.len(), 1, "{seen:?}");
    assert_eq!(seen.sightings[0].seen, alice.local_addr());
    assert_eq!(seen.reflexive(), None);

    assert!(carol_rv.lookup(&bob.peer_id(), None).await.is_none());
    assert!(matches!(
        carol.call_contact(&carol_rv, bob.peer_id()).await,
        Err(CallError::NotPublished)
    ));
}

/// A listener with an inbox chain polls no record per contact: a contact who never called
/// (and so does not hold the chain) reads it in the record the listener publishes for her,
/// and writes her intent into the one inbox. She keeps the chain: her next call reads the
/// listener's presence directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_who_never_called_learns_the_inbox_from_her_record() {
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let (a, b) = (alice_id.peer_id(), bob_id.peer_id());
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let now = extrasafe_net::core::inbox::inbox_epoch_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let bob_chain = extrasafe_net::core::inbox::InboxChain::new(seed, now);
    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[a]),
                roots: Some(extrasafe_net::roots::Roots::in_memory(&bob_id, &[a])),
                inbox: Some(bob_chain.clone()),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    let bob_rv =
        Arc::new(Rendezvous::start(dht::pair_secrets(&bob_id, &[a]).unwrap(), &config).unwrap());
    let served = dht::serve(bob.clone(), bob_rv, config.clone());
    let (mut intents, mut published, mut polled) =
        (served.intents, served.published, served.polled_per_pair);
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's records were never stored")
        .unwrap();

    // Alice holds no chain of Bob's.
    let alice_roots = extrasafe_net::roots::Roots::in_memory(&alice_id, &[b]);
    let alice = Node::bind(
        &alice_id,
        extrasafe_net::NodeConfig {
            roots: Some(alice_roots.clone()),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let alice_rv = Rendezvous::start(dht::pair_secrets(&alice_id, &[b]).unwrap(), &config).unwrap();
    alice_rv.use_roots(alice_roots.clone());
    assert!(alice_roots.inbox_of(&b).is_none());

    for call_no in 0..2 {
        let answer = {
            let bob = bob.clone();
            let intents = &mut intents;
            async move {
                let intent = tokio::time::timeout(Duration::from_secs(20), intents.recv())
                    .await
                    .expect("no intent in 20 s")
                    .expect("an intent");
                assert_eq!(intent.peer, a, "the intent is Alice's");
                bob.answer_punch(intent).await
            }
        };
        let (call, answered) = tokio::join!(alice.call_contact(&alice_rv, b), answer);
        let mut call = call.unwrap_or_else(|e| panic!("call {call_no}: {e}"));
        answered.unwrap();
        let mut inc = incoming(&bob).await;
        until_connected(&mut call).await;
        until_connected(&mut inc).await;
        assert_eq!(inc.info().peer, a);
        // After the first call's rendezvous she holds his chain (from the record, before the
        // call told it again).
        // (Kept beside the call, on a blocking thread: it may land just after the connect.)
        let mut held = alice_roots.inbox_of(&b);
        for _ in 0..100 {
            if held.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            held = alice_roots.inbox_of(&b);
        }
        let held = held.expect("Alice keeps Bob's chain");
        assert_eq!(
            Ok(held.clone()),
            bob_chain.at(held.epoch()),
            "call {call_no}"
        );
        call.hangup();
        drop((call, inc));
        // Not one record per contact was polled, in any round.
        assert_eq!(*polled.borrow_and_update(), 0, "call {call_no}");
    }
}

/// A listener with more contacts who lack its chain than it gives records per epoch
/// (`dht::PAIR_RECORDS`) leaves most of them a record of an earlier epoch. A caller finds
/// that one (none of this epoch), steps the chain in it forward, reads the listener's
/// presence for where it is now (the old record's address is stale: nothing listens there),
/// and rings it through the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_an_earlier_epoch_is_enough_to_call() {
    use extrasafe_net::core::inbox::{inbox_epoch_of, InboxChain};
    use extrasafe_net::core::rendezvous::EPOCH_MS;
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let (a, b) = (alice_id.peer_id(), bob_id.peer_id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let then = now - 3 * EPOCH_MS;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let bob_chain = InboxChain::new(seed, inbox_epoch_of(then));
    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[a]),
                roots: Some(extrasafe_net::roots::Roots::in_memory(&bob_id, &[a])),
                inbox: Some(bob_chain.clone()),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    // This epoch Bob gives no contact a record of its own (its slots went to others): only
    // his presence is stored.
    let bob_config = DhtConfig {
        pair_records: 0,
        ..config.clone()
    };
    let bob_rv = Arc::new(
        Rendezvous::start(dht::pair_secrets(&bob_id, &[a]).unwrap(), &bob_config).unwrap(),
    );
    let served = dht::serve(bob.clone(), bob_rv, bob_config);
    let (mut intents, mut published) = (served.intents, served.published);
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's presence was never stored")
        .unwrap();
    // The record he left her three epochs ago, with an address where nothing listens now.
    let gone = old_record(&bob_id, a, &bob_chain, then, &config).await;

    let alice_roots = extrasafe_net::roots::Roots::in_memory(&alice_id, &[b]);
    let alice = Node::bind(
        &alice_id,
        extrasafe_net::NodeConfig {
            roots: Some(alice_roots.clone()),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let alice_rv = Rendezvous::start(dht::pair_secrets(&alice_id, &[b]).unwrap(), &config).unwrap();
    alice_rv.use_roots(alice_roots.clone());
    assert!(alice_roots.inbox_of(&b).is_none());
    // Nothing of this epoch for her.
    assert!(alice_rv.lookup(&b, None).await.is_none());

    // Bob's own probes go nowhere: only Alice's, sent to the addresses she found, can make
    // the call. With the old record's address alone it fails.
    let (call, _) = ring_by_name(&alice, &alice_rv, &bob, &mut intents, a, |plan| {
        plan.candidates = dht::as_candidates(&[gone]);
    })
    .await;
    call.hangup();
}
