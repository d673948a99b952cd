//! Cameras, in the default build: V4L2 through `linuxvideo` (pure Rust; no bindgen, no
//! libclang, no system library). The work is split so that everything but the ioctls is
//! tested without a camera:
//! - [`plan`]: what a camera offers and which format, size and rate a call takes;
//! - [`convert`]: its pictures (YUYV, NV12, I420, Motion-JPEG) to I420;
//! - [`Capture`]: the device itself, a thin driver; [`Recorded`] replays a camera's
//!   description and pictures for the tests.

pub mod convert;
#[cfg(target_os = "linux")]
mod device;
pub mod plan;

pub use convert::{i420_copy, mjpeg_to_i420, nv12_to_i420, yuyv_to_i420};
#[cfg(target_os = "linux")]
pub use device::{list, CameraInfo, V4l2};
pub use plan::{choose, Choice, DeviceDescription, FormatInfo, PixelCode, PlanError, SizeInfo};

use crate::frame::Frame;
use crate::source::VideoSource;
use crate::VideoError;

/// The format the driver actually set (it may differ from the one asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// The pixel format.
    pub code: PixelCode,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of a raw picture (0 for Motion-JPEG).
    pub stride: u32,
    /// Pictures per second.
    pub fps: u32,
}

/// A camera device: says what it offers, starts in one format, hands out its buffers.
pub trait Capture: Send {
    /// What it offers.
    fn describe(&mut self) -> Result<DeviceDescription, VideoError>;
    /// Starts streaming as `choice` asks; the format it really gives.
    fn start(&mut self, choice: &Choice) -> Result<Started, VideoError>;
    /// Waits for the next filled buffer and gives it to `take`.
    fn next_buffer(
        &mut self,
        take: &mut dyn FnMut(&[u8]) -> Result<Frame, VideoError>,
    ) -> Result<Frame, VideoError>;
}

/// A camera as a video source: pictures in I420 at the size agreed.
pub struct Camera {
    capture: Box<dyn Capture>,
    started: Started,
    name: String,
    /// Damaged pictures skipped in a row (a USB camera under load drops bytes).
    damaged: u32,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.started;
        write!(
            f,
            "Camera {} {}x{} {} at {} fps",
            self.name, s.width, s.height, s.code, s.fps
        )
    }
}

/// Damaged pictures in a row after which the camera is taken to have failed.
const DAMAGED_IN_A_ROW: u32 = 30;

impl Camera {
    /// Opens a V4L2 camera (`/dev/video0`) for pictures near `width`×`height` at `fps`.
    #[cfg(target_os = "linux")]
    pub fn open(path: &str, width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        Self::with_capture(Box::new(V4l2::open(path)?), width, height, fps)
    }

    /// Chooses what to ask of `capture` (see [`plan::choose`]) and starts it.
    pub fn with_capture(
        mut capture: Box<dyn Capture>,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, VideoError> {
        let desc = capture.describe()?;
        let choice = plan::choose(&desc, width, height, fps)
            .map_err(|e| VideoError::Source(format!("camera {}: {e}", desc.card)))?;
        let started = capture.start(&choice)?;
        let sane = |n: u32| n > 0 && n.is_multiple_of(2) && n <= 8192;
        if !started.code.readable() || !sane(started.width) || !sane(started.height) {
            return Err(VideoError::Source(format!(
                "camera {}: the driver gave {} at {}x{}, which cannot be read",
                desc.card, started.code, started.width, started.height
            )));
        }
        Ok(Self {
            capture,
            started,
            name: desc.card,
            damaged: 0,
        })
    }

    /// What the camera is sending.
    pub fn started(&self) -> Started {
        self.started
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One buffer of the agreed format to I420.
pub fn to_i420(s: &Started, buf: &[u8]) -> Result<Frame, VideoError> {
    let (w, h) = (s.width as usize, s.height as usize);
    match s.code {
        PixelCode::Yuyv => yuyv_to_i420(buf, w, h, (s.stride as usize).max(2 * w)),
        PixelCode::Nv12 => nv12_to_i420(buf, w, h, (s.stride as usize).max(w)),
        PixelCode::I420 => i420_copy(buf, w, h),
        PixelCode::Mjpeg => mjpeg_to_i420(buf, w, h),
        PixelCode::Other(_) => Err(VideoError::Source(format!(
            "camera: {} is not read",
            s.code
        ))),
    }
}

impl VideoSource for Camera {
    fn size(&self) -> (u32, u32) {
        (self.started.width, self.started.height)
    }
    fn fps(&self) -> u32 {
        self.started.fps.max(1)
    }
    fn next_frame(&mut self, _index: u64) -> Result<Option<Frame>, VideoError> {
        let started = self.started;
        loop {
            match self.capture.next_buffer(&mut |buf| to_i420(&started, buf)) {
                Ok(f) => {
                    self.damaged = 0;
                    return Ok(Some(f));
                }
                // A damaged picture is skipped; a camera that gives nothing else has failed.
                Err(VideoError::Source(why)) if self.damaged < DAMAGED_IN_A_ROW => {
                    self.damaged += 1;
                    tracing::debug!("camera picture skipped: {why}");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A camera replayed from a recording: its description, and pictures already in the
/// format it would give. What the tests use in place of a device.
pub struct Recorded {
    /// What the recorded camera lists.
    pub description: DeviceDescription,
    /// Pictures by format; handed out in turn, round and round.
    pub pictures: Vec<(PixelCode, Vec<u8>)>,
    /// What `start` was asked.
    pub asked: Option<Choice>,
    next: usize,
}

impl Recorded {
    /// A recording of `description`, handing out `pictures`.
    pub fn new(description: DeviceDescription, pictures: Vec<(PixelCode, Vec<u8>)>) -> Self {
        Self {
            description,
            pictures,
            asked: None,
            next: 0,
        }
    }
}

impl Capture for Recorded {
    fn describe(&mut self) -> Result<DeviceDescription, VideoError> {
        Ok(self.description.clone())
    }
    fn start(&mut self, choice: &Choice) -> Result<Started, VideoError> {
        self.asked = Some(*choice);
        let stride = match choice.code {
            PixelCode::Yuyv => 2 * choice.width,
            PixelCode::Nv12 | PixelCode::I420 => choice.width,
            _ => 0,
        };
        Ok(Started {
            code: choice.code,
            width: choice.width,
            height: choice.height,
            stride,
            fps: choice.fps,
        })
    }
    fn next_buffer(
        &mut self,
        take: &mut dyn FnMut(&[u8]) -> Result<Frame, VideoError>,
    ) -> Result<Frame, VideoError> {
        let code = self.asked.map(|c| c.code);
        let mine: Vec<&Vec<u8>> = self
            .pictures
            .iter()
            .filter(|(c, _)| Some(*c) == code)
            .map(|(_, p)| p)
            .collect();
        if mine.is_empty() {
            return Err(VideoError::Format(
                "the recording has no pictures in that format".into(),
            ));
        }
        let pic = mine[self.next % mine.len()];
        self.next += 1;
        take(pic)
    }
}
