//! The V4L2 device: a thin driver over `linuxvideo` (which does the ioctls and the mmap'd
//! buffers). No logic lives here: what to ask is [`super::plan`]'s, what to do with a
//! picture is [`super::convert`]'s. `linuxvideo` asserts on answers a driver should never
//! give; such a panic becomes an error here, so a broken driver cannot end a call.

use std::panic::{catch_unwind, AssertUnwindSafe};

use linuxvideo::format::{FrameIntervals, FrameSizes, PixFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, CapabilityFlags, Device, Fract};

use super::plan::{sizes_in_range, DeviceDescription, FormatInfo, PixelCode, SizeInfo};
use super::{Capture, Choice, Started};
use crate::frame::Frame;
use crate::VideoError;

fn cam(what: &str, e: impl std::fmt::Display) -> VideoError {
    VideoError::Source(format!("camera: {what}: {e}"))
}

/// Runs a device call; a panic inside the library becomes an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, VideoError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(cam(what, e)),
        Err(_) => Err(cam(what, "the driver gave an answer V4L2 does not allow")),
    }
}

/// A V4L2 capture device.
pub struct V4l2 {
    path: String,
    /// The camera's name, as its driver gives it.
    card: String,
    device: Option<Device>,
    stream: Option<ReadStream>,
}

impl V4l2 {
    /// Opens `path`; it must be a video capture device.
    pub fn open(path: &str) -> Result<Self, VideoError> {
        let device = guarded(&format!("cannot open {path}"), || Device::open(path))?;
        let caps = guarded("no answer to a query of its capabilities", || {
            device.capabilities()
        })?;
        if !caps
            .device_capabilities()
            .contains(CapabilityFlags::VIDEO_CAPTURE)
        {
            return Err(cam(
                &format!("{path} ({})", caps.card()),
                "not a camera (it captures no video)",
            ));
        }
        Ok(Self {
            path: path.into(),
            card: caps.card().to_string(),
            device: Some(device),
            stream: None,
        })
    }

    fn device(&self) -> Result<&Device, VideoError> {
        self.device
            .as_ref()
            .ok_or_else(|| cam(&self.path, "already streaming"))
    }
}

fn rates(intervals: FrameIntervals) -> Vec<f64> {
    let fps = |f: &Fract| {
        if f.numerator() == 0 {
            0.0
        } else {
            f64::from(f.denominator()) / f64::from(f.numerator())
        }
    };
    match intervals {
        FrameIntervals::Discrete(list) => list.iter().map(|i| fps(i.fract())).collect(),
        // A range: its ends, and the usual rates inside it.
        FrameIntervals::Stepwise(s) | FrameIntervals::Continuous(s) => {
            let (fast, slow) = (fps(s.min()), fps(s.max()));
            let mut r = vec![fast, slow];
            r.extend(
                [15.0, 24.0, 25.0, 30.0, 60.0]
                    .into_iter()
                    .filter(|f| (slow..=fast).contains(f)),
            );
            r
        }
    }
}

impl Capture for V4l2 {
    fn describe(&mut self) -> Result<DeviceDescription, VideoError> {
        let dev = self.device()?;
        let card = self.card.clone();
        let mut formats = Vec::new();
        let descs: Vec<_> = guarded("formats", || {
            dev.formats(BufType::VIDEO_CAPTURE)
                .collect::<std::io::Result<Vec<_>>>()
        })?;
        for d in descs {
            let pf = d.pixel_format();
            let code = PixelCode::from_fourcc(pf.as_fourcc());
            let mut sizes = Vec::new();
            let listed = match guarded("sizes", || dev.frame_sizes(pf)) {
                Ok(FrameSizes::Discrete(list)) => list
                    .iter()
                    .map(|s| (s.width(), s.height()))
                    .collect::<Vec<_>>(),
                Ok(FrameSizes::Stepwise(s) | FrameSizes::Continuous(s)) => sizes_in_range(
                    (s.min_width(), s.min_height()),
                    (s.max_width(), s.max_height()),
                    (s.step_width(), s.step_height()),
                ),
                // A format without sizes (metadata) is listed empty and never chosen.
                Err(_) => Vec::new(),
            };
            for (w, h) in listed {
                let fps = guarded("rates", || dev.frame_intervals(pf, w, h))
                    .map(rates)
                    .unwrap_or_default();
                sizes.push(SizeInfo {
                    width: w,
                    height: h,
                    fps,
                });
            }
            formats.push(FormatInfo { code, sizes });
        }
        Ok(DeviceDescription { card, formats })
    }

    fn start(&mut self, choice: &Choice) -> Result<Started, VideoError> {
        let dev = self
            .device
            .take()
            .ok_or_else(|| cam(&self.path, "already streaming"))?;
        let pf = linuxvideo::format::PixelFormat::from_fourcc(choice.code.fourcc());
        let capture = guarded("format refused", || {
            dev.video_capture(PixFormat::new(choice.width, choice.height, pf))
        })?;
        let set = capture.format();
        let (code, width, height, stride) = (
            PixelCode::from_fourcc(set.pixel_format().as_fourcc()),
            set.width(),
            set.height(),
            set.bytes_per_line(),
        );
        let fps = match guarded("rate refused", || {
            capture.set_frame_interval(Fract::new(1, choice.fps.max(1)))
        }) {
            Ok(f) if f.numerator() > 0 => (f.denominator() / f.numerator()).max(1),
            _ => choice.fps,
        };
        let stream = guarded("cannot stream", || capture.into_stream())?;
        self.stream = Some(stream);
        Ok(Started {
            code,
            width,
            height,
            stride,
            fps,
        })
    }

    fn next_buffer(
        &mut self,
        take: &mut dyn FnMut(&[u8]) -> Result<Frame, VideoError>,
    ) -> Result<Frame, VideoError> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| cam("capture", "not started"))?;
        let mut out = None;
        guarded("capture failed", || {
            stream.dequeue(|view| {
                // Caught here, inside: a panic that left this callback would keep the buffer
                // from being queued again, and with two buffers the camera would stall.
                out = Some(if view.is_error() {
                    Err(cam("capture", "the driver marked the picture damaged"))
                } else {
                    catch_unwind(AssertUnwindSafe(|| take(&view)))
                        .unwrap_or_else(|_| Err(cam("capture", "a picture that could not be read")))
                });
                Ok(())
            })
        })?;
        out.unwrap_or_else(|| Err(cam("capture", "no picture")))
    }
}

/// A camera on this device, as listed to the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraInfo {
    /// `/dev/videoN`.
    pub path: String,
    /// Its name ("Integrated Camera").
    pub name: String,
}

/// The video capture devices present (`/dev/video*` that capture video; a camera's metadata
/// node is left out). Empty where there are none or V4L2 is missing.
pub fn list() -> Vec<CameraInfo> {
    let Ok(dir) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut paths: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| {
            p.strip_prefix("/dev/video")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    paths.sort_by_key(|p| p["/dev/video".len()..].parse::<u32>().unwrap_or(u32::MAX));
    paths
        .into_iter()
        .filter_map(|path| {
            let name = V4l2::open(&path).ok()?.card;
            Some(CameraInfo { path, name })
        })
        .collect()
}
