//! A call's media parts ([`Parts`]): the codecs, devices and video threads that the call's
//! machine drives. A real call's machine is `core::call::CallMachine` (session and media in
//! one), stepped by the call's one task (`driver.rs`); a link of its own (a test's link in
//! memory) gets an engine task here that steps a `core::call::CallMedia` alone. Every
//! decision is the machine's; the task only feeds it what happened (time, datagrams,
//! encoded pictures, the transport's state) and does what it hands out:
//! - audio work, at once on this task (reading and encoding a 20 ms frame, decoding and
//!   playing one, take well under a millisecond);
//! - datagrams, to the connection;
//! - whole video frames, to the decode thread (video's capture and encoding run on a thread
//!   of their own, see `video.rs`, and their pictures come here).
//!
//! Audio and video are started and stopped apart ([`crate::audio::AudioCall`],
//! [`crate::video::VideoCall`]); both send their orders to the call's task through its
//! [`crate::MediaLink`] (its [`EngineSlot`]), and the parts end with the call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as smpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use extrasafe_core::call::{CallInput, CallMachine, CallMedia, MediaInput, MediaOutput};
use extrasafe_core::media::AudioWork;
use extrasafe_core::video::wire::{KIND_FEEDBACK, KIND_FRAGMENT};
use extrasafe_core::video::{datagram_kind, AssembledFrame, VideoLinkConfig};
use extrasafe_media::io::{AudioSink, AudioSource};
use extrasafe_media::{AudioConfig, AudioReceiver, AudioSender, ReceiverStats, FRAME_SAMPLES};
use tokio::sync::{mpsc, oneshot, watch};

use crate::audio::{AudioLink, AudioStats};
use crate::error::MediaEndError;
use crate::video::{CaptureShared, DecodeShared, EncodedMsg, VideoConfig, VideoStats};

/// Where a link keeps its call's engine, so that audio and video started apart share it.
#[derive(Debug, Default)]
pub struct EngineSlot(Mutex<Option<mpsc::UnboundedSender<Ctl>>>);

/// What the engine is told.
pub(crate) enum Ctl {
    StartAudio(Box<AudioStart>),
    /// Stops the audio part with this id (not a later one).
    StopAudio(u64),
    Mute(u64, bool),
    StartVideo(Box<VideoStart>),
    StopVideo(u64),
}

/// An audio part to run.
pub(crate) struct AudioStart {
    pub id: u64,
    pub config: AudioConfig,
    pub sender: AudioSender,
    pub receiver: AudioReceiver,
    pub source: Box<dyn AudioSource>,
    pub sink: Box<dyn AudioSink>,
    pub stats_tx: watch::Sender<AudioStats>,
    pub done: oneshot::Sender<(AudioStats, Result<(), MediaEndError>)>,
}

/// A video part to run: the ends of its capture and decode threads.
pub(crate) struct VideoStart {
    pub id: u64,
    pub config: VideoConfig,
    pub epoch: Instant,
    pub capture: Arc<Mutex<CaptureShared>>,
    pub decode: Arc<Mutex<DecodeShared>>,
    pub enc_rx: mpsc::Receiver<EncodedMsg>,
    pub dec_tx: smpsc::SyncSender<AssembledFrame>,
    pub dropped: Arc<AtomicBool>,
    pub fail_rx: mpsc::UnboundedReceiver<()>,
    pub stats_tx: watch::Sender<VideoStats>,
    pub done: oneshot::Sender<VideoStats>,
}

impl EngineSlot {
    /// The engine is the call's driver: orders go to it (see `driver.rs`).
    pub(crate) fn install(&self) -> mpsc::UnboundedReceiver<Ctl> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.0.lock().expect("engine slot lock") = Some(tx);
        rx
    }
}

/// A new id for a part.
pub(crate) fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The engine of `link`'s call: the running one, or a new one.
pub(crate) fn attach<L: AudioLink>(link: L) -> mpsc::UnboundedSender<Ctl> {
    let Some(slot) = link.engine_slot() else {
        // A link of its own (a test's): an engine for this part alone.
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(link, rx, true));
        return tx;
    };
    let mut s = slot.0.lock().expect("engine slot lock");
    if let Some(tx) = s.as_ref().filter(|tx| !tx.is_closed()) {
        return tx.clone();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(link, rx, false));
    *s = Some(tx.clone());
    tx
}

/// The audio part while it runs.
struct AudioRun {
    id: u64,
    sender: AudioSender,
    receiver: AudioReceiver,
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
    stats: AudioStats,
    stats_tx: watch::Sender<AudioStats>,
    done: oneshot::Sender<(AudioStats, Result<(), MediaEndError>)>,
    started: Instant,
    udp0: u64,
    udp_recent: crate::audio::RecentRate,
    frames: u64,
    pcm: Vec<i16>,
    out: Vec<i16>,
    /// Figures to publish after this step (every 25 frames played).
    stats_due: bool,
}

/// The video part while it runs (its receivers are apart, for the task's `select!`).
struct VideoRun {
    id: u64,
    epoch: Instant,
    capture: Arc<Mutex<CaptureShared>>,
    decode: Arc<Mutex<DecodeShared>>,
    dec_tx: smpsc::SyncSender<AssembledFrame>,
    dropped: Arc<AtomicBool>,
    stats: VideoStats,
    rates: Rates,
    last_stats: Instant,
    stats_tx: watch::Sender<VideoStats>,
    done: oneshot::Sender<VideoStats>,
}

/// Counters at the previous statistics update, for per-second rates.
#[derive(Default)]
struct Rates {
    at: Option<Instant>,
    sent_bytes: u64,
    sent_frames: u64,
    recv_bytes: u64,
    shown: u64,
}

/// The machine the media parts drive: a call's media alone (a link of its own, a test's),
/// or the whole call ([`CallMachine`], on the call's driver task), which also decides what
/// concerns the session (no media before the call is up, nor after it ended; a datagram
/// from the peer is the peer heard).
pub(crate) trait MediaMachine {
    fn media(&self) -> &CallMedia;
    fn input(&mut self, now: Instant, input: MediaInput<'_>);
    fn start_audio(&mut self, config: extrasafe_core::media::AudioStreamConfig, now: Instant);
    fn stop_audio(&mut self);
    fn start_video(&mut self, config: VideoLinkConfig, epoch: Instant, now: Instant);
    fn stop_video(&mut self);
    fn advice(&mut self, now: Instant) -> Option<extrasafe_core::video::CaptureAdvice>;
}

impl MediaMachine for CallMedia {
    fn media(&self) -> &CallMedia {
        self
    }
    fn input(&mut self, now: Instant, input: MediaInput<'_>) {
        self.handle_input(now, input);
    }
    fn start_audio(&mut self, config: extrasafe_core::media::AudioStreamConfig, now: Instant) {
        CallMedia::start_audio(self, config, now);
    }
    fn stop_audio(&mut self) {
        CallMedia::stop_audio(self);
    }
    fn start_video(&mut self, config: VideoLinkConfig, epoch: Instant, now: Instant) {
        CallMedia::start_video(self, config, epoch, now);
    }
    fn stop_video(&mut self) {
        CallMedia::stop_video(self);
    }
    fn advice(&mut self, now: Instant) -> Option<extrasafe_core::video::CaptureAdvice> {
        self.poll_advice(now)
    }
}

impl MediaMachine for CallMachine {
    fn media(&self) -> &CallMedia {
        CallMachine::media(self)
    }
    fn input(&mut self, now: Instant, input: MediaInput<'_>) {
        self.handle_input(now, CallInput::Media(input));
    }
    fn start_audio(&mut self, config: extrasafe_core::media::AudioStreamConfig, now: Instant) {
        CallMachine::start_audio(self, config, now);
    }
    fn stop_audio(&mut self) {
        CallMachine::stop_audio(self);
    }
    fn start_video(&mut self, config: VideoLinkConfig, epoch: Instant, now: Instant) {
        CallMachine::start_video(self, config, epoch, now);
    }
    fn stop_video(&mut self) {
        CallMachine::stop_video(self);
    }
    fn advice(&mut self, now: Instant) -> Option<extrasafe_core::video::CaptureAdvice> {
        self.poll_advice(now)
    }
}

/// What woke the media.
pub(crate) enum Woke {
    Datagram(Option<bytes::Bytes>),
    Encoded(Option<EncodedMsg>),
    DecodeFailed(Option<()>),
}

/// A call's running media parts: what the devices, codecs and video threads need, beside
/// the machine that decides. The engine task (a link of its own) and the call's driver task
/// both drive their machine through one of these.
#[derive(Default)]
pub(crate) struct Parts {
    audio: Option<AudioRun>,
    video: Option<VideoRun>,
    enc_rx: Option<mpsc::Receiver<EncodedMsg>>,
    fail_rx: Option<mpsc::UnboundedReceiver<()>>,
    /// A part was ever started.
    had_part: bool,
    /// The datagram queue closed (the call is over).
    link_closed: bool,
}

impl Parts {
    /// Whether a part runs.
    pub(crate) fn running(&self) -> bool {
        self.audio.is_some() || self.video.is_some()
    }

    /// The next datagram, encoded picture or decoder failure (cancel-safe). Datagrams are
    /// read once a part has started (until then they wait in the link's queue, for whoever
    /// reads the link itself).
    pub(crate) async fn next<L: AudioLink>(&mut self, link: &L) -> Woke {
        let video = self.video.is_some();
        let (enc, fail) = (&mut self.enc_rx, &mut self.fail_rx);
        let open = !self.link_closed && self.had_part;
        tokio::select! {
            d = link.recv(), if open => Woke::Datagram(d),
            d = link.recv_video(), if video && open => Woke::Datagram(d),
            m = async { enc.as_mut()?.recv().await }, if enc.is_some() => Woke::Encoded(m),
            f = async { fail.as_mut()?.recv().await }, if fail.is_some() => Woke::DecodeFailed(f),
            else => std::future::pending().await,
        }
    }

    /// Takes in what woke the media; `false` once the link closed (the call is over).
    pub(crate) fn on_woke<M: MediaMachine>(&mut self, now: Instant, woke: Woke, m: &mut M) -> bool {
        match woke {
            Woke::Datagram(None) => {
                self.link_closed = true;
                return false;
            }
            Woke::Datagram(Some(d)) => m.input(now, MediaInput::Datagram(&d)),
            Woke::Encoded(Some(e)) => m.input(
                now,
                MediaInput::VideoEncoded {
                    capture: e.capture,
                    data: e.data,
                    keyframe: e.keyframe,
                    source: e.source,
                },
            ),
            // The capture thread is gone: nothing more to encode.
            Woke::Encoded(None) => self.enc_rx = None,
            Woke::DecodeFailed(Some(())) => m.input(now, MediaInput::VideoDecodeFailed),
            Woke::DecodeFailed(None) => self.fail_rx = None,
        }
        true
    }

    /// An order from the call's [`AudioCall`](crate::AudioCall) or
    /// [`VideoCall`](crate::VideoCall).
    pub(crate) fn on_ctl<M: MediaMachine, L: AudioLink>(
        &mut self,
        now: Instant,
        c: Ctl,
        m: &mut M,
        link: &L,
    ) {
        match c {
            Ctl::StartAudio(s) => {
                let s = *s;
                self.had_part = true;
                if let Some(old) = self.audio.take() {
                    finish_audio(old, m, link);
                }
                m.start_audio(s.config.stream_config(), now);
                self.audio = Some(AudioRun {
                    id: s.id,
                    sender: s.sender,
                    receiver: s.receiver,
                    source: s.source,
                    sink: s.sink,
                    stats: AudioStats {
                        remote: link.remote(),
                        ..AudioStats::default()
                    },
                    stats_tx: s.stats_tx,
                    done: s.done,
                    started: Instant::now(),
                    udp0: link.udp_tx_bytes(),
                    udp_recent: crate::audio::RecentRate::default(),
                    frames: 0,
                    pcm: vec![0; FRAME_SAMPLES],
                    out: vec![0; FRAME_SAMPLES],
                    stats_due: false,
                });
            }
            Ctl::StopAudio(id) => {
                if let Some(old) = self.audio.take_if(|a| a.id == id) {
                    finish_audio(old, m, link);
                }
            }
            Ctl::Mute(id, muted) => {
                if let Some(a) = self.audio.as_mut().filter(|a| a.id == id) {
                    a.sender.set_muted(muted);
                }
            }
            Ctl::StartVideo(s) => {
                let s = *s;
                self.had_part = true;
                if let Some(old) = self.video.take() {
                    finish_video(old, m, now);
                }
                let path = link.path();
                let datagram_size = path
                    .and_then(|p| p.max_datagram)
                    .unwrap_or(s.config.datagram_size)
                    .min(s.config.datagram_size);
                m.start_video(
                    VideoLinkConfig {
                        rate: s.config.rate.clone(),
                        audio_bps: s.config.audio_bps,
                        datagram_size,
                    },
                    s.epoch,
                    now,
                );
                self.enc_rx = Some(s.enc_rx);
                self.fail_rx = Some(s.fail_rx);
                self.video = Some(VideoRun {
                    id: s.id,
                    epoch: s.epoch,
                    capture: s.capture,
                    decode: s.decode,
                    dec_tx: s.dec_tx,
                    dropped: s.dropped,
                    stats: VideoStats::default(),
                    rates: Rates::default(),
                    last_stats: now,
                    stats_tx: s.stats_tx,
                    done: s.done,
                });
            }
            Ctl::StopVideo(id) => {
                if let Some(old) = self.video.take_if(|v| v.id == id) {
                    finish_video(old, m, now);
                    self.enc_rx = None;
                    self.fail_rx = None;
                }
            }
        }
    }

    /// Before the machine's outputs are taken: the transport's state, for video (reading it
    /// locks the connection).
    pub(crate) fn before<M: MediaMachine, L: AudioLink>(&self, now: Instant, m: &mut M, link: &L) {
        if let Some(p) = self.video.as_ref().and_then(|_| link.path()) {
            m.input(now, MediaInput::Path(p));
        }
    }

    /// Does one thing the machine handed out.
    pub(crate) fn output<M: MediaMachine, L: AudioLink>(
        &mut self,
        now: Instant,
        out: MediaOutput,
        m: &mut M,
        link: &L,
    ) {
        match out {
            MediaOutput::Audio(AudioWork::TakeArrived { max }) => {
                for _ in 0..max {
                    let Some(d) = link.try_recv() else { break };
                    m.input(now, MediaInput::Datagram(&d));
                }
            }
            MediaOutput::Audio(AudioWork::Encode {
                catching_up,
                bitrate,
            }) => {
                let Some(a) = self.audio.as_mut() else {
                    m.input(now, MediaInput::AudioNotCaptured);
                    return;
                };
                // A device that stalled with us has nothing to catch up with: the frames it
                // never captured are not made of silence.
                if catching_up && !a.source.ready() {
                    m.input(now, MediaInput::AudioNotCaptured);
                    return;
                }
                if !a.source.read_frame(&mut a.pcm) {
                    a.stats.source_done = true;
                }
                // The rate the stream's mode calls for (a failure keeps the one it had).
                let _ = a.sender.set_bitrate(bitrate);
                // An encoder error still yields a datagram of the usual size.
                let e = a.sender.encode(&a.pcm);
                m.input(
                    now,
                    MediaInput::AudioEncoded {
                        data: e.data,
                        speech: e.speech,
                        muted: e.muted,
                    },
                );
            }
            // Every owed frame is played: a recording keeps the call's length.
            MediaOutput::Audio(AudioWork::Play(playout)) => {
                let Some(a) = self.audio.as_mut() else { return };
                a.receiver.decode(playout, &mut a.out);
                a.sink.write_frame(&a.out);
                // Exactly what the speaker is sent: the echo canceller's reference.
                a.sender.far_end(&a.out);
                a.frames += 1;
                if a.frames % 25 == 0 {
                    a.stats_due = true;
                }
            }
            MediaOutput::Transmit(d) => {
                let is_video = matches!(datagram_kind(&d), Some(KIND_FRAGMENT | KIND_FEEDBACK));
                let sent = link.send(&d);
                match (is_video, self.audio.as_mut()) {
                    (true, _) => {
                        if sent.is_err() {
                            let max_datagram = link.path().and_then(|p| p.max_datagram);
                            m.input(now, MediaInput::VideoSendFailed { max_datagram });
                        }
                    }
                    (false, Some(a)) => match sent {
                        Ok(()) => {
                            a.stats.sent += 1;
                            a.stats.sent_bytes += d.len() as u64;
                        }
                        Err(_) => a.stats.send_errors += 1,
                    },
                    (false, None) => {}
                }
            }
            MediaOutput::Frame(f) => {
                let Some(v) = self.video.as_ref() else { return };
                if let Err(smpsc::TrySendError::Full(_)) = v.dec_tx.try_send(f) {
                    // The decoder is behind (more than this machine can decode): the frame
                    // is dropped, so everything after it must wait for a keyframe.
                    v.dropped.store(true, Ordering::SeqCst);
                    m.input(now, MediaInput::VideoDecodeFailed);
                }
            }
        }
    }

    /// After the machine's outputs were done: the encoder's advice, the figures; returns
    /// when the media next needs the machine's timeout (`None`: no part runs).
    pub(crate) fn after<M: MediaMachine, L: AudioLink>(
        &mut self,
        now: Instant,
        m: &mut M,
        link: &L,
    ) -> Option<Instant> {
        if let Some(a) = self.audio.as_mut().filter(|a| a.stats_due) {
            a.stats_due = false;
            a.stats.device_fault = a.source.fault().or_else(|| a.sink.fault());
            fill_audio(a, m.media(), link);
            let _ = a.stats_tx.send(a.stats.clone());
        }
        if let Some(v) = &mut self.video {
            if let Some(advice) = m.advice(now) {
                if let Ok(mut c) = v.capture.lock() {
                    c.plan = advice.plan;
                    c.backlog = advice.backlog;
                    c.keyframe |= advice.keyframe;
                }
            }
            if now.duration_since(v.last_stats) >= Duration::from_millis(500) {
                v.last_stats = now;
                fill_video(v, m.media(), now);
                let _ = v.stats_tx.send(v.stats.clone());
            }
        }
        // Audio's times are exact (its pace is what an observer sees); video's are looked at
        // no more often than every half millisecond.
        let media = m.media();
        let a = self
            .audio
            .as_ref()
            .and(media.audio())
            .map(|a| a.poll_timeout());
        let v = self
            .video
            .as_ref()
            .and(media.video())
            .map(|v| v.poll_timeout(now).max(now + Duration::from_micros(500)));
        match (a, v) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }

    /// Ends every part with its final figures (the call is over).
    pub(crate) fn finish<M: MediaMachine, L: AudioLink>(
        &mut self,
        now: Instant,
        m: &mut M,
        link: &L,
    ) {
        if let Some(a) = self.audio.take() {
            finish_audio(a, m, link);
        }
        if let Some(v) = self.video.take() {
            finish_video(v, m, now);
        }
        self.enc_rx = None;
        self.fail_rx = None;
    }
}

/// The engine of a link of its own: runs until its link closes, or, alone (`solo`), until
/// its part stops. (A call's media runs on the call's driver task instead: see
/// `driver.rs`.)
async fn run<L: AudioLink>(link: L, mut ctl: mpsc::UnboundedReceiver<Ctl>, solo: bool) {
    let mut media = CallMedia::new();
    let mut parts = Parts::default();
    let mut ctl_open = true;
    let mut moves = link.moves();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        enum W {
            Ctl(Option<Ctl>),
            Timer,
            Media(Woke),
        }
        let woke = tokio::select! {
            // Orders first; then the clock before arriving datagrams, so that a flood of them
            // cannot starve the sender or the playout.
            biased;
            c = ctl.recv(), if ctl_open => W::Ctl(c),
            _ = &mut sleep => W::Timer,
            w = parts.next(&link) => W::Media(w),
        };
        let now = tokio::time::Instant::now().into_std();
        match woke {
            W::Ctl(None) => ctl_open = false,
            W::Ctl(Some(c)) => parts.on_ctl(now, c, &mut media, &link),
            W::Timer => {}
            W::Media(w) => {
                if !parts.on_woke(now, w, &mut media) {
                    break;
                }
            }
        }
        if !parts.running() && ((solo && parts.had_part) || !ctl_open) {
            break;
        }
        if link.moves() != moves {
            moves = link.moves();
            media.handle_input(now, MediaInput::NewPath);
        }
        media.handle_input(now, MediaInput::Timeout);
        parts.before(now, &mut media, &link);
        while let Some(out) = media.poll_output(now) {
            parts.output(now, out, &mut media, &link);
        }
        let wake = parts
            .after(now, &mut media, &link)
            .unwrap_or(now + Duration::from_secs(3600));
        sleep.as_mut().reset(tokio::time::Instant::from_std(wake));
    }
    let now = tokio::time::Instant::now().into_std();
    parts.finish(now, &mut media, &link);
}

/// Ends the audio part: final figures, and the sink finished (a file sink writes its file)
/// on a blocking thread, not on this task, which may carry the call's video on.
fn finish_audio<M: MediaMachine, L: AudioLink>(mut a: AudioRun, m: &mut M, link: &L) {
    fill_audio(&mut a, m.media(), link);
    m.stop_audio();
    let _ = a.stats_tx.send(a.stats.clone());
    let (mut sink, done, stats) = (a.sink, a.done, a.stats);
    tokio::task::spawn_blocking(move || {
        let result = sink.finish().map_err(MediaEndError::from);
        let _ = done.send((stats, result));
    });
}

/// Ends the video part with its final figures.
fn finish_video<M: MediaMachine>(mut v: VideoRun, m: &mut M, now: Instant) {
    fill_video(&mut v, m.media(), now);
    m.stop_video();
    let _ = v.stats_tx.send(v.stats.clone());
    let _ = v.done.send(v.stats);
}

fn fill_audio<L: AudioLink>(a: &mut AudioRun, media: &CallMedia, link: &L) {
    let Some(stream) = media.audio() else { return };
    let s = stream.stats();
    let stats = &mut a.stats;
    stats.elapsed = a.started.elapsed();
    stats.frames_due = s.frames_due;
    stats.frames_caught_up = s.frames_caught_up;
    stats.frames_dropped = s.frames_dropped;
    stats.frames_unsent = s.frames_unsent;
    stats.voice_bitrate = s.bitrate;
    stats.copies = s.copies;
    stats.mode_switches = s.mode_switches;
    stats.received = ReceiverStats {
        datagrams: s.datagrams_in,
        malformed: s.malformed,
        bytes: s.bytes_in,
        decode_errors: a.receiver.stats().decode_errors,
    };
    let jitter = stream.jitter();
    stats.jitter = jitter.stats();
    stats.target_delay = jitter.target_delay();
    stats.network_jitter = jitter.jitter();
    stats.buffered = jitter.buffered();
    stats.rtt = link.rtt();
    stats.echo = a.sender.echo_stats();
    stats.udp_tx_bytes = link.udp_tx_bytes().saturating_sub(a.udp0);
    stats.udp_tx_recent_bps = a.udp_recent.update(Instant::now(), stats.udp_tx_bytes);
}

fn fill_video(v: &mut VideoRun, media: &CallMedia, now: Instant) {
    let Some(machine) = media.video() else { return };
    let m = machine.stats(now);
    let stats = &mut v.stats;
    stats.elapsed = now.saturating_duration_since(v.epoch);
    stats.sender = m.sender;
    stats.receiver = m.receiver;
    stats.target_bps = m.target_bps;
    stats.frozen = m.frozen;
    stats.rtt = m.rtt;
    stats.cwnd = m.cwnd;
    stats.send_delay = m.send_delay;
    stats.send_errors = m.send_errors;
    let recv_bytes = m.recv_bytes;
    if let Ok(c) = v.capture.lock() {
        stats.sending = c.sending;
        stats.send_size = c.size.filter(|_| c.sending);
        stats.skipped = c.skipped;
        stats.fault = c.fault.clone();
        stats.encode_time = Duration::from_micros(c.encode_us as u64);
    }
    if let Ok(d) = v.decode.lock() {
        stats.recv_size = d.size;
        stats.shown = d.shown;
        stats.decode_errors = d.errors;
        stats.decode_time = Duration::from_micros(d.decode_us as u64);
    }
    let rates = &mut v.rates;
    if let Some(at) = rates.at {
        let dt = (now - at).as_secs_f64().max(0.001);
        stats.send_bps = ((stats.sender.bytes - rates.sent_bytes) as f64 * 8.0 / dt) as u64;
        stats.send_fps = (stats.sender.frames - rates.sent_frames) as f64 / dt;
        stats.recv_bps = ((recv_bytes - rates.recv_bytes) as f64 * 8.0 / dt) as u64;
        stats.recv_fps = (stats.shown - rates.shown) as f64 / dt;
    }
    *rates = Rates {
        at: Some(now),
        sent_bytes: stats.sender.bytes,
        sent_frames: stats.sender.frames,
        recv_bytes,
        shown: stats.shown,
    };
}
