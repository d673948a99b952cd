//! `extrasafe-desktop`: EXTRA SAFE in a window, on the same library as the `extrasafe`
//! command.
#![forbid(unsafe_code)]

mod app;
mod automation;
mod backend;
mod model;
mod pictures;
mod preview;
mod ring;
mod saved;
mod view;
mod words;

use std::path::PathBuf;

use clap::Parser;
use eframe::egui;

use crate::model::{Model, Settings, VideoChoice};

const AFTER_HELP: &str = "\
The window asks for everything else: on first run it makes your identity (a key kept only on
this device, optionally under a passphrase) and shows your ticket as text and as a QR code.
Give the ticket to the people who should be able to call you; paste theirs under Contacts.

Calls go straight from device to device. Contacts on the same network find each other by
themselves, and elsewhere through sealed records on the public DHT. If no direct path can be
made, the app says so; it never relays a call through anyone.

Nothing of a call (media, chat, figures) is written to disk; only your identity, your contacts
and the files you accept are kept. Closing the window ends a call cleanly.

Keyboard: Tab moves between controls, Space or Enter presses the one in focus; when a call
rings, Accept has the focus. Ctrl + and Ctrl - zoom (or start with --scale 2).

Examples:
  extrasafe-desktop
  extrasafe-desktop --scale 2                  # everything twice as large
  extrasafe-desktop --data-dir ~/.work-identity --port 47471
  extrasafe-desktop --no-dht                   # only this network and tickets
  extrasafe-desktop --accept-files anyone:100M # save files up to 100 MB without asking";

/// Private peer-to-peer calls, video, chat and files in a window.
#[derive(Parser, Debug)]
#[command(name = "extrasafe-desktop", version, after_help = AFTER_HELP)]
struct Args {
    /// Folder of your identity and contacts [default: the same as `extrasafe`'s,
    /// $XDG_DATA_HOME/extrasafe].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// UDP port to take calls on; tickets name it, so keep it stable (0 picks a free one)
    /// [default: a port of your own, derived from your key, the one
    /// `extrasafe listen` uses].
    #[arg(long)]
    port: Option<u16>,
    /// Local address to take calls on [default: every address of this device].
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Do not look for contacts on this network (mDNS) or announce yourself there.
    #[arg(long)]
    no_lan: bool,
    /// Send your audio without echo cancellation, for this run (Settings keeps the choice
    /// otherwise).
    #[arg(long)]
    no_echo_cancel: bool,
    /// Stay off the public DHT: contacts elsewhere then need your current ticket.
    #[arg(long)]
    no_dht: bool,
    /// DHT node to join through (host:port, repeatable or comma-separated) [default:
    /// Mainline's public bootstrap nodes].
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    dht_bootstrap: Vec<String>,
    /// Do not ask your home router to forward a port to you (UPnP IGD, NAT-PMP, PCP). With a
    /// forwarded port, contacts behind any router reach you directly; the router learns only
    /// that a UDP port is wanted, and the mapping lasts 10 minutes unless renewed.
    #[arg(long)]
    no_port_mapping: bool,
    /// Also ask this STUN server (HOST:PORT, repeatable) for your public address. None by
    /// default: DHT nodes already tell you. A STUN server learns your public address and when
    /// you are online, not whom you call.
    #[arg(long = "stun", value_name = "HOST:PORT")]
    stun: Vec<String>,
    /// Which file offers to save without asking: `ask` (default), `none`, or entries
    /// `anyone[:SIZE]` / `PEER-ID[:SIZE]` (e.g. `es1abc...:500M`); others are declined.
    #[arg(long, num_args = 1.., value_name = "POLICY", value_parser = files_entry)]
    accept_files: Vec<String>,
    /// How long a call you place may ring unanswered, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=600))]
    ring_timeout: u64,
    /// Do not use the sound server (calls send silence and play nothing).
    #[arg(long)]
    no_sound: bool,
    /// What video calls send: a camera device, `test` (a moving test picture) or `none`
    /// [default: the first camera, else the test picture].
    #[arg(long, value_name = "SOURCE")]
    video: Option<String>,
    /// Where accepted files are saved [default: ~/Downloads].
    #[arg(long, value_name = "DIR")]
    files_dir: Option<PathBuf>,
    /// Size of everything on screen (1 = normal, 2 = twice as large).
    #[arg(long, default_value_t = 1.0, value_parser = scale)]
    scale: f32,
    /// For tests: read actions as JSON lines on stdin, print the shown state as JSON lines.
    #[arg(long, hide = true)]
    automation: bool,
}

/// One `--accept-files` entry, checked on its own (the whole list is read in `main`).
fn files_entry(s: &str) -> Result<String, String> {
    match s {
        "ask" | "none" => Ok(s.into()),
        _ => extrasafe_app::FilesPolicy::parse(&[s.to_string()])
            .map(|_| s.to_string())
            .map_err(|e| format!("give `ask`, `none`, `anyone[:SIZE]` or `PEER-ID[:SIZE]`; {e}")),
    }
}

fn scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.5..=4.0).contains(&v) => Ok(v),
        _ => Err("give a number from 0.5 to 4 (2 is twice as large)".into()),
    }
}

/// Larger text and roomier controls than egui's defaults: the app is read by people in a
/// hurry, on laptops at arm's length.
fn style(ctx: &egui::Context) {
    use egui::{FontFamily, FontId, TextStyle};
    ctx.all_styles_mut(|s| {
        s.text_styles = [
            (
                TextStyle::Small,
                FontId::new(12.0, FontFamily::Proportional),
            ),
            (TextStyle::Body, FontId::new(15.0, FontFamily::Proportional)),
            (
                TextStyle::Button,
                FontId::new(15.0, FontFamily::Proportional),
            ),
            (
                TextStyle::Heading,
                FontId::new(22.0, FontFamily::Proportional),
            ),
            (
                TextStyle::Monospace,
                FontId::new(14.0, FontFamily::Monospace),
            ),
        ]
        .into();
        s.spacing.item_spacing = egui::vec2(10.0, 8.0);
        s.spacing.button_padding = egui::vec2(10.0, 5.0);
        s.spacing.interact_size.y = 26.0;
    });
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // What the person chose in an earlier run; a flag given now wins.
    let store = match &args.data_dir {
        Some(d) => Some(extrasafe_net::IdentityStore::at(d)),
        None => extrasafe_net::IdentityStore::default_location().ok(),
    };
    let saved = match store.as_ref().map(|s| s.load_settings()) {
        Some(Ok(Some(bytes))) => saved::decode(&bytes).unwrap_or_else(|| {
            eprintln!("Your saved settings are not readable; the defaults are used.");
            saved::Saved::default()
        }),
        Some(Err(e)) => {
            eprintln!("Your saved settings could not be read ({e}); the defaults are used.");
            saved::Saved::default()
        }
        _ => saved::Saved::default(),
    };
    let video = match (args.video.as_deref(), saved.video) {
        (Some("test"), _) => VideoChoice::TestPicture,
        (Some("none"), _) => VideoChoice::Nothing,
        (Some(dev), _) => VideoChoice::Camera(dev.to_string()),
        (None, Some(chosen)) => chosen,
        (None, None)
            if cfg!(feature = "camera") && std::path::Path::new("/dev/video0").exists() =>
        {
            VideoChoice::Camera("/dev/video0".into())
        }
        (None, None) => VideoChoice::TestPicture,
    };
    let settings = Settings {
        echo_cancel: !args.no_echo_cancel && saved.echo_cancel.unwrap_or(true),
        mic: saved.mic.flatten(),
        speaker: saved.speaker.flatten(),
        video,
        files_dir: match args.files_dir.clone().or(saved.files_dir) {
            Some(d) => d,
            None => match extrasafe_net::transfer::default_download_dir() {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("No folder for received files: {e}. Start with --files-dir FOLDER.");
                    std::process::exit(2)
                }
            },
        },
    };
    let opts = backend::Options {
        data_dir: args.data_dir.clone(),
        bind: args.bind,
        port: args.port,
        ring_timeout: std::time::Duration::from_secs(args.ring_timeout),
        reach: extrasafe_app::ReachConfig {
            lan: !args.no_lan,
            dht: !args.no_dht,
            dht_bootstrap: args.dht_bootstrap.clone(),
            stun: args.stun.clone(),
            port_mapping: !args.no_port_mapping,
            ..extrasafe_app::ReachConfig::default()
        },
        accept_files: match extrasafe_app::FilesPolicy::parse(&args.accept_files) {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "--accept-files takes `ask`, `none`, or entries `anyone[:SIZE]` / \
                     `PEER-ID[:SIZE]`; {e}."
                );
                std::process::exit(2)
            }
        },
        sound: !args.no_sound,
    };
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport: egui::ViewportBuilder::default()
            .with_title("EXTRA SAFE")
            .with_app_id("extrasafe")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 480.0]),
        ..Default::default()
    };
    let run = eframe::run_native(
        "EXTRA SAFE",
        options,
        Box::new(move |cc| {
            cc.egui_ctx.set_zoom_factor(args.scale);
            style(&cc.egui_ctx);
            let ctx = cc.egui_ctx.clone();
            let handle = backend::start(opts, settings.clone(), move |d| {
                ctx.request_repaint_after(d)
            });
            let automation = args
                .automation
                .then(|| automation::Automation::start(cc.egui_ctx.clone()));
            Ok(Box::new(app::App::new(
                Model::new(settings),
                handle,
                automation,
            )))
        }),
    );
    if let Err(e) = run {
        eprintln!(
            "The window could not open: {e}. The desktop app needs a graphical session (X11 or \
             Wayland) with OpenGL; from a terminal, `extrasafe` does everything too."
        );
        std::process::exit(1);
    }
}
