//! The `extrasafe` command.
#![forbid(unsafe_code)]

mod args;
mod audioplan;
mod callui;
mod cmd;
mod exit;
mod files;
mod ident;
mod output;
mod reach;
mod videoplan;

use clap::Parser;

use args::{Cli, Command};
use exit::Failure;
use output::Output;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let out = Output {
        json: cli.global.json,
    };
    // A call is light work at a steady pace: one thread keeps its wake-ups cheap (0.75 % of
    // a core less per side than two workers). Bulk transfers want both cores: QUIC's
    // crypto on one, disk and hashing on the other.
    // A call's audio, its network and the sound client run on this thread and on threads it
    // starts: raise its priority now, where the system allows it, so that a busy machine does
    // not cut holes in the sound. Bulk transfers and the rest keep the default.
    if matches!(
        cli.command,
        Command::Listen(_) | Command::Call(_) | Command::Demo(_)
    ) {
        let boost = extrasafe_devices::priority::raise_for_audio();
        tracing::debug!(?boost, "call priority");
    }
    let runtime = match &cli.command {
        Command::Send(_) | Command::Receive(_) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("starting the async runtime");
    let result: Result<i32, Failure> = runtime.block_on(async {
        match &cli.command {
            Command::Id(a) => cmd::id::run(&cli.global, a, out),
            Command::Listen(a) => cmd::listen::run(&cli.global, a, out).await,
            Command::Call(a) => {
                cmd::call::run(&cli.global, a, out, callui::Autopilot::default()).await
            }
            Command::Send(a) => cmd::send::run(&cli.global, a, out).await,
            Command::Receive(a) => cmd::send::receive(&cli.global, a, out).await,
            Command::Contact(a) => cmd::contact::run(&cli.global, a, out),
            Command::Devices => cmd::devices::run(out).await,
            Command::Demo(a) => cmd::demo::run(a, out).await,
        }
    });
    let code = match result {
        Ok(c) => c,
        Err(f) => {
            out.error(&f.message);
            f.code
        }
    };
    // The stdin reader may be parked in a blocking read; don't wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
