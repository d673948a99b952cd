//! Hole punching through the node's real socket (loopback only): probes and QUIC share the
//! port, the call runs over the address that answered, and a stranger's probes go nowhere.

mod common;

use std::time::Duration;

use common::*;
use extrasafe_net::core::punch::{Candidate, CandidateKind, PunchConfig};
use extrasafe_net::core::rendezvous::PairSecret;
use extrasafe_net::core::Identity;
use extrasafe_net::punch::PunchPlan;
use extrasafe_net::{AcceptPolicy, CallError, CallEvent, Node, NodeConfig};

fn host(node: &Node) -> Candidate {
    Candidate {
        addr: node.local_addr(),
        kind: CandidateKind::Host,
    }
}

async fn bind(punch_timeout: Duration) -> (Identity, Node) {
    let id = extrasafe_net::new_identity();
    let node = Node::bind(
        &id,
        NodeConfig {
            punch: PunchConfig {
                timeout: punch_timeout,
                ..PunchConfig::default()
            },
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    (id, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_punch_and_the_call_runs_over_the_address_that_answered() {
    let (alice_id, alice) = bind(Duration::from_secs(5)).await;
    let (bob_id, bob) = bind(Duration::from_secs(5)).await;
    // Punching is between contacts: each lets the other in by the key they share.
    alice.set_contacts(extrasafe_net::gate::contact_keys(
        &alice_id,
        &[bob.peer_id()],
    ));
    bob.set_contacts(extrasafe_net::gate::contact_keys(
        &bob_id,
        &[alice.peer_id()],
    ));
    // A socket that never answers stands for a candidate that does not work (say, Bob's
    // stale public address); it is listed first, and the check must move on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bob_candidates = [
        Candidate {
            addr: silent.local_addr().unwrap(),
            kind: CandidateKind::Host,
        },
        host(&bob),
    ];
    let call_id = [5u8; 16];
    let alice_key = PairSecret::new(&alice_id, &bob.peer_id())
        .unwrap()
        .punch_key(&call_id);
    let bob_key = PairSecret::new(&bob_id, &alice.peer_id())
        .unwrap()
        .punch_key(&call_id);
    let alice_candidates = [host(&alice)];
    let (answer, call) = tokio::join!(
        bob.answer_punch(PunchPlan::new(
            alice.peer_id(),
            bob_key,
            alice_candidates.to_vec()
        )),
        alice.call_punched(PunchPlan::new(
            bob.peer_id(),
            alice_key,
            bob_candidates.to_vec()
        ))
    );
    let answer = answer.unwrap();
    let mut call = call.unwrap();
    assert!(answer.sent >= 1 && answer.pings_heard >= 1, "{answer:?}");
    assert_eq!(call.info().remote, bob.local_addr());
    let mut inc = incoming(&bob).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    // (How soon the check moves past the silent candidate is the punch machine's decision,
    // tested on virtual time in `core/src/punch/sim.rs`; here it is enough that it did, within
    // the punch's own time limit, and on the address that answered.)
    // QUIC on the shared socket works as usual after the probes.
    call.send_chat("over the punched path").await.unwrap();
    loop {
        if let CallEvent::Chat { text, .. } = next(&mut inc).await {
            assert_eq!(text, "over the punched path");
            break;
        }
    }
    // The silent socket got only fixed-size probes, none of them readable as anything.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut probes = 0;
    while let Ok(n) = silent.recv(&mut buf) {
        assert_eq!(n, extrasafe_net::core::punch::PROBE_LEN);
        assert!(!buf[..n]
            .windows(32)
            .any(|w| w == alice.peer_id().as_bytes()));
        probes += 1;
    }
    assert!(probes >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_another_key_gets_no_path_and_a_sentence() {
    let (alice_id, alice) = bind(Duration::from_secs(1)).await;
    let (_, bob) = bind(Duration::from_secs(1)).await;
    let (eve_id, _) = bind(Duration::from_secs(1)).await;
    // Bob answers a call from Eve; Alice's probes are sealed for the pair Alice–Bob, so
    // Bob drops them and neither side finds a path.
    let (alice_candidates, bob_candidates) = ([host(&alice)], [host(&bob)]);
    let (answer, call) = tokio::join!(
        bob.answer_punch(PunchPlan::new(
            eve_id.peer_id(),
            PairSecret::new(&eve_id, &bob.peer_id())
                .unwrap()
                .punch_key(&[1; 16]),
            alice_candidates.to_vec()
        )),
        alice.call_punched(PunchPlan::new(
            bob.peer_id(),
            PairSecret::new(&alice_id, &bob.peer_id())
                .unwrap()
                .punch_key(&[1; 16]),
            bob_candidates.to_vec()
        ))
    );
    let Err(CallError::NoDirectPath(report)) = call else {
        panic!("expected no path, got {call:?}");
    };
    assert!(report.sent >= 10, "{report:?}");
    assert_eq!(report.pongs_heard, 0);
    assert!(matches!(answer, Err(CallError::NoDirectPath(r)) if r.dropped >= 10));
    let msg = CallError::NoDirectPath(report).to_string();
    assert!(msg.contains("No direct path"), "{msg}");
    assert!(msg.contains("never relays"), "{msg}");
    assert!(!alice.in_call() && !bob.in_call());
}
