//! The secrets of the rendezvous that change over time, so that a disk taken today cannot
//! compute where we were before.
//!
//! * [`InboxChain`]: a listener's one-way chain of per-epoch inbox secrets. The listener
//!   tells its current value to a contact inside each authenticated session; both step it
//!   forward as epochs pass and erase the older values. From a value one can compute every
//!   later epoch's inbox, never an earlier one. [`OwnInbox`] is our own chain as kept on
//!   disk, with the time it was made: a new chain (when a contact is removed) cuts off
//!   everyone holding the old one.
//! * [`ratchet_pair`] and [`RootState`]: the root of a pair's rendezvous records, replaced in
//!   every call by mixing it with the session's TLS exporter (fresh, forward-secret key
//!   exchange per session), so that the old root, once erased, cannot be computed from the
//!   new one or from the identity keys.

use zeroize::Zeroizing;

/// Length of one inbox epoch: targets change this often.
pub const INBOX_EPOCH_MS: u64 = 10 * 60 * 1000;

/// Most epochs a chain is stepped forward in one go (about 20 years of 10-minute epochs):
/// a value that old is refused rather than hashed a million times over.
pub const MAX_STEPS: u64 = 1 << 20;

/// The epoch a Unix time in milliseconds falls in.
pub fn inbox_epoch_of(unix_ms: u64) -> u64 {
    unix_ms / INBOX_EPOCH_MS
}

/// One value of a listener's inbox chain and the epoch it belongs to. Wiped on drop; never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct InboxChain {
    value: Zeroizing<[u8; 32]>,
    epoch: u64,
}

impl std::fmt::Debug for InboxChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxChain")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Why a chain value could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The epoch asked for is before the value's: the chain only goes forward.
    #[error("that epoch is in the chain's past")]
    Past,
    /// The epoch asked for is more than [`MAX_STEPS`] ahead.
    #[error("that epoch is too far ahead")]
    TooFar,
    /// The chain file is not one, was sealed under another identity, or was altered.
    #[error("the inbox chain file cannot be read (another identity's, or altered)")]
    Unreadable,
}

/// The first bytes of our chain's file (`inbox.bin`): the file is the magic, a nonce and
/// XChaCha20-Poly1305(key, nonce, aad = magic, chain | has_previous: u8 | previous chain (or
/// zeros)), each chain value: 32 | epoch: u64 BE | since_ms: u64 BE.
const FILE_MAGIC: [u8; 4] = *b"ESI\x02";
/// The first version's magic (no previous chain, 92 bytes): still read.
const FILE_MAGIC_V1: [u8; 4] = *b"ESI\x01";
/// One chain in the file.
const CHAIN_LEN: usize = 48;
/// What the file seals.
const PLAIN_LEN: usize = CHAIN_LEN + 1 + CHAIN_LEN;
/// Size of the chain's file.
pub const FILE_LEN: usize = 4 + 24 + PLAIN_LEN + 16;
/// Size of a first-version file.
const FILE_LEN_V1: usize = 4 + 24 + CHAIN_LEN + 16;

/// The key our own chain is sealed with on disk, derived from the identity.
pub struct ChainFileKey(Zeroizing<[u8; 32]>);

impl ChainFileKey {
    /// The key belonging to `identity`.
    pub fn of(identity: &crate::Identity) -> Self {
        Self(Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 inbox chain at rest v1",
            &identity.seed()[..],
        )))
    }
}

fn step(value: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("EXTRA SAFE 2026 inbox chain step v1", value)
}

impl InboxChain {
    /// A chain starting at `epoch` from `seed` (32 random bytes).
    pub fn new(seed: [u8; 32], epoch: u64) -> Self {
        Self {
            value: Zeroizing::new(seed),
            epoch,
        }
    }

    /// The epoch this value belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The value for `epoch`, computed forward from this one.
    pub fn at(&self, epoch: u64) -> Result<InboxChain, ChainError> {
        let steps = epoch.checked_sub(self.epoch).ok_or(ChainError::Past)?;
        if steps > MAX_STEPS {
            return Err(ChainError::TooFar);
        }
        let mut value = self.value.clone();
        for _ in 0..steps {
            *value = step(&value);
        }
        Ok(InboxChain { value, epoch })
    }

    /// Steps this value forward to `epoch`, erasing the older one (what is stored after an
    /// epoch has passed, so that the disk holds nothing of the past).
    pub fn advance_to(&mut self, epoch: u64) -> Result<(), ChainError> {
        *self = self.at(epoch)?;
        Ok(())
    }

    /// The Ed25519 seed of this epoch's inbox on the DHT (BEP 44 mutable item): every
    /// contact who holds the chain can derive it and write an intent there.
    pub fn inbox_signing_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 inbox signing v1",
            &self.value[..],
        ))
    }

    /// The Ed25519 seed of this epoch's presence record on the DHT (BEP 44 mutable item).
    pub fn presence_signing_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 presence signing v1",
            &self.value[..],
        ))
    }

    /// The key that seals this epoch's presence record (the listener's addresses) for every
    /// contact who holds the chain.
    pub fn presence_seal_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 presence seal v1",
            &self.value[..],
        ))
    }

    /// The raw value, to hand to a contact inside an authenticated session.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.value.clone()
    }
}

/// Our own inbox chain and when it was made (Unix ms): contacts who stored a chain of ours
/// before then hold an old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnInbox {
    /// The chain, at the epoch it was last stepped to.
    pub chain: InboxChain,
    /// When the chain was made.
    pub since_ms: u64,
    /// The chain this one replaced, and when that was made: contacts who hold it (all who
    /// stayed when one was removed) still write their intents into its inbox until a call
    /// tells them the new chain. Its presence is never published again.
    pub previous: Option<(InboxChain, u64)>,
}

fn put_chain(out: &mut [u8], chain: &InboxChain, since_ms: u64) {
    out[..32].copy_from_slice(&chain.value[..]);
    out[32..40].copy_from_slice(&chain.epoch.to_be_bytes());
    out[40..48].copy_from_slice(&since_ms.to_be_bytes());
}

fn get_chain(b: &[u8]) -> (InboxChain, u64) {
    let value: [u8; 32] = b[..32].try_into().expect("a chain's bytes");
    let epoch = u64::from_be_bytes(b[32..40].try_into().expect("a chain's bytes"));
    let since_ms = u64::from_be_bytes(b[40..48].try_into().expect("a chain's bytes"));
    (InboxChain::new(value, epoch), since_ms)
}

impl OwnInbox {
    /// The file that keeps it (`nonce`: fresh random bytes for every write).
    pub fn encode(&self, key: &ChainFileKey, nonce: [u8; 24]) -> Vec<u8> {
        let mut plain = Zeroizing::new([0u8; PLAIN_LEN]);
        put_chain(&mut plain[..CHAIN_LEN], &self.chain, self.since_ms);
        if let Some((chain, since_ms)) = &self.previous {
            plain[CHAIN_LEN] = 1;
            put_chain(&mut plain[CHAIN_LEN + 1..], chain, *since_ms);
        }
        let mut out = FILE_MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&crate::sealed::seal(
            &key.0,
            &nonce,
            &FILE_MAGIC,
            &plain[..],
        ));
        out
    }

    /// What a chain file keeps.
    pub fn decode(bytes: &[u8], key: &ChainFileKey) -> Result<Self, ChainError> {
        let (magic, plain_len) = match bytes.len() {
            FILE_LEN => (FILE_MAGIC, PLAIN_LEN),
            FILE_LEN_V1 => (FILE_MAGIC_V1, CHAIN_LEN),
            _ => return Err(ChainError::Unreadable),
        };
        if bytes[..4] != magic {
            return Err(ChainError::Unreadable);
        }
        let nonce: &[u8; 24] = bytes[4..28].try_into().expect("length checked");
        let plain = Zeroizing::new(
            crate::sealed::open(&key.0, nonce, &magic, &bytes[28..])
                .ok_or(ChainError::Unreadable)?,
        );
        if plain.len() != plain_len {
            return Err(ChainError::Unreadable);
        }
        let (chain, since_ms) = get_chain(&plain[..CHAIN_LEN]);
        let previous = match plain.get(CHAIN_LEN) {
            None | Some(0) => None,
            Some(1) => Some(get_chain(&plain[CHAIN_LEN + 1..])),
            Some(_) => return Err(ChainError::Unreadable),
        };
        Ok(Self {
            chain,
            since_ms,
            previous,
        })
    }

    /// Both chains stepped forward to `epoch` (the older values are gone from memory).
    pub fn advance_to(&mut self, epoch: u64) -> Result<(), ChainError> {
        self.chain.advance_to(epoch)?;
        if let Some((c, _)) = &mut self.previous {
            c.advance_to(epoch)?;
        }
        Ok(())
    }

    /// `fresh` in place of this chain, which becomes its previous one (the one before is
    /// dropped: whoever still holds it falls back to records of their own).
    pub fn replaced_by(self, fresh: InboxChain, since_ms: u64) -> Self {
        Self {
            chain: fresh,
            since_ms,
            previous: Some((self.chain, self.since_ms)),
        }
    }
}

/// The pair secret that replaces `old` after a session whose TLS exporter (for this use) is
/// `exporter`. Both sides compute the same; without the exporter (which only the two
/// endpoints of that session ever had) the new secret cannot be computed from the old one,
/// and without erasing it the old one cannot be found from the new one.
pub fn ratchet_pair(old: &[u8; 32], exporter: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new([0u8; 64]);
    input[..32].copy_from_slice(old);
    input[32..].copy_from_slice(exporter);
    Zeroizing::new(blake3::derive_key(
        "EXTRA SAFE 2026 pair ratchet v1",
        &input[..],
    ))
}

/// A short check value of a pair secret, to send so that two sides that fell out of step (one
/// stored the new secret, the other crashed first) can find the secret both still hold.
/// Reveals nothing of the secret.
pub fn pair_check(secret: &[u8; 32]) -> [u8; 8] {
    let full = blake3::derive_key("EXTRA SAFE 2026 pair check v1", secret);
    full[..8].try_into().expect("8 of 32 bytes")
}

/// Most check values a peer sends: its current root and the one before it.
pub const MAX_CHECKS: usize = 2;

/// What one side holds of the root its rendezvous records with one contact are derived from.
///
/// The first root is the pair's key-exchange secret (both can compute it from their identity
/// keys). Each call that both sides admitted replaces it: each side sends the checks of what
/// it holds ([`RootState::checks`]), both ratchet from the newest root they share, store the
/// result and say so ([`pair_check`] of the new root); a side erases the older root only
/// once the other has said it stored the new one. So a crash between the two writes leaves
/// both able to find a root in common at the next call. Wiped on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RootState {
    current: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for RootState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootState")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl RootState {
    /// A state holding `current` and, until the peer confirms it, `previous`.
    pub fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Self {
        Self {
            current: Zeroizing::new(current),
            previous: previous.map(Zeroizing::new),
        }
    }

    /// The root records are derived from now.
    pub fn current(&self) -> &[u8; 32] {
        &self.current
    }

    /// The root before it, kept until the peer said it stored the current one.
    pub fn previous(&self) -> Option<&[u8; 32]> {
        self.previous.as_deref()
    }

    /// The checks to send the peer: the current root's, then the previous one's.
    pub fn checks(&self) -> Vec<[u8; 8]> {
        std::iter::once(&*self.current)
            .chain(self.previous.as_deref())
            .map(pair_check)
            .collect()
    }

    /// The state after a session whose ratchet exporter is `exporter`, given the checks the
    /// peer sent. The base is the newest root of ours whose check the peer sent, else the
    /// pair's first root `initial` (which both can compute). The base stays as the previous
    /// root until [`Self::confirm`].
    pub fn ratchet(&self, initial: &[u8; 32], theirs: &[[u8; 8]], exporter: &[u8; 32]) -> Self {
        let theirs = &theirs[..theirs.len().min(MAX_CHECKS)];
        let base = std::iter::once(&*self.current)
            .chain(self.previous.as_deref())
            .find(|root| theirs.contains(&pair_check(root)))
            .unwrap_or(initial);
        Self {
            current: ratchet_pair(base, exporter),
            previous: Some(Zeroizing::new(*base)),
        }
    }

    /// The peer said it stored the root with check `check`: if that is our current root, the
    /// previous one is erased and `true` returned (the state must be saved again).
    pub fn confirm(&mut self, check: &[u8; 8]) -> bool {
        if self.previous.is_some() && pair_check(&self.current) == *check {
            self.previous = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides' states after one session, with the given writes lost.
    fn session(
        a: &RootState,
        b: &RootState,
        initial: &[u8; 32],
        exporter: &[u8; 32],
        a_stores: bool,
        b_stores: bool,
    ) -> (RootState, RootState) {
        let (ca, cb) = (a.checks(), b.checks());
        let (mut na, mut nb) = (
            a.ratchet(initial, &cb, exporter),
            b.ratchet(initial, &ca, exporter),
        );
        assert_eq!(na.current(), nb.current(), "both sides derive one root");
        let (sa, sb) = (pair_check(na.current()), pair_check(nb.current()));
        // Each says it stored only once it did; the other erases its previous root on that.
        if a_stores && b_stores {
            assert!(na.confirm(&sb) && nb.confirm(&sa));
        }
        (
            if a_stores { na } else { a.clone() },
            if b_stores { nb } else { b.clone() },
        )
    }

    #[test]
    fn roots_ratchet_every_session_and_survive_a_lost_write() {
        let initial = [9u8; 32];
        let start = RootState::new(initial, None);
        // A normal session: both hold the new root and nothing older.
        let (a, b) = session(&start, &start, &initial, &[1; 32], true, true);
        assert_eq!(a, b);
        assert!(a.previous().is_none());
        assert_ne!(a.current(), &initial);
        // Bob crashes before he stores: Alice keeps the old root beside the new one.
        let (a2, b2) = session(&a, &b, &initial, &[2; 32], true, false);
        assert_eq!(b2, b);
        assert_eq!(a2.previous(), Some(a.current()));
        // The next session finds the root both still hold and they agree again.
        let (a3, b3) = session(&a2, &b2, &initial, &[3; 32], true, true);
        assert_eq!(a3, b3);
        assert_eq!(a3.current(), &*ratchet_pair(a.current(), &[3; 32]));
        // Both lost everything but the first root (a restore from an old backup): they fall
        // back to it rather than failing.
        let lost = RootState::new([7; 32], None);
        let (a4, b4) = session(&a3, &lost, &initial, &[4; 32], true, true);
        assert_eq!(a4.current(), &*ratchet_pair(&initial, &[4; 32]));
        assert_eq!(a4, b4);
        // A check that is not ours erases nothing.
        let mut a5 = a2.clone();
        assert!(!a5.confirm(&pair_check(&initial)));
        assert_eq!(a5, a2);
        // More checks than allowed are not looked at.
        let many = [[0u8; 8], [1; 8], pair_check(a.current())];
        assert_eq!(
            a.ratchet(&initial, &many, &[5; 32]).current(),
            &*ratchet_pair(&initial, &[5; 32])
        );
        assert_eq!(format!("{a2:?}"), "RootState { previous: true, .. }");
    }

    #[test]
    fn the_chain_goes_forward_only() {
        let start = InboxChain::new([7; 32], 100);
        let later = start.at(105).unwrap();
        // A contact told the value at 103 computes the same for 105.
        let told = start.at(103).unwrap();
        assert_eq!(*told.at(105).unwrap().to_bytes(), *later.to_bytes());
        assert_eq!(
            *told.at(105).unwrap().inbox_signing_seed(),
            *later.inbox_signing_seed()
        );
        // Nothing before the value held.
        assert_eq!(later.at(104).unwrap_err(), ChainError::Past);
        let mut held = told.clone();
        held.advance_to(104).unwrap();
        assert_eq!(held.epoch(), 104);
        assert_eq!(held.at(103).unwrap_err(), ChainError::Past);
        // Every epoch's inbox and presence keys differ, and from each other.
        let mut seen = std::collections::HashSet::new();
        for e in 100..120 {
            let v = start.at(e).unwrap();
            assert!(seen.insert(*v.inbox_signing_seed()));
            assert!(seen.insert(*v.presence_seal_key()));
            assert!(seen.insert(*v.to_bytes()));
        }
        assert_eq!(
            start.at(100 + MAX_STEPS + 1).unwrap_err(),
            ChainError::TooFar
        );
    }

    #[test]
    fn the_chain_file_opens_only_with_its_identity() {
        let me = crate::Identity::generate();
        let key = ChainFileKey::of(&me);
        let own = OwnInbox {
            chain: InboxChain::new([0x44; 32], 1234),
            since_ms: 1_700_000_000_123,
            previous: None,
        };
        let file = own.encode(&key, [1; 24]);
        assert_eq!(file.len(), FILE_LEN);
        assert!(!file.windows(8).any(|w| w == [0x44; 8]));
        assert_eq!(OwnInbox::decode(&file, &key).unwrap(), own);
        // With the chain it replaced: the same size.
        let renewed = own
            .clone()
            .replaced_by(InboxChain::new([0x55; 32], 1240), 1_700_000_500_000);
        let file2 = renewed.encode(&key, [2; 24]);
        assert_eq!(file2.len(), FILE_LEN);
        let back = OwnInbox::decode(&file2, &key).unwrap();
        assert_eq!(back, renewed);
        assert_eq!(back.previous, Some((own.chain.clone(), own.since_ms)));
        // A first-version file (one chain, 92 bytes) still opens.
        let mut plain = [0u8; 48];
        put_chain(&mut plain, &own.chain, own.since_ms);
        let mut v1 = FILE_MAGIC_V1.to_vec();
        v1.extend_from_slice(&[3; 24]);
        v1.extend_from_slice(&crate::sealed::seal(
            &key.0,
            &[3; 24],
            &FILE_MAGIC_V1,
            &plain,
        ));
        assert_eq!(v1.len(), FILE_LEN_V1);
        assert_eq!(OwnInbox::decode(&v1, &key).unwrap(), own);
        // Neither version's bytes open as the other's.
        let mut relabelled = file.clone();
        relabelled[..4].copy_from_slice(&FILE_MAGIC_V1);
        assert_eq!(
            OwnInbox::decode(&relabelled, &key),
            Err(ChainError::Unreadable)
        );
        let other = ChainFileKey::of(&crate::Identity::generate());
        assert_eq!(OwnInbox::decode(&file, &other), Err(ChainError::Unreadable));
        let mut bad = file.clone();
        bad[40] ^= 1;
        assert_eq!(OwnInbox::decode(&bad, &key), Err(ChainError::Unreadable));
        assert_eq!(
            OwnInbox::decode(&file[1..], &key),
            Err(ChainError::Unreadable)
        );
    }

    #[test]
    fn the_ratchet_needs_the_sessions_secret() {
        let old = [1u8; 32];
        let a = ratchet_pair(&old, &[2; 32]);
        let b = ratchet_pair(&old, &[2; 32]);
        assert_eq!(*a, *b, "both sides of one session agree");
        assert_ne!(
            *a,
            *ratchet_pair(&old, &[3; 32]),
            "another session, another secret"
        );
        assert_ne!(*a, old);
        assert_ne!(pair_check(&a), pair_check(&old));
        assert_eq!(pair_check(&a), pair_check(&b));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = InboxChain::new([0xab; 32], 5);
        let shown = format!("{c:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        assert!(shown.contains("epoch: 5"));
    }
}
