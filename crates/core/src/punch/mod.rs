//! UDP hole punching (sans-IO): both sides send small sealed probes to each other's candidate
//! addresses at once, from the socket the call will use, and the first address that answers
//! carries the QUIC handshake. Outgoing probes open our NAT's mapping and filter for the
//! peer; the peer's probes, once one gets through, tell us an address its NAT really uses
//! (a "peer-reflexive" candidate, how a symmetric NAT on one side can still be crossed).
//!
//! ```text
//! probe  = b0 (random, top two bits 0: never a QUIC packet) | nonce: 24 |
//!          XChaCha20-Poly1305(punch key, nonce, aad = b0, kind: 1 | txid: 8 | address: 19)
//! kind   = ping or pong, and the sender's role (a ping reflected back at its sender is ignored)
//! address = in a pong, where the ping came from (our address as the peer sees it)
//! ```
//!
//! Every probe has the same size and looks random: an observer learns that two addresses
//! exchange small packets, not whose they are. A stranger's packet costs one failed AEAD
//! open; answers are rate-limited, so a flood of valid-looking probes (replays) cannot make
//! us a reflector.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::sealed;

#[cfg(test)]
mod sim;

/// Size of every probe on the wire.
pub const PROBE_LEN: usize = 1 + NONCE_LEN + PLAIN_LEN + 16;
const NONCE_LEN: usize = 24;
const PLAIN_LEN: usize = 1 + 8 + ADDR_LEN;
const ADDR_LEN: usize = 19;
/// Remote addresses tracked at once: the peer's own (at most six in a rendezvous record) and
/// the ones its probes arrive from. More are ignored, so a flood of sources costs nothing.
pub const MAX_REMOTES: usize = 16;

/// True for a datagram that may be a probe (QUIC packets always have the second bit set, as
/// we never negotiate greasing it), so the socket can route it without looking further.
pub fn is_probe(datagram: &[u8]) -> bool {
    datagram.len() == PROBE_LEN && datagram[0] & 0xC0 == 0
}

/// The key both sides derive for one call attempt. Wiped on drop; never printed.
pub struct PunchKey(pub(crate) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for PunchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PunchKey(..)")
    }
}

impl PunchKey {
    /// A key from raw bytes (both sides must use the same).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

/// Which side of the punch we are. The controlling side (the caller) picks the address and
/// opens QUIC on it; the controlled side keeps answering until the connection arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunchRole {
    /// Nominates the pair (the caller).
    Controlling,
    /// Answers and probes (the callee).
    Controlled,
}

/// Where a candidate address came from; decides the order of checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CandidateKind {
    /// An interface address of the peer (works on a shared LAN).
    Host,
    /// A port mapping the peer's router granted (UPnP-IGD, NAT-PMP, PCP).
    Mapped,
    /// The peer's public address as something outside observed it.
    Reflexive,
    /// Where the peer's probes came from, learned during this punch.
    PeerReflexive,
}

/// How a side's NAT maps the call socket, as learned by asking two DHT nodes what address
/// they see (`core::krpc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NatMapping {
    /// Not measured.
    #[default]
    Unknown,
    /// The same public address for every destination (no NAT, or a cone NAT): punchable
    /// from most networks.
    Stable,
    /// A new public port for each destination (a symmetric NAT): only a lenient NAT on the
    /// other side can meet it.
    Varies,
}

impl NatMapping {
    /// One byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Stable => 1,
            Self::Varies => 2,
        }
    }

    /// From its byte; unknown values read as [`Self::Unknown`].
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Stable,
            2 => Self::Varies,
            _ => Self::Unknown,
        }
    }
}

/// A remote address to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The address.
    pub addr: SocketAddr,
    /// Its origin.
    pub kind: CandidateKind,
}

/// Timers of a punch.
#[derive(Clone, Debug)]
pub struct PunchConfig {
    /// Gap between two probes we send (to any address).
    pub pace: Duration,
    /// Give up after this long without a working address.
    pub timeout: Duration,
    /// Most answers (pongs) sent per second, whatever arrives.
    pub max_pongs_per_sec: u32,
}

impl Default for PunchConfig {
    fn default() -> Self {
        Self {
            pace: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
            max_pongs_per_sec: 50,
        }
    }
}

/// A datagram to send from the call socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddr,
    /// The probe.
    pub bytes: Vec<u8>,
}

/// What a punch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PunchEvent {
    /// Probes went there and answers came back: QUIC can use this address. The first such
    /// address is the one the controlling side should connect to.
    Working {
        /// The peer's address.
        remote: SocketAddr,
        /// Round trip of the probe.
        rtt: Duration,
        /// Our own address as the peer saw it.
        observed: Option<SocketAddr>,
    },
    /// Nothing worked before the timeout.
    Failed(PunchReport),
}

/// Counts that explain a punch, for the user and the lab.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PunchReport {
    /// Addresses of the peer we probed.
    pub remotes: usize,
    /// Of which the peer had offered as public (not on a private or loopback range).
    pub public_remotes: usize,
    /// Probes sent (pings and pongs).
    pub sent: u64,
    /// Valid pings received from the peer.
    pub pings_heard: u64,
    /// Valid pongs received.
    pub pongs_heard: u64,
    /// Datagrams that were not the peer's probes.
    pub dropped: u64,
    /// How our NAT maps, if measured.
    pub our_nat: NatMapping,
    /// How the peer's NAT maps, as its record said.
    pub their_nat: NatMapping,
}

impl PunchReport {
    /// A sentence for the user: what failed and what would help.
    pub fn explain(&self) -> String {
        if self.remotes == 0 {
            return "No direct path: the contact offered no address to try.".into();
        }
        if self.public_remotes == 0 && self.pings_heard == 0 {
            return format!(
                "No direct path: none of the contact's {} addresses answered. All of them are \
                 local-network addresses, so the contact is offline, or on another network \
                 and does not know its public address yet (a port mapping on its router, or \
                 a STUN server you both trust, would give it one). EXTRA SAFE never relays \
                 calls.",
                self.remotes
            );
        }
        let help = "Turning on UPnP or NAT-PMP/PCP in the router of the side with the \
                    symmetric NAT (EXTRA SAFE then asks it to forward a port by itself), or \
                    calling from another network, would help; EXTRA SAFE never relays calls.";
        match (self.our_nat, self.their_nat, self.pings_heard) {
            (NatMapping::Varies, NatMapping::Varies, _) => {
                return format!(
                    "No direct path: both your network and the contact's are behind NATs that \
                     give every destination a new port (symmetric NATs, common on mobile and \
                     carrier networks); two of those cannot be punched through. {help}"
                )
            }
            (NatMapping::Varies, _, 0) => {
                return format!(
                    "No direct path: your network's NAT gives every destination a new port \
                     (a symmetric NAT), and the contact's filters by port, so neither side's \
                     probes got through. {help}"
                )
            }
            (_, NatMapping::Varies, 0) => {
                return format!(
                    "No direct path: the contact's NAT gives every destination a new port \
                     (a symmetric NAT), and yours filters by port, so neither side's probes \
                     got through. {help}"
                )
            }
            _ => {}
        }
        if self.pings_heard == 0 {
            return format!(
                "No direct path: none of the contact's {} addresses answered and none of its \
                 probes reached us. One side is behind a NAT that changes ports for every \
                 destination (symmetric, common on mobile and carrier networks) while the \
                 other filters by port, or both are symmetric, or a firewall drops UDP. \
                 Turning on UPnP or NAT-PMP/PCP in either router (EXTRA SAFE then asks it to \
                 forward a port by itself), or calling from another network, would help; \
                 EXTRA SAFE never relays calls.",
                self.remotes
            );
        }
        "No direct path: the contact's probes reached us but our answers never got back, so \
         its network filters what we send (a strict firewall or a symmetric NAT). A port \
         mapping on its router, or calling from another network, would help; EXTRA SAFE \
         never relays calls."
            .into()
    }
}

#[derive(Debug)]
struct Remote {
    addr: SocketAddr,
    /// Last few pings sent here (txid, time), to match pongs.
    outstanding: VecDeque<([u8; 8], Instant)>,
}

const OUTSTANDING: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping = 1,
    Pong = 2,
}

/// One punch attempt. Feed it received probes and timeouts; take probes to send and events.
#[derive(Debug)]
pub struct Puncher {
    key: PunchKey,
    role: PunchRole,
    config: PunchConfig,
    remotes: Vec<Remote>,
    cursor: usize,
    next_ping: Instant,
    deadline: Instant,
    pongs: VecDeque<Transmit>,
    /// Pong budget: tokens and when they were last refilled.
    budget: (u32, Instant),
    events: VecDeque<PunchEvent>,
    done: bool,
    working: Option<SocketAddr>,
    report: PunchReport,
    rng: Rng,
    /// IDs of the pings heard lately (a 10 s punch at the peer's pace sends ~500).
    pings_seen: VecDeque<[u8; 8]>,
    /// Our pings wait for the peer's first one (or `next_ping`).
    held: bool,
}

const PINGS_REMEMBERED: usize = 1024;

impl Puncher {
    /// Starts punching towards `candidates` (best first after sorting by kind: host,
    /// mapped, reflexive). `seed` must be fresh random bytes (nonces and ping IDs come from it).
    pub fn new(
        key: PunchKey,
        role: PunchRole,
        candidates: &[Candidate],
        config: PunchConfig,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let mut remotes: Vec<Remote> = Vec::new();
        let mut sorted = candidates.to_vec();
        sorted.sort_by_key(|c| c.kind);
        for c in sorted {
            // An IPv4-mapped IPv6 address is the IPv4 address (how replies will name it).
            let addr = SocketAddr::new(c.addr.ip().to_canonical(), c.addr.port());
            if remotes.len() < MAX_REMOTES
                && usable(addr)
                && !remotes.iter().any(|r| r.addr == addr)
            {
                remotes.push(Remote::new(addr));
            }
        }
        let report = PunchReport {
            remotes: remotes.len(),
            public_remotes: remotes.iter().filter(|r| is_public(r.addr.ip())).count(),
            ..Default::default()
        };
        Self {
            key,
            role,
            budget: (config.max_pongs_per_sec, now),
            deadline: now + config.timeout,
            config,
            remotes,
            cursor: 0,
            next_ping: now,
            pongs: VecDeque::new(),
            events: VecDeque::new(),
            done: false,
            working: None,
            report,
            rng: Rng::new(seed),
            pings_seen: VecDeque::new(),
            held: false,
        }
    }

    /// Sends no ping before `until` unless the peer's first ping comes sooner; pongs are
    /// never held. For a side whose router forwards a port to it: the peer's probes must
    /// reach that port before our own outgoing probes make the NAT give us other ports.
    pub fn hold_pings(&mut self, until: Instant) {
        self.next_ping = self.next_ping.max(until);
        self.held = true;
    }

    /// What each side knows of its NAT (for the explanation if nothing works).
    pub fn set_nat(&mut self, ours: NatMapping, theirs: NatMapping) {
        self.report.our_nat = ours;
        self.report.their_nat = theirs;
    }

    /// The first address found working, if any.
    pub fn working(&self) -> Option<SocketAddr> {
        self.working
    }

    /// Counts so far.
    pub fn report(&self) -> &PunchReport {
        &self.report
    }

    /// True once the punch failed (no more probes are sent).
    pub fn is_failed(&self) -> bool {
        self.done && self.working.is_none()
    }

    /// The next probe to send now, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.pongs.pop_front() {
            self.report.sent += 1;
            return Some(t);
        }
        if self.done || now < self.next_ping || self.remotes.is_empty() {
            return None;
        }
        self.next_ping = now + self.config.pace;
        self.held = false;
        let i = self.cursor % self.remotes.len();
        self.cursor = self.cursor.wrapping_add(1);
        let txid = self.rng.txid();
        let bytes = self.seal(Kind::Ping, txid, None);
        let remote = &mut self.remotes[i];
        if remote.outstanding.len() == OUTSTANDING {
            remote.outstanding.pop_front();
        }
        remote.outstanding.push_back((txid, now));
        self.report.sent += 1;
        Some(Transmit {
            dest: remote.addr,
            bytes,
        })
    }

    /// When [`Self::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pongs.is_empty() || self.done {
            return None;
        }
        // Nothing to probe: only the deadline is left. Found: no deadline any more (a past
        // one would wake the caller in a loop).
        let deadline = self.working.is_none().then_some(self.deadline);
        let ping = (!self.remotes.is_empty()).then_some(self.next_ping);
        match (ping, deadline) {
            (Some(p), Some(d)) => Some(p.min(d)),
            (p, d) => p.or(d),
        }
    }

    /// Advances time: gives up at the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.done && self.working.is_none() && now >= self.deadline {
            self.done = true;
            self.events
                .push_back(PunchEvent::Failed(self.report.clone()));
        }
    }

    /// Stops sending pings (the connection is up, or the attempt was abandoned); pongs are
    /// still answered so the peer can finish.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<PunchEvent> {
        self.events.pop_front()
    }

    /// A datagram that [`is_probe`] accepted arrived from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some((kind, role, txid, addr)) = self.open(datagram) else {
            self.report.dropped += 1;
            return;
        };
        if role == self.role {
            // Our own ping or pong reflected back: not the peer.
            self.report.dropped += 1;
            return;
        }
        match kind {
            Kind::Ping => {
                // Each ping the peer sends has a fresh ID, sealed: one seen before is a
                // replay (someone re-sending a captured probe, perhaps from forged sources),
                // and gets neither an answer nor a place among the addresses to try.
                if self.pings_seen.contains(&txid) {
                    self.report.dropped += 1;
                    return;
                }
                if self.pings_seen.len() == PINGS_REMEMBERED {
                    self.pings_seen.pop_front();
                }
                self.pings_seen.push_back(txid);
                self.report.pings_heard += 1;
                if self.held {
                    self.held = false;
                    self.next_ping = now;
                }
                if !self.remotes.iter().any(|r| r.addr == from)
                    && self.remotes.len() < MAX_REMOTES
                    && usable(from)
                {
                    self.remotes.push(Remote::new(from));
                    self.report.remotes = self.remotes.len();
                    // Try the new address next: it is the one the peer's NAT really uses.
                    self.cursor = self.remotes.len() - 1;
                }
                if self.take_token(now) && self.pongs.len() < 8 {
                    let bytes = self.seal(Kind::Pong, txid, Some(from));
                    self.pongs.push_back(Transmit { dest: from, bytes });
                }
            }
            Kind::Pong => {
                let Some(remote) = self.remotes.iter_mut().find(|r| r.addr == from) else {
                    self.report.dropped += 1;
                    return;
                };
                let Some(pos) = remote.outstanding.iter().position(|(t, _)| *t == txid) else {
                    self.report.dropped += 1;
                    return;
                };
                let (_, sent) = remote
                    .outstanding
                    .remove(pos)
                    .expect("position is in range");
                self.report.pongs_heard += 1;
                if self.working.is_none() {
                    self.working = Some(from);
                    self.events.push_back(PunchEvent::Working {
                        remote: from,
                        rtt: now.saturating_duration_since(sent),
                        observed: addr,
                    });
                }
            }
        }
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let (tokens, since) = &mut self.budget;
        if now.saturating_duration_since(*since) >= Duration::from_secs(1) {
            *tokens = self.config.max_pongs_per_sec;
            *since = now;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }

    fn seal(&mut self, kind: Kind, txid: [u8; 8], addr: Option<SocketAddr>) -> Vec<u8> {
        let (b0, nonce) = self.rng.header();
        let mut plain = [0u8; PLAIN_LEN];
        plain[0] = kind as u8
            | if self.role == PunchRole::Controlling {
                0x10
            } else {
                0
            };
        plain[1..9].copy_from_slice(&txid);
        if let Some(a) = addr {
            encode_addr(a, &mut plain[9..]);
        }
        let mut out = Vec::with_capacity(PROBE_LEN);
        out.push(b0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed::seal(&self.key.0, &nonce, &[b0], &plain));
        out
    }

    #[allow(clippy::type_complexity)]
    fn open(&self, d: &[u8]) -> Option<(Kind, PunchRole, [u8; 8], Option<SocketAddr>)> {
        if !is_probe(d) {
            return None;
        }
        let nonce: &[u8; NONCE_LEN] = d[1..1 + NONCE_LEN].try_into().ok()?;
        let plain = sealed::open(&self.key.0, nonce, &d[..1], &d[1 + NONCE_LEN..])?;
        let kind = match plain[0] & 0x0f {
            1 => Kind::Ping,
            2 => Kind::Pong,
            _ => return None,
        };
        let role = match plain[0] & 0xf0 {
            0x10 => PunchRole::Controlling,
            0 => PunchRole::Controlled,
            _ => return None,
        };
        let txid: [u8; 8] = plain[1..9].try_into().ok()?;
        Some((kind, role, txid, decode_addr(&plain[9..])))
    }
}

/// A probe carrying any `plain` content, sealed under `key`: lets the fuzz target reach the
/// checks behind the seal. Not for protocol use.
#[doc(hidden)]
pub fn probe_with_content(key: &PunchKey, b0: u8, plain: &[u8; PLAIN_LEN]) -> Vec<u8> {
    let b0 = b0 & 0x3f;
    let nonce = [b0; NONCE_LEN];
    let mut out = vec![b0];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed::seal(&key.0, &nonce, &[b0], plain));
    out
}

/// Size of a probe's sealed content.
#[doc(hidden)]
pub const CONTENT_LEN: usize = PLAIN_LEN;

impl Remote {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            outstanding: VecDeque::with_capacity(OUTSTANDING),
        }
    }
}

fn usable(a: SocketAddr) -> bool {
    a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast()
}

/// Not private, loopback or link-local: an address a peer on another network could reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                // 100.64.0.0/10, carrier-grade NAT space.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xfe00) == 0xfc00)
        }
    }
}

fn encode_addr(a: SocketAddr, out: &mut [u8]) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&ip.octets());
        }
    }
    out[17..19].copy_from_slice(&a.port().to_be_bytes());
}

fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([b[17], b[18]]);
    let ip = match b[0] {
        4 => IpAddr::from([b[1], b[2], b[3], b[4]]),
        6 => IpAddr::from(<[u8; 16]>::try_from(&b[1..17]).ok()?),
        _ => return None,
    };
    usable(SocketAddr::new(ip, port)).then_some(SocketAddr::new(ip, port))
}

/// Nonces and ping IDs: BLAKE3 keyed by a random seed, over a counter (unique per punch, no
/// clock or OS randomness inside the state machine).
struct Rng {
    seed: Zeroizing<[u8; 32]>,
    counter: u64,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng(..)")
    }
}

impl Rng {
    fn new(seed: [u8; 32]) -> Self {
        Self {
            seed: Zeroizing::new(seed),
            counter: 0,
        }
    }

    fn next(&mut self) -> [u8; 32] {
        self.counter += 1;
        *blake3::keyed_hash(&self.seed, &self.counter.to_le_bytes()).as_bytes()
    }

    fn txid(&mut self) -> [u8; 8] {
        self.next()[..8].try_into().expect("8 of 32 bytes")
    }

    fn header(&mut self) -> (u8, [u8; NONCE_LEN]) {
        let r = self.next();
        (
            r[31] & 0x3f,
            r[..NONCE_LEN].try_into().expect("24 of 32 bytes"),
        )
    }
}
