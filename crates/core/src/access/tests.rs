use super::*;
use crate::identity::Identity;
use crate::rendezvous::PairSecret;

const T0: u64 = 1_800_000_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A long-header packet of `kind` (0 Initial, 1 0-RTT, 2 Handshake) with this DCID, padded
/// like a real first flight.
fn long(kind: u8, version: u32, dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0xc0 | (kind << 4)];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(8);
    p.extend_from_slice(&[9; 8]);
    p.resize(1200, 0);
    p
}

fn short(dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0x40];
    p.extend_from_slice(dcid);
    p.resize(60, 1);
    p
}

struct Setup {
    listener: Identity,
    secret: TicketSecret,
    gate: Gate,
}

fn setup() -> Setup {
    let listener = Identity::from_seed(&[1; 32]);
    let secret = listener.ticket_secret(&[2; 16]);
    let mut gate = Gate::new(LocalCidKey::new([3; 32]), true);
    gate.set_ticket(Some(secret.access_key(&listener.peer_id())));
    Setup {
        listener,
        secret,
        gate,
    }
}

fn rand20(i: u64) -> [u8; 20] {
    let h = blake3::hash(&i.to_le_bytes());
    h.as_bytes()[..20].try_into().unwrap()
}

#[test]
fn ticket_holder_is_admitted_once_and_may_repeat_only_from_its_address() {
    let mut s = setup();
    let key = s.secret.access_key(&s.listener.peer_id());
    let dcid = first_flight_dcid(Some(&key), None, T0, rand20(1));
    let pkt = long(0, 1, &dcid);
    let a = addr("198.51.100.7:5000");
    assert_eq!(s.gate.check(T0, a, &pkt), Verdict::Admit(Admission::Ticket));
    // The second datagram of the same first flight, and a retransmission.
    assert_eq!(s.gate.check(T0 + 5, a, &pkt), Verdict::Repeat);
    assert_eq!(
        s.gate.check(T0 + 2_000, a, &long(1, 1, &dcid)),
        Verdict::Repeat
    );
    // Replayed by anyone else: dropped.
    let b = addr("203.0.113.9:5000");
    assert_eq!(
        s.gate.check(T0 + 10, b, &pkt),
        Verdict::Drop(DropReason::Replay)
    );
    // Replayed from the same address after the grace period: dropped too.
    assert_eq!(
        s.gate.check(T0 + RETRANSMIT_GRACE_MS, a, &pkt),
        Verdict::Drop(DropReason::Replay)
    );
    // Once the nonce is forgotten the tag has long expired.
    s.gate.expire(T0 + REPLAY_MEMORY_MS + 1);
    assert_eq!(
        s.gate.check(T0 + REPLAY_MEMORY_MS + 1, b, &pkt),
        Verdict::Drop(DropReason::NoProof)
    );
}

#[test]
fn contacts_are_admitted_by_their_pair_key_and_strangers_are_not() {
    let mut s = setup();
    let alice = Identity::from_seed(&[4; 32]);
    let mallory = Identity::from_seed(&[5; 32]);
    let listener_side = PairSecret::new(&s.listener, &alice.peer_id()).unwrap();
    s.gate
        .set_contacts(vec![(alice.peer_id(), listener_side.access_key())]);
    // Alice computes the same key from her side.
    let alice_key = PairSecret::new(&alice, &s.listener.peer_id())
        .unwrap()
        .access_key();
    let a = addr("198.51.100.7:5000");
    let dcid = first_flight_dcid(None, Some(&alice_key), T0, rand20(2));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Admit(Admission::Contact(alice.peer_id()))
    );
    // Mallory's pair key with the listener is not on the list.
    let m_key = PairSecret::new(&mallory, &s.listener.peer_id())
        .unwrap()
        .access_key();
    let dcid = first_flight_dcid(None, Some(&m_key), T0, rand20(3));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::NoProof)
    );
    // A pair key in the ticket slot proves nothing (slots are keyed apart).
    let dcid = first_flight_dcid(Some(&alice_key), None, T0, rand20(4));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::NoProof)
    );
}

#[test]
fn a_forged_ticket_and_random_packets_get_nothing() {
    let mut s = setup();
    // A throw-away key and the listener's address: the stranger's ticket has some secret,
    // just not the listener's.
    let forged = TicketSecret::from_bytes([0xee; 16]).access_key(&s.listener.peer_id());
    let a = addr("198.51.100.7:5000");
    for i in 0..2_000u64 {
        let dcid = first_flight_dcid(Some(&forged), Some(&forged), T0, rand20(100 + i));
        assert_eq!(
            s.gate.check(T0, a, &long(0, 1, &dcid)),
            Verdict::Drop(DropReason::NoProof)
        );
        // Any DCID length, any packet type, any version, short headers.
        let r = rand20(10_000 + i);
        let len = (i % 21) as usize;
        assert!(matches!(
            s.gate.check(T0, a, &long((i % 4) as u8, 1, &r[..len])),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            s.gate.check(T0, a, &long(0, 0x0a1a_2a3a, &dcid)),
            Verdict::Drop(DropReason::NotQuic)
        ));
        assert!(matches!(
            s.gate.check(T0, a, &short(&r[..16])),
            Verdict::Drop(DropReason::UnknownCid)
        ));
        assert!(matches!(
            s.gate.check(T0, a, &r[..(i % 7) as usize]),
            Verdict::Drop(_)
        ));
    }
    assert!(s.gate.dropped(DropReason::NoProof) >= 2_000);
}

#[test]
fn our_own_connection_ids_pass_and_others_do_not() {
    let mut s = setup();
    let cid = s.gate.local().issue([6; 4], T0 / 1000);
    let a = addr("198.51.100.7:5000");
    assert_eq!(s.gate.check(T0, a, &short(&cid)), Verdict::Pass);
    assert_eq!(s.gate.check(T0, a, &long(2, 1, &cid)), Verdict::Pass);
    let mut forged = cid;
    forged[15] ^= 1;
    assert_eq!(
        s.gate.check(T0, a, &short(&forged)),
        Verdict::Drop(DropReason::UnknownCid)
    );
    // Another process's IDs are not ours.
    let other = LocalCidKey::new([8; 32]).issue([6; 4], T0 / 1000);
    assert_eq!(
        s.gate.check(T0, a, &short(&other)),
        Verdict::Drop(DropReason::UnknownCid)
    );
}

#[test]
fn our_ids_expire_and_an_initial_on_one_is_taken_only_during_a_handshake() {
    let mut s = setup();
    let a = addr("203.0.113.9:5000");
    let issued = T0 / 1000;
    let cid = s.gate.local().issue([1, 2, 3, 4], issued);
    let at = |secs: u64| T0 + secs * 1000;
    // A client continuing its handshake: an Initial on our ID, soon after we issued it.
    assert_eq!(s.gate.check(at(2), a, &long(0, 1, &cid)), Verdict::Pass);
    // The same ID in a new Initial later (someone who captured it, after the connection
    // ended: quinn would start a connection for them): dropped.
    assert_eq!(
        s.gate
            .check(at(HANDSHAKE_CID_SECS + 1), a, &long(0, 1, &cid)),
        Verdict::Drop(DropReason::UnknownCid)
    );
    // Packets of a running connection pass for the ID's whole life, then not.
    let live = CID_LIFETIME_SECS + CID_GRACE_SECS;
    assert_eq!(s.gate.check(at(live), a, &short(&cid)), Verdict::Pass);
    assert_eq!(s.gate.check(at(live), a, &long(2, 1, &cid)), Verdict::Pass);
    assert_eq!(
        s.gate.check(at(live + 1), a, &short(&cid)),
        Verdict::Drop(DropReason::UnknownCid)
    );
    // Two IDs issued at the same second share no visible bytes but the random part.
    let c1 = s.gate.local().issue([9, 9, 9, 1], issued);
    let c2 = s.gate.local().issue([9, 9, 9, 2], issued);
    assert_ne!(c1[4..8], c2[4..8], "the issue time is masked");
    assert_eq!(s.gate.local().age(&c1, issued + 5), Some(5));
}

#[test]
fn clocks_may_differ_by_one_window_not_more() {
    let s = setup();
    let key = s.secret.access_key(&s.listener.peer_id());
    let a = addr("198.51.100.7:5000");
    let w = WINDOW_SECS * 1000;
    for (skew, ok) in [
        (0i64, true),
        (1, true),
        (-1, true),
        (2, false),
        (-2, false),
        (10, false),
    ] {
        let mut gate = setup().gate;
        let caller_ms = (T0 as i64 + skew * w as i64) as u64;
        let dcid = first_flight_dcid(Some(&key), None, caller_ms, rand20(7));
        let v = gate.check(T0, a, &long(0, 1, &dcid));
        assert_eq!(
            matches!(v, Verdict::Admit(_)),
            ok,
            "skew {skew} windows: {v:?}"
        );
    }
}

#[test]
fn a_new_ticket_ends_the_old_one_and_a_caller_only_node_admits_nobody() {
    let mut s = setup();
    let old = s.secret.access_key(&s.listener.peer_id());
    let new_secret = s.listener.ticket_secret(&[9; 16]);
    assert_ne!(new_secret, s.secret);
    s.gate
        .set_ticket(Some(new_secret.access_key(&s.listener.peer_id())));
    let a = addr("198.51.100.7:5000");
    let dcid = first_flight_dcid(Some(&old), None, T0, rand20(8));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::NoProof)
    );
    let dcid = first_flight_dcid(
        Some(&new_secret.access_key(&s.listener.peer_id())),
        None,
        T0,
        rand20(9),
    );
    assert!(matches!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Admit(_)
    ));

    let mut caller_only = Gate::new(LocalCidKey::new([3; 32]), false);
    caller_only.set_ticket(Some(old.clone()));
    let dcid = first_flight_dcid(Some(&old), None, T0, rand20(10));
    assert_eq!(
        caller_only.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::Unsolicited)
    );
}

#[test]
fn remembered_nonces_are_bounded_and_the_gate_fails_closed() {
    let mut s = setup();
    let key = s.secret.access_key(&s.listener.peer_id());
    let a = addr("198.51.100.7:5000");
    // A contact, to show that ticket holders filling the memory do not shut contacts out.
    let alice = Identity::from_seed(&[4; 32]);
    let pair = PairSecret::new(&s.listener, &alice.peer_id()).unwrap();
    s.gate
        .set_contacts(vec![(alice.peer_id(), pair.access_key())]);
    for i in 0..MAX_REMEMBERED as u64 {
        let dcid = first_flight_dcid(Some(&key), None, T0, rand20(1_000_000 + i));
        assert!(matches!(
            s.gate.check(T0, a, &long(0, 1, &dcid)),
            Verdict::Admit(_)
        ));
    }
    let dcid = first_flight_dcid(Some(&key), None, T0, rand20(7_000_000));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::Full)
    );
    // The contact still gets in, up to a quota of its own.
    let contact_key = pair.access_key();
    for i in 0..MAX_REMEMBERED_PER_CONTACT as u64 {
        let dcid = first_flight_dcid(None, Some(&contact_key), T0, rand20(8_000_000 + i));
        assert_eq!(
            s.gate.check(T0, a, &long(0, 1, &dcid)),
            Verdict::Admit(Admission::Contact(alice.peer_id()))
        );
        assert_eq!(
            s.gate.admission_of(&dcid),
            Some(Admission::Contact(alice.peer_id()))
        );
    }
    let dcid = first_flight_dcid(None, Some(&contact_key), T0, rand20(9_000_000));
    assert_eq!(
        s.gate.check(T0, a, &long(0, 1, &dcid)),
        Verdict::Drop(DropReason::Full)
    );
    // Old ones age out and room comes back.
    let later = T0 + REPLAY_MEMORY_MS;
    let dcid = first_flight_dcid(Some(&key), None, later, rand20(7_000_001));
    assert!(matches!(
        s.gate.check(later, a, &long(0, 1, &dcid)),
        Verdict::Admit(_)
    ));
}

#[test]
fn ports_and_secrets_differ_per_identity_and_salt() {
    let a = Identity::from_seed(&[1; 32]);
    let b = Identity::from_seed(&[2; 32]);
    let sa = a.ticket_secret(&[0; 16]);
    let sb = b.ticket_secret(&[0; 16]);
    let sa2 = a.ticket_secret(&[1; 16]);
    assert_ne!(sa, sb);
    assert_ne!(sa, sa2);
    assert_eq!(sa, a.ticket_secret(&[0; 16]));
    let ports: std::collections::HashSet<u16> = (0..200u8)
        .map(|i| listening_port(&Identity::from_seed(&[i; 32])))
        .collect();
    // The port is the identity's: a new ticket does not move it.
    assert_eq!(
        listening_port(&a),
        listening_port(&Identity::from_seed(&[1; 32]))
    );
    assert!(ports.iter().all(|p| (20_000..32_768).contains(p)));
    assert!(ports.len() > 150, "ports spread: {}", ports.len());
    assert_eq!(format!("{sa:?}"), "TicketSecret(..)");
}

#[test]
fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
    use std::net::IpAddr;
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb:cccc:dddd:eeee".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(source_prefix(a), source_prefix(b));
    assert_ne!(source_prefix(a), source_prefix(c));
    let v4: IpAddr = "198.51.100.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    assert_eq!(source_prefix(mapped), v4);
    assert_eq!(source_prefix(v4), v4);
}

#[test]
fn ring_spam_from_one_source_is_limited_on_virtual_time() {
    let t0 = std::time::Instant::now();
    let mut l = RingLimiter::default();
    let spammer = Identity::from_seed(&[1; 32]).peer_id();
    let other = Identity::from_seed(&[2; 32]).peer_id();
    let ip: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    let same_net: std::net::IpAddr = "2001:db8::2".parse().unwrap();
    let elsewhere: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    for _ in 0..RING_BURST {
        assert!(l.allow(t0, ip, spammer, false));
    }
    assert!(!l.allow(t0, ip, spammer, false));
    // Another identity from the same /64: still the same source.
    assert!(!l.allow(t0, same_net, other, false));
    // The same identity from elsewhere: still the same peer.
    assert!(!l.allow(t0, elsewhere, spammer, false));
    // Someone else elsewhere is not affected.
    assert!(l.allow(t0, elsewhere, other, false));
    // One ring per refill period afterwards.
    let t1 = t0 + RING_REFILL;
    assert!(l.allow(t1, ip, spammer, false));
    assert!(!l.allow(t1, ip, spammer, false));
    // 100 rings a second for a minute get through at the refill rate only.
    let mut let_through = 0;
    for i in 0..6_000u32 {
        if l.allow(
            t1 + std::time::Duration::from_millis(10 * u64::from(i)),
            ip,
            spammer,
            false,
        ) {
            let_through += 1;
        }
    }
    // Contacts behind the spammer's address are not held back by it; a contact is limited
    // by its own identity.
    let friend = Identity::from_seed(&[3; 32]).peer_id();
    for _ in 0..RING_BURST {
        assert!(l.allow(t0, ip, friend, true));
    }
    assert!(!l.allow(t0, ip, friend, true));
    // Strangers as a whole: fresh identities from fresh /64s meet the shared bucket.
    let mut fresh = 0;
    for i in 0..100u16 {
        let net: std::net::IpAddr = format!("2001:db8:{i:x}::1").parse().unwrap();
        let who = Identity::from_seed(&[(i % 250) as u8 + 5; 32]).peer_id();
        if l.allow(t0, net, who, false) {
            fresh += 1;
        }
    }
    assert!(fresh <= 3 * RING_BURST, "{fresh} strangers rang at once");
    // 60 s at one per 20 s: two or three (float rounding decides the one at exactly 60 s).
    assert!((2..=3).contains(&let_through), "{let_through}");
}
