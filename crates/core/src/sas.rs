//! What two people read to each other to know no one is in the middle.
//!
//! * The **short authentication string** (SAS) is six digits from the TLS exporter (RFC 8446
//!   §7.5) of this very connection and two nonces exchanged by commit and reveal:
//!
//!   ```text
//!   caller → callee   SasCommit  c = BLAKE3-derive("… sas commit v2", exporter | n_caller)
//!   callee → caller   SasNonce   n_callee            (sent only once c is held)
//!   caller → callee   SasReveal  n_caller            (sent only once n_callee is held)
//!   code = BLAKE3-derive("… sas v2", exporter | n_caller | n_callee) as six digits
//!   ```
//!
//!   A man in the middle runs two TLS sessions, so the two exporters differ. He could choose
//!   his own TLS randomness on one leg until that leg's code matched the other's (about 10^6
//!   tries), if the code were a function of the exporter alone. Here each leg's code also
//!   depends on a nonce of an honest party that he cannot know when he makes his last free
//!   choice on that leg: where he is the callee he must send his nonce before the caller's is
//!   revealed (it is hidden by the commitment); where he is the caller he is bound to his
//!   nonce by the commitment before he sees the callee's. Whatever he does, one leg's code is
//!   uniformly random to him given the other's, so he matches with probability 10^-6 per
//!   attempt, and every attempt is a call that rings. The commitment covers the exporter too,
//!   so a commitment relayed from the other leg fails to open.
//! * The **safety number** is 60 digits derived from both public keys alone. It is the same
//!   for every call between the same two people, so it can be compared once, in person or
//!   over another channel, like Signal's.

use crate::identity::PeerId;

/// Exporter label (RFC 8446 §7.5) for the SAS.
pub const SAS_EXPORTER_LABEL: &[u8] = b"EXTRA SAFE sas v2";
/// Bytes requested from the exporter.
pub const SAS_EXPORTER_LEN: usize = 32;

/// The caller's commitment to its nonce.
pub fn sas_commit(exporter: &[u8; SAS_EXPORTER_LEN], caller_nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("EXTRA SAFE 2026 sas commit v2");
    h.update(exporter);
    h.update(caller_nonce);
    *h.finalize().as_bytes()
}

/// The code both ends show, as a number below 10^6.
pub fn sas_number(
    exporter: &[u8; SAS_EXPORTER_LEN],
    caller_nonce: &[u8; 32],
    callee_nonce: &[u8; 32],
) -> u32 {
    let mut h = blake3::Hasher::new_derive_key("EXTRA SAFE 2026 sas v2");
    h.update(exporter);
    h.update(caller_nonce);
    h.update(callee_nonce);
    let b = h.finalize();
    (u64::from_be_bytes(b.as_bytes()[..8].try_into().expect("8 bytes")) % 1_000_000) as u32
}

/// Six digits, shown as `123 456`.
pub fn sas_digits(n: u32) -> String {
    let n = n % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}

/// Sixty digits in twelve groups of five, the same whichever side computes it.
pub fn safety_number(a: &PeerId, b: &PeerId) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    let mut h = blake3::Hasher::new_derive_key("EXTRA SAFE 2026 safety number v1");
    h.update(lo.as_bytes());
    h.update(hi.as_bytes());
    let mut out = [0u8; 60];
    h.finalize_xof().fill(&mut out);
    out.chunks(5)
        .map(|c| {
            let mut v = [0u8; 8];
            v[3..].copy_from_slice(c);
            format!("{:05}", u64::from_be_bytes(v) % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn safety_number_is_symmetric_and_distinct() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let c = Identity::generate().peer_id();
        let ab = safety_number(&a, &b);
        assert_eq!(ab, safety_number(&b, &a));
        assert_ne!(ab, safety_number(&a, &c));
        assert_eq!(ab.len(), 12 * 5 + 11);
        assert!(ab.chars().all(|c| c.is_ascii_digit() || c == ' '));
    }

    #[test]
    fn sas_format() {
        assert_eq!(sas_digits(0), "000 000");
        assert_eq!(sas_digits(1_234_567), "234 567");
        assert_eq!(sas_digits(7_001), "007 001");
        let e = [5; 32];
        assert_ne!(
            sas_number(&e, &[1; 32], &[2; 32]),
            sas_number(&e, &[2; 32], &[1; 32])
        );
        assert_ne!(sas_commit(&e, &[1; 32]), sas_commit(&[6; 32], &[1; 32]));
    }
}
