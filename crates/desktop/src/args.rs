//! The command line of `extrasafe-desktop`. It uses only clap and the application library,
//! so the packaging tool (`packaging/`) can build the same grammar into man pages and shell
//! completions.

use std::path::PathBuf;

use clap::Parser;

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
pub struct Args {
    /// Folder of your identity and contacts [default: the same as `extrasafe`'s,
    /// $XDG_DATA_HOME/extrasafe].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// UDP port to take calls on; tickets name it, so keep it stable (0 picks a free one)
    /// [default: a port of your own, derived from your key, the one
    /// `extrasafe listen` uses].
    #[arg(long)]
    pub port: Option<u16>,
    /// Local address to take calls on [default: every address of this device].
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// Do not look for contacts on this network (mDNS) or announce yourself there.
    #[arg(long)]
    pub no_lan: bool,
    /// Send your audio without echo cancellation, for this run (Settings keeps the choice
    /// otherwise).
    #[arg(long)]
    pub no_echo_cancel: bool,
    /// Stay off the public DHT: contacts elsewhere then need your current ticket.
    #[arg(long)]
    pub no_dht: bool,
    /// DHT node to join through (host:port, repeatable or comma-separated) [default:
    /// Mainline's public bootstrap nodes].
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub dht_bootstrap: Vec<String>,
    /// Do not ask your home router to forward a port to you (UPnP IGD, NAT-PMP, PCP). With a
    /// forwarded port, contacts behind any router reach you directly; the router learns only
    /// that a UDP port is wanted, and the mapping lasts 10 minutes unless renewed.
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Also ask this STUN server (HOST:PORT, repeatable) for your public address. None by
    /// default: DHT nodes already tell you. A STUN server learns your public address and when
    /// you are online, not whom you call.
    #[arg(long = "stun", value_name = "HOST:PORT")]
    pub stun: Vec<String>,
    /// Which file offers to save without asking: `ask` (default), `none`, or entries
    /// `anyone[:SIZE]` / `PEER-ID[:SIZE]` (e.g. `es1abc...:500M`); others are declined.
    #[arg(long, num_args = 1.., value_name = "POLICY", value_parser = files_entry)]
    pub accept_files: Vec<String>,
    /// How long a call you place may ring unanswered, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ring_timeout: u64,
    /// Do not use the sound server (calls send silence and play nothing).
    #[arg(long)]
    pub no_sound: bool,
    /// What video calls send: a camera device, `test` (a moving test picture) or `none`
    /// [default: the first camera, else the test picture].
    #[arg(long, value_name = "SOURCE")]
    pub video: Option<String>,
    /// Where accepted files are saved [default: ~/Downloads].
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
    /// Size of everything on screen (1 = normal, 2 = twice as large).
    #[arg(long, default_value_t = 1.0, value_parser = scale)]
    pub scale: f32,
    /// For tests: read actions as JSON lines on stdin, print the shown state as JSON lines.
    #[arg(long, hide = true)]
    pub automation: bool,
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
