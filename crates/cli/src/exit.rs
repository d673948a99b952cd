//! Failures as the user should read them: a sentence saying what happened and what to do,
//! and the documented exit code.

use extrasafe_core::EndReason;
use extrasafe_net::{CallError, NodeError, StoreError};

/// A failure to show the user; `code` is the process exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub const OTHER: i32 = 1;
pub const USAGE: i32 = 2;
pub const UNREACHABLE: i32 = 3;
pub const IMPOSTOR: i32 = 4;
pub const NOT_ANSWERED: i32 = 5;
pub const IDENTITY: i32 = 6;
pub const BROKEN: i32 = 7;
pub const NO_DIRECT_PATH: i32 = 8;
pub const INTERRUPTED: i32 = 130;

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::new(IDENTITY, e.to_string())
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
                Failure::new(
                    OTHER,
                    format!(
                        "Port {} is already in use (another extrasafe?). Pick another with --port.",
                        addr.port()
                    ),
                )
            }
            e => Failure::new(OTHER, format!("{e}.")),
        }
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::WrongPeer { expected, actual } => Failure::new(
                IMPOSTOR,
                format!(
                    "Refused: the device at that address is NOT {expected}.\n\
                     It proved a different key ({actual}). Someone may be impersonating them, or\n\
                     the ticket is outdated. Do not trust this address; ask them for a fresh ticket\n\
                     over a channel you trust."
                ),
            ),
            CallError::Unreachable { tried, secs } => Failure::new(
                UNREACHABLE,
                format!(
                    "No answer from the {tried} address(es) in the ticket within {secs} s. Check that\n\
                     they are running `extrasafe listen`, and that you are on a network that can reach\n\
                     them (the same LAN, or an address their router forwards). A listener answers only\n\
                     callers who hold its current ticket or are its contacts: if they made a new ticket\n\
                     (`extrasafe id --new-ticket`), ask them for it; and both clocks must be right\n\
                     within two minutes. EXTRA SAFE never relays calls through anyone else."
                ),
            ),
            CallError::NoAddress => Failure::new(
                UNREACHABLE,
                "The ticket lists no address. Ask for the ticket `extrasafe listen` prints.",
            ),
            CallError::CallingSelf => Failure::new(USAGE, "That is your own ticket."),
            CallError::NoDirectPath(report) => Failure::new(NO_DIRECT_PATH, report.explain()),
            CallError::NotPublished => Failure::new(
                UNREACHABLE,
                "They have published no address in the last ten minutes: they are offline, not running \
                 `extrasafe listen`, or it runs with --no-dht. Try again later, or ask for a \
                 fresh ticket.",
            ),
            CallError::Rendezvous(e) => Failure::new(
                UNREACHABLE,
                format!("The DHT could not be used ({e}). Check your internet connection, or \
                         give --dht-bootstrap a node you can reach."),
            ),
            CallError::Handshake(h) => {
                use extrasafe_net::{Blame, HandshakeFailure};
                let what = match (&h, h.blame()) {
                    (_, Blame::Incompatible) => {
                        "They run a version of EXTRA SAFE that shares no protocol with this one: \
                         one of you should update."
                    }
                    (HandshakeFailure::Closed(_), _) => {
                        "Their app closed the connection before the call began: it may be \
                         shutting down. Try again."
                    }
                    (_, Blame::Network) => "The network dropped the connection. Try again.",
                    (_, Blame::Local) => "This is a fault on this device, not theirs.",
                    _ => {
                        "Their app broke the secure handshake: it may not be EXTRA SAFE. Do not \
                         trust this address; ask for a fresh ticket over a channel you trust."
                    }
                };
                let code = match h.blame() {
                    Blame::Network => UNREACHABLE,
                    _ => BROKEN,
                };
                Failure::new(code, format!("The connection could not be secured ({h}). {what}"))
            }
            e => Failure::new(OTHER, format!("The call failed: {e}.")),
        }
    }
}

/// How a call's end maps to an exit code (from the ending's kind, shared with the desktop
/// app) and a sentence.
pub fn describe_end(reason: &EndReason) -> (i32, String) {
    use extrasafe_app::ending::{ending, Ending};
    use extrasafe_core::wire::HangupReason;
    let code = match ending(reason) {
        Ending::Finished => 0,
        Ending::NotAnswered => NOT_ANSWERED,
        Ending::Failed(_) => BROKEN,
    };
    let text = match reason {
        EndReason::LocalHangup => "You hung up.".into(),
        EndReason::RemoteHangup => "They hung up.".into(),
        EndReason::Declined => "The call was declined.".into(),
        EndReason::DeclinedLocally => "You declined the call; the caller sees no answer.".into(),
        EndReason::Busy => "They are in another call. Try again later.".into(),
        EndReason::RejectedBusy => {
            "Refused the call (you were in another one); the caller sees no answer.".into()
        }
        EndReason::NoAnswer => "Nobody answered.".into(),
        EndReason::PeerVanished => "The connection was lost (nothing heard from the other side).".into(),
        EndReason::ProtocolError(what) => format!("The other side broke the protocol: {what}."),
        EndReason::IncompatibleVersion { peer_max, .. } => format!(
            "Their EXTRA SAFE speaks protocol version {peer_max}, which this one cannot. One of you should update."
        ),
        EndReason::RemoteError(HangupReason::Shutdown) => "They closed EXTRA SAFE.".into(),
        EndReason::RemoteError(HangupReason::IncompatibleVersion) => {
            "Their EXTRA SAFE cannot speak this version's protocol. One of you should update.".into()
        }
        EndReason::RemoteError(r) => format!("They ended the call because of an error ({r:?})."),
        EndReason::Shutdown => "Closed.".into(),
        other => format!("The call ended: {other:?}."),
    };
    (code, text)
}
