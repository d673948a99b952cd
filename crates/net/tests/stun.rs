//! A STUN server the user configured tells the call socket its address: a binding server on
//! loopback (written here from RFC 8489's layout, independent of `core::stun`) answers, and
//! QUIC on the same socket still works afterwards.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use extrasafe_net::{AcceptPolicy, Node};

/// Answers binding requests with XOR-MAPPED-ADDRESS (IPv4), counting them.
async fn stun_server() -> (SocketAddr, tokio::task::JoinHandle<usize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut answered = 0;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        {
            let req = &buf[..n];
            if n != 20 || req[0..2] != [0, 1] || req[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                continue;
            }
            let SocketAddr::V4(v4) = from else { continue };
            let mut resp = vec![0x01, 0x01, 0x00, 12];
            resp.extend_from_slice(&req[4..20]);
            resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            resp.extend_from_slice(&(v4.port() ^ 0x2112).to_be_bytes());
            let cookie = [0x21, 0x12, 0xa4, 0x42];
            resp.extend(v4.ip().octets().iter().zip(cookie).map(|(a, k)| a ^ k));
            sock.send_to(&resp, from).await.unwrap();
            answered += 1;
        }
        answered
    });
    (addr, task)
}

#[tokio::test]
async fn a_configured_stun_server_reports_the_call_sockets_address() {
    let alice_id = extrasafe_net::new_identity();
    let bob_id = extrasafe_net::new_identity();
    let alice = Node::bind(&alice_id, common::config(AcceptPolicy::Anyone))
        .await
        .unwrap();
    let bob = Node::bind(&bob_id, common::config(AcceptPolicy::Anyone))
        .await
        .unwrap();
    let (server, task) = stun_server().await;
    let seen = alice.observe(&[], &[server], Duration::from_secs(2)).await;
    let saw: Vec<_> = seen.sightings.iter().map(|s| s.seen).collect();
    assert_eq!(saw, vec![alice.local_addr()], "{seen:?}");
    // One observer alone is not believed (`core::observe`).
    assert_eq!(seen.reflexive(), None);
    assert_eq!(task.await.unwrap(), 1, "one request, answered once");

    // A silent server costs the time limit and nothing else.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let none = alice
        .observe(
            &[],
            &[silent.local_addr().unwrap()],
            Duration::from_millis(300),
        )
        .await;
    assert!(none.sightings.is_empty());
    // It was asked (a new query each third of the limit), and no more once the limit was
    // reached: what it costs is bounded by the limit, whatever the machine's speed.
    let mut buf = [0u8; 1500];
    silent.set_nonblocking(true).unwrap();
    let mut asked = 0;
    while silent.recv_from(&mut buf).is_ok() {
        asked += 1;
    }
    assert!(
        (1..=4).contains(&asked),
        "{asked} requests to a silent server"
    );

    // The socket still carries calls.
    let call = alice.call(&bob.ticket()).await.unwrap();
    assert_eq!(call.info().peer, bob.peer_id());
}
