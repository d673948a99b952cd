//! `extrasafe-desktop`: EXTRA SAFE in a window, on the same library as the `extrasafe`
//! command.
#![forbid(unsafe_code)]

mod app;
mod args;
mod automation;
mod backend;
mod model;
mod pictures;
mod preview;
mod ring;
mod saved;
#[cfg(target_os = "linux")]
mod system;
mod view;
mod words;

use clap::Parser;
use eframe::egui;

use crate::args::Args;
use crate::model::{Model, Settings, VideoChoice};

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
        (None, None) => match extrasafe_net::video_media::camera::list()
            .into_iter()
            .next()
        {
            Some(cam) => VideoChoice::Camera(cam.path),
            None => VideoChoice::TestPicture,
        },
    };
    let settings = Settings {
        echo_cancel: !args.no_echo_cancel && saved.echo_cancel.unwrap_or(true),
        stay_reachable: saved.stay_reachable.unwrap_or(false),
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
            .with_min_inner_size([480.0, 360.0]),
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
            let mut app = app::App::new(Model::new(settings), handle, automation);
            #[cfg(target_os = "linux")]
            {
                app.scheme = Some(system::follow_scheme(cc.egui_ctx.clone()));
                app.notifier = Some(system::Notifier::start());
            }
            Ok(Box::new(app))
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
