//! `extrasafe call`

use std::net::SocketAddr;

use extrasafe_core::Ticket;
use extrasafe_net::{AcceptPolicy, Node, NodeConfig};

use crate::args::{CallArgs, Global};
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, USAGE};
use crate::ident;
use crate::output::Output;

pub async fn run(global: &Global, args: &CallArgs, out: Output) -> Result<i32, Failure> {
    let ticket: Ticket = args
        .ticket
        .parse()
        .map_err(|e| Failure::new(USAGE, format!("That ticket cannot be used: {e}.")))?;
    let loaded = ident::load(global)?;
    let bind = args.bind.unwrap_or_else(|| match ticket.addrs.first() {
        Some(SocketAddr::V6(_)) => "[::]:0".parse().expect("valid literal"),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    });
    let node = Node::bind(
        &loaded.identity,
        NodeConfig {
            bind,
            policy: AcceptPolicy::Ask,
            ..NodeConfig::default()
        },
    )
    .await?;
    drop(loaded.identity);
    out.emit(
        format!("Calling {} …", ticket.peer),
        serde_json::json!({"event": "calling", "peer_id": ticket.peer.to_string(),
                           "addrs": ticket.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()}),
    );
    let mut intr = Interrupts::new();
    let call = tokio::select! {
        c = node.call(&ticket) => c?,
        _ = intr.next() => {
            out.hint("Cancelled.");
            return Ok(130);
        }
    };
    out.secured(call.info());
    let mut input = Input::spawn();
    let (_, code) = callui::run(call, out, &mut input, &mut intr).await;
    node.shutdown().await;
    Ok(code)
}
