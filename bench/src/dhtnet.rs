//! Lab tool: a small Mainline DHT (BEP 44 storing nodes), for tests that must never touch the
//! public DHT. Node i binds FIRST_IP + i × STEP (STEP 1 by default), port 6881 (Mainline keeps
//! one node per IP address in a routing table, so nodes sharing an address would look like
//! one node to a client; and a client counts the addresses nodes report for it once per /16,
//! so the lab spreads them with STEP 65536); the addresses must exist on an interface. Prints
//! the bootstrap list (comma-separated) on stdout once every node has joined, then serves
//! until killed.
//!
//! Usage: dhtnet FIRST_IPV4 [NODES [STEP]]

use std::io::Write;
use std::net::Ipv4Addr;

fn main() {
    let mut args = std::env::args().skip(1);
    let first: Ipv4Addr = match args.next().and_then(|a| a.parse().ok()) {
        Some(ip) => ip,
        None => {
            eprintln!("usage: dhtnet FIRST_IPV4 [NODES [STEP]]");
            std::process::exit(2);
        }
    };
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(8);
    let step: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let fail = |e: std::io::Error| -> ! {
        eprintln!("dhtnet: {e}");
        std::process::exit(1);
    };
    let addr = |i: u32| Ipv4Addr::from(u32::from(first) + i * step);
    let seed = format!("{}:6881", addr(0));
    let mut nodes = vec![mainline::Dht::builder()
        .server_mode()
        .no_bootstrap()
        .bind_address(addr(0))
        .port(6881)
        .build()
        .unwrap_or_else(|e| fail(e))];
    for i in 1..count {
        nodes.push(
            mainline::Dht::builder()
                .server_mode()
                .bootstrap(std::slice::from_ref(&seed))
                .bind_address(addr(i))
                .port(6881)
                .build()
                .unwrap_or_else(|e| fail(e)),
        );
    }
    for n in &nodes[1..] {
        // The blocking call is what a tool without an async runtime needs.
        #[allow(deprecated)]
        n.bootstrapped();
    }
    let list: Vec<String> = (0..count).map(|i| format!("{}:6881", addr(i))).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", list.join(","));
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
