//! `extrasafe call`

use extrasafe_net::{dht, dial, NodeConfig};

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, OTHER, UNREACHABLE, USAGE};
use crate::files::{Files, FilesPolicy};
use crate::ident;
use crate::output::Output;
use crate::reach;
use crate::videoplan::VideoPlan;

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
        args.files.files_dir.clone(),
    );
    files.allow_hidden = args.files.allow_hidden_files;
    for p in &auto.send {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(Failure::new(
                USAGE,
                format!("Cannot send {}: it does not exist.", p.display()),
            ));
        }
    }
    // A caller does not listen: nobody can connect back to this socket to learn who we are.
    // Our first flight carries the ticket's secret and the key we share with them: a
    // listener that has us as a contact lets us in even with an old ticket.
    let config = NodeConfig {
        listen: false,
        congestion: global.congestion.parse().unwrap_or_default(),
        ticket_secret: None,
        contacts: loaded.contact_keys(&[target.peer]),
        roots: loaded.roots()?,
        inbox: loaded.inbox(out),
        session: extrasafe_core::SessionConfig {
            ring_timeout: std::time::Duration::from_secs(args.ring_timeout),
            ..Default::default()
        },
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
        let search = pairs.map(|(lan_pairs, dht_pairs, again)| dial::Search {
            secrets: [lan_pairs, dht_pairs, again],
            lan: !global.no_lan,
            dht: (!global.no_dht).then(|| reach::dht_config(global, out)),
            port_map: mapper.as_ref().map(|m| m.watch()),
        });
        let peer = target.peer.to_string();
        let step = |s: dial::DialStep| match s {
            dial::DialStep::TicketSilent => {
                out.hint("Their last known addresses did not answer; looking for them elsewhere …")
            }
            dial::DialStep::Lan => out.emit(
                "Looking for them on this network …",
                serde_json::json!({"event": "lan_lookup", "peer_id": peer}),
            ),
            dial::DialStep::LanUnavailable(e) => out.warn(&format!("{e}.")),
            dial::DialStep::Dht => out.emit(
                "Looking them up on the DHT …",
                serde_json::json!({"event": "dht_lookup", "peer_id": peer}),
            ),
            _ => {}
        };
        dial::dial(&node, target.peer, target.ticket.as_ref(), search, step)
            .await
            .map_err(|e| match e {
                dial::DialError::Call(e) => Failure::from(e),
                dial::DialError::NowhereToLook => {
                    Failure::from(extrasafe_net::CallError::NoAddress)
                }
                dial::DialError::NotFound => Failure::new(
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
