//! Punching through simulated NATs on virtual time: the mapping and filtering behaviours of
//! RFC 4787 (endpoint-independent, address-dependent, address-and-port-dependent), port
//! preservation or not, and a network with a fixed one-way delay.

use std::collections::{BTreeMap, HashSet};

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dep {
    Independent,
    Address,
    AddressPort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NatType {
    Open,
    FullCone,
    AddrRestricted,
    PortRestricted,
    PortChanging,
    Symmetric,
}

const ALL: [NatType; 6] = [
    NatType::Open,
    NatType::FullCone,
    NatType::AddrRestricted,
    NatType::PortRestricted,
    NatType::PortChanging,
    NatType::Symmetric,
];

impl NatType {
    /// Mapping, filtering, port preservation.
    fn model(self) -> Option<(Dep, Dep, bool)> {
        match self {
            Self::Open => None,
            Self::FullCone => Some((Dep::Independent, Dep::Independent, true)),
            Self::AddrRestricted => Some((Dep::Independent, Dep::Address, true)),
            Self::PortRestricted => Some((Dep::Independent, Dep::AddressPort, true)),
            Self::PortChanging => Some((Dep::Independent, Dep::AddressPort, false)),
            Self::Symmetric => Some((Dep::AddressPort, Dep::AddressPort, false)),
        }
    }
}

struct Map {
    internal: SocketAddr,
    key: (Option<IpAddr>, Option<u16>),
    external: u16,
    contacted: HashSet<SocketAddr>,
}

struct Nat {
    wan: IpAddr,
    mapping: Dep,
    filtering: Dep,
    preserve: bool,
    maps: Vec<Map>,
    next_port: u16,
    /// A port forwarded to the host (UPnP / NAT-PMP / PCP).
    forward: Option<u16>,
}

impl Nat {
    fn new(wan: IpAddr, (mapping, filtering, preserve): (Dep, Dep, bool)) -> Self {
        Self {
            wan,
            mapping,
            filtering,
            preserve,
            maps: Vec::new(),
            next_port: 20_011,
            forward: None,
        }
    }

    fn outbound(&mut self, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let key = match self.mapping {
            Dep::Independent => (None, None),
            Dep::Address => (Some(dst.ip()), None),
            Dep::AddressPort => (Some(dst.ip()), Some(dst.port())),
        };
        if let Some(m) = self
            .maps
            .iter_mut()
            .find(|m| m.internal == src && m.key == key)
        {
            m.contacted.insert(dst);
            return SocketAddr::new(self.wan, m.external);
        }
        let external = if self.preserve && !self.maps.iter().any(|m| m.external == src.port()) {
            src.port()
        } else {
            self.next_port += 37;
            self.next_port
        };
        self.maps.push(Map {
            internal: src,
            key,
            external,
            contacted: HashSet::from([dst]),
        });
        SocketAddr::new(self.wan, external)
    }

    fn inbound(&mut self, src: SocketAddr, port: u16, host: SocketAddr) -> Option<SocketAddr> {
        if self.forward == Some(port) && !self.maps.iter().any(|m| m.external == port) {
            // As Linux conntrack behaves: the forwarded flow's reply direction (host -> src)
            // must not already belong to an outgoing flow that was given another port; such
            // a clash drops the packet. Otherwise the flow is remembered both ways, so the
            // host's packets to `src` leave from the forwarded port.
            if self
                .maps
                .iter()
                .any(|m| m.internal == host && m.contacted.contains(&src))
            {
                return None;
            }
            self.maps.push(Map {
                internal: host,
                key: (Some(src.ip()), Some(src.port())),
                external: port,
                contacted: HashSet::from([src]),
            });
            return Some(host);
        }
        self.maps
            .iter()
            .filter(|m| m.external == port)
            .find(|m| match self.filtering {
                Dep::Independent => true,
                Dep::Address => m.contacted.iter().any(|c| c.ip() == src.ip()),
                Dep::AddressPort => m.contacted.contains(&src),
            })
            .map(|m| m.internal)
    }
}

struct Side {
    host: SocketAddr,
    nat: Option<Nat>,
    punch: Option<Puncher>,
    sent: u64,
}

impl Side {
    fn new(nat: NatType, lan: [u8; 4], wan: [u8; 4]) -> Self {
        match nat.model() {
            None => Self {
                host: SocketAddr::from((wan, 5000)),
                nat: None,
                punch: None,
                sent: 0,
            },
            Some(model) => Self {
                host: SocketAddr::from((lan, 5000)),
                nat: Some(Nat::new(IpAddr::from(wan), model)),
                punch: None,
                sent: 0,
            },
        }
    }

    /// The address this side's packets to `dst` leave its network with.
    fn egress(&mut self, dst: SocketAddr) -> SocketAddr {
        match &mut self.nat {
            Some(nat) => nat.outbound(self.host, dst),
            None => self.host,
        }
    }

    /// Whom a packet to `dst` from `src` reaches on this side, if anyone.
    fn ingress(&mut self, src: SocketAddr, dst: SocketAddr) -> bool {
        let host = self.host;
        match &mut self.nat {
            Some(nat) => nat.wan == dst.ip() && nat.inbound(src, dst.port(), host) == Some(host),
            None => self.host == dst,
        }
    }

    /// The router forwards a port to the host; returns that public address.
    fn forward(&mut self) -> Option<SocketAddr> {
        let nat = self.nat.as_mut()?;
        nat.forward = Some(40_000);
        Some(SocketAddr::new(nat.wan, 40_000))
    }

    /// Host, mapped and reflexive candidates, the reflexive one as a STUN server would have
    /// seen it.
    fn candidates(&mut self) -> Vec<Candidate> {
        let stun: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let reflexive = self.egress(stun);
        let mut out = vec![Candidate {
            addr: self.host,
            kind: CandidateKind::Host,
        }];
        if let Some(port) = self.nat.as_ref().and_then(|n| n.forward) {
            out.push(Candidate {
                addr: SocketAddr::new(self.nat.as_ref().unwrap().wan, port),
                kind: CandidateKind::Mapped,
            });
        }
        if reflexive != self.host {
            out.push(Candidate {
                addr: reflexive,
                kind: CandidateKind::Reflexive,
            });
        }
        out
    }
}

struct Outcome {
    working: Option<SocketAddr>,
    elapsed: Duration,
    sent: u64,
    report: Option<PunchReport>,
}

/// A packet in flight: to which side, from, to, bytes.
type InFlight = (usize, SocketAddr, SocketAddr, Vec<u8>);

const ONE_WAY: Duration = Duration::from_millis(15);
/// The callee learns of the call a little after the caller starts.
const CALLEE_DELAY: Duration = Duration::from_millis(300);

fn punch(a_type: NatType, b_type: NatType) -> Outcome {
    punch_mapped(a_type, b_type, [false, false], true)
}

/// Which sides' routers forward a port; whether such a side holds its pings
/// ([`Puncher::hold_pings`]).
fn punch_mapped(a_type: NatType, b_type: NatType, forwarded: [bool; 2], hold: bool) -> Outcome {
    let t0 = Instant::now();
    let mut a = Side::new(a_type, [10, 0, 1, 2], [198, 51, 100, 2]);
    let mut b = Side::new(b_type, [10, 0, 2, 2], [203, 0, 113, 2]);
    for (side, fwd) in [&mut a, &mut b].into_iter().zip(forwarded) {
        if fwd {
            side.forward();
        }
    }
    let (a_cands, b_cands) = (a.candidates(), b.candidates());
    let hold_for = Duration::from_secs(3);
    let key = || PunchKey::from_bytes([7; 32]);
    let config = PunchConfig::default();
    a.punch = Some(Puncher::new(
        key(),
        PunchRole::Controlling,
        &b_cands,
        config.clone(),
        [1; 32],
        t0,
    ));
    if hold && forwarded[0] {
        a.punch.as_mut().unwrap().hold_pings(t0 + hold_for);
    }
    let mut sides = [a, b];
    let mut wire: BTreeMap<(Instant, u64), InFlight> = BTreeMap::new();
    let mut seq = 0u64;
    let mut now = t0;
    loop {
        if sides[1].punch.is_none() && now >= t0 + CALLEE_DELAY {
            sides[1].punch = Some(Puncher::new(
                key(),
                PunchRole::Controlled,
                &a_cands,
                config.clone(),
                [2; 32],
                now,
            ));
            if hold && forwarded[1] {
                sides[1].punch.as_mut().unwrap().hold_pings(now + hold_for);
            }
        }
        for (i, side) in sides.iter_mut().enumerate() {
            let Some(p) = side.punch.as_mut() else {
                continue;
            };
            p.handle_timeout(now);
            let mut out = Vec::new();
            while let Some(t) = p.poll_transmit(now) {
                out.push(t);
            }
            for t in out {
                side.sent += 1;
                let src = side.egress(t.dest);
                seq += 1;
                wire.insert((now + ONE_WAY, seq), (1 - i, src, t.dest, t.bytes));
            }
        }
        let a = sides[0].punch.as_mut().unwrap();
        if let Some(ev) = a.poll_event() {
            let outcome = |working, report| Outcome {
                working,
                elapsed: now - t0,
                sent: sides[0].sent + sides[1].sent,
                report,
            };
            match ev {
                PunchEvent::Working { remote, .. } => return outcome(Some(remote), None),
                PunchEvent::Failed(r) => return outcome(None, Some(r)),
            }
        }
        let mut next = t0 + CALLEE_DELAY;
        if sides[1].punch.is_some() {
            next = t0 + Duration::from_secs(3600);
        }
        for s in &sides {
            if let Some(t) = s.punch.as_ref().and_then(|p| p.poll_timeout()) {
                next = next.min(t);
            }
        }
        if let Some((&(at, _), _)) = wire.first_key_value() {
            next = next.min(at);
        }
        now = now.max(next);
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, src, dst, bytes) = entry.remove();
            let side = &mut sides[to];
            if side.ingress(src, dst) {
                if let Some(p) = side.punch.as_mut() {
                    if is_probe(&bytes) {
                        p.handle(now, src, &bytes);
                    }
                }
            }
        }
    }
}

fn punchable(a: NatType, b: NatType) -> bool {
    use NatType::*;
    !matches!(
        (a, b),
        (Symmetric, Symmetric | PortRestricted | PortChanging)
            | (PortRestricted | PortChanging, Symmetric)
    )
}

#[test]
fn the_nat_matrix_punches_where_udp_can() {
    let mut table = String::new();
    for a in ALL {
        for b in ALL {
            let o = punch(a, b);
            table += &format!(
                "{a:?} -> {b:?}: {} in {:?}, {} probes\n",
                if o.working.is_some() { "ok" } else { "FAIL" },
                o.elapsed,
                o.sent
            );
            assert_eq!(
                o.working.is_some(),
                punchable(a, b),
                "{a:?} -> {b:?}\n{table}"
            );
            if o.working.is_some() {
                // The callee starts 300 ms late; a path is found within a few round trips
                // after that.
                assert!(
                    o.elapsed < Duration::from_millis(700),
                    "{a:?} -> {b:?}\n{table}"
                );
            } else {
                let r = o.report.unwrap();
                assert_eq!(o.elapsed, PunchConfig::default().timeout);
                assert_eq!(r.pongs_heard, 0);
                assert!(r.explain().contains("symmetric"), "{}", r.explain());
                // Paced: one probe per 20 ms at most, from each side.
                assert!(o.sent <= 2 * 10_000 / 20 + 2, "{}", o.sent);
            }
        }
    }
    eprintln!("{table}");
}

#[test]
fn strangers_replays_and_floods_cost_little() {
    let t0 = Instant::now();
    let peer: SocketAddr = "203.0.113.2:5000".parse().unwrap();
    let cands = [Candidate {
        addr: peer,
        kind: CandidateKind::Reflexive,
    }];
    let mut me = Puncher::new(
        PunchKey::from_bytes([7; 32]),
        PunchRole::Controlled,
        &cands,
        PunchConfig::default(),
        [1; 32],
        t0,
    );
    let mut caller = Puncher::new(
        PunchKey::from_bytes([7; 32]),
        PunchRole::Controlling,
        &[],
        PunchConfig::default(),
        [2; 32],
        t0,
    );
    let mut stranger = Puncher::new(
        PunchKey::from_bytes([8; 32]),
        PunchRole::Controlling,
        &[Candidate {
            addr: "198.51.100.2:5000".parse().unwrap(),
            kind: CandidateKind::Host,
        }],
        PunchConfig::default(),
        [3; 32],
        t0,
    );
    let stranger_probe = stranger.poll_transmit(t0).unwrap().bytes;
    // A valid ping of the real caller (say, captured on the wire), replayed from many
    // spoofed sources, and a stranger's probes: one second of it.
    caller
        .remotes
        .push(Remote::new("198.51.100.2:5000".parse().unwrap()));
    let ping = caller.poll_transmit(t0).unwrap().bytes;
    let mut sent = 0;
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 100);
        let from = SocketAddr::from(([192, 0, 2, (i % 250) as u8], 1000 + (i % 4000) as u16));
        me.handle(now, from, &ping);
        me.handle(now, from, &stranger_probe);
        let mut garbage = ping.clone();
        garbage[30] ^= 1;
        me.handle(now, from, &garbage);
        while me.poll_transmit(now).is_some() {
            sent += 1;
        }
    }
    // Answers are capped per second and our own pings stay paced.
    let c = PunchConfig::default();
    let paced = (Duration::from_secs(1).as_millis() / c.pace.as_millis()) as u32 + 1;
    assert!(sent <= c.max_pongs_per_sec + paced, "{sent}");
    // The replayed ping was taken once: one answer, one new address; every replay after it
    // was dropped like the mutated and foreign probes.
    assert_eq!(me.remotes.len(), 2);
    assert_eq!(me.report().pings_heard, 1);
    assert_eq!(me.report().dropped, 30_000 - 1);
    assert!(me.working().is_none());
    // A ping reflected back at its own sender is not mistaken for the peer.
    let mut reflected = caller.poll_transmit(t0 + Duration::from_secs(1)).unwrap();
    let before = caller.report().pings_heard;
    caller.handle(t0, peer, &std::mem::take(&mut reflected.bytes));
    assert_eq!(caller.report().pings_heard, before);
}

#[test]
fn probes_are_fixed_size_random_looking_and_never_quic() {
    let t0 = Instant::now();
    let peer: SocketAddr = "203.0.113.2:5000".parse().unwrap();
    let mut p = Puncher::new(
        PunchKey::from_bytes([7; 32]),
        PunchRole::Controlling,
        &[Candidate {
            addr: peer,
            kind: CandidateKind::Reflexive,
        }],
        PunchConfig::default(),
        [1; 32],
        t0,
    );
    let mut seen = HashSet::new();
    for i in 0..200 {
        let t = p.poll_transmit(t0 + Duration::from_millis(20 * i)).unwrap();
        assert_eq!(t.bytes.len(), PROBE_LEN);
        assert!(is_probe(&t.bytes));
        // Nothing repeats (no fixed header an observer could match), and the peer's address
        // never appears in clear.
        assert!(seen.insert(t.bytes[1..9].to_vec()));
        assert!(!t.bytes.windows(4).any(|w| w == [203, 0, 113, 2]));
    }
    // A QUIC packet (fixed bit set) is never taken for a probe, whatever its size.
    let mut quic = vec![0x40u8; PROBE_LEN];
    assert!(!is_probe(&quic));
    quic[0] = 0xc3;
    assert!(!is_probe(&quic));
}

#[test]
fn timers_never_point_into_the_past() {
    let t0 = Instant::now();
    let c = PunchConfig::default();
    // Nothing to probe: the deadline only.
    let idle = Puncher::new(
        PunchKey::from_bytes([7; 32]),
        PunchRole::Controlled,
        &[],
        c.clone(),
        [1; 32],
        t0,
    );
    assert_eq!(idle.poll_timeout(), Some(t0 + c.timeout));
    // Found a path, then kept answering past the deadline (the callee waiting for QUIC):
    // every timer handed out lies ahead.
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "198.51.100.2:5000".parse().unwrap(),
        "203.0.113.2:5000".parse().unwrap(),
    );
    let cand = |addr| Candidate {
        addr,
        kind: CandidateKind::Reflexive,
    };
    let key = || PunchKey::from_bytes([7; 32]);
    let mut a = Puncher::new(
        key(),
        PunchRole::Controlled,
        &[cand(b_addr)],
        c.clone(),
        [1; 32],
        t0,
    );
    let mut b = Puncher::new(
        key(),
        PunchRole::Controlling,
        &[cand(a_addr)],
        c.clone(),
        [2; 32],
        t0,
    );
    let ping = a.poll_transmit(t0).unwrap();
    b.handle(t0, a_addr, &ping.bytes);
    while let Some(t) = b.poll_transmit(t0) {
        if t.dest == a_addr {
            a.handle(t0, b_addr, &t.bytes);
        }
    }
    assert!(a.working().is_some());
    let late = t0 + c.timeout + Duration::from_secs(3);
    a.handle_timeout(late);
    assert!(!a.is_failed());
    while a.poll_transmit(late).is_some() {}
    assert!(a.poll_timeout().is_none_or(|t| t > late));
}

#[test]
fn a_forwarded_port_reaches_every_nat_when_its_side_waits_for_the_first_probe() {
    let mut table = String::new();
    for other in ALL {
        for (forwarded, sym_side) in [([false, true], 1), ([true, false], 0)] {
            let mut types = [other, other];
            types[sym_side] = NatType::Symmetric;
            let o = punch_mapped(types[0], types[1], forwarded, true);
            table += &format!(
                "{:?}{} -> {:?}{}: {} in {:?}\n",
                types[0],
                if forwarded[0] { "+fwd" } else { "" },
                types[1],
                if forwarded[1] { "+fwd" } else { "" },
                if o.working.is_some() { "ok" } else { "FAIL" },
                o.elapsed
            );
            assert!(o.working.is_some(), "{table}");
            // The forwarded side waits for the other's first probe (the callee's starts
            // 300 ms late), never for the whole hold.
            assert!(o.elapsed < Duration::from_millis(800), "{table}");
        }
    }
    eprintln!("{table}");
    // Without the hold, a forwarded caller's own first probe to a callee with a stable
    // address takes the flow's reply direction, and its router drops the callee's probes to
    // the forwarded port: the reason for the hold.
    let o = punch_mapped(
        NatType::Symmetric,
        NatType::PortRestricted,
        [true, false],
        false,
    );
    assert!(o.working.is_none());
}
