//! The jitter buffer on virtual time: a sender clock, a network model, a playout clock.

use super::*;

const FRAME: Duration = Duration::from_millis(20);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Two seconds of speech, one of pause, like a conversation.
fn speech(i: usize) -> bool {
    (i / 50) % 3 != 2
}

struct Report {
    /// (pop time since start, what was played)
    outputs: Vec<(Duration, Playout)>,
    /// (seq, pop time, latency from send to playout)
    played: Vec<(usize, Duration, Duration)>,
    /// (pop time, target, buffered)
    levels: Vec<(Duration, Duration, Duration)>,
    /// Counters after each pop.
    history: Vec<(Duration, JitterStats)>,
    stats: JitterStats,
    /// The jitter the buffer measured, at the end.
    jitter: Duration,
}

impl Report {
    fn seqs(&self) -> Vec<usize> {
        self.played.iter().map(|p| p.0).collect()
    }
    fn mean_latency(&self, from: Duration, to: Duration) -> Duration {
        let l: Vec<_> = self
            .played
            .iter()
            .filter(|p| p.1 >= from && p.1 < to)
            .map(|p| p.2)
            .collect();
        l.iter().sum::<Duration>() / l.len().max(1) as u32
    }
    fn max_latency(&self, from: Duration, to: Duration) -> Duration {
        self.played
            .iter()
            .filter(|p| p.1 >= from && p.1 < to)
            .map(|p| p.2)
            .max()
            .unwrap_or_default()
    }
    fn stats_at(&self, t: Duration) -> JitterStats {
        self.history
            .iter()
            .find(|h| h.0 >= t)
            .map(|h| h.1)
            .unwrap_or(self.stats)
    }
    /// Slots concealed for want of a frame (losses and underruns, not planned inserts).
    fn missing_between(&self, from: Duration, to: Duration) -> u64 {
        let (a, b) = (self.stats_at(from), self.stats_at(to));
        b.concealed - a.concealed
    }
}

/// Sends `frames` frames with a sender clock off by `ppm`, through `net` (which returns the
/// one-way delays of each copy of datagram i: none = lost, two = duplicated), each datagram
/// carrying `redundancy` older frames; pops on an exact 20 ms clock until all could arrive.
fn simulate(
    frames: usize,
    ppm: f64,
    redundancy: usize,
    mut net: impl FnMut(usize) -> Vec<Duration>,
) -> Report {
    let t0 = Instant::now();
    let period = FRAME.as_secs_f64() * (1.0 + ppm * 1e-6);
    let send_at = |i: usize| Duration::from_secs_f64(period * i as f64);
    let mut arrivals: Vec<(Duration, usize)> = Vec::new();
    for i in 0..frames {
        for d in net(i) {
            arrivals.push((send_at(i) + d, i));
        }
    }
    arrivals.sort();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut report = Report {
        outputs: Vec::new(),
        played: Vec::new(),
        levels: Vec::new(),
        history: Vec::new(),
        stats: JitterStats::default(),
        jitter: Duration::ZERO,
    };
    let end = send_at(frames) + Duration::from_secs(1);
    let mut next_arrival = 0;
    let mut k = 0u32;
    loop {
        let pop_t = FRAME * k + Duration::from_micros(7300); // arbitrary phase
        if pop_t > end {
            break;
        }
        while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= pop_t {
            let (at, i) = arrivals[next_arrival];
            let payload = (i as u32).to_be_bytes();
            jb.push(t0 + at, i as u32, &payload, speech(i), true);
            for r in 1..=redundancy.min(i) {
                let old = ((i - r) as u32).to_be_bytes();
                jb.push(t0 + at, (i - r) as u32, &old, speech(i - r), false);
            }
            next_arrival += 1;
        }
        let out = jb.pop(t0 + pop_t);
        if let Playout::Frame { seq, payload } = &out {
            assert_eq!(payload, &seq.to_be_bytes(), "payload belongs to its seq");
            let s = *seq as usize;
            report.played.push((s, pop_t, pop_t - send_at(s)));
        }
        report
            .levels
            .push((pop_t, jb.target_delay(), jb.buffered()));
        report.history.push((pop_t, jb.stats()));
        let last = matches!(&out, Playout::Frame { seq, .. } if *seq as usize == frames - 1);
        report.outputs.push((pop_t, out));
        k += 1;
        // The call ends with its last frame; waiting for more is not an underrun.
        if last {
            break;
        }
    }
    report.stats = jb.stats();
    report.jitter = jb.jitter();
    report
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strictly_increasing(seqs: &[usize]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn steady_network_plays_everything_in_order_with_little_delay() {
    let r = simulate(500, 0.0, 0, |_| vec![ms(30)]);
    // Playout starts with a frame of margin (the jitter is not known yet); the first pause
    // gives back what the measured slack shows is not needed: one frame, dropped in silence.
    assert_eq!(r.seqs(), without(0..500, &[100]));
    assert_eq!(
        (r.stats.concealed, r.stats.lost, r.stats.dropped),
        (0, 0, 1)
    );
    assert!(r.max_latency(s(0), s(20)) <= ms(30 + 40));
    // Then each frame waits only for the phase between the two clocks (here 17.3 ms), not a
    // whole extra frame.
    assert!(
        r.max_latency(s(3), s(10)) <= ms(30 + 20),
        "{:?}",
        r.max_latency(s(3), s(10))
    );
}

/// `range` without `gone`.
fn without(range: std::ops::Range<usize>, gone: &[usize]) -> Vec<usize> {
    range.filter(|i| !gone.contains(i)).collect()
}

/// A copy that overtakes its own datagram (reordering) is not a loss: it must not make the
/// buffer keep headroom for copies, which would add delay for nothing. A frame that truly
/// came only as a copy does.
#[test]
fn copies_overtaking_their_datagram_are_not_losses() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Datagram k+1 (carrying a copy of k) arrives 5 ms before datagram k, for odd k.
    for k in 0..200u32 {
        let at = t0 + FRAME * k;
        if k % 2 == 1 {
            jb.push(at, k + 1, &[1], true, true);
            jb.push(at, k, &[1], true, false);
            jb.push(at + ms(5), k, &[1], true, true);
        } else if k % 2 == 0 && k > 0 {
            // its own datagram already came with the previous pair
        } else {
            jb.push(at, k, &[1], true, true);
        }
        let _ = jb.pop(at + ms(60));
    }
    assert_eq!(jb.stats().lost, 0);
    assert_eq!(jb.headroom(t0 + FRAME * 200), 0, "{:?}", jb.stats());
    // Now frame 201's own datagram is lost and only a copy brings it.
    let at = t0 + FRAME * 201;
    jb.push(at, 201, &[1], true, false);
    jb.push(at, 202, &[1], true, true);
    for i in 0..3 {
        let _ = jb.pop(at + ms(60) + FRAME * i);
    }
    assert_eq!(jb.headroom(at + ms(200)), 1);
}

#[test]
fn measured_jitter_is_the_spread_of_arrival_delays() {
    assert!(simulate(500, 0.0, 0, |_| vec![ms(30)]).jitter < ms(1));
    let mut rng = Rng(7);
    let r = simulate(1000, 0.0, 0, |_| {
        vec![ms(30) + Duration::from_secs_f64(0.040 * rng.unit())]
    });
    // The 97th percentile of a uniform 0-40 ms spread is near 39 ms.
    assert!(r.jitter > ms(35) && r.jitter <= ms(40), "{:?}", r.jitter);
}

#[test]
fn reordering_is_absorbed() {
    // Every other datagram takes 35 ms longer, so it arrives after its successor.
    let r = simulate(1000, 0.0, 0, |i| {
        vec![if i % 2 == 1 { ms(65) } else { ms(30) }]
    });
    let seqs = r.seqs();
    assert!(strictly_increasing(&seqs));
    // After the first second the target covers the reordering: nothing is missing.
    assert_eq!(r.missing_between(s(2), s(20)), 0, "{:?}", r.stats);
    assert!(seqs.len() >= 990, "played {}", seqs.len());
}

#[test]
fn duplicates_play_once() {
    let r = simulate(500, 0.0, 0, |_| vec![ms(30), ms(32)]);
    assert_eq!(r.stats.duplicates, 500);
    assert_eq!(r.seqs(), without(0..500, &[100]));
}

#[test]
fn loss_bursts_are_concealed_and_redundancy_repairs_their_tail() {
    let lose = |i: usize| i % 100 >= 50 && i % 100 < 55; // 5 in a row, every 2 s
    let plain = simulate(
        1000,
        0.0,
        0,
        |i| if lose(i) { vec![] } else { vec![ms(30)] },
    );
    assert_eq!(plain.stats.lost, 50);
    assert!(strictly_increasing(&plain.seqs()));
    // Every other frame plays; an outage adds no delay (nothing to drop afterwards).
    assert_eq!(plain.seqs().len(), 950);
    assert_eq!(plain.stats.dropped, 0);
    assert!(
        plain.max_latency(s(5), s(20)) <= ms(30 + 60),
        "{:?}",
        plain.max_latency(s(5), s(20))
    );
    // Two older copies per datagram: after the first burst the buffer keeps a frame of
    // headroom, and the copies in the first datagram after a burst arrive in time for the
    // tail of the burst.
    let red = simulate(
        1000,
        0.0,
        2,
        |i| if lose(i) { vec![] } else { vec![ms(30)] },
    );
    eprintln!(
        "bursts of 5, no copies: {:?}\nbursts of 5, two copies: {:?}",
        plain.stats, red.stats
    );
    assert!(red.stats.lost <= 5 + 9 * 3, "{:?}", red.stats);
    assert!(strictly_increasing(&red.seqs()));
    // Single losses (10 %) are repaired by one older copy once the headroom is there.
    let single = simulate(1000, 0.0, 1, |i| {
        if i % 10 == 3 {
            vec![]
        } else {
            vec![ms(30)]
        }
    });
    assert!(single.stats.lost <= 1, "{:?}", single.stats);
    assert!(single.seqs().len() >= 998, "{:?}", single.stats);
}

#[test]
fn a_delay_spike_raises_the_target_which_falls_when_the_network_calms() {
    // 30 ms, then during second 10 the delay ramps to +150 ms and back.
    let r = simulate(1500, 0.0, 0, |i| {
        let t = i as f64 * 0.02;
        let extra = if (10.0..11.0).contains(&t) {
            150.0 * (1.0 - (t - 10.5).abs() * 2.0)
        } else {
            0.0
        };
        vec![ms(30) + Duration::from_secs_f64(extra / 1000.0)]
    });
    let target_at = |t: Duration| r.levels.iter().find(|l| l.0 >= t).unwrap().1;
    assert!(target_at(s(9)) <= ms(40));
    assert!(
        target_at(s(12)) >= ms(100),
        "target during the spike {:?}",
        target_at(s(12))
    );
    // Five seconds after the spike left the window the delay is back down.
    assert!(
        target_at(s(20)) <= ms(40),
        "target after {:?}",
        target_at(s(20))
    );
    assert!(
        r.mean_latency(s(22), s(29)) <= ms(80),
        "{:?}",
        r.mean_latency(s(22), s(29))
    );
    assert!(strictly_increasing(&r.seqs()));
    // The spike costs a few concealed frames; none are missing before or after it.
    assert_eq!(r.missing_between(s(1), s(10)), 0);
    assert!(r.missing_between(s(10), s(13)) <= 10, "{:?}", r.stats);
    assert_eq!(r.missing_between(s(13), s(30)), 0, "{:?}", r.stats);
    assert_eq!(r.stats.lost, 0, "{:?}", r.stats);
}

fn drift(ppm: f64) -> Report {
    let mut rng = Rng(0x5EED ^ ppm.to_bits());
    // Ten minutes, 0–20 ms of random jitter on top of 40 ms.
    simulate(30_000, ppm, 0, move |_| {
        vec![ms(40) + Duration::from_secs_f64(rng.unit() * 0.020)]
    })
}

#[test]
fn clock_drift_of_200_ppm_either_way_for_ten_minutes() {
    for ppm in [200.0, -200.0] {
        let r = drift(ppm);
        eprintln!("{ppm} ppm: {:?}", r.stats);
        let first = r.mean_latency(s(10), s(70));
        let last = r.mean_latency(s(540), s(600));
        assert!(
            last.abs_diff(first) <= ms(20),
            "{ppm} ppm: latency crept from {first:?} to {last:?}"
        );
        assert!(
            r.max_latency(s(540), s(600)) <= ms(40 + 20 + 60),
            "{ppm} ppm"
        );
        assert_eq!(r.stats.underruns, 0, "{ppm} ppm: {:?}", r.stats);
        assert_eq!(r.stats.lost, 0, "{ppm} ppm: {:?}", r.stats);
        assert!(strictly_increasing(&r.seqs()));
        // 200 ppm over 600 s is 120 ms: six frames to insert (the sender's clock is slow)
        // or drop (fast), all in pauses; plus the start's margin given back once.
        if ppm > 0.0 {
            assert!((5..=9).contains(&r.stats.inserted), "{:?}", r.stats);
            assert!(r.stats.dropped <= 1, "{:?}", r.stats);
        } else {
            assert!((5..=10).contains(&r.stats.dropped), "{:?}", r.stats);
            assert!(r.stats.inserted <= 1, "{:?}", r.stats);
        }
    }
}

#[test]
fn nothing_before_the_first_frame_and_bounded_memory() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let t0 = Instant::now();
    assert_eq!(jb.pop(t0), Playout::Silence);
    let cap = JitterConfig::default().capacity;
    // Before playout: at most `capacity` frames are held, whatever arrives.
    for i in 0..10_000u32 {
        jb.push(t0, i % cap as u32 + (i / 1000) * 7, &[1], true, true);
        assert!(jb.frames.len() <= cap);
    }
    // During playout: a sender far ahead forces one resynchronization and stays bounded.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for i in 0..10u32 {
        jb.push(t0 + FRAME * i, i, &[1], true, true);
    }
    assert!(matches!(jb.pop(t0 + s(1)), Playout::Frame { .. }));
    let before = jb.stats().resyncs;
    jb.push(t0 + s(1), 1_000_000, &[2], true, true);
    assert_eq!(jb.stats().resyncs, before + 1);
    assert!(jb.frames.len() <= cap);
    // A flood of arrivals keeps the delay history bounded.
    for i in 0..100_000u32 {
        jb.push(t0 + s(2), 1_000_000 + (i % 50), &[3], true, true);
    }
    assert!(jb.delays.len() <= 500);
}

#[test]
fn sequence_numbers_wrap() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let t0 = Instant::now();
    let start = u32::MAX - 5;
    let mut played = Vec::new();
    for k in 0..20u32 {
        let seq = start.wrapping_add(k);
        jb.push(t0 + FRAME * k, seq, &seq.to_be_bytes(), true, true);
        if let Playout::Frame { seq, .. } = jb.pop(t0 + FRAME * k + ms(30)) {
            played.push(seq);
        }
    }
    assert!(played.len() >= 17);
    for w in played.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1));
    }
}

#[test]
fn far_apart_frames_before_playout_cannot_inflate_the_buffer() {
    // Found by the fuzzer: two frames 10⁶ apart, held before playout started, made the
    // level (and the delay) enormous once playing.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let t0 = Instant::now();
    jb.push(t0, 0, &[0], true, true);
    jb.push(t0, 1_000_000, &[1], true, true);
    let _ = jb.pop(t0 + s(1));
    assert!(jb.buffered() <= FRAME * JitterConfig::default().capacity as u32);
    assert_eq!(jb.stats().resyncs, 1);
}

#[test]
fn a_long_outage_adds_no_delay_once_the_network_returns() {
    // One second with nothing at all (50 datagrams), then the stream resumes.
    let r = simulate(1000, 0.0, 0, |i| {
        if (300..350).contains(&i) {
            vec![]
        } else {
            vec![ms(30)]
        }
    });
    assert_eq!(r.stats.lost, 50, "{:?}", r.stats);
    assert!(strictly_increasing(&r.seqs()));
    // Right after the outage, latency is what it was before it.
    let before = r.mean_latency(s(3), s(6));
    let after = r.mean_latency(s(7) + ms(100), s(10));
    assert!(
        after.abs_diff(before) <= ms(20),
        "before {before:?}, after {after:?}"
    );
    // A frame or two of adjustment (the start's margin, and the phase the stream resumes
    // at), not the 50 an outage adds when stalled slots are not skipped.
    assert!(r.stats.dropped <= 2, "{:?}", r.stats);
}

/// A peer replaying an old datagram (or a network duplicating a late one) must not move the
/// delay: a late frame counts once, and only if its slot went without it.
#[test]
fn replayed_late_frames_do_not_move_the_delay() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for k in 0..300u32 {
        let at = t0 + FRAME * k;
        jb.push(at, k, &[1], false, true);
        // Frame 5 is replayed hundreds of times, long after it played.
        if k > 100 {
            for _ in 0..5 {
                jb.push(at, 5, &[1], false, true);
            }
        }
        let _ = jb.pop(at + ms(10));
    }
    let s = jb.stats();
    assert_eq!((s.inserted, s.concealed), (0, 0), "{s:?}");
    assert!(jb.target_delay() <= ms(25), "{:?}", jb.target_delay());
}

/// After the sender's numbers jump (a resync), nothing measured before steers the delay, and
/// the far-off frame is not read as 1000 s of jitter.
#[test]
fn a_resync_starts_a_clean_timeline() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for k in 0..200u32 {
        let at = t0 + FRAME * k;
        jb.push(at, k, &[1], false, true);
        let _ = jb.pop(at + ms(10));
    }
    let jump = 50_000u32;
    for k in 200..400u32 {
        let at = t0 + FRAME * k;
        jb.push(at, jump + k, &[1], false, true);
        let _ = jb.pop(at + ms(10));
    }
    assert_eq!(jb.stats().resyncs, 1);
    assert!(jb.target_delay() <= ms(25), "{:?}", jb.target_delay());
    assert!(jb.buffered() <= ms(40), "{:?}", jb.buffered());
}
