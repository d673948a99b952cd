//! Reaching contacts without a known address: the reachability settings from the command
//! line, and the terminal's words for what the services report.

use std::collections::HashMap;

use extrasafe_app::{ReachConfig, ReachEvent};
use extrasafe_core::punch::NatMapping;
use extrasafe_core::PeerId;
use tokio::sync::mpsc;

use crate::args::Global;
use crate::exit::Failure;
use crate::output::Output;

pub fn config(global: &Global) -> ReachConfig {
    ReachConfig {
        lan: !global.no_lan,
        dht: !global.no_dht,
        dht_bootstrap: global.dht_bootstrap.clone(),
        stun: global.stun.clone(),
        port_mapping: !global.no_port_mapping,
        ..extrasafe_app::ReachConfig::default()
    }
}

/// Shows reachability events as they come, until the sender is gone; `names` words a
/// contact's failed call.
pub fn show(
    out: Output,
    names: HashMap<PeerId, String>,
) -> (
    mpsc::UnboundedSender<ReachEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            say(out, &names, e);
        }
    });
    (tx, task)
}

fn say(out: Output, names: &HashMap<PeerId, String>, e: ReachEvent) {
    match e {
        ReachEvent::StunUnresolved { server, error } => out.warn(&format!(
            "STUN server {server}: {error}. Give it as HOST:PORT (3478 is the usual port)."
        )),
        ReachEvent::LanAnnounced { contacts } => out.emit(
            "Announced on this network; only your contacts can tell it is you.",
            serde_json::json!({"event": "lan_announced", "contacts": contacts}),
        ),
        ReachEvent::LanUnavailable(e) => {
            out.warn(&format!("{e}. Contacts on this network need your ticket."))
        }
        ReachEvent::ContactsUnusable(e) => out.warn(&format!(
            "{e}. Contacts need your ticket to reach you until your contact list is repaired."
        )),
        ReachEvent::DhtJoining { contacts } => out.hint(format!(
            "Joining the DHT so your {contacts} contact(s) can reach you without an address \
             (its nodes see your IP address, not who you are)."
        )),
        ReachEvent::DhtUnavailable(e) => out.warn(&format!(
            "{e}. Contacts off this network need your ticket until it works."
        )),
        ReachEvent::Reachable { us, contacts } => out.emit(
            format!(
                "Reachable: sealed records for {contacts} contact(s) are on the DHT{}.",
                match us.nat {
                    NatMapping::Varies =>
                        " (your NAT changes ports per destination: \
                                           contacts behind strict NATs may not get through)",
                    _ => "",
                }
            ),
            serde_json::json!({"event": "reachable", "contacts": contacts,
                               "nat": format!("{:?}", us.nat).to_lowercase(),
                               "candidates": us.candidates.len()}),
        ),
        ReachEvent::PortMapped(m) => out.emit(
            format!(
                "Your router forwards a port to you ({}): contacts behind any NAT can reach \
                 you directly.",
                m.protocol.name()
            ),
            serde_json::json!({"event": "port_mapped",
                               "protocol": m.protocol.name(),
                               "external": m.external.to_string()}),
        ),
        ReachEvent::NoPath { peer, error } => {
            let name = names.get(&peer).cloned().unwrap_or_default();
            out.emit(
                format!(
                    "{name} tried to call, but no direct path could be made. {}",
                    Failure::from(error).message
                ),
                serde_json::json!({"event": "no_path", "contact": name}),
            )
        }
    }
}
