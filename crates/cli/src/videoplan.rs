//! What video a call carries, checked before dialling: a missing file, an unreadable Y4M
//! header or an unreachable X display fails at once, not after the other person answered.

use std::path::PathBuf;

use extrasafe_core::video::RateConfig;
use extrasafe_net::video::{VideoCall, VideoConfig, VideoStats};
use extrasafe_net::video_media::{
    NoVideo, RawI420, Screen, TestPattern, VideoSink, VideoSource, Y4mFile, Y4mSink,
};
use extrasafe_net::Call;

use crate::args::VideoArgs;
use crate::exit::{Failure, USAGE};
use crate::output::Output;

/// How long a call waits for the writer of a `--video` pipe.
const PIPE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Debug)]
enum Send {
    Test,
    Screen(Option<u32>),
    Camera(String),
    Y4m(PathBuf),
    Raw(PathBuf),
}

#[derive(Clone, Debug)]
pub struct VideoPlan {
    send: Option<Send>,
    out: Option<PathBuf>,
    size: (u32, u32),
    fps: u32,
    max_bps: u64,
}

/// Parses `WxH` (even sides, 64 to 4096).
pub fn parse_size(s: &str) -> Result<(u32, u32), Failure> {
    let bad = || {
        Failure::new(
            USAGE,
            format!("Video size `{s}` is not WIDTHxHEIGHT with even sides from 64 to 4096 (e.g. 1280x720)."),
        )
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(64..=4096).contains(&w) || !(64..=4096).contains(&h) || w % 2 == 1 || h % 2 == 1 {
        return Err(bad());
    }
    Ok((w, h))
}

impl VideoPlan {
    pub fn from_args(a: &VideoArgs) -> Result<Self, Failure> {
        let size = if a.video.is_some() {
            parse_size(&a.video_size)?
        } else {
            (1280, 720)
        };
        let send = match a.video.as_deref() {
            None => None,
            Some("test") => Some(Send::Test),
            Some("screen") => Some(Send::Screen(None)),
            Some(s) if s.starts_with("screen:") => {
                let id = &s["screen:".len()..];
                let parsed = match id.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => id.parse(),
                };
                Some(Send::Screen(Some(parsed.map_err(|_| {
                    Failure::new(
                        USAGE,
                        format!("`{id}` is not a window ID (decimal or 0x…, as `xwininfo` shows)."),
                    )
                })?)))
            }
            Some("camera") => Some(Send::Camera("/dev/video0".into())),
            Some(s) if s.starts_with("camera:") => Some(Send::Camera(s["camera:".len()..].into())),
            Some(p) if p.ends_with(".y4m") => Some(Send::Y4m(p.into())),
            Some(p) => Some(Send::Raw(p.into())),
        };
        let plan = Self {
            send,
            out: a.video_out.clone(),
            size,
            fps: a.video_fps.max(1),
            max_bps: a.video_max_kbps as u64 * 1000,
        };
        // Open once now: fails before dialling. (A pipe is opened only when the call starts:
        // opening it here would consume its writer's first pictures.)
        match &plan.send {
            Some(Send::Raw(p)) if !p.exists() => {
                return Err(Failure::new(
                    USAGE,
                    format!("Cannot use --video {}: it does not exist.", p.display()),
                ))
            }
            Some(Send::Raw(_)) | None => {}
            Some(_) => {
                plan.source()?;
            }
        }
        Ok(plan)
    }

    /// The call carries video at all.
    pub fn enabled(&self) -> bool {
        self.send.is_some() || self.out.is_some()
    }

    pub fn record_path(&self) -> Option<&PathBuf> {
        self.out.as_ref()
    }

    fn source(&self) -> Result<Box<dyn VideoSource>, Failure> {
        let fail = |e: extrasafe_net::video_media::VideoError| {
            Failure::new(USAGE, format!("Cannot send video: {e}."))
        };
        Ok(
            match self.send.as_ref().expect("only called with a source") {
                Send::Test => Box::new(TestPattern::new(self.size.0, self.size.1, self.fps)),
                Send::Screen(w) => Box::new(Screen::open(*w, self.fps).map_err(fail)?),
                Send::Y4m(p) => Box::new(Y4mFile::open(p).map_err(fail)?),
                Send::Camera(dev) => Box::new(
                    extrasafe_net::video_media::camera::Camera::open(
                        dev,
                        self.size.0,
                        self.size.1,
                        self.fps,
                    )
                    .map_err(fail)?,
                ),
                Send::Raw(p) => {
                    let f = std::fs::File::open(p).map_err(|e| fail(e.into()))?;
                    Box::new(RawI420::new(f, self.size.0, self.size.1, self.fps).map_err(fail)?)
                }
            },
        )
    }

    /// A source for sharing the screen mid-call.
    pub fn screen(&self) -> Result<Box<dyn VideoSource>, String> {
        Screen::open(None, self.fps.min(15))
            .map(|s| Box::new(s) as Box<dyn VideoSource>)
            .map_err(|e| e.to_string())
    }

    /// Starts video on a connected call; `true` with it when it sends a picture (not only
    /// receives).
    pub async fn start(&self, call: &Call, out: Output) -> Option<(VideoCall, bool)> {
        if !self.enabled() {
            return None;
        }
        let source = match &self.send {
            None => None,
            Some(_) => {
                let me = self.clone();
                // Opening a pipe blocks until its writer is there; the call goes on meanwhile
                // only up to a point.
                let open = tokio::task::spawn_blocking(move || me.source());
                match tokio::time::timeout(PIPE_WAIT, open).await {
                    Ok(Ok(Ok(s))) => Some(s),
                    Ok(Ok(Err(e))) => {
                        out.warn(&e.message);
                        None
                    }
                    Ok(Err(_)) => None,
                    Err(_) => {
                        out.warn(&format!(
                            "Nothing writes to the --video pipe after {} s: this call sends no video. \
                             Start the program that writes it before calling.",
                            PIPE_WAIT.as_secs()
                        ));
                        None
                    }
                }
            }
        };
        let sink: Box<dyn VideoSink> = match &self.out {
            Some(p) => Box::new(Y4mSink::new(p.clone(), 30)),
            None => Box::new(NoVideo),
        };
        let config = VideoConfig {
            rate: RateConfig {
                max_bps: self.max_bps,
                start_bps: self.max_bps.min(800_000),
                ..RateConfig::default()
            },
            ..VideoConfig::default()
        };
        let sends = source.is_some();
        Some((VideoCall::start(call.media(), config, source, sink), sends))
    }
}

/// The one-line summary of video for the stats line.
pub fn describe(s: &VideoStats) -> String {
    let mbps = |b: u64| b as f64 / 1e6;
    let size = |s: Option<(u32, u32)>| s.map_or("–".to_string(), |(w, h)| format!("{w}x{h}"));
    let send = if s.sending {
        format!(
            "sending {} {:.0} fps {:.2} Mb/s (target {:.2})",
            size(s.send_size),
            s.send_fps,
            mbps(s.send_bps),
            mbps(s.target_bps)
        )
    } else {
        "not sending".into()
    };
    format!(
        "{send} · receiving {} {:.0} fps {:.2} Mb/s{} · repaired {} · keyframes asked {}",
        size(s.recv_size),
        s.recv_fps,
        mbps(s.recv_bps),
        if s.frozen {
            " (frozen, keyframe asked)"
        } else {
            ""
        },
        s.receiver.repaired,
        s.receiver.keyframe_requests,
    )
}
