//! The drivers of `core::access`: connection IDs that carry the proofs the gate checks.
//!
//! * [`GateCids`] issues our connection IDs (quinn's generator), tagged with the socket's
//!   local key, and tells quinn which IDs are ours.
//! * [`dcid_provider`] makes the destination ID of each first flight we send, tagged with
//!   the callee's ticket key and our pair key.
//!
//! The gate itself runs in `probe_socket`, on every datagram before QUIC sees it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use extrasafe_core::access::{
    first_flight_dcid, AccessKey, LocalCidKey, FIRST_FLIGHT_DCID_LEN, LOCAL_CID_LEN,
};
use quinn::{ConnectionId, ConnectionIdGenerator};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Without randomness no connection can be kept apart from another: not recoverable.
    getrandom::fill(&mut b).expect("the OS random number generator failed");
    b
}

/// A fresh local key (one per socket).
pub(crate) fn new_local_key() -> LocalCidKey {
    LocalCidKey::new(random())
}

/// Our connection IDs, as quinn asks for them. (Packets naming any other ID never reach
/// quinn: the gate drops them.)
pub(crate) struct GateCids(pub(crate) LocalCidKey);

impl ConnectionIdGenerator for GateCids {
    fn generate_cid(&mut self) -> ConnectionId {
        ConnectionId::new(&self.0.issue(random(), unix_ms() / 1000))
    }

    fn cid_len(&self) -> usize {
        LOCAL_CID_LEN
    }

    /// quinn replaces our IDs before this, so the gate can drop packets naming older ones
    /// (which would otherwise draw a stateless reset).
    fn cid_lifetime(&self) -> Option<Duration> {
        Some(Duration::from_secs(
            extrasafe_core::access::CID_LIFETIME_SECS,
        ))
    }
}

/// What a first flight from us to a listener proves: its ticket (the key from the secret
/// in the ticket) and our being its contact (the pair key). Either may be missing.
pub fn dcid_provider(
    ticket: Option<AccessKey>,
    contact: Option<AccessKey>,
) -> Arc<dyn Fn() -> ConnectionId + Send + Sync> {
    Arc::new(move || {
        let dcid = first_flight_dcid(
            ticket.as_ref(),
            contact.as_ref(),
            unix_ms(),
            random::<FIRST_FLIGHT_DCID_LEN>(),
        );
        ConnectionId::new(&dcid)
    })
}

/// The pair key we share with each of `peers` (a peer whose key is unusable is left out):
/// what [`crate::NodeConfig::contacts`] takes.
pub fn contact_keys(
    identity: &extrasafe_core::Identity,
    peers: &[extrasafe_core::PeerId],
) -> Vec<(extrasafe_core::PeerId, AccessKey)> {
    peers
        .iter()
        .filter_map(|p| {
            extrasafe_core::rendezvous::PairSecret::new(identity, p)
                .ok()
                .map(|s| (*p, s.access_key()))
        })
        .collect()
}

/// A fresh random ticket secret (for an identity that lives in memory only).
pub fn random_ticket_secret() -> extrasafe_core::access::TicketSecret {
    extrasafe_core::access::TicketSecret::from_bytes(random())
}
