//! `extrasafe call`

use extrasafe_core::Ticket;
use extrasafe_net::NodeConfig;

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, USAGE};
use crate::ident;
use crate::output::Output;

pub async fn run(global: &Global, args: &CallArgs, out: Output) -> Result<i32, Failure> {
    let ticket: Ticket = args
        .ticket
        .parse()
        .map_err(|e| Failure::new(USAGE, format!("That ticket cannot be used: {e}.")))?;
    let plan = AudioPlan::from_args(&args.audio, out).await?;
    let loaded = ident::load(global)?;
    // A caller does not listen: nobody can connect back to this socket to learn who we are.
    let config = NodeConfig {
        listen: false,
        ..NodeConfig::default()
    };
    let node = super::bind_node(&loaded.identity, config, args.bind, 0).await?;
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
            return Ok(crate::exit::INTERRUPTED);
        }
    };
    out.secured(call.info());
    let mut input = Input::spawn();
    let (_, code) = callui::run(call, out, &mut input, &mut intr, &plan).await;
    node.shutdown().await;
    Ok(code)
}
