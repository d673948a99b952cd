//! `extrasafe call`

use extrasafe_net::{dial, NodeConfig};

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, OTHER, UNREACHABLE, USAGE};
use crate::files::{self, Files};
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
    // none). The pair secrets are made now: the identity key is dropped once bound.
    let reach_config = reach::config(global);
    let search = target.name.is_some() && (reach_config.lan || reach_config.dht);
    let secrets = if search {
        Some(
            extrasafe_app::dial::search_secrets(&loaded.identity, target.peer)
                .map_err(|e| Failure::new(OTHER, format!("{e}.")))?,
        )
    } else {
        None
    };
    if target.ticket.is_none() && secrets.is_none() {
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
        files::parse_policy(&args.files.accept_files)?,
        args.files.files_dir.clone(),
    );
    files.allow_hidden = args.files.allow_hidden_files;
    files.peer_name = target.name.clone();
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
    // Port mappings and STUN trouble are shown as they come.
    let (events, showing) = reach::show(out, Default::default());
    let placing = async {
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
        extrasafe_app::dial::place(
            &node,
            target.peer,
            target.ticket.as_ref(),
            secrets,
            &reach_config,
            &events,
            None,
            step,
        )
        .await
        .map_err(|e| match e {
            dial::DialError::Call(e) => Failure::from(e),
            dial::DialError::NowhereToLook => Failure::from(extrasafe_net::CallError::NoAddress),
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
    let (call, outgoing) = match placed {
        Ok(Some(placed)) => placed,
        // A failed dial has deleted its port mapping; a cancelled one is dropped here (the
        // router forgets a mapping that is not renewed).
        other => {
            showing.abort();
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
    outgoing.stop().await;
    showing.abort();
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
