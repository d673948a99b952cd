//! `extrasafe listen`

use std::collections::HashMap;
use std::sync::Arc;

use extrasafe_app::Presence;
use extrasafe_core::PeerId;
use extrasafe_net::{AcceptPolicy, NodeConfig};

use crate::args::{Global, ListenArgs};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, USAGE};
use crate::files::{self, Files};
use crate::ident;
use crate::output::Output;
use crate::reach;
use crate::videoplan::VideoPlan;

fn policy(words: &[String]) -> Result<AcceptPolicy, Failure> {
    match words {
        [w] if w == "anyone" => Ok(AcceptPolicy::Anyone),
        [w] if w == "ask" => Ok(AcceptPolicy::Ask),
        ids => ids
            .iter()
            .map(|s| {
                s.parse::<PeerId>().map_err(|e| {
                    Failure::new(
                        USAGE,
                        format!("--accept takes `anyone`, `ask` or peer IDs; `{s}`: {e}."),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AcceptPolicy::Only),
    }
}

pub async fn run(global: &Global, args: &ListenArgs, out: Output) -> Result<i32, Failure> {
    let policy = policy(&args.accept)?;
    let plan = AudioPlan::from_args(&args.audio, out).await?;
    let vplan = VideoPlan::from_args(&args.video)?;
    let policy_files = files::parse_policy(&args.files.accept_files)?;
    // A receiver's folder is settled (and made, if it is the default) before anything else.
    let dir = match args.files.files_dir.clone() {
        Some(d) => d,
        None => files::try_default_dir()?,
    };
    if !dir.is_dir() {
        return Err(Failure::new(
            USAGE,
            format!(
                "Cannot save files in {}: it is not a folder.",
                dir.display()
            ),
        ));
    }
    let loaded = ident::load(global)?;
    // Contacts are let in by the key we share with each, and find us through the LAN and the
    // DHT: our sealed records for each, and their intents.
    let book = loaded.contacts()?;
    let names: HashMap<PeerId, String> = book
        .list()
        .iter()
        .map(|c| (c.peer, c.name.clone()))
        .collect();
    let peers: Vec<PeerId> = names.keys().copied().collect();
    // Offers name a contact by its name (kept up to date as the list changes).
    let mut contact_names = names.clone();
    let config = NodeConfig {
        policy: policy.clone(),
        congestion: global.congestion.parse().unwrap_or_default(),
        ticket_secret: Some(loaded.ticket_secret.clone()),
        contacts: loaded.contact_keys(&peers),
        roots: loaded.roots()?,
        inbox: loaded.inbox(out),
        ..NodeConfig::default()
    };
    let port = args
        .port
        .unwrap_or_else(|| extrasafe_core::access::listening_port(&loaded.identity));
    let node = Arc::new(super::bind_node(&loaded.identity, config, args.bind, port).await?);
    let ticket = node.ticket();
    out.identity(
        &ticket.peer,
        &ticket,
        loaded.created,
        loaded.sealed,
        "listening",
    );
    if args.qr {
        out.qr(&ticket);
    }
    out.hint(match &policy {
        AcceptPolicy::Anyone => "Listening. Calls from anyone are answered automatically. Ctrl-C stops.".to_string(),
        AcceptPolicy::Ask => "Listening. You will be asked before any call is answered. Ctrl-C stops.".to_string(),
        AcceptPolicy::Only(ids) => format!(
            "Listening. Calls from the {} listed peer(s) are answered; anyone else hears no answer. Ctrl-C stops.",
            ids.len()
        ),
    });
    // Contacts on this network find us by a blinded mDNS announcement, elsewhere by sealed
    // records on the DHT; their call intents are answered with a punch, and the call itself
    // then arrives below.
    let reach_config = reach::config(global);
    let (events, mut showing) = reach::show(out, names);
    let mut presence = Presence::start(
        node.clone(),
        &loaded.identity,
        &peers,
        &reach_config,
        events,
    )
    .await;
    // Contacts added beside us (`extrasafe contact add` in another terminal) can reach us at
    // once. (The identity key stays in memory for it; the node holds it anyway, for TLS.)
    let mut added = node
        .roots()
        .map(|r| extrasafe_app::contacts::additions(r, &peers));
    let mut input = Input::spawn();
    let mut intr = Interrupts::new();
    // A listener stopped with Ctrl-C did its job; with --once the call's outcome counts.
    let mut code = 0;
    loop {
        tokio::select! {
            call = node.incoming() => {
                let Some(call) = call else { break };
                input.discard_typed_ahead();
                let mut files = Files::new(out, policy_files.clone(), Some(dir.clone()));
                files.allow_hidden = args.files.allow_hidden_files;
                files.peer_name = contact_names.get(&call.info().peer).cloned();
                let (_, c) = callui::run(
                    call,
                    out,
                    &mut input,
                    &mut intr,
                    callui::Media {
                        audio: &plan,
                        video: &vplan,
                    },
                    &mut files,
                    &callui::Autopilot::default(),
                )
                .await;
                if args.once {
                    code = c;
                    break;
                }
                out.hint("Listening again.");
            }
            Some(now) = async {
                match added.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let book = match loaded.contacts() {
                    Ok(b) => b,
                    Err(f) => {
                        out.warn(&f.message);
                        continue;
                    }
                };
                let names: HashMap<PeerId, String> = book
                    .list()
                    .iter()
                    .filter(|c| now.contains(&c.peer))
                    .map(|c| (c.peer, c.name.clone()))
                    .collect();
                let peers: Vec<PeerId> = names.keys().copied().collect();
                contact_names = names.clone();
                node.set_contacts(loaded.contact_keys(&peers));
                if let Some(r) = node.roots() {
                    r.add_contacts(&loaded.identity, &peers);
                }
                // Withdrawn politely (mDNS goodbye) and started anew for everyone.
                presence.stop().await;
                showing.abort();
                out.emit(
                    format!(
                        "Your contact list changed: {} contact(s) can reach you now.",
                        peers.len()
                    ),
                    serde_json::json!({"event": "contacts_changed", "contacts": peers.len()}),
                );
                let (events, show) = reach::show(out, names);
                showing = show;
                presence =
                    Presence::start(node.clone(), &loaded.identity, &peers, &reach_config, events)
                        .await;
            }
            _ = intr.next() => break,
        }
    }
    // Withdrawn from the LAN with goodbye records and the router's mapping deleted, before
    // the process ends.
    presence.stop().await;
    showing.abort();
    node.shutdown().await;
    Ok(code)
}
