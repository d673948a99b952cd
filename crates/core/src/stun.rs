//! STUN binding requests (RFC 8489), only as far as learning our public address from a
//! server the user chose: a request is 20 bytes with no attributes; an answer's
//! XOR-MAPPED-ADDRESS (or the old MAPPED-ADDRESS) is the address the server saw.
//!
//! What such a server learns: our public IP address and port, and when we asked (so, roughly,
//! when we are online); nothing about whom we call. None is used unless configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value every STUN message carries (bytes 4..8).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Longer answers are not read (a binding answer is well under 100 bytes).
pub const MAX_MESSAGE: usize = 548;

/// A binding request with transaction ID `txid`.
pub fn binding_request(txid: [u8; 12]) -> [u8; HEADER] {
    let mut out = [0u8; HEADER];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(&txid);
    out
}

/// Whether a datagram is shaped like a STUN message: top two bits 0 (never QUIC, whose
/// fixed bit we always set), the magic cookie, and a length that matches. A punch probe
/// (69 bytes) never matches: STUN lengths are 20 plus a multiple of 4.
pub fn looks_like_stun(d: &[u8]) -> bool {
    d.len() >= HEADER
        && d.len() <= MAX_MESSAGE
        && d[0] & 0xc0 == 0
        && d[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([d[2], d[3]])) + HEADER == d.len()
        && d.len().is_multiple_of(4)
}

/// The address a binding success answer to `txid` reports, if `d` is one. Unknown
/// attributes are skipped, even comprehension-required ones: servers of the old RFC 3489
/// still send SOURCE-ADDRESS and CHANGED-ADDRESS, and all we read is the mapped address.
pub fn mapped_address(d: &[u8], txid: [u8; 12]) -> Option<SocketAddr> {
    if !looks_like_stun(d)
        || u16::from_be_bytes([d[0], d[1]]) != BINDING_SUCCESS
        || d[8..20] != txid
    {
        return None;
    }
    let mut plain = None;
    let mut rest = &d[HEADER..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        match kind {
            XOR_MAPPED_ADDRESS => {
                if let Some(a) = address(value, Some(&d[4..20])) {
                    return Some(a);
                }
            }
            MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    plain
}

/// An address attribute's value; `xor` is the cookie and transaction ID when XOR-ed.
fn address(v: &[u8], xor: Option<&[u8]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let key: &[u8] = xor.unwrap_or(&[0u8; 16]);
    port ^= u16::from_be_bytes([key[0], key[1]]);
    fn unmask<const N: usize>(v: &[u8], key: &[u8]) -> Option<[u8; N]> {
        let mut o: [u8; N] = v.get(4..4 + N)?.try_into().ok()?;
        o.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
        Some(o)
    }
    let ip = match family {
        1 => IpAddr::V4(Ipv4Addr::from(unmask::<4>(v, key)?)),
        2 => IpAddr::V6(Ipv6Addr::from(unmask::<16>(v, key)?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding success carrying `attrs` (already encoded), as a server would send.
    fn answer(txid: [u8; 12], attrs: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
        d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        d.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        d.extend_from_slice(&txid);
        d.extend_from_slice(attrs);
        d
    }

    #[test]
    fn request_is_a_bare_binding_request() {
        let r = binding_request([9; 12]);
        assert_eq!(&r[..4], &[0, 1, 0, 0]);
        assert_eq!(&r[4..8], &[0x21, 0x12, 0xa4, 0x42]);
        assert!(looks_like_stun(&r));
    }

    #[test]
    fn xor_mapped_ipv4_is_read() {
        // 192.0.2.1:32853 XOR-ed with the cookie (RFC 5769 style vector).
        let txid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let attr = [
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ];
        let d = answer(txid, &attr);
        assert_eq!(
            mapped_address(&d, txid),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        // Someone else's transaction: ignored.
        assert_eq!(mapped_address(&d, [0; 12]), None);
    }

    #[test]
    fn xor_mapped_ipv6_and_plain_mapped_are_read() {
        let txid = [3; 12];
        let want: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        let mut key = Vec::from(MAGIC_COOKIE.to_be_bytes());
        key.extend_from_slice(&txid);
        let IpAddr::V6(ip) = want.ip() else {
            unreachable!()
        };
        let mut attr = vec![0x00, 0x20, 0x00, 20, 0, 2];
        attr.extend_from_slice(&(want.port() ^ 0x2112).to_be_bytes());
        attr.extend(ip.octets().iter().zip(&key).map(|(a, k)| a ^ k));
        assert_eq!(mapped_address(&answer(txid, &attr), txid), Some(want));
        // An old server's MAPPED-ADDRESS, after an unknown attribute with padding.
        let mut attrs = vec![0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0];
        attrs.extend_from_slice(&[
            0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x0f, 0xa0, 203, 0, 113, 9,
        ]);
        assert_eq!(
            mapped_address(&answer(txid, &attrs), txid),
            Some("203.0.113.9:4000".parse().unwrap())
        );
    }

    #[test]
    fn malformed_answers_are_refused_without_panic() {
        let txid = [1; 12];
        let good = answer(
            txid,
            &[
                0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
            ],
        );
        for cut in 0..good.len() {
            assert_eq!(mapped_address(&good[..cut], txid), None);
        }
        // An attribute longer than the message.
        let bad = answer(txid, &[0x00, 0x20, 0x00, 0xff, 0, 1, 0, 0]);
        assert_eq!(mapped_address(&bad, txid), None);
        // Unknown family.
        let bad = answer(txid, &[0x00, 0x20, 0x00, 0x04, 0, 7, 0, 0]);
        assert_eq!(mapped_address(&bad, txid), None);
        // Never a punch probe.
        assert!(!looks_like_stun(&[0u8; crate::punch::PROBE_LEN]));
    }
}
