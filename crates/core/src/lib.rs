//! EXTRA SAFE protocol logic, free of I/O.
//!
//! Nothing in this crate opens a socket, reads a clock or spawns a task: every state machine
//! takes bytes and an `Instant` in and gives bytes, events and its next deadline out. The
//! `extrasafe-net` crate drives these machines over QUIC; tests drive them with virtual time.
//!
//! ```text
//!  identity ──► PeerId ──► Ticket (peer + addresses, shared out of band)
//!      │                        │
//!      ▼                        ▼
//!  keyfile (at rest)      net: QUIC + TLS 1.3, raw public keys pinned to the PeerId
//!                               │ TLS exporter
//!                               ▼
//!                 sas (short authentication string, safety number)
//!                               │
//!  wire (control frames) ◄──► session (call state machine, sans-IO)
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod bep42;
pub mod call;
pub mod contacts;
pub mod identity;
pub mod inbox;
pub mod invite;
pub mod keyfile;
pub mod krpc;
pub mod lan;
pub mod media;
pub mod observe;
pub mod punch;
pub mod rendezvous;
pub mod sas;
mod sealed;
pub mod session;
#[cfg(test)]
mod sim;
pub mod stun;
pub mod text;
pub mod ticket;
pub mod transfer;
pub mod video;
pub mod walk;
pub mod wire;

pub use identity::{Identity, PeerId, PeerIdError};
pub use session::{EndReason, Event, Role, Session, SessionConfig, Violation};
pub use ticket::{Ticket, TicketError};
