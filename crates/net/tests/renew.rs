//! Removing a contact renews the listener's inbox chain, while it listens: the removed
//! contact, who holds the old chain, finds a presence with no address under it from then on
//! (and no record of its own), while a contact who stays, holding the old chain too, still
//! reaches the listener: the record of her own he publishes tells her the new chain, and
//! her intent goes into the new inbox.
//! The running listener stops letting the removed contact in as a contact, and its LAN
//! announcement stops carrying a tag for it.
//! A local testnet on 127.0.0.1; the listener's contact list and chain are files, changed
//! beside it as `extrasafe contact remove` does.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use extrasafe_net::core::contacts::ContactBook;
use extrasafe_net::core::inbox::{inbox_epoch_of, InboxChain};
use extrasafe_net::core::{Identity, PeerId};
use extrasafe_net::dht::{self, DhtConfig, Rendezvous};
use extrasafe_net::roots::Roots;
use extrasafe_net::{AcceptPolicy, IdentityStore, Node};

fn dht_config(testnet: &mainline::Testnet) -> DhtConfig {
    DhtConfig {
        bootstrap: testnet.bootstrap.clone(),
        bind: std::net::Ipv4Addr::LOCALHOST,
        poll: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..DhtConfig::default()
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn chain() -> InboxChain {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    InboxChain::new(seed, inbox_epoch_of(now_ms()))
}

/// A contact's view: its own roots in memory, holding `bob_chain`.
fn contact(me: &Identity, bob: PeerId, bob_chain: &InboxChain) -> Arc<Roots> {
    let roots = Roots::in_memory(me, &[bob]);
    assert!(roots.store_inbox(&bob, bob_chain.clone(), None).unwrap());
    roots
}

/// Polls (up to 20 s) until `check` accepts Bob's presence as read with `chain`.
async fn presence_until(
    rv: &Rendezvous,
    bob: &PeerId,
    chain: &InboxChain,
    what: &str,
    check: impl Fn(&extrasafe_net::core::rendezvous::Record) -> bool,
) {
    for _ in 0..80 {
        if rv
            .lookup_presence(bob, chain)
            .await
            .is_some_and(|r| check(&r))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_contact_can_no_longer_follow_the_listeners_presence() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = Dir(std::env::temp_dir().join(format!("es-renew-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (alice_id, bob_id, carol_id) = (
        extrasafe_net::new_identity(),
        extrasafe_net::new_identity(),
        extrasafe_net::new_identity(),
    );
    let (a, b, c) = (alice_id.peer_id(), bob_id.peer_id(), carol_id.peer_id());

    // Bob's folder: his chain, then his two contacts as a call with each left them (each
    // told him theirs, and was told his).
    let bob_store = IdentityStore::at(dir.0.join("bob"));
    let old = bob_store
        .own_inbox(&bob_id, inbox_epoch_of(now_ms()))
        .unwrap();
    let mut book = ContactBook::default();
    book.add("alice", a, vec![]).unwrap();
    book.add("carol", c, vec![]).unwrap();
    book.set_inbox(&a, chain(), Some(old.since_ms));
    book.set_inbox(&c, chain(), Some(old.since_ms));
    bob_store.save_contacts(&bob_id, &book).unwrap();

    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[a, c]),
                roots: Some(Roots::stored(&bob_store, &bob_id).unwrap()),
                inbox: Some(old.chain.clone()),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    let bob_rv =
        Arc::new(Rendezvous::start(dht::pair_secrets(&bob_id, &[a, c]).unwrap(), &config).unwrap());
    let served = dht::serve(bob.clone(), bob_rv, config.clone());
    let mut intents = served.intents;

    // Carol, holding his chain, sees where he is.
    let carol_rv = Rendezvous::start(dht::pair_secrets(&carol_id, &[b]).unwrap(), &config).unwrap();
    carol_rv.use_roots(contact(&carol_id, b, &old.chain));
    presence_until(
        &carol_rv,
        &b,
        &old.chain,
        "Carol reads Bob's presence",
        |r| !r.candidates.is_empty(),
    )
    .await;

    // Bob removes Carol, as `extrasafe contact remove carol` does beside his listener.
    let mut book = bob_store.load_contacts(&bob_id).unwrap();
    book.remove("carol").unwrap();
    let renewed = bob_store
        .renew_inbox(&bob_id, inbox_epoch_of(now_ms()))
        .unwrap();
    bob_store.save_contacts(&bob_id, &book).unwrap();
    assert_ne!(renewed.chain, old.chain);

    // Under the old chain his presence now names no address: what Carol reads from then on.
    presence_until(
        &carol_rv,
        &b,
        &old.chain,
        "Bob's presence under the old chain cleared",
        |r| r.candidates.is_empty(),
    )
    .await;
    // His presence goes on under the new chain, which Carol does not have.
    presence_until(
        &carol_rv,
        &b,
        &renewed.chain,
        "presence under the new chain",
        |r| !r.candidates.is_empty(),
    )
    .await;

    // Alice, who stays, holds the old chain too. He publishes a record of her own for her
    // addresses, but polls no record of hers: he reads the old chain's inbox in turn with
    // the new one's, so that removing one contact does not make every other contact cost
    // polls of their own.
    // (A round that starts after the new presence was read.)
    let mut polled = served.polled_per_pair.clone();
    polled.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(20), polled.changed())
        .await
        .expect("no round in 20 s")
        .expect("the service runs");
    assert_eq!(
        *polled.borrow(),
        0,
        "contacts polled per pair after the renewal"
    );
    // She calls him by name, finds the cleared presence, reads her own record for his
    // addresses and new chain, and writes her intent into the new chain's inbox.
    let alice_roots = contact(&alice_id, b, &old.chain);
    let alice = Node::bind(
        &alice_id,
        extrasafe_net::NodeConfig {
            roots: Some(alice_roots.clone()),
            inbox: Some(chain()),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let alice_rv = Rendezvous::start(dht::pair_secrets(&alice_id, &[b]).unwrap(), &config).unwrap();
    alice_rv.use_roots(alice_roots.clone());
    let answer = {
        let bob = bob.clone();
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
    let mut call = call.expect("Alice reaches Bob after Carol's removal");
    answered.unwrap();
    let mut inc = incoming(&bob).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    // She keeps his new chain (read in her record; the call tells it again).
    let mut told = None;
    for _ in 0..200 {
        told = alice_roots.inbox_of(&b);
        if told.as_ref().is_some_and(|t| {
            t.epoch() >= renewed.chain.epoch() && renewed.chain.at(t.epoch()).as_ref() == Ok(t)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let told = told.unwrap();
    assert_eq!(
        Ok(told.clone()),
        renewed.chain.at(told.epoch()),
        "Alice holds the new chain"
    );
    call.hangup();
    drop((call, inc));
    assert_eq!(
        *served.polled_per_pair.borrow(),
        0,
        "Alice's call made him poll her records"
    );

    // Carol gets no record of her own from him either: he publishes nothing for her now.
    assert!(
        carol_rv.lookup(&b, None).await.is_none(),
        "a removed contact finds no record"
    );
    // His LAN announcement, following the same list, drops her tag (no packet is sent
    // here: the responder announces nothing until asked to, and the lab's LAN cell drives
    // announcements; this checks what the next one carries).
    let lan = extrasafe_net::lan::Lan::start(&dht::pair_secrets(&bob_id, &[a, c]).unwrap())
        .expect("an mDNS responder");
    let bob_roots = bob.roots().unwrap();
    assert_eq!(
        lan.keep_only(&bob_roots.contacts()),
        1,
        "Carol's tag dropped"
    );
    assert_eq!(
        lan.tagged(),
        [a].into_iter().collect(),
        "the announcement tags Alice only"
    );
    // And nothing in his folder holds Carol any more.
    assert!(bob_store
        .load_contacts(&bob_id)
        .unwrap()
        .by_peer(&c)
        .is_none());

    // His running listener no longer lets her in as a contact (it follows the list on
    // disk), while Alice still is one.
    let mut dropped = false;
    for _ in 0..200 {
        if !bob.answers_contact(&c) {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dropped,
        "Bob's gate still lets Carol in as a contact after 20 s"
    );
    assert!(bob.answers_contact(&a), "Alice is still let in");
    // Carol calls his address proving only that she was his contact: no answer.
    let carol = Node::bind(
        &carol_id,
        extrasafe_net::NodeConfig {
            contacts: extrasafe_net::gate::contact_keys(&carol_id, &[b]),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let bare = extrasafe_net::core::Ticket {
        secret: None,
        ..ticket(&bob)
    };
    match carol.call(&bare).await {
        Err(extrasafe_net::CallError::Unreachable { .. }) => {}
        Ok(_) => panic!("a removed contact was answered"),
        Err(e) => panic!("unexpected failure: {e:?}"),
    }
}

/// A contact who never called finds, after the listener renewed its chain, only a record
/// from before the renewal (the listener gives records in turn: here none this epoch). It
/// writes its intent into the inbox of the chain that record carries, the one replaced: the
/// listener reads that inbox for the two hours callers look back, whoever may write there,
/// and rings. (Before, it read the replaced inbox only for contacts known to hold that
/// chain, and the intent was never seen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_a_record_from_before_a_renewal_still_rings() {
    use extrasafe_net::core::rendezvous::EPOCH_MS;
    let dir = Dir(std::env::temp_dir().join(format!("es-renew-old-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (bob_id, dave_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let (b, d) = (bob_id.peer_id(), dave_id.peer_id());
    let then = now_ms() - 3 * EPOCH_MS;
    let bob_store = IdentityStore::at(dir.0.join("bob"));
    let old = bob_store.own_inbox(&bob_id, inbox_epoch_of(then)).unwrap();
    let mut book = ContactBook::default();
    book.add("dave", d, vec![]).unwrap();
    bob_store.save_contacts(&bob_id, &book).unwrap();
    // The record Dave got back then, carrying the chain of then.
    old_record(&bob_id, d, &old.chain, then, &config).await;
    // Bob has since renewed his chain (he removed someone).
    let renewed = bob_store
        .renew_inbox(&bob_id, inbox_epoch_of(now_ms()))
        .unwrap();
    assert_ne!(renewed.chain, old.chain);
    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[d]),
                roots: Some(Roots::stored(&bob_store, &bob_id).unwrap()),
                inbox: Some(renewed.chain.clone()),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    // This epoch Dave's turn has not come: no record of his own.
    let bob_config = DhtConfig {
        pair_records: 0,
        ..config.clone()
    };
    let bob_rv = Arc::new(
        Rendezvous::start(dht::pair_secrets(&bob_id, &[d]).unwrap(), &bob_config).unwrap(),
    );
    let served = dht::serve(bob.clone(), bob_rv, bob_config);
    let (mut intents, mut published) = (served.intents, served.published);
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's presence was never stored")
        .unwrap();

    let dave_roots = Roots::in_memory(&dave_id, &[b]);
    let dave = Node::bind(
        &dave_id,
        extrasafe_net::NodeConfig {
            roots: Some(dave_roots.clone()),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let dave_rv = Rendezvous::start(dht::pair_secrets(&dave_id, &[b]).unwrap(), &config).unwrap();
    dave_rv.use_roots(dave_roots.clone());
    let (call, _) = ring_by_name(&dave, &dave_rv, &bob, &mut intents, d, |_| {}).await;
    call.hangup();
}
