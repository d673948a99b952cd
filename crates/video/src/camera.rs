//! A V4L2 camera (feature `camera`). Kept small on purpose: no camera can exist on the
//! machine this project is built and tested on, so only opening errors are tested here.
//! Cameras giving YUYV (4:2:2, nearly all webcams) or I420 are read; MJPEG-only cameras are
//! refused with a sentence.

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use crate::frame::{i420_len, Frame};
use crate::source::VideoSource;
use crate::VideoError;

/// A camera streaming pictures of one size.
pub struct Camera {
    stream: Stream<'static>,
    _dev: Device,
    width: u32,
    height: u32,
    stride: u32,
    yuyv: bool,
    fps: u32,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Camera {}x{}", self.width, self.height)
    }
}

fn cam(what: &str, e: impl std::fmt::Display) -> VideoError {
    VideoError::Source(format!("camera: {what}: {e}"))
}

impl Camera {
    /// Opens `path` (e.g. /dev/video0) at about `width`×`height` (the camera picks the
    /// nearest size it has).
    pub fn open(path: &str, width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        let dev = Device::with_path(path).map_err(|e| cam(&format!("cannot open {path}"), e))?;
        let mut fmt = dev.format().map_err(|e| cam("no video capture", e))?;
        (fmt.width, fmt.height, fmt.fourcc) = (width, height, FourCC::new(b"YUYV"));
        let fmt = dev.set_format(&fmt).map_err(|e| cam("format refused", e))?;
        let yuyv = match &fmt.fourcc.repr {
            b"YUYV" => true,
            b"YU12" => false,
            other => {
                return Err(cam(
                    "unsupported picture format",
                    format!("{} (YUYV or I420 needed)", String::from_utf8_lossy(other)),
                ))
            }
        };
        if fmt.width % 2 == 1 || fmt.height % 2 == 1 || fmt.width == 0 {
            return Err(cam(
                "odd picture size",
                format!("{}x{}", fmt.width, fmt.height),
            ));
        }
        let stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
            .map_err(|e| cam("cannot stream", e))?;
        Ok(Self {
            stream,
            _dev: dev,
            width: fmt.width,
            height: fmt.height,
            stride: fmt.stride,
            yuyv,
            fps: fps.max(1),
        })
    }
}

impl VideoSource for Camera {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn next_frame(&mut self, _index: u64) -> Result<Option<Frame>, VideoError> {
        let (buf, _) = self.stream.next().map_err(|e| cam("capture failed", e))?;
        let (w, h) = (self.width as usize, self.height as usize);
        if !self.yuyv {
            let need = i420_len(self.width, self.height);
            let data = buf
                .get(..need)
                .ok_or_else(|| cam("capture", "short picture"))?
                .to_vec();
            return Ok(Some(Frame {
                width: self.width,
                height: self.height,
                data,
            }));
        }
        let stride = (self.stride as usize).max(2 * w);
        if buf.len() < stride * h {
            return Err(cam("capture", "short picture"));
        }
        Ok(Some(yuyv_to_i420(buf, w, h, stride)))
    }
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels) to I420: chroma of each pair of rows averaged.
pub fn yuyv_to_i420(buf: &[u8], w: usize, h: usize, stride: usize) -> Frame {
    let mut data = vec![0u8; i420_len(w as u32, h as u32)];
    let (y, uv) = data.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut((w / 2) * (h / 2));
    for row in 0..h {
        let line = &buf[row * stride..row * stride + 2 * w];
        for (x, px) in line.chunks_exact(4).enumerate() {
            y[row * w + 2 * x] = px[0];
            y[row * w + 2 * x + 1] = px[2];
            if row % 2 == 0 {
                let below = &buf[(row + 1) * stride + 4 * x..];
                u[(row / 2) * (w / 2) + x] = ((px[1] as u16 + below[1] as u16) / 2) as u8;
                v[(row / 2) * (w / 2) + x] = ((px[3] as u16 + below[3] as u16) / 2) as u8;
            }
        }
    }
    Frame {
        width: w as u32,
        height: h as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_camera_is_a_sentence_and_yuyv_converts() {
        let err = Camera::open("/dev/extrasafe-no-such-camera", 640, 480, 30)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open"), "{err}");
        // 4×2 pixels: Y 10..17, U 100/120, V 200/220 averaged over the two rows.
        let buf = [
            10, 100, 11, 200, 12, 101, 13, 201, 14, 120, 15, 220, 16, 121, 17, 221,
        ];
        let f = yuyv_to_i420(&buf, 4, 2, 8);
        assert_eq!(f.y(), &[10, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(f.u(), &[110, 111]);
        assert_eq!(f.v(), &[210, 211]);
    }
}
