//! The contact list: names the user gave to peer IDs, where each was last reachable, and
//! whether the safety code was compared with them. Kept on the device only, encrypted at rest
//! under a key derived from the identity, so the file alone tells nobody whom the user knows.
//! It holds no call history; the one thing a call changes is the contact's rendezvous root
//! (replaced in every call, for forward secrecy: see `crate::inbox::RootState`).
//!
//! ```text
//! file = "ESC" 0x02 | nonce: 24 | XChaCha20-Poly1305(key, nonce, aad = the 4 magic bytes,
//!                                                  postcard(list of contacts))
//! (version 0x01, without roots, is still read)
//! key  = BLAKE3 derive_key("EXTRA SAFE 2026 contacts at rest v1", identity seed)
//! ```
//! A contact's addresses are stored as its ticket text and read back with the ticket parser,
//! so one hostile-input-tested parser covers both.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::identity::{Identity, PeerId};
use crate::inbox::{InboxChain, RootState};
use crate::sealed;
use crate::text::is_invisible_or_control;
use crate::ticket::Ticket;

/// The file's first bytes: version 2 keeps each contact's rendezvous roots.
const MAGIC: [u8; 4] = *b"ESC\x02";
/// Version 1 (no roots) is still read.
const MAGIC_V1: [u8; 4] = *b"ESC\x01";
const NONCE_LEN: usize = 24;
/// At most this many contacts (a file claiming more is refused).
pub const MAX_CONTACTS: usize = 10_000;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest contacts file accepted.
pub const MAX_FILE_LEN: usize = 4 << 20;
const KEY_CONTEXT: &str = "EXTRA SAFE 2026 contacts at rest v1";

/// Why the contact list could not be read or changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContactsError {
    /// Not a contacts file, or cut short.
    #[error("the contacts file is damaged ({0})")]
    Malformed(&'static str),
    /// Authentication failed: another identity's file, or altered.
    #[error("the contacts file was not written with this identity, or it was altered")]
    WrongKey,
    /// Too many entries.
    #[error("too many contacts (at most {MAX_CONTACTS})")]
    TooMany,
    /// The name cannot be used.
    #[error("{0}")]
    BadName(&'static str),
    /// Someone else already has this name.
    #[error("another contact is already called {0}")]
    NameTaken(String),
    /// No contact matches.
    #[error("no contact called {0}")]
    NotFound(String),
}

/// Someone the user added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The name the user gave.
    pub name: String,
    /// Their identity.
    pub peer: PeerId,
    /// Where they were last reachable (from the last ticket added), possibly nothing.
    pub addrs: Vec<std::net::SocketAddr>,
    /// The secret of the last ticket of theirs we added: it lets us reach them even if they
    /// do not have us as a contact (until they make a new ticket).
    pub secret: Option<crate::access::TicketSecret>,
    /// The safety code was compared with them and matched.
    pub verified: bool,
    /// The root our rendezvous records with them come from, as the last call left it; `None`
    /// until the first call (the pair's key-exchange secret is the root then).
    pub roots: Option<RootState>,
    /// Their inbox chain, as they last told it in a call (`crate::inbox::InboxChain`).
    pub inbox: Option<InboxChain>,
    /// Which chain of ours they hold: the time it was made (`crate::inbox::OwnInbox`'s
    /// `since_ms`), as told them in the call in which they told us theirs. Not the time of
    /// that call: the file keeps no call times.
    pub holds_ours: Option<u64>,
}

impl Contact {
    /// What is stored of their last ticket: addresses and secret, if either is known.
    fn stored_ticket(&self) -> Option<Ticket> {
        (!self.addrs.is_empty() || self.secret.is_some()).then(|| Ticket {
            peer: self.peer,
            secret: self.secret.clone(),
            addrs: self.addrs.clone(),
        })
    }

    /// Their ticket, when an address is known.
    pub fn ticket(&self) -> Option<Ticket> {
        (!self.addrs.is_empty()).then(|| Ticket {
            peer: self.peer,
            secret: self.secret.clone(),
            addrs: self.addrs.clone(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    peer: [u8; 32],
    /// The ticket text, or empty when no address is known.
    ticket: String,
    verified: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredV2 {
    name: String,
    peer: [u8; 32],
    /// The ticket text, or empty when no address is known.
    ticket: String,
    verified: bool,
    /// The current rendezvous root and, until the peer confirmed it, the previous one.
    root: Option<[u8; 32]>,
    previous: Option<[u8; 32]>,
    /// Their inbox chain (a value and its epoch) and which chain of ours they hold.
    inbox: Option<([u8; 32], u64, Option<u64>)>,
}

impl Drop for StoredV2 {
    fn drop(&mut self) {
        self.root.zeroize();
        self.previous.zeroize();
        if let Some((v, _, _)) = &mut self.inbox {
            v.zeroize();
        }
    }
}

/// The key the contact list is sealed with.
pub struct ContactsKey(Zeroizing<[u8; 32]>);

impl ContactsKey {
    /// The key belonging to `identity`.
    pub fn of(identity: &Identity) -> Self {
        Self(Zeroizing::new(blake3::derive_key(
            KEY_CONTEXT,
            &identity.seed()[..],
        )))
    }
}

impl std::fmt::Debug for ContactsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContactsKey(..)")
    }
}

/// What [`ContactBook::add`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A new contact.
    New,
    /// The peer was known: name and addresses brought up to date.
    Updated {
        /// The name it had before.
        was: String,
    },
}

/// The user's contacts, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactBook {
    contacts: Vec<Contact>,
}

/// A name as the user may give it: trimmed, visible characters only, not mistakable for a
/// peer ID or ticket.
pub fn check_name(name: &str) -> Result<String, ContactsError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ContactsError::BadName("a contact needs a name"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ContactsError::BadName("names are at most 64 characters"));
    }
    if name.chars().any(is_invisible_or_control) {
        return Err(ContactsError::BadName(
            "names cannot contain control or invisible characters",
        ));
    }
    let lower = name.to_lowercase();
    if lower.starts_with("es1") || lower.starts_with("est1") {
        return Err(ContactsError::BadName(
            "a name cannot start like a peer ID or ticket (es1/est1)",
        ));
    }
    Ok(name.to_string())
}

/// Levenshtein distance: the fewest insertions, deletions and substitutions from `a` to `b`.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let swap = prev[j] + usize::from(ca != cb);
            row[j + 1] = swap.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

impl ContactBook {
    /// All contacts.
    pub fn list(&self) -> &[Contact] {
        &self.contacts
    }

    /// The contact with this name (any case) or this peer ID.
    pub fn find(&self, query: &str) -> Option<&Contact> {
        self.index(query).map(|i| &self.contacts[i])
    }

    /// The contact whose name is closest to `query` when none matches it exactly: at most 2
    /// edits away (a letter typed twice, missed, swapped for another), and at most one edit
    /// per three letters (so "zoe" is not taken for "bob"). For "did you mean" when a name
    /// was mistyped; `None` if no name is that close, or two are equally close.
    pub fn closest(&self, query: &str) -> Option<&Contact> {
        let q: Vec<char> = query.trim().to_lowercase().chars().collect();
        if q.is_empty() || q.len() > 64 {
            return None;
        }
        let mut best: Option<(usize, &Contact)> = None;
        let mut tie = false;
        for c in &self.contacts {
            let name: Vec<char> = c.name.to_lowercase().chars().collect();
            let d = edit_distance(&q, &name);
            if d == 0 || d > 2 || d * 3 > name.len().max(q.len()) {
                continue;
            }
            match best {
                Some((b, _)) if d > b => {}
                Some((b, _)) if d == b => tie = true,
                _ => {
                    best = Some((d, c));
                    tie = false;
                }
            }
        }
        best.filter(|_| !tie).map(|(_, c)| c)
    }

    /// The contact with this identity.
    pub fn by_peer(&self, peer: &PeerId) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.peer == *peer)
    }

    /// The contact `peer` already is, if under a name other than `name` (compared as names
    /// are, case aside): adding them as `name` would rename them, which a front end should
    /// do only when asked (a ticket pasted under the wrong name must not turn Alice into Bob).
    pub fn known_under_another_name(&self, peer: &PeerId, name: &str) -> Option<&Contact> {
        let name = name.trim().to_lowercase();
        self.by_peer(peer).filter(|c| c.name.to_lowercase() != name)
    }

    fn index(&self, query: &str) -> Option<usize> {
        let q = query.trim();
        if let Ok(peer) = q.parse::<PeerId>() {
            return self.contacts.iter().position(|c| c.peer == peer);
        }
        let q = q.to_lowercase();
        self.contacts
            .iter()
            .position(|c| c.name.to_lowercase() == q)
    }

    /// Adds `peer` as `name`, or updates the name and addresses of a known peer. Addresses
    /// are replaced only when some are given (adding by peer ID keeps the known ones).
    pub fn add(
        &mut self,
        name: &str,
        peer: PeerId,
        addrs: Vec<std::net::SocketAddr>,
    ) -> Result<Added, ContactsError> {
        let name = check_name(name)?;
        let lower = name.to_lowercase();
        if let Some(other) = self
            .contacts
            .iter()
            .find(|c| c.peer != peer && c.name.to_lowercase() == lower)
        {
            return Err(ContactsError::NameTaken(other.name.clone()));
        }
        if let Some(c) = self.contacts.iter_mut().find(|c| c.peer == peer) {
            let was = std::mem::replace(&mut c.name, name);
            if !addrs.is_empty() {
                c.addrs = addrs;
            }
            return Ok(Added::Updated { was });
        }
        if self.contacts.len() >= MAX_CONTACTS {
            return Err(ContactsError::TooMany);
        }
        self.contacts.push(Contact {
            name,
            peer,
            addrs,
            secret: None,
            verified: false,
            roots: None,
            inbox: None,
            holds_ours: None,
        });
        Ok(Added::New)
    }

    /// Adds (or updates) the holder of `ticket` as `name`, keeping its addresses and secret.
    pub fn add_ticket(&mut self, name: &str, ticket: &Ticket) -> Result<Added, ContactsError> {
        let added = self.add(name, ticket.peer, ticket.addrs.clone())?;
        if ticket.secret.is_some() {
            if let Some(c) = self.contacts.iter_mut().find(|c| c.peer == ticket.peer) {
                c.secret = ticket.secret.clone();
            }
        }
        Ok(added)
    }

    /// Removes the contact named `query` (or with that peer ID).
    pub fn remove(&mut self, query: &str) -> Result<Contact, ContactsError> {
        let i = self
            .index(query)
            .ok_or_else(|| ContactsError::NotFound(query.trim().to_string()))?;
        Ok(self.contacts.remove(i))
    }

    /// Marks the contact as verified (or not).
    pub fn set_verified(&mut self, query: &str, verified: bool) -> Result<&Contact, ContactsError> {
        let i = self
            .index(query)
            .ok_or_else(|| ContactsError::NotFound(query.trim().to_string()))?;
        self.contacts[i].verified = verified;
        Ok(&self.contacts[i])
    }

    /// Replaces what is kept of the rendezvous roots with `peer`; `false` if `peer` is not a
    /// contact.
    pub fn set_roots(&mut self, peer: &PeerId, roots: Option<RootState>) -> bool {
        match self.contacts.iter_mut().find(|c| c.peer == *peer) {
            Some(c) => {
                c.roots = roots;
                true
            }
            None => false,
        }
    }

    /// Keeps `chain` as `peer`'s inbox chain, told in a call in which we told ours (made at
    /// `holds_ours`, if we told one), if it is not older than the one kept; returns whether
    /// it was kept (`false` too if `peer` is not a contact).
    pub fn set_inbox(&mut self, peer: &PeerId, chain: InboxChain, holds_ours: Option<u64>) -> bool {
        match self.contacts.iter_mut().find(|c| c.peer == *peer) {
            Some(c)
                if c.inbox
                    .as_ref()
                    .is_none_or(|old| old.epoch() <= chain.epoch()) =>
            {
                c.inbox = Some(chain);
                if holds_ours.is_some() {
                    c.holds_ours = holds_ours;
                }
                true
            }
            _ => false,
        }
    }

    /// The sealed file. `nonce` must be fresh random bytes for every write.
    pub fn encode(&self, key: &ContactsKey, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let stored: Vec<StoredV2> = self
            .contacts
            .iter()
            .map(|c| StoredV2 {
                name: c.name.clone(),
                peer: *c.peer.as_bytes(),
                ticket: c.stored_ticket().map(|t| t.to_string()).unwrap_or_default(),
                verified: c.verified,
                root: c.roots.as_ref().map(|r| *r.current()),
                previous: c.roots.as_ref().and_then(|r| r.previous().copied()),
                inbox: c
                    .inbox
                    .as_ref()
                    .map(|i| (*i.to_bytes(), i.epoch(), c.holds_ours)),
            })
            .collect();
        let plain = Zeroizing::new(postcard::to_allocvec(&stored).expect("contacts serialize"));
        let sealed = sealed::seal(&key.0, &nonce, &MAGIC, &plain);
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed file (see [`Self::from_plaintext`]).
    pub fn decode(bytes: &[u8], key: &ContactsKey) -> Result<Self, ContactsError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(ContactsError::Malformed("too large"));
        }
        if bytes.len() < MAGIC.len() + NONCE_LEN + 16 {
            return Err(ContactsError::Malformed("too short"));
        }
        let magic: [u8; 4] = bytes[..4].try_into().expect("length checked");
        if magic != MAGIC && magic != MAGIC_V1 {
            return Err(ContactsError::Malformed("not a contacts file"));
        }
        let nonce: &[u8; NONCE_LEN] = bytes[4..4 + NONCE_LEN].try_into().expect("length checked");
        let plain = sealed::open(&key.0, nonce, &magic, &bytes[4 + NONCE_LEN..])
            .ok_or(ContactsError::WrongKey)?;
        if magic == MAGIC_V1 {
            let stored: Vec<Stored> =
                postcard::from_bytes(&plain).map_err(|_| ContactsError::Malformed("entries"))?;
            return Self::from_entries(stored.into_iter().map(|s| StoredV2 {
                name: s.name,
                peer: s.peer,
                ticket: s.ticket,
                verified: s.verified,
                root: None,
                previous: None,
                inbox: None,
            }));
        }
        Self::from_plaintext(&plain)
    }

    /// The list from the decrypted entries (version 2), each checked as if it came from a
    /// stranger.
    pub fn from_plaintext(plain: &[u8]) -> Result<Self, ContactsError> {
        let stored: Vec<StoredV2> =
            postcard::from_bytes(plain).map_err(|_| ContactsError::Malformed("entries"))?;
        Self::from_entries(stored.into_iter())
    }

    fn from_entries(
        stored: impl ExactSizeIterator<Item = StoredV2>,
    ) -> Result<Self, ContactsError> {
        if stored.len() > MAX_CONTACTS {
            return Err(ContactsError::TooMany);
        }
        let mut book = ContactBook::default();
        for s in stored {
            let peer = PeerId::from_bytes(s.peer)
                .map_err(|_| ContactsError::Malformed("a peer ID is not a valid key"))?;
            let ticket = if s.ticket.is_empty() {
                Ticket {
                    peer,
                    secret: None,
                    addrs: Vec::new(),
                }
            } else {
                let t: Ticket = s
                    .ticket
                    .parse()
                    .map_err(|_| ContactsError::Malformed("a stored ticket"))?;
                if t.peer != peer {
                    return Err(ContactsError::Malformed("a ticket of someone else"));
                }
                t
            };
            if book.by_peer(&peer).is_some() {
                return Err(ContactsError::Malformed("the same peer twice"));
            }
            book.add_ticket(&s.name, &ticket)?;
            let added = book.contacts.last_mut().expect("just added");
            added.verified = s.verified;
            added.roots = match (s.root, s.previous) {
                (Some(root), previous) => Some(RootState::new(root, previous)),
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(ContactsError::Malformed(
                        "a previous root without a current one",
                    ))
                }
            };
            if let Some((v, e, at)) = s.inbox {
                added.inbox = Some(InboxChain::new(v, e));
                added.holds_ours = at;
            }
        }
        Ok(book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        Identity::generate().peer_id()
    }

    #[test]
    fn a_mistyped_name_finds_the_closest_contact_and_nothing_far_or_ambiguous() {
        let mut book = ContactBook::default();
        for name in ["bob", "Alice", "alicia", "Dmitri"] {
            book.add(name, peer(), vec![]).unwrap();
        }
        let near = |q: &str| book.closest(q).map(|c| c.name.clone());
        assert_eq!(near("bobb").as_deref(), Some("bob"));
        assert_eq!(near("BOP").as_deref(), Some("bob"));
        assert_eq!(near("dimitri").as_deref(), Some("Dmitri"));
        assert_eq!(near("alise").as_deref(), Some("Alice"));
        // Equally close to two names: no guess.
        assert_eq!(near("alici"), None);
        // An exact name is found by `find`, not suggested; far names are not suggested.
        assert_eq!(near("bob"), None);
        assert_eq!(near("carol"), None);
        assert_eq!(near("zoe"), None);
        assert_eq!(near("x"), None);
        assert_eq!(near(""), None);
        assert_eq!(edit_distance(&['a', 'b'], &['b', 'a']), 2);
    }

    #[test]
    fn a_book_survives_sealing_and_only_its_identity_opens_it() {
        let me = Identity::generate();
        let key = ContactsKey::of(&me);
        let mut book = ContactBook::default();
        let alice = peer();
        let addr: std::net::SocketAddr = "192.0.2.7:4433".parse().unwrap();
        assert_eq!(book.add("Alice", alice, vec![addr]).unwrap(), Added::New);
        book.add("bob", peer(), vec![]).unwrap();
        book.set_verified("ALICE", true).unwrap();
        let sealed = book.encode(&key, [7; 24]);
        // Nothing readable in the file: no name, no peer key, no address.
        assert!(!sealed.windows(5).any(|w| w == b"Alice"));
        assert!(!sealed.windows(32).any(|w| w == alice.as_bytes()));
        assert_eq!(ContactBook::decode(&sealed, &key).unwrap(), book);
        let other = ContactsKey::of(&Identity::generate());
        assert_eq!(
            ContactBook::decode(&sealed, &other),
            Err(ContactsError::WrongKey)
        );
        let mut altered = sealed.clone();
        altered[40] ^= 1;
        assert_eq!(
            ContactBook::decode(&altered, &key),
            Err(ContactsError::WrongKey)
        );
        let c = book.find(&alice.to_string()).unwrap();
        assert!(c.verified);
        assert_eq!(c.ticket().unwrap().addrs, vec![addr]);
        assert!(book.find("bob").unwrap().ticket().is_none());
    }

    #[test]
    fn roots_are_kept_sealed_and_version_one_files_still_open() {
        let me = Identity::generate();
        let key = ContactsKey::of(&me);
        let mut book = ContactBook::default();
        let (alice, bob) = (peer(), peer());
        book.add("alice", alice, vec![]).unwrap();
        book.add("bob", bob, vec![]).unwrap();
        let roots = RootState::new([0x5a; 32], Some([0xa5; 32]));
        assert!(book.set_roots(&alice, Some(roots.clone())));
        assert!(book.set_inbox(&alice, InboxChain::new([0x3c; 32], 500), Some(9_000)));
        assert!(
            !book.set_inbox(&alice, InboxChain::new([0x3d; 32], 499), Some(9_500)),
            "older"
        );
        assert_eq!(book.by_peer(&alice).unwrap().holds_ours, Some(9_000));
        assert!(book.set_inbox(&bob, InboxChain::new([0x3e; 32], 7), None));
        assert!(
            !book.set_roots(&peer(), Some(roots.clone())),
            "not a contact"
        );
        let sealed = book.encode(&key, [3; 24]);
        assert_eq!(&sealed[..4], b"ESC\x02");
        assert!(!sealed
            .windows(8)
            .any(|w| w == [0x5a; 8] || w == [0xa5; 8] || w == [0x3c; 8]));
        let back = ContactBook::decode(&sealed, &key).unwrap();
        assert_eq!(back, book);
        assert_eq!(back.by_peer(&alice).unwrap().roots.as_ref(), Some(&roots));
        assert_eq!(back.by_peer(&bob).unwrap().roots, None);
        assert_eq!(
            back.by_peer(&alice).unwrap().inbox,
            Some(InboxChain::new([0x3c; 32], 500))
        );
        assert_eq!(back.by_peer(&alice).unwrap().holds_ours, Some(9_000));
        assert_eq!(back.by_peer(&bob).unwrap().holds_ours, None);
        // The confirmed state drops the previous root from the file too.
        let mut confirmed = book.clone();
        confirmed.set_roots(&alice, Some(RootState::new([0x5a; 32], None)));
        let back = ContactBook::decode(&confirmed.encode(&key, [4; 24]), &key).unwrap();
        assert_eq!(
            back.by_peer(&alice)
                .unwrap()
                .roots
                .as_ref()
                .unwrap()
                .previous(),
            None
        );

        // A file written before roots existed.
        let v1 = vec![Stored {
            name: "carol".into(),
            peer: *alice.as_bytes(),
            ticket: String::new(),
            verified: true,
        }];
        let plain = postcard::to_allocvec(&v1).unwrap();
        let mut file = MAGIC_V1.to_vec();
        file.extend_from_slice(&[9; 24]);
        file.extend_from_slice(&sealed::seal(&key.0, &[9; 24], &MAGIC_V1, &plain));
        let old = ContactBook::decode(&file, &key).unwrap();
        let carol = old.find("carol").unwrap();
        assert!(carol.verified && carol.roots.is_none());
        // Its bytes under the other version's magic do not open (the magic is authenticated).
        file[3] = 2;
        assert_eq!(
            ContactBook::decode(&file, &key),
            Err(ContactsError::WrongKey)
        );
    }

    #[test]
    fn a_known_peer_under_another_name_is_told_apart_from_the_same_name() {
        let mut book = ContactBook::default();
        let (alice, bob) = (peer(), peer());
        book.add("Alice", alice, Vec::new()).unwrap();
        assert_eq!(
            book.known_under_another_name(&alice, "Bob")
                .map(|c| c.name.as_str()),
            Some("Alice")
        );
        assert!(book.known_under_another_name(&alice, " alice ").is_none());
        assert!(book.known_under_another_name(&bob, "Bob").is_none());
    }

    #[test]
    fn names_are_unique_visible_and_not_mistakable_for_ids() {
        let mut book = ContactBook::default();
        let a = peer();
        book.add("alice", a, vec![]).unwrap();
        assert_eq!(
            book.add("ALICE", peer(), vec![]),
            Err(ContactsError::NameTaken("alice".into()))
        );
        for bad in ["", "   ", "es1abc", "EST1xyz", "a\u{202e}b", "x\ny"] {
            assert!(book.add(bad, peer(), vec![]).is_err(), "{bad:?}");
        }
        assert!(book.add(&"x".repeat(65), peer(), vec![]).is_err());
        // The same peer again renames it, and keeps its addresses when none are given.
        let addr: std::net::SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        book.add("alice", a, vec![addr]).unwrap();
        assert_eq!(
            book.add(" Alice B. ", a, vec![]).unwrap(),
            Added::Updated {
                was: "alice".into()
            }
        );
        assert_eq!(book.list().len(), 1);
        assert_eq!(book.list()[0].name, "Alice B.");
        assert_eq!(book.list()[0].addrs, vec![addr]);
        assert_eq!(book.remove("alice b.").unwrap().peer, a);
        assert_eq!(
            book.remove("alice"),
            Err(ContactsError::NotFound("alice".into()))
        );
    }

    #[test]
    fn hostile_files_are_refused_without_panicking() {
        let key = ContactsKey::of(&Identity::generate());
        for bytes in [
            &b""[..],
            b"ESC",
            b"ESC\x01",
            &[0u8; 100],
            &[b'E', b'S', b'C', 1, 0, 0, 0],
        ] {
            assert!(ContactBook::decode(bytes, &key).is_err());
        }
        assert_eq!(
            ContactBook::decode(&vec![0u8; MAX_FILE_LEN + 1], &key),
            Err(ContactsError::Malformed("too large"))
        );
        // Validly sealed but nonsense inside.
        let junk = sealed::seal(&key.0, &[1; 24], &MAGIC, &[0xff; 40]);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[1; 24]);
        file.extend_from_slice(&junk);
        assert!(ContactBook::decode(&file, &key).is_err());
    }
}
