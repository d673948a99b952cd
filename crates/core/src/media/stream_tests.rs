//! The audio machine on virtual time: its pace, its catching up after a stall, and two of
//! them across a lossy link.

use super::*;

const MS: Duration = Duration::from_millis(1);

/// What a driver did at one wake.
#[derive(Default)]
struct Log {
    /// Datagrams sent, with when.
    sent: Vec<(Instant, Vec<u8>)>,
    /// What was played.
    played: Vec<Playout>,
    /// `TakeArrived` asked, with how many it allowed.
    drains: Vec<(Instant, usize)>,
    /// Encodes asked (`catching_up`).
    asked: Vec<bool>,
}

/// A driver: a source that gives a frame of `len(n)` bytes for frame `n`, except that while
/// catching up it has one only if `captured`; arrived datagrams are handed in when asked.
struct Driver {
    frames: u32,
    captured: bool,
    muted: bool,
    arrived: VecDeque<Vec<u8>>,
    log: Log,
}

impl Log {
    /// The sequence numbers of what was sent, in order.
    fn seqs(&self) -> Vec<u32> {
        self.sent
            .iter()
            .map(|(_, dg)| MediaPacket::parse(dg).unwrap().seq)
            .collect()
    }
}

impl Driver {
    fn new() -> Self {
        Self {
            frames: 0,
            captured: true,
            muted: false,
            arrived: VecDeque::new(),
            log: Log::default(),
        }
    }

    /// Wakes at `now`: the machine's timeout, its work, its datagrams.
    fn wake(&mut self, s: &mut AudioStream, now: Instant) {
        s.handle_timeout(now);
        while let Some(w) = s.poll_work(now) {
            match w {
                AudioWork::TakeArrived { max } => {
                    self.log.drains.push((now, max));
                    for d in self.arrived.drain(..).take(max) {
                        s.handle_datagram(now, &d);
                    }
                }
                AudioWork::Encode { catching_up, .. } => {
                    self.log.asked.push(catching_up);
                    if catching_up && !self.captured {
                        s.handle_not_captured();
                        continue;
                    }
                    // Speech is long, silence short: the datagram must not tell.
                    let n = self.frames;
                    self.frames += 1;
                    let speech = n % 50 < 30 && !self.muted;
                    let len = if speech { 80 + (n % 7) as usize } else { 3 };
                    let frame: Vec<u8> = (0..len).map(|i| (n as usize + i) as u8).collect();
                    s.handle_encoded(&frame, speech, self.muted);
                }
                AudioWork::Play(p) => self.log.played.push(p),
            }
        }
        let mut d = Vec::new();
        while s.poll_transmit(now, &mut d) {
            self.log.sent.push((now, std::mem::take(&mut d)));
        }
    }

    /// Runs the machine on time until `end`, waking exactly when it asks.
    fn run_until(&mut self, s: &mut AudioStream, end: Instant) {
        loop {
            let t = s.poll_timeout();
            if t > end {
                return;
            }
            self.wake(s, t);
        }
    }
}

fn config() -> AudioStreamConfig {
    AudioStreamConfig::default()
}

/// One datagram per 20 ms tick, each leaving exactly 3 ms after its tick and of one size,
/// while speaking, in silence and muted; every tick plays one frame.
#[test]
fn one_datagram_per_tick_at_a_fixed_offset_and_of_one_size() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    let mut d = Driver::new();
    d.run_until(&mut s, t0 + 2500 * MS);
    d.muted = true;
    d.run_until(&mut s, t0 + 4000 * MS);
    let sent = &d.log.sent;
    assert_eq!(sent.len(), 200, "one per tick over 4 s");
    for (k, (at, dg)) in sent.iter().enumerate() {
        assert_eq!(*at, t0 + 20 * MS * k as u32 + 3 * MS, "datagram {k}");
        assert_eq!(dg.len(), 320, "datagram {k}");
    }
    // Muted datagrams say so; the others do not.
    let muted = |dg: &Vec<u8>| MediaPacket::parse(dg).unwrap().muted;
    assert!(!muted(&sent[10].1) && muted(&sent[190].1));
    assert_eq!(
        d.log.played.len(),
        201,
        "the frame due at 4 s is played too"
    );
    assert!(
        d.log.asked.iter().all(|c| !c),
        "never late, never catching up"
    );
    assert!(d.log.drains.is_empty());
    let st = s.stats();
    assert_eq!((st.frames_due, st.frames_caught_up), (201, 0));
    assert_eq!(st.datagrams_out, 201, "the last one waits for its time");
}

/// Held up for 140 ms, the driver owes 7 frames when it wakes: it first takes in what
/// arrived, then makes all 7 (each played); the datagram that missed its time and the 6 late
/// ones leave together at once, the current one 3 ms after its tick; nothing is lost and the
/// pace resumes.
#[test]
fn a_driver_held_up_does_every_frame_it_owes() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    let mut d = Driver::new();
    d.run_until(&mut s, t0 + 400 * MS);
    let before = d.log.sent.len();
    assert_eq!(before, 20, "frame 20's datagram waits for 403 ms");
    // The tick at 420 ms is missed; the driver runs again at 540 ms, with a datagram from
    // the peer waiting.
    let mut peer = AudioStream::new(config(), t0);
    let mut pd = Driver::new();
    pd.run_until(&mut peer, t0 + 10 * MS);
    d.arrived
        .extend(pd.log.sent.iter().map(|(_, dg)| dg.clone()));
    let late = t0 + 540 * MS;
    d.wake(&mut s, late);
    assert_eq!(
        d.log.drains,
        [(late, 256)],
        "what arrived is taken in first"
    );
    assert_eq!(s.stats().datagrams_in, 1);
    let owed = &d.log.asked[d.log.asked.len() - 7..];
    assert_eq!(owed, [false, true, true, true, true, true, true]);
    let burst: Vec<_> = d.log.sent[before..].iter().map(|(t, _)| *t).collect();
    assert_eq!(burst, [late; 7], "the late ones leave together");
    d.run_until(&mut s, t0 + 600 * MS);
    let after: Vec<_> = d.log.sent[before + 7..].iter().map(|(t, _)| *t).collect();
    assert_eq!(
        after,
        [t0 + 543 * MS, t0 + 563 * MS, t0 + 583 * MS],
        "then one 3 ms after each tick again"
    );
    // Sequence numbers run on without a gap: every frame was sent.
    let seqs = d.log.seqs();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
    let st = s.stats();
    assert_eq!(
        (st.frames_due, st.frames_caught_up, st.frames_dropped),
        (31, 6, 0)
    );
    assert_eq!(
        d.log.played.len(),
        31,
        "every frame due (0 to 600 ms) was played"
    );
}

/// A datagram still waiting for its send time when the next frame falls due (the driver
/// woke only at the next tick) leaves first, before the next one.
#[test]
fn a_datagram_past_its_time_leaves_before_the_next() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    let mut d = Driver::new();
    d.wake(&mut s, t0);
    assert!(d.log.sent.is_empty(), "it waits for 3 ms");
    d.wake(&mut s, t0 + 20 * MS);
    let seqs = d.log.seqs();
    assert_eq!(seqs, [0], "the late one, at once; the new one waits");
    assert_eq!(s.poll_timeout(), t0 + 23 * MS);
}

/// A microphone that stalled with the driver never captured the frames owed: they are not
/// sent but counted, while every owed frame is still played.
#[test]
fn frames_a_stalled_source_never_captured_are_counted_not_sent() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    let mut d = Driver::new();
    d.run_until(&mut s, t0 + 100 * MS);
    let (sent0, played0) = (d.log.sent.len(), d.log.played.len());
    d.captured = false;
    d.wake(&mut s, t0 + 200 * MS);
    d.run_until(&mut s, t0 + 230 * MS);
    let st = s.stats();
    assert_eq!(st.frames_unsent, 4, "frames 6..=9 were owed and not there");
    assert_eq!(d.log.played.len() - played0, 6, "frames 6..=11 played");
    // Sent: the pending one of frame 5, frame 10 (the current one, always read) and 11.
    assert_eq!(d.log.sent.len() - sent0, 3);
    assert_eq!(st.frames_due, st.datagrams_out + st.frames_unsent);
}

/// A gap longer than 400 ms (a suspended machine) is not replayed: the clock moves on and
/// counts what it gave up.
#[test]
fn a_long_gap_is_given_up_and_counted() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    let mut d = Driver::new();
    d.wake(&mut s, t0);
    d.wake(&mut s, t0 + 5000 * MS);
    let st = s.stats();
    assert_eq!(st.frames_dropped, 250 - 20);
    assert_eq!(d.log.played.len(), 1 + 20);
}

/// Two machines across a link that loses every fourth datagram and delays each by 30 to 70
/// ms: once the jitter buffer has learned the link (2 s), the redundant copies and the
/// buffer bring every frame to the player, in order; garbage in between is counted and
/// changes nothing.
#[test]
fn two_streams_across_a_lossy_link_play_every_frame_in_order() {
    let t0 = Instant::now();
    let mut a = AudioStream::new(config(), t0);
    let mut b = AudioStream::new(config(), t0 + 7 * MS);
    let (mut da, mut db) = (Driver::new(), Driver::new());
    // In flight: (arrival, datagram), sorted at delivery.
    let mut flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let end = t0 + 10_000 * MS;
    let mut sent_a = 0;
    loop {
        let t = a.poll_timeout().min(b.poll_timeout());
        let t = flight
            .iter()
            .map(|(at, _)| *at)
            .min()
            .map_or(t, |f| f.min(t));
        if t > end {
            break;
        }
        flight.sort_by_key(|(at, _)| *at);
        while flight.first().is_some_and(|(at, _)| *at <= t) {
            let (_, dg) = flight.remove(0);
            b.handle_datagram(t, &dg);
            b.handle_datagram(t, b"\x11garbage");
        }
        if a.poll_timeout() <= t {
            da.wake(&mut a, t);
        }
        if b.poll_timeout() <= t {
            db.wake(&mut b, t);
        }
        for (_, dg) in da.log.sent.drain(..) {
            sent_a += 1;
            if sent_a % 4 != 0 {
                let delay = 30 + next() % 41;
                flight.push((t + MS * delay as u32, dg));
            }
        }
    }
    assert!(sent_a >= 499);
    let frames: Vec<u32> = db
        .log
        .played
        .iter()
        .skip(100)
        .map(|p| match p {
            Playout::Frame { seq, .. } => *seq,
            other => panic!("a frame was lost: {other:?}"),
        })
        .collect();
    assert!(frames.len() > 390, "{}", frames.len());
    assert!(frames.windows(2).all(|w| w[1] == w[0] + 1), "{frames:?}");
    let st = b.stats();
    assert_eq!(st.malformed, st.datagrams_in / 2);
}

/// Answers nobody asked for change nothing, and no work is handed out while an `Encode`
/// waits for its answer.
#[test]
fn unasked_answers_are_ignored_and_an_encode_is_answered_first() {
    let t0 = Instant::now();
    let mut s = AudioStream::new(config(), t0);
    s.handle_encoded(b"unasked", true, false);
    s.handle_not_captured();
    assert_eq!(s.stats().datagrams_out, 0);
    s.handle_timeout(t0 + 40 * MS);
    assert_eq!(s.poll_work(t0), Some(AudioWork::TakeArrived { max: 256 }));
    assert_eq!(
        s.poll_work(t0),
        Some(AudioWork::Encode {
            catching_up: false,
            bitrate: 40_000
        })
    );
    assert_eq!(s.poll_work(t0), None, "the encode is not answered yet");
    s.handle_encoded(b"x", false, false);
    assert_eq!(s.poll_work(t0), Some(AudioWork::Play(Playout::Silence)));
    assert_eq!(
        s.poll_work(t0),
        Some(AudioWork::Encode {
            catching_up: true,
            bitrate: 40_000
        })
    );
}

/// Two streams, each reporting what it rebuilt of the other's audio. On a clean path the
/// sender moves to the rich mode (a better frame, one copy) once the far end has reported
/// nothing to rebuild for `CALM`; when one datagram in ten is lost it goes back to the robust
/// mode (more copies) within a few seconds, and a burst of two lost in the rich mode sends it
/// back at once. Nothing is ever lost to the player: a single copy covers single losses.
#[test]
fn the_sender_spends_its_datagram_on_quality_while_the_far_end_misses_nothing() {
    let t0 = Instant::now();
    let cfg = AudioStreamConfig {
        rich: Some(RichMode {
            bitrate: 56_000,
            redundancy: 1,
        }),
        ..config()
    };
    let mut a = AudioStream::new(cfg.clone(), t0);
    let mut b = AudioStream::new(cfg, t0 + 7 * MS);
    let (mut da, mut db) = (Driver::new(), Driver::new());
    // In flight: (arrival, to b?, datagram).
    let mut flight: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
    let s = |secs: u64| t0 + Duration::from_secs(secs);
    let end = s(50);
    // A's datagrams to B: one in ten lost from 15 s to 25 s; two in a row at 42 s.
    let lost = |n: u64, at: Instant| {
        (at >= s(15) && at < s(25) && n.is_multiple_of(10))
            || (at >= s(42) && (2100..2102).contains(&n))
    };
    let (mut sent_a, mut switches) = (0u64, Vec::new());
    let mut copies_seen = std::collections::BTreeMap::new();
    let mut last = a.stats().bitrate;
    loop {
        let t = a.poll_timeout().min(b.poll_timeout());
        let t = flight.iter().map(|f| f.0).min().map_or(t, |f| f.min(t));
        if t > end {
            break;
        }
        flight.sort_by_key(|f| f.0);
        while flight.first().is_some_and(|f| f.0 <= t) {
            let (_, to_b, dg) = flight.remove(0);
            if to_b {
                b.handle_datagram(t, &dg);
            } else {
                a.handle_datagram(t, &dg);
            }
        }
        if a.poll_timeout() <= t {
            da.wake(&mut a, t);
        }
        if b.poll_timeout() <= t {
            db.wake(&mut b, t);
        }
        for (_, dg) in da.log.sent.drain(..) {
            let p = MediaPacket::parse(&dg).unwrap();
            // The report is always there; what A sends follows its mode.
            assert!(p.report.is_some());
            *copies_seen
                .entry((a.stats().bitrate, p.frames.len() - 1))
                .or_insert(0u32) += 1;
            if !lost(sent_a, t) {
                flight.push((t + 30 * MS, true, dg));
            }
            sent_a += 1;
        }
        for (_, dg) in db.log.sent.drain(..) {
            flight.push((t + 30 * MS, false, dg));
        }
        let now = a.stats().bitrate;
        if now != last {
            switches.push((t.duration_since(t0).as_secs_f64(), now));
            last = now;
        }
    }
    eprintln!("switches (s, b/s): {switches:?}; (bitrate, copies): {copies_seen:?}");
    // Rich once B has reported nothing for CALM (its first report comes at once).
    assert_eq!(switches[0].1, 56_000);
    assert!((5.0..6.0).contains(&switches[0].0), "{switches:?}");
    // Robust again within 3 s of one in ten lost.
    assert_eq!(switches[1].1, 40_000);
    assert!((15.0..18.0).contains(&switches[1].0), "{switches:?}");
    // Rich again once B's window is clear of the last miss (about 25 s + 0.1) and CALM more.
    assert_eq!(switches[2].1, 56_000);
    assert!((34.0..37.0).contains(&switches[2].0), "{switches:?}");
    // Two in a row lost in the rich mode: robust at once.
    assert_eq!(switches[3].1, 40_000);
    assert!((42.0..42.5).contains(&switches[3].0), "{switches:?}");
    assert_eq!(switches.len(), 4, "{switches:?}");
    assert_eq!(a.stats().mode_switches, 4);
    // Each mode's datagrams carried its copies (a datagram made at the switch excepted).
    let (rich, robust) = (copies_seen[&(56_000, 1)], copies_seen[&(40_000, 2)]);
    assert!(rich > 900 && robust > 1000, "{copies_seen:?}");
    // B played every frame but the one of the burst that the single copy could not cover
    // (its other concealed slots were inserted on purpose, to make room for copies).
    let j = b.jitter_stats();
    assert_eq!(j.lost, 1, "{j:?}");
    // A lost nothing of B's: B went rich after 5 s and stayed.
    assert_eq!(b.stats().mode_switches, 1);
}
