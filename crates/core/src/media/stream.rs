//! A call's audio, free of I/O: the 20 ms pace, the datagrams made from encoded frames and
//! when each leaves, the frames played from the jitter buffer, and what a driver woken late
//! owes. Codecs, devices and sockets stay with the driver, which asks [`AudioStream`] what to
//! do ([`AudioStream::poll_work`]), does it, and sends what [`AudioStream::poll_transmit`]
//! gives when [`AudioStream::poll_timeout`] says.
//!
//! ```text
//!  timeout ──► clock: n frames due ──► [TakeArrived if late] ──► n × (Encode, Play)
//!  handle_encoded ──► Packetizer ──► the last frame's datagram waits for tick + offset;
//!                                    those caught up before it leave together at once
//!  handle_datagram ──► parse ──► JitterBuffer ──► Play(pop) when the clock says
//! ```
//!
//! Every datagram has one size and leaves a fixed offset after its tick, whatever the frame
//! held or how long it took to encode: an observer of the path learns neither. A driver held
//! up does every frame it owes when it runs again (up to [`MediaClock::MAX_BEHIND`]): what
//! arrived meanwhile is taken in first, every owed frame is played (a recording keeps the
//! call's length), and each owed frame is sent while the source has it; a device that stalled
//! with us never captured the others, which are counted, not made of silence.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::clock::MediaClock;
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::packet::{MediaPacket, Packetizer, Repair};

/// A mode for a clean path: the same datagram spent on a better frame and fewer copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RichMode {
    /// The encoder's bitrate (bits per second).
    pub bitrate: u32,
    /// Older frames each datagram carries.
    pub redundancy: usize,
}

/// How a call's audio runs.
#[derive(Clone, Debug)]
pub struct AudioStreamConfig {
    /// One frame of audio (20 ms): the pace datagrams leave at and frames are played at.
    pub frame: Duration,
    /// Samples in one frame (the packet's duration field; a peer's packets must match).
    pub frame_samples: u16,
    /// How long after its tick a datagram leaves: more than reading, cleaning and encoding a
    /// frame take, so that the send time does not depend on the content.
    pub send_offset: Duration,
    /// Size of every datagram.
    pub datagram_size: usize,
    /// Most older frames each datagram carries.
    pub redundancy: usize,
    /// The encoder's bitrate (bits per second) with `redundancy` copies: the robust mode.
    pub bitrate: u32,
    /// The mode used while the peer reports that it rebuilt nothing of ours for
    /// [`AudioStream::CALM`] (see [`Repair`]); `None`: always the robust mode.
    pub rich: Option<RichMode>,
    /// The jitter buffer.
    pub jitter: JitterConfig,
    /// Arrived datagrams taken in at most before the owed frames, after a stall (a flood
    /// cannot hold the clock up).
    pub max_drain: usize,
}

impl Default for AudioStreamConfig {
    fn default() -> Self {
        Self {
            frame: Duration::from_millis(20),
            frame_samples: 960,
            send_offset: Duration::from_millis(3),
            datagram_size: 320,
            redundancy: 2,
            bitrate: 40_000,
            rich: None,
            jitter: JitterConfig::default(),
            max_drain: 256,
        }
    }
}

/// What the driver must do now, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioWork {
    /// The driver was held up: before the frames it owes are played, take in the datagrams
    /// that have already arrived (at most `max`, never waiting for more).
    TakeArrived {
        /// The most to take.
        max: usize,
    },
    /// Read the source's next frame, encode it and give it back with
    /// [`AudioStream::handle_encoded`]. With `catching_up`, a frame of a stall is owed: if
    /// the source has none ready (a device that stalled with us), answer
    /// [`AudioStream::handle_not_captured`] instead of making silence.
    Encode {
        /// This frame is owed from a stall.
        catching_up: bool,
        /// The bitrate to encode it at (bits per second).
        bitrate: u32,
    },
    /// Decode (or conceal) this and play it.
    Play(Playout),
}

/// Counters, for the stats line and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioStreamStats {
    /// Frames that fell due since the stream began (each played, and sent unless counted in
    /// `frames_unsent`), counting those dropped.
    pub frames_due: u64,
    /// Frames done late, after the driver was held up, and so not lost.
    pub frames_caught_up: u64,
    /// Frames given up after a gap too long to replay (a suspended machine): time lost.
    pub frames_dropped: u64,
    /// Owed frames the source had not captured: not sent, concealed by the far end.
    pub frames_unsent: u64,
    /// Datagrams made (each handed out by `poll_transmit`, or waiting for its time).
    pub datagrams_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams dropped as malformed (counted, never fatal).
    pub malformed: u64,
    /// The bitrate frames are encoded at now (bits per second).
    pub bitrate: u32,
    /// Older frames each datagram carries now.
    pub copies: usize,
    /// Times the stream switched between its robust and rich modes.
    pub mode_switches: u64,
}

/// One step of the work owed after a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    TakeArrived,
    Encode { catching_up: bool, last: bool },
    Play,
}

/// The sans-IO audio of one call (both directions).
#[derive(Debug)]
pub struct AudioStream {
    config: AudioStreamConfig,
    clock: MediaClock,
    packetizer: Packetizer,
    jitter: JitterBuffer,
    /// The next frame's timestamp (in samples).
    ts: u32,
    /// Work owed, in order.
    work: VecDeque<Step>,
    /// The `Encode` handed out and not answered yet: whether it was the batch's last.
    asked: Option<bool>,
    /// Datagrams to leave now, oldest first.
    ready: VecDeque<Vec<u8>>,
    /// Datagrams of frames caught up, held until the batch's last is made.
    burst: Vec<Vec<u8>>,
    /// The last frame's datagram and when it leaves.
    pending: Option<(Instant, Vec<u8>)>,
    adapt: Adapt,
    stats: AudioStreamStats,
}

/// The choice between the robust mode and the rich one, from the peer's reports.
#[derive(Debug, Default)]
struct Adapt {
    rich: bool,
    /// When the peer's last report came.
    heard: Option<Instant>,
    /// Since when the peer has reported nothing to rebuild, without a break.
    calm_since: Option<Instant>,
    switches: u64,
}

impl AudioStream {
    /// A stream whose first frame is due at `now`.
    pub fn new(config: AudioStreamConfig, now: Instant) -> Self {
        // Made for the most copies either mode sends; the robust mode's to begin with.
        let most = config
            .rich
            .map_or(config.redundancy, |r| r.redundancy.max(config.redundancy));
        let mut packetizer = Packetizer::new(config.datagram_size, most);
        packetizer.set_redundancy(config.redundancy);
        Self {
            clock: MediaClock::new(now, config.frame),
            packetizer,
            jitter: JitterBuffer::new(config.jitter.clone()),
            config,
            ts: 0,
            work: VecDeque::new(),
            asked: None,
            ready: VecDeque::new(),
            burst: Vec::new(),
            pending: None,
            adapt: Adapt::default(),
            stats: AudioStreamStats::default(),
        }
    }

    /// The peer must report nothing to rebuild this long before the rich mode is used: with
    /// its receiver's window (5 s), ten seconds after the last frame it missed.
    pub const CALM: Duration = Duration::from_secs(5);
    /// Without a report for this long (its datagrams stopped coming), the robust mode.
    pub const REPORT_STALE: Duration = Duration::from_secs(1);

    /// The peer's report on what it rebuilt of ours: a report of much goes robust at once.
    fn heard_report(&mut self, now: Instant, report: Repair) {
        self.adapt.heard = Some(now);
        if report == Repair::Nothing {
            self.adapt.calm_since.get_or_insert(now);
        } else {
            self.adapt.calm_since = None;
        }
        if report == Repair::Much {
            self.set_rich(false);
        }
    }

    /// Chooses the mode for the frames due now.
    fn choose_mode(&mut self, now: Instant) {
        if self.config.rich.is_none() {
            return;
        }
        let fresh = self
            .adapt
            .heard
            .is_some_and(|t| now.saturating_duration_since(t) <= Self::REPORT_STALE);
        if !fresh {
            self.adapt.calm_since = None;
            self.set_rich(false);
        } else if self
            .adapt
            .calm_since
            .is_some_and(|t| now.saturating_duration_since(t) >= Self::CALM)
        {
            self.set_rich(true);
        }
    }

    fn set_rich(&mut self, rich: bool) {
        if self.adapt.rich == rich {
            return;
        }
        self.adapt.rich = rich;
        self.adapt.switches += 1;
        self.packetizer.set_redundancy(self.copies());
    }

    /// The bitrate frames are encoded at now.
    fn bitrate(&self) -> u32 {
        match self.config.rich {
            Some(r) if self.adapt.rich => r.bitrate,
            _ => self.config.bitrate,
        }
    }

    /// The copies each datagram carries now.
    fn copies(&self) -> usize {
        match self.config.rich {
            Some(r) if self.adapt.rich => r.redundancy,
            _ => self.config.redundancy,
        }
    }

    /// An audio datagram arrived. Malformed ones, or ones of another frame length, are
    /// counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        match MediaPacket::parse(datagram) {
            Ok(p) if p.dur == self.config.frame_samples => {
                push_packet(&mut self.jitter, now, &p);
                if let Some(r) = p.report {
                    self.heard_report(now, r);
                }
            }
            _ => self.stats.malformed += 1,
        }
    }

    /// Time passed: the frames due now become work.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.clock.due(now);
        if due.frames == 0 {
            return;
        }
        // The datagrams made now say what we rebuilt of the peer's, and are made in the
        // mode the peer's reports call for.
        self.packetizer
            .set_report(Some(self.jitter.repair_need(now)));
        self.choose_mode(now);
        // A datagram still waiting for its send time (woken before it left) is late now: it
        // leaves before the next one is made.
        if let Some((_, d)) = self.pending.take() {
            self.ready.push_back(d);
        }
        if due.frames > 1 {
            self.work.push_back(Step::TakeArrived);
        }
        for i in 0..due.frames {
            self.work.push_back(Step::Encode {
                catching_up: i > 0,
                last: i + 1 == due.frames,
            });
            self.work.push_back(Step::Play);
        }
    }

    /// The next thing to do, if any; `Encode` must be answered before the next call.
    pub fn poll_work(&mut self, now: Instant) -> Option<AudioWork> {
        if self.asked.is_some() {
            return None;
        }
        Some(match self.work.pop_front()? {
            Step::TakeArrived => AudioWork::TakeArrived {
                max: self.config.max_drain,
            },
            Step::Encode { catching_up, last } => {
                self.asked = Some(last);
                AudioWork::Encode {
                    catching_up,
                    bitrate: self.bitrate(),
                }
            }
            Step::Play => AudioWork::Play(self.jitter.pop(now)),
        })
    }

    /// The frame asked for, encoded (`data`, possibly empty if the encoder failed: the
    /// datagram still leaves, with the usual size, and the far end conceals it). `speech`
    /// says whether it holds voice; `muted` that it is the silence of a muted microphone.
    pub fn handle_encoded(&mut self, data: &[u8], speech: bool, muted: bool) {
        let Some(last) = self.asked.take() else {
            return;
        };
        let mut d = Vec::with_capacity(self.packetizer.size());
        self.packetizer.packetize(
            self.ts,
            self.config.frame_samples,
            speech,
            muted,
            data,
            &mut d,
        );
        self.ts = self.ts.wrapping_add(u32::from(self.config.frame_samples));
        self.stats.datagrams_out += 1;
        if last {
            // It leaves at a fixed offset from its frame's deadline, not when encoding
            // finished: how long a frame took (speech or silence) must not show.
            let deadline = self.clock.next_deadline() - self.config.frame;
            self.pending = Some((deadline + self.config.send_offset, d));
            self.end_batch();
        } else {
            self.burst.push(d);
        }
    }

    /// The frame asked for (while catching up) was never captured: nothing is sent for it.
    pub fn handle_not_captured(&mut self) {
        let Some(last) = self.asked.take() else {
            return;
        };
        self.stats.frames_unsent += 1;
        if last {
            self.end_batch();
        }
    }

    /// The frames caught up leave together once all are made: gaps between them would show
    /// how long each took to encode.
    fn end_batch(&mut self) {
        self.ready.extend(self.burst.drain(..));
    }

    /// A datagram to send now, into `out`; false when none is due.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if let Some(d) = self.ready.pop_front() {
            *out = d;
            return true;
        }
        match &self.pending {
            Some((at, _)) if *at <= now => {
                if let Some((_, d)) = self.pending.take() {
                    *out = d;
                }
                true
            }
            _ => false,
        }
    }

    /// When to call [`AudioStream::handle_timeout`] next (the next tick, or a datagram's
    /// send time). Work or datagrams waiting now are the driver's to take first.
    pub fn poll_timeout(&self) -> Instant {
        let tick = self.clock.next_deadline();
        match &self.pending {
            Some((at, _)) => tick.min(*at),
            None => tick,
        }
    }

    /// The jitter buffer, for its delay and estimate.
    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// The jitter buffer's counters.
    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// Counters.
    pub fn stats(&self) -> AudioStreamStats {
        AudioStreamStats {
            frames_due: self.clock.frames(),
            frames_caught_up: self.clock.caught_up(),
            frames_dropped: self.clock.dropped(),
            bitrate: self.bitrate(),
            copies: self.copies(),
            mode_switches: self.adapt.switches,
            ..self.stats
        }
    }
}

/// Puts the frames of an audio datagram (its own and the copies of earlier ones) into
/// `jitter`; false, and nothing pushed, if it is malformed or of another frame length.
pub fn push_datagram(
    jitter: &mut JitterBuffer,
    now: Instant,
    datagram: &[u8],
    frame_samples: u16,
) -> bool {
    let Ok(p) = MediaPacket::parse(datagram) else {
        return false;
    };
    if p.dur != frame_samples {
        return false;
    }
    push_packet(jitter, now, &p);
    true
}

/// Puts a parsed datagram's frames into `jitter`.
fn push_packet(jitter: &mut JitterBuffer, now: Instant, p: &MediaPacket<'_>) {
    for (k, frame) in p.frames.iter().enumerate() {
        let seq = p.seq.wrapping_sub(k as u32);
        // Copies carry no voice flag of their own: treat them as speech (never shrunk).
        let speech = if k == 0 { p.speech } else { true };
        jitter.push(now, seq, frame, speech, k == 0);
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
