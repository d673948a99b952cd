//! Deterministic tests on virtual time: two sessions joined by a simulated link.

use super::*;

/// Two sessions and a link with fixed one-way latency that can be cut.
struct Pair {
    now: Instant,
    caller: Session,
    callee: Session,
    latency: Duration,
    link_up: bool,
    /// (arrival time, towards callee?, bytes)
    flight: Vec<(Instant, bool, Vec<u8>)>,
    caller_events: Vec<(Duration, Event)>,
    callee_events: Vec<(Duration, Event)>,
    start: Instant,
}

impl Pair {
    fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            caller: Session::new(Role::Caller, config.clone(), now),
            callee: Session::new(Role::Callee, config, now),
            latency: Duration::from_millis(40),
            link_up: true,
            flight: Vec::new(),
            caller_events: Vec::new(),
            callee_events: Vec::new(),
        }
    }

    fn collect(&mut self) {
        let mut buf = Vec::new();
        if self.caller.poll_transmit(&mut buf) && self.link_up {
            self.flight
                .push((self.now + self.latency, true, std::mem::take(&mut buf)));
        }
        buf.clear();
        if self.callee.poll_transmit(&mut buf) && self.link_up {
            self.flight.push((self.now + self.latency, false, buf));
        }
        let t = self.now - self.start;
        while let Some(e) = self.caller.poll_event() {
            self.caller_events.push((t, e));
        }
        while let Some(e) = self.callee.poll_event() {
            self.callee_events.push((t, e));
        }
    }

    /// Runs the pair until `until` (relative to start), jumping from deadline to deadline.
    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        loop {
            self.collect();
            let next = [
                self.flight.iter().map(|f| f.0).min(),
                self.caller.poll_timeout(),
                self.callee.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
            self.flight = rest;
            for (_, to_callee, bytes) in due {
                if to_callee {
                    self.callee.handle_stream_data(now, &bytes);
                } else {
                    self.caller.handle_stream_data(now, &bytes);
                }
            }
            if self.caller.poll_timeout().is_some_and(|t| t <= now) {
                self.caller.handle_timeout(now);
            }
            if self.callee.poll_timeout().is_some_and(|t| t <= now) {
                self.callee.handle_timeout(now);
            }
        }
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
        self.advance(Duration::from_millis(100));
        assert_eq!(
            Self::kinds(&self.callee_events),
            vec![Event::IncomingCall { media: caps::CHAT }]
        );
        self.callee.alert(self.now).unwrap();
        self.advance(Duration::from_millis(100));
        assert_eq!(Self::kinds(&self.caller_events), vec![Event::Ringing]);
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
    assert_eq!(p.caller.version(), Some(1));
    assert_eq!(p.caller.common_capabilities(), caps::CHAT);
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

#[test]
fn decline_tells_the_caller_only_declined() {
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    p.callee.decline(p.now).unwrap();
    p.advance(secs(1));
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::Declined
    );
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::DeclinedLocally
    );
    assert!(p.callee.accept(p.now).is_err());
}

#[test]
fn busy() {
    let mut p = Pair::new(SessionConfig::default());
    p.advance(Duration::from_millis(100));
    p.callee.busy(p.now).unwrap();
    p.advance(secs(1));
    assert_eq!(Pair::ended(&p.caller_events).unwrap().1, EndReason::Busy);
    assert_eq!(
        Pair::ended(&p.callee_events).unwrap().1,
        EndReason::RejectedBusy
    );
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

#[test]
fn quiet_call_survives_ten_minutes_on_keepalives() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.advance(secs(600));
    assert!(p.caller.is_active() && p.callee.is_active());
    let pings = p.caller.stats().pings_sent + p.callee.stats().pings_sent;
    // One ping every 5 s from whichever side was quiet longest: about 120 to 240.
    assert!((100..=260).contains(&pings), "{pings} pings");
    assert!(p.caller.rtt().unwrap() >= Duration::from_millis(80));
}

#[test]
fn peer_vanishes_is_detected_by_idle_timeout() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
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
    }
}

#[test]
fn connection_loss_ends_the_call() {
    let mut p = Pair::new(SessionConfig::default());
    p.connect();
    p.caller.handle_connection_lost(p.now);
    p.collect();
    assert_eq!(
        Pair::ended(&p.caller_events).unwrap().1,
        EndReason::PeerVanished
    );
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
    let mut bytes = hello(7, 1);
    bytes.extend(frame(Message::Ring { media: caps::CHAT }));
    let (s, events, _) = callee_with(&bytes);
    assert_eq!(s.version(), Some(1));
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
    assert_eq!(
        got,
        vec![Decoded::Message(Message::Hangup {
            reason: HangupReason::IncompatibleVersion
        })]
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
    let mut bytes = hello(1, 1);
    bytes.extend([0, 2, 0xEE, 0]); // optional, unknown
    let (s, events, _) = callee_with(&bytes);
    assert!(events.is_empty());
    assert_eq!(s.stats().skipped_unknown, 1);
    bytes.extend([0, 1, 0x33]); // critical, unknown
    let (_, events, out) = callee_with(&bytes);
    assert!(
        matches!(&events[..], [Event::Ended(EndReason::ProtocolError(m))] if m.contains("0x33"))
    );
    assert!(!out.is_empty(), "a hangup with the reason is sent");
}

#[test]
fn oversized_frame_ends_without_buffering() {
    let mut bytes = hello(1, 1);
    bytes.extend([0xFF, 0xFF]);
    let (s, events, _) = callee_with(&bytes);
    assert!(s.is_ended());
    assert!(
        matches!(&events[..], [Event::Ended(EndReason::ProtocolError(m))] if m.contains("exceeds"))
    );
}

#[test]
fn silent_peer_is_dropped_after_hello_timeout() {
    let now = Instant::now();
    let mut s = Session::new(Role::Callee, SessionConfig::default(), now);
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + secs(5)); // keepalive first
    s.handle_timeout(t);
    let t = s.poll_timeout().unwrap();
    s.handle_timeout(t);
    assert_eq!(t, now + secs(10));
    assert!(matches!(
        s.poll_event(),
        Some(Event::Ended(EndReason::ProtocolError(_)))
    ));
}

#[test]
fn chat_before_answer_and_replays_are_dropped() {
    let mut bytes = hello(1, 1);
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
    let mut soup = hello(1, 1);
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
