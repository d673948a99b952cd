//! What two people read to each other to know no one is in the middle.
//!
//! * The **short authentication string** (SAS) is six digits taken from the TLS exporter
//!   (RFC 8446 §7.5) of this very connection. A man in the middle has to run two TLS
//!   sessions with different secrets, so the two ends show different digits. It changes
//!   every call.
//! * The **safety number** is 60 digits derived from both public keys alone. It is the same
//!   for every call between the same two people, so it can be compared once, in person or
//!   over another channel, like Signal's.

use crate::identity::PeerId;

/// Exporter label (RFC 8446 §7.5) for the SAS.
pub const SAS_EXPORTER_LABEL: &[u8] = b"EXTRA SAFE sas v1";
/// Bytes requested from the exporter.
pub const SAS_EXPORTER_LEN: usize = 8;

/// Six digits from exporter output, shown as `123 456`.
pub fn sas_digits(exporter: &[u8; SAS_EXPORTER_LEN]) -> String {
    let n = u64::from_be_bytes(*exporter) % 1_000_000;
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
        assert_eq!(sas_digits(&[0; 8]), "000 000");
        assert_eq!(sas_digits(&1_234_567u64.to_be_bytes()), "234 567");
    }
}
