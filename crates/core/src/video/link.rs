//! The network side of a call's video as one sans-IO machine: everything decided between
//! the encoder, the decoder and the call's datagrams. It owns the sender, the receiver, the
//! rate controller and the picture ladder, and decides
//! - which video datagram leaves when: feedback at once, fragments only while the
//!   transport's datagram queue is nearly empty (audio, queued there too, goes first), and
//!   paced near a bottleneck;
//! - what the encoder does with the next picture (layer, bitrate, keyframe, or skip it while
//!   video waits too long to leave);
//! - which assembled frames go to the decoder.
//!
//! The driver feeds it encoded frames, arriving video datagrams, the transport's state
//! ([`PathState`]) and time, and polls it for datagrams, frames, advice and its next timeout.
//! Codecs and sockets stay outside; `link_tests.rs` runs two of these on virtual time over a
//! simulated bottleneck with audio beside them.

use std::time::{Duration, Instant};

use super::rate::{EncoderPlan, Ladder, LocalPath, RateConfig, RateController};
use super::recv::{AssembledFrame, VideoReceiver, VideoReceiverConfig, VideoReceiverStats};
use super::send::{VideoSender, VideoSenderConfig, VideoSenderStats};
use super::wire::{datagram_kind, Feedback, KIND_FEEDBACK, KIND_FRAGMENT};

/// Video's share of the transport's datagram queue: one or two packets, so an audio
/// datagram queued after them leaves within a millisecond or so.
pub const TRANSPORT_ROOM: usize = 4 * 1024;
/// The controller runs this often.
pub const TICK: Duration = Duration::from_millis(100);
/// Pictures are not encoded while video waits longer than this to leave.
pub const MAX_BACKLOG: Duration = Duration::from_millis(150);
/// When fragments wait on a full transport queue, it is looked at again after this.
const ROOM_RECHECK: Duration = Duration::from_millis(1);

/// How a call's video uses its path.
#[derive(Clone, Debug)]
pub struct VideoLinkConfig {
    /// Bitrate bounds and start.
    pub rate: RateConfig,
    /// Bits per second the call's audio sends (kept free for it).
    pub audio_bps: u64,
    /// Largest video datagram (smaller if the path takes less).
    pub datagram_size: usize,
}

impl Default for VideoLinkConfig {
    fn default() -> Self {
        Self {
            rate: RateConfig::default(),
            // Audio's default datagrams (320 bytes, 50 a second) with QUIC's headers.
            audio_bps: 150_000,
            datagram_size: 1200,
        }
    }
}

/// The transport's state, read by the driver before it polls for datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathState {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Bytes of datagrams (audio's and video's) waiting in the transport to leave.
    pub queued: usize,
    /// Largest datagram the path takes now (`None`: datagrams are not possible).
    pub max_datagram: Option<usize>,
}

/// What the encoder should do with the next pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureAdvice {
    /// Layer and bitrate (`None` until the first frame's source is known).
    pub plan: Option<EncoderPlan>,
    /// The receiver asked for a keyframe since the advice was last taken.
    pub keyframe: bool,
    /// How long video waits to leave now (ours and the transport's queue).
    pub backlog: Duration,
}

impl CaptureAdvice {
    /// Whether picture `index` of a source running at `fps` is encoded: the layer's frame
    /// rate keeps every k-th picture, and none is encoded while video waits too long.
    pub fn admits(&self, index: u64, fps: u32) -> bool {
        let layer_fps = self.plan.map_or(fps, |p| u32::from(p.layer.fps.max(1)));
        let keep_every = (f64::from(fps.max(1)) / f64::from(layer_fps))
            .round()
            .max(1.0) as u64;
        index.is_multiple_of(keep_every) && self.backlog <= MAX_BACKLOG
    }
}

/// The machine's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoLinkStats {
    /// Sender counters.
    pub sender: VideoSenderStats,
    /// Receiver counters.
    pub receiver: VideoReceiverStats,
    /// The controller's target, bits per second.
    pub target_bps: u64,
    /// The picture is frozen, waiting for a keyframe (after frames had arrived).
    pub frozen: bool,
    /// How long video waits to leave.
    pub send_delay: Duration,
    /// Bytes of video fragments received.
    pub recv_bytes: u64,
    /// Datagrams the transport refused.
    pub send_errors: u64,
    /// The path's round trip and congestion window, as last read.
    pub rtt: Duration,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Fragments are being paced (a bottleneck was seen lately).
    pub paced: bool,
}

/// The machine; see the module documentation.
#[derive(Debug)]
pub struct VideoLink {
    config: VideoLinkConfig,
    sender: VideoSender,
    receiver: VideoReceiver,
    rate: RateController,
    /// The ladder, for the source it was made for (width, height, frames per second).
    ladder: Option<(Ladder, (u32, u32, u32))>,
    path: PathState,
    /// Bytes handed to the transport since `path` was read.
    handed: usize,
    next_tick: Instant,
    keyframe: bool,
    recv_bytes: u64,
    send_errors: u64,
}

impl VideoLink {
    /// A machine whose media clock starts at `epoch` (capture times count from it).
    pub fn new(config: VideoLinkConfig, epoch: Instant, now: Instant) -> Self {
        let sender = VideoSender::new(
            VideoSenderConfig {
                datagram_size: config.datagram_size,
                ..VideoSenderConfig::default()
            },
            epoch,
        );
        Self {
            sender,
            receiver: VideoReceiver::new(VideoReceiverConfig::default(), now),
            rate: RateController::new(config.rate.clone()),
            config,
            ladder: None,
            path: PathState::default(),
            handed: 0,
            next_tick: now,
            keyframe: false,
            recv_bytes: 0,
            send_errors: 0,
        }
    }

    /// The call moved to a new connection (it resumed after losing its path): what was
    /// learnt about the old path no longer holds. The rate starts again as a new call's
    /// does, instead of climbing from wherever the silence of the outage drove it (from the
    /// floor, a 320x180 picture took 17 s to come back to full size), and the encoder is
    /// told at once.
    pub fn handle_new_path(&mut self, now: Instant) {
        self.rate = RateController::new(self.config.rate.clone());
        self.receiver.new_path(now);
        if let Some((_, source)) = self.ladder.take() {
            self.new_ladder(now, source);
        }
        self.sender.set_pace(None);
        // The old connection's round trip and window (seconds, a few packets, after the
        // outage) would cap the fresh target at the floor until the new one is read.
        self.path = PathState::default();
        self.handed = 0;
        self.next_tick = now;
    }

    /// The transport's state now; read it before polling for datagrams.
    pub fn handle_path(&mut self, path: PathState) {
        self.path = path;
        self.handed = 0;
        // The path's room can shrink (QUIC's MTU black-hole detection falls back to the
        // minimum after losses): later frames are cut to fit.
        if let Some(room) = path.max_datagram {
            self.sender
                .set_datagram_size(room.min(self.config.datagram_size));
        }
    }

    /// An encoded frame of a `source` (width, height, frames per second) captured at
    /// `capture`. A frame too large to send is dropped (and counted nowhere else).
    pub fn handle_encoded(
        &mut self,
        now: Instant,
        capture: Instant,
        data: Vec<u8>,
        keyframe: bool,
        source: (u32, u32, u32),
    ) {
        if self.ladder.as_ref().is_none_or(|(_, s)| *s != source) {
            self.new_ladder(now, source);
        }
        let _ = self.sender.push_frame(now, capture, data, keyframe);
    }

    /// A ladder for `source` (width, height, frames per second), with a plan for the target
    /// now.
    fn new_ladder(&mut self, now: Instant, source: (u32, u32, u32)) {
        let (w, h, fps) = source;
        let mut ladder = Ladder::new(w, h, fps.min(255) as u8);
        ladder.update(now, self.rate.target_bps());
        self.ladder = Some((ladder, source));
    }

    /// A video datagram arrived (fragment or feedback; anything else is ignored).
    pub fn handle_datagram(&mut self, now: Instant, d: &[u8]) {
        match datagram_kind(d) {
            Some(KIND_FRAGMENT) => {
                self.recv_bytes += d.len() as u64;
                let _ = self.receiver.handle_datagram(now, d);
            }
            Some(KIND_FEEDBACK) => {
                if let Ok(fb) = Feedback::parse(d) {
                    self.sender.handle_feedback(now, &fb);
                    let path = self.local_path(now);
                    self.rate.on_feedback(now, &fb, &path);
                    self.keyframe |= self.sender.take_keyframe_request();
                }
            }
            _ => {}
        }
        self.receiver.handle_timeout(now);
    }

    /// The decoder refused a frame, or one had to be dropped before it: pictures wait for a
    /// keyframe.
    pub fn handle_decode_failed(&mut self) {
        self.receiver.decode_failed();
    }

    /// The transport refused a datagram; `max_datagram` is what it takes now.
    pub fn handle_send_failed(&mut self, max_datagram: Option<usize>) {
        self.send_errors += 1;
        if let Some(room) = max_datagram {
            self.sender
                .set_datagram_size(room.min(self.config.datagram_size));
        }
    }

    /// Time passes: frames given up on, the controller's tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        self.receiver.set_rtt(self.path.rtt);
        let path = self.local_path(now);
        self.rate.on_tick(now, &path);
        // Near a bottleneck (a full queue seen in the last minute), video is paced at the
        // target: bursts there hold up or drop audio's packets. (At a quarter over it, a real
        // encoder's overshoot and padding filled a 300 kb/s path: 14 and 37 of 260 audio
        // frames lost in two of ten runs.) On a clear path it is not paced: any pace froze
        // more pictures at 20 % random loss and slowed recovery (retransmissions and
        // keyframes wait for it).
        let pace = self
            .rate
            .congested(now)
            .then(|| self.rate.target_bps().max(80_000));
        self.sender.set_pace(pace);
        if let Some((l, _)) = self.ladder.as_mut() {
            l.update(now, self.rate.target_bps());
        }
    }

    /// The next datagram to send, written into `out`: feedback first, then fragments while
    /// the transport's queue has room for them (audio first) and the pace allows.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if self.receiver.poll_feedback(now, out) {
            self.handed += out.len();
            return true;
        }
        if self.path.queued + self.handed >= TRANSPORT_ROOM {
            return false;
        }
        if self.sender.poll_transmit(now, out) {
            self.handed += out.len();
            return true;
        }
        false
    }

    /// The next frame for the decoder, in order.
    pub fn poll_frame(&mut self) -> Option<AssembledFrame> {
        self.receiver.poll_frame()
    }

    /// What the encoder should do; takes the keyframe request.
    pub fn poll_advice(&mut self, now: Instant) -> CaptureAdvice {
        CaptureAdvice {
            plan: self.ladder.as_ref().and_then(|(l, _)| l.plan()),
            keyframe: std::mem::take(&mut self.keyframe),
            backlog: self.send_delay(now),
        }
    }

    /// When [`VideoLink::handle_timeout`] is next due (or a datagram may leave).
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut wake = self.next_tick;
        if let Some(t) = self.receiver.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(t) = self.sender.next_send(now) {
            // The transport's queue full: look again shortly.
            let blocked = self.path.queued + self.handed >= TRANSPORT_ROOM;
            let t = if blocked {
                t.max(now + ROOM_RECHECK)
            } else {
                t
            };
            wake = wake.min(t);
        }
        wake
    }

    /// The figures now.
    pub fn stats(&self, now: Instant) -> VideoLinkStats {
        VideoLinkStats {
            sender: self.sender.stats(),
            receiver: self.receiver.stats(),
            target_bps: self.rate.target_bps(),
            frozen: self.receiver.frozen() && self.receiver.stats().frames > 0,
            send_delay: self.send_delay(now),
            recv_bytes: self.recv_bytes,
            send_errors: self.send_errors,
            rtt: self.path.rtt,
            cwnd: self.path.cwnd,
            paced: self.rate.congested(now),
        }
    }

    fn send_delay(&self, now: Instant) -> Duration {
        self.sender.queue_delay(now) + self.transport_delay()
    }

    /// How long the transport's queue takes to drain. It holds audio's datagrams too, and
    /// drains at what video and audio send together: at video's target alone, one audio
    /// datagram queued on a slow path read as 50 ms of video backlog, and the controller cut
    /// the target to its floor and kept it there.
    fn transport_delay(&self) -> Duration {
        let rate = (self.rate.target_bps() + self.config.audio_bps).max(1);
        Duration::from_secs_f64((self.path.queued + self.handed) as f64 * 8.0 / rate as f64)
    }

    fn local_path(&self, now: Instant) -> LocalPath {
        LocalPath {
            rtt: self.path.rtt,
            cwnd: self.path.cwnd,
            // Only the transport's queue: a queue behind our own pacer means the encoder
            // overshoots, which it is told through skipped pictures, not that the path is
            // short.
            send_delay: self.transport_delay(),
            audio_bps: self.config.audio_bps,
            sending: self.sender.queued() > 0
                || self.sender.stats().frames > 0
                    && self.sender.last_frame_age(now) < Duration::from_millis(500),
        }
    }
}
