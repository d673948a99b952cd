//! The video transport in virtual time: a sender and a receiver joined by a lossy, delaying
//! link, and the bitrate controller on a link whose capacity steps down and back up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;

/// Small deterministic generator (xorshift64*).
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Outcome {
    sent: Vec<(u32, Vec<u8>, bool)>,
    shown: Vec<AssembledFrame>,
    rx: VideoReceiverStats,
    tx: VideoSenderStats,
    /// Longest time between two frames shown, after the first.
    longest_freeze: Duration,
}

/// Runs `secs` of 30 fps video over a link with `one_way` delay, losing datagrams (both
/// ways) with probability `loss`, and everything between `blackout`.
fn run(loss: f64, one_way: Duration, secs: u64, blackout: Option<(Duration, Duration)>) -> Outcome {
    let t0 = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (loss * 1000.0) as u64);
    let mut tx = VideoSender::new(VideoSenderConfig::default(), t0);
    let mut rx = VideoReceiver::new(VideoReceiverConfig::default(), t0);
    rx.set_rtt(one_way * 2);
    let mut forward: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut back: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut sent = Vec::new();
    let mut shown: Vec<AssembledFrame> = Vec::new();
    let mut shown_at: Vec<Instant> = Vec::new();
    let mut buf = Vec::new();
    let step = Duration::from_millis(1);
    let mut now = t0;
    let mut next_frame = t0;
    let mut force_key = true;
    let dropped = |now: Instant, rng: &mut Rng| {
        let dark = blackout.is_some_and(|(a, b)| now >= t0 + a && now < t0 + b);
        dark || rng.chance(loss)
    };
    while now < t0 + Duration::from_secs(secs) {
        if now >= next_frame {
            next_frame += Duration::from_micros(33_333);
            force_key |= tx.take_keyframe_request();
            let n = sent.len() as u32;
            // Keyframes are large, other frames vary: several fragments each.
            let len = if force_key {
                20_000
            } else {
                2_000 + (rng.next() % 6000) as usize
            };
            let data: Vec<u8> = (0..len)
                .map(|i| (i as u32 ^ n.wrapping_mul(7919)) as u8)
                .collect();
            tx.push_frame(now, now, data.clone(), force_key).unwrap();
            sent.push((n, data, force_key));
            force_key = false;
        }
        while tx.poll_transmit(now, &mut buf) {
            if !dropped(now, &mut rng) {
                forward.push_back((now + one_way, buf.clone()));
            }
        }
        while forward.front().is_some_and(|(t, _)| *t <= now) {
            let (_, d) = forward.pop_front().unwrap();
            rx.handle_datagram(now, &d).unwrap();
        }
        rx.handle_timeout(now);
        while let Some(f) = rx.poll_frame() {
            shown.push(f);
            shown_at.push(now);
        }
        while rx.poll_feedback(now, &mut buf) {
            if !dropped(now, &mut rng) {
                back.push_back((now + one_way, buf.clone()));
            }
        }
        while back.front().is_some_and(|(t, _)| *t <= now) {
            let (_, d) = back.pop_front().unwrap();
            tx.handle_feedback(now, &Feedback::parse(&d).unwrap());
        }
        now += step;
    }
    let longest_freeze = shown_at
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    Outcome {
        sent,
        shown,
        rx: rx.stats(),
        tx: tx.stats(),
        longest_freeze,
    }
}

/// Every frame shown is byte-exact, in order, and decodable: a keyframe, or the frame right
/// after one that was shown.
fn assert_clean(o: &Outcome) {
    let mut prev: Option<u64> = None;
    for f in &o.shown {
        let (n, data, key) = &o.sent[f.frame as usize];
        assert_eq!(f.frame, *n as u64);
        assert_eq!(&f.data, data, "frame {n} corrupted");
        assert_eq!(f.keyframe, *key);
        assert!(
            f.keyframe || prev == Some(f.frame - 1),
            "frame {n} shown after {prev:?} without a keyframe"
        );
        prev = Some(f.frame);
    }
}

#[test]
fn clean_link_delivers_every_frame_exactly() {
    let o = run(0.0, Duration::from_millis(20), 5, None);
    assert_clean(&o);
    // All but possibly the last, still in flight.
    assert!(o.shown.len() + 1 >= o.sent.len(), "{:?}", o.rx);
    assert_eq!((o.rx.nacks, o.tx.retransmitted, o.rx.given_up), (0, 0, 0));
}

#[test]
fn five_percent_loss_is_repaired_by_retransmission() {
    let o = run(0.05, Duration::from_millis(20), 20, None);
    assert_clean(&o);
    let share = o.shown.len() as f64 / o.sent.len() as f64;
    eprintln!(
        "5 %: shown {share:.3}, {:?}, {:?}, longest freeze {:?}",
        o.rx, o.tx, o.longest_freeze
    );
    assert!(share > 0.97, "{share}");
    assert!(o.rx.repaired > 50, "{:?}", o.rx);
    assert!(
        o.longest_freeze < Duration::from_millis(400),
        "{:?}",
        o.longest_freeze
    );
}

#[test]
fn twenty_percent_loss_still_shows_most_frames_and_none_corrupted() {
    let o = run(0.20, Duration::from_millis(20), 20, None);
    assert_clean(&o);
    let share = o.shown.len() as f64 / o.sent.len() as f64;
    eprintln!(
        "20 %: shown {share:.3}, {:?}, {:?}, longest freeze {:?}",
        o.rx, o.tx, o.longest_freeze
    );
    assert!(share > 0.80, "{share}");
}

#[test]
fn a_blackout_freezes_then_a_keyframe_recovers_quickly() {
    // Longer than the sender keeps frames: only a keyframe can end the freeze.
    let (a, b) = (Duration::from_secs(3), Duration::from_millis(4500));
    let o = run(0.0, Duration::from_millis(20), 6, Some((a, b)));
    assert_clean(&o);
    assert!(o.rx.keyframe_requests >= 1, "{:?}", o.rx);
    assert!(o.tx.keyframes >= 2, "{:?}", o.tx);
    // The picture resumes within a few round trips of the link coming back.
    assert!(
        o.longest_freeze < (b - a) + Duration::from_millis(400),
        "{:?}",
        o.longest_freeze
    );
    let last = o.shown.last().unwrap().frame as usize;
    assert!(
        last + 3 >= o.sent.len(),
        "stopped at {last} of {}",
        o.sent.len()
    );
}

#[test]
fn garbage_and_lies_never_panic_or_hold_unbounded_frames() {
    let t0 = Instant::now();
    let mut rx = VideoReceiver::new(VideoReceiverConfig::default(), t0);
    let mut rng = Rng(42);
    let mut buf = Vec::new();
    for i in 0..20_000u32 {
        let f = Fragment {
            seq: rng.next() as u32,
            frame: (rng.next() % 5000) as u32,
            keyframe: rng.chance(0.1),
            retransmission: rng.chance(0.5),
            capture_ms: i,
            sent_us: rng.next() as u32,
            index: 0,
            count: 1 + (rng.next() % 100) as u16,
            payload: &[1, 2, 3],
        };
        let f = Fragment {
            index: (rng.next() % f.count as u64) as u16,
            ..f
        };
        f.write(300, &mut buf);
        let now = t0 + Duration::from_millis(i as u64);
        let _ = rx.handle_datagram(now, &buf);
        rx.handle_timeout(now);
        while rx.poll_frame().is_some() {}
        while rx.poll_feedback(now, &mut buf) {}
        assert!(rx.frames_pending() <= 4 * VideoReceiverConfig::default().max_pending_frames + 1);
    }
}

/// A link in virtual time: a drop-tail queue of `limit` in front of a line whose capacity
/// follows `capacity(t)`, a fixed one-way delay, and the receiver's reports every 100 ms.
#[test]
fn bitrate_follows_a_step_from_4_mbps_to_500_kbps_and_back() {
    let t0 = Instant::now();
    let capacity = |t: Duration| {
        if t >= Duration::from_secs(20) && t < Duration::from_secs(40) {
            500_000.0
        } else {
            4_000_000.0
        }
    };
    let audio_bps = 40_000.0;
    let one_way = Duration::from_millis(20);
    let limit = Duration::from_millis(300);
    let mut rc = RateController::new(RateConfig {
        min_bps: 100_000,
        max_bps: 3_500_000,
        start_bps: 800_000,
    });
    let step = Duration::from_millis(5);
    // Queue holds (bits, is_audio); `backlog` in bits.
    let mut backlog = 0.0f64;
    let (mut rcv_bytes, mut rcv_n, mut lost_n, mut audio_lost, mut audio_sent) =
        (0.0, 0u32, 0u32, 0u32, 0u32);
    let (mut delay_acc, mut delay_n) = (0.0, 0u32);
    let mut last_report = t0;
    let mut trace = Vec::new();
    let mut now = t0;
    let mut credit = 0.0f64;
    while now < t0 + Duration::from_secs(70) {
        let t = now - t0;
        let cap = capacity(t);
        let dt = step.as_secs_f64();
        // Send this step's video and audio in 1200-byte packets.
        credit += rc.target_bps() as f64 * dt;
        let mut packets = Vec::new();
        while credit >= 9600.0 {
            credit -= 9600.0;
            packets.push((9600.0, false));
        }
        if (t.as_millis() % 20) < 5 {
            packets.push((audio_bps * 0.02, true));
        }
        for (bits, audio) in packets {
            audio_sent += u32::from(audio);
            if (backlog + bits) / cap > limit.as_secs_f64() {
                lost_n += 1;
                audio_lost += u32::from(audio);
            } else {
                // Waiting time behind what is queued (its own sending time is part of the
                // minimum the receiver subtracts).
                let queue = backlog / cap;
                backlog += bits;
                if !audio {
                    rcv_bytes += bits / 8.0;
                    rcv_n += 1;
                    delay_acc += queue;
                    delay_n += 1;
                }
            }
        }
        backlog = (backlog - cap * dt).max(0.0);
        if now - last_report >= Duration::from_millis(100) {
            let qd = if delay_n > 0 {
                delay_acc / delay_n as f64
            } else {
                0.0
            };
            let fb = Feedback {
                interval_ms: (now - last_report).as_millis() as u16,
                bytes: rcv_bytes as u32,
                received: rcv_n as u16,
                lost: lost_n as u16,
                queue_delay_ms: (qd * 1000.0) as u16,
                ..Feedback::default()
            };
            let path = LocalPath {
                rtt: one_way * 2 + Duration::from_secs_f64(qd),
                cwnd: 10_000_000,
                send_delay: Duration::ZERO,
                audio_bps: audio_bps as u64,
                sending: true,
            };
            // The report reaches the sender a one-way delay later; close enough at 100 ms.
            rc.on_feedback(now, &fb, &path);
            rc.on_tick(now, &path);
            trace.push((t, rc.target_bps(), qd, lost_n));
            (rcv_bytes, rcv_n, lost_n, delay_acc, delay_n) = (0.0, 0, 0, 0.0, 0);
            last_report = now;
        }
        now += step;
    }
    let at = |s: f64| trace.iter().find(|r| r.0.as_secs_f64() >= s).unwrap();
    let window = |a: f64, b: f64| {
        trace
            .iter()
            .filter(move |r| r.0.as_secs_f64() >= a && r.0.as_secs_f64() < b)
    };
    for s in [
        10.0, 19.9, 21.0, 22.0, 25.0, 39.9, 45.0, 50.0, 55.0, 60.0, 69.9,
    ] {
        let r = at(s);
        eprintln!("t {s:>5}: target {:>8} queue {:>5.0} ms", r.1, r.2 * 1000.0);
    }
    // Up to the 4 Mb/s link: near the 3.5 Mb/s cap before the step.
    assert!(at(19.9).1 >= 3_000_000, "{:?}", at(19.9));
    // Down within two seconds of the step, and the queue drains.
    assert!(at(22.0).1 <= 500_000, "{:?}", at(22.0));
    assert!(window(24.0, 40.0).all(|r| r.2 < 0.1), "queue stayed long");
    // Uses the narrow link well: mean target 60–110 % of it.
    let low: Vec<u64> = window(24.0, 40.0).map(|r| r.1).collect();
    let mean = low.iter().sum::<u64>() as f64 / low.len() as f64;
    assert!((300_000.0..=550_000.0).contains(&mean), "mean {mean}");
    // Back up within 20 s of the link clearing.
    assert!(at(60.0).1 >= 2_500_000, "{:?}", at(60.0));
    // Audio kept priority: a handful of its packets lost at the step, none after.
    let audio_share = audio_lost as f64 / audio_sent as f64;
    assert!(audio_share < 0.01, "audio lost {audio_share}");
}

#[test]
fn ladder_steps_down_at_once_and_up_only_after_holding() {
    let t0 = Instant::now();
    let mut l = Ladder::new(1280, 720, 30);
    let p = l.update(t0, 2_000_000).unwrap();
    assert_eq!(
        p.layer,
        Layer {
            divisor: 1,
            fps: 30
        }
    );
    assert_eq!(
        l.update(t0, 1_900_000),
        None,
        "small changes keep the encoder"
    );
    let p = l.update(t0, 400_000).unwrap();
    assert_eq!(
        p.layer,
        Layer {
            divisor: 2,
            fps: 15
        }
    );
    let p = l.update(t0, 200_000).unwrap();
    assert_eq!(
        p.layer,
        Layer {
            divisor: 4,
            fps: 15
        }
    );
    let mut t = t0;
    let mut changed = None;
    while t < t0 + Duration::from_secs(5) {
        t += Duration::from_millis(100);
        if let Some(p) = l.update(t, 2_000_000) {
            changed = Some((t - t0, p));
            break;
        }
    }
    let (after, p) = changed.unwrap();
    assert!(after >= ladder_hold(), "{after:?}");
    assert_eq!(p.layer.divisor, 1);
    // A 1080p source needs more bits for its full size.
    let mut big = Ladder::new(1920, 1080, 30);
    assert_eq!(big.update(t0, 1_500_000).unwrap().layer.divisor, 2);
}

fn ladder_hold() -> Duration {
    rate::UP_HOLD
}

#[test]
fn a_pause_in_sending_is_not_read_as_a_dead_path() {
    let t0 = Instant::now();
    let mut rc = RateController::new(RateConfig::default());
    let path = |sending| LocalPath {
        rtt: Duration::from_millis(40),
        cwnd: 1_000_000,
        sending,
        ..LocalPath::default()
    };
    let fb = Feedback {
        interval_ms: 100,
        bytes: 10_000,
        received: 10,
        ..Feedback::default()
    };
    rc.on_feedback(t0, &fb, &path(true));
    let before = rc.target_bps();
    for i in 1..50 {
        rc.on_tick(t0 + Duration::from_millis(100 * i), &path(false));
    }
    rc.on_tick(t0 + Duration::from_millis(5000), &path(true));
    assert_eq!(rc.target_bps(), before, "paused for 5 s");
    // While sending, five silent seconds do cut it.
    for i in 51..100 {
        rc.on_tick(t0 + Duration::from_millis(100 * i), &path(true));
    }
    assert!(rc.target_bps() < before / 2, "{}", rc.target_bps());
}

#[test]
fn a_peer_cannot_make_the_receiver_hold_unbounded_bytes() {
    let t0 = Instant::now();
    let config = VideoReceiverConfig::default();
    let max = config.max_held_bytes;
    let mut rx = VideoReceiver::new(config, t0);
    let mut buf = Vec::new();
    let payload = vec![7u8; 1100];
    // Frames of 1000 fragments, each sent without its last fragment, 30 ms apart.
    for frame in 0..100u32 {
        for index in 0..999u16 {
            Fragment {
                seq: frame * 1000 + index as u32,
                frame,
                keyframe: false,
                retransmission: false,
                capture_ms: frame,
                sent_us: 0,
                index,
                count: 1000,
                payload: &payload,
            }
            .write(1200, &mut buf);
            let _ = rx.handle_datagram(t0 + Duration::from_millis(frame as u64 * 30), &buf);
            assert!(rx.held_bytes() <= max, "{} held", rx.held_bytes());
        }
    }
    assert!(rx.stats().malformed > 0);
}

#[test]
fn pacing_holds_a_burst_to_the_rate_and_lets_a_usual_frame_go_at_once() {
    let t0 = Instant::now();
    let mut tx = VideoSender::new(VideoSenderConfig::default(), t0);
    tx.set_pace(Some(1_000_000));
    let mut buf = Vec::new();
    // 100 KB at 1 Mb/s: 0.8 s.
    tx.push_frame(t0, t0, vec![1; 100_000], true).unwrap();
    let (mut now, mut sent, mut first_burst) = (t0, 0usize, None);
    while tx.queued() > 0 {
        while tx.poll_transmit(now, &mut buf) {
            sent += buf.len();
        }
        first_burst.get_or_insert(sent);
        now = tx
            .next_send(now)
            .unwrap_or(now)
            .max(now + Duration::from_micros(100));
    }
    let took = now - t0;
    assert!(
        took > Duration::from_millis(700) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // The first burst is about 60 ms of the rate: a usual frame leaves at once.
    let b = first_burst.unwrap();
    assert!((4_000..=9_000).contains(&b), "{b}");
}
