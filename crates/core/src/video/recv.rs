//! The receiving end of a video stream: reassembles frames, asks for lost fragments while
//! they can still arrive in time, and hands out only frames that decode from a clean chain.
//! A frame that cannot be repaired breaks the chain: later frames are held back (the picture
//! freezes on the last good frame) and a keyframe is requested until one arrives.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::wire::{Feedback, Fragment, Nack, VideoWireError, MAX_NACKS, MIN_DATAGRAM, WHOLE_FRAME};

/// Frames missing outright, in a row, that mark an outage rather than loss.
const OUTAGE_FRAMES: u64 = 15;

/// However slowly a frame streams in, it is given up this long after its first fragment.
pub const MAX_FRAME_WAIT: Duration = Duration::from_secs(1);

/// How long the receiver waits and how much it holds.
#[derive(Clone, Debug)]
pub struct VideoReceiverConfig {
    /// Shortest wait for a missing fragment before the frame is given up.
    pub min_wait: Duration,
    /// Longest such wait, whatever the round trip.
    pub max_wait: Duration,
    /// Reports go at least this often while video arrives.
    pub report_interval: Duration,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Most frames held incomplete at once.
    pub max_pending_frames: usize,
    /// Most bytes held in incomplete frames, all together.
    pub max_held_bytes: usize,
    /// Most requests for one fragment.
    pub max_nacks_per_fragment: u8,
}

impl Default for VideoReceiverConfig {
    fn default() -> Self {
        Self {
            min_wait: Duration::from_millis(100),
            max_wait: Duration::from_millis(500),
            report_interval: Duration::from_millis(100),
            max_frame_bytes: 2 << 20,
            max_pending_frames: 120,
            max_held_bytes: 8 << 20,
            max_nacks_per_fragment: 3,
        }
    }
}

/// A whole encoded frame, ready for the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledFrame {
    /// Frame number (extended past 32 bits).
    pub frame: u64,
    /// Decodes without earlier frames.
    pub keyframe: bool,
    /// Capture time, ms on the sender's clock.
    pub capture_ms: u32,
    /// The encoded bytes.
    pub data: Vec<u8>,
    /// When its first fragment arrived.
    pub first_seen: Instant,
}

/// Counters of the receiving end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoReceiverStats {
    /// Datagrams taken in.
    pub datagrams: u64,
    /// Datagrams refused as malformed.
    pub malformed: u64,
    /// Fragments that were already there, or came too late.
    pub duplicates: u64,
    /// Frames handed to the decoder.
    pub frames: u64,
    /// Frames that could not be repaired in time.
    pub given_up: u64,
    /// Complete frames held back because an earlier frame was missing (the freeze).
    pub held_back: u64,
    /// Retransmission requests sent.
    pub nacks: u64,
    /// Frames completed by a retransmitted fragment.
    pub repaired: u64,
    /// Keyframe requests sent.
    pub keyframe_requests: u64,
}

#[derive(Debug)]
struct Partial {
    keyframe: bool,
    capture_ms: u32,
    count: u16,
    parts: Vec<Option<Vec<u8>>>,
    have: u16,
    bytes: usize,
    max_index: u16,
    first_seen: Instant,
    /// The latest first copy of one of its fragments: a frame still streaming in is not
    /// late, however long it is.
    last_progress: Instant,
    repaired: bool,
    nacked: BTreeMap<u16, (u8, Instant)>,
}

impl Partial {
    fn complete(&self) -> bool {
        self.have == self.count
    }
}

/// Seconds the delay floor looks back.
const FLOOR_SECS: usize = 10;

/// Rolling minimum of the one-way delay offset, in one-second slots over [`FLOOR_SECS`]:
/// long enough that a queue does not become the new floor (the controller steps down at
/// 60 ms, so the queue drains within seconds), short enough to learn a path whose crossing
/// times changed (a link that narrowed). One floor per size bucket: on a slow link a full
/// datagram takes longer to cross than a small one (33 against 14 ms at 300 kb/s), and
/// against one floor, or one learnt before the link narrowed, that difference read as a
/// queue that held the controller at its lowest rate (on virtual time, `link_tests.rs`).
#[derive(Debug, Default)]
struct DelayFloor {
    slots: [VecDeque<(Instant, i64)>; 3],
}

impl DelayFloor {
    fn class(len: usize) -> usize {
        match len {
            0..=MIN_DATAGRAM => 0,
            257..=512 => 1,
            _ => 2,
        }
    }
    /// Takes in a datagram of `len` bytes; returns its delay above the floor of its size, µs.
    fn add(&mut self, now: Instant, len: usize, offset: i64) -> i64 {
        let slots = &mut self.slots[Self::class(len)];
        match slots.back_mut() {
            Some((at, min)) if now.saturating_duration_since(*at) < Duration::from_secs(1) => {
                *min = (*min).min(offset)
            }
            _ => slots.push_back((now, offset)),
        }
        while slots.len() > FLOOR_SECS {
            slots.pop_front();
        }
        let floor = slots.iter().map(|s| s.1).min().unwrap_or(offset);
        (offset - floor).max(0)
    }
}

/// The receiving end; see the module documentation.
#[derive(Debug)]
pub struct VideoReceiver {
    config: VideoReceiverConfig,
    epoch: Instant,
    rtt: Duration,
    frames: BTreeMap<u64, Partial>,
    /// Payload bytes held in `frames`.
    held: usize,
    whole_nacks: BTreeMap<u64, (u8, Instant)>,
    next: Option<u64>,
    highest: u64,
    chain_ok: bool,
    ready: VecDeque<AssembledFrame>,
    keyframe_wanted: bool,
    last_keyframe_request: Option<Instant>,
    // The report being gathered.
    highest_seq: Option<u64>,
    seq_at_report: Option<u64>,
    received: u32,
    bytes: u64,
    delay_sum: i64,
    delay_n: u32,
    floor: DelayFloor,
    last_report: Instant,
    stats: VideoReceiverStats,
}

fn extend(x: u32, reference: u64) -> u64 {
    let diff = x.wrapping_sub(reference as u32) as i32 as i64;
    (reference as i64 + diff).max(0) as u64
}

impl VideoReceiver {
    /// A receiver whose clock starts at `now`.
    pub fn new(config: VideoReceiverConfig, now: Instant) -> Self {
        Self {
            config,
            epoch: now,
            rtt: Duration::from_millis(50),
            frames: BTreeMap::new(),
            held: 0,
            whole_nacks: BTreeMap::new(),
            next: None,
            highest: 0,
            chain_ok: false,
            ready: VecDeque::new(),
            keyframe_wanted: false,
            last_keyframe_request: None,
            highest_seq: None,
            seq_at_report: None,
            received: 0,
            bytes: 0,
            delay_sum: 0,
            delay_n: 0,
            floor: DelayFloor::default(),
            last_report: now,
            stats: VideoReceiverStats::default(),
        }
    }

    /// The call moved to a new connection: reports start afresh. What the sender sent into
    /// the dark before is not this path's loss (counted, it cut the new path's rate to the
    /// floor at once), and the old path's delays are not this one's.
    pub fn new_path(&mut self, now: Instant) {
        self.highest_seq = None;
        self.seq_at_report = None;
        self.received = 0;
        self.bytes = 0;
        self.delay_sum = 0;
        self.delay_n = 0;
        self.floor = DelayFloor::default();
        self.last_report = now;
    }

    /// The path's round-trip time, which sets how long a missing fragment is waited for.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// How long a frame may wait for its missing fragments.
    pub fn wait(&self) -> Duration {
        (self.rtt * 4 + Duration::from_millis(60)).clamp(self.config.min_wait, self.config.max_wait)
    }

    /// A keyframe request is repeated after this: long enough for the keyframe asked for to
    /// arrive and be repaired, since each one costs the sender many packets.
    fn keyframe_retry(&self) -> Duration {
        (self.wait() + self.rtt * 2).max(Duration::from_millis(300))
    }

    /// Takes in one video fragment datagram.
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) -> Result<(), VideoWireError> {
        let f = match Fragment::parse(d) {
            Ok(f) => f,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.stats.datagrams += 1;
        self.account(now, &f, d.len());
        let n = extend(f.frame, self.next.map_or(f.frame as u64, |_| self.highest));
        let next = *self.next.get_or_insert(n);
        if n < next {
            self.stats.duplicates += 1;
            return Ok(());
        }
        if n - next > 4 * self.config.max_pending_frames as u64 {
            // A jump far ahead: whatever was pending is hopeless. Start over from here.
            self.stats.given_up += self.frames.len() as u64;
            self.frames.clear();
            self.held = 0;
            self.whole_nacks.clear();
            self.next = Some(n);
            self.break_chain();
        }
        if n > next + OUTAGE_FRAMES && self.frames.range(next..n).next().is_none() {
            // Nothing at all arrived for half a second of frames: an outage. Asking for each
            // of them again would only delay the keyframe that ends the freeze.
            self.skip_to(n);
            self.break_chain();
        }
        self.highest = self.highest.max(n);
        let p = self.frames.entry(n).or_insert_with(|| Partial {
            keyframe: f.keyframe,
            capture_ms: f.capture_ms,
            count: f.count,
            parts: vec![None; f.count as usize],
            have: 0,
            bytes: 0,
            max_index: 0,
            first_seen: now,
            last_progress: now,
            repaired: false,
            nacked: BTreeMap::new(),
        });
        if p.count != f.count || p.keyframe != f.keyframe {
            self.stats.malformed += 1;
            return Err(VideoWireError::Malformed(
                "fragment disagrees with its frame",
            ));
        }
        let slot = &mut p.parts[f.index as usize];
        if slot.is_some() {
            self.stats.duplicates += 1;
            return Ok(());
        }
        if p.bytes + f.payload.len() > self.config.max_frame_bytes {
            self.stats.malformed += 1;
            return Err(VideoWireError::Malformed("frame too large"));
        }
        if self.held + f.payload.len() > self.config.max_held_bytes {
            // More waiting than any honest stream needs: the oldest frames are given up
            // (the picture freezes until a keyframe) rather than memory growing.
            self.stats.malformed += 1;
            let oldest = self.frames.keys().next().copied();
            if let Some(k) = oldest.filter(|&k| k < n) {
                self.skip_to(k + 1);
                self.break_chain();
            }
            return Err(VideoWireError::Malformed("too much video held"));
        }
        let p = self.frames.get_mut(&n).expect("inserted above");
        let slot = &mut p.parts[f.index as usize];
        *slot = Some(f.payload.to_vec());
        p.have += 1;
        p.bytes += f.payload.len();
        self.held += f.payload.len();
        p.repaired |= f.retransmission;
        if !f.retransmission {
            p.max_index = p.max_index.max(f.index);
            p.last_progress = now;
        }
        self.advance(now);
        Ok(())
    }

    fn account(&mut self, now: Instant, f: &Fragment<'_>, len: usize) {
        let seq = extend(f.seq, self.highest_seq.unwrap_or(f.seq as u64));
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));
        if self.seq_at_report.is_none() {
            self.seq_at_report = Some(seq.saturating_sub(1));
        }
        self.received += 1;
        self.bytes += len as u64;
        // The two clocks differ by an unknown constant; its changes are the queueing delay.
        let local = now.saturating_duration_since(self.epoch).as_micros() as u32;
        let offset = local.wrapping_sub(f.sent_us) as i32 as i64;
        self.delay_sum += self.floor.add(now, len, offset);
        self.delay_n += 1;
    }

    fn break_chain(&mut self) {
        self.chain_ok = false;
        self.keyframe_wanted = true;
    }

    /// The decoder could not decode a frame it was given: the picture stays frozen and a
    /// keyframe is requested.
    pub fn decode_failed(&mut self) {
        self.break_chain();
    }

    /// Gives up frames whose time is over; call at [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    fn advance(&mut self, now: Instant) {
        while let Some(n) = self.next {
            if self.frames.get(&n).is_some_and(Partial::complete) {
                let p = self.frames.remove(&n).expect("present");
                self.held -= p.bytes;
                self.whole_nacks.remove(&n);
                self.next = Some(n + 1);
                if p.keyframe {
                    self.chain_ok = true;
                    self.keyframe_wanted = false;
                }
                if self.chain_ok {
                    self.stats.frames += 1;
                    self.stats.repaired += u64::from(p.repaired);
                    self.ready.push_back(AssembledFrame {
                        frame: n,
                        keyframe: p.keyframe,
                        capture_ms: p.capture_ms,
                        data: p.parts.into_iter().flatten().flatten().collect(),
                        first_seen: p.first_seen,
                    });
                } else {
                    self.stats.held_back += 1;
                }
                continue;
            }
            // A complete keyframe further on makes everything before it irrelevant.
            if let Some(k) = self
                .frames
                .range(n + 1..)
                .find(|(_, p)| p.keyframe && p.complete())
                .map(|(k, _)| *k)
            {
                self.skip_to(k);
                continue;
            }
            let Some(deadline) = self.deadline(n) else {
                break;
            };
            let over = now >= deadline || self.frames.len() > self.config.max_pending_frames;
            if !over {
                break;
            }
            self.skip_to(n + 1);
            self.break_chain();
        }
        self.whole_nacks.retain(|k, _| Some(*k) >= self.next);
    }

    /// When frame `n` (incomplete) is given up: a wait after its fragments stopped coming
    /// (or, for a frame none of which arrived, after the next frame began), and never more
    /// than a second after it began, so the picture cannot lag without bound.
    fn deadline(&self, n: u64) -> Option<Instant> {
        let wait = self.wait();
        match self.frames.get(&n) {
            Some(p) => Some((p.last_progress + wait).min(p.first_seen + MAX_FRAME_WAIT)),
            None => self
                .frames
                .range(n..)
                .map(|(_, p)| p.first_seen + wait)
                .min(),
        }
    }

    fn skip_to(&mut self, k: u64) {
        let Some(n) = self.next else { return };
        for i in n..k {
            if let Some(p) = self.frames.remove(&i) {
                self.held -= p.bytes;
            }
        }
        self.stats.given_up += k.saturating_sub(n);
        self.next = Some(k);
    }

    /// The next frame for the decoder, in order; only frames of an unbroken chain.
    pub fn poll_frame(&mut self) -> Option<AssembledFrame> {
        self.ready.pop_front()
    }

    /// The next feedback datagram, if one is due: retransmission requests as soon as a gap
    /// shows, a keyframe request while one is needed, and a report every interval.
    pub fn poll_feedback(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let nacks = self.due_nacks(now);
        let kf_due = self.keyframe_wanted
            && self
                .last_keyframe_request
                .is_none_or(|t| now.saturating_duration_since(t) >= self.keyframe_retry());
        let report_due = self.received > 0
            && now.saturating_duration_since(self.last_report) >= self.config.report_interval;
        if nacks.is_empty() && !kf_due && !report_due {
            return false;
        }
        if kf_due {
            self.last_keyframe_request = Some(now);
            self.stats.keyframe_requests += 1;
        }
        self.stats.nacks += nacks.len() as u64;
        let highest = self.highest_seq.unwrap_or(0);
        let expected = highest.saturating_sub(self.seq_at_report.unwrap_or(highest));
        let queue_us = if self.delay_n > 0 {
            self.delay_sum / self.delay_n as i64
        } else {
            0
        };
        let fb = Feedback {
            keyframe: self.keyframe_wanted,
            highest_seq: highest as u32,
            interval_ms: now
                .saturating_duration_since(self.last_report)
                .as_millis()
                .min(u16::MAX as u128) as u16,
            bytes: self.bytes.min(u32::MAX as u64) as u32,
            received: self.received.min(u16::MAX as u32) as u16,
            lost: expected
                .saturating_sub(self.received as u64)
                .min(u16::MAX as u64) as u16,
            queue_delay_ms: (queue_us / 1000).min(u16::MAX as i64) as u16,
            nacks,
        };
        fb.write(out);
        self.last_report = now;
        self.seq_at_report = self.highest_seq;
        self.received = 0;
        self.bytes = 0;
        self.delay_sum = 0;
        self.delay_n = 0;
        true
    }

    fn due_nacks(&mut self, now: Instant) -> Vec<Nack> {
        let Some(next) = self.next else {
            return Vec::new();
        };
        let renack = (self.rtt * 3 / 2).max(Duration::from_millis(15));
        let max = self.config.max_nacks_per_fragment;
        let wait = self.wait();
        let due = |state: &mut (u8, Instant)| {
            let ok = state.0 == 0 || (state.0 < max && now >= state.1 + renack);
            if ok {
                *state = (state.0 + 1, now);
            }
            ok
        };
        let mut out = Vec::new();
        for n in next..=self.highest {
            if out.len() >= MAX_NACKS {
                break;
            }
            match self.frames.get_mut(&n) {
                Some(p) => {
                    if now >= (p.last_progress + wait).min(p.first_seen + MAX_FRAME_WAIT) {
                        continue;
                    }
                    let last = if n < self.highest {
                        p.count
                    } else {
                        p.max_index
                    };
                    for i in 0..last {
                        if p.parts[i as usize].is_none() && out.len() < MAX_NACKS {
                            let st = p.nacked.entry(i).or_insert((0, now));
                            if due(st) {
                                out.push(Nack {
                                    frame: n as u32,
                                    index: i,
                                });
                            }
                        }
                    }
                }
                None => {
                    let st = self.whole_nacks.entry(n).or_insert((0, now));
                    if due(st) {
                        out.push(Nack {
                            frame: n as u32,
                            index: WHOLE_FRAME,
                        });
                    }
                }
            }
        }
        out
    }

    /// When to call [`Self::handle_timeout`] and [`Self::poll_feedback`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let report = (self.received > 0).then(|| self.last_report + self.config.report_interval);
        let give_up = self.next.and_then(|n| self.deadline(n));
        let every = (self.rtt * 3 / 2).max(Duration::from_millis(15));
        let max = self.config.max_nacks_per_fragment;
        let renack = self
            .frames
            .values()
            .flat_map(|p| p.nacked.values())
            .chain(self.whole_nacks.values())
            .filter(|s| s.0 < max)
            .map(|s| s.1 + every)
            .min();
        let keyframe = self.keyframe_wanted.then(|| {
            self.last_keyframe_request
                .map_or(self.last_report, |t| t + self.keyframe_retry())
        });
        [report, give_up, renack, keyframe]
            .into_iter()
            .flatten()
            .min()
    }

    /// Payload bytes held in frames waiting for their turn.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Frames held, complete or not, waiting for their turn.
    pub fn frames_pending(&self) -> usize {
        self.frames.len()
    }

    /// The stream is frozen: frames are held back until a keyframe.
    pub fn frozen(&self) -> bool {
        !self.chain_ok
    }

    /// Counters.
    pub fn stats(&self) -> VideoReceiverStats {
        self.stats
    }
}
