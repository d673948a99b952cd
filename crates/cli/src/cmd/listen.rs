//! `extrasafe listen`

use std::collections::HashMap;
use std::sync::Arc;

use extrasafe_core::punch::NatMapping;
use extrasafe_core::PeerId;
use extrasafe_net::dht::{self, Reachability};
use extrasafe_net::lan;
use extrasafe_net::punch::PunchPlan;
use extrasafe_net::{AcceptPolicy, NodeConfig};
use tokio::sync::{mpsc, watch};

use crate::args::{Global, ListenArgs};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, OTHER, USAGE};
use crate::files::{self, Files, FilesPolicy};
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
    let policy_files = FilesPolicy::parse(&args.files.accept_files)?;
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
    let pairs = if peers.is_empty() || (global.no_dht && global.no_lan) {
        None
    } else {
        Some(
            dht::pair_secrets(&loaded.identity, &peers)
                .map_err(|e| Failure::new(OTHER, format!("{e}.")))?,
        )
    };
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
    drop(loaded.identity);
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
    // Contacts on this network find us by a blinded mDNS announcement (kept running while
    // listening; dropped at the end).
    let announcing = match &pairs {
        Some(pairs) if !global.no_lan => match lan::Lan::start(pairs) {
            Ok(lan) => {
                let announcement = Arc::new(lan)
                    .announce(node.local_addr().port(), node.roots())
                    .await;
                out.emit(
                    "Announced on this network; only your contacts can tell it is you.",
                    serde_json::json!({"event": "lan_announced", "contacts": names.len()}),
                );
                Some(announcement)
            }
            Err(e) => {
                out.warn(&format!("{e}. Contacts on this network need your ticket."));
                None
            }
        },
        _ => None,
    };
    let mut mapper = None;
    let served = match pairs {
        Some(pairs) if !global.no_dht => {
            let dht_config = reach::dht_config(global, out).await;
            match dht::Rendezvous::start(pairs, &dht_config) {
                Ok(rendezvous) => {
                    mapper = reach::port_mapping(global, node.local_addr().port(), out);
                    if let Some(m) = &mapper {
                        rendezvous.use_port_mapping(m.watch());
                    }
                    out.hint(format!(
                        "Joining the DHT so your {} contact(s) can reach you without an \
                         address (its nodes see your IP address, not who you are).",
                        names.len()
                    ));
                    Some(dht::serve(node.clone(), Arc::new(rendezvous), dht_config))
                }
                // No internet is no reason to stop listening: the LAN and tickets still work.
                Err(e) => {
                    out.warn(&format!(
                        "{e}. Contacts off this network need your ticket until it works."
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let (mut intents, mut stored) = match served {
        Some(s) => (Some(s.intents), Some(s.published)),
        None => (None, None),
    };
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
            stored = published(&mut stored) => {
                let (us, contacts) = stored;
                out.emit(
                    format!(
                        "Reachable: sealed records for {contacts} contact(s) are on the DHT{}.",
                        match us.nat {
                            NatMapping::Varies => " (your NAT changes ports per destination: \
                                                   contacts behind strict NATs may not get through)",
                            _ => "",
                        }
                    ),
                    serde_json::json!({"event": "reachable", "contacts": contacts,
                                       "nat": format!("{:?}", us.nat).to_lowercase(),
                                       "candidates": us.candidates.len()}),
                );
            }
            intent = next_intent(&mut intents) => {
                // A contact is calling without our address: punch back, so its connection
                // can come in; the call itself then arrives above.
                let node = node.clone();
                let name = names.get(&intent.peer).cloned().unwrap_or_default();
                tokio::spawn(async move {
                    if let Err(e) = node.answer_punch(intent).await {
                        out.emit(
                            format!("{name} tried to call, but no direct path could be made. {}", Failure::from(e).message),
                            serde_json::json!({"event": "no_path", "contact": name}),
                        );
                    }
                });
            }
            _ = intr.next() => break,
        }
    }
    if let Some(m) = mapper {
        m.stop().await;
    }
    // Withdrawn from the LAN with goodbye records, before the process ends.
    if let Some(a) = announcing {
        a.stop().await;
    }
    node.shutdown().await;
    Ok(code)
}

/// The next call intent from a contact; never, with the DHT off.
async fn next_intent(intents: &mut Option<mpsc::Receiver<PunchPlan>>) -> PunchPlan {
    match intents {
        Some(rx) => match rx.recv().await {
            Some(i) => i,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Our records as stored anew on the DHT, and for how many contacts.
async fn published(
    stored: &mut Option<watch::Receiver<Option<(Reachability, usize)>>>,
) -> (Reachability, usize) {
    if let Some(rx) = stored {
        if rx.changed().await.is_ok() {
            if let Some(p) = rx.borrow_and_update().clone() {
                return p;
            }
        }
    }
    std::future::pending().await
}
