//! Deterministic tests on virtual time: two sessions on the core's simulated network
//! (`crate::sim`), the control stream's bytes carried whole with a fixed one-way delay.

use super::*;
use crate::sim::{End, Host, Machine, NatType, Net};

/// Two sessions, each on an open host, on a network with a 40 ms one-way delay that can be
/// cut.
struct Pair {
    now: Instant,
    caller: Session,
    callee: Session,
    link_up: bool,
    net: Net,
    caller_events: Vec<(Duration, Event)>,
    callee_events: Vec<(Duration, Event)>,
    /// Every delivery to the caller: when, and the bytes.
    to_caller: Vec<(Duration, Vec<u8>)>,
    start: Instant,
}

impl Pair {
    fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        let mut net = Net::new(now, Duration::from_millis(40));
        net.add(Host::new(NatType::Open, [0; 4], [198, 51, 100, 2]));
        net.add(Host::new(NatType::Open, [0; 4], [203, 0, 113, 2]));
        Self {
            now,
            start: now,
            caller: Session::new(Role::Caller, config.clone(), now),
            callee: Session::new(Role::Callee, config, now),
            link_up: true,
            net,
            caller_events: Vec::new(),
            callee_events: Vec::new(),
            to_caller: Vec::new(),
        }
    }

    /// One step of the network with both sessions: `then` runs it.
    fn with_ends(&mut self, then: impl FnOnce(&mut Net, &mut [&mut dyn Machine])) {
        self.net.now = self.now;
        self.net.up = self.link_up;
        let (a, b) = (self.net.hosts[0].addr, self.net.hosts[1].addr);
        let mut caller = End {
            session: &mut self.caller,
            peer: b,
            start: self.start,
            events: &mut self.caller_events,
            received: Some(&mut self.to_caller),
        };
        let mut callee = End {
            session: &mut self.callee,
            peer: a,
            start: self.start,
            events: &mut self.callee_events,
            received: None,
        };
        then(&mut self.net, &mut [&mut caller, &mut callee]);
        self.now = self.net.now;
    }

    /// Sends what both have to send, and takes their events, without moving time.
    fn collect(&mut self) {
        self.with_ends(|net, ends| net.transmit(ends));
    }

    /// Runs the pair until `until` (relative to start), jumping from deadline to deadline.
    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        self.with_ends(|net, ends| net.run_until(ends, end));
    }

    fn advance(&mut self, d: Duration) {
        let rel = self.now - self.start + d;
        self.run_until(rel);
    }

    fn kinds(events: &[(Duration, Event)]) -> Vec<Event> {
        events.iter().map(|(_, e)| e.clone()).collect()
    }

    fn ended(events: &[(Duration, Event)]) -> Option<(Duration, EndReason)> {
        events.iter().find_map(|(t, e)| match e {
            Event::Ended(r) => Some((*t, r.clone())),
            _ => None,
        })
    }

    /// Brings the call up: ring, alert, accept.
    fn connect(&mut self) {
        self.connect_after(Duration::from_millis(100));
    }

    /// Brings the call up, giving the ring `setup` to arrive.
    fn connect_after(&mut self, setup: Duration) {
        self.advance(setup);
        let no_code = |events: &[(Duration, Event)]| -> Vec<Event> {
            Self::kinds(events)
                .into_iter()
                .filter(|e| !matches!(e, Event::VerificationCode(_)))
                .collect()
        };
        assert!(
            matches!(
                &no_code(&self.callee_events)[..],
                [Event::IncomingCall { .. }]
            ),
            "{:?}",
            self.callee_events
        );
        self.callee.alert(self.now).unwrap();
        self.advance(Duration::from_millis(100));
        assert_eq!(no_code(&self.caller_events), vec![Event::Ringing]);
        self.callee.accept(self.now).unwrap();
        self.advance(Duration::from_millis(100));
        assert!(self.caller.is_active() && self.callee.is_active());
        assert_eq!(self.caller_events.last().unwrap().1, Event::Connected);
        assert_eq!(self.callee_events.last().unwrap().1, Event::Connected);
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn call_chat_and_hangup_by_caller() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    assert_eq!(p.caller.version(), Some(2));
    assert_eq!(p.caller.common_capabilities(), caps::CHAT | caps::RESUME);
    let now = p.now;
    for line in ["one", "two", "three"] {
        p.caller.send_chat(now, line).unwrap();
    }
    p.callee.send_chat(now, "back").unwrap();
    p.advance(Duration::from_millis(100));
    let got: Vec<_> = p
        .callee_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Chat { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["one", "two", "three"]);
    assert!(
        matches!(&p.caller_events.last().unwrap().1, Event::Chat { text, .. } if text == "back")
    );
    p.caller.hangup(p.now);
    p.advance(Duration::from_millis(100));
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::LocalHangup
    );
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::RemoteHangup
    );
    assert_eq!(p.caller.poll_timeout(), None);
    assert!(p.caller.send_chat(p.now, "late").is_err());
}

#[test]
fn pair_roots_are_exchanged_only_in_a_call_and_once() {
    let mut p = Pair::new(SessionConfig::default());
    // Before the call is up, sending is refused, and what a caller pushes while it rings is
    // ignored (connecting checks the callee saw nothing but the ring).
    assert!(p.caller.send_pair_checks(p.now, vec![[1; 8]]).is_err());
    p.advance(Duration::from_millis(100));
    p.callee.handle_stream_data(
        p.now,
        &frame(Message::PairChecks {
            checks: vec![[9; 8]],
        }),
    );
    p.connect_after(Duration::ZERO);
    let now = p.now;
    p.caller
        .send_pair_checks(now, vec![[1; 8], [2; 8]])
        .unwrap();
    p.callee.send_pair_checks(now, vec![[3; 8]]).unwrap();
    // A second round is not acted on: one exchange per session.
    p.caller.send_pair_checks(now, vec![[4; 8]]).unwrap();
    p.advance(Duration::from_millis(100));
    p.caller.send_pair_stored(p.now, [5; 8]).unwrap();
    p.callee.send_pair_stored(p.now, [6; 8]).unwrap();
    p.caller.send_pair_stored(p.now, [7; 8]).unwrap();
    let chain = crate::inbox::InboxChain::new([9; 32], 40);
    p.callee.send_inbox_chain(p.now, &chain).unwrap();
    p.callee
        .send_inbox_chain(p.now, &crate::inbox::InboxChain::new([10; 32], 41))
        .unwrap();
    p.advance(Duration::from_millis(100));
    let chains: Vec<_> = Pair::kinds(&p.caller_events)
        .into_iter()
        .filter_map(|e| match e {
            Event::InboxChain(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(chains, vec![chain], "one chain per session, the first");
    let pair_events = |events: &[(Duration, Event)]| -> Vec<Event> {
        Pair::kinds(events)
            .into_iter()
            .filter(|e| matches!(e, Event::PairChecks(_) | Event::PairStored(_)))
            .collect()
    };
    assert_eq!(
        pair_events(&p.callee_events),
        vec![
            Event::PairChecks(vec![[1; 8], [2; 8]]),
            Event::PairStored([5; 8])
        ]
    );
    assert_eq!(
        pair_events(&p.caller_events),
        vec![Event::PairChecks(vec![[3; 8]]), Event::PairStored([6; 8])]
    );
    assert!(p.caller.is_active() && p.callee.is_active());
}

#[test]
fn hangup_by_callee() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.callee.hangup(p.now);
    p.advance(secs(1));
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::RemoteHangup
    );
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::LocalHangup
    );
}

#[test]
fn ring_times_out_at_45_s_with_keepalives_during_ringing() {
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    p.callee.alert(p.now).unwrap();
    p.run_until(secs(60));
    let (t, r) = Pair::ended(&p.caller_events).unwrap();
    assert_eq!(r, EndReason::NoAnswer);
    assert_eq!(t, secs(45));
    let (t2, r2) = Pair::ended(&p.callee_events).unwrap();
    assert_eq!(r2, EndReason::NoAnswer);
    assert!(t2 <= secs(46));
    // Ringing for 45 s outlived the 20 s idle timeout only because pings flowed.
    assert!(p.caller.stats().pings_sent >= 8);
}

/// How the callee handles a ring in [`caller_view`].
#[derive(Clone, Copy)]
enum Callee {
    /// Alerts its user, who never answers.
    Unanswered,
    /// Alerts, then the user declines 3 s later.
    DeclinedLater,
    /// Refused at once, as a policy or the ring limit does (no alert of its own).
    Refused,
    /// Refused as busy.
    Busy,
}

/// What the caller sees of a call: its events (with their times) and every message it
/// received (pongs aside, which answer its own pings).
/// Events and messages, each with its time since the start.
type Timed<T> = Vec<(Duration, T)>;

fn caller_view(callee: Callee) -> (Timed<Event>, Timed<Message>) {
    let mut p = Pair::new(SessionConfig::default());
    let now = p.now;
    p.caller.begin_verification(now, r32("e", 9), r32("a", 9));
    p.callee.begin_verification(now, r32("e", 9), r32("b", 9));
    p.advance(Duration::from_millis(100));
    match callee {
        Callee::Unanswered | Callee::DeclinedLater => p.callee.alert(p.now).unwrap(),
        Callee::Refused => p.callee.decline(p.now).unwrap(),
        Callee::Busy => p.callee.busy(p.now).unwrap(),
    }
    for step in 0..120 {
        if step == 6 {
            if let Callee::DeclinedLater = callee {
                p.callee.decline(p.now).unwrap();
                // Over for the callee's user at once, and no call slot is held.
                assert!(p.callee.is_quiet());
                assert!(p.callee.accept(p.now).is_err());
            }
        }
        p.advance(Duration::from_millis(500));
    }
    let mut seen = Vec::new();
    let mut dec = FrameDecoder::default();
    for (t, bytes) in &p.to_caller {
        let mut got = Vec::new();
        dec.push(bytes, &mut got).unwrap();
        seen.extend(got.into_iter().filter_map(|d| match d {
            Decoded::Message(Message::Pong { .. }) => None,
            // The nonce is random, so compare its presence and time only.
            Decoded::Message(Message::SasNonce { .. }) => {
                Some((*t, Message::SasNonce { nonce: [0; 32] }))
            }
            Decoded::Message(m) => Some((*t, m)),
            Decoded::Skipped(_) => None,
        }));
    }
    assert!(p.callee.is_ended() && p.caller.is_ended());
    let code_events = p
        .callee_events
        .iter()
        .filter(|(_, e)| matches!(e, Event::VerificationCode(_)))
        .count();
    // A refused call never shows its user a code (nor anything after the refusal).
    if matches!(callee, Callee::Refused | Callee::Busy) {
        assert_eq!(code_events, 0);
    }
    let caller_events = p
        .caller_events
        .into_iter()
        .filter(|(_, e)| !matches!(e, Event::VerificationCode(_)))
        .collect();
    (caller_events, seen)
}

#[test]
fn a_declined_refused_or_busy_caller_sees_exactly_an_unanswered_ring() {
    let (unanswered, wire_unanswered) = caller_view(Callee::Unanswered);
    for callee in [Callee::DeclinedLater, Callee::Refused, Callee::Busy] {
        let (events, wire) = caller_view(callee);
        // The same events at the same moments, and the same messages at the same moments.
        assert_eq!(events, unanswered);
        assert_eq!(wire, wire_unanswered);
    }
    assert_eq!(
        Pair::ended(&unanswered).unwrap(),
        (secs(45), EndReason::NoAnswer)
    );
    let kinds: Vec<&Message> = wire_unanswered.iter().map(|(_, m)| m).collect();
    assert!(kinds.contains(&&Message::Ringing));
    assert!(kinds.iter().any(|m| matches!(m, Message::Ping { .. })));
    assert!(!kinds.contains(&&Message::Decline) && !kinds.contains(&&Message::Busy));
}

#[test]
fn the_callees_user_learns_at_once_and_only_once() {
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    p.callee.decline(p.now).unwrap();
    assert!(p.callee.decline(p.now).is_err());
    p.advance(Duration::from_millis(10));
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::DeclinedLocally
    );
    // The caller hangs up meanwhile: no second event on the callee side.
    p.caller.hangup(p.now);
    p.advance(secs(1));
    assert!(p.callee.is_ended());
    let ends = p
        .callee_events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Ended(_)))
        .count();
    assert_eq!(ends, 1);
}

#[test]
fn caller_cancels_while_ringing() {
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    p.caller.hangup(p.now);
    p.advance(secs(1));
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::RemoteHangup
    );
}

/// A session configuration without reconnecting (as with a peer that cannot resume).
fn no_resume() -> SessionConfig {
    SessionConfig {
        capabilities: caps::CHAT,
        ..SessionConfig::default()
    }
}

#[test]
fn quiet_call_survives_ten_minutes_on_keepalives() {
    let mut p = Pair::new(no_resume());
    p.connect();
    p.advance(secs(600));
    assert!(p.caller.is_active() && p.callee.is_active());
    let pings = p.caller.stats().pings_sent + p.callee.stats().pings_sent;
    // One ping every 5 s from whichever side was quiet longest: about 120 to 240.
    assert!((100..=260).contains(&pings), "{pings} pings");
    assert!(p.caller.rtt().unwrap() >= Duration::from_millis(80));
    // A call that can resume pings every second, to see a dark path within four.
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.advance(secs(600));
    assert!(p.caller.is_active() && p.callee.is_active());
    assert!(!p.caller.is_reconnecting() && !p.callee.is_reconnecting());
    let pings = p.caller.stats().pings_sent + p.callee.stats().pings_sent;
    assert!((550..=1250).contains(&pings), "{pings} pings");
    assert!(!Pair::kinds(&p.caller_events).contains(&Event::Reconnecting));
}

#[test]
fn a_peer_that_cannot_resume_vanishes_after_the_idle_timeout() {
    let mut p = Pair::new(no_resume());
    p.connect();
    assert!(!p.caller.can_resume());
    let cut = p.now - p.start;
    p.link_up = false;
    p.advance(secs(60));
    for ev in [&p.caller_events, &p.callee_events] {
        let (t, r) = Pair::ended(ev).unwrap();
        assert_eq!(r, EndReason::PeerVanished);
        let after = t - cut;
        assert!(
            after >= secs(19) && after <= secs(21),
            "ended {after:?} after cut"
        );
        assert!(!Pair::kinds(ev).contains(&Event::Reconnecting));
    }
    let mut p = Pair::new(no_resume());
    p.connect();
    p.caller.handle_connection_lost(p.now);
    p.collect();
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::PeerVanished
    );
}

/// When `event` came, relative to `after`, on each side.
fn when(events: &[(Duration, Event)], event: &Event, after: Duration) -> Option<Duration> {
    events
        .iter()
        .find(|(t, e)| e == event && *t >= after)
        .map(|(t, _)| *t - after)
}

#[test]
fn a_dark_path_is_reconnecting_within_seconds_and_the_call_goes_on_when_it_returns() {
    for dark in [secs(10), secs(30), secs(60)] {
        let mut p = Pair::new(SessionConfig::default());
        p.connect();
        let cut = p.now - p.start;
        p.link_up = false;
        p.advance(dark);
        for (side, ev) in [("caller", &p.caller_events), ("callee", &p.callee_events)] {
            let t = when(ev, &Event::Reconnecting, cut).expect(side);
            assert!(
                t >= secs(3) && t <= secs(5),
                "{side} reconnecting {t:?} after the cut"
            );
        }
        assert!(p.caller.is_reconnecting() && p.callee.is_reconnecting());
        // Nothing goes on the control stream that a resume could find half-written.
        assert!(p.caller.send_chat(p.now, "lost?").is_err());
        let back = p.now - p.start;
        p.link_up = true;
        p.advance(secs(3));
        for (side, ev) in [("caller", &p.caller_events), ("callee", &p.callee_events)] {
            let t = when(ev, &Event::Reconnected, back).expect(side);
            assert!(t <= secs(2), "{side} back {t:?} after the path");
            let count = |x: &Event| Pair::kinds(ev).iter().filter(|e| *e == x).count();
            assert_eq!(
                (count(&Event::Reconnecting), count(&Event::Reconnected)),
                (1, 1),
                "{side} flapped"
            );
            assert!(Pair::ended(ev).is_none(), "{side} ended after {dark:?}");
        }
        p.caller.send_chat(p.now, "still here").unwrap();
        p.advance(secs(1));
        assert!(
            matches!(&p.callee_events.last().unwrap().1, Event::Chat { text, .. } if text == "still here"),
            "{:?}",
            &p.callee_events[p.callee_events.len().saturating_sub(4)..]
        );
    }
}

#[test]
fn a_goodbye_on_the_path_that_comes_back_ends_the_call_without_a_reconnect() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.link_up = false;
    p.advance(secs(6));
    assert!(p.caller.is_reconnecting());
    let mut bye = Vec::new();
    Message::Hangup {
        reason: HangupReason::Normal,
    }
    .encode(&mut bye)
    .unwrap();
    let at = p.now - p.start;
    p.caller.handle_stream_data(p.now, &bye);
    p.collect();
    assert_eq!(when(&p.caller_events, &Event::Reconnected, at), None);
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::RemoteHangup
    );
}

#[test]
fn a_call_that_stays_dark_ends_when_the_reconnect_window_is_over() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    let cut = p.now - p.start;
    p.link_up = false;
    p.advance(secs(200));
    for ev in [&p.caller_events, &p.callee_events] {
        let (t, r) = Pair::ended(ev).unwrap();
        assert_eq!(r, EndReason::PeerVanished);
        let after = t - cut;
        // Reconnecting 4 s after the cut, then 90 s to find a path.
        assert!(
            after >= secs(93) && after <= secs(95),
            "ended {after:?} after the cut"
        );
    }
    // A lost connection is a reconnect too, and ends the same way.
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    let lost = p.now - p.start;
    p.caller.handle_connection_lost(p.now);
    p.collect();
    assert_eq!(
        when(&p.caller_events, &Event::Reconnecting, lost),
        Some(secs(0))
    );
    p.link_up = false;
    p.advance(secs(100));
    let (t, r) = Pair::ended(&p.caller_events).unwrap();
    assert_eq!((t - lost, r), (secs(90), EndReason::PeerVanished));
}

/// Everything `s` has to send, as messages.
fn sent(s: &mut Session) -> Vec<Message> {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let mut got = Vec::new();
    FrameDecoder::default().push(&out, &mut got).unwrap();
    got.into_iter()
        .map(|d| match d {
            Decoded::Message(m) => m,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_call_resumes_on_a_new_connection_named_by_its_token() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.caller.send_chat(p.now, "before").unwrap();
    p.advance(secs(1));
    // The connection is lost on both sides.
    p.link_up = false;
    p.caller.handle_connection_lost(p.now);
    p.callee.handle_connection_lost(p.now);
    p.advance(secs(20));
    assert!(p.caller.is_reconnecting() && p.callee.is_reconnecting());
    let _ = sent(&mut p.caller);
    let _ = sent(&mut p.callee);
    // The caller dialled again: `Resume` first, and nothing after it until `Resumed`.
    let token = [7u8; 32];
    p.caller.resume_as_caller(p.now, token).unwrap();
    let first = sent(&mut p.caller);
    assert_eq!(first, vec![Message::Resume { token }]);
    p.caller.handle_timeout(p.now + secs(5));
    assert!(sent(&mut p.caller).is_empty(), "a ping followed the resume");
    // The callee's node reads it on the new connection: no hello of its own goes out.
    let mut fresh = Session::new(Role::Callee, SessionConfig::default(), p.now);
    fresh.tell_observed(p.now, "192.0.2.1:5000".parse().unwrap());
    let mut bytes = Vec::new();
    Message::Resume { token }.encode(&mut bytes).unwrap();
    // Whatever follows on that stream is for the call it names, not for this session.
    Message::Ping { nonce: 9 }.encode(&mut bytes).unwrap();
    fresh.handle_stream_data(p.now, &bytes);
    assert_eq!(fresh.poll_event(), Some(Event::ResumeRequested(token)));
    assert_eq!(fresh.poll_event(), None);
    assert!(sent(&mut fresh).is_empty());
    assert!(!fresh.is_ended());
    // What followed the `Resume` is kept, as it came, for the call.
    let mut got = Vec::new();
    FrameDecoder::default()
        .push(&fresh.take_leftover(), &mut got)
        .unwrap();
    assert_eq!(got, vec![Decoded::Message(Message::Ping { nonce: 9 })]);
    // Handed over: the call answers on the new stream, and both are back.
    p.callee.resume_as_callee(p.now).unwrap();
    assert_eq!(sent(&mut p.callee), vec![Message::Resumed]);
    let resumed_at = p.now - p.start;
    let mut answer = Vec::new();
    Message::Resumed.encode(&mut answer).unwrap();
    p.caller.handle_stream_data(p.now, &answer);
    p.link_up = true;
    p.advance(secs(5));
    for ev in [&p.caller_events, &p.callee_events] {
        assert_eq!(when(ev, &Event::Reconnected, resumed_at), Some(secs(0)));
        assert!(Pair::ended(ev).is_none());
    }
    assert!(!p.caller.is_reconnecting() && !p.callee.is_reconnecting());
    // Chat goes on, numbered after what was said before.
    p.caller.send_chat(p.now, "after").unwrap();
    p.advance(secs(1));
    assert!(
        matches!(&p.callee_events.last().unwrap().1, Event::Chat { text, .. } if text == "after")
    );
    // Only a caller that lost its path resumes, and only a callee is resumed.
    assert!(p.callee.resume_as_caller(p.now, token).is_err());
    assert!(p.caller.resume_as_callee(p.now).is_err());
}

#[test]
fn a_resume_is_asked_only_while_reconnecting_and_its_answer_has_a_deadline() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    // The path is fine: a new connection is not used.
    assert!(p.caller.resume_as_caller(p.now, [2; 32]).is_err());
    p.caller.handle_connection_lost(p.now);
    p.collect();
    p.caller.resume_as_caller(p.now, [2; 32]).unwrap();
    assert!(p.caller.is_resuming());
    let asked = p.now;
    // No answer within twice `stall_after`: another connection is worth a try.
    let t = p.caller.poll_timeout().unwrap();
    assert_eq!(t, asked + 2 * SessionConfig::default().stall_after);
    p.caller.handle_timeout(t);
    assert!(!p.caller.is_resuming() && p.caller.is_reconnecting());
    assert!(sent(&mut p.caller)
        .iter()
        .all(|m| *m == Message::Resume { token: [2; 32] }));
    // A late answer on that connection still counts.
    let mut answer = Vec::new();
    Message::Resumed.encode(&mut answer).unwrap();
    p.caller.handle_stream_data(t, &answer);
    assert!(!p.caller.is_reconnecting() && p.caller.is_active());
    assert_eq!(p.caller.poll_event(), Some(Event::Reconnected));
    assert_eq!(p.caller.poll_event(), None);
}

#[test]
fn a_goodbye_right_behind_the_resume_reaches_the_call() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.callee.handle_connection_lost(p.now);
    p.collect();
    // The caller's `Resume` and its hang-up arrive in one read on the new connection.
    let mut bytes = Vec::new();
    Message::Resume { token: [3; 32] }
        .encode(&mut bytes)
        .unwrap();
    Message::Hangup {
        reason: HangupReason::Normal,
    }
    .encode(&mut bytes)
    .unwrap();
    let mut fresh = Session::new(Role::Callee, SessionConfig::default(), p.now);
    fresh.handle_stream_data(p.now, &bytes[..bytes.len() - 1]);
    assert_eq!(fresh.poll_event(), Some(Event::ResumeRequested([3; 32])));
    // Half a frame is kept too.
    let mut leftover = fresh.take_leftover();
    leftover.push(*bytes.last().unwrap());
    p.callee.resume_as_callee(p.now).unwrap();
    p.callee.handle_stream_data(p.now, &leftover);
    p.collect();
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::RemoteHangup
    );
}

#[test]
fn a_session_that_will_not_reconnect_does_not_offer_to() {
    let config = SessionConfig {
        reconnect_window: Duration::ZERO,
        ..SessionConfig::default()
    };
    let mut caller = Session::new(Role::Caller, config, Instant::now());
    let first = sent(&mut caller);
    assert!(
        matches!(&first[0], Message::Hello { capabilities, .. } if capabilities & caps::RESUME == 0),
        "{first:?}"
    );
    let mut p = Pair::new(SessionConfig {
        reconnect_window: Duration::ZERO,
        ..SessionConfig::default()
    });
    p.callee = Session::new(Role::Callee, SessionConfig::default(), p.now);
    p.connect();
    assert!(!p.caller.can_resume() && !p.callee.can_resume());
}

#[test]
fn a_resume_of_a_call_that_is_over_is_told_so() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.caller.handle_connection_lost(p.now);
    p.collect();
    p.caller.resume_as_caller(p.now, [1; 32]).unwrap();
    let mut fresh = Session::new(Role::Callee, SessionConfig::default(), p.now);
    let mut bytes = Vec::new();
    p.caller.poll_transmit(&mut bytes);
    fresh.handle_stream_data(p.now, &bytes);
    assert_eq!(fresh.poll_event(), Some(Event::ResumeRequested([1; 32])));
    fresh.refuse_resume(p.now);
    assert!(fresh.is_ended());
    let mut answer = Vec::new();
    fresh.poll_transmit(&mut answer);
    p.caller.handle_stream_data(p.now, &answer);
    p.collect();
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::RemoteHangup
    );
    // A `Resume` anywhere but first on a callee's connection breaks the protocol.
    let (_, events, _) = callee_with(&{
        let mut b = hello(2, 2);
        b.extend(frame(Message::Resume { token: [1; 32] }));
        b
    });
    assert!(matches!(
        &events[..],
        [Event::Ended(EndReason::ProtocolError(_))]
    ));
    // So does a `Resumed` that nobody asked for.
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    let mut bytes = Vec::new();
    Message::Resumed.encode(&mut bytes).unwrap();
    p.caller.handle_stream_data(p.now, &bytes);
    p.collect();
    assert!(matches!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::ProtocolError(_)
    ));
}

#[test]
fn both_hang_up_at_once() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    let now = p.now;
    p.caller.hangup(now);
    p.callee.hangup(now);
    p.advance(secs(1));
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::LocalHangup
    );
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::LocalHangup
    );
    // exactly one end event each, no protocol error from the crossing hang-ups
    assert_eq!(
        p.caller_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Ended(_)))
            .count(),
        1
    );
    assert_eq!(
        p.callee_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Ended(_)))
            .count(),
        1
    );
}

fn frame(m: Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v).unwrap();
    v
}

fn callee_with(bytes: &[u8]) -> (Session, Vec<Event>, Vec<u8>) {
    let now = Instant::now();
    let mut s = Session::new(Role::Callee, SessionConfig::default(), now);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    out.clear();
    s.handle_stream_data(now, bytes);
    s.poll_transmit(&mut out);
    let events = std::iter::from_fn(|| s.poll_event()).collect();
    (s, events, out)
}

fn hello(max: u16, min: u16) -> Vec<u8> {
    frame(Message::Hello {
        max_version: max,
        min_version: min,
        capabilities: caps::CHAT | 1 << 40,
    })
}

#[test]
fn newer_peer_is_met_at_our_version() {
    let mut bytes = hello(7, 2);
    bytes.extend(frame(Message::Ring { media: caps::CHAT }));
    let (s, events, _) = callee_with(&bytes);
    assert_eq!(s.version(), Some(2));
    // unknown capability bit 40 is ignored
    assert_eq!(s.common_capabilities(), caps::CHAT);
    assert_eq!(events, vec![Event::IncomingCall { media: caps::CHAT }]);
}

#[test]
fn incompatible_version_ends_with_a_reason_on_the_wire() {
    let (_, events, out) = callee_with(&hello(5, 3));
    assert_eq!(
        events,
        vec![Event::Ended(EndReason::IncompatibleVersion {
            peer_max: 5,
            peer_min: 3
        })]
    );
    let mut got = Vec::new();
    FrameDecoder::default().push(&out, &mut got).unwrap();
    // Our hello answers theirs (so they learn what we speak), then the reason.
    assert_eq!(
        got,
        vec![
            Decoded::Message(Message::Hello {
                max_version: PROTOCOL_VERSION,
                min_version: MIN_PROTOCOL_VERSION,
                capabilities: SessionConfig::default().capabilities,
            }),
            Decoded::Message(Message::Hangup {
                reason: HangupReason::IncompatibleVersion
            })
        ]
    );
}

#[test]
fn message_before_hello_is_a_protocol_error() {
    let (_, events, _) = callee_with(&frame(Message::Accept));
    assert!(matches!(
        &events[..],
        [Event::Ended(EndReason::ProtocolError(_))]
    ));
}

#[test]
fn unknown_critical_type_ends_optional_is_skipped() {
    let mut bytes = hello(2, 2);
    bytes.extend([0, 2, 0xEE, 0]); // optional, unknown
    let (s, events, _) = callee_with(&bytes);
    assert!(events.is_empty());
    assert_eq!(s.stats().skipped_unknown, 1);
    bytes.extend([0, 1, 0x33]); // critical, unknown
    let (_, events, out) = callee_with(&bytes);
    assert!(
        matches!(&events[..], [Event::Ended(EndReason::ProtocolError(m))] if m.to_string().contains("0x33"))
    );
    assert!(!out.is_empty(), "a hangup with the reason is sent");
}

#[test]
fn oversized_frame_ends_without_buffering() {
    let mut bytes = hello(2, 2);
    bytes.extend([0xFF, 0xFF]);
    let (s, events, _) = callee_with(&bytes);
    assert!(s.is_ended());
    assert!(
        matches!(&events[..], [Event::Ended(EndReason::ProtocolError(m))] if m.to_string().contains("exceeds"))
    );
}

#[test]
fn silent_peer_is_dropped_after_hello_timeout() {
    let now = Instant::now();
    let mut s = Session::new(Role::Callee, SessionConfig::default(), now);
    // A callee says nothing before the caller's first message: no hello, no ping.
    let mut out = Vec::new();
    assert!(!s.poll_transmit(&mut out));
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + secs(10));
    s.handle_timeout(t);
    assert!(matches!(
        s.poll_event(),
        Some(Event::Ended(EndReason::ProtocolError(_)))
    ));
}

#[test]
fn chat_before_answer_and_replays_are_dropped() {
    let mut bytes = hello(2, 2);
    bytes.extend(frame(Message::Ring { media: 0 }));
    bytes.extend(frame(Message::Chat {
        id: 0,
        text: "spam".into(),
    }));
    let (mut s, events, _) = callee_with(&bytes);
    assert_eq!(events.len(), 1);
    assert_eq!(s.stats().dropped_chat, 1);
    let now = Instant::now();
    s.accept(now).unwrap();
    let mut b = frame(Message::Chat {
        id: 1,
        text: "a".into(),
    });
    b.extend(frame(Message::Chat {
        id: 1,
        text: "a again".into(),
    }));
    b.extend(frame(Message::Chat {
        id: 2,
        text: "b".into(),
    }));
    s.handle_stream_data(now, &b);
    let texts: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Event::Chat { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["a", "b"]);
}

#[test]
fn malformed_input_in_every_state_never_panics() {
    // A byte soup fed at every split point: the session ends or survives, never panics.
    let mut soup = hello(2, 2);
    soup.extend(frame(Message::Ring { media: 1 }));
    soup.extend([0, 5, 0x08, 9, 9, 9, 9, 0, 0, 0x07]);
    for cut in 0..soup.len() {
        let now = Instant::now();
        let mut s = Session::new(Role::Callee, SessionConfig::default(), now);
        s.handle_stream_data(now, &soup[..cut]);
        s.handle_stream_data(now, &soup[cut..]);
        while s.poll_event().is_some() {}
    }
}

// ---- the verification code: commit, nonce, reveal ----

fn r32(tag: &str, i: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&i.to_le_bytes());
    *h.finalize().as_bytes()
}

fn decode_all(bytes: &[u8]) -> Vec<Message> {
    let mut got = Vec::new();
    FrameDecoder::default().push(bytes, &mut got).unwrap();
    got.into_iter()
        .filter_map(|d| match d {
            Decoded::Message(m) => Some(m),
            Decoded::Skipped(_) => None,
        })
        .collect()
}

fn drain(s: &mut Session) -> (Vec<Message>, Vec<Event>) {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    (
        decode_all(&out),
        std::iter::from_fn(|| s.poll_event()).collect(),
    )
}

#[test]
fn the_code_is_settled_on_both_sides_a_round_trip_after_the_ring() {
    let mut p = Pair::new(SessionConfig::default());
    let exporter = r32("exporter", 1);
    let now = p.now;
    p.caller.begin_verification(now, exporter, r32("a", 1));
    p.callee.begin_verification(now, exporter, r32("b", 1));
    p.connect_after(Duration::from_millis(100));
    let code = p.caller.verification_code().unwrap().to_owned();
    assert_eq!(p.callee.verification_code(), Some(code.as_str()));
    assert_eq!(code.len(), 7);
    let at = |events: &[(Duration, Event)], want: fn(&Event) -> bool| {
        events
            .iter()
            .find(|(_, e)| want(e))
            .map(|(t, _)| *t)
            .unwrap()
    };
    let callee_ring = at(&p.callee_events, |e| {
        matches!(e, Event::IncomingCall { .. })
    });
    let callee_code = at(&p.callee_events, |e| {
        matches!(e, Event::VerificationCode(_))
    });
    let caller_code = at(&p.caller_events, |e| {
        matches!(e, Event::VerificationCode(_))
    });
    let caller_ringing = at(&p.caller_events, |e| matches!(e, Event::Ringing));
    // The callee rings as soon as the ring arrives (40 ms); it alerts at 100 ms, sending its
    // nonce with Ringing; the caller has the code with Ringing (140 ms), the callee one
    // round trip after alerting (180 ms).
    assert_eq!(callee_ring, Duration::from_millis(40));
    assert_eq!(caller_code, Duration::from_millis(140));
    assert_eq!(caller_ringing, caller_code);
    assert_eq!(callee_code, Duration::from_millis(180));
    // Another nonce on either side: another code.
    let mut q = Pair::new(SessionConfig::default());
    let now = q.now;
    q.caller.begin_verification(now, exporter, r32("a", 2));
    q.callee.begin_verification(now, exporter, r32("b", 1));
    q.connect_after(Duration::from_millis(100));
    assert_ne!(q.caller.verification_code().unwrap(), code);
}

#[test]
fn the_callee_sends_its_nonce_only_for_a_commitment_and_checks_the_reveal() {
    let now = Instant::now();
    let exporter = r32("exporter", 2);
    let mut b = Session::new(Role::Callee, SessionConfig::default(), now);
    b.begin_verification(now, exporter, r32("b", 2));
    let mut bytes = hello(2, 2);
    bytes.extend(frame(Message::Ring { media: caps::CHAT }));
    b.handle_stream_data(now, &bytes);
    let (out, events) = drain(&mut b);
    assert!(!out.iter().any(|m| matches!(m, Message::SasNonce { .. })));
    assert_eq!(events, vec![Event::IncomingCall { media: caps::CHAT }]);
    let n_a = r32("a", 2);
    b.handle_stream_data(
        now,
        &frame(Message::SasCommit {
            commit: crate::sas::sas_commit(&exporter, &n_a),
        }),
    );
    // Holding the commitment is not enough: the nonce goes out only when the callee alerts
    // its user, so nobody learns a code without ringing someone.
    let (out, _) = drain(&mut b);
    assert!(out.is_empty(), "{out:?}");
    b.alert(now).unwrap();
    let (out, _) = drain(&mut b);
    assert!(matches!(
        out[..],
        [Message::SasNonce { .. }, Message::Ringing]
    ));
    // A nonce that does not open the commitment ends the call, and nothing rings.
    b.handle_stream_data(now, &frame(Message::SasReveal { nonce: r32("a", 3) }));
    let (out, events) = drain(&mut b);
    assert!(matches!(
        &events[..],
        [Event::Ended(EndReason::ProtocolError(
            Violation::Commitment
        ))]
    ));
    assert_eq!(
        out,
        vec![Message::Hangup {
            reason: HangupReason::ProtocolError
        }]
    );
}

#[test]
fn the_caller_takes_no_answer_before_the_code() {
    let now = Instant::now();
    for early in [Message::Ringing, Message::Accept] {
        let mut a = Session::new(Role::Caller, SessionConfig::default(), now);
        a.begin_verification(now, r32("e", 3), r32("a", 4));
        let (out, _) = drain(&mut a);
        assert!(out.iter().any(|m| matches!(m, Message::SasCommit { .. })));
        // The caller reveals nothing before the callee's nonce.
        assert!(!out.iter().any(|m| matches!(m, Message::SasReveal { .. })));
        let mut bytes = hello(2, 2);
        bytes.extend(frame(early.clone()));
        a.handle_stream_data(now, &bytes);
        let (_, events) = drain(&mut a);
        assert!(
            matches!(
                &events[..],
                [Event::Ended(EndReason::ProtocolError(Violation::Unexpected { what, .. }))]
                    if what.contains("verification")
            ),
            "{early:?}: {events:?}"
        );
    }
}

/// Plays the man in the middle between Alice (caller) and Bob (callee), who holds a swapped
/// ticket: he completes one leg, learns its code, and then, on the other leg, tries `tries`
/// values of everything he controls (his TLS randomness, i.e. the exporter, and his nonce)
/// before committing to one. Returns how often Alice's and Bob's codes agreed in their last
/// `bits` bits, out of `trials`.
fn mitm_matches(trials: u64, tries: u64, bits: u32, leg_to_bob_first: bool) -> u64 {
    let mask = (1u32 << bits) - 1;
    let now = Instant::now();
    let code_of = |s: &Session| -> u32 {
        s.verification_code()
            .unwrap()
            .replace(' ', "")
            .parse::<u32>()
            .unwrap()
    };
    let mut matches = 0;
    for t in 0..trials {
        // Leg 1, Mallory calls Bob.
        let bob_leg = |m_exporter: [u8; 32], m_nonce: [u8; 32]| -> Session {
            let mut bob = Session::new(Role::Callee, SessionConfig::default(), now);
            bob.begin_verification(now, m_exporter, r32("bob", t));
            let mut bytes = hello(2, 2);
            bytes.extend(frame(Message::SasCommit {
                commit: crate::sas::sas_commit(&m_exporter, &m_nonce),
            }));
            bytes.extend(frame(Message::Ring { media: caps::CHAT }));
            bob.handle_stream_data(now, &bytes);
            // Bob's device rings: only then does his nonce go out.
            bob.alert(now).unwrap();
            let (out, _) = drain(&mut bob);
            assert!(out.iter().any(|m| matches!(m, Message::SasNonce { .. })));
            bob.handle_stream_data(now, &frame(Message::SasReveal { nonce: m_nonce }));
            bob
        };
        // Leg 2, Alice calls Mallory, who answers with `m_nonce` after Alice's commitment.
        let alice_leg = |exporter: [u8; 32], m_nonce: [u8; 32]| -> Session {
            let mut alice = Session::new(Role::Caller, SessionConfig::default(), now);
            alice.begin_verification(now, exporter, r32("alice", t));
            let _ = drain(&mut alice);
            let mut bytes = hello(2, 2);
            bytes.extend(frame(Message::SasNonce { nonce: m_nonce }));
            alice.handle_stream_data(now, &bytes);
            alice
        };
        // Mallory's "best guess" of the honest nonce he cannot see.
        let guess = [0u8; 32];
        let (alice, bob) = if leg_to_bob_first {
            let bob = bob_leg(r32("e1", t), r32("m1", t));
            let target = code_of(&bob) & mask;
            // Grind leg 2: pick the exporter and nonce that would match if Alice's nonce
            // were his guess.
            let (e, n) = (0..tries)
                .map(|k| (r32("e2", t * 1000 + k), r32("m2", t * 1000 + k)))
                .find(|(e, n)| crate::sas::sas_number(e, &guess, n) & mask == target)
                .unwrap_or((r32("e2", t), r32("m2", t)));
            (alice_leg(e, n), bob)
        } else {
            let alice = alice_leg(r32("e2", t), r32("m2", t));
            let target = code_of(&alice) & mask;
            let (e, n) = (0..tries)
                .map(|k| (r32("e1", t * 1000 + k), r32("m1", t * 1000 + k)))
                .find(|(e, n)| crate::sas::sas_number(e, n, &guess) & mask == target)
                .unwrap_or((r32("e1", t), r32("m1", t)));
            (alice, bob_leg(e, n))
        };
        if code_of(&alice) & mask == code_of(&bob) & mask {
            matches += 1;
        }
    }
    matches
}

#[test]
fn a_man_in_the_middle_cannot_grind_the_code() {
    // Codes are compared on their last 4 bits so that chance (1/16) can be measured; the six
    // digits give 10^-6 by the same argument. 2,000 attempts, 64 tries each.
    let (trials, tries) = (2_000, 64);
    let expected = trials / 16; // 125
    for leg_to_bob_first in [true, false] {
        let m = mitm_matches(trials, tries, 4, leg_to_bob_first);
        // Binomial(2000, 1/16): sd ≈ 10.8; 5 sd either side.
        assert!(
            m > expected - 55 && m < expected + 55,
            "grinding changed the odds: {m} matches of {trials} (chance: {expected})"
        );
    }
    // The same grinding against a code of the exporter alone (the version 1 scheme) almost
    // always wins: 1 - (15/16)^64 ≈ 98 %.
    let mut old_wins = 0;
    for t in 0..trials {
        let target = crate::sas::sas_number(&r32("e1", t), &[0; 32], &[0; 32]) & 15;
        if (0..tries).any(|k| {
            crate::sas::sas_number(&r32("e2", t * 1000 + k), &[0; 32], &[0; 32]) & 15 == target
        }) {
            old_wins += 1;
        }
    }
    assert!(old_wins > trials * 9 / 10, "{old_wins}");
}

/// Which streams the peer may open: the control stream (the caller's) and, once the call is
/// up, one per file transfer; a stream while it rings, or a one-way stream at any time,
/// breaks the protocol and ends the call.
#[test]
fn the_peer_opens_transfer_streams_only_once_the_call_is_up() {
    use crate::transfer::MAX_TRANSFERS;
    // Ringing: the callee lets the caller have its control stream, the caller nothing.
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    assert_eq!(
        (p.caller.peer_stream_limit(), p.callee.peer_stream_limit()),
        (0, 1)
    );
    let now = p.now;
    assert_eq!(
        p.callee.admit_stream(now, PeerStream::Bidirectional),
        StreamAdmission::Refused
    );
    p.advance(Duration::from_millis(100));
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::ProtocolError(Violation::ExtraStream)
    );
    assert!(
        Pair::ended(&p.caller_events).is_some(),
        "the caller is told"
    );

    // Up: transfers on both sides, the control stream besides on the callee's.
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    assert_eq!(
        (p.caller.peer_stream_limit(), p.callee.peer_stream_limit()),
        (MAX_TRANSFERS, MAX_TRANSFERS + 1)
    );
    let now = p.now;
    for s in [&mut p.caller, &mut p.callee] {
        assert_eq!(
            s.admit_stream(now, PeerStream::Bidirectional),
            StreamAdmission::Transfer
        );
    }
    p.advance(secs(1));
    assert!(p.caller.is_active() && p.callee.is_active());
    // A one-way stream is never part of the protocol.
    let now = p.now;
    assert_eq!(
        p.caller.admit_stream(now, PeerStream::Unidirectional),
        StreamAdmission::Refused
    );
    p.advance(Duration::from_millis(100));
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::ProtocolError(Violation::ExtraStream)
    );
    assert_eq!(p.caller.peer_stream_limit(), 0, "an ended call takes none");
}
