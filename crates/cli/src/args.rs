//! Command-line grammar. Every command's long help ends with worked examples.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const TOP_HELP: &str = "\
Examples:
  extrasafe demo                       # a real call between two local peers, no setup
  extrasafe id                         # make your identity, print your peer ID and ticket
  extrasafe listen                     # wait for calls (you are asked before answering)
  extrasafe call est1...               # call someone whose ticket you were given
  extrasafe devices                    # the microphones and speakers calls can use
  extrasafe send --to est1... FILE     # send a file or folder; `extrasafe receive` takes it

Exit codes:
  0  success (the call took place and was hung up)
  1  unexpected error
  2  wrong usage
  3  nobody answered at the ticket's addresses
  4  someone else answered with a different key: possible impostor
  5  nobody picked up (a declined or busy call looks the same to the caller)
  6  identity problem (missing, wrong passphrase, unsafe file permissions)
  7  the call broke off (peer vanished or broke the protocol)
  8  no direct path can be made between your network and theirs (their NAT and yours;
     the message says which side blocks it). EXTRA SAFE never relays a call
  130 interrupted (Ctrl-C) before the call was connected

`listen` exits 0 when stopped with Ctrl-C; with --once it exits with its call's code.

Logs go to stderr; set RUST_LOG=debug for detail (debug level may name peers and addresses).";

/// EXTRA SAFE: private calls straight from your device to theirs.
///
/// Your identity is a key made on this device. Calls go directly to the other person's
/// device over QUIC with TLS 1.3; nothing is relayed and nothing of a call is stored.
#[derive(Parser, Debug)]
#[command(name = "extrasafe", version, after_long_help = TOP_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Print one JSON object per line on stdout instead of text for people.
    #[arg(
        long,
        global = true,
        help_heading = "Identity and output (any command)"
    )]
    pub json: bool,
    /// Folder holding your identity [default: $XDG_DATA_HOME/extrasafe or ~/.local/share/extrasafe].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Identity and output (any command)"
    )]
    pub data_dir: Option<PathBuf>,
    /// Use a fresh identity that lives only in memory; nothing is written anywhere.
    #[arg(
        long,
        global = true,
        help_heading = "Identity and output (any command)"
    )]
    pub ephemeral: bool,
    /// Read the identity's passphrase from this open file descriptor (for scripts). Otherwise
    /// EXTRASAFE_PASSPHRASE is used if set, else you are asked on the terminal.
    #[arg(
        long,
        global = true,
        value_name = "FD",
        help_heading = "Identity and output (any command)"
    )]
    pub passphrase_fd: Option<u32>,
    /// QUIC congestion controller: bbr (default; keeps its rate on links that lose packets at
    /// random), cubic or newreno (loss-based; a little faster on loopback). See
    /// bench/RESULTS.md.
    #[arg(long, global = true, value_name = "NAME", default_value = "bbr", value_parser = ["cubic", "newreno", "bbr"], help_heading = "Network (any command)")]
    pub congestion: String,
    /// DHT node to join through (`host:port`; repeat or separate with commas) [default:
    /// Mainline's public bootstrap nodes]. The DHT is how contacts find each other without
    /// a known address; what you publish there is sealed for one contact (docs/REACH.md).
    #[arg(
        long = "dht-bootstrap",
        global = true,
        value_name = "HOST:PORT",
        value_delimiter = ',',
        help_heading = "Network (any command)"
    )]
    pub dht_bootstrap: Vec<String>,
    /// Stay off the DHT: contacts can then reach you, and you them, only at addresses from
    /// tickets. DHT nodes otherwise see your IP address (not who you are or whom you call).
    #[arg(long, global = true, help_heading = "Network (any command)")]
    pub no_dht: bool,
    /// Neither announce yourself to contacts on the local network nor look for them there
    /// (mDNS). Announcements name nobody: only your contacts can recognise them.
    #[arg(long, global = true, help_heading = "Network (any command)")]
    pub no_lan: bool,
    /// Do not ask the home router to forward a port to you (UPnP IGD, NAT-PMP, PCP). With
    /// a forwarded port, contacts behind any NAT reach you directly; the router learns only
    /// that a UDP port is wanted, and the mapping lasts 10 minutes unless renewed.
    #[arg(long, global = true, help_heading = "Network (any command)")]
    pub no_port_mapping: bool,
    /// Also ask this STUN server (HOST:PORT, repeatable) for your public address. None by
    /// default: DHT nodes already tell you. A STUN server learns your public address and when
    /// you are online, not whom you call.
    #[arg(
        long = "stun",
        global = true,
        value_name = "HOST:PORT",
        help_heading = "Network (any command)"
    )]
    pub stun: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show (and on first use create) your identity: peer ID and ticket.
    #[command(after_long_help = "\
Examples:
  extrasafe id                      # create on first use, then print peer ID and ticket
  extrasafe id --qr                 # also draw the ticket as a QR code
  extrasafe id --set-passphrase     # encrypt the key file (Argon2id + XChaCha20-Poly1305)
  extrasafe id --remove-passphrase  # store it unencrypted again (file mode 0600 still applies)
  extrasafe id --new-ticket         # old tickets stop working; your contacts still reach you
  extrasafe --ephemeral id          # a throw-away identity; nothing is written

The peer ID (es1...) names you; it is safe to share and has a checksum that catches typos.
The ticket (est1...) is your peer ID, a secret and the addresses you listen on: give it only
to people who should be able to call you. `listen` answers nobody else (not even with a
single packet), except your contacts. The port is your own, derived from your key; --port
pins another (then pass the same --port to `listen`).")]
    Id(IdArgs),
    /// Wait for calls.
    #[command(after_long_help = "\
Examples:
  extrasafe listen                                  # ask before answering each call
  extrasafe listen --accept es1abc... es1def...     # answer these two, refuse everyone else
  extrasafe listen --accept anyone --once           # answer anyone, exit after one call
  extrasafe listen --port 50000                     # listen on another UDP port
  extrasafe listen --mic headset --speaker headset  # pick devices by (part of) their name

During a call, type a line and press Enter to send it. /mute and /unmute switch your
microphone; /hangup or Ctrl-D ends the call. A stats line (round trip, loss, jitter, buffer,
bitrate, path) is printed every 5 s. Audio uses the default microphone and speaker; pick
others with --mic/--speaker (see `extrasafe devices`), or WAV files with --audio-in/--audio-out.
Only holders of your current ticket and your contacts get any answer at all. A caller you
decline, whom --accept does not list, who calls while you are in a call, or who rings more
than 3 times in a row learns nothing: to them it rang unanswered.")]
    Listen(ListenArgs),
    /// Call someone from their ticket.
    #[command(after_long_help = "\
Examples:
  extrasafe call est1qqq...          # call; chat once connected; Ctrl-D hangs up
  printf 'hello\\n' | extrasafe call est1qqq... --json
  extrasafe call est1qqq... --mic usb               # the microphone whose name contains usb
  extrasafe call est1qqq... --audio-in speech.wav --audio-out heard.wav
  extrasafe call est1qqq... --no-audio               # chat only

When connected, both screens show a six-digit verification code. Read it to each other
(voice, in person): if the codes differ, someone is in the middle; hang up.")]
    Call(CallArgs),
    /// Send files or folders to someone, straight to their device.
    #[command(after_long_help = "\
Examples:
  extrasafe send --to est1qqq... report.pdf
  extrasafe send --to est1qqq... ~/photos notes.txt     # a folder is sent with its structure
  extrasafe --json send --to est1qqq... big.iso           # progress as JSON events

Calls the ticket's device (without audio), offers the files once connected, and hangs up
when the transfer has ended. The other side sees the names, sizes and your peer ID and
accepts or declines (`extrasafe receive` there, or /accept in a call). Every 256 KiB is
verified as it arrives; a broken transfer never leaves a corrupt file under a real name, and
sending the same files again resumes where it stopped. Links inside folders are left out.
Exit code 0 when everything arrived verified, 5 if declined or cancelled, 7 if it failed.")]
    Send(SendArgs),
    /// Wait for files (and calls) and save what you accept.
    #[command(after_long_help = "\
Examples:
  extrasafe receive                                 # ask before saving each offer
  extrasafe receive --dir ~/incoming                # save there instead of ~/Downloads
  extrasafe receive --accept-files es1abc...:2G     # take up to 2 GB from this peer unasked
  extrasafe receive --once --accept-files anyone    # one sender, saved unasked, then exit

Listens like `listen` (anyone may connect to offer files; --accept limits that) but without
audio. Files are saved only under the folder, with safe names: nothing is overwritten (a
taken name becomes `name (1).ext`), nothing outside the folder is touched, and free space is
checked first. Answer an offer with /accept or /decline; Ctrl-C stops.")]
    Receive(ReceiveArgs),
    /// Keep the people you call by name: add, list, remove, verify.
    #[command(after_long_help = "\
Examples:
  extrasafe contact add est1qqq... --name alice   # from their ticket (ID and addresses)
  extrasafe contact add es1abc... --name bob      # from a peer ID alone (no address yet)
  extrasafe contact list
  extrasafe contact verify alice                  # after comparing the verification code
  extrasafe contact remove bob
  extrasafe call alice                            # call a contact by name

Contacts live only on this device, in one file encrypted with a key derived from your
identity (and so protected by its passphrase too). Nothing about calls is recorded there:
no history, no times. Adding a newer ticket of someone you know updates their addresses.")]
    Contact(ContactArgs),
    /// List the microphones and speakers calls can use.
    #[command(after_long_help = "\
Examples:
  extrasafe devices
  extrasafe devices --json

Devices come from the sound server (PulseAudio, or PipeWire through pipewire-pulse). The
default ones are marked *. Give a name, or a part of a name or description that only one
device has, to --mic or --speaker. \"Monitor\" sources record what a speaker plays.")]
    Devices,
    /// Run a real call between two peers inside this process, on loopback.
    #[command(after_long_help = "\
Example:
  extrasafe demo

Makes two throw-away identities, connects them over real UDP sockets on 127.0.0.1, shows
both verification codes, exchanges chat lines, then Alice talks to Bob for ten seconds
(a synthetic voice, Opus over QUIC datagrams), and prints latency, quality and bitrate.
Needs no devices and no network. Writes one file: the audio Bob heard (see --audio-out).")]
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct ContactArgs {
    #[command(subcommand)]
    pub action: ContactAction,
}

#[derive(Subcommand, Debug)]
pub enum ContactAction {
    /// Add someone from their ticket (est1...) or peer ID (es1...), or update a known one.
    Add {
        /// Their ticket or peer ID.
        target: String,
        /// The name to call them by (unique; any case matches).
        #[arg(long)]
        name: String,
        /// If they are already a contact under another name, rename them without asking.
        #[arg(long)]
        rename: bool,
    },
    /// Show your contacts.
    List,
    /// Forget a contact.
    Remove {
        /// Their name or peer ID.
        name: String,
    },
    /// Mark a contact verified once you compared the verification code in a call.
    Verify {
        /// Their name or peer ID.
        name: String,
        /// Mark them unverified again.
        #[arg(long)]
        undo: bool,
    },
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of audio (and video) to send.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Size of the test video sent both ways.
    #[arg(long, value_name = "WxH", default_value = "640x360")]
    pub video_size: String,
    /// Leave video out of the demo.
    #[arg(long)]
    pub no_video: bool,
    /// Where to write the audio Bob received [default: extrasafe-demo-received.wav in the
    /// system's temporary folder].
    #[arg(long, value_name = "FILE.wav")]
    pub audio_out: Option<PathBuf>,
}

/// Audio options of `call` and `listen`.
#[derive(Args, Debug, Clone)]
pub struct AudioArgs {
    /// Microphone to use: its name from `extrasafe devices`, or a unique part of its name or
    /// description [default: the system's default microphone].
    #[arg(long, value_name = "NAME", conflicts_with = "audio_in")]
    pub mic: Option<String>,
    /// Speaker to use, named like --mic [default: the system's default output].
    #[arg(long, value_name = "NAME", conflicts_with = "audio_out")]
    pub speaker: Option<String>,
    /// Send this WAV file as your voice instead of the microphone (any rate or channel count;
    /// converted).
    #[arg(long, value_name = "FILE.wav")]
    pub audio_in: Option<PathBuf>,
    /// Play the --audio-in file in a loop instead of once.
    #[arg(long = "loop", requires = "audio_in")]
    pub looping: bool,
    /// Record what you hear to this WAV file (48 kHz mono) instead of playing it.
    #[arg(long, value_name = "FILE.wav")]
    pub audio_out: Option<PathBuf>,
    /// Send your audio as it is, without noise suppression (on by default).
    #[arg(long)]
    pub no_noise_suppression: bool,
    /// Send your audio without echo cancellation. It is on whenever the call uses a
    /// microphone and a speaker: it takes what your speaker plays out of what your
    /// microphone hears, so the other person does not hear themselves. With a headset it
    /// finds no echo once the other person has talked for about 5 s, and from then on lets
    /// your microphone through untouched (the stats line says "no echo heard").
    #[arg(long)]
    pub no_echo_cancel: bool,
    /// Send your microphone as it is, without automatic gain control (on by default for a
    /// microphone: a quiet or distant voice is brought to the level of a close one).
    #[arg(long)]
    pub no_auto_gain: bool,
    /// Opus implementation: `pure` (pure Rust, always there) or `libopus` (the system
    /// library; only in builds with `--features libopus`).
    #[arg(long, value_name = "pure|libopus", default_value = "pure", value_parser = ["pure", "libopus"])]
    pub opus: String,
    /// Chat only: the call carries no audio at all.
    #[arg(long, conflicts_with_all = ["mic", "speaker", "audio_in", "audio_out", "no_noise_suppression", "no_echo_cancel", "no_auto_gain"])]
    pub no_audio: bool,
}

/// Video options of `call` and `listen`.
#[derive(Args, Debug, Clone, Default)]
pub struct VideoArgs {
    /// Send video: `test` (a moving test picture with frame number and time), `screen`
    /// (this X11 screen; `screen:WINDOW-ID` for one window), `camera` (/dev/video0, or
    /// `camera:/dev/videoN`), a .y4m file (played in a loop),
    /// or any other path as raw I420 pictures of --video-size, e.g. a pipe from
    /// `ffmpeg … -f rawvideo -pix_fmt yuv420p` (`--video /dev/fd/3 3< <(ffmpeg …)`).
    #[arg(long, value_name = "test|screen|camera|FILE")]
    pub video: Option<String>,
    /// Write the video you receive to this Y4M file (one picture per frame of the sender's
    /// clock; frozen stretches repeat the last picture), for playing or measuring.
    #[arg(long, value_name = "FILE.y4m")]
    pub video_out: Option<PathBuf>,
    /// Picture size of `--video test` and of raw I420 input.
    #[arg(long, value_name = "WxH", default_value = "1280x720")]
    pub video_size: String,
    /// Frame rate of `--video test`, `screen` and raw I420 input.
    #[arg(long, value_name = "FPS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub video_fps: u32,
    /// Most video bitrate to send, kb/s (the path may allow less: it adapts).
    #[arg(long, value_name = "KBPS", default_value_t = 2500, value_parser = clap::value_parser!(u32).range(150..=20000))]
    pub video_max_kbps: u32,
}

/// File-transfer options of `call`, `listen` and `receive`.
#[derive(Args, Debug, Clone)]
pub struct FilesArgs {
    /// Which file offers to take without asking: `ask` (default), `none`, or entries
    /// `anyone[:SIZE]` / `PEER-ID[:SIZE]` (e.g. `es1abc...:500M`); others are declined.
    #[arg(long, num_args = 1.., value_name = "POLICY")]
    pub accept_files: Vec<String>,
    /// Folder to save received files in [default: ~/Downloads/EXTRA SAFE, made if missing;
    /// never the current folder].
    #[arg(long = "dir", value_name = "FOLDER")]
    pub files_dir: Option<PathBuf>,
    /// Take offered names with hidden parts (`.config/...`, `.ssh/...`), refused by default:
    /// a hidden file can be a program that starts at login. Our own partial-file names stay
    /// refused.
    #[arg(long)]
    pub allow_hidden_files: bool,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Whom to send to: a ticket (est1...), or a contact's name or peer ID.
    #[arg(long)]
    pub to: String,
    /// Files or folders to send.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Local address to send from [default: any address, a free port].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// UDP port to listen on [default: a port of your own, derived from your key;
    /// `extrasafe id` shows it].
    #[arg(long, conflicts_with = "bind")]
    pub port: Option<u16>,
    /// Exact address to bind, e.g. 127.0.0.1:0.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Who may connect to offer files: `anyone` (default), `ask`, or peer IDs.
    #[arg(long, num_args = 1.., default_value = "anyone", value_name = "anyone|ask|PEER-ID")]
    pub accept: Vec<String>,
    /// Exit after the first sender hangs up.
    #[arg(long)]
    pub once: bool,
    /// Also print the ticket as a QR code.
    #[arg(long)]
    pub qr: bool,
    #[command(flatten)]
    pub files: FilesArgs,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// Also print the ticket as a QR code.
    #[arg(long)]
    pub qr: bool,
    /// Port to advertise in the ticket (pass the same to `listen`) [default: a port of your
    /// own, derived from your key].
    #[arg(long)]
    pub port: Option<u16>,
    /// Make a new ticket: tickets you gave out before stop working (whoever holds one gets no
    /// answer at all); your contacts still reach you, on the same port.
    #[arg(long)]
    pub new_ticket: bool,
    /// Protect the key file with a passphrase (asked twice on the terminal).
    #[arg(long, conflicts_with = "remove_passphrase")]
    pub set_passphrase: bool,
    /// Remove the passphrase protection.
    #[arg(long)]
    pub remove_passphrase: bool,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// UDP port to listen on [default: a port of your own, derived from your key;
    /// `extrasafe id` shows it].
    #[arg(long, conflicts_with = "bind")]
    pub port: Option<u16>,
    /// Exact address to bind, e.g. 127.0.0.1:0 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Who may call: `ask` (prompt for each call), `anyone`, or one or more peer IDs.
    #[arg(long, num_args = 1.., default_value = "ask", value_name = "anyone|ask|PEER-ID")]
    pub accept: Vec<String>,
    /// Exit after the first call ends.
    #[arg(long)]
    pub once: bool,
    /// Also print the ticket as a QR code.
    #[arg(long)]
    pub qr: bool,
    #[command(flatten)]
    pub audio: AudioArgs,
    #[command(flatten)]
    pub video: VideoArgs,
    #[command(flatten)]
    pub files: FilesArgs,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Whom to call: a ticket (est1...), or a contact's name or peer ID.
    pub ticket: String,
    /// How long to let it ring before giving up, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub ring_timeout: u64,
    /// Local address to call from [default: any address, a free port].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    #[command(flatten)]
    pub audio: AudioArgs,
    #[command(flatten)]
    pub video: VideoArgs,
    #[command(flatten)]
    pub files: FilesArgs,
}
