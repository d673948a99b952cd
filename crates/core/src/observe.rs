//! Whose word decides our public address (sans-IO).
//!
//! DHT nodes (BEP 42) and STUN servers tell the call socket the address its packets arrive
//! from. None of them proves it: a node may answer with any address it likes. If a single
//! answer were published, one lying node would choose where our contacts send their probes,
//! and would learn the address and time of every call to us (docs/REACH.md, "Our public
//! address"). So answers are votes, one per network, and an address is believed only when
//! observers in at least [`QUORUM`] different networks saw it and it leads every other
//! address.
//!
//! * A network is an IPv4 /16 or an IPv6 /32: addresses one operator is likely to hold
//!   together (the rule Tor applies to relays in one circuit). A second observer from a
//!   network that already voted is not counted.
//! * The IP must win outright: at least [`QUORUM`] votes and more than any other IP. A tie
//!   (one liar against one honest node) believes nobody.
//! * The port is taken from the voters for that IP: the one most of them saw. A liar who
//!   agrees on the IP but not the port can only make us publish our own IP with a wrong port,
//!   whose probes end at our own NAT.
//! * Whether our NAT keeps one mapping for all destinations is read from the same voters:
//!   one port among them is [`NatMapping::Stable`], several is [`NatMapping::Varies`].

use std::net::{IpAddr, SocketAddr};

use crate::punch::NatMapping;

/// Observers from this many different networks must agree before an address is believed.
pub const QUORUM: usize = 2;

/// One observer's answer: who answered, and the address it says our packets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The observer's own address (where we sent the question and the answer came from).
    pub observer: SocketAddr,
    /// The address it says it saw.
    pub seen: SocketAddr,
}

/// The network an address belongs to, as far as independence of observers goes: IPv4 /16,
/// IPv6 /32 (an IPv4-mapped IPv6 address counts as IPv4).
pub fn network_of(ip: IpAddr) -> [u8; 5] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], 0, 0]
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let o = v6.octets();
                [6, o[0], o[1], o[2], o[3]]
            }
        },
    }
}

/// The votes so far: at most one per network.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    votes: Vec<Sighting>,
}

/// What the votes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Our public address, if observers in enough networks agree on its IP.
    pub reflexive: Option<SocketAddr>,
    /// How our NAT maps the socket, read from the agreeing observers only.
    pub mapping: NatMapping,
    /// How many networks agreed on the IP.
    pub agreeing: usize,
}

impl Verdict {
    /// The believed public IP.
    pub fn ip(&self) -> Option<IpAddr> {
        self.reflexive.map(|a| a.ip())
    }
}

/// Most votes kept (more observers than this are never asked).
const MAX_VOTES: usize = 16;

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `sighting`; false (not counted) if its observer's network has already voted,
    /// the tally is full, or the address seen cannot be anybody's (port 0, unspecified,
    /// multicast).
    pub fn add(&mut self, sighting: Sighting) -> bool {
        let seen = sighting.seen;
        let usable = seen.port() != 0 && !seen.ip().is_unspecified() && !seen.ip().is_multicast();
        let net = network_of(sighting.observer.ip());
        if !usable
            || self.votes.len() >= MAX_VOTES
            || self
                .votes
                .iter()
                .any(|v| network_of(v.observer.ip()) == net)
        {
            return false;
        }
        self.votes.push(sighting);
        true
    }

    /// The votes counted, in the order they came.
    pub fn votes(&self) -> &[Sighting] {
        &self.votes
    }

    /// Votes for each IP seen, most first (ties in order of first vote).
    fn by_ip(&self) -> Vec<(IpAddr, usize)> {
        let mut counts: Vec<(IpAddr, usize)> = Vec::new();
        for v in &self.votes {
            let ip = canonical(v.seen.ip());
            match counts.iter_mut().find(|(i, _)| *i == ip) {
                Some((_, n)) => *n += 1,
                None => counts.push((ip, 1)),
            }
        }
        // Stable sort: equal counts keep the order of their first vote.
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
    }

    /// What the votes counted so far say.
    pub fn verdict(&self) -> Verdict {
        let counts = self.by_ip();
        let none = Verdict {
            reflexive: None,
            mapping: NatMapping::Unknown,
            agreeing: 0,
        };
        let Some(&(ip, lead)) = counts.first() else {
            return none;
        };
        let second = counts.get(1).map_or(0, |c| c.1);
        if lead < QUORUM || lead <= second {
            return none;
        }
        let mut ports: Vec<(u16, usize)> = Vec::new();
        for v in self.votes.iter().filter(|v| canonical(v.seen.ip()) == ip) {
            match ports.iter_mut().find(|(p, _)| *p == v.seen.port()) {
                Some((_, n)) => *n += 1,
                None => ports.push((v.seen.port(), 1)),
            }
        }
        ports.sort_by_key(|p| std::cmp::Reverse(p.1));
        Verdict {
            reflexive: Some(SocketAddr::new(ip, ports[0].0)),
            mapping: if ports.len() == 1 {
                NatMapping::Stable
            } else {
                NatMapping::Varies
            },
            agreeing: lead,
        }
    }

    /// True when `outstanding` more votes could no longer change which IP is believed (or
    /// that none is): asking can stop.
    pub fn settled(&self, outstanding: usize) -> bool {
        let counts = self.by_ip();
        let lead = counts.first().map_or(0, |c| c.1);
        let second = counts.get(1).map_or(0, |c| c.1);
        outstanding == 0 || (lead >= QUORUM && lead > second + outstanding)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Picks at most `n` observers from `candidates`, one per network, in the order given (the
/// caller shuffles): asking two observers of one network would waste a question, since only
/// one of them can vote.
pub fn pick_observers(candidates: &[SocketAddr], n: usize) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for c in candidates {
        if out.len() == n {
            break;
        }
        if !out.iter().any(|o| network_of(o.ip()) == network_of(c.ip())) {
            out.push(*c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(observer: &str, seen: &str) -> Sighting {
        Sighting {
            observer: observer.parse().unwrap(),
            seen: seen.parse().unwrap(),
        }
    }

    const US: &str = "203.0.113.5:40000";
    const LIE: &str = "198.51.100.77:4444";

    #[test]
    fn one_answer_decides_nothing() {
        let mut t = Tally::new();
        assert!(t.add(s("192.0.2.2:6881", LIE)));
        let v = t.verdict();
        assert_eq!(v.reflexive, None);
        assert_eq!(v.mapping, NatMapping::Unknown);
        // Even if it came first, a lie is outvoted by two honest networks.
        assert!(t.add(s("192.1.2.2:6881", US)));
        assert_eq!(t.verdict().reflexive, None, "a tie believes nobody");
        assert!(t.add(s("192.2.2.2:6881", US)));
        let v = t.verdict();
        assert_eq!(v.reflexive, Some(US.parse().unwrap()));
        assert_eq!(v.mapping, NatMapping::Stable);
        assert_eq!(v.agreeing, 2);
    }

    #[test]
    fn one_network_has_one_vote() {
        // A liar with many addresses in one /16 is still one voice.
        let mut t = Tally::new();
        for i in 2..10 {
            let counted = t.add(s(&format!("192.0.2.{i}:6881"), LIE));
            assert_eq!(counted, i == 2);
        }
        t.add(s("10.9.0.1:6881", US));
        assert_eq!(t.verdict().reflexive, None);
        t.add(s("172.16.0.1:3478", US));
        assert_eq!(t.verdict().reflexive, Some(US.parse().unwrap()));
        // IPv6 observers group by /32; an IPv4-mapped observer is IPv4.
        assert_eq!(
            network_of("2001:db8:1::1".parse().unwrap()),
            network_of("2001:db8:ffff::2".parse().unwrap())
        );
        assert_ne!(
            network_of("2001:db8::1".parse().unwrap()),
            network_of("2001:db9::1".parse().unwrap())
        );
        assert_eq!(
            network_of("::ffff:192.0.2.1".parse().unwrap()),
            network_of("192.0.9.9".parse().unwrap())
        );
    }

    #[test]
    fn the_port_comes_from_the_agreeing_voters_and_tells_the_mapping() {
        let mut t = Tally::new();
        t.add(s("192.0.2.2:6881", "203.0.113.5:1000"));
        t.add(s("192.1.2.2:6881", "203.0.113.5:2000"));
        t.add(s("192.2.2.2:6881", "203.0.113.5:2000"));
        // A liar who names our IP with its own port changes neither.
        t.add(s("192.3.2.2:6881", LIE));
        let v = t.verdict();
        assert_eq!(v.reflexive, Some("203.0.113.5:2000".parse().unwrap()));
        assert_eq!(v.mapping, NatMapping::Varies);
        assert_eq!(v.agreeing, 3);
    }

    #[test]
    fn unusable_addresses_are_not_votes() {
        let mut t = Tally::new();
        assert!(!t.add(s("192.0.2.2:6881", "0.0.0.0:5")));
        assert!(!t.add(s("192.1.2.2:6881", "203.0.113.5:0")));
        assert!(!t.add(s("192.2.2.2:6881", "224.0.0.1:5")));
        assert!(t.votes().is_empty());
        for i in 0..40u8 {
            t.add(s(&format!("{i}.1.0.1:1"), US));
        }
        assert_eq!(t.votes().len(), MAX_VOTES);
    }

    #[test]
    fn asking_stops_once_the_rest_cannot_change_the_answer() {
        let mut t = Tally::new();
        assert!(!t.settled(4));
        t.add(s("192.0.2.2:6881", US));
        t.add(s("192.1.2.2:6881", US));
        // 2 against 0 with 2 still to come: two liars could still tie it.
        assert!(!t.settled(2));
        assert!(t.settled(1));
        t.add(s("192.2.2.2:6881", US));
        assert!(t.settled(2));
        assert!(Tally::new().settled(0));
    }

    #[test]
    fn observers_are_picked_one_per_network() {
        let c: Vec<SocketAddr> = [
            "192.0.2.2:1",
            "192.0.2.3:1",
            "192.1.2.2:1",
            "10.0.0.1:1",
            "10.0.200.1:1",
            "8.8.8.8:1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let picked = pick_observers(&c, 3);
        assert_eq!(picked, vec![c[0], c[2], c[3]]);
        assert_eq!(pick_observers(&c, 10).len(), 4);
    }
}
