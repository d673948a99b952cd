//! BEP 42: a DHT node's ID must start with 21 bits derived from its IP address, so that a
//! node cannot choose where it sits in the ID space. Whoever wants a node next to a given
//! target needs an IP address whose derived prefix matches the target's: about one in
//! 2^21 / 8 addresses, and the masked bits mean a whole /16 yields only 2^17 prefixes.
//!
//! Walks (`crate::walk`) rank nodes whose ID fits their address ahead of those whose ID does
//! not, as the `mainline` library does: a node that made its ID up is asked, and stored at,
//! only when too few nodes that did not are known near the target. Addresses of private,
//! loopback and link-local networks are exempt (the BEP's own rule: such a node cannot know
//! its public address), so a DHT on a LAN or on loopback ranks by distance alone.

use std::net::IpAddr;

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The bits of an IPv4 address BEP 42 keeps.
const IPV4_MASK: u32 = 0x030f_3fff;

/// The 21-bit prefix (in the first three bytes, low 3 bits of the third zero) that a node
/// at `ip` with random byte `r` (its ID's last byte; only the low 3 bits count) must have.
pub fn prefix_v4(ip: std::net::Ipv4Addr, r: u8) -> [u8; 3] {
    let masked = (u32::from(ip) & IPV4_MASK) | (u32::from(r & 7) << 29);
    let c = CASTAGNOLI.checksum(&masked.to_be_bytes()).to_be_bytes();
    [c[0], c[1], c[2] & 0xf8]
}

/// Whether BEP 42 exempts `ip` (a node there cannot be checked).
pub fn exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        // Mainline walks are IPv4 only; an IPv6 node is never ranked as checked.
        IpAddr::V6(_) => false,
    }
}

/// Whether `id` fits `ip` by BEP 42 (or `ip` is exempt). IPv6 addresses are not checked and
/// never fit.
pub fn fits(ip: IpAddr, id: &[u8; 20]) -> bool {
    match ip {
        IpAddr::V4(_) if exempt(ip) => true,
        IpAddr::V4(v4) => {
            let want = prefix_v4(v4, id[19]);
            id[0] == want[0] && id[1] == want[1] && (id[2] & 0xf8) == want[2]
        }
        IpAddr::V6(_) => false,
    }
}

/// An ID for `ip` that fits it: `rest` with its first 21 bits set from `ip` and `r`.
pub fn id_for_v4(ip: std::net::Ipv4Addr, r: u8, rest: [u8; 20]) -> [u8; 20] {
    let p = prefix_v4(ip, r);
    let mut id = rest;
    id[0] = p[0];
    id[1] = p[1];
    id[2] = p[2] | (rest[2] & 7);
    id[19] = r;
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn hex(s: &str) -> [u8; 20] {
        let mut id = [0u8; 20];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        id
    }

    /// The examples of BEP 42 itself: each ID fits its address, and no other example's.
    #[test]
    fn the_bep_examples_fit_and_others_do_not() {
        let examples = [
            (
                [124, 31, 75, 21],
                "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
            ),
            (
                [21, 75, 31, 124],
                "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
            ),
            (
                [65, 23, 51, 170],
                "a5d43220bc8f112a3d426c84764f8c2a1150e616",
            ),
            (
                [84, 124, 73, 14],
                "1b0321dd1bb1fe518101ceef99462b947a01ff41",
            ),
            (
                [43, 213, 53, 83],
                "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
            ),
        ];
        for (i, (ip, id)) in examples.iter().enumerate() {
            let ip = IpAddr::from(Ipv4Addr::from(*ip));
            assert!(fits(ip, &hex(id)), "{ip}");
            for (j, (_, other)) in examples.iter().enumerate() {
                if i != j {
                    assert!(!fits(ip, &hex(other)), "{ip} with example {j}");
                }
            }
        }
    }

    #[test]
    fn a_made_id_fits_and_one_flipped_bit_of_its_prefix_does_not() {
        let ip = Ipv4Addr::new(81, 2, 69, 160);
        for r in 0..8u8 {
            let id = id_for_v4(ip, r, [0x5a; 20]);
            assert!(fits(ip.into(), &id));
            for bit in 0..21 {
                let mut bad = id;
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!fits(ip.into(), &bad), "r {r}, bit {bit}");
            }
        }
    }

    #[test]
    fn local_networks_are_exempt_and_ipv6_is_never_checked() {
        let any = [0x11; 20];
        for ip in [
            [10, 1, 2, 3],
            [192, 168, 0, 9],
            [172, 16, 4, 4],
            [127, 0, 0, 1],
        ] {
            assert!(fits(Ipv4Addr::from(ip).into(), &any));
        }
        assert!(!fits(Ipv4Addr::new(8, 8, 8, 8).into(), &any));
        assert!(!fits("2001:db8::1".parse().unwrap(), &any));
    }
}
