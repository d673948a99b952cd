//! Runs a call's video. Three parts, so that neither codec ever stalls the network side:
//! - a capture thread takes a picture at each tick of the source's clock, scales it to the
//!   layer in force and encodes it, as the call's sans-IO `core::video::VideoLink` advises
//!   (layer, bitrate, keyframe, or skip the picture while video waits too long to leave);
//! - the call's media engine (`engine.rs`, shared with its audio), which only drives the
//!   call's `core::call::CallMedia`: encoded frames, the call's datagrams, QUIC's state and
//!   time in; datagrams, frames and advice out;
//! - a decode thread decodes the frames the machine releases and shows them.
//!
//! Audio keeps priority (the machine's decision, tested on virtual time in core): video
//! leaves QUIC's datagram queue nearly empty (its own queue waits instead), is paced near a
//! bottleneck, and the controller leaves audio's share of the congestion window free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as smpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use extrasafe_core::video::{
    AssembledFrame, CaptureAdvice, EncoderPlan, RateConfig, VideoReceiverStats, VideoSenderStats,
};
use extrasafe_video::{
    Effort, EncoderSettings, Frame, H264Decoder, H264Encoder, VideoError, VideoSink, VideoSource,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::call::MediaLink;
use crate::engine;
use crate::error::MediaEndError;

/// Frames waiting for the decoder; beyond this the decoder cannot keep up.
const DECODE_QUEUE: usize = 16;

/// How a call sends video.
#[derive(Clone, Debug)]
pub struct VideoConfig {
    /// Bitrate bounds and start.
    pub rate: RateConfig,
    /// Encoder threads.
    pub threads: u16,
    /// Encoder effort.
    pub effort: Effort,
    /// Bits per second the call's audio sends (kept free for it).
    pub audio_bps: u64,
    /// Largest video datagram (smaller if the path takes less).
    pub datagram_size: usize,
    /// The rate a sink counts frames at: frame k is the picture captured k/fps s after the
    /// sender's video began.
    pub display_fps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            rate: RateConfig::default(),
            threads: 1,
            effort: Effort::Low,
            // Audio's default datagrams (320 bytes, 50 a second) with QUIC's headers.
            audio_bps: 150_000,
            datagram_size: 1200,
            display_fps: 30,
        }
    }
}

/// A video problem the person should hear about (the front end words it).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VideoFault {
    /// The source (camera, screen, file) failed and was dropped: video from it stopped.
    SourceStopped(Arc<VideoError>),
    /// The encoder failed (tried again at the next picture).
    EncoderFailed(Arc<extrasafe_video::CodecError>),
}

/// A snapshot of a call's video, for the stats line.
#[derive(Clone, Debug, Default)]
pub struct VideoStats {
    /// Time since video started.
    pub elapsed: Duration,
    /// A source is attached and sending.
    pub sending: bool,
    /// Size of the pictures being encoded.
    pub send_size: Option<(u32, u32)>,
    /// Frames encoded per second, over the last second or so.
    pub send_fps: f64,
    /// Video bits per second sent (datagrams, padding included).
    pub send_bps: u64,
    /// The controller's target.
    pub target_bps: u64,
    /// Pictures not encoded (frame rate of the layer, rate control, or a long queue).
    pub skipped: u64,
    /// Size of the pictures arriving.
    pub recv_size: Option<(u32, u32)>,
    /// Frames shown per second.
    pub recv_fps: f64,
    /// Video bits per second received.
    pub recv_bps: u64,
    /// Frames shown in all.
    pub shown: u64,
    /// The picture is frozen, waiting for a keyframe.
    pub frozen: bool,
    /// Frames the decoder refused.
    pub decode_errors: u64,
    /// Mean time to encode a picture (scaling included) over the last second or so.
    pub encode_time: Duration,
    /// Mean time to decode a frame and hand it to the sink.
    pub decode_time: Duration,
    /// Sender counters.
    pub sender: VideoSenderStats,
    /// Receiver counters.
    pub receiver: VideoReceiverStats,
    /// A problem with the source or the encoder, for the person (the latest).
    pub fault: Option<VideoFault>,
    /// The path's round trip.
    pub rtt: Duration,
    /// QUIC's congestion window, bytes.
    pub cwnd: u64,
    /// How long video waits to leave.
    pub send_delay: Duration,
    /// Datagrams QUIC refused (larger than the path took at that moment).
    pub send_errors: u64,
}

/// What the capture thread and the engine share: the machine's advice, and figures.
#[derive(Default)]
pub(crate) struct CaptureShared {
    pub(crate) plan: Option<EncoderPlan>,
    pub(crate) keyframe: bool,
    pub(crate) backlog: Duration,
    pub(crate) skipped: u64,
    pub(crate) size: Option<(u32, u32)>,
    pub(crate) fault: Option<VideoFault>,
    pub(crate) sending: bool,
    /// Smoothed encode time, µs.
    pub(crate) encode_us: f64,
}

/// An encoded picture, from the capture thread to the engine.
pub(crate) struct EncodedMsg {
    pub(crate) data: Vec<u8>,
    pub(crate) keyframe: bool,
    pub(crate) capture: Instant,
    pub(crate) source: (u32, u32, u32),
}

/// The decode thread's figures.
#[derive(Default)]
pub(crate) struct DecodeShared {
    pub(crate) size: Option<(u32, u32)>,
    pub(crate) shown: u64,
    pub(crate) errors: u64,
    /// Smoothed decode time, µs.
    pub(crate) decode_us: f64,
    sink_error: Option<VideoError>,
}

/// A running video stream; stop it to finish the sink and get the final figures.
pub struct VideoCall {
    id: u64,
    engine: mpsc::UnboundedSender<engine::Ctl>,
    done: Option<oneshot::Receiver<VideoStats>>,
    sources: smpsc::Sender<Ctl>,
    stats: watch::Receiver<VideoStats>,
    capture: Option<std::thread::JoinHandle<()>>,
    decode: Option<std::thread::JoinHandle<Result<(), MediaEndError>>>,
    quit: Arc<AtomicBool>,
}

impl std::fmt::Debug for VideoCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCall").finish_non_exhaustive()
    }
}

impl VideoCall {
    /// Starts video on `link`: sends `source` (none: receive only) and shows what arrives
    /// in `sink`.
    pub fn start(
        link: MediaLink,
        config: VideoConfig,
        source: Option<Box<dyn VideoSource>>,
        sink: Box<dyn VideoSink>,
    ) -> Self {
        let epoch = Instant::now();
        let quit = Arc::new(AtomicBool::new(false));
        let capture_shared = Arc::new(Mutex::new(CaptureShared::default()));
        let decode_shared = Arc::new(Mutex::new(DecodeShared::default()));
        let (src_tx, src_rx) = smpsc::channel();
        let _ = src_tx.send(Ctl::Main(source));
        let (enc_tx, enc_rx) = mpsc::channel::<EncodedMsg>(8);
        let (dec_tx, dec_rx) = smpsc::sync_channel::<AssembledFrame>(DECODE_QUEUE);
        let dropped = Arc::new(AtomicBool::new(false));
        let (fail_tx, fail_rx) = mpsc::unbounded_channel::<()>();
        let capture = {
            let (shared, quit, cfg) = (capture_shared.clone(), quit.clone(), config.clone());
            std::thread::Builder::new()
                .name("video-capture".into())
                .spawn(move || capture_loop(src_rx, shared, enc_tx, quit, cfg, epoch))
                .expect("spawn capture thread")
        };
        let decode = {
            let (shared, fps) = (decode_shared.clone(), config.display_fps.max(1));
            std::thread::Builder::new()
                .name("video-decode".into())
                .spawn({
                    let dropped = dropped.clone();
                    move || decode_loop(dec_rx, sink, fail_tx, shared, fps, dropped)
                })
                .expect("spawn decode thread")
        };
        let (stats_tx, stats_rx) = watch::channel(VideoStats::default());
        let (done_tx, done_rx) = oneshot::channel();
        let id = engine::next_id();
        let engine = engine::attach(link);
        let _ = engine.send(engine::Ctl::StartVideo(Box::new(engine::VideoStart {
            id,
            config,
            epoch,
            capture: capture_shared,
            decode: decode_shared,
            enc_rx,
            dec_tx,
            dropped,
            fail_rx,
            stats_tx,
            done: done_tx,
        })));
        Self {
            id,
            engine,
            done: Some(done_rx),
            sources: src_tx,
            stats: stats_rx,
            capture: Some(capture),
            decode: Some(decode),
            quit,
        }
    }

    /// Sends another source from now on, or none (`None`). Receiving goes on either way.
    pub fn set_source(&self, source: Option<Box<dyn VideoSource>>) {
        let _ = self.sources.send(Ctl::Main(source));
    }

    /// Shares `screen` in place of the main source (which is kept, unread), or with `None`
    /// goes back to the main source.
    pub fn share(&self, screen: Option<Box<dyn VideoSource>>) {
        let _ = self.sources.send(Ctl::Share(screen));
    }

    /// Pauses sending (camera off: nothing is read or sent) or resumes it.
    pub fn set_paused(&self, paused: bool) {
        let _ = self.sources.send(Ctl::Pause(paused));
    }

    /// The latest figures (updated every half second).
    pub fn stats(&self) -> VideoStats {
        self.stats.borrow().clone()
    }

    /// Stops video, finishes the sink (a file sink writes its file) and returns the final
    /// figures and the sink's result.
    pub async fn stop(mut self) -> (VideoStats, Result<(), MediaEndError>) {
        self.quit.store(true, Ordering::Relaxed);
        let _ = self.engine.send(engine::Ctl::StopVideo(self.id));
        let stats = match self.done.take() {
            Some(done) => done.await.unwrap_or_default(),
            None => VideoStats::default(),
        };
        let (capture, decode) = (self.capture.take(), self.decode.take());
        let joined = tokio::task::spawn_blocking(move || {
            // A source blocked in a read (a pipe whose writer stalled) must not hold up the
            // hang-up: after a second the capture thread is left to end with its read.
            if let Some(c) = capture {
                let until = Instant::now() + Duration::from_secs(1);
                while !c.is_finished() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if c.is_finished() {
                    let _ = c.join();
                }
            }
            decode.map_or(Ok(()), |d| d.join().unwrap_or(Err(MediaEndError::Stopped)))
        })
        .await
        .unwrap_or(Err(MediaEndError::Stopped));
        (stats, joined)
    }
}

impl Drop for VideoCall {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        // Dropped without `stop`: the engine lets the video part go all the same.
        let _ = self.engine.send(engine::Ctl::StopVideo(self.id));
    }
}

/// What the capture thread is told.
enum Ctl {
    Main(Option<Box<dyn VideoSource>>),
    Share(Option<Box<dyn VideoSource>>),
    Pause(bool),
}

/// The sources the capture thread holds, and which one it reads.
#[derive(Default)]
struct Sources {
    main: Option<Box<dyn VideoSource>>,
    shared: Option<Box<dyn VideoSource>>,
    paused: bool,
}

impl Sources {
    fn apply(&mut self, c: Ctl) {
        match c {
            Ctl::Main(s) => self.main = s,
            Ctl::Share(s) => self.shared = s,
            Ctl::Pause(p) => self.paused = p,
        }
    }
    fn active(&mut self) -> Option<&mut Box<dyn VideoSource>> {
        if self.paused {
            return None;
        }
        match self.shared {
            Some(ref mut s) => Some(s),
            None => self.main.as_mut(),
        }
    }
    /// The active source ended or failed.
    fn drop_active(&mut self) {
        if self.shared.take().is_none() {
            self.main = None;
        }
    }
}

fn capture_loop(
    sources: smpsc::Receiver<Ctl>,
    shared: Arc<Mutex<CaptureShared>>,
    out: mpsc::Sender<EncodedMsg>,
    quit: Arc<AtomicBool>,
    config: VideoConfig,
    epoch: Instant,
) {
    let mut source = Sources::default();
    let mut waited: Option<Ctl> = None;
    let mut encoder: Option<(H264Encoder, (u32, u32, u8, u64))> = None;
    let mut next = Instant::now();
    let set = |f: &dyn Fn(&mut CaptureShared)| {
        if let Ok(mut s) = shared.lock() {
            f(&mut s)
        }
    };
    while !quit.load(Ordering::Relaxed) {
        let mut changed = false;
        for c in waited.take().into_iter().chain(sources.try_iter()) {
            source.apply(c);
            changed = true;
        }
        if changed {
            encoder = None; // a new source starts with a keyframe
            next = Instant::now();
            let on = source.active().is_some();
            set(&|c| c.sending = on);
        }
        let Some(src) = source.active() else {
            // Nothing to send: wait for a source (applied at the top of the loop).
            match sources.recv_timeout(Duration::from_millis(50)) {
                Ok(c) => waited = Some(c),
                Err(smpsc::RecvTimeoutError::Timeout) => {}
                Err(smpsc::RecvTimeoutError::Disconnected) => return,
            }
            continue;
        };
        let fps = src.fps().max(1);
        let interval = Duration::from_secs(1) / fps;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > interval * 2 {
            next = now; // fell behind (a slow source or encoder): no catching up in a burst
        }
        let capture = next;
        next += interval;
        let index = (capture - epoch).as_micros() as u64 * fps as u64 / 1_000_000;
        let frame = match src.next_frame(index) {
            Ok(Some(f)) => f,
            Ok(None) => {
                source.drop_active();
                let on = source.active().is_some();
                set(&|c| c.sending = on);
                continue;
            }
            Err(e) => {
                let fault = VideoFault::SourceStopped(Arc::new(e));
                source.drop_active();
                let on = source.active().is_some();
                set(&|c| {
                    c.fault = Some(fault.clone());
                    c.sending = on
                });
                continue;
            }
        };
        let (w, h) = (frame.width, frame.height);
        let screen = src.is_screen();
        let advice = match shared.lock() {
            Ok(mut s) => CaptureAdvice {
                plan: s.plan,
                keyframe: std::mem::take(&mut s.keyframe),
                backlog: s.backlog,
            },
            Err(_) => return,
        };
        let keyframe = advice.keyframe;
        // The layer's frame rate, and none while video waits too long to leave.
        if !advice.admits(index, fps) {
            set(&|c| c.skipped += 1);
            if keyframe {
                set(&|c| c.keyframe = true); // still wanted
            }
            continue;
        }
        let plan = advice.plan.unwrap_or(EncoderPlan {
            layer: extrasafe_core::video::Layer {
                divisor: 1,
                fps: fps as u8,
            },
            bitrate: config.rate.start_bps,
        });
        let started = Instant::now();
        // The full-size layer encodes the picture as it came: no copy per frame.
        let scaled;
        let pic: &Frame = if plan.layer.divisor > 1 {
            scaled = frame.downscale(plan.layer.divisor as u32);
            &scaled
        } else {
            &frame
        };
        let key = (pic.width, pic.height, plan.layer.fps, plan.bitrate);
        if encoder.as_ref().is_none_or(|(_, k)| *k != key) {
            let settings = EncoderSettings {
                bitrate: plan.bitrate.min(u32::MAX as u64) as u32,
                fps: (fps as f32).min(plan.layer.fps as f32),
                threads: config.threads,
                effort: config.effort,
                screen,
                analysis: false,
            };
            match H264Encoder::new(settings) {
                Ok(e) => encoder = Some((e, key)),
                Err(e) => {
                    // Tried again at the next picture; the person is told.
                    let fault = VideoFault::EncoderFailed(Arc::new(e));
                    set(&|c| c.fault = Some(fault.clone()));
                    continue;
                }
            }
        }
        let (enc, _) = encoder.as_mut().expect("just made");
        if keyframe {
            enc.request_keyframe();
        }
        let encoded = enc.encode(pic);
        let took = started.elapsed().as_micros() as f64;
        set(&|c| {
            c.encode_us = if c.encode_us == 0.0 {
                took
            } else {
                0.9 * c.encode_us + 0.1 * took
            }
        });
        match encoded {
            Ok(Some(e)) => {
                set(&|c| c.size = Some((pic.width, pic.height)));
                let msg = EncodedMsg {
                    data: e.data,
                    keyframe: e.keyframe,
                    capture,
                    source: (w, h, fps),
                };
                if out.blocking_send(msg).is_err() {
                    return;
                }
            }
            Ok(None) => set(&|c| c.skipped += 1),
            Err(e) => {
                let fault = VideoFault::EncoderFailed(Arc::new(e));
                set(&|c| c.fault = Some(fault.clone()));
                encoder = None;
            }
        }
    }
}

fn decode_loop(
    frames: smpsc::Receiver<AssembledFrame>,
    mut sink: Box<dyn VideoSink>,
    failed: mpsc::UnboundedSender<()>,
    shared: Arc<Mutex<DecodeShared>>,
    fps: u32,
    dropped: Arc<AtomicBool>,
) -> Result<(), MediaEndError> {
    let mut decoder = H264Decoder::new().map_err(VideoError::from)?;
    // After a failure, frames already on their way depend on the broken one: only a
    // keyframe may be shown next.
    let mut broken = false;
    for f in frames {
        // A frame was dropped before reaching us: later ones may depend on it.
        broken |= dropped.swap(false, Ordering::SeqCst);
        if broken && !f.keyframe {
            continue;
        }
        let started = Instant::now();
        match decoder.decode(&f.data) {
            Ok(Some(pic)) => {
                broken = false;
                let index = (f.capture_ms as u64 * fps as u64 + 500) / 1000;
                let shown = sink.show(&pic, index);
                let took = started.elapsed().as_micros() as f64;
                if let Ok(mut s) = shared.lock() {
                    s.decode_us = if s.decode_us == 0.0 {
                        took
                    } else {
                        0.9 * s.decode_us + 0.1 * took
                    };
                    s.size = Some((pic.width, pic.height));
                    s.shown += 1;
                    if let Err(e) = shown {
                        s.sink_error.get_or_insert(e);
                    }
                }
            }
            Ok(None) => {}
            Err(_) => {
                broken = true;
                if let Ok(mut s) = shared.lock() {
                    s.errors += 1;
                }
                let _ = failed.send(());
            }
        }
    }
    let err = shared.lock().ok().and_then(|mut s| s.sink_error.take());
    sink.finish()?;
    err.map_or(Ok(()), |e| Err(e.into()))
}
