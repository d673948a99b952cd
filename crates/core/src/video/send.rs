//! The sending end of a video stream: cuts encoded frames into fragments padded to size
//! buckets, keeps recent frames to answer retransmission requests, and notes keyframe
//! requests for the encoder. Sending order and timing are the driver's; this only queues.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{bucket, Feedback, Fragment, FRAGMENT_HEADER, MAX_FRAGMENTS, WHOLE_FRAME};

/// Requests for a keyframe within this time after one was sent are not answered by another.
pub const KEYFRAME_GAP: Duration = Duration::from_millis(250);

/// How the sender cuts and keeps frames.
#[derive(Clone, Debug)]
pub struct VideoSenderConfig {
    /// The largest (full) datagram: at most what the path takes.
    pub datagram_size: usize,
    /// How long a sent frame stays available for retransmission.
    pub retain: Duration,
    /// Most copies of one fragment sent on request.
    pub max_retransmits: u8,
}

impl Default for VideoSenderConfig {
    fn default() -> Self {
        Self {
            datagram_size: 1200,
            retain: Duration::from_millis(1000),
            max_retransmits: 3,
        }
    }
}

/// Counters of the sending end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoSenderStats {
    /// Frames queued.
    pub frames: u64,
    /// Keyframes among them.
    pub keyframes: u64,
    /// Datagrams handed out (first copies and retransmissions).
    pub datagrams: u64,
    /// Bytes of those datagrams, padding included.
    pub bytes: u64,
    /// Retransmitted fragments.
    pub retransmitted: u64,
    /// Requests for fragments no longer kept (or sent too often).
    pub nacks_refused: u64,
    /// Keyframe requests received.
    pub keyframe_requests: u64,
}

#[derive(Debug)]
struct SentFrame {
    frame: u32,
    keyframe: bool,
    capture_ms: u32,
    data: Vec<u8>,
    count: u16,
    chunk: usize,
    at: Instant,
    resent: Vec<u8>,
}

impl SentFrame {
    fn payload(&self, index: u16) -> &[u8] {
        let start = index as usize * self.chunk;
        &self.data[start..(start + self.chunk).min(self.data.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Queued {
    frame: u32,
    index: u16,
    retransmission: bool,
}

/// Error for a frame that cannot be sent at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("encoded frame of {0} bytes is larger than a video frame may be")]
pub struct FrameTooLarge(pub usize);

/// The sending end; see the module documentation.
#[derive(Debug)]
pub struct VideoSender {
    config: VideoSenderConfig,
    epoch: Instant,
    seq: u32,
    next_frame: u32,
    history: VecDeque<SentFrame>,
    queue: VecDeque<Queued>,
    resend: VecDeque<Queued>,
    keyframe_requested: bool,
    /// Share of datagrams the receiver reports lost (smoothed).
    loss: f64,
    pace_bps: Option<f64>,
    tokens: f64,
    last_refill: Option<Instant>,
    stats: VideoSenderStats,
}

/// Above this reported loss a retransmission goes twice: on a link that loses one packet in
/// five, a single copy fails too often within the time a frame can wait.
const DOUBLE_RESEND_LOSS: f64 = 0.08;

impl VideoSender {
    /// A sender whose media clock starts at `epoch`.
    pub fn new(config: VideoSenderConfig, epoch: Instant) -> Self {
        Self {
            config,
            epoch,
            seq: 0,
            next_frame: 0,
            history: VecDeque::new(),
            queue: VecDeque::new(),
            resend: VecDeque::new(),
            keyframe_requested: false,
            loss: 0.0,
            pace_bps: None,
            tokens: 0.0,
            last_refill: None,
            stats: VideoSenderStats::default(),
        }
    }

    /// Changes the full datagram size (the path's room changed); applies to later frames.
    pub fn set_datagram_size(&mut self, size: usize) {
        self.config.datagram_size = size.max(super::wire::MIN_DATAGRAM);
    }

    /// Queues an encoded frame captured at `capture`; returns its frame number.
    pub fn push_frame(
        &mut self,
        now: Instant,
        capture: Instant,
        data: Vec<u8>,
        keyframe: bool,
    ) -> Result<u32, FrameTooLarge> {
        let room = self
            .config
            .datagram_size
            .saturating_sub(FRAGMENT_HEADER)
            .max(1);
        let count = data.len().div_ceil(room).max(1);
        if count > MAX_FRAGMENTS as usize || data.is_empty() {
            return Err(FrameTooLarge(data.len()));
        }
        // Equal shares, so the fragments of a frame fall in as few buckets as possible.
        let chunk = data.len().div_ceil(count);
        let frame = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        self.prune(now);
        self.history.push_back(SentFrame {
            frame,
            keyframe,
            capture_ms: capture.saturating_duration_since(self.epoch).as_millis() as u32,
            data,
            count: count as u16,
            chunk,
            at: now,
            resent: vec![0; count],
        });
        for index in 0..count as u16 {
            self.queue.push_back(Queued {
                frame,
                index,
                retransmission: false,
            });
        }
        self.stats.frames += 1;
        self.stats.keyframes += u64::from(keyframe);
        Ok(frame)
    }

    /// Takes in the receiver's feedback: queues the fragments it asks for (ahead of new
    /// ones) and notes a keyframe request.
    pub fn handle_feedback(&mut self, now: Instant, fb: &Feedback) {
        self.prune(now);
        if fb.keyframe {
            self.stats.keyframe_requests += 1;
            // A keyframe that left moments ago answers this request already (the request
            // crossed it, or it is being repaired).
            let recent = self
                .history
                .iter()
                .rev()
                .find(|f| f.keyframe)
                .is_some_and(|f| {
                    now.saturating_duration_since(f.at) < KEYFRAME_GAP
                        || self.queue.iter().any(|q| q.frame == f.frame)
                });
            self.keyframe_requested |= !recent;
        }
        let total = fb.received as f64 + fb.lost as f64;
        if total > 0.0 {
            self.loss = 0.8 * self.loss + 0.2 * (fb.lost as f64 / total);
        }
        let copies = if self.loss > DOUBLE_RESEND_LOSS { 2 } else { 1 };
        for nack in &fb.nacks {
            let Some(sent) = self.history.iter_mut().find(|f| f.frame == nack.frame) else {
                self.stats.nacks_refused += 1;
                continue;
            };
            let indices = if nack.index == WHOLE_FRAME {
                0..sent.count
            } else if nack.index < sent.count {
                nack.index..nack.index + 1
            } else {
                self.stats.nacks_refused += 1;
                continue;
            };
            for index in indices {
                let q = Queued {
                    frame: nack.frame,
                    index,
                    retransmission: true,
                };
                // Still waiting for its first copy, or already queued again: nothing to add.
                let first = Queued {
                    retransmission: false,
                    ..q
                };
                if self.queue.contains(&first) || self.resend.contains(&q) {
                    continue;
                }
                if sent.resent[index as usize] >= self.config.max_retransmits {
                    self.stats.nacks_refused += 1;
                    continue;
                }
                sent.resent[index as usize] += 1;
                for _ in 0..copies {
                    self.resend.push_back(q);
                }
            }
        }
    }

    /// Whether the receiver asked for a keyframe since the last call (clears the request).
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_requested)
    }

    /// Writes the next datagram to send into `out`; `false` when nothing waits.
    /// Retransmissions go first: the frame they complete is the one the receiver waits on.
    /// Pacing: whatever waits leaves at no more than the pace set here. A bottleneck then
    /// fills our queue (which the encoder and the controller see), not the path's, and
    /// retransmissions and keyframes share the budget instead of adding to it.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        self.refill(now);
        if self.pace_bps.is_some() && self.tokens < self.config.datagram_size as f64 {
            return false;
        }
        loop {
            let Some(q) = self.resend.pop_front().or_else(|| self.queue.pop_front()) else {
                return false;
            };
            let Some(sent) = self.history.iter().find(|f| f.frame == q.frame) else {
                continue; // expired while queued
            };
            let payload = sent.payload(q.index);
            let frag = Fragment {
                seq: self.seq,
                frame: sent.frame,
                keyframe: sent.keyframe,
                retransmission: q.retransmission,
                capture_ms: sent.capture_ms,
                sent_us: now.saturating_duration_since(self.epoch).as_micros() as u32,
                index: q.index,
                count: sent.count,
                payload,
            };
            let size = bucket(FRAGMENT_HEADER + payload.len(), self.config.datagram_size);
            frag.write(size, out);
            if self.pace_bps.is_some() {
                self.tokens -= out.len() as f64;
            }
            self.seq = self.seq.wrapping_add(1);
            self.stats.datagrams += 1;
            self.stats.bytes += out.len() as u64;
            self.stats.retransmitted += u64::from(q.retransmission);
            return true;
        }
    }

    /// Sets the pace (bits per second) datagrams may leave at; `None` for no pacing.
    pub fn set_pace(&mut self, bps: Option<u64>) {
        let was = self.pace_bps;
        self.pace_bps = bps.map(|b| b.max(1) as f64);
        if was.is_none() {
            self.tokens = self.burst(); // a full bucket to start with
        }
    }

    fn burst(&self) -> f64 {
        // 60 ms of sending (a usual frame leaves at once), and at least one datagram. Not
        // more: on a slow path four full datagrams at once are 130 ms of a 300 kb/s link,
        // which the call's audio then waits behind.
        self.pace_bps.map_or(0.0, |r| {
            (r / 8.0 * 0.06).max(self.config.datagram_size as f64)
        })
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.pace_bps else { return };
        let dt = self
            .last_refill
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last_refill = Some(now);
        self.tokens = (self.tokens + dt * rate / 8.0).min(self.burst());
    }

    /// When the next datagram may leave (now, if one may and something waits).
    pub fn next_send(&self, now: Instant) -> Option<Instant> {
        if self.queued() == 0 {
            return None;
        }
        let Some(rate) = self.pace_bps else {
            return Some(now);
        };
        let missing = self.config.datagram_size as f64 - self.tokens;
        if missing <= 0.0 {
            return Some(now);
        }
        Some(now + Duration::from_secs_f64(missing * 8.0 / rate))
    }

    /// Datagrams waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len() + self.resend.len()
    }

    /// Time since the last frame was queued (long when nothing is being sent).
    pub fn last_frame_age(&self, now: Instant) -> Duration {
        self.history
            .back()
            .map_or(Duration::MAX, |f| now.saturating_duration_since(f.at))
    }

    /// How long the oldest datagram waiting to be sent has waited.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        let oldest = [self.resend.front(), self.queue.front()]
            .into_iter()
            .flatten()
            .filter_map(|q| self.history.iter().find(|f| f.frame == q.frame))
            .map(|f| f.at)
            .min();
        oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Counters.
    pub fn stats(&self) -> VideoSenderStats {
        self.stats
    }

    fn prune(&mut self, now: Instant) {
        while self
            .history
            .front()
            .is_some_and(|f| now.saturating_duration_since(f.at) > self.config.retain)
        {
            self.history.pop_front();
        }
    }
}
