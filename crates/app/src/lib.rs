//! EXTRA SAFE's application layer, between the network drivers (`extrasafe-net`) and the
//! front ends (the `extrasafe` command and the desktop window), which only render and take
//! input. What lives here exists once for both:
//!
//! * [`reach`]: being reachable by contacts while running (LAN announcement, DHT records,
//!   the router's port mapping, STUN), and answering their call intents with a punch;
//! * [`dial`]: the dial strategy for placing a call (ticket addresses, then LAN and DHT at
//!   once), with the port mapping a caller behind a strict NAT needs;
//! * [`media`]: a call's audio and video, and how mute, camera and screen sharing combine;
//! * [`policy`]: which offered files are taken without asking;
//! * [`transfers`]: a call's file transfers, offered, answered and followed, as events;
//! * [`ending`]: how a call ended (finished, not answered, failed and whose to fix);
//! * [`contacts`]: contacts added to the list on disk while running.
//!
//! Nothing here makes a sentence for people: events and errors are typed, and each front end
//! words them.
#![forbid(unsafe_code)]

pub mod contacts;
pub mod dial;
pub mod ending;
pub mod media;
pub mod policy;
pub mod reach;
pub mod transfers;

pub use policy::{FilesPolicy, PolicyError};
pub use reach::{Presence, ReachConfig, ReachEvent};

/// A background task that is aborted when this is dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
