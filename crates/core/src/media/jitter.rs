//! The adaptive jitter buffer: holds frames from the network and hands one out each time the
//! playout device asks, with a delay that follows the measured jitter.
//!
//! Driving contract (sans-IO): call [`JitterBuffer::push`] for every frame that arrives (the
//! primary frame of a datagram and its redundant copies), and [`JitterBuffer::pop`] once per
//! frame period from the playout clock (the sound card's, which drifts against the sender's).
//!
//! * **Target delay**: relative transit delay of each primary frame (arrival time minus the
//!   time its sequence number says it was sent) minus the smallest such delay in a sliding
//!   window; the target is a high quantile of that jitter plus one frame. It rises at once
//!   when jitter rises and falls again when the spike leaves the window.
//! * **Holding the delay**: what decides is the *slack* of each frame played, the time it
//!   waited between arriving and being played. Its low quantile over the window (the frames
//!   that came latest) must stay between a small safety margin (plus, while losses are
//!   seen, a frame per frame of the longest recent burst, up to the copies a datagram
//!   carries, so the copies in the datagrams after a burst arrive in time) and one frame
//!   more. Above that, one frame is dropped; below, one concealment frame is inserted. Both
//!   are done on frames the sender marked as non-speech, so the listener hears a pause grow
//!   or shrink by 20 ms rather than a clipped syllable; only a large excess drops speech.
//!   Measuring slack rather than counting frames sees the phase between the sender's clock
//!   and ours, so a frame that arrives just after a playout tick is not held a whole extra
//!   frame. This also absorbs sender/receiver clock drift (±200 ppm is one frame every
//!   100 s).
//! * **Missing frames**: a gap with newer frames behind it is a loss: conceal and move on
//!   (the next frame is offered for in-band FEC). An empty buffer is an underrun: conceal
//!   without moving on, so the late frame still plays when it comes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::packet::Repair;

/// Tuning of a jitter buffer.
#[derive(Clone, Debug)]
pub struct JitterConfig {
    /// Duration of one frame.
    pub frame: Duration,
    /// Lowest target delay.
    pub min_delay: Duration,
    /// Highest target delay.
    pub max_delay: Duration,
    /// How far back the jitter estimate looks; also how long a calm network takes to bring
    /// the delay back down after a spike.
    pub window: Duration,
    /// Fraction of frames that should arrive in time (the quantile of the jitter covered).
    pub quantile: f64,
    /// Frames held at most; a sender further ahead forces a resynchronization.
    pub capacity: usize,
    /// Most frames of headroom kept for redundant copies after losses: the number of older
    /// frames each datagram carries (more headroom could not bring any more copies in time).
    pub max_headroom: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            window: Duration::from_secs(5),
            quantile: 0.97,
            capacity: 64,
            max_headroom: 2,
        }
    }
}

/// What to play now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// Nothing yet (the buffer is filling at the start of the call): play silence.
    Silence,
    /// The next frame.
    Frame {
        /// Its sequence number.
        seq: u32,
        /// The encoded frame.
        payload: Vec<u8>,
    },
    /// No frame for this slot: synthesize one (packet-loss concealment). `fec` is the frame
    /// that follows, when already here, so a codec with in-band FEC can rebuild the missing one.
    Conceal {
        /// The following frame, if buffered.
        fec: Option<Vec<u8>>,
    },
}

/// Counters, for the stats line and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames accepted (each once).
    pub received: u64,
    /// Frames that were already here or already played.
    pub duplicates: u64,
    /// Frames that came after their slot was played or concealed.
    pub late: u64,
    /// Slots concealed for want of a frame (lost or not yet here); planned inserts excluded.
    pub concealed: u64,
    /// Frames never played because they did not come in time.
    pub lost: u64,
    /// Slots that found the buffer empty (a subset of `concealed`).
    pub underruns: u64,
    /// Frames dropped to bring the delay down.
    pub dropped: u64,
    /// Concealment frames inserted to bring the delay up.
    pub inserted: u64,
    /// Times the buffer restarted because the sender jumped too far ahead.
    pub resyncs: u64,
    /// Frames played.
    pub played: u64,
}

#[derive(Debug)]
struct Stored {
    payload: Vec<u8>,
    speech: bool,
    /// When it arrived.
    at: Instant,
    /// It came as a datagram's own frame (not as a copy in a later one).
    primary: bool,
}

/// The slack the latest frames keep beyond the measured spread: timer wake-ups on both
/// sides vary by a little more than the arrival statistics show.
const SAFETY: f64 = 0.002;
/// Slots without their own datagram remembered (see `note_missed`).
const MISSED_KEPT: usize = 64;
/// Slack samples needed before the delay is steered by them.
const MIN_SLACK_SAMPLES: usize = 25;

/// The adaptive jitter buffer. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frames: BTreeMap<u64, Stored>,
    /// Sequence number of the next slot to play, once playing.
    next: Option<u64>,
    /// Highest sequence number seen (extended to 64 bits), and its 32-bit form.
    newest: Option<(u64, u32)>,
    /// Arrival of the first frame, for the start of playout.
    first_arrival: Option<Instant>,
    /// (arrival, extended seq) of the reference frame for relative delays.
    reference: Option<(Instant, u64)>,
    /// (arrival, relative delay in seconds) within the window.
    delays: VecDeque<(Instant, f64)>,
    target: Duration,
    /// (when played, slack in seconds) of primary frames within the window; late frames
    /// count with a negative slack.
    slacks: VecDeque<(Instant, f64)>,
    /// The last slots played without their own datagram: (seq, when, concealed rather than
    /// filled by a copy). A frame that comes after its slot is weighed against this.
    missed: VecDeque<(u64, Instant, bool)>,
    /// Consecutive slots concealed while waiting for the head frame.
    stalled: u32,
    /// When a slot last went without its datagram's own frame (lost, or played from a copy).
    last_loss: Option<Instant>,
    /// Such slots in a row now, and the longest run since losses began: while losses are
    /// recent, that many frames of headroom (up to `max_headroom`) let the copies carried by
    /// the datagrams after a burst arrive before their slots.
    loss_run: u32,
    longest_run: u32,
    /// The measured jitter (the quantile of relative delay over the window).
    jitter: Duration,
    /// Reused by the quantile selection.
    scratch: Vec<f64>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        Self {
            target: cfg.min_delay.max(cfg.frame),
            cfg,
            frames: BTreeMap::new(),
            next: None,
            newest: None,
            first_arrival: None,
            reference: None,
            delays: VecDeque::new(),
            slacks: VecDeque::new(),
            missed: VecDeque::new(),
            stalled: 0,
            last_loss: None,
            loss_run: 0,
            longest_run: 0,
            jitter: Duration::ZERO,
            scratch: Vec::new(),
            stats: JitterStats::default(),
        }
    }

    /// How much of the sender's audio had to be rebuilt over the last window, for the
    /// report our datagrams carry back: nothing; a little (single slots, under 4 % of them,
    /// each filled by a copy); or much (a run of two or more, a slot concealed for want of
    /// any copy, or more often).
    pub fn repair_need(&self, now: Instant) -> Repair {
        let (mut missed, mut concealed) = (0usize, false);
        for (_, t, c) in &self.missed {
            if now.saturating_duration_since(*t) <= self.cfg.window {
                missed += 1;
                concealed |= *c;
            }
        }
        if missed == 0 {
            return Repair::Nothing;
        }
        let slots = (self.cfg.window.as_secs_f64() / self.cfg.frame.as_secs_f64()).max(1.0);
        if concealed || self.longest_run >= 2 || missed as f64 > slots * 0.04 {
            Repair::Much
        } else {
            Repair::Little
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The current target delay.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// The network jitter measured over the window: how much later than the earliest frame
    /// the latest few percent arrive (the quantile the target covers).
    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    /// How much is buffered ahead of playout, in time.
    pub fn buffered(&self) -> Duration {
        self.cfg.frame * self.level() as u32
    }

    /// Frames between the next slot and the newest frame seen (gaps included).
    fn level(&self) -> u64 {
        match (self.next, self.newest) {
            (Some(next), Some((newest, _))) if newest >= next => newest - next + 1,
            (None, Some(_)) => self.frames.len() as u64,
            _ => 0,
        }
    }

    /// Extends a 32-bit sequence number to 64 bits near the newest one seen.
    fn extend(&self, seq: u32) -> u64 {
        match self.newest {
            None => (1u64 << 32) + seq as u64,
            Some((ext, raw)) => {
                let diff = seq.wrapping_sub(raw) as i32 as i64;
                (ext as i64 + diff).max(0) as u64
            }
        }
    }

    /// A frame arrived. `primary` is false for redundant copies (they arrive a frame or more
    /// after their slot and must not be read as jitter). `speech` is the sender's voice flag.
    pub fn push(&mut self, now: Instant, seq: u32, payload: &[u8], speech: bool, primary: bool) {
        let mut ext = self.extend(seq);
        if let Some(next) = self.next {
            if ext < next {
                self.stats.late += 1;
                // Counted once, and only if its slot went without it: a replayed or duplicated
                // old datagram must not move the delay.
                let missed = self.missed.iter().position(|m| m.0 == ext);
                if let (true, Some(pos)) = (primary, missed) {
                    if let Some((_, at, concealed)) = self.missed.remove(pos) {
                        // Late primaries are the jitter the target must cover.
                        self.observe_delay(now, ext);
                        if concealed {
                            // It missed its slot by this much: the delay must grow.
                            self.note_slack(now, -now.saturating_duration_since(at).as_secs_f64());
                        }
                    }
                }
                return;
            }
            if ext >= next + self.cfg.capacity as u64 {
                // The sender is far ahead of us (a long outage, or a jump): start over.
                self.stats.resyncs += 1;
                self.reset();
                ext = self.extend(seq);
            }
        } else {
            // Not playing yet: everything held must fit one window of `capacity` frames.
            let far = self
                .frames
                .keys()
                .next()
                .is_some_and(|&first| ext.abs_diff(first) >= self.cfg.capacity as u64);
            if far {
                self.stats.resyncs += 1;
                self.reset();
                ext = self.extend(seq);
            } else if self.frames.len() >= self.cfg.capacity {
                return;
            }
        }
        // A frame already held as its own datagram does not count again, so repeating one
        // datagram cannot skew the estimate.
        if primary && !self.frames.get(&ext).is_some_and(|f| f.primary) {
            self.observe_delay(now, ext);
        }
        self.store(now, ext, seq, payload, speech, primary);
    }

    /// Forgets the old timeline entirely (after a jump of the sender's sequence numbers):
    /// nothing measured on it may steer the new one.
    fn reset(&mut self) {
        self.frames.clear();
        self.next = None;
        self.newest = None;
        self.first_arrival = None;
        self.reference = None;
        self.delays.clear();
        self.slacks.clear();
        self.missed.clear();
        self.stalled = 0;
        self.loss_run = 0;
        self.longest_run = 0;
        self.last_loss = None;
        self.target = self.cfg.min_delay.max(self.cfg.frame);
    }

    fn store(
        &mut self,
        now: Instant,
        ext: u64,
        seq: u32,
        payload: &[u8],
        speech: bool,
        primary: bool,
    ) {
        if let Some(held) = self.frames.get_mut(&ext) {
            // A copy overtook its own datagram (reordering): the datagram still came in time,
            // which is no loss. It became playable when the copy came.
            held.primary |= primary;
            self.stats.duplicates += 1;
            return;
        }
        self.frames.insert(
            ext,
            Stored {
                payload: payload.to_vec(),
                speech,
                at: now,
                primary,
            },
        );
        self.stats.received += 1;
        if self.newest.is_none_or(|(n, _)| ext > n) {
            self.newest = Some((ext, seq));
        }
        self.first_arrival.get_or_insert(now);
    }

    fn observe_delay(&mut self, now: Instant, ext: u64) {
        let (ref_at, ref_seq) = *self.reference.get_or_insert((now, ext));
        let sent_offset = (ext as f64 - ref_seq as f64) * self.cfg.frame.as_secs_f64();
        let arrived_offset = if now >= ref_at {
            (now - ref_at).as_secs_f64()
        } else {
            -(ref_at - now).as_secs_f64()
        };
        self.delays.push_back((now, arrived_offset - sent_offset));
        // Two samples per frame of window at most, whatever the peer sends.
        let cap = 2 * (self.cfg.window.as_secs_f64() / self.cfg.frame.as_secs_f64()) as usize;
        while self.delays.len() > cap.max(1) {
            self.delays.pop_front();
        }
        while self
            .delays
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.cfg.window)
        {
            self.delays.pop_front();
        }
        let min = self
            .delays
            .iter()
            .map(|d| d.1)
            .fold(f64::INFINITY, f64::min);
        // A selection, not a sort: this runs for every primary frame, however many a peer sends.
        self.scratch.clear();
        self.scratch.extend(self.delays.iter().map(|d| d.1));
        let k = ((self.scratch.len() - 1) as f64 * self.cfg.quantile).round() as usize;
        let (_, kth, _) = self
            .scratch
            .select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        let q = *kth - min;
        self.jitter = Duration::from_secs_f64(q.max(0.0));
        let headroom = self.cfg.frame * self.headroom(now);
        let target = Duration::from_secs_f64(q) + self.cfg.frame + headroom;
        self.target = target.clamp(self.cfg.min_delay.max(self.cfg.frame), self.cfg.max_delay);
    }

    /// The playout clock asks for the next frame.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let next = match self.next {
            Some(n) => n,
            None => {
                let ready = self.first_arrival.is_some_and(|t| now >= t + self.target);
                match self.frames.keys().next() {
                    Some(&first) if ready => {
                        self.next = Some(first);
                        first
                    }
                    _ => return Playout::Silence,
                }
            }
        };
        let level = self.level();
        let head_quiet = self.frames.get(&next).is_some_and(|f| !f.speech);
        if let Some(slack) = self.low_slack(now) {
            let frame = self.cfg.frame.as_secs_f64();
            let headroom = self.headroom(now) as f64 * frame;
            let excess = slack - (SAFETY + headroom);
            // Too much delay: drop one frame, in a pause unless far too much. The band is a
            // frame and a margin wide, so a drop cannot call for an insert right after.
            if level >= 2 && ((excess > frame + SAFETY && head_quiet) || excess > 5.0 * frame) {
                if self.frames.remove(&next).is_some() {
                    self.stats.dropped += 1;
                } else {
                    self.lose(now, 1);
                }
                self.shift_slacks(-frame);
                return self.pop_at(now, next + 1);
            }
            // Too little: stretch a pause by one concealed frame.
            if level > 0 && excess < 0.0 && head_quiet {
                self.stats.inserted += 1;
                self.shift_slacks(frame);
                return Playout::Conceal { fec: None };
            }
        }
        self.pop_at(now, next)
    }

    /// Remembers the last few slots played without their own datagram.
    fn note_missed(&mut self, seq: u64, now: Instant, concealed: bool) {
        if self.missed.len() == MISSED_KEPT {
            self.missed.pop_front();
        }
        self.missed.push_back((seq, now, concealed));
    }

    fn note_slack(&mut self, now: Instant, slack: f64) {
        self.slacks.push_back((now, slack));
        let cap = 2 * (self.cfg.window.as_secs_f64() / self.cfg.frame.as_secs_f64()) as usize;
        while self.slacks.len() > cap.max(1) {
            self.slacks.pop_front();
        }
    }

    /// After a drop (or insert) every frame waits one frame less (more): so would the ones
    /// measured, had they come now.
    fn shift_slacks(&mut self, by: f64) {
        for s in &mut self.slacks {
            s.1 += by;
        }
    }

    /// The low quantile of slack over the window (the frames that came latest), once there
    /// are enough samples.
    fn low_slack(&mut self, now: Instant) -> Option<f64> {
        while self
            .slacks
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.cfg.window)
        {
            self.slacks.pop_front();
        }
        if self.slacks.len() < MIN_SLACK_SAMPLES {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.slacks.iter().map(|s| s.1));
        let k = ((self.scratch.len() - 1) as f64 * (1.0 - self.cfg.quantile)).round() as usize;
        let (_, kth, _) = self
            .scratch
            .select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        Some(*kth)
    }

    fn lose(&mut self, now: Instant, frames: u64) {
        self.stats.lost += frames;
        self.missed_own_frame(now);
    }

    /// A slot went without its datagram's own frame.
    fn missed_own_frame(&mut self, now: Instant) {
        if !self.recent_loss(now) {
            self.longest_run = 0;
        }
        self.loss_run += 1;
        self.longest_run = self.longest_run.max(self.loss_run);
        self.last_loss = Some(now);
    }

    fn recent_loss(&self, now: Instant) -> bool {
        self.last_loss
            .is_some_and(|t| now.saturating_duration_since(t) <= self.cfg.window)
    }

    /// Headroom for copies, in frames.
    fn headroom(&self, now: Instant) -> u32 {
        if self.recent_loss(now) {
            self.longest_run.min(self.cfg.max_headroom)
        } else {
            0
        }
    }

    fn pop_at(&mut self, now: Instant, mut next: u64) -> Playout {
        // Slots already concealed while we waited stand in for the frames that never came:
        // skip as many missing frames as slots were spent, so an outage adds no delay.
        if self.stalled > 0 {
            if let Some(&first) = self.frames.range(next..).next().map(|(k, _)| k) {
                let skip = (first - next).min(self.stalled as u64);
                if skip > 0 {
                    // An outage, not a burst the copies could have covered: it counts once
                    // towards the headroom.
                    self.stats.lost += skip;
                    self.missed_own_frame(now);
                    for seq in
                        next.max((next + skip).saturating_sub(MISSED_KEPT as u64))..next + skip
                    {
                        self.note_missed(seq, now, true);
                    }
                    next += skip;
                }
            }
        }
        if let Some(f) = self.frames.remove(&next) {
            self.next = Some(next + 1);
            self.stalled = 0;
            self.stats.played += 1;
            if f.primary {
                self.loss_run = 0;
                self.note_slack(now, now.saturating_duration_since(f.at).as_secs_f64());
            } else {
                // Saved by a copy: its own datagram never came in time.
                self.missed_own_frame(now);
                self.note_missed(next, now, false);
            }
            return Playout::Frame {
                seq: next as u32,
                payload: f.payload,
            };
        }
        self.stats.concealed += 1;
        // With nothing newer here, waiting costs nothing: the slots spent are skipped over
        // when frames come again (above), however long the outage.
        let newer_here = self.frames.range(next + 1..).next().is_some();
        if newer_here {
            self.next = Some(next + 1);
            self.stalled = 0;
            self.lose(now, 1);
            self.note_missed(next, now, true);
            let fec = self.frames.get(&(next + 1)).map(|f| f.payload.clone());
            Playout::Conceal { fec }
        } else {
            self.next = Some(next);
            self.stalled += 1;
            self.stats.underruns += 1;
            Playout::Conceal { fec: None }
        }
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
