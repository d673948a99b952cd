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
    /// The other side speaks something else, or refused the TLS handshake.
    #[error("the connection could not be secured: {0}")]
    Handshake(String),
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
    Rendezvous(String),
    /// The call is over, or the request does not fit its state.
    #[error(transparent)]
    Session(#[from] extrasafe_core::session::SessionError),
}
