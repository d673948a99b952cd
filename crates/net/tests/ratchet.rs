//! Forward secrecy of the rendezvous: every call between two contacts replaces the root their
//! records are derived from, both contact files hold the new one and erase the old, and the
//! next call still finds the callee through the DHT (a local testnet on 127.0.0.1). Then a
//! thief takes the callee's disk: the identity key and the contact file give the pair's first
//! root and the current one, never the root used between the two calls.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use extrasafe_net::core::contacts::ContactBook;
use extrasafe_net::core::inbox::{ratchet_pair, RootState};
use extrasafe_net::core::rendezvous::{epoch_of, PairSecret};
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

/// A stored identity's contact list with one contact.
fn store_with(dir: &Dir, name: &str, me: &Identity, contact: &PeerId) -> IdentityStore {
    let store = IdentityStore::at(dir.0.join(name));
    let mut book = ContactBook::default();
    book.add("them", *contact, vec![]).unwrap();
    store.save_contacts(me, &book).unwrap();
    store
}

fn roots_on_disk(store: &IdentityStore, me: &Identity, them: &PeerId) -> Option<RootState> {
    store
        .load_contacts(me)
        .unwrap()
        .by_peer(them)
        .unwrap()
        .roots
        .clone()
}

/// Waits (up to 10 s) until both files hold the same root other than `old`, and no previous.
async fn settled(
    a: (&IdentityStore, &Identity, &PeerId),
    b: (&IdentityStore, &Identity, &PeerId),
    old: &[u8; 32],
) -> [u8; 32] {
    for _ in 0..200 {
        let (ra, rb) = (roots_on_disk(a.0, a.1, a.2), roots_on_disk(b.0, b.1, b.2));
        if let (Some(ra), Some(rb)) = (ra, rb) {
            if ra == rb && ra.previous().is_none() && ra.current() != old {
                return *ra.current();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the two files never agreed on one root: {:?} / {:?}",
        roots_on_disk(a.0, a.1, a.2),
        roots_on_disk(b.0, b.1, b.2)
    );
}

/// Alice calls Bob by peer ID alone, through the DHT; returns both ends once connected.
async fn call_through_the_dht(
    alice: &Node,
    alice_rv: &Rendezvous,
    bob: &Arc<Node>,
    intents: &mut tokio::sync::mpsc::Receiver<extrasafe_net::punch::PunchPlan>,
) -> (extrasafe_net::Call, extrasafe_net::Call) {
    let answer = {
        let bob = bob.clone();
        let intent = tokio::time::timeout(Duration::from_secs(20), intents.recv());
        async move {
            let intent = intent.await.expect("no intent in 20 s").expect("an intent");
            bob.answer_punch(intent).await
        }
    };
    let (call, answered) = tokio::join!(alice.call_contact(alice_rv, bob.peer_id()), answer);
    let mut call = call.expect("Alice reaches Bob through the DHT");
    answered.unwrap();
    let mut inc = incoming(bob).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    (call, inc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_replaces_the_root_and_the_next_call_still_finds_the_callee() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = Dir(std::env::temp_dir().join(format!("es-ratchet-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let config = dht_config(&testnet);
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let (a, b) = (alice_id.peer_id(), bob_id.peer_id());
    let alice_store = store_with(&dir, "alice", &alice_id, &b);
    let bob_store = store_with(&dir, "bob", &bob_id, &a);
    let first = *PairSecret::new(&alice_id, &b).unwrap().initial_root();

    let now_epoch = extrasafe_net::core::inbox::inbox_epoch_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let alice_inbox = alice_store.own_inbox(&alice_id, now_epoch).unwrap().chain;
    let bob_inbox = bob_store.own_inbox(&bob_id, now_epoch).unwrap().chain;
    let alice_roots = Roots::stored(&alice_store, &alice_id).unwrap();
    let alice = Node::bind(
        &alice_id,
        extrasafe_net::NodeConfig {
            contacts: extrasafe_net::gate::contact_keys(&alice_id, &[b]),
            roots: Some(alice_roots.clone()),
            inbox: Some(alice_inbox.clone()),
            ..common::config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let bob = Arc::new(
        Node::bind(
            &bob_id,
            extrasafe_net::NodeConfig {
                contacts: extrasafe_net::gate::contact_keys(&bob_id, &[a]),
                roots: Some(Roots::stored(&bob_store, &bob_id).unwrap()),
                inbox: Some(bob_inbox.clone()),
                ..common::config(AcceptPolicy::Anyone)
            },
        )
        .await
        .unwrap(),
    );
    let alice_rv = Rendezvous::start(dht::pair_secrets(&alice_id, &[b]).unwrap(), &config).unwrap();
    alice_rv.use_roots(alice_roots);
    let bob_rv =
        Arc::new(Rendezvous::start(dht::pair_secrets(&bob_id, &[a]).unwrap(), &config).unwrap());
    let served = dht::serve(bob.clone(), bob_rv.clone(), config.clone());
    let (mut intents, mut published) = (served.intents, served.published);
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's record was never stored")
        .unwrap();

    // First call: the root moves on from the key-exchange secret, on both sides.
    let (call, inc) = call_through_the_dht(&alice, &alice_rv, &bob, &mut intents).await;
    let r1 = settled(
        (&alice_store, &alice_id, &b),
        (&bob_store, &bob_id, &a),
        &first,
    )
    .await;
    assert_ne!(r1, first);
    // In the same call each told the other its inbox chain, which each keeps.
    let inbox_of = |store: &IdentityStore, me: &Identity, them: &PeerId| {
        store
            .load_contacts(me)
            .unwrap()
            .by_peer(them)
            .unwrap()
            .inbox
            .clone()
    };
    let mut told = (None, None);
    for _ in 0..200 {
        told = (
            inbox_of(&alice_store, &alice_id, &b),
            inbox_of(&bob_store, &bob_id, &a),
        );
        if told.0.is_some() && told.1.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (bobs_at_alice, alices_at_bob) = (
        told.0.expect("Alice kept Bob's chain"),
        told.1.expect("Bob kept Alice's chain"),
    );
    assert_eq!(bobs_at_alice, bob_inbox.at(bobs_at_alice.epoch()).unwrap());
    assert_eq!(
        alices_at_bob,
        alice_inbox.at(alices_at_bob.epoch()).unwrap()
    );
    call.hangup();
    drop((call, inc));
    until_idle(&bob).await;
    // The next call by name finds him, and replaces the root again. It can only go through
    // his presence and inbox (the chains they swapped): the record of his own he published
    // for Alice before the call is under the old root, which Alice erased, and he publishes
    // no more records for a contact who holds his chain.
    let (call, inc) = call_through_the_dht(&alice, &alice_rv, &bob, &mut intents).await;
    let r2 = settled(
        (&alice_store, &alice_id, &b),
        (&bob_store, &bob_id, &a),
        &r1,
    )
    .await;
    call.hangup();
    drop((call, inc));
    assert_ne!(r2, r1);
    assert_ne!(r2, first);

    // The thief holds Bob's identity key and his contact file, taken after the second call.
    let stolen = bob_store.load_contacts(&bob_id).unwrap();
    let held = stolen.by_peer(&a).unwrap().roots.clone().unwrap();
    let derivable = [
        *PairSecret::new(&bob_id, &a).unwrap().initial_root(),
        *held.current(),
    ];
    assert_eq!(derivable, [first, r2]);
    assert_eq!(held.previous(), None);
    // The records of the time between the two calls (under r1) are under none of them.
    let pair = PairSecret::new(&bob_id, &a).unwrap();
    let epoch = epoch_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let target = |root: &[u8; 32]| {
        let p = pair.with_root(root);
        (p.outgoing(epoch).dht_key(), p.incoming(epoch).dht_key())
    };
    let used = target(&r1);
    for root in &derivable {
        let t = target(root);
        assert!(t.0 != used.0 && t.1 != used.1 && t.0 != used.1 && t.1 != used.0);
    }
    // Nor is r1 anywhere in the files of Bob's folder, sealed or not.
    for entry in std::fs::read_dir(dir.0.join("bob")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(32).any(|w| w == r1));
    }

    // Out of step: a call ended before one side heard that the other had stored the new root.
    // (a) Both stored it and only Bob heard Alice say so: he erased the old root, she still
    // holds it beside the new one. (b) Bob's write was lost: he holds only the old root, she
    // both. Either way her next intent must be one he can read (the lab's quick hang-ups
    // left the pair in state (a), and every later call by name failed).
    let set = |store: &IdentityStore, me: &Identity, them: &PeerId, state: RootState| {
        let key = extrasafe_net::core::contacts::ContactsKey::of(me);
        let set = store.update_contacts(&key, |book| {
            let set = book.set_roots(them, Some(state));
            (set, set)
        });
        assert!(set.unwrap());
    };
    let mut old = r2;
    for bob_has_new in [true, false] {
        let new = *ratchet_pair(&old, &[7; 32]);
        set(&alice_store, &alice_id, &b, RootState::new(new, Some(old)));
        let bobs = if bob_has_new { new } else { old };
        set(&bob_store, &bob_id, &a, RootState::new(bobs, None));
        let (call, inc) = call_through_the_dht(&alice, &alice_rv, &bob, &mut intents).await;
        old = settled(
            (&alice_store, &alice_id, &b),
            (&bob_store, &bob_id, &a),
            &new,
        )
        .await;
        call.hangup();
        drop((call, inc));
        until_idle(&bob).await;
    }
    drop(published);
}
