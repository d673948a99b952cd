//! Following the contact list on disk while running: a contact added by another process
//! (`extrasafe contact add` in a second terminal, beside a running listener) must be able to
//! reach us at once, not after a restart. Removals need no report here: the node's gate,
//! the LAN announcement and the DHT service each drop a removed contact by themselves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_core::PeerId;
use extrasafe_net::roots::Roots;
use tokio::sync::mpsc;

use crate::AbortOnDrop;

/// How often the list on disk is looked at (a stat of the file; read only when it changed).
pub const CHECK: Duration = extrasafe_net::lan::CONTACTS_CHECK;

/// Reports the whole list of contacts each time one or more were added to the list on disk,
/// starting from `known`. The front end then lets the new ones in and starts reachability
/// anew for all (see [`crate::Presence::start`]); [`Roots::add_contacts`] gives their
/// records a root that calls can replace.
pub fn additions(
    roots: Arc<Roots>,
    known: &[PeerId],
) -> (mpsc::Receiver<Vec<PeerId>>, AbortOnDrop) {
    let (tx, rx) = mpsc::channel(1);
    let mut known: HashSet<PeerId> = known.iter().copied().collect();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = roots.clone();
            // A file read and decryption: off the async workers.
            let Ok(now) = tokio::task::spawn_blocking(move || r.contacts()).await else {
                continue;
            };
            let grew = now.iter().any(|p| !known.contains(p));
            known = now;
            if grew && tx.send(known.iter().copied().collect()).await.is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(task))
}
