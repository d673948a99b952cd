//! Which addresses to put in a ticket.

use std::net::{IpAddr, SocketAddr};

/// The addresses others can reach a socket bound to `bound` at. For an unspecified bind this
/// lists the interfaces' addresses, routable ones first; loopback is kept last, and only
/// link-local IPv6 is left out (a ticket has no room for its scope).
pub fn reachable(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let want_v4 = bound.is_ipv4();
    let mut out: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            // A socket bound to 0.0.0.0 cannot answer on IPv6.
            IpAddr::V6(v6) => !want_v4 && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect();
    out.sort_by_key(|a| (a.ip().is_loopback(), a.is_ipv6()));
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
    fn unspecified_v4_lists_interfaces_loopback_last() {
        let got = reachable("0.0.0.0:7000".parse().unwrap());
        assert!(!got.is_empty());
        assert!(got.iter().all(|a| a.port() == 7000 && a.is_ipv4()));
        assert!(got.last().unwrap().ip().is_loopback());
        let first_loopback = got.iter().position(|a| a.ip().is_loopback()).unwrap();
        assert!(got[first_loopback..].iter().all(|a| a.ip().is_loopback()));
    }
}
