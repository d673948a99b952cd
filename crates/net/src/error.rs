//! Typed errors, sorted by who can fix them.

use extrasafe_core::PeerId;

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The UDP socket could not be bound (port in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS configuration was refused (a bug or a broken crypto build).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// A call could not be placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Someone answered at the ticket's address with a different key: not the person named
    /// in the ticket. Could be an attacker, or the ticket is stale and another EXTRA SAFE user
    /// now has that address.
    #[error("the peer at that address is not who the ticket names (it proved key {actual}, the ticket expects {expected})")]
    WrongPeer {
        /// From the ticket.
        expected: PeerId,
        /// What answered.
        actual: PeerId,
    },
    /// Nothing answered at any address in time.
    #[error("no answer from {tried} address(es) within {secs} s")]
    Unreachable {
        /// How many addresses were tried.
        tried: usize,
        /// Timeout in seconds.
        secs: u64,
    },
    /// The ticket carries no address.
    #[error("the ticket has no address to call")]
    NoAddress,
    /// The connection could not be secured.
    #[error("the connection could not be secured: {0}")]
    Handshake(#[from] HandshakeFailure),
    /// A call is already in progress on this node.
    #[error("already in a call")]
    AlreadyInCall,
    /// The ticket names this node itself.
    #[error("that ticket is your own")]
    CallingSelf,
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Closed,
    /// Hole punching found no working address (the report says what was seen and what
    /// would help).
    #[error("{}", .0.explain())]
    NoDirectPath(extrasafe_core::punch::PunchReport),
    /// The contact published no rendezvous record this epoch (ten minutes).
    #[error("the contact has no rendezvous record in the last ten minutes: it is offline, or its app is not listening with the DHT on")]
    NotPublished,
    /// The DHT could not be used.
    #[error("the DHT could not be used: {0}")]
    Rendezvous(crate::dht::DhtError),
    /// The call is over, or the request does not fit its state.
    #[error(transparent)]
    Session(#[from] extrasafe_core::session::SessionError),
}

/// Who can act on a failure: every error of this crate (and the application's endings) is
/// sorted into one of these, and a front end words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The other side's app misbehaved: bad data, a broken protocol, a key that is not the
    /// one expected, or trouble on their side (their disk).
    Peer,
    /// The two apps share no protocol: one of the people should update.
    Incompatible,
    /// The path between the two: nothing answered, the connection went away, no direct path.
    Network,
    /// This device: its disk, its files, its set-up, or this program.
    Local,
    /// A rule refused it: a second call while in one, calling oneself, a ticket with nothing
    /// to call.
    Policy,
}

impl CallError {
    /// Who can act on it.
    pub fn blame(&self) -> Blame {
        match self {
            Self::WrongPeer { .. } => Blame::Peer,
            Self::Rendezvous(e) => e.blame(),
            Self::Unreachable { .. } | Self::NoDirectPath(_) | Self::NotPublished => Blame::Network,
            Self::Handshake(h) => h.blame(),
            Self::NoAddress | Self::AlreadyInCall | Self::CallingSelf => Blame::Policy,
            Self::Closed | Self::Session(_) => Blame::Local,
        }
    }
}

/// Why a call's media could not end cleanly ([`crate::audio::AudioCall::stop`],
/// [`crate::video::VideoCall::stop`]): what was received could not all be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaEndError {
    /// A recording of what was heard could not be written (a full disk, no permission).
    #[error(transparent)]
    Recording(#[from] extrasafe_media::io::SinkError),
    /// The received video could not be decoded or kept (its file, the window).
    #[error(transparent)]
    Video(#[from] extrasafe_video::VideoError),
    /// The call's media engine or decoder stopped before it could report (a bug).
    #[error("the call's media stopped unexpectedly")]
    Stopped,
}

impl MediaEndError {
    /// Who can act on it: all of these are this device's.
    pub fn blame(&self) -> Blame {
        Blame::Local
    }
}

/// Why a connection that was answered could not be secured, sorted from what QUIC and TLS
/// reported (never from their wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// No protocol in common: QUIC version, TLS version, key exchange or application
    /// protocol.
    #[error("the other side speaks no protocol this version does ({0})")]
    Incompatible(String),
    /// The other side's app closed the connection while it was being set up.
    #[error("the other side closed the connection (code {0})")]
    Closed(u64),
    /// The other side broke QUIC or TLS (a certificate that does not verify, a bad message).
    #[error("the other side broke the secure handshake ({0})")]
    Violation(String),
    /// The path went away while the connection was being set up.
    #[error("the connection was lost while it was being set up ({0})")]
    Lost(String),
    /// This device's own TLS or QUIC set-up failed (a bug or a broken crypto build).
    #[error("the secure connection could not be set up here ({0})")]
    Local(String),
}

/// TLS alerts (RFC 8446 section 6) that say the two sides share no protocol.
const INCOMPATIBLE_ALERTS: [u8; 4] = [
    40,  // handshake_failure: no common cipher suite or group
    70,  // protocol_version
    71,  // insufficient_security
    120, // no_application_protocol
];

impl HandshakeFailure {
    /// Who can act on it.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Incompatible(_) => Blame::Incompatible,
            Self::Closed(_) | Self::Violation(_) => Blame::Peer,
            Self::Lost(_) => Blame::Network,
            Self::Local(_) => Blame::Local,
        }
    }

    /// Sorts what QUIC reported while a connection was set up. `None` for the two endings
    /// that say nothing was heard (a time-out) or that we closed it ourselves.
    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> Option<Self> {
        use quinn::ConnectionError as E;
        // A QUIC CRYPTO_ERROR carries the TLS alert in its low byte (RFC 9001 section 4.8).
        let sort = |code: quinn::TransportErrorCode, what: String| {
            let raw = u64::from(code);
            match raw {
                0x100..=0x1ff if INCOMPATIBLE_ALERTS.contains(&((raw - 0x100) as u8)) => {
                    Self::Incompatible(what)
                }
                _ => Self::Violation(what),
            }
        };
        Some(match e {
            E::TimedOut | E::LocallyClosed => return None,
            E::VersionMismatch => Self::Incompatible(e.to_string()),
            E::TransportError(t) => sort(t.code, e.to_string()),
            E::ConnectionClosed(c) => sort(c.error_code, e.to_string()),
            E::ApplicationClosed(c) => Self::Closed(c.error_code.into_inner()),
            E::Reset => Self::Lost(e.to_string()),
            E::CidsExhausted => Self::Local(e.to_string()),
        })
    }
}

impl From<rustls::Error> for HandshakeFailure {
    fn from(e: rustls::Error) -> Self {
        Self::Local(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::{ConnectionError as E, TransportErrorCode};

    fn closed(code: u64) -> E {
        E::ConnectionClosed(quinn::ConnectionClose {
            error_code: TransportErrorCode::crypto(code as u8),
            frame_type: None,
            reason: Default::default(),
        })
    }

    #[test]
    fn handshake_failures_are_sorted_by_code_not_wording() {
        let sort = |e: &E| HandshakeFailure::from_connection(e).map(|h| h.blame());
        // TLS alerts carried in QUIC's CRYPTO_ERROR.
        for alert in [40, 70, 71, 120] {
            assert_eq!(sort(&closed(alert)), Some(Blame::Incompatible), "{alert}");
        }
        for alert in [42, 48, 51, 80] {
            assert_eq!(sort(&closed(alert)), Some(Blame::Peer), "{alert}");
        }
        assert_eq!(sort(&E::VersionMismatch), Some(Blame::Incompatible));
        assert_eq!(sort(&E::Reset), Some(Blame::Network));
        assert_eq!(sort(&E::CidsExhausted), Some(Blame::Local));
        let app = E::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(3),
            reason: Default::default(),
        });
        assert_eq!(
            HandshakeFailure::from_connection(&app),
            Some(HandshakeFailure::Closed(3))
        );
        // Nothing heard, or our own close: not a handshake failure (the caller says
        // "unreachable").
        assert_eq!(sort(&E::TimedOut), None);
        assert_eq!(sort(&E::LocallyClosed), None);
        // A protocol violation that is not TLS's.
        let violation = E::ConnectionClosed(quinn::ConnectionClose {
            error_code: TransportErrorCode::PROTOCOL_VIOLATION,
            frame_type: None,
            reason: Default::default(),
        });
        assert_eq!(sort(&violation), Some(Blame::Peer));
    }

    #[test]
    fn every_call_error_has_someone_who_can_act() {
        assert_eq!(CallError::NoAddress.blame(), Blame::Policy);
        assert_eq!(CallError::AlreadyInCall.blame(), Blame::Policy);
        assert_eq!(CallError::NotPublished.blame(), Blame::Network);
        assert_eq!(
            CallError::Unreachable { tried: 1, secs: 5 }.blame(),
            Blame::Network
        );
        assert_eq!(CallError::Closed.blame(), Blame::Local);
    }
}
