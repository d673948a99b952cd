//! Private rendezvous records (design: docs/REACH.md). Two contacts share a secret that nobody
//! else can compute (X25519 between their identity keys), and from it, per ten-minute epoch and per
//! direction, the key pair that signs the record on the public DHT and the key that seals it.
//! A stranger sees a fresh public key every ten minutes for every pair and direction, and a
//! ciphertext of one fixed size: nothing links two records, names their owners, or tells how
//! many contacts anyone has.
//!
//! ```text
//! pair     = X25519(my Ed25519 scalar, their Ed25519 key in Montgomery form)
//! root     = pair at first; after each call both admitted, root' = ratchet(root, exporter)
//!            (crate::inbox::RootState; the old root is erased)
//! inputs   = root | publisher peer ID | reader peer ID | epoch (u64 BE), epoch = Unix ms / 600 000
//! signing  = derive_key("EXTRA SAFE 2026 rendezvous signing v1", inputs)  (an Ed25519 seed)
//! seal     = derive_key("EXTRA SAFE 2026 rendezvous seal v1", inputs)
//! value    = nonce: 24 | XChaCha20-Poly1305(seal, nonce, aad = epoch (u64 BE),
//!                                           postcard(Record) zero-padded to 320 bytes)
//! ```
//!
//! A pair's record may carry the publisher's inbox chain (version 2): a contact who never
//! called the publisher learns it there, and writes its call intent into that one inbox
//! instead of a record the publisher would have to poll for each such contact.

use std::net::{IpAddr, SocketAddr};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::{Identity, PeerId};
use crate::sealed;

/// Length of an epoch: records and their keys change every ten minutes.
pub const EPOCH_MS: u64 = 10 * 60 * 1000;
/// At most this many candidate addresses in a record.
pub const MAX_CANDIDATES: usize = 6;
/// Size of every sealed value (BEP 44 allows 1000 bytes).
pub const VALUE_LEN: usize = NONCE_LEN + PADDED_LEN + 16;
/// Size of an inbox value: the caller's record sealed under each root it holds for the pair
/// (two while the last call's root is unconfirmed; else one and random bytes), so that the
/// listener opens it whichever of the two it kept.
pub const INBOX_VALUE_LEN: usize = 2 * VALUE_LEN;
/// Size of a presence value: a record and the listener's signature, sealed.
pub const PRESENCE_LEN: usize = NONCE_LEN + PADDED_LEN + 64 + 16;
/// What the listener's identity signs in a presence record (with the epoch and the record).
const PRESENCE_CONTEXT: &[u8] = b"EXTRA SAFE 2026 presence v1";
const NONCE_LEN: usize = 24;
const PADDED_LEN: usize = 320;
/// Records now written: version 2 may carry the publisher's inbox chain.
const RECORD_VERSION: u8 = 2;
/// The first version (no chain): still read. Its zero padding reads as "no chain".
const RECORD_VERSION_V1: u8 = 1;
/// How far a record's clock may be off ours.
const CLOCK_SLACK_MS: u64 = 5 * 60 * 1000;
/// A call intent lasts at most this long.
pub const MAX_INTENT_MS: u64 = 2 * 60 * 1000;

/// Why a record could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The other key is not usable for a key exchange (a weak point).
    #[error("that peer key cannot be used for a shared secret")]
    WeakKey,
    /// Not a value of the right size.
    #[error("not a rendezvous record (wrong size)")]
    Size,
    /// Sealed with another key (a stranger's, another pair's or another epoch's), or altered.
    #[error("the record is not from this contact for this epoch, or it was altered")]
    NotOurs,
    /// Opened, but its content breaks the rules.
    #[error("the record is malformed: {0}")]
    Malformed(&'static str),
    /// Its time is outside its epoch, or too far from ours.
    #[error("the record is stale or from the future")]
    Stale,
}

/// A candidate address, as carried in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WireAddr {
    ip: [u8; 16],
    v4: bool,
    port: u16,
}

impl From<SocketAddr> for WireAddr {
    fn from(a: SocketAddr) -> Self {
        match a.ip() {
            IpAddr::V4(ip) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&ip.octets());
                Self {
                    ip: b,
                    v4: true,
                    port: a.port(),
                }
            }
            IpAddr::V6(ip) => Self {
                ip: ip.octets(),
                v4: false,
                port: a.port(),
            },
        }
    }
}

impl WireAddr {
    fn to_socket(self) -> Result<SocketAddr, RendezvousError> {
        if self.port == 0 {
            return Err(RendezvousError::Malformed("a candidate without a port"));
        }
        let ip = if self.v4 {
            if self.ip[4..].iter().any(|b| *b != 0) {
                return Err(RendezvousError::Malformed("a bad IPv4 candidate"));
            }
            IpAddr::from([self.ip[0], self.ip[1], self.ip[2], self.ip[3]])
        } else {
            IpAddr::from(self.ip)
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(RendezvousError::Malformed("a candidate nobody can reach"));
        }
        Ok(SocketAddr::new(ip, self.port))
    }
}

#[derive(Serialize, Deserialize)]
struct WireRecord {
    version: u8,
    sent_at_ms: u64,
    candidates: Vec<WireAddr>,
    nat: u8,
    intent: Option<([u8; 16], u64)>,
    /// The publisher's inbox chain: value and epoch (version 2 only).
    inbox: Option<([u8; 32], u64)>,
}

/// A call being placed: the callee starts punching towards the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallIntent {
    /// Names this attempt (also keys its probe tokens).
    pub call_id: [u8; 16],
    /// Unix milliseconds after which the intent is void.
    pub until_ms: u64,
}

/// What one contact tells the other through the DHT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unix milliseconds when it was written; also the BEP 44 sequence number, so a replayed
    /// older record loses to the newer one.
    pub sent_at_ms: u64,
    /// Where the publisher may be reached (at most [`MAX_CANDIDATES`]).
    pub candidates: Vec<SocketAddr>,
    /// How the publisher's NAT maps its call socket, if it measured that.
    pub nat: crate::punch::NatMapping,
    /// Set while the publisher is calling the reader.
    pub intent: Option<CallIntent>,
    /// The publisher's inbox chain, told to a contact who may not hold it yet: what to
    /// write a call intent into (only in a pair's own record, sealed for that contact).
    pub inbox: Option<crate::inbox::InboxChain>,
}

/// The secret two contacts share. Wiped on drop; never printed.
///
/// Records are derived from the pair's *root*: at first the key-exchange secret itself, then
/// whatever the last call ratcheted it to ([`crate::inbox::RootState`]). Access, LAN and punch
/// keys stay derived from the key-exchange secret.
pub struct PairSecret {
    secret: Zeroizing<[u8; 32]>,
    root: Zeroizing<[u8; 32]>,
    me: PeerId,
    them: PeerId,
}

impl std::fmt::Debug for PairSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairSecret(..)")
    }
}

/// The keys of one record: who publishes, for whom, which epoch.
pub struct RecordKeys {
    signing: Zeroizing<[u8; 32]>,
    seal: Zeroizing<[u8; 32]>,
    epoch: u64,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The epoch (ten minutes) a Unix time in milliseconds falls in.
pub fn epoch_of(unix_ms: u64) -> u64 {
    unix_ms / EPOCH_MS
}

impl PairSecret {
    /// The secret `me` shares with `them`; both sides compute the same value.
    pub fn new(me: &Identity, them: &PeerId) -> Result<Self, RendezvousError> {
        let their_key =
            VerifyingKey::from_bytes(them.as_bytes()).map_err(|_| RendezvousError::WeakKey)?;
        if their_key.is_weak() {
            return Err(RendezvousError::WeakKey);
        }
        let mine = Zeroizing::new(SigningKey::from_bytes(&me.seed()).to_scalar_bytes());
        let shared = Zeroizing::new(their_key.to_montgomery().mul_clamped(*mine).to_bytes());
        if shared.iter().all(|b| *b == 0) {
            return Err(RendezvousError::WeakKey);
        }
        Ok(Self {
            root: shared.clone(),
            secret: shared,
            me: me.peer_id(),
            them: *them,
        })
    }

    /// The same pair, its records derived from `root` (what the last call ratcheted to).
    pub fn with_root(&self, root: &[u8; 32]) -> Self {
        Self {
            secret: self.secret.clone(),
            root: Zeroizing::new(*root),
            me: self.me,
            them: self.them,
        }
    }

    /// The pair's first root: the key-exchange secret, which both sides can always compute.
    pub fn initial_root(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The root records are derived from now.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// The other side of the pair.
    pub fn peer(&self) -> PeerId {
        self.them
    }

    /// Keys of the record `publisher` writes for `reader` in `epoch`.
    fn keys(&self, publisher: &PeerId, reader: &PeerId, epoch: u64) -> RecordKeys {
        let mut inputs = Zeroizing::new(Vec::with_capacity(32 * 3 + 8));
        inputs.extend_from_slice(&self.root[..]);
        inputs.extend_from_slice(publisher.as_bytes());
        inputs.extend_from_slice(reader.as_bytes());
        inputs.extend_from_slice(&epoch.to_be_bytes());
        RecordKeys {
            signing: Zeroizing::new(blake3::derive_key(
                "EXTRA SAFE 2026 rendezvous signing v1",
                &inputs,
            )),
            seal: Zeroizing::new(blake3::derive_key(
                "EXTRA SAFE 2026 rendezvous seal v1",
                &inputs,
            )),
            epoch,
        }
    }

    /// The key of the probes of one call attempt (`call_id` from its intent); both sides
    /// derive the same.
    pub fn punch_key(&self, call_id: &[u8; 16]) -> crate::punch::PunchKey {
        crate::punch::PunchKey(Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 punch v1",
            &self.both_sides(call_id),
        )))
    }

    /// The key that tags first flights between the two (`core::access`); both sides derive
    /// the same, so it both admits their calls and makes ours admitted.
    pub fn access_key(&self) -> crate::access::AccessKey {
        crate::access::AccessKey(Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 contact access v1",
            &self.both_sides(&[]),
        )))
    }

    /// The key of the pair's LAN announcement tags (`core::lan`); both sides derive the same.
    pub fn lan_key(&self) -> crate::lan::LanKey {
        crate::lan::LanKey(Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 lan tag v1",
            &self.both_sides(&[]),
        )))
    }

    /// `secret | lower peer ID | higher peer ID | extra`: the same bytes on both sides.
    fn both_sides(&self, extra: &[u8]) -> Zeroizing<Vec<u8>> {
        let (lo, hi) = if self.me <= self.them {
            (self.me, self.them)
        } else {
            (self.them, self.me)
        };
        let mut inputs = Zeroizing::new(Vec::with_capacity(32 * 3 + extra.len()));
        inputs.extend_from_slice(&self.secret[..]);
        inputs.extend_from_slice(lo.as_bytes());
        inputs.extend_from_slice(hi.as_bytes());
        inputs.extend_from_slice(extra);
        inputs
    }

    /// Keys of the record we publish for them.
    pub fn outgoing(&self, epoch: u64) -> RecordKeys {
        self.keys(&self.me, &self.them, epoch)
    }

    /// Keys of the record they publish for us.
    pub fn incoming(&self, epoch: u64) -> RecordKeys {
        self.keys(&self.them, &self.me, epoch)
    }
}

impl RecordKeys {
    /// The keys of a listener's presence record in the chain value's epoch: readable by every
    /// contact who holds the chain, signed inside by the listener's identity.
    pub fn presence(chain: &crate::inbox::InboxChain) -> Self {
        Self {
            signing: chain.presence_signing_seed(),
            seal: chain.presence_seal_key(),
            epoch: chain.epoch(),
        }
    }

    /// The keys of a listener's inbox in the chain value's epoch: every contact who holds the
    /// chain signs the item (a call intent sealed under its pair's keys, see
    /// [`PairSecret::outgoing`]); only the seal of the value says who wrote it.
    pub fn inbox(chain: &crate::inbox::InboxChain) -> Self {
        Self {
            signing: chain.inbox_signing_seed(),
            seal: Zeroizing::new([0; 32]),
            epoch: chain.epoch(),
        }
    }

    /// The Ed25519 seed that signs the record on the DHT (BEP 44 mutable item).
    pub fn signing_seed(&self) -> Zeroizing<[u8; 32]> {
        self.signing.clone()
    }

    /// The public key the record is stored under: what the reader looks up.
    pub fn dht_key(&self) -> [u8; 32] {
        SigningKey::from_bytes(&self.signing)
            .verifying_key()
            .to_bytes()
    }

    /// Seals `record`. `nonce` must be fresh random bytes.
    pub fn seal(
        &self,
        record: &Record,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, RendezvousError> {
        let plain = pad(record)?;
        let sealed = sealed::seal(&self.seal, &nonce, &self.epoch.to_be_bytes(), &plain[..]);
        let mut out = Vec::with_capacity(VALUE_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Seals `record` as a presence record, signed inside by `me` (so that a contact, who
    /// can seal too, cannot plant addresses). `nonce` must be fresh random bytes.
    pub fn seal_presence(
        &self,
        record: &Record,
        me: &Identity,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, RendezvousError> {
        use ed25519_dalek::Signer;
        let padded = pad(record)?;
        let signer = SigningKey::from_bytes(&me.seed());
        let sig = signer.sign(&self.presence_message(&padded[..]));
        let mut plain = Zeroizing::new([0u8; PADDED_LEN + 64]);
        plain[..PADDED_LEN].copy_from_slice(&padded[..]);
        plain[PADDED_LEN..].copy_from_slice(&sig.to_bytes());
        let sealed = sealed::seal(&self.seal, &nonce, &self.presence_aad(), &plain[..]);
        let mut out = Vec::with_capacity(PRESENCE_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a presence record of `publisher`, at local time `now_ms`: it must be sealed
    /// under these keys and signed by `publisher`'s identity.
    pub fn open_presence(
        &self,
        value: &[u8],
        publisher: &PeerId,
        now_ms: u64,
    ) -> Result<Record, RendezvousError> {
        if value.len() != PRESENCE_LEN {
            return Err(RendezvousError::Size);
        }
        let nonce: &[u8; NONCE_LEN] = value[..NONCE_LEN].try_into().expect("length checked");
        let plain = sealed::open(&self.seal, nonce, &self.presence_aad(), &value[NONCE_LEN..])
            .ok_or(RendezvousError::NotOurs)?;
        let (padded, sig) = plain.split_at(PADDED_LEN);
        let key =
            VerifyingKey::from_bytes(publisher.as_bytes()).map_err(|_| RendezvousError::WeakKey)?;
        let sig = ed25519_dalek::Signature::from_slice(sig)
            .map_err(|_| RendezvousError::Malformed("signature"))?;
        key.verify_strict(&self.presence_message(padded), &sig)
            .map_err(|_| RendezvousError::NotOurs)?;
        self.parse(padded, now_ms)
    }

    fn presence_aad(&self) -> [u8; 16] {
        let mut aad = [0u8; 16];
        aad[..8].copy_from_slice(&self.epoch.to_be_bytes());
        aad[8..].copy_from_slice(b"presence");
        aad
    }

    fn presence_message(&self, padded: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(PRESENCE_CONTEXT.len() + 8 + padded.len());
        m.extend_from_slice(PRESENCE_CONTEXT);
        m.extend_from_slice(&self.epoch.to_be_bytes());
        m.extend_from_slice(padded);
        m
    }
}

/// `record` in its wire form, zero-padded to its fixed size.
fn pad(record: &Record) -> Result<Zeroizing<[u8; PADDED_LEN]>, RendezvousError> {
    if record.candidates.len() > MAX_CANDIDATES {
        return Err(RendezvousError::Malformed("too many candidates"));
    }
    let mut wire = WireRecord {
        version: RECORD_VERSION,
        sent_at_ms: record.sent_at_ms,
        candidates: record
            .candidates
            .iter()
            .map(|a| WireAddr::from(*a))
            .collect(),
        nat: record.nat.to_byte(),
        intent: record.intent.map(|i| (i.call_id, i.until_ms)),
        inbox: record.inbox.as_ref().map(|c| (*c.to_bytes(), c.epoch())),
    };
    let mut plain = Zeroizing::new([0u8; PADDED_LEN]);
    let written = postcard::to_slice(&wire, &mut plain[..]).map(|_| ());
    if let Some((value, _)) = wire.inbox.as_mut() {
        zeroize::Zeroize::zeroize(value);
    }
    written.map_err(|_| RendezvousError::Malformed("too large"))?;
    Ok(plain)
}

/// An inbox value: `record` sealed under `newer` and, if given, `older` (the pair's keys under
/// the current and the previous root), in two slots; a slot with no keys holds `filler`,
/// which must be fresh random bytes (as a sealed slot looks). `nonces` must be fresh random
/// bytes.
pub fn seal_inbox(
    newer: &RecordKeys,
    older: Option<&RecordKeys>,
    record: &Record,
    nonces: [[u8; NONCE_LEN]; 2],
    filler: [u8; VALUE_LEN],
) -> Result<Vec<u8>, RendezvousError> {
    let mut out = newer.seal(record, nonces[0])?;
    match older {
        Some(keys) => out.extend_from_slice(&keys.seal(record, nonces[1])?),
        None => out.extend_from_slice(&filler),
    }
    Ok(out)
}

impl RecordKeys {
    /// Opens an inbox value (see [`seal_inbox`]) with these keys: whichever slot opens. A
    /// single record (an intent written before inbox values had two slots) is read too.
    pub fn open_inbox(&self, value: &[u8], now_ms: u64) -> Result<Record, RendezvousError> {
        match value.len() {
            VALUE_LEN => self.open(value, now_ms),
            INBOX_VALUE_LEN => {
                let (first, second) = value.split_at(VALUE_LEN);
                match self.open(first, now_ms) {
                    Ok(r) => Ok(r),
                    // Sealed under the other root (or filler): the second slot tells.
                    Err(RendezvousError::NotOurs) => self.open(second, now_ms),
                    // Ours, but stale or malformed: the second slot holds the same record.
                    Err(e) => Err(e),
                }
            }
            _ => Err(RendezvousError::Size),
        }
    }

    /// Opens a value found under [`Self::dht_key`], at local time `now_ms`.
    pub fn open(&self, value: &[u8], now_ms: u64) -> Result<Record, RendezvousError> {
        if value.len() != VALUE_LEN {
            return Err(RendezvousError::Size);
        }
        let nonce: &[u8; NONCE_LEN] = value[..NONCE_LEN].try_into().expect("length checked");
        let plain = sealed::open(
            &self.seal,
            nonce,
            &self.epoch.to_be_bytes(),
            &value[NONCE_LEN..],
        )
        .ok_or(RendezvousError::NotOurs)?;
        self.parse(&plain, now_ms)
    }

    /// The record in a padded plaintext, checked against this epoch and `now_ms`.
    fn parse(&self, plain: &[u8], now_ms: u64) -> Result<Record, RendezvousError> {
        let (wire, padding): (WireRecord, &[u8]) =
            postcard::take_from_bytes(plain).map_err(|_| RendezvousError::Malformed("content"))?;
        if padding.iter().any(|b| *b != 0) {
            return Err(RendezvousError::Malformed("padding"));
        }
        match wire.version {
            RECORD_VERSION => {}
            RECORD_VERSION_V1 if wire.inbox.is_none() => {}
            RECORD_VERSION_V1 => return Err(RendezvousError::Malformed("padding")),
            _ => return Err(RendezvousError::Malformed("unknown version")),
        }
        if wire.candidates.len() > MAX_CANDIDATES {
            return Err(RendezvousError::Malformed("too many candidates"));
        }
        let in_epoch = epoch_of(wire.sent_at_ms) == self.epoch;
        if !in_epoch || wire.sent_at_ms > now_ms.saturating_add(CLOCK_SLACK_MS) {
            return Err(RendezvousError::Stale);
        }
        let candidates = wire
            .candidates
            .into_iter()
            .map(WireAddr::to_socket)
            .collect::<Result<Vec<_>, _>>()?;
        let intent = match wire.intent {
            // An intent that has run out, or claims to last too long, is ignored, not trusted.
            Some((call_id, until_ms))
                if until_ms > now_ms && until_ms <= now_ms.saturating_add(MAX_INTENT_MS) =>
            {
                Some(CallIntent { call_id, until_ms })
            }
            _ => None,
        };
        let inbox = wire.inbox.map(|(value, epoch)| {
            let chain = crate::inbox::InboxChain::new(value, epoch);
            // The wire form's copy of the secret is wiped here.
            let mut value = value;
            zeroize::Zeroize::zeroize(&mut value);
            chain
        });
        Ok(Record {
            sent_at_ms: wire.sent_at_ms,
            candidates,
            nat: crate::punch::NatMapping::from_byte(wire.nat),
            intent,
            inbox,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000_000;

    /// `wire` in its padded form, sealed as `ab`'s record for its peer in epoch `e`.
    fn sealed_as_record<T: Serialize>(ab: &PairSecret, e: u64, wire: &T) -> Vec<u8> {
        let mut plain = Zeroizing::new([0u8; PADDED_LEN]);
        postcard::to_slice(wire, &mut plain[..]).expect("fits the padded size");
        let mut value = vec![1u8; NONCE_LEN];
        value.extend(sealed::seal(
            &ab.outgoing(e).seal,
            &[1; NONCE_LEN],
            &e.to_be_bytes(),
            &plain[..],
        ));
        value
    }

    fn record() -> Record {
        Record {
            sent_at_ms: NOW,
            candidates: vec![
                "198.51.100.7:4433".parse().unwrap(),
                "[2001:db8::5]:4433".parse().unwrap(),
            ],
            nat: crate::punch::NatMapping::Varies,
            intent: Some(CallIntent {
                call_id: [9; 16],
                until_ms: NOW + 30_000,
            }),
            inbox: None,
        }
    }

    #[test]
    fn an_inbox_value_opens_under_whichever_root_the_listener_kept() {
        let (_, _, ab, ba) = contacts();
        let e = epoch_of(NOW);
        let (old_root, new_root) = ([3u8; 32], [4u8; 32]);
        let writer = |root: &[u8; 32]| ab.with_root(root).outgoing(e);
        let reader = |root: &[u8; 32]| ba.with_root(root).incoming(e);
        // The caller holds both roots (the last call's is unconfirmed): either opens it.
        let both = seal_inbox(
            &writer(&new_root),
            Some(&writer(&old_root)),
            &record(),
            [[1; 24], [2; 24]],
            [0; VALUE_LEN],
        )
        .unwrap();
        assert_eq!(both.len(), INBOX_VALUE_LEN);
        assert!(both.len() <= crate::krpc::MAX_VALUE_LEN);
        for root in [&old_root, &new_root] {
            assert_eq!(reader(root).open_inbox(&both, NOW).unwrap(), record());
        }
        assert_eq!(
            reader(&[5; 32]).open_inbox(&both, NOW),
            Err(RendezvousError::NotOurs)
        );
        // One root: the other slot is filler, and only that root opens it.
        let one = seal_inbox(
            &writer(&new_root),
            None,
            &record(),
            [[1; 24], [2; 24]],
            [0xA5; VALUE_LEN],
        )
        .unwrap();
        assert_eq!(one.len(), INBOX_VALUE_LEN);
        assert_eq!(reader(&new_root).open_inbox(&one, NOW).unwrap(), record());
        assert_eq!(
            reader(&old_root).open_inbox(&one, NOW),
            Err(RendezvousError::NotOurs)
        );
        // A single record (written before inbox values had two slots) still opens; other
        // sizes are refused before any decryption.
        let single = writer(&new_root).seal(&record(), [1; 24]).unwrap();
        assert_eq!(
            reader(&new_root).open_inbox(&single, NOW).unwrap(),
            record()
        );
        for len in [0, VALUE_LEN - 1, VALUE_LEN + 1, INBOX_VALUE_LEN + 1] {
            assert_eq!(
                reader(&new_root).open_inbox(&vec![0; len], NOW),
                Err(RendezvousError::Size)
            );
        }
        // A record from too far in the future is refused as such, not as somebody else's.
        let early = NOW - CLOCK_SLACK_MS - 1;
        assert_eq!(
            reader(&new_root).open_inbox(&both, early),
            Err(RendezvousError::Stale)
        );
    }

    #[test]
    fn a_record_can_tell_the_publishers_inbox_chain_and_old_records_still_open() {
        let (_, _, ab, ba) = contacts();
        let e = epoch_of(NOW);
        // The largest record there is: every candidate IPv6, an intent and a chain.
        let full = Record {
            candidates: (0..MAX_CANDIDATES as u16)
                .map(|i| SocketAddr::new("2001:db8::5".parse().unwrap(), 40_000 + i))
                .collect(),
            inbox: Some(crate::inbox::InboxChain::new([7; 32], e)),
            ..record()
        };
        let value = ab.outgoing(e).seal(&full, [4; 24]).unwrap();
        assert_eq!(value.len(), VALUE_LEN);
        let opened = ba.incoming(e).open(&value, NOW).unwrap();
        assert_eq!(opened, full);
        assert_eq!(
            opened.inbox.unwrap().at(e + 3),
            crate::inbox::InboxChain::new([7; 32], e).at(e + 3)
        );
        // A first-version record (no chain) still opens, as one without a chain.
        let v1 = (
            RECORD_VERSION_V1,
            NOW,
            Vec::<WireAddr>::new(),
            0u8,
            None::<([u8; 16], u64)>,
        );
        let old = ba
            .incoming(e)
            .open(&sealed_as_record(&ab, e, &v1), NOW)
            .unwrap();
        assert_eq!(old.inbox, None);
        assert!(old.candidates.is_empty());
        // A first-version record cannot carry a chain, and no unknown version opens.
        for (version, inbox) in [(RECORD_VERSION_V1, Some(([7u8; 32], e))), (3, None)] {
            let wire = WireRecord {
                version,
                sent_at_ms: NOW,
                candidates: Vec::new(),
                nat: 0,
                intent: None,
                inbox,
            };
            assert!(matches!(
                ba.incoming(e).open(&sealed_as_record(&ab, e, &wire), NOW),
                Err(RendezvousError::Malformed(_))
            ));
        }
    }

    /// Alice, Bob, and the secret each of them computes for the other.
    fn contacts() -> (Identity, Identity, PairSecret, PairSecret) {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let ab = PairSecret::new(&alice, &bob.peer_id()).unwrap();
        let ba = PairSecret::new(&bob, &alice.peer_id()).unwrap();
        (alice, bob, ab, ba)
    }

    #[test]
    fn a_presence_record_opens_only_as_its_listeners() {
        let (alice, bob, _, _) = contacts();
        let epoch = epoch_of(NOW);
        let chain = crate::inbox::InboxChain::new([5; 32], epoch);
        let keys = RecordKeys::presence(&chain);
        let mut r = record();
        r.intent = None;
        let value = keys.seal_presence(&r, &bob, [3; 24]).unwrap();
        assert_eq!(value.len(), PRESENCE_LEN);
        // A contact who holds Bob's chain reads it, signed by Bob.
        let reader = RecordKeys::presence(&chain);
        assert_eq!(
            reader.open_presence(&value, &bob.peer_id(), NOW).unwrap(),
            r
        );
        // Claimed for someone else, it does not open.
        assert_eq!(
            reader.open_presence(&value, &alice.peer_id(), NOW),
            Err(RendezvousError::NotOurs)
        );
        // Alice holds the chain too and can seal, but not as Bob: she cannot plant addresses.
        let forged = keys.seal_presence(&r, &alice, [4; 24]).unwrap();
        assert_eq!(
            reader.open_presence(&forged, &bob.peer_id(), NOW),
            Err(RendezvousError::NotOurs)
        );
        // Another epoch's keys, and a per-pair record's size, do not open it.
        let next = RecordKeys::presence(&chain.at(epoch + 1).unwrap());
        assert_ne!(next.dht_key(), keys.dht_key());
        assert_eq!(
            next.open_presence(&value, &bob.peer_id(), NOW),
            Err(RendezvousError::NotOurs)
        );
        assert_eq!(
            reader.open_presence(&value[..VALUE_LEN], &bob.peer_id(), NOW),
            Err(RendezvousError::Size)
        );
        // The inbox is another item of the same epoch.
        assert_ne!(RecordKeys::inbox(&chain).dht_key(), keys.dht_key());
        // Nothing in the value shows Bob's key.
        assert!(!value.windows(32).any(|w| w == bob.peer_id().as_bytes()));
    }

    #[test]
    fn both_contacts_derive_the_same_keys_and_nobody_else_can_read() {
        let (alice, _, ab, ba) = contacts();
        let eve = Identity::generate();
        let e = epoch_of(NOW);
        let out = ab.outgoing(e);
        let inc = ba.incoming(e);
        assert_eq!(out.dht_key(), inc.dht_key());
        let value = out.seal(&record(), [3; 24]).unwrap();
        assert_eq!(value.len(), VALUE_LEN);
        assert_eq!(inc.open(&value, NOW + 1000).unwrap(), record());
        // Eve, who knows both peer IDs, has neither the lookup key nor the seal key.
        let ea = PairSecret::new(&eve, &alice.peer_id()).unwrap();
        assert_ne!(ea.incoming(e).dht_key(), out.dht_key());
        assert_eq!(
            ea.incoming(e).open(&value, NOW),
            Err(RendezvousError::NotOurs)
        );
        // Bob's own outgoing record is a different item.
        assert_ne!(ba.outgoing(e).dht_key(), out.dht_key());
        // Nothing in the value names anyone or any address.
        assert!(!value.windows(4).any(|w| w == [198, 51, 100, 7]));
        assert!(!value.windows(32).any(|w| w == alice.peer_id().as_bytes()));
    }

    #[test]
    fn records_of_other_hours_and_other_pairs_do_not_link_or_open() {
        let (alice, _, ab, ba) = contacts();
        let ac = PairSecret::new(&alice, &Identity::generate().peer_id()).unwrap();
        let e = epoch_of(NOW);
        let keys: Vec<[u8; 32]> = vec![
            ab.outgoing(e).dht_key(),
            ab.outgoing(e + 1).dht_key(),
            ac.outgoing(e).dht_key(),
            ab.incoming(e).dht_key(),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        // Last hour's record replayed this hour does not open; nor does one dated outside
        // its hour, or from the future.
        let old = ab
            .outgoing(e - 1)
            .seal(
                &Record {
                    sent_at_ms: NOW - EPOCH_MS,
                    ..record()
                },
                [1; 24],
            )
            .unwrap();
        assert_eq!(
            ba.incoming(e).open(&old, NOW),
            Err(RendezvousError::NotOurs)
        );
        let misdated = ab
            .outgoing(e)
            .seal(
                &Record {
                    sent_at_ms: NOW - EPOCH_MS,
                    ..record()
                },
                [1; 24],
            )
            .unwrap();
        assert_eq!(
            ba.incoming(e).open(&misdated, NOW),
            Err(RendezvousError::Stale)
        );
        let future = epoch_of(NOW) * EPOCH_MS + EPOCH_MS - 1;
        let ahead = ab
            .outgoing(e)
            .seal(
                &Record {
                    sent_at_ms: future,
                    ..record()
                },
                [1; 24],
            )
            .unwrap();
        let early = epoch_of(NOW) * EPOCH_MS;
        assert_eq!(
            ba.incoming(e).open(&ahead, early),
            Err(RendezvousError::Stale)
        );
    }

    #[test]
    fn intents_expire_and_cannot_claim_long_lives() {
        let (_, _, ab, ba) = contacts();
        let e = epoch_of(NOW);
        let value = ab.outgoing(e).seal(&record(), [2; 24]).unwrap();
        assert!(ba
            .incoming(e)
            .open(&value, NOW + 29_000)
            .unwrap()
            .intent
            .is_some());
        assert!(ba
            .incoming(e)
            .open(&value, NOW + 31_000)
            .unwrap()
            .intent
            .is_none());
        let long = Record {
            intent: Some(CallIntent {
                call_id: [1; 16],
                until_ms: NOW + 10 * 60 * 1000,
            }),
            ..record()
        };
        let value = ab.outgoing(e).seal(&long, [2; 24]).unwrap();
        assert!(ba.incoming(e).open(&value, NOW).unwrap().intent.is_none());
    }

    #[test]
    fn hostile_values_and_keys_are_refused() {
        let (alice, _, ab, _) = contacts();
        let keys = ab.incoming(epoch_of(NOW));
        for len in [0, 1, VALUE_LEN - 1, VALUE_LEN + 1, 5000] {
            assert_eq!(keys.open(&vec![0u8; len], NOW), Err(RendezvousError::Size));
        }
        assert_eq!(
            keys.open(&[0u8; VALUE_LEN], NOW),
            Err(RendezvousError::NotOurs)
        );
        let too_many = Record {
            candidates: vec!["192.0.2.1:1".parse().unwrap(); MAX_CANDIDATES + 1],
            ..record()
        };
        assert!(ab.outgoing(0).seal(&too_many, [0; 24]).is_err());
        // Small-order points as peer keys give no secret: refused as peer IDs or here.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        for weak in [[0u8; 32], identity_point] {
            match PeerId::from_bytes(weak) {
                Err(_) => {}
                Ok(weak) => assert_eq!(
                    PairSecret::new(&alice, &weak).unwrap_err(),
                    RendezvousError::WeakKey
                ),
            }
        }
    }
}
