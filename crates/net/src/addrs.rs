//! Which addresses to put in a ticket.

use std::net::{IpAddr, SocketAddr};

/// The addresses others can reach a socket bound to `bound` at. For an unspecified bind this
/// lists the interfaces' addresses, IPv4 first, leaving out loopback (no one else can use it,
/// and it would only tell a ticket's reader which port we use on this machine) and link-local
/// addresses (IPv4 169.254/16 is never routed; IPv6 fe80::/10 needs a scope a ticket has no
/// room for). A socket bound to one address names that address alone, loopback included:
/// that is what the user asked for.
pub fn reachable(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let want_v4 = bound.is_ipv4();
    let mut out: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            // A socket bound to 0.0.0.0 cannot answer on IPv6.
            IpAddr::V6(v6) => !want_v4 && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect();
    out.sort_by_key(|a| a.is_ipv6());
    out.dedup();
    out.truncate(extrasafe_core::ticket::MAX_TICKET_ADDRS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_bind_is_used_as_is() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(reachable(a), vec![a]);
    }

    #[test]
    fn unspecified_binds_list_no_loopback_or_link_local_address() {
        for bound in ["0.0.0.0:7000", "[::]:7000"] {
            let got = reachable(bound.parse().unwrap());
            assert!(got.iter().all(|a| a.port() == 7000), "{got:?}");
            assert!(
                got.iter().all(|a| !a.ip().is_loopback()
                    && !matches!(a.ip(), IpAddr::V4(v4) if v4.is_link_local())
                    && !matches!(a.ip(), IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)),
                "{got:?}"
            );
            // Every address the machine has that is neither is listed.
            let want = if_addrs::get_if_addrs()
                .unwrap()
                .into_iter()
                .filter(|i| {
                    let ip = i.ip();
                    !ip.is_loopback()
                        && match ip {
                            IpAddr::V4(v4) => !v4.is_link_local(),
                            IpAddr::V6(v6) => {
                                bound.starts_with('[') && (v6.segments()[0] & 0xffc0) != 0xfe80
                            }
                        }
                })
                .count()
                .min(extrasafe_core::ticket::MAX_TICKET_ADDRS);
            let mut distinct = got.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), got.len());
            assert!(got.len() <= want, "{got:?}");
        }
    }
}
