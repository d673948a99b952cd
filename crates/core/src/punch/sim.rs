//! Punching through simulated NATs on virtual time: the mapping and filtering behaviours of
//! RFC 4787 (endpoint-independent, address-dependent, address-and-port-dependent), port
//! preservation or not, and a network with a fixed one-way delay.

use std::collections::HashSet;

use super::*;
use crate::sim::{Host, NatType, Net, Prober, ALL};

struct Outcome {
    working: Option<SocketAddr>,
    elapsed: Duration,
    sent: u64,
    report: Option<PunchReport>,
}

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
    let mut net = Net::new(t0, ONE_WAY);
    net.add(Host::new(a_type, [10, 0, 1, 2], [198, 51, 100, 2]));
    net.add(Host::new(b_type, [10, 0, 2, 2], [203, 0, 113, 2]));
    for (host, fwd) in net.hosts.iter_mut().zip(forwarded) {
        if fwd {
            host.forward();
        }
    }
    let (a_cands, b_cands) = (net.hosts[0].candidates(), net.hosts[1].candidates());
    let hold_for = Duration::from_secs(3);
    let key = || PunchKey::from_bytes([7; 32]);
    let config = PunchConfig::default();
    let mut a = Prober(Some(Puncher::new(
        key(),
        PunchRole::Controlling,
        &b_cands,
        config.clone(),
        [1; 32],
        t0,
    )));
    if hold && forwarded[0] {
        a.0.as_mut().unwrap().hold_pings(t0 + hold_for);
    }
    let mut b = Prober(None);
    // The callee learns of the call a little after the caller starts.
    net.run_until(&mut [&mut a, &mut b], t0 + CALLEE_DELAY);
    let mut callee = Puncher::new(
        key(),
        PunchRole::Controlled,
        &a_cands,
        config,
        [2; 32],
        net.now,
    );
    if hold && forwarded[1] {
        callee.hold_pings(net.now + hold_for);
    }
    b.0 = Some(callee);
    loop {
        net.transmit(&mut [&mut a, &mut b]);
        if let Some(ev) = a.0.as_mut().unwrap().poll_event() {
            let (working, report) = match ev {
                PunchEvent::Working { remote, .. } => (Some(remote), None),
                PunchEvent::Failed(r) => (None, Some(r)),
            };
            return Outcome {
                working,
                elapsed: net.now - t0,
                sent: net.hosts[0].sent + net.hosts[1].sent,
                report,
            };
        }
        let far = net.now + Duration::from_secs(3600);
        assert!(net.advance(&mut [&mut a, &mut b], far), "the punch stalled");
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
