//! Where pictures come from. A source is asked for a picture at each tick of the call's
//! frame clock; live sources (the test pattern, the screen) make one for that moment,
//! files and pipes give their next one.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::frame::{i420_len, Frame};
use crate::y4m::{self, Y4mHeader};
use crate::{pattern, VideoError};

/// A source of pictures.
pub trait VideoSource: Send {
    /// Picture size.
    fn size(&self) -> (u32, u32);
    /// The rate it is meant to be shown at.
    fn fps(&self) -> u32;
    /// The picture for frame `index` of the call; `None` when the source has ended.
    fn next_frame(&mut self, index: u64) -> Result<Option<Frame>, VideoError>;
    /// Screen content (text, sharp edges) rather than a camera.
    fn is_screen(&self) -> bool {
        false
    }
}

/// Milliseconds on the wall clock, modulo 2³²: what the test pattern stamps.
pub fn wall_ms() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32)
}

/// The built-in moving test picture with frame number and time.
#[derive(Debug)]
pub struct TestPattern {
    width: u32,
    height: u32,
    fps: u32,
}

impl TestPattern {
    /// A pattern of this size and rate (sizes rounded down to even).
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            width: (width & !1).max(64),
            height: (height & !1).max(64),
            fps: fps.max(1),
        }
    }
}

impl VideoSource for TestPattern {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn next_frame(&mut self, index: u64) -> Result<Option<Frame>, VideoError> {
        Ok(Some(pattern::draw(
            self.width,
            self.height,
            index as u32,
            wall_ms(),
        )))
    }
}

/// A Y4M file, played in a loop.
#[derive(Debug)]
pub struct Y4mFile {
    r: BufReader<File>,
    header: Y4mHeader,
    data_start: u64,
    looped: bool,
}

impl Y4mFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let mut r = BufReader::new(File::open(path)?);
        let header = y4m::read_header(&mut r)?;
        let data_start = r.stream_position()?;
        Ok(Self {
            r,
            header,
            data_start,
            looped: false,
        })
    }
}

impl VideoSource for Y4mFile {
    fn size(&self) -> (u32, u32) {
        (self.header.width, self.header.height)
    }
    fn fps(&self) -> u32 {
        self.header.fps
    }
    fn next_frame(&mut self, _index: u64) -> Result<Option<Frame>, VideoError> {
        if let Some(f) = y4m::read_frame(&mut self.r, &self.header)? {
            self.looped = false;
            return Ok(Some(f));
        }
        if self.looped {
            return Ok(None); // no frame at all
        }
        self.looped = true;
        self.r.seek(std::io::SeekFrom::Start(self.data_start))?;
        self.next_frame(_index)
    }
}

/// Raw I420 pictures of a known size from any reader, such as
/// `ffmpeg … -f rawvideo -pix_fmt yuv420p pipe:1` on standard input. Ends with its input.
pub struct RawI420<R: Read + Send> {
    r: BufReader<R>,
    width: u32,
    height: u32,
    fps: u32,
}

impl<R: Read + Send> std::fmt::Debug for RawI420<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawI420 {}x{}@{}", self.width, self.height, self.fps)
    }
}

impl<R: Read + Send> RawI420<R> {
    /// Reads `width`×`height` pictures at `fps` from `r`.
    pub fn new(r: R, width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        y4m::check_size(width, height)?;
        Ok(Self {
            r: BufReader::with_capacity(1 << 20, r),
            width,
            height,
            fps: fps.max(1),
        })
    }
}

impl<R: Read + Send> VideoSource for RawI420<R> {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn next_frame(&mut self, _index: u64) -> Result<Option<Frame>, VideoError> {
        let mut data = vec![0u8; i420_len(self.width, self.height)];
        if self.r.fill_buf()?.is_empty() {
            return Ok(None);
        }
        match self.r.read_exact(&mut data) {
            Ok(()) => Ok(Some(Frame {
                width: self.width,
                height: self.height,
                data,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
