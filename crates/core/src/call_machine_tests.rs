//! Two [`CallMachine`]s on the one simulation harness (`crate::sim`), each on a host of the
//! simulated network: the control stream's bytes and the media's datagrams cross the same
//! network (tagged apart by this test's driver), the audio is the real machine's with frames
//! of a fixed size standing in for Opus.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::media::{AudioStreamConfig, Playout};
use crate::session::EndReason;
use crate::sim::{Host, Machine, NatType, Net};

const SEC: Duration = Duration::from_secs(1);
const CONTROL: u8 = 0;
const MEDIA: u8 = 1;

/// One side: its machine, and a driver that answers the machine's audio work and counts.
struct Side {
    call: CallMachine,
    peer: SocketAddr,
    now: Instant,
    t0: Instant,
    events: Vec<(Duration, Event)>,
    /// Media datagrams sent, and the time of the last.
    media_sent: u64,
    last_media_sent: Option<Instant>,
    /// Frames played from the peer's audio (not silence, not concealment).
    played: u64,
    /// Frames concealed once the peer's audio had begun to play.
    concealed: u64,
    /// The control stream is lost on its way in (both ways is the same for the test).
    deaf_control: bool,
}

impl Side {
    fn new(role: Role, t0: Instant, peer: SocketAddr) -> Self {
        Self {
            call: CallMachine::new(role, SessionConfig::default(), t0),
            peer,
            now: t0,
            t0,
            events: Vec::new(),
            media_sent: 0,
            last_media_sent: None,
            played: 0,
            concealed: 0,
            deaf_control: false,
        }
    }

    fn saw(&self, f: impl Fn(&Event) -> bool) -> Option<Duration> {
        self.events.iter().find(|(_, e)| f(e)).map(|(t, _)| *t)
    }
}

impl Machine for Side {
    fn handle(&mut self, now: Instant, _from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        match bytes.split_first() {
            Some((&CONTROL, rest)) if !self.deaf_control => {
                self.call.handle_input(now, CallInput::Control(rest));
            }
            Some((&MEDIA, rest)) => self.call.handle_input(now, CallInput::Datagram(rest)),
            _ => {}
        }
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.now = now;
        while let Some(out) = self.call.poll_output(now) {
            match out {
                CallOutput::Audio(AudioWork::Encode { .. }) => {
                    self.call.handle_input(
                        now,
                        CallInput::Media(MediaInput::AudioEncoded {
                            data: &[0x55; 80],
                            speech: true,
                            muted: false,
                        }),
                    );
                }
                CallOutput::Audio(AudioWork::Play(Playout::Frame { .. })) => self.played += 1,
                CallOutput::Audio(AudioWork::Play(Playout::Conceal { .. })) => {
                    self.concealed += u64::from(self.played > 0);
                }
                CallOutput::Audio(_) | CallOutput::Frame(_) => {}
                CallOutput::Event(e) => self.events.push((now - self.t0, e)),
                CallOutput::Control(bytes) => {
                    return Some((self.peer, [&[CONTROL][..], &bytes].concat()));
                }
                CallOutput::Transmit(d) => {
                    self.media_sent += 1;
                    self.last_media_sent = Some(now);
                    return Some((self.peer, [&[MEDIA][..], &d].concat()));
                }
            }
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.call.poll_timeout(self.now)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.call.handle_input(now, CallInput::Timeout);
    }
}

/// Alice and Bob on open hosts, 20 ms apart; Alice calls.
fn setup() -> (Net, Side, Side) {
    let t0 = Instant::now();
    let mut net = Net::new(t0, Duration::from_millis(20));
    let a = net.add(Host::new(NatType::Open, [0; 4], [198, 51, 100, 1]));
    let b = net.add(Host::new(NatType::Open, [0; 4], [203, 0, 113, 1]));
    let (to_a, to_b) = (net.hosts[a].addr, net.hosts[b].addr);
    let alice = Side::new(Role::Caller, t0, to_b);
    let bob = Side::new(Role::Callee, t0, to_a);
    (net, alice, bob)
}

fn run(net: &mut Net, a: &mut Side, b: &mut Side, until: Duration) {
    let end = a.t0 + until;
    net.run_until(&mut [a, b], end);
}

/// Bob's device rings (its policy let the call through).
fn ring(net: &mut Net, a: &mut Side, b: &mut Side) {
    run(net, a, b, SEC / 2);
    assert!(b.saw(|e| matches!(e, Event::IncomingCall { .. })).is_some());
    b.call.alert(net.now).expect("bob's device rings");
}

/// Media only once the call is up: a caller that sends audio while the call rings (a
/// hostile one, or one whose driver started early) reaches no medium of the callee's, and
/// the callee sends none; once answered it flows both ways; once hung up nothing more
/// leaves either side, and what still arrives is dropped unread.
#[test]
fn media_flows_only_while_the_call_is_up() {
    let (mut net, mut alice, mut bob) = setup();
    // Both drivers start their audio at once, before the call is answered.
    alice
        .call
        .start_audio(AudioStreamConfig::default(), net.now);
    bob.call.start_audio(AudioStreamConfig::default(), net.now);
    ring(&mut net, &mut alice, &mut bob);
    run(&mut net, &mut alice, &mut bob, 3 * SEC);
    assert_eq!((alice.media_sent, bob.media_sent), (0, 0));
    assert_eq!(
        bob.call
            .media()
            .audio()
            .expect("started")
            .stats()
            .datagrams_in,
        0
    );

    bob.call.accept(net.now).expect("bob answers");
    run(&mut net, &mut alice, &mut bob, 8 * SEC);
    assert!(alice.saw(|e| *e == Event::Connected).is_some());
    // About 5 s of audio each way (250 frames of 20 ms), played without a gap once the
    // jitter buffer filled.
    for side in [&alice, &bob] {
        assert!(side.media_sent >= 245, "{}", side.media_sent);
        assert!(side.played >= 200, "{}", side.played);
        assert_eq!(side.concealed, 0);
    }

    alice.call.hangup(net.now);
    let hung_up = net.now;
    run(&mut net, &mut alice, &mut bob, 10 * SEC);
    assert!(bob
        .saw(|e| *e == Event::Ended(EndReason::RemoteHangup))
        .is_some());
    // Alice's last datagram left before she hung up; Bob's no later than her hang-up
    // reached him.
    assert!(alice.last_media_sent.is_some_and(|t| t <= hung_up));
    assert!(bob
        .last_media_sent
        .is_some_and(|t| t <= hung_up + net.one_way));
    assert_eq!(alice.call.poll_timeout(net.now), None);
    // A datagram that still arrives is not read.
    let refused = bob.call.stats().refused_datagrams;
    let before = bob.call.media().audio().expect("kept").stats().datagrams_in;
    let mut d = Vec::new();
    let mut stream = crate::media::AudioStream::new(AudioStreamConfig::default(), net.now);
    stream.handle_encoded(&[1; 80], true, false);
    stream.handle_timeout(net.now + SEC);
    while stream.poll_work(net.now + SEC).is_some() {
        stream.handle_encoded(&[1; 80], true, false);
    }
    assert!(stream.poll_transmit(net.now + SEC, &mut d));
    bob.call.handle_input(net.now, CallInput::Datagram(&d));
    assert_eq!(bob.call.stats().refused_datagrams, refused + 1);
    assert_eq!(
        bob.call.media().audio().expect("kept").stats().datagrams_in,
        before
    );
}

/// A call whose control stream goes quiet while its media still flows hears its peer and
/// is not reconnecting; the same silence with no media flowing is reconnecting within the
/// session's `stall_after` (4 s).
#[test]
fn media_heard_keeps_a_call_with_a_quiet_control_stream_up() {
    for with_media in [true, false] {
        let (mut net, mut alice, mut bob) = setup();
        ring(&mut net, &mut alice, &mut bob);
        bob.call.accept(net.now).expect("bob answers");
        run(&mut net, &mut alice, &mut bob, 2 * SEC);
        if with_media {
            alice
                .call
                .start_audio(AudioStreamConfig::default(), net.now);
            bob.call.start_audio(AudioStreamConfig::default(), net.now);
        }
        run(&mut net, &mut alice, &mut bob, 3 * SEC);
        (alice.deaf_control, bob.deaf_control) = (true, true);
        run(&mut net, &mut alice, &mut bob, 9 * SEC);
        let reconnecting = |s: &Side| s.saw(|e| *e == Event::Reconnecting);
        if with_media {
            assert_eq!((reconnecting(&alice), reconnecting(&bob)), (None, None));
            assert!(bob.played > 250, "{}", bob.played);
        } else {
            for side in [&alice, &bob] {
                let at = reconnecting(side).expect("reconnecting");
                assert!(at <= 3 * SEC + 5 * SEC, "{at:?}");
            }
        }
    }
}
