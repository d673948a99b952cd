//! What a camera offers and which of it a call takes: plain data and one decision, tested on
//! recorded device descriptions (no device, no ioctl).

/// A V4L2 pixel format, by what we can do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelCode {
    /// YUYV 4:2:2, packed: nearly every webcam, often only at small sizes for full speed.
    Yuyv,
    /// NV12: Y plane, then interleaved U/V at half size (many laptop cameras through
    /// libcamera, capture cards).
    Nv12,
    /// I420 (`YU12`): what the encoder takes.
    I420,
    /// Motion-JPEG: how USB webcams send 720p and 1080p at 30 pictures a second.
    Mjpeg,
    /// Anything else (H.264 from the camera, Bayer, RGB …), not taken.
    Other([u8; 4]),
}

impl PixelCode {
    /// From the four-character code the driver reports.
    pub fn from_fourcc(code: [u8; 4]) -> Self {
        match &code {
            b"YUYV" => Self::Yuyv,
            b"NV12" => Self::Nv12,
            b"YU12" => Self::I420,
            b"MJPG" | b"JPEG" => Self::Mjpeg,
            _ => Self::Other(code),
        }
    }

    /// The four-character code to ask the driver for.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Yuyv => *b"YUYV",
            Self::Nv12 => *b"NV12",
            Self::I420 => *b"YU12",
            Self::Mjpeg => *b"MJPG",
            Self::Other(c) => c,
        }
    }

    /// We can turn its pictures into I420.
    pub fn readable(self) -> bool {
        !matches!(self, Self::Other(_))
    }

    /// Work per picture: raw formats are copied, Motion-JPEG is decoded.
    fn cost(self) -> u32 {
        match self {
            Self::I420 => 0,
            Self::Nv12 | Self::Yuyv => 1,
            Self::Mjpeg => 2,
            Self::Other(_) => 9,
        }
    }
}

impl std::fmt::Display for PixelCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.fourcc();
        write!(f, "{}", String::from_utf8_lossy(&code).trim_end())
    }
}

/// One picture size a format offers, with the picture rates it offers at that size.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pictures per second; empty if the driver does not say (then 30 is assumed).
    pub fps: Vec<f64>,
}

/// One pixel format and its sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatInfo {
    /// The pixel format.
    pub code: PixelCode,
    /// The sizes it comes in.
    pub sizes: Vec<SizeInfo>,
}

/// What a camera says it can do (`VIDIOC_QUERYCAP`, `ENUM_FMT`, `ENUM_FRAMESIZES`,
/// `ENUM_FRAMEINTERVALS`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DeviceDescription {
    /// The camera's name ("Integrated Camera").
    pub card: String,
    /// Its pixel formats, in the driver's order.
    pub formats: Vec<FormatInfo>,
}

/// What a call asks of the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The pixel format.
    pub code: PixelCode,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pictures per second.
    pub fps: u32,
}

/// Sizes tried on a camera that takes any size in a range (stepwise or continuous).
pub const COMMON_SIZES: &[(u32, u32)] = &[
    (320, 240),
    (640, 360),
    (640, 480),
    (960, 540),
    (1280, 720),
    (1920, 1080),
];

/// The common sizes a range of sizes can take, for a stepwise or continuous camera.
pub fn sizes_in_range(
    (min_w, min_h): (u32, u32),
    (max_w, max_h): (u32, u32),
    (step_w, step_h): (u32, u32),
) -> Vec<(u32, u32)> {
    COMMON_SIZES
        .iter()
        .copied()
        .filter(|&(w, h)| {
            (min_w..=max_w).contains(&w)
                && (min_h..=max_h).contains(&h)
                && (w - min_w) % step_w.max(1) == 0
                && (h - min_h) % step_h.max(1) == 0
        })
        .collect()
}

/// Why a camera cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// None of its formats is one we read (the ones it has).
    #[error("it offers no picture format EXTRA SAFE reads (it has {0}; YUYV, NV12, I420 or Motion-JPEG are read)")]
    NoReadableFormat(String),
    /// It names no usable size.
    #[error("it lists no picture sizes")]
    NoSizes,
}

/// The format, size and rate to ask for, given what the camera offers and what the call
/// wants (`width`×`height` at `fps`):
/// 1. a rate close to the one wanted beats size (a smooth 640x480 is better than a 1280x720
///    at 10 pictures a second, as every calling app judges);
/// 2. then the size nearest the one wanted (too small counts more than too large, which is
///    scaled down on the way to the encoder);
/// 3. then the cheaper format (raw before Motion-JPEG), then the higher rate.
pub fn choose(
    desc: &DeviceDescription,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<Choice, PlanError> {
    let want_area = f64::from(width.max(1)) * f64::from(height.max(1));
    let want_fps = f64::from(fps.max(1));
    let mut best: Option<((bool, u64, u32, u64), Choice)> = None;
    for f in desc.formats.iter().filter(|f| f.code.readable()) {
        for s in &f.sizes {
            if s.width == 0 || s.height == 0 || s.width % 2 == 1 || s.height % 2 == 1 {
                continue;
            }
            let rates = if s.fps.is_empty() {
                vec![30.0]
            } else {
                s.fps.clone()
            };
            for r in rates.into_iter().filter(|r| r.is_finite() && *r >= 1.0) {
                // Of the rates at least the wanted one (with a little slack), the lowest;
                // else the highest there is.
                let smooth = r >= want_fps * 0.9;
                let area = f64::from(s.width) * f64::from(s.height);
                let off = if area >= want_area {
                    area / want_area - 1.0
                } else {
                    (want_area / area - 1.0) * 1.5
                };
                let rate_rank = if smooth {
                    (r - want_fps).abs()
                } else {
                    1000.0 - r
                };
                let key = (
                    !smooth,
                    (off * 1000.0) as u64,
                    f.code.cost(),
                    (rate_rank * 1000.0) as u64,
                );
                let choice = Choice {
                    code: f.code,
                    width: s.width,
                    height: s.height,
                    fps: r.round() as u32,
                };
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    best = Some((key, choice));
                }
            }
        }
    }
    match best {
        Some((_, c)) => Ok(c),
        None if desc.formats.iter().any(|f| f.code.readable()) => Err(PlanError::NoSizes),
        None => {
            let offered: Vec<String> = desc.formats.iter().map(|f| f.code.to_string()).collect();
            Err(PlanError::NoReadableFormat(if offered.is_empty() {
                "none".into()
            } else {
                offered.join(", ")
            }))
        }
    }
}

/// Reads the text `v4l2-ctl --list-formats-ext` prints (how people share what their camera
/// offers, and how the tests record cameras). Lines it does not know are skipped.
pub fn parse_v4l2_ctl(card: &str, text: &str) -> DeviceDescription {
    let mut desc = DeviceDescription {
        card: card.into(),
        formats: Vec::new(),
    };
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(rest) = line.strip_prefix('[') {
            // [0]: 'MJPG' (Motion-JPEG, compressed)
            let Some(code) = rest.split('\'').nth(1) else {
                continue;
            };
            let mut fourcc = [b' '; 4];
            for (d, s) in fourcc.iter_mut().zip(code.bytes()) {
                *d = s;
            }
            desc.formats.push(FormatInfo {
                code: PixelCode::from_fourcc(fourcc),
                sizes: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("Size: Discrete ") {
            let Some((w, h)) = rest.trim().split_once('x') else {
                continue;
            };
            let (Ok(w), Ok(h)) = (w.parse(), h.parse()) else {
                continue;
            };
            if let Some(f) = desc.formats.last_mut() {
                f.sizes.push(SizeInfo {
                    width: w,
                    height: h,
                    fps: Vec::new(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("Size: Stepwise ") {
            // Stepwise 32x32 - 2592x1944 with step 2/2
            let nums: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            if let ([min_w, min_h, max_w, max_h, step_w, step_h], Some(f)) =
                (nums.as_slice(), desc.formats.last_mut())
            {
                for (w, h) in sizes_in_range((*min_w, *min_h), (*max_w, *max_h), (*step_w, *step_h))
                {
                    f.sizes.push(SizeInfo {
                        width: w,
                        height: h,
                        fps: Vec::new(),
                    });
                }
            }
        } else if let Some(rest) = line.strip_prefix("Interval: Discrete ") {
            // 0.033s (30.000 fps)
            let fps = rest
                .split('(')
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok());
            if let (Some(fps), Some(s)) = (
                fps,
                desc.formats.last_mut().and_then(|f| f.sizes.last_mut()),
            ) {
                if !s.fps.contains(&fps) {
                    s.fps.push(fps);
                }
            }
        }
    }
    desc
}
