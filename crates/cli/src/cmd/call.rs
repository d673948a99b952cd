//! `extrasafe call`

use extrasafe_net::{dht, CallError, NodeConfig};

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, OTHER, UNREACHABLE, USAGE};
use crate::files::{self, Files, FilesPolicy};
use crate::ident;
use crate::output::Output;
use crate::reach;

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
    let pairs = match (&target.name, global.no_dht) {
        (Some(_), false) => Some(
            dht::pair_secrets(&loaded.identity, &[target.peer])
                .map_err(|e| Failure::new(OTHER, format!("{e}.")))?,
        ),
        _ => None,
    };
    if target.ticket.is_none() && pairs.is_none() {
        return Err(Failure::new(
            USAGE,
            format!(
                "No address is known for {} and --no-dht keeps us off the DHT. Ask them for \
                 their ticket, then `extrasafe contact add TICKET --name {}` stores it.",
                target.name.as_deref().unwrap_or("them"),
                target.name.as_deref().unwrap_or("NAME"),
            ),
        ));
    }
    let plan = AudioPlan::from_args(&args.audio, out).await?;
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
                Err(CallError::Unreachable { .. }) if pairs.is_some() => out.emit(
                    "Their last known addresses did not answer; looking them up on the DHT …",
                    serde_json::json!({"event": "dht_lookup", "peer_id": target.peer.to_string()}),
                ),
                other => return other.map_err(Failure::from),
            }
        } else {
            out.emit(
                "No address known; looking them up on the DHT …",
                serde_json::json!({"event": "dht_lookup", "peer_id": target.peer.to_string()}),
            );
        }
        let pairs = pairs.expect("checked above: a contact with the DHT allowed");
        let rendezvous = dht::Rendezvous::start(pairs, &reach::dht_config(global))
            .map_err(|e| Failure::new(UNREACHABLE, format!("{e}.")))?;
        node.call_contact(&rendezvous, target.peer)
            .await
            .map_err(Failure::from)
    };
    let call = tokio::select! {
        c = placing => c?,
        _ = intr.next() => {
            out.hint("Cancelled.");
            return Ok(crate::exit::INTERRUPTED);
        }
    };
    out.secured(call.info());
    let mut input = Input::spawn();
    let (_, code) = callui::run(call, out, &mut input, &mut intr, &plan, &mut files, &auto).await;
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
