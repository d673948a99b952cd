//! Who gets an answer: silence for every packet that does not prove the right to call us.
//!
//! A listener must not tell strangers that it exists, let alone who it is. QUIC would answer
//! any Initial with a handshake that (after one more round trip) shows our certificate, any
//! unknown version with a Version Negotiation packet, and any short-header packet for an
//! unknown connection with a stateless reset. So every datagram that reaches QUIC passes
//! this gate first, and the gate drops, unanswered, all that does not carry one of two
//! proofs in the destination connection ID (DCID), the one field a QUIC client chooses
//! freely and every QUIC packet carries in the clear:
//!
//! * **A first flight** (Initial or 0-RTT long header, version 1) carries a 20-byte DCID
//!   made by [`first_flight_dcid`]:
//!
//!   ```text
//!   nonce: 6 | ticket tag: 7 | contact tag: 7
//!   tag = BLAKE3-keyed(access key, "EXTRA SAFE first flight v1" | slot | window:u64 | nonce)[..7]
//!   window = unix seconds / 120
//!   ```
//!
//!   The ticket tag is keyed by the listener's *ticket key* (from the secret in its current
//!   ticket); the contact tag by the *pair key* the two contacts share (X25519 between their
//!   identity keys). A caller that lacks one of the keys fills that tag with random bytes,
//!   which nobody can tell from a tag. The listener accepts a flight if either tag verifies
//!   in the current window or the one before or after (clocks may differ by two minutes).
//!   Forging a tag takes 2^55 tries on average, each one packet.
//!
//!   *Replays.* A nonce is tied to the address that first used it: the same nonce from
//!   another address is dropped, and from the same address it is accepted only for
//!   [`RETRANSMIT_GRACE_MS`] (the client repeats its first flight while waiting for our
//!   answer). After three windows the tag itself no longer verifies. A captured first flight
//!   replayed by someone else therefore gets nothing back; one replayed within the grace from
//!   the very address it came from gets a handshake that goes to that address, whose
//!   certificate is encrypted under keys only the real caller can derive, and which can
//!   never ring anyone.
//!
//! * **Every other packet** is addressed to a live connection ID we issued ourselves
//!   ([`LocalCidKey::issue`]: a random part, the masked issue time, a tag under a key that
//!   never leaves this process). An Initial on one of our IDs passes only within
//!   [`HANDSHAKE_CID_SECS`] of its issue (later, QUIC would start a new connection for
//!   whoever saw the ID in the clear), anything else while the ID is younger than
//!   [`CID_LIFETIME_SECS`] + [`CID_GRACE_SECS`]. A random, foreign or expired ID is dropped,
//!   so no stateless reset ever goes out either.
//!
//! The gate reads no clock and draws no randomness: time, nonces and keys come in.

use std::collections::HashMap;
use std::net::SocketAddr;

use zeroize::Zeroizing;

use crate::identity::PeerId;

/// Bytes of a first flight's destination connection ID.
pub const FIRST_FLIGHT_DCID_LEN: usize = 20;
/// Bytes of the connection IDs we issue.
pub const LOCAL_CID_LEN: usize = 16;
/// Bytes of the secret a ticket carries.
pub const TICKET_SECRET_LEN: usize = 16;
/// Length of a time window of the first-flight tags, in seconds.
pub const WINDOW_SECS: u64 = 120;
/// How long the same nonce is accepted again from the address that first sent it: the
/// handshake timeout (10 s) and a margin. A client repeats its first flight only until it
/// hears from us.
pub const RETRANSMIT_GRACE_MS: u64 = 15_000;
/// An Initial packet addressed to one of our connection IDs (a client continuing its
/// handshake, or a server answering ours) is taken only this long after the ID was issued:
/// later, quinn would take it for a new connection, and whoever captured the ID could start
/// one with it.
pub const HANDSHAKE_CID_SECS: u64 = 15;
/// How long our connection IDs live: quinn replaces them before this (see `net::gate`), and
/// a packet naming an older one is dropped (a stale ID would otherwise draw a stateless
/// reset).
pub const CID_LIFETIME_SECS: u64 = 600;
/// Grace after [`CID_LIFETIME_SECS`] for packets in flight while IDs are replaced.
pub const CID_GRACE_SECS: u64 = 120;
/// Smallest datagram that may carry a first flight (RFC 9000 §14.1: a client pads every
/// datagram with an Initial to 1,200 bytes).
pub const MIN_FIRST_FLIGHT: usize = 1200;
/// How long a nonce is remembered: longer than the three windows its tag verifies in.
pub const REPLAY_MEMORY_MS: u64 = 4 * WINDOW_SECS * 1000;
/// Most nonces remembered at once from ticket holders; beyond it their new first flights are
/// dropped (fail closed) until old ones age out. Contacts are counted apart.
pub const MAX_REMEMBERED: usize = 4096;
/// Most nonces remembered at once per contact (an honest contact makes a few calls in
/// [`REPLAY_MEMORY_MS`]); a contact over it is dropped, nobody else.
pub const MAX_REMEMBERED_PER_CONTACT: usize = 64;

const NONCE_LEN: usize = 6;
const TAG_LEN: usize = 7;
const QUIC_V1: u32 = 1;
const TAG_CONTEXT: &[u8] = b"EXTRA SAFE first flight v1";

/// The secret in a ticket: whoever holds it may make the listener answer. Wiped on drop,
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketSecret(pub(crate) Zeroizing<[u8; TICKET_SECRET_LEN]>);

impl TicketSecret {
    /// Wraps secret bytes (from a ticket, or drawn at random by the caller of this function).
    pub fn from_bytes(bytes: [u8; TICKET_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes, for encoding a ticket.
    pub fn as_bytes(&self) -> &[u8; TICKET_SECRET_LEN] {
        &self.0
    }

    /// The key that tags first flights to `listener`.
    pub fn access_key(&self, listener: &PeerId) -> AccessKey {
        let mut input = Zeroizing::new([0u8; TICKET_SECRET_LEN + 32]);
        input[..TICKET_SECRET_LEN].copy_from_slice(&self.0[..]);
        input[TICKET_SECRET_LEN..].copy_from_slice(listener.as_bytes());
        AccessKey(Zeroizing::new(blake3::derive_key(
            "EXTRA SAFE 2026 ticket access v1",
            &input[..],
        )))
    }
}

/// The UDP port an identity listens on, in 20000..32768, derived from its secret key: each
/// identity has its own instead of a well-known one (below Linux's range of ephemeral
/// ports), and it stays when a new ticket is made, so contacts' stored addresses keep working.
pub fn listening_port(identity: &crate::identity::Identity) -> u16 {
    let h = blake3::derive_key("EXTRA SAFE 2026 listening port v1", &identity.seed()[..]);
    20_000 + (u16::from_be_bytes([h[0], h[1]]) % 12_768)
}

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

/// A key that tags first flights: a listener's ticket key, or the pair key of two contacts.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(pub(crate) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

impl AccessKey {
    fn tag(&self, slot: u8, window: u64, nonce: &[u8; NONCE_LEN]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(TAG_CONTEXT);
        h.update(&[slot]);
        h.update(&window.to_be_bytes());
        h.update(nonce);
        let out = h.finalize();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&out.as_bytes()[..TAG_LEN]);
        tag
    }
}

const SLOT_TICKET: u8 = 1;
const SLOT_CONTACT: u8 = 2;

/// The window a Unix time in milliseconds falls in.
fn window_of(unix_ms: u64) -> u64 {
    unix_ms / 1000 / WINDOW_SECS
}

/// The destination connection ID of a first flight to a listener. `ticket` is the
/// listener's ticket key if we hold its ticket, `contact` our pair key if we are contacts;
/// `random` supplies the nonce and stands in for a missing tag.
pub fn first_flight_dcid(
    ticket: Option<&AccessKey>,
    contact: Option<&AccessKey>,
    unix_ms: u64,
    random: [u8; FIRST_FLIGHT_DCID_LEN],
) -> [u8; FIRST_FLIGHT_DCID_LEN] {
    let mut out = random;
    let nonce: [u8; NONCE_LEN] = out[..NONCE_LEN].try_into().expect("6 bytes");
    let window = window_of(unix_ms);
    if let Some(k) = ticket {
        out[NONCE_LEN..NONCE_LEN + TAG_LEN].copy_from_slice(&k.tag(SLOT_TICKET, window, &nonce));
    }
    if let Some(k) = contact {
        out[NONCE_LEN + TAG_LEN..].copy_from_slice(&k.tag(SLOT_CONTACT, window, &nonce));
    }
    out
}

/// The key of the connection IDs this process issues. Never leaves it.
#[derive(Clone)]
pub struct LocalCidKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for LocalCidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCidKey(..)")
    }
}

impl LocalCidKey {
    /// Wraps 32 random bytes.
    pub fn new(random: [u8; 32]) -> Self {
        Self(Zeroizing::new(random))
    }

    fn hash(&self, what: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(what);
        for p in parts {
            h.update(p);
        }
        *h.finalize().as_bytes()
    }

    /// A connection ID to issue at Unix time `unix_secs`:
    /// `random: 4 | issue time:u32 XOR mask(random): 4 | tag(random, time): 8`. The time is
    /// masked so that two IDs of one connection cannot be linked by it.
    pub fn issue(&self, random: [u8; 4], unix_secs: u64) -> [u8; LOCAL_CID_LEN] {
        let t = (unix_secs as u32).to_be_bytes();
        let mask = self.hash(b"EXTRA SAFE local cid mask v2", &[&random]);
        let tag = self.hash(b"EXTRA SAFE local cid v2", &[&random, &t]);
        let mut cid = [0u8; LOCAL_CID_LEN];
        cid[..4].copy_from_slice(&random);
        for i in 0..4 {
            cid[4 + i] = t[i] ^ mask[i];
        }
        cid[8..].copy_from_slice(&tag[..8]);
        cid
    }

    /// How old `cid` is (seconds), if this key issued it; `None` for anyone else's.
    pub fn age(&self, cid: &[u8], unix_secs: u64) -> Option<u64> {
        if cid.len() != LOCAL_CID_LEN {
            return None;
        }
        let mask = self.hash(b"EXTRA SAFE local cid mask v2", &[&cid[..4]]);
        let mut t = [0u8; 4];
        for i in 0..4 {
            t[i] = cid[4 + i] ^ mask[i];
        }
        let tag = self.hash(b"EXTRA SAFE local cid v2", &[&cid[..4], &t]);
        if !ct_eq(&tag[..8], &cid[8..]) {
            return None;
        }
        // Issued at most 2^32 s before now: the difference modulo 2^32.
        Some(u64::from(
            (unix_secs as u32).wrapping_sub(u32::from_be_bytes(t)),
        ))
    }

    /// True if `cid` is one this key issued (at whatever time).
    pub fn is_ours(&self, cid: &[u8], unix_secs: u64) -> bool {
        self.age(cid, unix_secs).is_some()
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a first flight was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It proved the current ticket.
    Ticket,
    /// It proved the pair key of this contact.
    Contact(PeerId),
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// For one of our connections (or one being set up): hand it to QUIC.
    Pass,
    /// A first flight that proved a key, seen for the first time.
    Admit(Admission),
    /// A repetition of an admitted first flight from the same address.
    Repeat,
    /// Drop it, unanswered.
    Drop(DropReason),
}

/// Why a datagram was dropped (counted, never answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too short or not QUIC version 1.
    NotQuic,
    /// A first flight while we do not listen, or a long header of another type.
    Unsolicited,
    /// A first flight whose tags prove no key we know.
    NoProof,
    /// A first flight whose nonce another address used.
    Replay,
    /// Too many first flights remembered.
    Full,
    /// A packet for a connection ID we never issued.
    UnknownCid,
}

/// The keys that may make us answer, and the nonces seen.
#[derive(Debug)]
pub struct Gate {
    local: LocalCidKey,
    listening: bool,
    ticket: Option<AccessKey>,
    contacts: Vec<(PeerId, AccessKey)>,
    seen: HashMap<[u8; NONCE_LEN], Seen>,
    /// Remembered nonces of ticket holders, and per contact.
    by_ticket: usize,
    by_contact: HashMap<PeerId, usize>,
    last_expiry_ms: u64,
    dropped: HashMap<DropReason, u64>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    from: SocketAddr,
    first_ms: u64,
    admission: Admission,
}

impl Gate {
    /// A gate for a socket; `listening` is false for a node that only places calls (it then
    /// drops every first flight).
    pub fn new(local: LocalCidKey, listening: bool) -> Self {
        Self {
            local,
            listening,
            ticket: None,
            contacts: Vec::new(),
            seen: HashMap::new(),
            by_ticket: 0,
            by_contact: HashMap::new(),
            last_expiry_ms: 0,
            dropped: HashMap::new(),
        }
    }

    /// Who the first flight with this destination connection ID was admitted as (while its
    /// nonce is remembered): what the node's admission rules go by.
    pub fn admission_of(&self, dcid: &[u8]) -> Option<Admission> {
        let nonce: [u8; NONCE_LEN] = dcid.get(..NONCE_LEN)?.try_into().ok()?;
        (dcid.len() == FIRST_FLIGHT_DCID_LEN)
            .then(|| self.seen.get(&nonce).map(|s| s.admission))
            .flatten()
    }

    /// The connection IDs we issue (also what lets answers to our own calls through).
    pub fn local(&self) -> &LocalCidKey {
        &self.local
    }

    /// Holders of the ticket with this key may call; `None`: only contacts may.
    pub fn set_ticket(&mut self, key: Option<AccessKey>) {
        self.ticket = key;
    }

    /// These contacts may call (replaces the list).
    pub fn set_contacts(&mut self, contacts: Vec<(PeerId, AccessKey)>) {
        self.contacts = contacts;
    }

    /// Contacts for whom `keep` says no may no longer call (the others stay); how many went.
    pub fn retain_contacts(&mut self, mut keep: impl FnMut(&PeerId) -> bool) -> usize {
        let before = self.contacts.len();
        self.contacts.retain(|(p, _)| keep(p));
        before - self.contacts.len()
    }

    /// The pair key of a contact, for calling them.
    pub fn contact_key(&self, peer: &PeerId) -> Option<&AccessKey> {
        self.contacts
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, k)| k)
    }

    /// Datagrams dropped so far, by reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    fn drop_it(&mut self, reason: DropReason) -> Verdict {
        *self.dropped.entry(reason).or_insert(0) += 1;
        Verdict::Drop(reason)
    }

    /// Judges one datagram from `from` at Unix time `unix_ms`.
    pub fn check(&mut self, unix_ms: u64, from: SocketAddr, datagram: &[u8]) -> Verdict {
        if unix_ms.saturating_sub(self.last_expiry_ms) >= 60_000 {
            self.expire(unix_ms);
        }
        let now_secs = unix_ms / 1000;
        let Some(&first) = datagram.first() else {
            return self.drop_it(DropReason::NotQuic);
        };
        let live = CID_LIFETIME_SECS + CID_GRACE_SECS;
        if first & 0x80 == 0 {
            // Short header: fixed bit, then our connection ID, not past its lifetime.
            return match datagram.get(1..1 + LOCAL_CID_LEN) {
                Some(cid) => match self.local.age(cid, now_secs) {
                    Some(age) if age <= live => Verdict::Pass,
                    _ => self.drop_it(DropReason::UnknownCid),
                },
                None => self.drop_it(DropReason::NotQuic),
            };
        }
        // Long header: version, DCID length, DCID.
        let (Some(version), Some(&dcid_len)) = (datagram.get(1..5), datagram.get(5)) else {
            return self.drop_it(DropReason::NotQuic);
        };
        if u32::from_be_bytes(version.try_into().expect("4 bytes")) != QUIC_V1 {
            return self.drop_it(DropReason::NotQuic);
        }
        let Some(dcid) = datagram.get(6..6 + dcid_len as usize) else {
            return self.drop_it(DropReason::NotQuic);
        };
        let packet_type = (first >> 4) & 0x03;
        if let Some(age) = self.local.age(dcid, now_secs) {
            // An Initial on our ID belongs to a handshake in progress; later it could only
            // start a new connection for whoever captured the ID.
            let limit = if packet_type == 0 {
                HANDSHAKE_CID_SECS
            } else {
                live
            };
            return if age <= limit {
                Verdict::Pass
            } else {
                self.drop_it(DropReason::UnknownCid)
            };
        }
        let first_flight = packet_type == 0 || packet_type == 1;
        if !first_flight || !self.listening || dcid.len() != FIRST_FLIGHT_DCID_LEN {
            return self.drop_it(DropReason::Unsolicited);
        }
        if datagram.len() < MIN_FIRST_FLIGHT {
            return self.drop_it(DropReason::NotQuic);
        }
        let nonce: [u8; NONCE_LEN] = dcid[..NONCE_LEN].try_into().expect("6 bytes");
        if let Some(seen) = self.seen.get(&nonce).copied() {
            // Only the sender of the original may repeat it, and only briefly. (A nonce only
            // enters `seen` once its tag verified, so this says nothing to a stranger.)
            if seen.from == from && unix_ms.saturating_sub(seen.first_ms) < RETRANSMIT_GRACE_MS {
                return Verdict::Repeat;
            }
            return self.drop_it(DropReason::Replay);
        }
        let Some(admission) = self.verify(unix_ms, &nonce, dcid) else {
            return self.drop_it(DropReason::NoProof);
        };
        if self.is_full(admission) {
            self.expire(unix_ms);
            if self.is_full(admission) {
                return self.drop_it(DropReason::Full);
            }
        }
        match admission {
            Admission::Ticket => self.by_ticket += 1,
            Admission::Contact(p) => *self.by_contact.entry(p).or_insert(0) += 1,
        }
        self.seen.insert(
            nonce,
            Seen {
                from,
                first_ms: unix_ms,
                admission,
            },
        );
        Verdict::Admit(admission)
    }

    fn is_full(&self, admission: Admission) -> bool {
        match admission {
            Admission::Ticket => self.by_ticket >= MAX_REMEMBERED,
            Admission::Contact(p) => {
                self.by_contact.get(&p).copied().unwrap_or(0) >= MAX_REMEMBERED_PER_CONTACT
            }
        }
    }

    fn verify(&self, unix_ms: u64, nonce: &[u8; NONCE_LEN], dcid: &[u8]) -> Option<Admission> {
        let ticket_tag = &dcid[NONCE_LEN..NONCE_LEN + TAG_LEN];
        let contact_tag = &dcid[NONCE_LEN + TAG_LEN..];
        let now = window_of(unix_ms);
        for window in [now, now.saturating_sub(1), now + 1] {
            if let Some(k) = &self.ticket {
                if ct_eq(&k.tag(SLOT_TICKET, window, nonce), ticket_tag) {
                    return Some(Admission::Ticket);
                }
            }
            for (peer, k) in &self.contacts {
                if ct_eq(&k.tag(SLOT_CONTACT, window, nonce), contact_tag) {
                    return Some(Admission::Contact(*peer));
                }
            }
        }
        None
    }

    /// Forgets nonces older than [`REPLAY_MEMORY_MS`] (done by [`Gate::check`] once a
    /// minute). A clock stepped back keeps them a little longer, never shorter.
    pub fn expire(&mut self, unix_ms: u64) {
        self.last_expiry_ms = unix_ms;
        let (by_ticket, by_contact) = (&mut self.by_ticket, &mut self.by_contact);
        self.seen.retain(|_, s| {
            let keep = unix_ms.saturating_sub(s.first_ms) < REPLAY_MEMORY_MS;
            if !keep {
                match s.admission {
                    Admission::Ticket => *by_ticket -= 1,
                    Admission::Contact(p) => {
                        if let Some(n) = by_contact.get_mut(&p) {
                            *n -= 1;
                            if *n == 0 {
                                by_contact.remove(&p);
                            }
                        }
                    }
                }
            }
            keep
        });
    }
}

/// The part of an address that one party controls: the address itself for IPv4, its /64
/// for IPv6 (every home and phone gets a whole /64, so counting single IPv6 addresses would
/// let one network hold every slot). IPv4-mapped IPv6 counts as IPv4.
pub fn source_prefix(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Rings let through per source before the limit bites.
pub const RING_BURST: u32 = 3;
/// One more ring is let through per source this often.
pub const RING_REFILL: std::time::Duration = std::time::Duration::from_secs(20);
/// Sources remembered (the least recently seen is forgotten first).
const RING_SOURCES: usize = 1024;

/// Limits how often one source (an address prefix, or a peer ID) may make us ring: a token
/// bucket of [`RING_BURST`] rings, refilled one every [`RING_REFILL`] (by default). A ring
/// over the limit is refused the quiet way (the caller sees "no answer"), without alerting
/// anyone. A contact counts against its own identity only, so contacts behind one address
/// (a household's NAT) do not use up each other's rings; anyone else counts against its
/// address prefix too, so fresh identities from one network do not get around the limit.
#[derive(Debug)]
pub struct RingLimiter {
    burst: f64,
    refill: std::time::Duration,
    buckets: HashMap<RingSource, (f64, std::time::Instant)>,
}

impl Default for RingLimiter {
    fn default() -> Self {
        Self::new(RING_BURST, RING_REFILL)
    }
}

/// Who a ring counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingSource {
    /// Everyone who is not a contact, together (3× the burst, refilled 3× as fast): fresh
    /// identities from ever new IPv6 /64s still meet a limit.
    Strangers,
    /// An address prefix ([`source_prefix`]).
    Prefix(std::net::IpAddr),
    /// A caller's identity.
    Peer(PeerId),
}

impl RingLimiter {
    /// A limiter of `burst` rings per source, one more every `refill`.
    pub fn new(burst: u32, refill: std::time::Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            refill: refill.max(std::time::Duration::from_millis(1)),
            buckets: HashMap::new(),
        }
    }

    /// True if a ring from `ip` by `peer` may alert now (and counts it). `contact`: the
    /// caller is one of ours, counted by identity alone.
    pub fn allow(
        &mut self,
        now: std::time::Instant,
        ip: std::net::IpAddr,
        peer: PeerId,
        contact: bool,
    ) -> bool {
        let prefix = RingSource::Prefix(source_prefix(ip));
        let keys: &[RingSource] = if contact {
            &[RingSource::Peer(peer)]
        } else {
            &[prefix, RingSource::Peer(peer), RingSource::Strangers]
        };
        let ok = keys.iter().all(|k| self.level(now, *k) >= 1.0);
        if ok {
            for k in keys {
                if let Some(b) = self.buckets.get_mut(k) {
                    b.0 -= 1.0;
                }
            }
        }
        ok
    }

    fn level(&mut self, now: std::time::Instant, key: RingSource) -> f64 {
        let (burst, refill) = match key {
            RingSource::Strangers => (self.burst * 3.0, self.refill.as_secs_f64() / 3.0),
            _ => (self.burst, self.refill.as_secs_f64()),
        };
        if !self.buckets.contains_key(&key) && self.buckets.len() >= RING_SOURCES {
            if let Some(oldest) = self
                .buckets
                .iter()
                .filter(|(k, _)| **k != RingSource::Strangers)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
        let b = self.buckets.entry(key).or_insert((burst, now));
        let refilled = now.saturating_duration_since(b.1).as_secs_f64() / refill;
        b.0 = (b.0 + refilled).min(burst);
        b.1 = now;
        b.0
    }
}

#[cfg(test)]
mod tests;
