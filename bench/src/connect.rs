//! Connection-setup benchmark.
//!
//! Measures, on loopback:
//! 1. time from `Node::call` to the callee's application being rung (the `Incoming` event), and
//!    to the caller seeing "ringing", median of 50;
//! 2. the baseline in the same run: a bare quinn handshake with the same raw-key mutual
//!    authentication but classical X25519 only, to the first stream byte at the server;
//! 3. the number of round trips, by repeating (1) through an in-process UDP relay that adds a
//!    fixed one-way delay (this kernel has no netem);
//! 4. CPU time per call setup on each side, with the callee in a child process, from
//!    /proc/PID/stat over 200 calls.
//!
//! Run: `cargo run --release -p extrasafe-bench --bin connect-bench`
#![forbid(unsafe_code)]

#[path = "stats.rs"]
mod stats;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use extrasafe_core::{SessionConfig, Ticket};
use extrasafe_net::tls::{self, PinObservation};
use extrasafe_net::{AcceptPolicy, CallEvent, Node, NodeConfig};
use stats::{median, pct};
use tokio::net::UdpSocket;

const RUNS: usize = 50;
const DELAY_RUNS: usize = 20;
const CPU_CALLS: usize = 200;
const ONE_WAY: Duration = Duration::from_millis(25);

fn cfg(policy: AcceptPolicy) -> NodeConfig {
    NodeConfig {
        // The benchmark rings the same node many times from one address on purpose.
        ring_burst: 1_000_000,
        bind: "127.0.0.1:0".parse().unwrap(),
        policy,
        session: SessionConfig::default(),
        ..NodeConfig::default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One full call: returns (call → callee rung, call → caller sees ringing, handshake).
async fn one_call(caller: &Node, callee: &Node, ticket: &Ticket) -> (Duration, Duration, Duration) {
    let t0 = Instant::now();
    let mut out = caller.call(ticket).await.expect("call");
    let mut inc = callee.incoming().await.expect("incoming");
    let mut rung = None;
    while rung.is_none() {
        if let Some(CallEvent::Incoming) = inc.next_event().await {
            rung = Some(t0.elapsed());
        }
    }
    let mut ringing = None;
    while ringing.is_none() {
        if let Some(CallEvent::Ringing) = out.next_event().await {
            ringing = Some(t0.elapsed());
        }
    }
    let hs = out.info().handshake;
    // (A decline would tell the caller nothing: it would ring until its timeout.)
    out.hangup();
    while !matches!(out.next_event().await, Some(CallEvent::Ended(_))) {}
    while !matches!(inc.next_event().await, Some(CallEvent::Ended(_)) | None) {}
    // Let both nodes free their call slot after the linger.
    wait_idle(caller, callee).await;
    (rung.unwrap(), ringing.unwrap(), hs)
}

async fn wait_idle(caller: &Node, callee: &Node) {
    // Call slots free when the drivers finish lingering (at most 1 s; usually at once
    // because both sides finish their streams).
    for _ in 0..2000 {
        if !caller.in_call() && !callee.in_call() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Bare quinn with our raw-key mutual auth, classical X25519 (the baseline) or our
/// hybrid group: time from connect to the first stream byte at the server.
async fn bare_handshakes(n: usize, delay: Option<Duration>, pq: bool) -> Vec<Duration> {
    let provider = if pq {
        tls::provider()
    } else {
        let mut classical = rustls::crypto::aws_lc_rs::default_provider();
        classical.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        classical
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13);
        Arc::new(classical)
    };
    let server_id = extrasafe_net::new_identity();
    let server_tls =
        tls::server_config(tls::certified_key(&server_id).unwrap(), provider.clone()).unwrap();
    let server_quic = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server_quic)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mut addr = server.local_addr().unwrap();
    if let Some(d) = delay {
        addr = delay_relay(addr, d).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let s2 = server.clone();
    tokio::spawn(async move {
        while let Some(inc) = s2.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                if let Ok(mut r) = conn.accept_uni().await {
                    let mut b = [0u8; 1];
                    let _ = r.read_exact(&mut b).await;
                    let _ = tx.send(Instant::now());
                }
                conn.closed().await;
            });
        }
    });
    let client_id = extrasafe_net::new_identity();
    let key = tls::certified_key(&client_id).unwrap();
    let client_ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let cfg = tls::client_config(
            key.clone(),
            provider.clone(),
            server_id.peer_id(),
            Arc::new(PinObservation::default()),
        )
        .unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
        let t0 = Instant::now();
        let conn = client_ep
            .connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "x")
            .unwrap()
            .await
            .unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&[1]).await.unwrap();
        let at = rx.recv().await.unwrap();
        out.push(at - t0);
        conn.close(0u32.into(), b"");
    }
    out
}

/// A UDP relay on loopback that delays every datagram by `delay` in each direction and keeps
/// their order (one FIFO per direction), like a long cable.
async fn delay_relay(target: SocketAddr, delay: Duration) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
    let forward = |from: Arc<UdpSocket>,
                   to: Arc<UdpSocket>,
                   dest: Box<dyn Fn(SocketAddr) -> Option<SocketAddr> + Send>| {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>, SocketAddr)>();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, src)) = from.recv_from(&mut buf).await {
                if let Some(d) = dest(src) {
                    let _ = tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec(), d));
                }
            }
        });
        tokio::spawn(async move {
            while let Some((at, data, d)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = to.send_to(&data, d).await;
            }
        });
    };
    let c1 = client.clone();
    forward(
        front.clone(),
        back.clone(),
        Box::new(move |src| {
            *c1.lock().unwrap() = Some(src);
            Some(target)
        }),
    );
    forward(back, front, Box::new(move |_| *client.lock().unwrap()));
    addr
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // CLK_TCK is 100 on Linux x86_64
}

/// Child mode: a callee that answers anyone, prints its ticket, runs until stdin closes.
async fn callee_process() {
    let id = extrasafe_net::new_identity();
    let node = Node::bind(&id, cfg(AcceptPolicy::Anyone)).await.unwrap();
    println!("{}", node.ticket_for(node.local_addr()));
    let serve = async {
        while let Some(mut call) = node.incoming().await {
            tokio::spawn(async move { while call.next_event().await.is_some() {} });
        }
    };
    let stdin_closed = async {
        let mut buf = String::new();
        let _ = tokio::io::AsyncBufReadExt::read_line(
            &mut tokio::io::BufReader::new(tokio::io::stdin()),
            &mut buf,
        )
        .await;
    };
    tokio::select! { _ = serve => {}, _ = stdin_closed => {} }
}

async fn cpu_per_call() -> (f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .arg("--callee")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ticket: Ticket = line.trim().parse().unwrap();
    let pid = child.id().to_string();
    let me = extrasafe_net::new_identity();
    let node = Node::bind(&me, cfg(AcceptPolicy::Ask)).await.unwrap();
    // warm up
    for _ in 0..5 {
        full_call(&node, &ticket).await;
    }
    let (c0, s0) = (cpu_secs("self"), cpu_secs(&pid));
    for _ in 0..CPU_CALLS {
        full_call(&node, &ticket).await;
    }
    let (c1, s1) = (cpu_secs("self"), cpu_secs(&pid));
    drop(child.stdin.take());
    let _ = child.wait();
    ((c1 - c0) / CPU_CALLS as f64, (s1 - s0) / CPU_CALLS as f64)
}

async fn full_call(node: &Node, ticket: &Ticket) {
    let mut call = node.call(ticket).await.unwrap();
    loop {
        let ev = call.next_event().await;
        match ev {
            Some(CallEvent::Connected { .. }) => call.hangup(),
            Some(CallEvent::Ended(_)) | None => break,
            _ => {}
        }
    }
    while node.in_call() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    // Our slot frees as soon as our side ended; the callee's once our hang-up has reached it.
    // A call placed before that would find it busy, which a caller is not told (it would ring
    // until its timeout): give the hang-up time to arrive.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--callee") {
        return callee_process().await;
    }
    println!("EXTRA SAFE connection-setup benchmark ({RUNS} runs per figure, medians)\n");
    let a = Node::bind(&extrasafe_net::new_identity(), cfg(AcceptPolicy::Ask))
        .await
        .unwrap();
    let b = Node::bind(&extrasafe_net::new_identity(), cfg(AcceptPolicy::Ask))
        .await
        .unwrap();
    let direct = b.ticket_for(b.local_addr());
    for _ in 0..3 {
        one_call(&a, &b, &direct).await; // warm-up
    }
    let (mut rung, mut ringing, mut hs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (r, g, h) = one_call(&a, &b, &direct).await;
        rung.push(r);
        ringing.push(g);
        hs.push(h);
    }
    let base = bare_handshakes(RUNS + 3, None, false).await.split_off(3);
    let bare_pq = median(bare_handshakes(RUNS + 3, None, true).await.split_off(3));
    let base_med = median(base.clone());
    let rung_med = median(rung.clone());
    println!("Loopback");
    println!(
        "  call → callee rung (Incoming)     median {}  p90 {}",
        ms(rung_med),
        ms(pct(rung.clone(), 0.9))
    );
    println!(
        "  call → caller sees ringing        median {}",
        ms(median(ringing.clone()))
    );
    println!(
        "  QUIC+TLS handshake (caller)       median {}",
        ms(median(hs))
    );
    println!("  baseline: bare quinn, raw-key mutual auth, X25519 only, handshake → first byte");
    println!(
        "                                    median {}",
        ms(base_med)
    );
    println!(
        "  same bare quinn with X25519MLKEM768 median {}",
        ms(bare_pq)
    );
    println!(
        "  ratios vs baseline: bare PQ {:.2}×, full call → rung {:.2}×",
        bare_pq.as_secs_f64() / base_med.as_secs_f64(),
        rung_med.as_secs_f64() / base_med.as_secs_f64()
    );

    let relay = delay_relay(b.local_addr(), ONE_WAY).await;
    let delayed_ticket = b.ticket_for(relay);
    let (mut drung, mut dringing, mut dhs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..DELAY_RUNS {
        let (r, g, h) = one_call(&a, &b, &delayed_ticket).await;
        drung.push(r);
        dringing.push(g);
        dhs.push(h);
    }
    let dbase = bare_handshakes(DELAY_RUNS, Some(ONE_WAY), false).await;
    let rtt = ONE_WAY * 2;
    let rt =
        |d: Duration, base: Duration| (d.as_secs_f64() - base.as_secs_f64()) / rtt.as_secs_f64();
    let (drm, dgm) = (median(drung), median(dringing));
    println!(
        "\nThrough a relay adding {} each way (RTT {}), {DELAY_RUNS} runs",
        ms(ONE_WAY),
        ms(rtt)
    );
    let dhs = median(dhs);
    println!(
        "  QUIC+TLS handshake (caller)       median {}  = {:.2} RTT (design: 1.0)",
        ms(dhs),
        dhs.as_secs_f64() / rtt.as_secs_f64()
    );
    let db = median(dbase);
    println!(
        "  baseline to first byte            median {}  = {:.2} RTT beyond loopback (design: 1.5)",
        ms(db),
        rt(db, base_med)
    );
    println!(
        "  call → callee rung                median {}  = {:.2} RTT beyond loopback (design: 1.5)",
        ms(drm),
        rt(drm, rung_med)
    );
    println!(
        "  call → caller sees ringing        median {}  = {:.2} RTT beyond loopback (design: 2.0)",
        ms(dgm),
        rt(dgm, median(ringing))
    );
    println!(
        "  ratio call → rung / baseline first byte, same link: {:.2}×",
        drm.as_secs_f64() / db.as_secs_f64()
    );

    let (caller_cpu, callee_cpu) = cpu_per_call().await;
    println!("\nCPU per call (handshake + ring + answer + hang-up), callee in its own process, {CPU_CALLS} calls");
    println!(
        "  caller {:.2} ms   callee {:.2} ms",
        caller_cpu * 1e3,
        callee_cpu * 1e3
    );
}
