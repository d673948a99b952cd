//! The sender's target bitrate, and the picture size and frame rate that suit it.
//!
//! The controller reads the receiver's reports (queueing delay, loss, receive rate) and the
//! sender's own view of the path (QUIC's congestion window and round trip, how long video
//! waits to leave, what audio needs) and moves the target:
//! - delay growing (over 30 ms of queue), or loss with a queue: down to 85 % of what arrived;
//! - loss alone (a radio link loses packets without a queue) lowers the target only past
//!   10 % with some queue, or past 30 %;
//! - a clear path: up 12 % a second while what arrives keeps up with the target;
//! - never above what the congestion window carries, less what audio needs: audio first.

use std::time::{Duration, Instant};

use super::wire::Feedback;

/// Bounds of the target.
#[derive(Clone, Debug)]
pub struct RateConfig {
    /// Never below this (bits per second).
    pub min_bps: u64,
    /// Never above this.
    pub max_bps: u64,
    /// Where a call starts.
    pub start_bps: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            min_bps: 60_000,
            max_bps: 2_500_000,
            start_bps: 800_000,
        }
    }
}

/// The sender's own view of the path.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalPath {
    /// QUIC's smoothed round-trip time.
    pub rtt: Duration,
    /// QUIC's congestion window, bytes.
    pub cwnd: u64,
    /// How long the oldest video datagram has waited to leave (our queue and QUIC's).
    pub send_delay: Duration,
    /// Bits per second audio sends on the same path.
    pub audio_bps: u64,
    /// Video is being sent (not paused, not between sources): silence from the receiver
    /// means something only then.
    pub sending: bool,
}

/// The bitrate controller; see the module documentation.
#[derive(Debug)]
pub struct RateController {
    config: RateConfig,
    target: f64,
    receive_rate: Option<f64>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    last_feedback: Option<Instant>,
    /// The reported queueing delay, smoothed over a few reports (ms); `None` before one.
    queue_ms: Option<f64>,
    /// Lost and sent datagrams over the last few reports (older ones weigh less): one report
    /// holds too few packets to tell 5 % from 30 %.
    lost: f64,
    total: f64,
    /// When a full queue was last seen.
    last_congestion: Option<Instant>,
}

/// How long after a sign of a full queue the path counts as congested.
const CONGESTED_FOR: Duration = Duration::from_secs(60);

impl RateController {
    /// A controller starting at the configured rate.
    pub fn new(config: RateConfig) -> Self {
        Self {
            target: config.start_bps.clamp(config.min_bps, config.max_bps) as f64,
            config,
            receive_rate: None,
            last_update: None,
            last_decrease: None,
            last_feedback: None,
            queue_ms: None,
            lost: 0.0,
            total: 0.0,
            last_congestion: None,
        }
    }

    /// The target, bits per second.
    pub fn target_bps(&self) -> u64 {
        self.target as u64
    }

    /// A bottleneck is near the target, and bursts above it would be dropped there (audio's
    /// packets too): the path showed a full queue (delay, or loss with delay) in the last
    /// minute. Ten seconds was not enough: paced video shows no more full queues, so on a
    /// path still narrow the time ran out, and the next keyframe burst held the call's audio
    /// up to 180 ms (found on virtual time, `link_tests.rs`).
    pub fn congested(&self, now: Instant) -> bool {
        self.last_congestion
            .is_some_and(|t| now.saturating_duration_since(t) < CONGESTED_FOR)
    }

    fn decrease(&mut self, now: Instant, to: f64, path: &LocalPath) {
        // One cut per round trip (and a little): the next report must show its effect.
        let spacing = path.rtt + Duration::from_millis(150);
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < spacing)
        {
            return;
        }
        // Above the target (what arrived includes padding and repairs) it is no cut, and
        // must not hold back the growth a clear report allows next.
        if to < self.target {
            self.target = to;
            self.last_decrease = Some(now);
        }
    }

    /// Takes in a receiver report.
    pub fn on_feedback(&mut self, now: Instant, fb: &Feedback, path: &LocalPath) {
        self.last_feedback = Some(now);
        if fb.interval_ms >= 20 {
            let rate = fb.bytes as f64 * 8000.0 / fb.interval_ms as f64;
            self.receive_rate = Some(match self.receive_rate {
                Some(r) => 0.7 * r + 0.3 * rate,
                None => rate,
            });
        }
        self.lost = 0.8 * self.lost + fb.lost as f64;
        self.total = 0.8 * self.total + fb.received as f64 + fb.lost as f64;
        let loss = if self.total >= 20.0 {
            self.lost / self.total
        } else {
            0.0
        };
        // One report holds a packet or two at low rates, and on a slow link a full datagram
        // alone shows its own crossing time (33 ms at 300 kb/s) above the floor: the smoothed
        // delay carries the trend, the raw one only a clear overflow.
        let raw = f64::from(fb.queue_delay_ms);
        let last = self.queue_ms.unwrap_or(raw);
        let queue = 0.7 * last + 0.3 * raw;
        self.queue_ms = Some(queue);
        let growing = queue > last + 3.0;
        let arrived = self.receive_rate.unwrap_or(self.target);
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_update = Some(now);
        // Loss together with a queue is a full queue dropping packets (audio's among them);
        // loss without one is the medium's, and only very heavy loss of that kind lowers it.
        if raw >= 80.0
            || queue >= 60.0
            || (queue >= 30.0 && growing)
            || (loss > 0.02 && queue >= 20.0)
        {
            // What arrived includes padding and repairs, and a real encoder overshoots its
            // bitrate (by 30 % on a 300 kb/s path): a cut to 85 % of it was often no cut at
            // all, and the queue stayed full.
            self.last_congestion = Some(now);
            self.decrease(now, 0.85 * arrived.min(self.target), path);
        } else if loss > 0.3 || (loss > 0.1 && queue >= 10.0) {
            self.decrease(now, self.target * (1.0 - 0.5 * loss), path);
        } else if queue < 15.0 && loss <= 0.1 {
            let settled = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_millis(500));
            // Grow only while what arrives shows the target is being used.
            if settled && arrived >= 0.5 * self.target {
                self.target *= 1.12f64.powf(dt.as_secs_f64().min(0.5));
            }
        }
        self.clamp(path);
    }

    /// Takes in the sender's own signals; call a few times a second.
    pub fn on_tick(&mut self, now: Instant, path: &LocalPath) {
        if path.send_delay > Duration::from_millis(100) {
            self.decrease(now, self.target * 0.8, path);
        }
        if !path.sending {
            self.last_feedback = Some(now);
        }
        // Reports stopped coming while we send: the path is in trouble, or gone.
        let silent = self.last_feedback.is_some_and(|t| {
            now.saturating_duration_since(t) > (path.rtt * 4).max(Duration::from_secs(1))
        });
        if silent {
            self.decrease(now, self.target * 0.7, path);
        }
        self.clamp(path);
    }

    fn clamp(&mut self, path: &LocalPath) {
        if path.cwnd > 0 && !path.rtt.is_zero() {
            let window_bps = path.cwnd as f64 * 8.0 / path.rtt.as_secs_f64().max(0.001);
            let room = 0.9 * window_bps - path.audio_bps as f64;
            self.target = self.target.min(room);
        }
        self.target = self
            .target
            .clamp(self.config.min_bps as f64, self.config.max_bps as f64);
    }
}

/// A picture size and frame rate, relative to the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Width and height are divided by this (1, 2 or 4).
    pub divisor: u8,
    /// Frames per second.
    pub fps: u8,
}

/// What the encoder should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderPlan {
    /// Size and rate.
    pub layer: Layer,
    /// Bitrate to configure, bits per second.
    pub bitrate: u64,
}

/// Rungs for a 1280×720 source: (least bitrate, layer). Larger or smaller sources scale the
/// bitrates by their pixel count.
const RUNGS: [(u64, Layer); 4] = [
    (
        1_100_000,
        Layer {
            divisor: 1,
            fps: 30,
        },
    ),
    (
        550_000,
        Layer {
            divisor: 2,
            fps: 30,
        },
    ),
    (
        280_000,
        Layer {
            divisor: 2,
            fps: 15,
        },
    ),
    (
        0,
        Layer {
            divisor: 4,
            fps: 15,
        },
    ),
];

/// Picks the layer and encoder bitrate for a target, with hysteresis: down at once, up only
/// after the target held for a while, since every change costs a keyframe.
#[derive(Debug)]
pub struct Ladder {
    scale: f64,
    max_fps: u8,
    plan: Option<EncoderPlan>,
    up_since: Option<Instant>,
}

/// How long a higher target must hold before the encoder follows it up.
pub const UP_HOLD: Duration = Duration::from_secs(2);

impl Ladder {
    /// A ladder for a source of `width`×`height` at up to `max_fps`.
    pub fn new(width: u32, height: u32, max_fps: u8) -> Self {
        let pixels = width as f64 * height as f64;
        Self {
            scale: (pixels / (1280.0 * 720.0)).clamp(0.25, 2.5),
            max_fps: max_fps.max(1),
            plan: None,
            up_since: None,
        }
    }

    fn rung_for(&self, bps: u64) -> Layer {
        let l = RUNGS
            .iter()
            .find(|(least, _)| bps as f64 >= *least as f64 * self.scale)
            .map_or(RUNGS[3].1, |r| r.1);
        Layer {
            fps: l.fps.min(self.max_fps),
            ..l
        }
    }

    /// The plan in force.
    pub fn plan(&self) -> Option<EncoderPlan> {
        self.plan
    }

    /// Returns a new plan when the encoder should change.
    pub fn update(&mut self, now: Instant, target_bps: u64) -> Option<EncoderPlan> {
        let want = EncoderPlan {
            layer: self.rung_for(target_bps),
            bitrate: target_bps,
        };
        let Some(cur) = self.plan else {
            self.plan = Some(want);
            return self.plan;
        };
        let lower = (want.layer.divisor > cur.layer.divisor || want.layer.fps < cur.layer.fps)
            || target_bps < cur.bitrate * 4 / 5;
        let higher = want.layer != cur.layer || target_bps > cur.bitrate * 5 / 4;
        if lower {
            self.up_since = None;
            self.plan = Some(want);
            return self.plan;
        }
        if higher {
            let since = *self.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= UP_HOLD {
                self.up_since = None;
                self.plan = Some(want);
                return self.plan;
            }
        } else {
            self.up_since = None;
        }
        None
    }
}
