//! `extrasafe call`

use extrasafe_core::Ticket;
use extrasafe_net::{dht, lan, CallError, NodeConfig};

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, OTHER, UNREACHABLE, USAGE};
use crate::files::{self, Files, FilesPolicy};
use crate::ident;
use crate::output::Output;
use crate::reach;
use crate::videoplan::VideoPlan;

/// How long a caller browses the LAN for a contact before trying the DHT.
const LAN_LOOK: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(
    global: &Global,
    args: &CallArgs,
    out: Output,
    auto: callui::Autopilot,
) -> Result<i32, Failure> {
    let loaded = ident::load(global)?;
    let target = super::contact::resolve(&args.ticket, || match &loaded.store {
        Some(store) => Ok(store.load_contacts(&loaded.identity)?),
        None => Err(Failure::new(
            USAGE,
            "With --ephemeral there are no contacts: give a ticket (est1...).",
        )),
    })?;
    // A contact can be looked up on the DHT (if its ticket's addresses fail, or it has
    // none). The pair secret is computed now: the identity key is dropped once bound.
    let search = target.name.is_some() && !(global.no_dht && global.no_lan);
    // Pair secrets for the LAN and the DHT (looked at at once), and for a second DHT try.
    let secrets = || {
        dht::pair_secrets(&loaded.identity, &[target.peer])
            .map_err(|e| Failure::new(OTHER, format!("{e}.")))
    };
    let pairs = if search {
        Some((secrets()?, secrets()?, secrets()?))
    } else {
        None
    };
    if target.ticket.is_none() && pairs.is_none() {
        return Err(Failure::new(
            USAGE,
            format!(
                "No address is known for {} and --no-dht --no-lan leave no way to find them. \
                 Ask them for their ticket, then `extrasafe contact add TICKET --name {}` \
                 stores it.",
                target.name.as_deref().unwrap_or("them"),
                target.name.as_deref().unwrap_or("NAME"),
            ),
        ));
    }
    let plan = AudioPlan::from_args(&args.audio, out).await?;
    let vplan = VideoPlan::from_args(&args.video)?;
    let mut files = Files::new(
        out,
        FilesPolicy::parse(&args.files.accept_files)?,
        args.files
            .files_dir
            .clone()
            .unwrap_or_else(files::default_dir),
    );
    for p in &auto.send {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(Failure::new(
                USAGE,
                format!("Cannot send {}: it does not exist.", p.display()),
            ));
        }
    }
    // A caller does not listen: nobody can connect back to this socket to learn who we are.
    let config = NodeConfig {
        listen: false,
        congestion: global.congestion.parse().unwrap_or_default(),
        ..NodeConfig::default()
    };
    let node = super::bind_node(&loaded.identity, config, args.bind, 0).await?;
    drop(loaded.identity);
    // Asked for at once (while the ticket's addresses are tried): a contact found on the DHT
    // is given the forwarded port with our call intent.
    let mapper = if pairs.is_some() && !global.no_dht {
        reach::port_mapping(global, node.local_addr().port(), out)
    } else {
        None
    };
    let who = match &target.name {
        Some(name) => format!("{name} ({})", target.peer),
        None => target.peer.to_string(),
    };
    let addrs: Vec<String> = target
        .ticket
        .iter()
        .flat_map(|t| t.addrs.iter().map(|a| a.to_string()))
        .collect();
    out.emit(
        format!("Calling {who} …"),
        serde_json::json!({"event": "calling", "peer_id": target.peer.to_string(), "contact": target.name,
                           "addrs": addrs}),
    );
    let mut intr = Interrupts::new();
    let placing = async {
        if let Some(ticket) = &target.ticket {
            match node.call(ticket).await {
                Err(CallError::Unreachable { .. }) if pairs.is_some() => out.hint(
                    "Their last known addresses did not answer; looking for them elsewhere …",
                ),
                other => return other.map_err(Failure::from),
            }
        }
        let (lan_pairs, dht_pairs, dht_pairs_again) =
            pairs.expect("checked above: a contact we may look for");
        let dht_config = reach::dht_config(global, out).await;
        let via_dht = |pairs| async {
            let rendezvous = dht::Rendezvous::start(pairs, &dht_config)
                .map_err(|e| CallError::Rendezvous(e.to_string()))?;
            if let Some(m) = &mapper {
                rendezvous.use_port_mapping(m.watch());
            }
            node.call_contact(&rendezvous, target.peer).await
        };
        // The LAN and the DHT at once: a contact on this network answers within a second or
        // two, one elsewhere takes a few seconds of DHT; whichever connects first wins.
        let on_lan = async {
            if global.no_lan {
                return None;
            }
            out.emit(
                "Looking for them on this network …",
                serde_json::json!({"event": "lan_lookup", "peer_id": target.peer.to_string()}),
            );
            let lan = match lan::Lan::start(&lan_pairs) {
                Ok(lan) => lan,
                Err(e) => {
                    out.warn(&format!("{e}."));
                    return None;
                }
            };
            let addrs = lan.find(&target.peer, LAN_LOOK).await?;
            Some(
                node.call(&Ticket {
                    peer: target.peer,
                    addrs,
                })
                .await,
            )
        };
        let on_dht = async {
            if global.no_dht {
                return None;
            }
            out.emit(
                "Looking them up on the DHT …",
                serde_json::json!({"event": "dht_lookup", "peer_id": target.peer.to_string()}),
            );
            Some(via_dht(dht_pairs).await)
        };
        tokio::pin!(on_lan, on_dht);
        let (mut lan_done, mut dht_done) = (false, false);
        let mut failure: Option<CallError> = None;
        // The DHT path found a path while the LAN path held the call slot (dialling an
        // address that may not answer): it gets another go once the LAN path is done.
        let mut dht_again = false;
        while !(lan_done && dht_done) {
            let (r, from_dht) = tokio::select! {
                r = &mut on_lan, if !lan_done => { lan_done = true; (r, false) }
                r = &mut on_dht, if !dht_done => { dht_done = true; (r, true) }
            };
            match r {
                Some(Ok(call)) => return Ok(call),
                Some(Err(CallError::AlreadyInCall)) if from_dht => dht_again = true,
                Some(Err(CallError::AlreadyInCall)) | None => {}
                Some(Err(e)) => failure = Some(e),
            }
        }
        if dht_again {
            match via_dht(dht_pairs_again).await {
                Ok(call) => return Ok(call),
                Err(e) => failure = Some(e),
            }
        }
        Err(match failure {
            Some(e) => Failure::from(e),
            None => Failure::new(
                UNREACHABLE,
                "They are not on this network, and --no-dht keeps us off the DHT. Try again \
                 without --no-dht, or ask for a fresh ticket.",
            ),
        })
    };
    let placed = tokio::select! {
        c = placing => c.map(Some),
        _ = intr.next() => {
            out.hint("Cancelled.");
            Ok(None)
        }
    };
    let call = match placed {
        Ok(Some(call)) => call,
        other => {
            // The router forgets a mapping we do not renew, but sooner is better.
            if let Some(m) = mapper {
                m.stop().await;
            }
            return other.map(|_| crate::exit::INTERRUPTED);
        }
    };
    out.secured(call.info());
    let mut input = Input::spawn();
    let (_, code) = callui::run(
        call,
        out,
        &mut input,
        &mut intr,
        callui::Media {
            audio: &plan,
            video: &vplan,
        },
        &mut files,
        &auto,
    )
    .await;
    if let Some(m) = mapper {
        m.stop().await;
    }
    node.shutdown().await;
    if auto.send.is_empty() {
        return Ok(code);
    }
    // `send`: the transfer's outcome is what counts.
    use extrasafe_net::transfer::TransferOutcome as O;
    Ok(match files.outcomes.as_slice() {
        [] => code.max(crate::exit::BROKEN),
        all if all.iter().all(|o| matches!(o, O::Done { .. })) => 0,
        all if all.iter().any(|o| matches!(o, O::Failed(_))) => crate::exit::BROKEN,
        _ => crate::exit::NOT_ANSWERED,
    })
}
