//! The identity key file format: the secret seed, optionally sealed under a passphrase.
//!
//! ```text
//! plain:     "ESK" 0x01 | 0x00 | seed: 32 bytes
//! sealed:    "ESK" 0x01 | 0x01 | m_kib:u32 | t:u32 | p:u32 | salt: 16 | nonce: 24 | ct: 48
//! ```
//! Sealed files derive a 32-byte key with Argon2id (RFC 9106) from the passphrase and salt
//! and encrypt the seed with XChaCha20-Poly1305; the header is the associated data, so the
//! cost parameters cannot be lowered by someone editing the file. Parameters read from a
//! file are bounded so that a planted file cannot make us allocate without limit.

use crate::sealed;
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::identity::Identity;

const MAGIC: [u8; 4] = *b"ESK\x01";
const KIND_PLAIN: u8 = 0;
const KIND_SEALED: u8 = 1;
const PLAIN_LEN: usize = 5 + 32;
const HEADER_LEN: usize = 5 + 12 + 16 + 24;
const SEALED_LEN: usize = HEADER_LEN + 32 + 16;
/// Upper bounds on parameters accepted from a file.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// Argon2id cost. The default (64 MiB, 3 passes, 1 lane) follows RFC 9106's second
/// recommendation; it takes well under a second here and makes each guess expensive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// Why a key file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Not an EXTRA SAFE key file, or damaged.
    #[error("the identity file is damaged or not an EXTRA SAFE key ({0})")]
    Malformed(&'static str),
    /// The file is sealed and no passphrase was given.
    #[error("the identity is protected by a passphrase; provide it")]
    NeedsPassphrase,
    /// The passphrase does not open the file (or the file was altered).
    #[error("wrong passphrase (or the identity file was altered)")]
    WrongPassphrase,
    /// A passphrase was given for a file that is not sealed: the sealed file seen a moment
    /// ago was replaced by a plain key (or the caller is confused). Never loaded.
    #[error("the identity file is not encrypted, though a passphrase was asked for: it may have been replaced; nothing was loaded")]
    UnexpectedPlain,
    /// The cost parameters are out of the accepted range.
    #[error("the identity file asks for unreasonable key-derivation cost")]
    CostOutOfRange,
}

/// Whether a stored key needs a passphrase, without trying to open it.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() > 4 && bytes[..4] == MAGIC && bytes[4] == KIND_SEALED
}

/// Serializes the identity without protection (the file's permissions are the guard).
pub fn encode_plain(identity: &Identity) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(PLAIN_LEN));
    out.extend_from_slice(&MAGIC);
    out.push(KIND_PLAIN);
    out.extend_from_slice(&identity.seed()[..]);
    out
}

/// Seals the identity under `passphrase`. `salt` and `nonce` must be fresh random bytes.
pub fn encode_sealed(
    identity: &Identity,
    passphrase: &[u8],
    cost: KdfCost,
    salt: [u8; 16],
    nonce: [u8; 24],
) -> Result<Vec<u8>, KeyFileError> {
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(KIND_SEALED);
    out.extend_from_slice(&cost.m_kib.to_be_bytes());
    out.extend_from_slice(&cost.t.to_be_bytes());
    out.extend_from_slice(&cost.p.to_be_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let key = derive(passphrase, &salt, cost)?;
    let ct = sealed::seal(&key, &nonce, &out, &identity.seed()[..]);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Reads a key file. A sealed file needs `passphrase`; a plain one is refused when a
/// passphrase is given (the caller saw a sealed file: a plain key in its place was planted).
pub fn decode(bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Identity, KeyFileError> {
    if bytes.len() < 5 || bytes[..4] != MAGIC {
        return Err(KeyFileError::Malformed("bad magic"));
    }
    match bytes[4] {
        KIND_PLAIN if passphrase.is_some() => Err(KeyFileError::UnexpectedPlain),
        KIND_PLAIN => {
            let seed: &[u8; 32] = bytes[5..]
                .try_into()
                .map_err(|_| KeyFileError::Malformed("wrong length"))?;
            Ok(Identity::from_seed(seed))
        }
        KIND_SEALED => {
            if bytes.len() != SEALED_LEN {
                return Err(KeyFileError::Malformed("wrong length"));
            }
            let passphrase = passphrase.ok_or(KeyFileError::NeedsPassphrase)?;
            let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            let cost = KdfCost {
                m_kib: be(5),
                t: be(9),
                p: be(13),
            };
            if cost.m_kib > MAX_M_KIB || cost.t > MAX_T || cost.p > MAX_P {
                return Err(KeyFileError::CostOutOfRange);
            }
            let salt = &bytes[17..33];
            let nonce: &[u8; 24] = bytes[33..57].try_into().expect("24 bytes");
            let key = derive(passphrase, salt, cost)?;
            let seed = sealed::open(&key, nonce, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
                .ok_or(KeyFileError::WrongPassphrase)?;
            let seed: &[u8; 32] = seed[..]
                .try_into()
                .map_err(|_| KeyFileError::Malformed("wrong seed length"))?;
            Ok(Identity::from_seed(seed))
        }
        _ => Err(KeyFileError::Malformed("unknown kind")),
    }
}

fn derive(
    passphrase: &[u8],
    salt: &[u8],
    cost: KdfCost,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let params = Params::new(cost.m_kib, cost.t, cost.p, Some(32))
        .map_err(|_| KeyFileError::CostOutOfRange)?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut key[..])
        .map_err(|_| KeyFileError::CostOutOfRange)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfCost = KdfCost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn plain_round_trip() {
        let id = Identity::generate();
        let file = encode_plain(&id);
        assert!(!is_sealed(&file));
        assert_eq!(decode(&file, None).unwrap().peer_id(), id.peer_id());
    }

    #[test]
    fn sealed_round_trip_and_wrong_passphrase() {
        let id = Identity::generate();
        let file = encode_sealed(&id, b"correct horse", CHEAP, [1; 16], [2; 24]).unwrap();
        assert!(is_sealed(&file));
        // The seed never appears in the sealed file.
        assert!(!file.windows(32).any(|w| w == &id.seed()[..]));
        assert_eq!(
            decode(&file, Some(b"correct horse")).unwrap().peer_id(),
            id.peer_id()
        );
        assert_eq!(
            decode(&file, Some(b"wrong")).unwrap_err(),
            KeyFileError::WrongPassphrase
        );
        assert_eq!(
            decode(&file, None).unwrap_err(),
            KeyFileError::NeedsPassphrase
        );
    }

    #[test]
    fn tampered_cost_is_detected() {
        let id = Identity::generate();
        let mut file = encode_sealed(&id, b"pw", CHEAP, [1; 16], [2; 24]).unwrap();
        file[12] ^= 1; // lower the pass count: header is authenticated
        assert!(decode(&file, Some(b"pw")).is_err());
        let mut huge = encode_sealed(&id, b"pw", CHEAP, [1; 16], [2; 24]).unwrap();
        huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode(&huge, Some(b"pw")).unwrap_err(),
            KeyFileError::CostOutOfRange
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        for n in 0..SEALED_LEN + 3 {
            let junk = vec![0xA5u8; n];
            assert!(decode(&junk, Some(b"x")).is_err());
        }
        let mut half = encode_plain(&Identity::generate()).to_vec();
        half.truncate(20);
        assert!(decode(&half, None).is_err());
    }
}
