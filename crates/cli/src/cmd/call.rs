//! `extrasafe call`

use extrasafe_net::NodeConfig;

use crate::args::{CallArgs, Global};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, USAGE};
use crate::files::{self, Files, FilesPolicy};
use crate::ident;
use crate::output::Output;

pub async fn run(
    global: &Global,
    args: &CallArgs,
    out: Output,
    auto: callui::Autopilot,
) -> Result<i32, Failure> {
    let loaded = ident::load(global)?;
    let (ticket, contact) = super::contact::resolve(&args.ticket, || match &loaded.store {
        Some(store) => Ok(store.load_contacts(&loaded.identity)?),
        None => Err(Failure::new(
            USAGE,
            "With --ephemeral there are no contacts: give a ticket (est1...).",
        )),
    })?;
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
    out.emit(
        match &contact {
            Some(name) => format!("Calling {name} ({}) …", ticket.peer),
            None => format!("Calling {} …", ticket.peer),
        },
        serde_json::json!({"event": "calling", "peer_id": ticket.peer.to_string(), "contact": contact,
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
