//! Hostile peers against a listening node: each is cut off with a clear reason while the
//! node keeps serving honest callers, with bounded memory.

mod common;

use std::time::Duration;

use common::*;
use extrasafe_net::core::wire::Message;
use extrasafe_net::{AcceptPolicy, CallEvent, Node};
use quinn::{ConnectionError, VarInt};

/// Proves the node still answers an honest caller.
/// Connects as an authenticated but misbehaving client.
async fn hostile_conn(target: &Node) -> quinn::Connection {
    let me = extrasafe_net::new_identity();
    let (ep, client) = raw_client(&me, &ticket(target));
    ep.connect_with(client, addr(target), "x")
        .unwrap()
        .await
        .unwrap()
}

async fn closed_with(conn: &quinn::Connection) -> VarInt {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(ConnectionError::ApplicationClosed(c)) => c.error_code,
        other => panic!("expected an application close, got {other:?}"),
    }
}

fn hello() -> Vec<u8> {
    let mut v = Vec::new();
    Message::Hello {
        max_version: 2,
        min_version: 2,
        capabilities: 1,
    }
    .encode(&mut v)
    .unwrap();
    v
}

#[tokio::test]
async fn garbage_datagrams_are_ignored() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut x: u32 = 0x9E37_79B9;
    for i in 0..3000usize {
        let len = 1 + (i * 7919) % 1400;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        sock.send_to(&junk, addr(&target)).await.unwrap();
    }
    still_serves(&target).await;
}

#[tokio::test]
async fn wrong_or_missing_alpn_is_refused() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    for alpn in [vec![b"h3".to_vec()], vec![]] {
        let me = extrasafe_net::new_identity();
        let key = extrasafe_net::tls::certified_key(&me).unwrap();
        let mut cfg = extrasafe_net::tls::client_config(
            key,
            extrasafe_net::tls::provider(),
            target.peer_id(),
            Default::default(),
        )
        .unwrap();
        cfg.alpn_protocols = alpn;
        let (ep, client) = client_from_rustls(cfg, &ticket(&target));
        let err = ep
            .connect_with(client, addr(&target), "x")
            .unwrap()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no_application_protocol") || err.to_string().contains("120"),
            "{err}"
        );
    }
    still_serves(&target).await;
}

/// Our node calls something that answers with the right key but another application
/// protocol (a later, incompatible EXTRA SAFE): the failure is typed as "incompatible", from
/// the TLS alert, so the front ends can say "update" and not "impostor" or "unreachable".
#[tokio::test]
async fn an_answer_in_another_protocol_is_typed_incompatible() {
    use extrasafe_net::{Blame, CallError, HandshakeFailure};
    let them = extrasafe_net::new_identity();
    let key = extrasafe_net::tls::certified_key(&them).unwrap();
    let mut cfg = extrasafe_net::tls::server_config(key, extrasafe_net::tls::provider()).unwrap();
    cfg.alpn_protocols = vec![b"extrasafe/99".to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(std::sync::Arc::new(quic)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let at = server.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let (_me, caller) = node(AcceptPolicy::Ask).await;
    let to = extrasafe_net::core::Ticket {
        peer: them.peer_id(),
        secret: None,
        addrs: vec![at],
    };
    match caller.call(&to).await {
        Err(CallError::Handshake(h)) => {
            assert!(matches!(h, HandshakeFailure::Incompatible(_)), "{h:?}");
            assert_eq!(h.blame(), Blame::Incompatible);
            assert_eq!(CallError::Handshake(h).blame(), Blame::Incompatible);
        }
        other => panic!("expected an incompatible handshake, got {other:?}"),
    }
    serving.abort();
}

#[derive(Debug)]
struct AcceptAnything;
impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_client_without_a_key_is_refused() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let mut cfg = rustls::ClientConfig::builder_with_provider(extrasafe_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnything))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![extrasafe_net::tls::ALPN.to_vec()];
    let (ep, client) = client_from_rustls(cfg, &ticket(&target));
    let res = ep.connect_with(client, addr(&target), "x").unwrap().await;
    // TLS 1.3 client auth completes after the client's Finished: the server's verdict may
    // arrive as a failed handshake or as an immediate close.
    if let Ok(conn) = res {
        let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .unwrap();
        assert!(reason.to_string().contains("certificate"), "{reason}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), target.incoming())
            .await
            .is_err()
    );
    still_serves(&target).await;
}

#[tokio::test]
async fn oversized_control_frame_closes_the_connection() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let conn = hostile_conn(&target).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut bytes = hello();
    bytes.extend([0xFF, 0xFF]);
    bytes.extend(vec![0u8; 70_000]);
    let _ = send.write_all(&bytes).await;
    assert_eq!(closed_with(&conn).await, VarInt::from_u32(1));
    still_serves(&target).await;
}

#[tokio::test]
async fn malformed_frame_closes_the_connection() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let conn = hostile_conn(&target).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut bytes = hello();
    bytes.extend([0, 3, 0x08, 0x01, 0xFF]); // chat whose text is cut short
    send.write_all(&bytes).await.unwrap();
    assert_eq!(closed_with(&conn).await, VarInt::from_u32(1));
    still_serves(&target).await;
}

#[tokio::test]
async fn ten_thousand_streams_get_nowhere() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let rss_before = rss_kib();
    let conn = hostile_conn(&target).await;
    let mut opened = Vec::new();
    let attack = async {
        for _ in 0..10_000 {
            let Ok((mut s, r)) = conn.open_bi().await else {
                break;
            };
            let _ = s.write_all(&[0]).await;
            opened.push((s, r));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), attack).await;
    // Flow control allows one stream; its lone byte is not a hello, so the peer is dropped.
    assert!(opened.len() <= 1, "opened {} streams", opened.len());
    assert_eq!(closed_with(&conn).await, VarInt::from_u32(3));
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("resident memory grew by {grown} KiB during the stream attack");
    assert!(grown < 16 * 1024, "memory grew by {grown} KiB");
    still_serves(&target).await;
}

#[tokio::test]
async fn extra_stream_after_hello_is_a_violation() {
    let (_id, target) = node(AcceptPolicy::Ask).await;
    let conn = hostile_conn(&target).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&hello()).await.unwrap();
    // The node only grants one bidirectional stream and no unidirectional ones.
    let uni = tokio::time::timeout(Duration::from_millis(300), conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was granted");
    drop(send);
}

#[tokio::test]
async fn a_peer_that_never_says_hello_is_dropped() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    // Handshake only, no stream at all.
    let quiet = hostile_conn(&target).await;
    // Stream opened, nothing sent.
    let mute = hostile_conn(&target).await;
    let (_s, _r) = mute.open_bi().await.unwrap();
    assert_eq!(closed_with(&quiet).await, VarInt::from_u32(3));
    assert_eq!(closed_with(&mute).await, VarInt::from_u32(3));
    still_serves(&target).await;
}

#[tokio::test]
async fn silent_peers_holding_slots_do_not_lock_out_callers() {
    let target = Node::bind(
        &extrasafe_net::new_identity(),
        extrasafe_net::NodeConfig {
            max_connections: 4,
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    // Two authenticated connections that never say anything hold half the slots...
    let _quiet = [hostile_conn(&target).await, hostile_conn(&target).await];
    // ...so the next caller is asked to prove its address (QUIC Retry) and gets through.
    still_serves_quickly(&target).await;
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let target = Node::bind(
        &extrasafe_net::new_identity(),
        extrasafe_net::NodeConfig {
            max_connections_per_ip: 2,
            // The two held connections stay held for the whole test (they say nothing).
            session: extrasafe_net::core::SessionConfig {
                hello_timeout: Duration::from_secs(60),
                ..Default::default()
            },
            ..config(AcceptPolicy::Anyone)
        },
    )
    .await
    .unwrap();
    let _held = [hostile_conn(&target).await, hostile_conn(&target).await];
    let me = extrasafe_net::new_identity();
    let (ep, mut client) = raw_client(&me, &ticket(&target));
    // A full node ignores the third instead of refusing it (even a ticket holder learns
    // nothing from a full node): its handshake runs out.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(2).try_into().unwrap()));
    client.transport_config(std::sync::Arc::new(transport));
    let refused = ep.connect_with(client, addr(&target), "x").unwrap().await;
    assert!(
        matches!(refused, Err(ConnectionError::TimedOut)),
        "per-IP limit not applied: {refused:?}"
    );
}

/// Like `still_serves`, without waiting for the slot to free afterwards.
async fn still_serves_quickly(target: &Node) {
    let (_id, honest) = node(AcceptPolicy::Ask).await;
    let mut call = honest.call(&ticket(target)).await.expect("honest call");
    let mut inc = incoming(target).await;
    until_connected(&mut call).await;
    until_connected(&mut inc).await;
    call.hangup();
    while !matches!(next(&mut inc).await, CallEvent::Ended(_)) {}
}
