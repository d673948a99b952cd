//! EXTRA SAFE node: QUIC connections authenticated by identity keys, driving the sans-IO call
//! session from `extrasafe-core`, plus the identity store on disk.
//!
//! One [`Node`] owns one UDP socket. It listens for callers (applying an [`AcceptPolicy`]) and
//! places calls ([`Node::call`]). Each call is a [`Call`] handle: send commands, read
//! [`CallEvent`]s. The same API serves the terminal and desktop front ends.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod addrs;
pub mod audio;
mod call;
pub mod dht;
pub mod dial;
mod driver;
mod engine;
mod error;
pub mod gate;
pub mod lan;
mod node;
pub mod observe;
pub mod portmap;
mod probe_socket;
pub mod punch;
pub mod roots;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod video;

pub use addrs::reachable as reachable_addrs;
pub use call::{Call, CallEvent, CallInfo, MediaLink, MediaSendError};
pub use error::{Blame, CallError, HandshakeFailure, MediaEndError, NodeError};
pub use node::{AcceptPolicy, Congestion, Node, NodeConfig};
pub use store::{IdentityStore, StoreError};

pub use extrasafe_core as core;

/// A new identity from the operating system's random source.
pub fn new_identity() -> core::Identity {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    // Without randomness no key can be trusted: this is not a recoverable condition.
    getrandom::fill(&mut seed[..]).expect("the OS random number generator failed");
    core::Identity::from_seed(&seed)
}
pub use extrasafe_media as media;
pub use extrasafe_video as video_media;
