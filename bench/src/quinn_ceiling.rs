//! The ceiling of the transport alone on this machine: quinn with our TLS (raw public keys,
//! X25519MLKEM768, AES-GCM) and our transport settings (16 MiB stream and 80 MiB connection
//! windows, path MTU search up to 65,000-byte datagrams, the chosen congestion controller),
//! moving bytes from memory to memory between two processes on loopback (`QC_WINDOW_MIB=64`
//! for 64 MiB stream windows). No file is read or
//! written and nothing is hashed: what is left between this and `extrasafe send` is ours.
//!
//!   quinn-ceiling serve                 prints "PEER_ID PORT", takes one stream, exits
//!   quinn-ceiling send PORT PEER_ID MIB [bbr|cubic|newreno]
//!                                       prints seconds from the first byte written to the
//!                                       receiver's close (all bytes read)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use extrasafe_net::core::PeerId;
use extrasafe_net::tls;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// Our stream window; `QC_WINDOW_MIB` sets another (the connection's is five times it).
fn window() -> u32 {
    std::env::var("QC_WINDOW_MIB")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(16)
        * 1024
        * 1024
}
const MAX_UDP_PAYLOAD: u16 = 65_000;

fn transport(cc: &str) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    match cc {
        "cubic" => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        "newreno" => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()))
        }
        _ => t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default())),
    };
    let window = window();
    t.stream_receive_window(window.into());
    t.receive_window((5 * window).into());
    t.send_window(u64::from(5 * window));
    t.max_concurrent_uni_streams(1u32.into());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    Arc::new(t)
}

fn endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("valid payload size");
    quinn::Endpoint::new(config, server, socket, Arc::new(quinn::TokioRuntime)).expect("endpoint")
}

async fn serve() {
    let id = extrasafe_net::new_identity();
    let provider = tls::provider();
    let key = tls::certified_key(&id).expect("key");
    let server_tls = tls::server_config(key, provider).expect("server TLS");
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls).unwrap()));
    server.transport_config(transport("bbr"));
    let ep = endpoint(Some(server));
    println!("{} {}", id.peer_id(), ep.local_addr().unwrap().port());
    let conn = ep
        .accept()
        .await
        .expect("a connection")
        .await
        .expect("handshake");
    let mut recv = conn.accept_uni().await.expect("a stream");
    let mut total = 0usize;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.expect("read") {
        total += chunk.bytes.len();
    }
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    eprintln!("received {total} bytes");
}

async fn send(port: u16, peer: PeerId, mib: usize, cc: &str) {
    let id = extrasafe_net::new_identity();
    let provider = tls::provider();
    let key = tls::certified_key(&id).expect("key");
    let client_tls = tls::client_config(key, provider, peer, Default::default()).expect("TLS");
    let mut client =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls).unwrap()));
    client.transport_config(transport(cc));
    let ep = endpoint(None);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let conn = ep
        .connect_with(client, addr, "extrasafe")
        .expect("connect")
        .await
        .expect("handshake");
    let mut stream = conn.open_uni().await.expect("stream");
    let chunk = bytes::Bytes::from(vec![0x5a; 1024 * 1024]);
    let started = Instant::now();
    for _ in 0..mib {
        stream.write_chunk(chunk.clone()).await.expect("write");
    }
    stream.finish().expect("finish");
    let _ = conn.closed().await;
    println!("{:.3}", started.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve().await,
        Some("send") if args.len() >= 5 => {
            let port = args[2].parse().expect("PORT");
            let peer: PeerId = args[3].parse().expect("PEER_ID");
            let mib = args[4].parse().expect("MIB");
            send(port, peer, mib, args.get(5).map_or("bbr", String::as_str)).await
        }
        _ => {
            eprintln!("usage: quinn-ceiling serve | quinn-ceiling send PORT PEER_ID MIB [bbr|cubic|newreno]");
            std::process::exit(2);
        }
    }
}
