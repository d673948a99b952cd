//! Reaching contacts without a known address: the DHT settings and the router's port mapping,
//! from the command line.

use extrasafe_net::dht::DhtConfig;
use extrasafe_net::portmap::{MapState, PortMapConfig, PortMapper};

use crate::args::Global;
use crate::output::Output;

pub async fn dht_config(global: &Global, out: Output) -> DhtConfig {
    let mut stun = Vec::new();
    for server in &global.stun {
        match tokio::net::lookup_host(server.as_str()).await {
            // IPv4 only: the addresses we learn this way are published for IPv4 peers.
            Ok(addrs) => stun.extend(addrs.filter(|a| a.is_ipv4()).take(2)),
            Err(e) => out.warn(&format!(
                "STUN server {server}: {e}. Give it as HOST:PORT (3478 is the usual port)."
            )),
        }
    }
    DhtConfig {
        bootstrap: global.dht_bootstrap.clone(),
        stun,
        ..DhtConfig::default()
    }
}

/// Asks the router to forward a port to the call socket (unless `--no-port-mapping`), and
/// tells the person when it does.
pub fn port_mapping(global: &Global, port: u16, out: Output) -> Option<PortMapper> {
    if global.no_port_mapping {
        return None;
    }
    let mapper = PortMapper::start(port, PortMapConfig::default());
    let mut state = mapper.watch();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = *state.borrow_and_update();
            if let MapState::Mapped(m) = now {
                out.emit(
                    format!(
                        "Your router forwards a port to you ({}): contacts behind any NAT can \
                         reach you directly.",
                        m.protocol.name()
                    ),
                    serde_json::json!({"event": "port_mapped",
                                       "protocol": m.protocol.name(),
                                       "external": m.external.to_string()}),
                );
            }
        }
    });
    Some(mapper)
}
