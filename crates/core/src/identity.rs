//! Ed25519 identities and their public form, the peer ID.
//!
//! A person *is* their public key. The peer ID is that key in bech32m (BIP 350) with the
//! human-readable prefix `es`: a 32-character alphabet without look-alike characters and a
//! BCH checksum that catches any four mistyped characters, so a mistyped ID is rejected
//! instead of silently naming a stranger.

use std::fmt;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::{Zeroize, Zeroizing};

/// Human-readable prefix of a peer ID.
pub const PEER_ID_HRP: &str = "es";
/// Longest string accepted where a peer ID is expected; the encoding of 32 bytes is 61.
const MAX_PEER_ID_LEN: usize = 90;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A public identity: the 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

/// Why a string or key is not a valid peer ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerIdError {
    /// The text is not bech32m, or its checksum is wrong (a typo).
    #[error("not a peer ID: the checksum does not match (check for a typo)")]
    Checksum,
    /// The text is far longer than any peer ID.
    #[error("not a peer ID: too long")]
    TooLong,
    /// Valid bech32m, but with another prefix (perhaps a ticket).
    #[error("not a peer ID: it should start with `es1`")]
    WrongPrefix,
    /// The payload is not 32 bytes or not a point on the curve.
    #[error("not a peer ID: the key inside is invalid")]
    BadKey,
}

impl PeerId {
    /// Wraps raw public key bytes. Refused: bytes that are not a curve point, small-order
    /// points (for which signatures can be forged) and non-canonical encodings (two byte
    /// strings for one key would give one person two peer IDs).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, PeerIdError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| PeerIdError::BadKey)?;
        if key.is_weak() || key.to_bytes() != bytes {
            return Err(PeerIdError::BadKey);
        }
        Ok(Self(bytes))
    }

    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a DER SubjectPublicKeyInfo, the form TLS raw public keys (RFC 7250) carry.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(44);
        der.extend_from_slice(&ED25519_SPKI_PREFIX);
        der.extend_from_slice(&self.0);
        der
    }

    /// Reads an Ed25519 SubjectPublicKeyInfo; anything else is refused.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, PeerIdError> {
        let key = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .ok_or(PeerIdError::BadKey)?;
        let bytes: [u8; 32] = key.try_into().map_err(|_| PeerIdError::BadKey)?;
        Self::from_bytes(bytes)
    }

    /// A short, non-identifying form for logs at debug level: first 8 characters of the ID's
    /// payload. Never log the full ID above debug.
    pub fn short(&self) -> String {
        self.to_string()[3..11].to_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(PEER_ID_HRP);
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl std::str::FromStr for PeerId {
    type Err = PeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_PEER_ID_LEN {
            return Err(PeerIdError::TooLong);
        }
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|_| PeerIdError::Checksum)?;
        if !checked.hrp().as_str().eq_ignore_ascii_case(PEER_ID_HRP) {
            return Err(PeerIdError::WrongPrefix);
        }
        let mut bytes = [0u8; 32];
        let mut n = 0;
        for b in checked.byte_iter() {
            if n == 32 {
                return Err(PeerIdError::BadKey);
            }
            bytes[n] = b;
            n += 1;
        }
        if n != 32 {
            return Err(PeerIdError::BadKey);
        }
        Self::from_bytes(bytes)
    }
}

/// A private identity. The secret seed is wiped from memory when this is dropped and never
/// appears in `Debug` output.
pub struct Identity {
    signing: SigningKey,
}

/// For core's own tests: a new identity from the OS random source (core itself never draws
/// randomness; `extrasafe_net::new_identity` does for the layers above).
#[cfg(test)]
impl Identity {
    pub(crate) fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).expect("the OS random number generator failed");
        Self::from_seed(&seed)
    }
}

impl Identity {
    /// Rebuilds an identity from its 32-byte secret seed; a new identity is made from 32
    /// bytes of randomness the caller draws (core takes randomness in, never draws it: see
    /// `extrasafe_net::new_identity`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for storage. Handle with care; it is wiped when the result drops.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The secret of our current ticket: derived from the identity key and a salt kept
    /// beside it, so a new salt makes a new ticket (and the old ones stop working) while
    /// nothing secret is stored apart from the key.
    pub fn ticket_secret(&self, salt: &[u8; 16]) -> crate::access::TicketSecret {
        let mut input = Zeroizing::new([0u8; 48]);
        input[..32].copy_from_slice(&self.seed()[..]);
        input[32..].copy_from_slice(salt);
        let k = Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 ticket secret v1",
            &input[..],
        ));
        let mut s = [0u8; crate::access::TICKET_SECRET_LEN];
        s.copy_from_slice(&k[..crate::access::TICKET_SECRET_LEN]);
        let secret = crate::access::TicketSecret::from_bytes(s);
        s.zeroize();
        secret
    }

    /// The public identity.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.signing.verifying_key().to_bytes())
    }

    /// The private key as PKCS#8 v1 DER, the form TLS libraries load. Wiped on drop.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&ED25519_PKCS8_PREFIX);
        let mut seed = self.signing.to_bytes();
        der.extend_from_slice(&seed);
        seed.zeroize();
        der
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_and_is_compact() {
        let id = Identity::generate().peer_id();
        let s = id.to_string();
        assert!(s.starts_with("es1"));
        assert_eq!(s.len(), 61);
        assert_eq!(s.parse::<PeerId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<PeerId>().unwrap(), id);
    }

    #[test]
    fn every_single_typo_is_caught() {
        let s = Identity::from_seed(&[7; 32]).peer_id().to_string();
        let alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        for i in 3..s.len() {
            for c in alphabet.chars() {
                if s.as_bytes()[i] as char == c {
                    continue;
                }
                let mut t = s.clone();
                t.replace_range(i..=i, &c.to_string());
                assert!(t.parse::<PeerId>().is_err(), "typo at {i} accepted");
            }
        }
    }

    #[test]
    fn swapped_neighbours_are_caught() {
        let s = Identity::from_seed(&[9; 32]).peer_id().to_string();
        let b = s.as_bytes();
        for i in 3..s.len() - 1 {
            if b[i] == b[i + 1] {
                continue;
            }
            let mut t = b.to_vec();
            t.swap(i, i + 1);
            let t = String::from_utf8(t).unwrap();
            assert!(t.parse::<PeerId>().is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let ident = Identity::from_seed(&[0x42; 32]);
        let dbg = format!("{ident:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains("42, 42"));
        assert!(!dbg.to_lowercase().contains("4242"));
    }

    #[test]
    fn spki_round_trip_and_refusal() {
        let id = Identity::generate().peer_id();
        assert_eq!(PeerId::from_spki_der(&id.to_spki_der()).unwrap(), id);
        let mut bad = id.to_spki_der();
        bad[5] ^= 1;
        assert!(PeerId::from_spki_der(&bad).is_err());
        assert!(PeerId::from_spki_der(&bad[..20]).is_err());
    }

    #[test]
    fn pkcs8_is_rfc8410_layout() {
        let ident = Identity::from_seed(&[3; 32]);
        let der = ident.to_pkcs8_der();
        assert_eq!(der.len(), 48);
        assert_eq!(&der[16..], &[3; 32]);
    }

    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        // The identity point (small order) and its non-canonical twin (y = p + 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PeerId::from_bytes(identity), Err(PeerIdError::BadKey));
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert_eq!(PeerId::from_bytes(non_canonical), Err(PeerIdError::BadKey));
        assert!(PeerId::from_bytes(Identity::generate().peer_id().0).is_ok());
    }

    #[test]
    fn wrong_prefix_is_named() {
        let hrp = Hrp::parse_unchecked("est");
        let s = bech32::encode::<Bech32m>(hrp, &[1; 32]).unwrap();
        assert_eq!(s.parse::<PeerId>(), Err(PeerIdError::WrongPrefix));
    }
}
