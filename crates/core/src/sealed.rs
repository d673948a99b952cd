//! XChaCha20-Poly1305 with associated data: the one way we seal what we keep (key file,
//! contacts) or publish (rendezvous records).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Encrypts and authenticates `msg`, binding `aad`. `nonce` must never repeat under `key`.
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        .expect("our messages are far below the cipher's length limit")
}

/// The plaintext, if `sealed` was made by [`seal`] with this key, nonce and `aad`.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
        .map(Zeroizing::new)
}
