//! Real calls between nodes over UDP on loopback.

mod common;

use std::time::Duration;

use common::*;
use extrasafe_net::core::{EndReason, Ticket};
use extrasafe_net::{AcceptPolicy, CallError, CallEvent};

/// A caller whose ring gives up after 2 s (so "no answer" comes quickly).
async fn short_ring() -> extrasafe_net::Node {
    extrasafe_net::Node::bind(
        &extrasafe_net::new_identity(),
        extrasafe_net::NodeConfig {
            session: extrasafe_net::core::SessionConfig {
                ring_timeout: Duration::from_secs(2),
                hello_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            ..config(AcceptPolicy::Ask)
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn call_chat_and_hang_up() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Only(vec![a.peer_id()])).await;
    let mut out = a.call(&ticket(&b)).await.unwrap();
    let mut inc = incoming(&b).await;
    assert_eq!(inc.info().peer, a.peer_id());
    assert_eq!(out.info().peer, b.peer_id());
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    // Same connection, same SAS (settled, six digits); same pair, same safety number.
    let code = until_code(&mut inc).await;
    assert_eq!(code.len(), 7);
    assert_eq!(until_code(&mut out).await, code);
    assert_eq!(out.info().safety_number, inc.info().safety_number);
    assert_eq!(out.info().key_exchange, "X25519MLKEM768");

    for line in ["first", "second", "third"] {
        out.send_chat(line).await.unwrap();
    }
    inc.send_chat("reply").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let CallEvent::Chat { text, .. } = next(&mut inc).await {
            got.push(text);
        }
    }
    assert_eq!(got, ["first", "second", "third"]);
    assert!(matches!(next(&mut out).await, CallEvent::Chat { text, .. } if text == "reply"));
    // Each side told the other, inside the session, where its packets come from (sent right
    // after the hello, so it has arrived before any chat line).
    assert_eq!(a.observed_by_peer(), Some(a.local_addr()));
    assert_eq!(b.observed_by_peer(), Some(b.local_addr()));

    out.hangup();
    assert_eq!(
        next(&mut out).await,
        CallEvent::Ended(EndReason::LocalHangup)
    );
    assert_eq!(
        next(&mut inc).await,
        CallEvent::Ended(EndReason::RemoteHangup)
    );
}

#[tokio::test]
async fn the_negotiated_group_is_hybrid_post_quantum() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let before = extrasafe_net::tls::server_key_exchanges();
    let mut call = a.call(&ticket(&b)).await.unwrap();
    until_connected(&mut call).await;
    let after = extrasafe_net::tls::server_key_exchanges();
    assert_eq!(
        after.len(),
        1,
        "exactly one group is ever offered: {after:?}"
    );
    assert_eq!(format!("{:?}", after[0].0), "X25519MLKEM768");
    assert!(
        after[0].1 > before[0].1,
        "the server completed an X25519MLKEM768 exchange"
    );

    // A client that offers classical X25519 only cannot connect at all.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let key = extrasafe_net::tls::certified_key(&extrasafe_net::new_identity()).unwrap();
    let cfg = extrasafe_net::tls::client_config(
        key,
        std::sync::Arc::new(provider),
        b.peer_id(),
        Default::default(),
    )
    .unwrap();
    let (ep, client) = client_from_rustls(cfg, &ticket(&b));
    let res = ep.connect_with(client, addr(&b), "x").unwrap().await;
    assert!(res.is_err(), "classical-only handshake must fail");
}

#[tokio::test]
async fn an_impostor_at_the_right_address_is_refused() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    // Mallory holds Bob's ticket (she saw it) and runs a node that answers its holders.
    let (_m_id, mallory) = node(AcceptPolicy::Anyone).await;
    let bob_key = ticket(&b).secret.map(|s| s.access_key(&b.peer_id()));
    mallory.answer_ticket_key(bob_key);
    // Bob's key, Mallory's address: e.g. Mallory took over Bob's old IP, or forged the ticket.
    let forged = Ticket {
        addrs: vec![addr(&mallory)],
        ..ticket(&b)
    };
    match a.call(&forged).await {
        Err(CallError::WrongPeer { expected, actual }) => {
            assert_eq!(expected, b.peer_id());
            assert_eq!(actual, mallory.peer_id());
        }
        other => panic!("expected WrongPeer, got {other:?}"),
    }
    // Nothing reached Mallory's application.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mallory.incoming())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_refused_caller_learns_only_no_answer() {
    let a = short_ring().await;
    let (_c_id, c) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Only(vec![c.peer_id()])).await;
    let mut call = a.call(&ticket(&b)).await.unwrap();
    // No refusal: it rings, and the ring runs out, as if nobody were there.
    assert_eq!(next(&mut call).await, CallEvent::Ringing);
    assert_eq!(next(&mut call).await, CallEvent::Ended(EndReason::NoAnswer));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.incoming())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ask_policy_lets_the_user_decide() {
    let a = short_ring().await;
    let (_b_id, b) = node(AcceptPolicy::Ask).await;
    let mut out = a.call(&ticket(&b)).await.unwrap();
    let mut inc = incoming(&b).await;
    assert_eq!(next(&mut inc).await, CallEvent::Incoming);
    assert_eq!(next(&mut out).await, CallEvent::Ringing);
    inc.decline();
    assert_eq!(
        next(&mut inc).await,
        CallEvent::Ended(EndReason::DeclinedLocally)
    );
    drop(inc);
    // The caller hears nothing of the decline: its ring runs out.
    assert_eq!(next(&mut out).await, CallEvent::Ended(EndReason::NoAnswer));

    // The node is free again: the next call can be answered.
    let mut out = a.call(&ticket(&b)).await.unwrap();
    let mut inc = incoming(&b).await;
    assert_eq!(next(&mut inc).await, CallEvent::Incoming);
    inc.accept();
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    drop(inc); // dropping the handle hangs up
    assert_eq!(
        next(&mut out).await,
        CallEvent::Ended(EndReason::RemoteHangup)
    );
}

#[tokio::test]
async fn a_second_caller_hears_no_answer() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let c = short_ring().await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let (first, mut held) = connected(&a, &b).await;
    let mut second = c.call(&ticket(&b)).await.unwrap();
    // Busy looks like nobody there: a stranger learns nothing of a call in progress.
    assert_eq!(next(&mut second).await, CallEvent::Ringing);
    assert_eq!(
        next(&mut second).await,
        CallEvent::Ended(EndReason::NoAnswer)
    );
    // ... and the first call is unharmed.
    first.send_chat("still here").await.unwrap();
    assert!(matches!(next(&mut held).await, CallEvent::Chat { .. }));
    // A node in a call cannot place another.
    assert!(matches!(
        a.call(&ticket(&c)).await,
        Err(CallError::AlreadyInCall)
    ));
}

#[tokio::test]
async fn unreachable_address_is_reported() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    // A port on loopback where nothing listens.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = sock.local_addr().unwrap();
    drop(sock);
    let t = Ticket {
        peer: extrasafe_net::new_identity().peer_id(),
        secret: None,
        addrs: vec![dead],
    };
    match a.call(&t).await {
        Err(CallError::Unreachable { tried: 1, .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// A program that hangs up and exits at once (as the CLI does when the call is over: shut
/// the node down, drop the runtime) must still deliver the hang-up: the other side hears
/// "hung up", not "the connection was lost".
#[tokio::test]
async fn a_hang_up_right_before_exiting_still_arrives() {
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    for _ in 0..5 {
        let to = ticket(&b);
        let caller = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (_a_id, a) = node(AcceptPolicy::Ask).await;
                let mut out = a.call(&to).await.unwrap();
                until_connected(&mut out).await;
                out.hangup();
                assert_eq!(
                    next(&mut out).await,
                    CallEvent::Ended(EndReason::LocalHangup)
                );
                a.shutdown().await;
            });
            // The runtime goes with everything still running on it, as at process exit.
            rt.shutdown_timeout(Duration::from_millis(0));
        });
        let mut inc = incoming(&b).await;
        // Joined off this runtime's thread, so the callee keeps running meanwhile.
        tokio::task::spawn_blocking(move || caller.join().unwrap())
            .await
            .unwrap();
        loop {
            match next(&mut inc).await {
                CallEvent::Ended(r) => {
                    assert_eq!(r, EndReason::RemoteHangup);
                    break;
                }
                _ => continue,
            }
        }
        until_idle(&b).await;
    }
}

#[tokio::test]
async fn shutdown_tells_the_peer() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let (mut out, _inc) = connected(&a, &b).await;
    b.shutdown().await;
    assert_eq!(
        next(&mut out).await,
        CallEvent::Ended(EndReason::RemoteError(
            extrasafe_net::core::wire::HangupReason::Shutdown
        ))
    );
}

#[tokio::test]
async fn a_key_substituting_man_in_the_middle_cannot_make_the_codes_match() {
    let (_a_id, alice) = node(AcceptPolicy::Ask).await;
    let (_b_id, bob) = node(AcceptPolicy::Anyone).await;
    // Mallory answers Alice on one node and calls Bob from another, with one identity.
    let (m_id, mallory_front) = node(AcceptPolicy::Anyone).await;
    let mallory_back = extrasafe_net::Node::bind(&m_id, config(AcceptPolicy::Ask))
        .await
        .unwrap();

    // With Bob's genuine ticket (key and secret), Mallory cannot complete the handshake,
    // even if she answers its holders.
    mallory_front.answer_ticket_key(ticket(&bob).secret.map(|s| s.access_key(&bob.peer_id())));
    let genuine_key_at_mallory = Ticket {
        addrs: vec![addr(&mallory_front)],
        ..ticket(&bob)
    };
    assert!(matches!(
        alice.call(&genuine_key_at_mallory).await,
        Err(CallError::WrongPeer { .. })
    ));

    // So she substitutes her own key (and ticket) for the one Alice receives, and relays.
    mallory_front.set_ticket_secret(ticket(&mallory_front).secret);
    for _ in 0..3 {
        let forged = ticket(&mallory_front);
        let mut alice_leg = alice.call(&forged).await.unwrap();
        let mut m_in = incoming(&mallory_front).await;
        let mut m_out = mallory_back.call(&ticket(&bob)).await.unwrap();
        let mut bob_leg = incoming(&bob).await;
        for c in [&mut alice_leg, &mut m_in, &mut m_out, &mut bob_leg] {
            until_connected(c).await;
        }
        let codes = [
            until_code(&mut alice_leg).await,
            until_code(&mut m_in).await,
            until_code(&mut m_out).await,
            until_code(&mut bob_leg).await,
        ];
        // Alice and Bob read different codes to each other: the attack is exposed (with
        // probability 1 - 10^-6; a match here would fail the test once in a million runs).
        assert_ne!(codes[0], codes[3]);
        assert_ne!(alice_leg.info().safety_number, bob_leg.info().safety_number);
        // Each leg is a separate TLS session that Mallory terminates.
        assert_eq!(codes[0], codes[1]);
        assert_eq!(codes[2], codes[3]);
        assert_eq!(bob_leg.info().peer, mallory_front.peer_id());
        for c in [&alice_leg, &m_out] {
            c.hangup();
        }
        for c in [&mut alice_leg, &mut m_in, &mut m_out, &mut bob_leg] {
            while !matches!(next(c).await, CallEvent::Ended(_)) {}
        }
        for n in [&alice, &bob, &mallory_front, &mallory_back] {
            until_idle(n).await;
        }
    }
}

#[tokio::test]
async fn a_chat_flood_cannot_wedge_the_call() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    let (mut out, inc) = connected(&a, &b).await;
    // The callee floods; the caller's application reads none of it for now.
    for i in 0..500 {
        inc.send_chat(format!("flood {i}")).await.unwrap();
    }
    // The caller's commands are still served at once, and hanging up still works.
    tokio::time::timeout(Duration::from_secs(2), out.send_chat("still responsive"))
        .await
        .expect("command not served during a flood")
        .unwrap();
    out.hangup();
    let mut chats = 0;
    loop {
        match next(&mut out).await {
            CallEvent::Chat { .. } => chats += 1,
            CallEvent::Ended(r) => {
                assert_eq!(r, EndReason::LocalHangup);
                break;
            }
            _ => {}
        }
    }
    // Nothing was dropped: what arrived before the hang-up was delivered in order.
    assert!(chats > 0 && chats <= 500, "{chats}");
}

#[tokio::test]
async fn a_caller_can_redial_at_once() {
    let (_a_id, a) = node(AcceptPolicy::Ask).await;
    let (_b_id, b) = node(AcceptPolicy::Anyone).await;
    for _ in 0..3 {
        let mut out = a.call(&ticket(&b)).await.expect("redial refused");
        let mut inc = incoming(&b).await;
        until_connected(&mut out).await;
        until_connected(&mut inc).await;
        out.hangup();
        assert_eq!(
            next(&mut out).await,
            CallEvent::Ended(EndReason::LocalHangup)
        );
        assert_eq!(
            next(&mut inc).await,
            CallEvent::Ended(EndReason::RemoteHangup)
        );
    }
}

#[tokio::test]
async fn a_node_that_only_calls_cannot_be_reached() {
    let id = extrasafe_net::new_identity();
    let caller_only = extrasafe_net::Node::bind(
        &id,
        extrasafe_net::NodeConfig {
            listen: false,
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    assert!(caller_only.incoming().await.is_none());
    let (_x_id, x) = node(AcceptPolicy::Ask).await;
    match x.call(&ticket(&caller_only)).await {
        Err(CallError::Unreachable { .. }) | Err(CallError::Handshake(_)) => {}
        other => panic!("a non-listening node answered: {other:?}"),
    }
}

#[tokio::test]
async fn dual_stack_listener_takes_ipv4_and_ipv6() {
    let id = extrasafe_net::new_identity();
    let b = extrasafe_net::Node::bind(
        &id,
        extrasafe_net::NodeConfig {
            bind: "[::]:0".parse().unwrap(),
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let port = b.local_addr().port();
    for (from, to) in [("127.0.0.1:0", "127.0.0.1"), ("[::]:0", "::1")] {
        let a = extrasafe_net::Node::bind(
            &extrasafe_net::new_identity(),
            extrasafe_net::NodeConfig {
                bind: from.parse().unwrap(),
                listen: false,
                ..config(AcceptPolicy::Ask)
            },
        )
        .await
        .unwrap();
        // A v4-only caller skips the IPv6 address instead of failing on it.
        let t = Ticket {
            peer: b.peer_id(),
            secret: ticket(&b).secret,
            addrs: vec![
                std::net::SocketAddr::new("::1".parse().unwrap(), port),
                std::net::SocketAddr::new(to.parse().unwrap(), port),
            ],
        };
        let mut out = a.call(&t).await.expect("dual-stack call");
        let mut inc = incoming(&b).await;
        until_connected(&mut out).await;
        until_connected(&mut inc).await;
        out.hangup();
        assert_eq!(
            next(&mut inc).await,
            CallEvent::Ended(EndReason::RemoteHangup)
        );
    }
}
