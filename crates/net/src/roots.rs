//! The rendezvous roots of our contacts: read by the rendezvous service (records are derived
//! from them) and replaced by the node in every call with a contact (forward secrecy: a disk
//! taken today cannot compute the records of calls before the last one).
//!
//! The roots live in the contact list on disk, which is the one truth between processes: a
//! listener and a caller started beside it both read it (again whenever the file changed)
//! and write it under its lock. Without a store (an ephemeral identity) they are kept in
//! memory only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use extrasafe_core::contacts::{ContactBook, ContactsKey};
use extrasafe_core::inbox::{pair_check, ChainFileKey, InboxChain, OwnInbox, RootState};
use extrasafe_core::rendezvous::PairSecret;
use extrasafe_core::{Identity, PeerId};
use zeroize::Zeroizing;

use crate::store::{IdentityStore, StoreError};

/// A stamp of the contacts file (see [`IdentityStore::contacts_stamp`]).
type Stamp = Option<(u64, u64, std::time::SystemTime)>;

/// The roots of our contacts' rendezvous records: those of the contacts there were when it
/// was made (the identity key is not kept to compute more).
pub struct Roots {
    store: Option<(IdentityStore, ContactsKey)>,
    /// The key our own inbox chain is sealed with on disk (with `store`).
    chain_key: Option<ChainFileKey>,
    cache: Mutex<Cache>,
    /// Woken when this process replaced a root.
    replaced: tokio::sync::Notify,
}

#[derive(Default)]
struct Cache {
    stamp: Stamp,
    loaded: bool,
    /// What the contact list holds (a contact with no entry uses its first root).
    states: HashMap<PeerId, RootState>,
    /// The first root of each contact (the key-exchange secret), computed once.
    initial: HashMap<PeerId, Zeroizing<[u8; 32]>>,
    /// The inbox chains contacts told us, and which chain of ours each holds (its
    /// `since_ms`).
    inboxes: HashMap<PeerId, (InboxChain, Option<u64>)>,
    /// Our own inbox chain (read again with the contact list: removing a contact renews it).
    own: Option<OwnInbox>,
    /// Who is on the contact list now.
    peers: HashSet<PeerId>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots")
            .field("stored", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Roots {
    /// The roots kept in `store`'s contact list, for `identity`'s contacts there now.
    pub fn stored(store: &IdentityStore, identity: &Identity) -> Result<Arc<Self>, StoreError> {
        let book = store.load_contacts(identity)?;
        let peers: Vec<PeerId> = book.list().iter().map(|c| c.peer).collect();
        let roots = Self {
            store: Some((store.clone(), ContactsKey::of(identity))),
            chain_key: Some(ChainFileKey::of(identity)),
            cache: Mutex::new(Cache {
                initial: initial_roots(identity, &peers),
                ..Cache::default()
            }),
            replaced: tokio::sync::Notify::new(),
        };
        Ok(Arc::new(roots))
    }

    /// Roots kept in memory only, for `contacts` (an ephemeral identity, tests).
    pub fn in_memory(identity: &Identity, contacts: &[PeerId]) -> Arc<Self> {
        let initial = initial_roots(identity, contacts);
        let states = initial
            .iter()
            .map(|(p, r)| (*p, RootState::new(**r, None)))
            .collect();
        Arc::new(Self {
            store: None,
            chain_key: None,
            cache: Mutex::new(Cache {
                stamp: None,
                loaded: true,
                states,
                initial,
                inboxes: HashMap::new(),
                own: None,
                peers: contacts.iter().copied().collect(),
            }),
            replaced: tokio::sync::Notify::new(),
        })
    }

    fn initial_of(&self, cache: &mut Cache, peer: &PeerId) -> Option<[u8; 32]> {
        cache.initial.get(peer).map(|r| **r)
    }

    /// Reads the contact list again if the file changed since it was last read.
    fn refresh(&self, cache: &mut Cache) -> Result<(), StoreError> {
        let Some((store, key)) = &self.store else {
            return Ok(());
        };
        let stamp = store.contacts_stamp();
        if cache.loaded && stamp == cache.stamp {
            return Ok(());
        }
        let book = store.load_contacts_with(key)?;
        self.absorb(cache, &book);
        if let Some(chain_key) = &self.chain_key {
            match store.read_own_inbox(chain_key) {
                Ok(own) => cache.own = own,
                Err(e) => tracing::warn!(error = %e, "our inbox chain could not be read"),
            }
        }
        cache.stamp = stamp;
        cache.loaded = true;
        Ok(())
    }

    fn absorb(&self, cache: &mut Cache, book: &ContactBook) {
        cache.states.clear();
        cache.peers = book.list().iter().map(|c| c.peer).collect();
        cache.inboxes = book
            .list()
            .iter()
            .filter_map(|c| Some((c.peer, (c.inbox.clone()?, c.holds_ours))))
            .collect();
        for c in book.list() {
            let state = match &c.roots {
                Some(r) => Some(r.clone()),
                None => self
                    .initial_of(cache, &c.peer)
                    .map(|first| RootState::new(first, None)),
            };
            if let Some(s) = state {
                cache.states.insert(c.peer, s);
            }
        }
    }

    /// Learns the first roots of contacts added to the list since this was made (computing
    /// one needs the identity key, which this does not keep). Without it a new contact's
    /// records are derived from its first root, but no call with it can replace that root.
    pub fn add_contacts(&self, identity: &Identity, peers: &[PeerId]) {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        let new: Vec<PeerId> = peers
            .iter()
            .filter(|p| !cache.initial.contains_key(*p))
            .copied()
            .collect();
        if new.is_empty() {
            return;
        }
        let initial = initial_roots(identity, &new);
        if self.store.is_none() {
            // Kept in memory only: they start from their first roots here.
            for (p, r) in &initial {
                cache.states.insert(*p, RootState::new(**r, None));
                cache.peers.insert(*p);
            }
        }
        cache.initial.extend(initial);
        // With a list on disk, their states come from it on the next read.
        cache.loaded = false;
    }

    /// What we hold for `peer` now, or `None` if `peer` is not a contact (or the list could
    /// not be read).
    pub fn state(&self, peer: &PeerId) -> Option<RootState> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for rendezvous roots");
        }
        cache.states.get(peer).cloned()
    }

    /// The pair with `peer` as records are derived now: for the current root and, while the
    /// peer has not confirmed it, the previous one. Empty if `peer` is not a contact.
    pub fn pairs(&self, pair: &PairSecret) -> Vec<PairSecret> {
        match self.state(&pair.peer()) {
            Some(s) => std::iter::once(s.current())
                .chain(s.previous())
                .map(|root| pair.with_root(root))
                .collect(),
            None => vec![pair.with_root(pair.root())],
        }
    }

    /// The check of each contact's current root (one read of the list if it changed): what
    /// changes when a call replaced a root, so records are published again under the new one.
    pub fn current_checks(&self) -> HashMap<PeerId, [u8; 8]> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for rendezvous roots");
        }
        cache
            .states
            .iter()
            .map(|(p, s)| (*p, pair_check(s.current())))
            .collect()
    }

    /// The inbox chains our contacts told us, by contact (one read of the list if it
    /// changed). A contact whose chain we hold was told ours in the same call.
    pub fn inbox_chains(&self) -> HashMap<PeerId, InboxChain> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for inbox chains");
        }
        cache
            .inboxes
            .iter()
            .map(|(p, (c, _))| (*p, c.clone()))
            .collect()
    }

    /// Our contacts now (one read of the list if it changed): a contact removed since this
    /// process started is no longer among them.
    pub fn contacts(&self) -> HashSet<PeerId> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for rendezvous roots");
        }
        cache.peers.clone()
    }

    /// Our own inbox chain, as the disk has it now (one read if the contact list changed),
    /// or as set by [`Self::set_own_inbox`]; `None` if there is none.
    pub fn own_inbox(&self) -> Option<OwnInbox> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for inbox chains");
        }
        cache.own.clone()
    }

    /// Sets our own inbox chain (roots kept in memory only; on disk it is read from the
    /// store).
    pub fn set_own_inbox(&self, own: OwnInbox) {
        self.cache.lock().expect("roots lock poisoned").own = Some(own);
    }

    /// The contacts who hold our chain made at `since_ms` (told it in a call since).
    pub fn holding_ours(&self, since_ms: u64) -> Vec<PeerId> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        if let Err(e) = self.refresh(&mut cache) {
            tracing::warn!(error = %e, "the contact list could not be read for inbox chains");
        }
        cache
            .inboxes
            .iter()
            .filter(|(_, (_, holds))| *holds == Some(since_ms))
            .map(|(p, _)| *p)
            .collect()
    }

    /// The inbox chain `peer` told us, if any.
    pub fn inbox_of(&self, peer: &PeerId) -> Option<InboxChain> {
        self.inbox_chains().remove(peer)
    }

    /// Returns once a call in this process has replaced a root (after it was stored).
    pub async fn replaced(&self) {
        self.replaced.notified().await
    }

    /// The checks to send `peer` in a call, or `None` if `peer` is not a contact.
    pub fn checks(&self, peer: &PeerId) -> Option<Vec<[u8; 8]>> {
        self.state(peer).map(|s| s.checks())
    }

    /// Replaces `peer`'s root after a call whose ratchet exporter is `exporter`, given the
    /// checks the peer sent, and stores it; returns the check of the new root to tell the
    /// peer (only once it is stored), or `None` if `peer` is not a contact. Blocks on the
    /// disk: run it off the call's thread.
    pub fn ratchet(
        &self,
        peer: &PeerId,
        theirs: &[[u8; 8]],
        exporter: &[u8; 32],
    ) -> Result<Option<[u8; 8]>, StoreError> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        let Some(first) = self.initial_of(&mut cache, peer) else {
            return Ok(None);
        };
        let step = |held: &RootState| held.ratchet(&first, theirs, exporter);
        let new = match &self.store {
            None => match cache.states.get(peer) {
                Some(held) => step(held),
                None => return Ok(None),
            },
            Some((store, key)) => {
                let new = store.update_contacts(key, |book| {
                    let Some(c) = book.by_peer(peer) else {
                        return (false, None);
                    };
                    let held = c
                        .roots
                        .clone()
                        .unwrap_or_else(|| RootState::new(first, None));
                    let new = step(&held);
                    book.set_roots(peer, Some(new.clone()));
                    (true, Some(new))
                })?;
                // Read the list again next time: it was just written.
                cache.loaded = false;
                match new {
                    Some(n) => n,
                    None => return Ok(None),
                }
            }
        };
        let check = pair_check(new.current());
        cache.states.insert(*peer, new);
        drop(cache);
        self.replaced.notify_waiters();
        Ok(Some(check))
    }

    /// Keeps the inbox chain `peer` told us in a call (unless an older one than kept), in
    /// which we told ours, made at `holds_ours` (if we told one); returns whether it was
    /// kept. Blocks on the disk: run it off the call's thread.
    pub fn store_inbox(
        &self,
        peer: &PeerId,
        chain: InboxChain,
        holds_ours: Option<u64>,
    ) -> Result<bool, StoreError> {
        let cache = self.cache.lock().expect("roots lock poisoned");
        if !cache.initial.contains_key(peer) {
            return Ok(false);
        }
        let mut cache = cache;
        match &self.store {
            None => {
                let newer = cache
                    .inboxes
                    .get(peer)
                    .is_none_or(|(old, _)| old.epoch() <= chain.epoch());
                if newer {
                    let held = cache.inboxes.get(peer).and_then(|(_, h)| *h);
                    cache.inboxes.insert(*peer, (chain, holds_ours.or(held)));
                }
                Ok(newer)
            }
            Some((store, key)) => {
                let kept = store.update_contacts(key, |book| {
                    let kept = book.set_inbox(peer, chain, holds_ours);
                    (kept, kept)
                })?;
                cache.loaded = false;
                Ok(kept)
            }
        }
    }

    /// `peer` said it stored the root whose check is `check`: if that is our current root,
    /// the previous one is erased (from the disk too). Returns whether it was. Blocks on the
    /// disk: run it off the call's thread.
    pub fn confirm(&self, peer: &PeerId, check: &[u8; 8]) -> Result<bool, StoreError> {
        let mut cache = self.cache.lock().expect("roots lock poisoned");
        let erased = match &self.store {
            None => match cache.states.get_mut(peer) {
                Some(s) => s.confirm(check),
                None => false,
            },
            Some((store, key)) => {
                let erased = store.update_contacts(key, |book| {
                    let Some(mut held) = book.by_peer(peer).and_then(|c| c.roots.clone()) else {
                        return (false, false);
                    };
                    if !held.confirm(check) {
                        return (false, false);
                    }
                    book.set_roots(peer, Some(held));
                    (true, true)
                })?;
                cache.loaded = false;
                erased
            }
        };
        Ok(erased)
    }
}

/// The first root (the key-exchange secret) `identity` shares with each of `peers`.
fn initial_roots(identity: &Identity, peers: &[PeerId]) -> HashMap<PeerId, Zeroizing<[u8; 32]>> {
    peers
        .iter()
        .filter_map(|p| {
            let pair = PairSecret::new(identity, p).ok()?;
            Some((*p, Zeroizing::new(*pair.initial_root())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sides_ratchet_to_one_root_and_erase_the_old_one_on_disk() {
        let dir = std::env::temp_dir().join(format!("es-roots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (alice, bob) = (crate::new_identity(), crate::new_identity());
        let store = IdentityStore::at(dir.join("alice"));
        let mut book = ContactBook::default();
        book.add("bob", bob.peer_id(), vec![]).unwrap();
        store.save_contacts(&alice, &book).unwrap();
        let a = Roots::stored(&store, &alice).unwrap();
        let b = Roots::in_memory(&bob, &[alice.peer_id()]);
        let first = *PairSecret::new(&alice, &bob.peer_id())
            .unwrap()
            .initial_root();
        assert_eq!(a.state(&bob.peer_id()).unwrap().current(), &first);
        assert_eq!(b.state(&alice.peer_id()).unwrap().current(), &first);
        // A stranger has no roots.
        let stranger = crate::new_identity().peer_id();
        assert!(a.checks(&stranger).is_none());
        assert_eq!(a.ratchet(&stranger, &[], &[1; 32]).unwrap(), None);

        let (ca, cb) = (
            a.checks(&bob.peer_id()).unwrap(),
            b.checks(&alice.peer_id()).unwrap(),
        );
        let sa = a.ratchet(&bob.peer_id(), &cb, &[5; 32]).unwrap().unwrap();
        let sb = b.ratchet(&alice.peer_id(), &ca, &[5; 32]).unwrap().unwrap();
        assert_eq!(sa, sb, "one new root on both sides");
        // Stored at once, with the old root kept until Bob confirms.
        let on_disk = store.load_contacts(&alice).unwrap();
        let held = on_disk
            .by_peer(&bob.peer_id())
            .unwrap()
            .roots
            .clone()
            .unwrap();
        assert_eq!(held.previous(), Some(&first));
        assert_eq!(pair_check(held.current()), sa);
        assert!(a.confirm(&bob.peer_id(), &sb).unwrap());
        let on_disk = store.load_contacts(&alice).unwrap();
        let held = on_disk
            .by_peer(&bob.peer_id())
            .unwrap()
            .roots
            .clone()
            .unwrap();
        assert_eq!(held.previous(), None, "the old root is gone from the disk");
        assert_ne!(held.current(), &first);

        // A list saved from a copy loaded before the call keeps the new root.
        let mut stale = book.clone();
        stale.set_verified("bob", true).unwrap();
        store.save_contacts(&alice, &stale).unwrap();
        let on_disk = store.load_contacts(&alice).unwrap();
        let c = on_disk.by_peer(&bob.peer_id()).unwrap();
        assert!(c.verified);
        assert_eq!(c.roots.as_ref().unwrap().current(), held.current());
        // And another process sees it without being told.
        let again = Roots::stored(&store, &alice).unwrap();
        assert_eq!(again.state(&bob.peer_id()).unwrap(), held);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
