//! The one simulation harness of the core's machines, on virtual time: hosts, each on the
//! open network or behind a NAT with one of the behaviours of RFC 4787 (mapping and
//! filtering endpoint-independent, address-dependent or address-and-port-dependent; the
//! port kept or not; a port forwarded on request), joined by a network with a fixed one-way
//! delay that can be cut, and a NAT that can be renumbered (a new public address, its
//! mappings gone).
//!
//! Machines plug in through [`Machine`] (bytes, time in; bytes, timers out), the machine on
//! host `i` being the `i`-th of the slice each step takes: the punch tests step
//! [`crate::punch::Puncher`]s through NATs, the session's tests step two
//! [`crate::session::Session`]s, `call_machine_tests` two whole
//! [`crate::call::CallMachine`]s (control stream and media datagrams on one network), and
//! the tests below a whole call through two NATs: a punch,
//! the session on the punched path, a router renumbered mid-call, a punch again and the call
//! resumed, as the NAT lab's `renumber` cell does with real routers. (The media tests of
//! `call_tests` keep a line model of their own: a rate-limited queue behind a model of
//! QUIC's congestion window, per datagram.)

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::punch::{Candidate, CandidateKind};
use crate::session::{Event, Session};

/// A machine on a host of the simulated network.
pub(crate) trait Machine {
    /// A datagram from `from` arrived.
    fn handle(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// The next datagram to send, and where to.
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)>;
    /// When the machine next wants [`Machine::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

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

pub(crate) const ALL: [NatType; 6] = [
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

/// One host: its socket's address, and its router's NAT if it has one.
pub(crate) struct Host {
    pub(crate) addr: SocketAddr,
    nat: Option<Nat>,
    /// Datagrams its machine sent.
    pub(crate) sent: u64,
}

impl Host {
    /// A host at `lan` behind a NAT of `nat`'s type whose public address is `wan` (an open
    /// host is at `wan` itself); its socket on port 5000.
    pub(crate) fn new(nat: NatType, lan: [u8; 4], wan: [u8; 4]) -> Self {
        match nat.model() {
            None => Self {
                addr: SocketAddr::from((wan, 5000)),
                nat: None,
                sent: 0,
            },
            Some(model) => Self {
                addr: SocketAddr::from((lan, 5000)),
                nat: Some(Nat::new(IpAddr::from(wan), model)),
                sent: 0,
            },
        }
    }

    /// The address this host's datagrams to `dst` leave its network with.
    fn egress(&mut self, dst: SocketAddr) -> SocketAddr {
        match &mut self.nat {
            Some(nat) => nat.outbound(self.addr, dst),
            None => self.addr,
        }
    }

    /// Whether a datagram to `dst` from `src` reaches this host.
    fn ingress(&mut self, src: SocketAddr, dst: SocketAddr) -> bool {
        let host = self.addr;
        match &mut self.nat {
            Some(nat) => nat.wan == dst.ip() && nat.inbound(src, dst.port(), host) == Some(host),
            None => self.addr == dst,
        }
    }

    /// The public IP address datagrams for this host are sent to.
    fn public_ip(&self) -> IpAddr {
        self.nat.as_ref().map_or(self.addr.ip(), |n| n.wan)
    }

    /// The router forwards a port to the host; returns that public address.
    pub(crate) fn forward(&mut self) -> Option<SocketAddr> {
        let nat = self.nat.as_mut()?;
        nat.forward = Some(40_000);
        Some(SocketAddr::new(nat.wan, 40_000))
    }

    /// The router gets a new public address, and forgets every mapping (as when a provider
    /// renumbers a line).
    pub(crate) fn renumber(&mut self, wan: [u8; 4]) {
        if let Some(nat) = &mut self.nat {
            nat.wan = IpAddr::from(wan);
            nat.maps.clear();
        }
    }

    /// Host, mapped and reflexive candidates, the reflexive one as a STUN server would have
    /// seen it.
    pub(crate) fn candidates(&mut self) -> Vec<Candidate> {
        let stun: SocketAddr = "192.0.2.1:3478".parse().expect("an address");
        let reflexive = self.egress(stun);
        let mut out = vec![Candidate {
            addr: self.addr,
            kind: CandidateKind::Host,
        }];
        if let Some(nat) = &self.nat {
            if let Some(port) = nat.forward {
                out.push(Candidate {
                    addr: SocketAddr::new(nat.wan, port),
                    kind: CandidateKind::Mapped,
                });
            }
        }
        if reflexive != self.addr {
            out.push(Candidate {
                addr: reflexive,
                kind: CandidateKind::Reflexive,
            });
        }
        out
    }
}

/// A datagram on its way.
struct InFlight {
    to: usize,
    from: SocketAddr,
    dest: SocketAddr,
    bytes: Vec<u8>,
}

/// One side of a call on the simulated network: its session, writing its control stream to
/// `peer`, and what it reported.
pub(crate) struct End<'a> {
    pub(crate) session: &'a mut Session,
    pub(crate) peer: SocketAddr,
    pub(crate) start: Instant,
    pub(crate) events: &'a mut Vec<(Duration, Event)>,
    /// Every delivery: when, and the bytes.
    pub(crate) received: Option<&'a mut Vec<(Duration, Vec<u8>)>>,
}

impl Machine for End<'_> {
    fn handle(&mut self, now: Instant, _from: SocketAddr, bytes: &[u8]) {
        if let Some(r) = &mut self.received {
            r.push((now - self.start, bytes.to_vec()));
        }
        self.session.handle_stream_data(now, bytes);
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        while let Some(e) = self.session.poll_event() {
            self.events.push((now - self.start, e));
        }
        let mut buf = Vec::new();
        self.session
            .poll_transmit(&mut buf)
            .then_some((self.peer, buf))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }
}

/// A host's puncher, once it has one.
pub(crate) struct Prober(pub(crate) Option<crate::punch::Puncher>);

impl Machine for Prober {
    fn handle(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if let Some(p) = self.0.as_mut().filter(|_| crate::punch::is_probe(bytes)) {
            p.handle(now, from, bytes);
        }
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let t = self.0.as_mut()?.poll_transmit(now)?;
        Some((t.dest, t.bytes))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.as_ref()?.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = &mut self.0 {
            p.handle_timeout(now);
        }
    }
}

/// The hosts and the network between them.
pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) hosts: Vec<Host>,
    /// Every datagram's delay.
    pub(crate) one_way: Duration,
    /// A cut network drops everything sent.
    pub(crate) up: bool,
    wire: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
}

impl Net {
    pub(crate) fn new(now: Instant, one_way: Duration) -> Self {
        Self {
            now,
            hosts: Vec::new(),
            one_way,
            up: true,
            wire: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Adds a host; its machine is the one at the same index in each step's slice.
    pub(crate) fn add(&mut self, host: Host) -> usize {
        self.hosts.push(host);
        self.hosts.len() - 1
    }

    /// Puts on the network whatever each machine has to send now.
    pub(crate) fn transmit(&mut self, machines: &mut [&mut dyn Machine]) {
        for (i, m) in machines.iter_mut().enumerate() {
            while let Some((dest, bytes)) = m.poll_transmit(self.now) {
                self.hosts[i].sent += 1;
                if !self.up {
                    continue;
                }
                let from = self.hosts[i].egress(dest);
                let Some(to) = self.hosts.iter().position(|h| h.public_ip() == dest.ip()) else {
                    continue;
                };
                self.seq += 1;
                self.wire.insert(
                    (self.now + self.one_way, self.seq),
                    InFlight {
                        to,
                        from,
                        dest,
                        bytes,
                    },
                );
            }
        }
    }

    /// Moves to the next arrival or timer due by `end`, hands over every datagram due then
    /// (its host's NAT letting it in or not) and fires every timer due. Without any by
    /// `end`, moves to `end` and returns false.
    pub(crate) fn advance(&mut self, machines: &mut [&mut dyn Machine], end: Instant) -> bool {
        let next = self
            .wire
            .first_key_value()
            .map(|(k, _)| k.0)
            .into_iter()
            .chain(machines.iter().filter_map(|m| m.poll_timeout()))
            .min();
        let Some(next) = next.filter(|&t| t <= end) else {
            self.now = self.now.max(end);
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            if self.hosts[p.to].ingress(p.from, p.dest) {
                machines[p.to].handle(now, p.from, &p.bytes);
            }
        }
        for m in machines.iter_mut() {
            if m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now);
            }
        }
        true
    }

    /// Steps until `end`.
    pub(crate) fn run_until(&mut self, machines: &mut [&mut dyn Machine], end: Instant) {
        loop {
            self.transmit(machines);
            if !self.advance(machines, end) {
                return;
            }
        }
    }
}

/// A host running a call as a node does: its session's control stream and its puncher's
/// probes on one socket, probes told apart by their form; and, on the callee's side, what
/// the node's listener does with a connection from a new address that asks to resume the
/// call (a fresh session reads its first message, and a `Resume` naming the call's token
/// hands the path to the call).
struct Node<'a> {
    end: End<'a>,
    punch: Prober,
    /// Callee: the call's token, which a resuming caller names.
    token: Option<[u8; 32]>,
    /// The session has a path (before, as a node's, it is not started).
    up: bool,
}

impl Machine for Node<'_> {
    fn handle(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if crate::punch::is_probe(bytes) {
            return self.punch.handle(now, from, bytes);
        }
        if from == self.end.peer {
            return self.end.handle(now, from, bytes);
        }
        let Some(token) = self.token else { return };
        let mut first = Session::new(
            crate::session::Role::Callee,
            crate::session::SessionConfig::default(),
            now,
        );
        first.handle_stream_data(now, bytes);
        if first.poll_event() == Some(Event::ResumeRequested(token))
            && self.end.session.resume_as_callee(now).is_ok()
        {
            self.end.peer = from;
            let rest = first.take_leftover();
            if !rest.is_empty() {
                self.end.handle(now, from, &rest);
            }
        }
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.punch.poll_transmit(now).or_else(|| {
            if self.up {
                self.end.poll_transmit(now)
            } else {
                None
            }
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.punch.poll_timeout(),
            self.end.poll_timeout().filter(|_| self.up),
        ]
        .into_iter()
        .flatten()
        .min()
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.punch.poll_timeout().is_some_and(|t| t <= now) {
            self.punch.handle_timeout(now);
        }
        if self.up && self.end.poll_timeout().is_some_and(|t| t <= now) {
            self.end.handle_timeout(now);
        }
    }
}

/// Both sides start a punch with what each would know: the other's candidates as measured
/// now (a router renumbered since shows its new address), and a key of this attempt.
fn start_punch(net: &mut Net, a: &mut Node, b: &mut Node, attempt: u8) {
    use crate::punch::{PunchConfig, PunchKey, PunchRole, Puncher};
    let (a_cands, b_cands) = (net.hosts[0].candidates(), net.hosts[1].candidates());
    let key = || PunchKey::from_bytes([attempt; 32]);
    let start = |role, cands: &[Candidate], seed| {
        Puncher::new(
            key(),
            role,
            cands,
            PunchConfig::default(),
            [seed; 32],
            net.now,
        )
    };
    a.punch.0 = Some(start(PunchRole::Controlling, &b_cands, attempt));
    b.punch.0 = Some(start(PunchRole::Controlled, &a_cands, attempt + 1));
}

/// How far a call through two port-restricted NATs got once Alice's router was renumbered
/// mid-call: whether it came back, and what each side said.
struct Renumbered {
    back: Option<Duration>,
    alice: Vec<(Duration, Event)>,
    bob: Vec<(Duration, Event)>,
    chat_after: bool,
}

/// Alice calls Bob, both behind port-restricted NATs: a punch, then the session on the
/// punched path; chat crosses. Alice's router then gets a new public address and forgets its
/// mappings. With `punch_again`, Alice's reconnect punches anew (with her address as
/// measured now, as her search through the DHT does) and resumes on what that opened;
/// without, she resumes towards Bob's address as the call knew it.
fn renumbered_mid_call(punch_again: bool) -> Renumbered {
    use crate::session::{Role, SessionConfig};
    let t0 = Instant::now();
    let token = [7u8; 32];
    let mut net = Net::new(t0, Duration::from_millis(15));
    net.add(Host::new(
        NatType::PortRestricted,
        [10, 0, 1, 2],
        [198, 51, 100, 2],
    ));
    net.add(Host::new(
        NatType::PortRestricted,
        [10, 0, 2, 2],
        [203, 0, 113, 2],
    ));
    let (mut alice, mut bob) = (
        Session::new(Role::Caller, SessionConfig::default(), t0),
        Session::new(Role::Callee, SessionConfig::default(), t0),
    );
    let (mut alice_events, mut bob_events) = (Vec::new(), Vec::new());
    let nowhere: SocketAddr = "192.0.2.9:9".parse().expect("an address");
    let mut a = Node {
        end: End {
            session: &mut alice,
            peer: nowhere,
            start: t0,
            events: &mut alice_events,
            received: None,
        },
        punch: Prober(None),
        token: None,
        up: false,
    };
    let mut b = Node {
        end: End {
            session: &mut bob,
            peer: nowhere,
            start: t0,
            events: &mut bob_events,
            received: None,
        },
        punch: Prober(None),
        token: Some(token),
        up: false,
    };
    // Until the punch opened a path both ways (the caller's session waits for it: nothing
    // of it is sent before).
    let punched = |net: &mut Net, a: &mut Node, b: &mut Node| {
        let limit = net.now + Duration::from_secs(10);
        loop {
            net.transmit(&mut [&mut *a, &mut *b]);
            let (pa, pb) = (a.punch.0.as_ref(), b.punch.0.as_ref());
            if let (Some(x), Some(y)) = (pa.and_then(|p| p.working()), pb.and_then(|p| p.working()))
            {
                return Some((x, y));
            }
            if !net.advance(&mut [&mut *a, &mut *b], limit) {
                return None;
            }
        }
    };
    start_punch(&mut net, &mut a, &mut b, 1);
    let (to_bob, to_alice) = punched(&mut net, &mut a, &mut b).expect("the first punch works");
    (a.end.peer, b.end.peer) = (to_bob, to_alice);
    (a.punch.0, b.punch.0) = (None, None);
    (a.up, b.up) = (true, true);
    let run = |net: &mut Net, a: &mut Node, b: &mut Node, d: Duration| {
        let end = net.now + d;
        net.run_until(&mut [a, b], end);
    };
    run(&mut net, &mut a, &mut b, Duration::from_millis(200));
    b.end.session.alert(net.now).expect("ringing");
    b.end.session.accept(net.now).expect("answered");
    run(&mut net, &mut a, &mut b, Duration::from_millis(200));
    a.end.session.send_chat(net.now, "hello").expect("up");
    run(&mut net, &mut a, &mut b, Duration::from_secs(1));
    assert!(a.end.session.is_active() && b.end.session.is_active());
    assert!(b
        .end
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Chat { .. })));

    net.hosts[0].renumber([198, 51, 100, 3]);
    let renumbered = net.now;
    run(&mut net, &mut a, &mut b, Duration::from_secs(10));
    // The caller's node dials anew: with a punch, or to the address it knew.
    if punch_again {
        start_punch(&mut net, &mut a, &mut b, 2);
        if let Some((to_bob, _)) = punched(&mut net, &mut a, &mut b) {
            a.end.peer = to_bob;
        }
    }
    a.end
        .session
        .resume_as_caller(net.now, token)
        .expect("reconnecting");
    run(&mut net, &mut a, &mut b, Duration::from_secs(2));
    let chat_after = a.end.session.send_chat(net.now, "back").is_ok();
    run(&mut net, &mut a, &mut b, Duration::from_secs(100));
    let back = b
        .end
        .events
        .iter()
        .find(|(_, e)| *e == Event::Reconnected)
        .map(|(t, _)| t.saturating_sub(renumbered - t0));
    let bob_heard_back = b
        .end
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Chat { text, .. } if text == "back"));
    drop((a, b));
    Renumbered {
        back,
        alice: alice_events,
        bob: bob_events,
        chat_after: chat_after && bob_heard_back,
    }
}

/// The NAT lab's `renumber` cell on virtual time: the old path is dead for good once
/// Alice's router is renumbered (Bob's router lets in only the address Alice had), both
/// sides say they are reconnecting; a new punch with Alice's new address opens a path, the
/// call resumes on it with the same session (its chat numbering goes on), and nobody ends.
#[test]
fn a_call_through_two_nats_comes_back_by_a_new_punch_after_a_router_is_renumbered() {
    let r = renumbered_mid_call(true);
    for (who, events) in [("Alice", &r.alice), ("Bob", &r.bob)] {
        let said = |want: &Event| events.iter().filter(|(_, e)| e == want).count();
        assert_eq!(said(&Event::Reconnecting), 1, "{who}: {events:?}");
        assert_eq!(said(&Event::Reconnected), 1, "{who}: {events:?}");
        assert!(
            !events.iter().any(|(_, e)| matches!(e, Event::Ended(_))),
            "{who}: {events:?}"
        );
    }
    // 4 s of silence before "reconnecting", the 10 s the test waits, a punch of a few
    // round trips.
    let back = r.back.expect("Bob's side came back");
    eprintln!("back {back:?} after the router was renumbered");
    assert!(back < Duration::from_secs(11), "{back:?}");
    assert!(r.chat_after, "chat did not cross after the resume");
}

/// The control: the same call resumed towards the address it knew, with no new punch,
/// never comes back (Bob's router drops what comes from Alice's new address), and ends when
/// the reconnect window runs out.
#[test]
fn without_a_new_punch_a_renumbered_call_does_not_come_back() {
    let r = renumbered_mid_call(false);
    assert_eq!(r.back, None);
    assert!(!r.chat_after);
    for events in [&r.alice, &r.bob] {
        assert!(
            events
                .iter()
                .any(|(_, e)| *e == Event::Ended(crate::session::EndReason::PeerVanished)),
            "{events:?}"
        );
    }
}
