//! Every sentence the window shows: errors a non-expert can act on, and the labels (kept in
//! one place so a test can check the bundled fonts draw every character of them).

use extrasafe_core::wire::HangupReason;
use extrasafe_core::EndReason;
use extrasafe_net::dial::DialError;
use extrasafe_net::CallError;

pub const APP: &str = "EXTRA SAFE";
pub const WELCOME: &str = "Private calls, straight from your device to theirs. Nothing goes through a server, and nothing of a call is kept.";
pub const FIRST_RUN: &str = "First, this device makes your identity: a key that never leaves it. Your contacts will know you by it.";
pub const PASSPHRASE_HINT: &str = "Optional: a passphrase protects the key if someone copies your files. You will type it each time the app starts. Leave both fields empty for none.";
pub const CREATE: &str = "Create my identity";
pub const UNLOCK_TITLE: &str = "Your identity is protected by a passphrase";
pub const UNLOCK: &str = "Unlock";
pub const PASSPHRASE: &str = "Passphrase";
pub const REPEAT: &str = "Repeat it";
pub const YOUR_ID: &str = "Your peer ID";
pub const YOUR_TICKET: &str = "Your ticket: give it to the people who should be able to call you";
pub const COPY: &str = "Copy ticket";
pub const NEW_TICKET: &str = "New ticket";
pub const NEW_TICKET_ASK: &str =
    "Tickets you gave out before will stop working (your contacts still reach you).";
pub const NEW_TICKET_YES: &str = "Make a new ticket";
pub const NEW_TICKET_NO: &str = "Keep this one";
pub const COPIED: &str = "Copied.";
pub const CONTACTS: &str = "Contacts";
pub const NO_CONTACTS: &str = "No contacts yet. Paste a ticket someone gave you below.";
pub const ADD_CONTACT: &str = "Add a contact";
pub const TICKET_FIELD: &str = "Their ticket (est1…)";
pub const NAME_FIELD: &str = "Name";
pub const ADD: &str = "Add";
pub const REMOVE: &str = "Remove";
pub const RENAME: &str = "Rename";
pub const SAVE: &str = "Save";
pub const KEEP: &str = "Keep";
pub const CALL_AUDIO: &str = "Call";
pub const CALL_VIDEO: &str = "Video call";
pub const VERIFIED: &str = "verified";
pub const UNVERIFIED: &str = "not verified";
pub const ACCEPT_AUDIO: &str = "Accept";
pub const ACCEPT_VIDEO: &str = "Accept with video";
pub const DECLINE: &str = "Decline";
pub const CANCEL: &str = "Cancel";
pub const HANG_UP: &str = "Hang up";
pub const MUTE: &str = "Mute";
pub const UNMUTE: &str = "Unmute";
pub const CAMERA_OFF: &str = "Camera off";
pub const CAMERA_ON: &str = "Camera on";
pub const SHARE: &str = "Share screen";
pub const STOP_SHARE: &str = "Stop sharing";
pub const SAS_TITLE: &str = "Security code: read it aloud. Both of you must see the same digits.";
pub const SAS_COMPARED: &str = "We compared them";
pub const SAS_DONE: &str = "Verified: you compared this contact's code before.";
pub const SAS_MISMATCH: &str = "If the digits differ, hang up: someone may be listening in.";
pub const SAVE_CALLER: &str = "Save as a verified contact";
pub const CHAT: &str = "Chat";
pub const SEND: &str = "Send";
pub const CHAT_HINT: &str = "Type a message and press Enter";
pub const MESSAGE: &str = "Message";
pub const SEND_FILE: &str = "Send file";
pub const FILE_PATH: &str = "Path of a file or folder (or drop files on the window)";
pub const OFFER: &str = "offers you";
pub const SHOW_FOLDER: &str = "Show in folder";
pub const STOP: &str = "Stop";
pub const CLOSE: &str = "Back to contacts";
pub const DISMISS: &str = "Dismiss";
pub const SETTINGS: &str = "Settings";
pub const MIC: &str = "Microphone";
pub const SPEAKER: &str = "Speaker";
pub const VIDEO_SOURCE: &str = "Video";
pub const SYSTEM_DEFAULT: &str = "System default";
pub const TEST_PICTURE: &str = "Test picture";
pub const NO_VIDEO: &str = "Send no video";
pub const FILES_DIR: &str = "Save received files in";
pub const ECHO_CANCEL: &str = "Echo cancellation";
pub const ECHO_CANCEL_HINT: &str =
    "On: they do not hear themselves when you use speakers (takes effect on the next call)";
pub const WAITING_VIDEO: &str = "Waiting for their picture …";
pub const NO_REMOTE_VIDEO: &str = "They send no video.";
pub const DROP_HINT: &str = "Drop files here to send them";
/// While a call has lost its path and looks for it again.
pub const RECONNECTING: &str =
    "Connection lost. Reconnecting… The call is kept for up to 90 seconds; Hang up ends it.";
pub const NOTHING_STORED: &str =
    "Nothing of this call is stored: when it ends, its chat and figures are gone.";
pub const CHAT_FILES: &str = "Chat and files";
pub const HIDE_CHAT: &str = "Hide chat";
pub const FULL_SCREEN: &str = "Full screen";
pub const LEAVE_FULL_SCREEN: &str = "Leave full screen";
pub const BACK_TO_VIDEO: &str = "Back to the picture";
pub const THEIR_VIDEO: &str = "Their picture (double-click: full screen)";
pub const OUR_VIDEO: &str = "Your picture, as they see it";
pub const PREPARING: &str = "Preparing the files (checking their content) …";
pub const SECURITY_CODE: &str = "Security code";
pub const MISSED_CALLS: &str = "Missed calls (kept only while the app runs)";
pub const CALL_BACK: &str = "Call back";
pub const SEEN: &str = "Seen";
pub const STAY_REACHABLE: &str = "When the window closes";
pub const STAY_REACHABLE_HINT: &str =
    "Stay reachable in the tray (calls still ring; Quit ends the app)";
pub const QUIT: &str = "Quit";
pub const OPEN_WINDOW: &str = "Open EXTRA SAFE";
pub const NO_TRAY: &str = "This desktop shows no tray icons, so the window was minimized instead of closed: EXTRA SAFE stays reachable. Quit ends it.";
pub const CHOOSE_FILES: &str = "Choose files …";
pub const CHOOSE_FOLDER: &str = "Choose a folder …";
pub const CHOOSER_TITLE: &str = "Send to the person in the call";
pub const CHOSEN_TOO_LATE: &str = "The call the files were chosen for has ended: nothing was sent.";
pub const NO_CHOOSER: &str = "No file chooser is available on this desktop (its XDG desktop portal is missing). Type the path above, or drop the files on the window.";

/// Every fixed label, for the font test.
pub const ALL: &[&str] = &[
    APP,
    WELCOME,
    FIRST_RUN,
    PASSPHRASE_HINT,
    CREATE,
    UNLOCK_TITLE,
    UNLOCK,
    PASSPHRASE,
    REPEAT,
    YOUR_ID,
    YOUR_TICKET,
    COPY,
    NEW_TICKET,
    NEW_TICKET_ASK,
    NEW_TICKET_YES,
    NEW_TICKET_NO,
    COPIED,
    CONTACTS,
    NO_CONTACTS,
    ADD_CONTACT,
    TICKET_FIELD,
    NAME_FIELD,
    ADD,
    REMOVE,
    RENAME,
    SAVE,
    KEEP,
    CALL_AUDIO,
    CALL_VIDEO,
    VERIFIED,
    UNVERIFIED,
    ACCEPT_AUDIO,
    ACCEPT_VIDEO,
    DECLINE,
    CANCEL,
    HANG_UP,
    MUTE,
    UNMUTE,
    CAMERA_OFF,
    CAMERA_ON,
    SHARE,
    STOP_SHARE,
    SAS_TITLE,
    SAS_COMPARED,
    SAS_DONE,
    SAS_MISMATCH,
    SAVE_CALLER,
    CHAT,
    SEND,
    CHAT_HINT,
    MESSAGE,
    SEND_FILE,
    FILE_PATH,
    OFFER,
    SHOW_FOLDER,
    STOP,
    CLOSE,
    DISMISS,
    SETTINGS,
    MIC,
    SPEAKER,
    VIDEO_SOURCE,
    SYSTEM_DEFAULT,
    TEST_PICTURE,
    NO_VIDEO,
    FILES_DIR,
    WAITING_VIDEO,
    NO_REMOTE_VIDEO,
    DROP_HINT,
    NOTHING_STORED,
    CHAT_FILES,
    HIDE_CHAT,
    FULL_SCREEN,
    LEAVE_FULL_SCREEN,
    BACK_TO_VIDEO,
    THEIR_VIDEO,
    OUR_VIDEO,
    PREPARING,
    SECURITY_CODE,
    MISSED_CALLS,
    CALL_BACK,
    SEEN,
    STAY_REACHABLE,
    STAY_REACHABLE_HINT,
    QUIT,
    OPEN_WINDOW,
    NO_TRAY,
    CHOOSE_FILES,
    CHOOSE_FOLDER,
    CHOOSER_TITLE,
    CHOSEN_TOO_LATE,
    NO_CHOOSER,
];

/// The first characters of a peer ID: enough to tell people apart on screen.
pub fn short_peer(peer_id: &str) -> String {
    let cut: String = peer_id.chars().take(14).collect();
    format!("{cut}…")
}

/// "1.5 MB" and the like.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A running transfer's line: how much of how much, and once something moved, the rate and
/// the time left ("12.0 MB of 137.0 MB · 45.0 MB/s · 3 s left").
pub fn transfer_progress(
    bytes: u64,
    total: u64,
    bytes_per_sec: u64,
    eta_secs: Option<u64>,
) -> String {
    let mut line = format!("{} of {}", size(bytes), size(total));
    if let (true, Some(left)) = (bytes_per_sec > 0, eta_secs) {
        line += &format!(" · {}/s · {} left", size(bytes_per_sec), duration(left));
    }
    line
}

/// A time span as people say it: "45 s", "3 min", "1 h 5 min".
fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Why a call could not be placed, for `who`.
pub fn dial_failed(who: &str, e: &DialError) -> String {
    match e {
        DialError::Call(e) => call_failed(who, e),
        DialError::NotFound => format!(
            "{who} is not on this network, and looking them up over the internet (the DHT) is \
             off. Turn it on (start without --no-dht), or ask {who} for a fresh ticket."
        ),
        DialError::NowhereToLook => {
            format!("No address is known for {who}. Ask them for their ticket and add it again.")
        }
    }
}

fn call_failed(who: &str, e: &CallError) -> String {
    match e {
        CallError::WrongPeer { .. } => format!(
            "Refused: the device that answered is NOT {who}. It proved a different key. Someone \
             may be pretending to be them, or their ticket is out of date. Ask {who} for a fresh \
             ticket over a channel you trust."
        ),
        CallError::Unreachable { .. } => format!(
            "{who} did not answer. They may be offline or have EXTRA SAFE closed, or be on a \
             network that cannot be reached directly. EXTRA SAFE never relays calls through \
             anyone else. Try again later, or ask them for a fresh ticket."
        ),
        CallError::NoAddress => {
            format!("{who}'s ticket lists no address. Ask them for a fresh one.")
        }
        CallError::AlreadyInCall => "You are already in a call. Hang up first.".into(),
        CallError::CallingSelf => "That ticket is your own.".into(),
        CallError::NoDirectPath(report) => format!(
            "No direct connection to {who} could be made. {}",
            report.explain().trim_start_matches("No direct path: ")
        ),
        CallError::NotPublished => format!(
            "{who} is not online: they have not been on the internet with EXTRA SAFE open in the \
             last ten minutes. Try again later."
        ),
        CallError::Rendezvous(why) => format!(
            "Could not look {who} up over the internet ({why}). Check your internet connection."
        ),
        CallError::Handshake(why) => {
            use extrasafe_net::{Blame, HandshakeFailure};
            let what = match (why, why.blame()) {
                (_, Blame::Incompatible) => {
                    format!("{who}'s EXTRA SAFE shares no protocol with yours: one of you should update.")
                }
                (HandshakeFailure::Closed(_), _) => {
                    format!("{who}'s app closed the connection before the call began. Try again.")
                }
                (_, Blame::Network) => "The network dropped the connection. Try again.".into(),
                (_, Blame::Local) => "This is a fault on this computer, not theirs.".into(),
                _ => format!(
                    "What answered broke the secure handshake: it may not be {who}'s EXTRA SAFE. \
                     Ask {who} for a fresh ticket over a channel you trust."
                ),
            };
            format!("The connection to {who} could not be secured ({why}). {what}")
        }
        CallError::Closed => "EXTRA SAFE is closing.".into(),
        other => format!("The call to {who} failed: {other}."),
    }
}

/// How a call ended, for `who`; true if it went wrong (the ending's kind is shared with the
/// command line: [`extrasafe_app::ending`]).
pub fn ended(who: &str, reason: &EndReason) -> (String, bool) {
    use extrasafe_app::ending::{ending, Ending};
    let failed = matches!(ending(reason), Ending::Failed(_));
    let text: String = match reason {
        EndReason::LocalHangup => "You hung up.".into(),
        EndReason::RemoteHangup => format!("{who} hung up."),
        EndReason::Declined => format!("{who} declined the call."),
        EndReason::DeclinedLocally => {
            format!("You declined the call. {who} is not told: to them it rang unanswered.")
        }
        EndReason::Busy => format!("{who} is in another call. Try again later."),
        EndReason::RejectedBusy => {
            format!("You were in another call; {who} is not told: to them it rang unanswered.")
        }
        EndReason::NoAnswer => format!("{who} did not answer."),
        EndReason::PeerVanished => format!(
            "The connection to {who} was lost: nothing was heard from them for a while. Their \
             network may have gone down. Call again when it is back."
        ),
        EndReason::ProtocolError(what) => format!(
            "{who}'s app sent something this one does not understand ({what}). One of you may \
             need to update EXTRA SAFE."
        ),
        EndReason::IncompatibleVersion { .. }
        | EndReason::RemoteError(HangupReason::IncompatibleVersion) => format!(
            "{who}'s EXTRA SAFE speaks another version of the protocol. One of you should update."
        ),
        EndReason::RemoteError(HangupReason::Shutdown) => format!("{who} closed EXTRA SAFE."),
        EndReason::RemoteError(r) => format!("{who}'s app ended the call after an error ({r:?})."),
        EndReason::Shutdown => "EXTRA SAFE closed the call.".into(),
        other => format!("The call ended: {other:?}."),
    };
    (text, failed)
}

/// A desktop notification for a ring: (summary, body). A stranger is not named.
pub fn ringing_alert(who: Option<&str>) -> (String, String) {
    match who {
        Some(name) => (
            format!("{name} is calling"),
            "Open EXTRA SAFE to answer or decline.".into(),
        ),
        None => (
            "Someone who is not in your contacts is calling".into(),
            "Open EXTRA SAFE to see their peer ID, answer or decline.".into(),
        ),
    }
}

/// A desktop notification for a missed call: (summary, body). A stranger is not named.
pub fn missed_alert(who: Option<&str>, at: &str) -> (String, String) {
    match who {
        Some(name) => (
            format!("Missed call from {name}"),
            format!("{name} called at {at}. EXTRA SAFE lists it until it closes."),
        ),
        None => (
            "Missed call from someone not in your contacts".into(),
            format!("They called at {at}. EXTRA SAFE lists it until it closes."),
        ),
    }
}

/// The call timer: `4:07`, or `1:02:09` past an hour.
pub fn call_time(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(999), "999 bytes");
        assert_eq!(size(1_500_000), "1.5 MB");
        assert_eq!(size(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn a_running_transfer_says_its_rate_and_time_left_once_something_moved() {
        assert_eq!(
            transfer_progress(0, 137_000_000, 0, None),
            "0 bytes of 137.0 MB"
        );
        assert_eq!(
            transfer_progress(12_000_000, 137_000_000, 45_000_000, Some(3)),
            "12.0 MB of 137.0 MB · 45.0 MB/s · 3 s left"
        );
        assert_eq!(
            transfer_progress(1_000_000, 2_000_000_000, 200_000, Some(9_995)),
            "1.0 MB of 2.0 GB · 200.0 kB/s · 2 h 46 min left"
        );
        assert_eq!(duration(61), "2 min");
    }

    #[test]
    fn what_cannot_be_sent_is_named_without_an_os_error_code() {
        use extrasafe_net::transfer::PrepareError;
        let missing = PrepareError::Io {
            path: "/home/a/ntoe.txt".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            cannot_prepare(&missing),
            "Nothing was sent: “/home/a/ntoe.txt” does not exist."
        );
        let s = left_out_missing(&["/a/1".into(), "/a/2".into(), "/a/3".into(), "/a/4".into()]);
        assert_eq!(
            s,
            "Left out (they do not exist): “/a/1”, “/a/2”, “/a/3” and 1 more. The rest is offered."
        );
    }

    #[test]
    fn failures_name_the_person_and_say_what_to_do() {
        let s = dial_failed(
            "Alice",
            &DialError::Call(CallError::Unreachable { tried: 2, secs: 10 }),
        );
        assert!(s.starts_with("Alice did not answer"), "{s}");
        assert!(s.contains("never relays"), "{s}");
        let report = extrasafe_core::punch::PunchReport {
            remotes: 3,
            public_remotes: 2,
            pings_heard: 0,
            our_nat: extrasafe_core::punch::NatMapping::Varies,
            their_nat: extrasafe_core::punch::NatMapping::Varies,
            ..Default::default()
        };
        let s = dial_failed("Alice", &DialError::Call(CallError::NoDirectPath(report)));
        assert!(
            s.starts_with("No direct connection to Alice could be made."),
            "{s}"
        );
        assert!(s.contains("symmetric NATs"), "{s}");
        let (s, failed) = ended("Bob", &EndReason::PeerVanished);
        assert!(failed && s.contains("lost"), "{s}");
        let (s, failed) = ended("Bob", &EndReason::Declined);
        assert!(!failed && s == "Bob declined the call.");
    }
}

#[cfg(test)]
mod fonts {
    use eframe::egui;

    #[test]
    fn the_call_timer_reads_as_a_clock() {
        assert_eq!(super::call_time(0), "0:00");
        assert_eq!(super::call_time(247), "4:07");
        assert_eq!(super::call_time(3729), "1:02:09");
    }

    /// Every label can be drawn with the fonts built into the binary (no system fonts).
    #[test]
    fn the_bundled_fonts_draw_every_label() {
        let ctx = egui::Context::default();
        // No renderer takes the font atlas here: it is dropped on purpose.
        let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
        out.textures_delta.clear();
        let missing: Vec<char> = ctx.fonts_mut(|f| {
            let id = egui::FontId::proportional(15.0);
            super::ALL
                .iter()
                .flat_map(|s| s.chars())
                .filter(|c| !f.has_glyph(&id, *c))
                .collect()
        });
        assert!(missing.is_empty(), "no glyph for {missing:?}");
        // And a check that can fail: a character no bundled font has.
        assert!(!ctx.fonts_mut(|f| f.has_glyph(&egui::FontId::proportional(15.0), '\u{10FFFD}')));
    }
}

/// How contacts can find us, after the reachability services started.
pub fn reach(
    contacts: usize,
    config: &extrasafe_app::ReachConfig,
    presence: &extrasafe_app::Presence,
) -> String {
    if contacts == 0 {
        return "Contacts reach you with your ticket.".into();
    }
    if !(config.lan || config.dht) {
        return "Contacts reach you only with your ticket (LAN and DHT are off).".into();
    }
    let mut said = Vec::new();
    if presence.lan_on {
        said.push("on this network");
    }
    if presence.dht_on {
        said.push("over the internet (sealed records on the DHT)");
    }
    if said.is_empty() {
        return "Contacts reach you only with your ticket for now.".into();
    }
    format!(
        "Your {contacts} contact(s) can find you {}; nobody else can tell it is you.",
        said.join(" and ")
    )
}

/// A reachability problem worth a notice (the rest is shown as state).
pub fn reach_trouble(e: &extrasafe_app::ReachEvent) -> Option<String> {
    use extrasafe_app::ReachEvent as E;
    Some(match e {
        E::StunUnresolved { server, error } => format!(
            "The STUN server {server} could not be found ({error}); it is left out. Give it as \
             HOST:PORT (3478 is the usual port)."
        ),
        E::LanUnavailable(e) => format!(
            "Contacts on this network cannot find you by themselves ({e}); they need your \
             ticket."
        ),
        E::DhtUnavailable(e) => {
            format!("Contacts elsewhere cannot look you up ({e}); they need your ticket.")
        }
        E::ContactsUnusable(e) => format!(
            "Your contacts cannot find you by themselves ({e}); they need your ticket until the \
             contact list is repaired."
        ),
        E::LanAnnounced { .. }
        | E::DhtJoining { .. }
        | E::Reachable { .. }
        | E::PortMapped(_)
        | E::NoPath { .. } => return None,
    })
}

/// A contact tried to call us without our address, and no path could be made back.
pub fn no_path_back(who: &str, e: &DialError) -> String {
    format!("{who} tried to call you. {}", dial_failed(who, e))
}

/// An offer the file policy (--accept-files) answered by itself.
pub fn files_auto(label: &str, accepted: bool) -> String {
    if accepted {
        format!("Receiving {label}: your file settings accept it without asking.")
    } else {
        format!("Declined {label}: your file settings refuse it.")
    }
}

/// What the reachability services achieved, in a line (nothing before the first success).
pub fn online(o: &crate::model::Online) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(r) = &o.records {
        parts.push(format!(
            "Reachable now: your sealed records for {} contact(s) are on the DHT{}.",
            r.contacts,
            if r.nat == "varies" && !r.forwarded {
                " (your router changes ports per destination: contacts behind strict routers \
                 may not get through)"
            } else {
                ""
            }
        ));
    }
    if let Some(p) = &o.port_mapped {
        parts.push(format!(
            "Your router forwards a port to you ({p}), so contacts behind any router get through."
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A sound device that went away during a call, and what it means.
pub fn device_fault(f: extrasafe_net::media::io::DeviceFault) -> String {
    use extrasafe_net::media::io::DeviceFault as F;
    match f {
        F::MicrophoneLost => {
            "The microphone went away (the sound server closed it): they hear silence now. \
             Hang up and call again once it is back."
        }
        F::SpeakerLost => {
            "The speaker went away (the sound server closed it): you cannot hear them now. \
             Hang up and call again once it is back."
        }
        _ => "A sound device stopped working.",
    }
    .into()
}

/// A video problem during a call.
pub fn video_fault(f: &extrasafe_net::video::VideoFault) -> String {
    use extrasafe_net::video::VideoFault as F;
    match f {
        F::SourceStopped(e) => format!("Your video stopped: the source failed ({e})."),
        F::EncoderFailed(e) => format!("Your video could not be encoded ({e}); trying again."),
        _ => "Your video has a problem.".into(),
    }
}

/// Why a transfer failed, with what can be done (the detail may quote the sender's file
/// names, so it is made safe to show).
/// Why the files named could not be sent.
pub fn cannot_prepare(e: &extrasafe_net::transfer::PrepareError) -> String {
    use extrasafe_net::transfer::PrepareError as E;
    use std::io::ErrorKind;
    match e {
        E::Io { path, source } => {
            let path = extrasafe_core::text::for_display(&path.display().to_string());
            match source.kind() {
                ErrorKind::NotFound => format!("Nothing was sent: “{path}” does not exist."),
                ErrorKind::PermissionDenied => {
                    format!("Nothing was sent: you may not read “{path}”.")
                }
                _ => format!("Nothing was sent: “{path}” cannot be read ({source})."),
            }
        }
        E::Nothing => {
            "Nothing was sent: there is no file there (only empty folders or links).".into()
        }
        other => format!(
            "Nothing was sent: {}.",
            extrasafe_core::text::for_display(&other.to_string())
        ),
    }
}

/// Paths named that did not exist, left out of a send that went ahead with the rest.
pub fn left_out_missing(missing: &[std::path::PathBuf]) -> String {
    let names: Vec<String> = missing
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "“{}”",
                extrasafe_core::text::for_display(&p.display().to_string())
            )
        })
        .collect();
    let more = missing.len().saturating_sub(names.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "Left out (they do not exist): {}{tail}. The rest is offered.",
        names.join(", ")
    )
}

pub fn transfer_failed(f: &extrasafe_net::transfer::TransferFailure) -> String {
    use extrasafe_net::transfer::TransferFailure as F;
    use extrasafe_net::Blame;
    let detail = extrasafe_core::text::for_display(&f.to_string());
    match (f, f.blame()) {
        (F::Storage(_), _) => format!(
            "Could not save: {detail}. Free some space or pick another folder in Settings; \
             sending again resumes where it stopped."
        ),
        (F::PeerCannotSave, _) => {
            format!("Failed: {detail}. They can free space and ask you to send again.")
        }
        (_, Blame::Network) => {
            format!("Failed: {detail}. Sending again resumes where it stopped.")
        }
        (_, Blame::Peer | Blame::Incompatible) => {
            format!("Failed: {detail}. Nothing unverified was saved.")
        }
        (_, Blame::Local | Blame::Policy) => format!("Failed: {detail}."),
    }
}
