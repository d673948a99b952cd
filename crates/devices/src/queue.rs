//! The two queues between a sound card and the call's 20 ms clock (sans-IO).
//!
//! A sound card runs on its own crystal: against our clock it drifts by up to a few hundred
//! parts per million, and it hands over or asks for audio in its own block sizes. Each queue
//! keeps a small cushion so those blocks never starve the other side, and throws away the
//! excess when drift or a stalled task piles audio up, so the delay it adds stays bounded.

use std::collections::VecDeque;

use extrasafe_media::FRAME_SAMPLES;

/// Samples per millisecond at the pipeline rate.
const PER_MS: usize = extrasafe_media::RATE as usize / 1000;

/// Counters of one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Times the queue ran dry (a frame of silence was used instead).
    pub underruns: u64,
    /// Samples thrown away to bring the delay back down.
    pub dropped: u64,
}

/// Reads or pushes over which the lowest level is watched before trimming.
const TRIM_WINDOW: u32 = 50;
/// Watches a queue's lowest level over a window: a level that never drops below a threshold
/// is delay nobody needs.
#[derive(Debug, Default)]
struct LowWater {
    low: usize,
    count: u32,
}

impl LowWater {
    /// Records a level; at the end of each window in which it never fell below `threshold`,
    /// returns how much can go so the lowest level would have been `keep`.
    fn spare(&mut self, level: usize, threshold: usize, keep: usize) -> usize {
        self.low = if self.count == 0 {
            level
        } else {
            self.low.min(level)
        };
        self.count += 1;
        if self.count < TRIM_WINDOW {
            return 0;
        }
        self.count = 0;
        if self.low >= threshold {
            self.low.saturating_sub(keep)
        } else {
            0
        }
    }
}

/// Microphone side: the sound server pushes captured blocks, the call's clock takes 20 ms
/// frames.
#[derive(Debug)]
pub struct CaptureQueue {
    buf: VecDeque<i16>,
    primed: bool,
    water: LowWater,
    stats: QueueStats,
}

impl CaptureQueue {
    /// Level reached before frames are taken: one frame plus half a frame, so a block that
    /// arrives a little late does not leave the next tick short.
    pub const PRIME: usize = FRAME_SAMPLES + FRAME_SAMPLES / 2;
    /// Above this level the oldest audio is dropped back to [`Self::PRIME`].
    pub const HIGH: usize = 80 * PER_MS;

    /// An empty queue.
    pub fn new() -> Self {
        Self {
            buf: VecDeque::with_capacity(Self::HIGH + FRAME_SAMPLES),
            primed: false,
            water: LowWater::default(),
            stats: QueueStats::default(),
        }
    }

    /// Captured samples arrive.
    pub fn push(&mut self, samples: &[i16]) {
        self.buf.extend(samples);
        // Bounded even if nobody reads (the call's task stalled for a long time).
        let hard = Self::HIGH + FRAME_SAMPLES;
        if self.buf.len() > hard {
            let excess = self.buf.len() - Self::PRIME;
            self.buf.drain(..excess);
            self.stats.dropped += excess as u64;
        }
    }

    /// Fills `out` (one frame) with the oldest captured audio, or silence while the queue
    /// fills up. Returns whether real audio was used.
    pub fn read_frame(&mut self, out: &mut [i16]) -> bool {
        if !self.primed {
            if self.buf.len() < Self::PRIME {
                out.fill(0);
                return false;
            }
            self.primed = true;
        }
        if self.buf.len() < out.len() {
            // Dry: silence now, and fill the cushion again before taking more.
            self.primed = false;
            self.stats.underruns += 1;
            out.fill(0);
            return false;
        }
        if self.buf.len() > Self::HIGH {
            let excess = self.buf.len() - Self::PRIME;
            self.buf.drain(..excess);
            self.stats.dropped += excess as u64;
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(self.buf.drain(..n)) {
            *o = s;
        }
        // Audio piled up (a sound card a little faster than our clock, or a burst at the
        // start): once a whole second never dipped below the cushion, cut the excess in one
        // go (one short skip rather than many).
        let excess = self
            .water
            .spare(self.buf.len(), Self::PRIME, FRAME_SAMPLES / 2)
            .min(self.buf.len());
        if excess > 0 {
            self.buf.drain(..excess);
            self.stats.dropped += excess as u64;
        }
        true
    }

    /// Samples waiting.
    pub fn level(&self) -> usize {
        self.buf.len()
    }

    /// Whether [`Self::read_frame`] would give captured audio now (not silence while the
    /// queue fills, nor an underrun).
    pub fn ready(&self) -> bool {
        let need = if self.primed {
            FRAME_SAMPLES
        } else {
            Self::PRIME
        };
        self.buf.len() >= need
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }
}

impl Default for CaptureQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Speaker side: the call's clock pushes 20 ms frames, the sound server pulls bytes when its
/// own buffer wants more.
#[derive(Debug)]
pub struct PlayoutQueue {
    buf: VecDeque<i16>,
    water: LowWater,
    stats: QueueStats,
}

impl PlayoutQueue {
    /// Above this level (the server stopped pulling, or its clock is slower than ours) the
    /// oldest audio is dropped back to one frame.
    pub const HIGH: usize = 60 * PER_MS;

    /// An empty queue.
    pub fn new() -> Self {
        Self {
            buf: VecDeque::with_capacity(Self::HIGH + FRAME_SAMPLES),
            water: LowWater::default(),
            stats: QueueStats::default(),
        }
    }

    /// A frame to play.
    pub fn push(&mut self, pcm: &[i16]) {
        // Audio left behind (a sound card a little slower than our clock, or the server
        // pulling less than we gave at the start): once a whole second never found the queue
        // below a frame, cut the excess in one go.
        let excess = self
            .water
            .spare(self.buf.len(), FRAME_SAMPLES, FRAME_SAMPLES / 2)
            .min(self.buf.len());
        if excess > 0 {
            self.buf.drain(..excess);
            self.stats.dropped += excess as u64;
        }
        self.buf.extend(pcm);
        if self.buf.len() > Self::HIGH {
            let excess = self.buf.len() - FRAME_SAMPLES;
            self.buf.drain(..excess);
            self.stats.dropped += excess as u64;
        }
    }

    /// Writes as many whole samples as are waiting and fit into `out`, as 16-bit little
    /// endian; returns the bytes written (0: nothing waiting).
    pub fn pull_le_bytes(&mut self, out: &mut [u8]) -> usize {
        let n = (out.len() / 2).min(self.buf.len());
        for (chunk, s) in out.chunks_exact_mut(2).zip(self.buf.drain(..n)) {
            chunk.copy_from_slice(&s.to_le_bytes());
        }
        n * 2
    }

    /// Samples waiting.
    pub fn level(&self) -> usize {
        self.buf.len()
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }
}

impl Default for PlayoutQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// 16-bit little-endian bytes to samples (a trailing odd byte is ignored: servers hand over
/// whole frames).
pub fn le_bytes_to_samples(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]])),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ramp, so any skipped or repeated sample shows.
    fn ramp(from: usize, n: usize) -> Vec<i16> {
        (from..from + n).map(|i| (i % 30000) as i16).collect()
    }

    #[test]
    fn capture_is_ready_exactly_when_a_read_gives_audio() {
        let mut q = CaptureQueue::new();
        let mut out = vec![0i16; FRAME_SAMPLES];
        let mut pushed = 0;
        // Blocks of 7 ms against 20 ms frames, with reads in bursts as after a stall.
        for step in 0..400 {
            q.push(&ramp(pushed, 336));
            pushed += 336;
            let reads = if step % 9 == 0 { 3 } else { 1 };
            for _ in 0..reads {
                let ready = q.ready();
                assert_eq!(ready, q.read_frame(&mut out), "step {step}");
            }
        }
        assert!(q.stats().underruns > 0, "the bursts never ran it dry");
    }

    #[test]
    fn capture_waits_for_its_cushion_then_hands_over_audio_in_order() {
        let mut q = CaptureQueue::new();
        let mut out = vec![0i16; FRAME_SAMPLES];
        q.push(&ramp(0, 480));
        assert!(!q.read_frame(&mut out));
        assert!(out.iter().all(|&s| s == 0));
        q.push(&ramp(480, 960));
        assert!(q.read_frame(&mut out));
        assert_eq!(out, ramp(0, FRAME_SAMPLES));
        q.push(&ramp(1440, 480));
        assert!(q.read_frame(&mut out));
        assert_eq!(out, ramp(960, FRAME_SAMPLES));
        assert_eq!(q.stats(), QueueStats::default());
    }

    /// A sound card 300 ppm fast, delivering 10 ms blocks, read every 20 ms for ten minutes:
    /// the delay stays bounded and the audio is continuous except where excess is dropped.
    #[test]
    fn capture_drift_is_absorbed_with_bounded_delay() {
        for ppm in [-300.0f64, 300.0] {
            let mut q = CaptureQueue::new();
            let mut out = vec![0i16; FRAME_SAMPLES];
            let block = 480usize;
            let card_period = 0.010 * (1.0 - ppm / 1e6);
            let (mut card_t, mut next) = (0.0f64, 0usize);
            let mut max_level = 0;
            let ticks = 10 * 60 * 50;
            for tick in 0..ticks {
                let now = tick as f64 * 0.020;
                while card_t <= now {
                    q.push(&ramp(next, block));
                    next += block;
                    card_t += card_period;
                }
                q.read_frame(&mut out);
                max_level = max_level.max(q.level());
            }
            // Trimmed a millisecond at a time long before the hard limit.
            assert!(
                max_level <= CaptureQueue::PRIME + FRAME_SAMPLES,
                "{ppm}: level {max_level}"
            );
            let s = q.stats();
            // 300 ppm of 10 minutes is 180 ms: a handful of corrections, not a stream of them.
            assert!(s.underruns + s.dropped / 960 <= 12, "{ppm}: {s:?}");
            if ppm > 0.0 {
                assert!(s.dropped > 0 && s.underruns == 0, "{ppm}: {s:?}");
            } else {
                assert!(s.underruns > 0 && s.dropped == 0, "{ppm}: {s:?}");
            }
        }
    }

    #[test]
    fn capture_after_a_stall_drops_back_to_a_small_delay() {
        let mut q = CaptureQueue::new();
        let mut out = vec![0i16; FRAME_SAMPLES];
        q.push(&ramp(0, 1440));
        assert!(q.read_frame(&mut out));
        // 300 ms of audio arrives while the task is stalled: the newest is kept.
        for i in 0..30 {
            q.push(&ramp(1440 + i * 480, 480));
            assert!(q.level() <= CaptureQueue::HIGH + FRAME_SAMPLES);
        }
        let newest = 1440 + 30 * 480;
        let level = q.level();
        assert!(q.read_frame(&mut out));
        // Either way the frame is the oldest of what was kept, continuous up to the newest.
        let kept = if level > CaptureQueue::HIGH {
            CaptureQueue::PRIME
        } else {
            level
        };
        assert_eq!(out, ramp(newest - kept, FRAME_SAMPLES));
        assert!(
            q.level() <= CaptureQueue::HIGH - FRAME_SAMPLES,
            "{}",
            q.level()
        );
        assert!(q.stats().dropped > 0);
    }

    #[test]
    fn playout_hands_over_what_is_waiting_and_bounds_the_delay() {
        let mut q = PlayoutQueue::new();
        let mut bytes = vec![0u8; 4000];
        assert_eq!(q.pull_le_bytes(&mut bytes), 0);
        q.push(&ramp(0, FRAME_SAMPLES));
        assert_eq!(q.pull_le_bytes(&mut bytes[..3]), 2);
        let n = q.pull_le_bytes(&mut bytes);
        assert_eq!(n, (FRAME_SAMPLES - 1) * 2);
        let mut got = Vec::new();
        le_bytes_to_samples(&bytes[..n], &mut got);
        assert_eq!(got, ramp(1, FRAME_SAMPLES - 1));
        for i in 0..10 {
            q.push(&ramp(i * FRAME_SAMPLES, FRAME_SAMPLES));
            assert!(q.level() <= PlayoutQueue::HIGH);
        }
        assert!(q.stats().dropped > 0);
    }
}
