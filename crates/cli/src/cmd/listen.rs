//! `extrasafe listen`

use extrasafe_core::PeerId;
use extrasafe_net::{AcceptPolicy, NodeConfig};

use crate::args::{Global, ListenArgs};
use crate::audioplan::AudioPlan;
use crate::callui::{self, Input, Interrupts};
use crate::exit::{Failure, USAGE};
use crate::files::{self, Files, FilesPolicy};
use crate::ident;
use crate::output::Output;

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
    let policy_files = FilesPolicy::parse(&args.files.accept_files)?;
    let dir = args
        .files
        .files_dir
        .clone()
        .unwrap_or_else(files::default_dir);
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
    let config = NodeConfig {
        policy: policy.clone(),
        congestion: global.congestion.parse().unwrap_or_default(),
        ..NodeConfig::default()
    };
    let node = super::bind_node(&loaded.identity, config, args.bind, args.port).await?;
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
            "Listening. Calls from the {} listed peer(s) are answered; everyone else is declined. Ctrl-C stops.",
            ids.len()
        ),
    });
    let mut input = Input::spawn();
    let mut intr = Interrupts::new();
    // A listener stopped with Ctrl-C did its job; with --once the call's outcome counts.
    let mut code = 0;
    loop {
        tokio::select! {
            call = node.incoming() => {
                let Some(call) = call else { break };
                input.discard_typed_ahead();
                let mut files = Files::new(out, policy_files.clone(), dir.clone());
                let (_, c) = callui::run(
                    call,
                    out,
                    &mut input,
                    &mut intr,
                    &plan,
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
            _ = intr.next() => break,
        }
    }
    node.shutdown().await;
    Ok(code)
}
