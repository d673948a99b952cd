//! Lab tool: a small Mainline DHT (BEP 44 storing nodes) on one IPv4 address, for tests that
//! must never touch the public DHT. Prints its bootstrap list (comma-separated) on stdout,
//! then serves until killed.
//!
//! Usage: dhtnet BIND_IPV4 [NODES]

use std::io::Write;
use std::net::Ipv4Addr;

fn main() {
    let mut args = std::env::args().skip(1);
    let bind: Ipv4Addr = match args.next().and_then(|a| a.parse().ok()) {
        Some(ip) => ip,
        None => {
            eprintln!("usage: dhtnet BIND_IPV4 [NODES]");
            std::process::exit(2);
        }
    };
    let nodes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(8);
    let testnet = mainline::Testnet::builder(nodes)
        .bind_address(bind)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("dhtnet: cannot start {nodes} nodes on {bind}: {e}");
            std::process::exit(1);
        });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", testnet.bootstrap.join(","));
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
