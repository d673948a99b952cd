//! YUV4MPEG2 files, 4:2:0 8-bit only: read as a source, written as a sink.

use std::io::{BufRead, Read, Write};

use crate::frame::{i420_len, Frame};
use crate::VideoError;

/// Largest picture side accepted from a file or a pipe.
pub const MAX_SIDE: u32 = 4096;
const MAGIC: &str = "YUV4MPEG2";

/// What a Y4M header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Y4mHeader {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second (rounded; at least 1).
    pub fps: u32,
}

/// Checks a picture size taken from outside.
pub fn check_size(width: u32, height: u32) -> Result<(), VideoError> {
    if width == 0
        || height == 0
        || width > MAX_SIDE
        || height > MAX_SIDE
        || width % 2 == 1
        || height % 2 == 1
    {
        return Err(VideoError::Format(format!(
            "picture size {width}x{height}: sides must be even and at most {MAX_SIDE}"
        )));
    }
    Ok(())
}

fn read_line(r: &mut impl BufRead, max: usize) -> Result<Option<String>, VideoError> {
    let mut line = Vec::new();
    let n = r.by_ref().take(max as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(VideoError::Format("Y4M line too long or cut short".into()));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| VideoError::Format("Y4M header is not text".into()))
}

/// Parses the stream header.
pub fn read_header(r: &mut impl BufRead) -> Result<Y4mHeader, VideoError> {
    let line = read_line(r, 256)?.ok_or_else(|| VideoError::Format("empty Y4M file".into()))?;
    let mut parts = line.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err(VideoError::Format("not a YUV4MPEG2 file".into()));
    }
    let (mut width, mut height, mut fps) = (0u32, 0u32, 30u32);
    for p in parts {
        let (tag, val) = p.split_at(p.len().min(1));
        match tag {
            "W" => width = val.parse().unwrap_or(0),
            "H" => height = val.parse().unwrap_or(0),
            "F" => {
                let mut it = val.split(':').map(|x| x.parse::<u64>().unwrap_or(0));
                let (n, d) = (it.next().unwrap_or(0), it.next().unwrap_or(1));
                if n > 0 && d > 0 {
                    fps = ((n + d / 2) / d).clamp(1, 240) as u32;
                }
            }
            "C" if !val.starts_with("420") => {
                return Err(VideoError::Format(format!(
                    "Y4M colour space C{val}: only 4:2:0 8-bit is read (convert with ffmpeg -pix_fmt yuv420p)"
                )))
            }
            "I" if val != "p" && val != "?" => {
                return Err(VideoError::Format("interlaced Y4M is not read".into()))
            }
            _ => {}
        }
    }
    check_size(width, height)?;
    Ok(Y4mHeader { width, height, fps })
}

/// Reads the next frame; `None` at the end of the stream.
pub fn read_frame(r: &mut impl BufRead, h: &Y4mHeader) -> Result<Option<Frame>, VideoError> {
    let Some(line) = read_line(r, 256)? else {
        return Ok(None);
    };
    if !line.starts_with("FRAME") {
        return Err(VideoError::Format("Y4M frame marker missing".into()));
    }
    let mut data = vec![0u8; i420_len(h.width, h.height)];
    match r.read_exact(&mut data) {
        Ok(()) => Ok(Some(Frame {
            width: h.width,
            height: h.height,
            data,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes a Y4M stream of one size and rate.
#[derive(Debug)]
pub struct Y4mWriter<W: Write> {
    out: W,
    width: u32,
    height: u32,
}

impl<W: Write> Y4mWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W, width: u32, height: u32, fps: u32) -> Result<Self, VideoError> {
        writeln!(out, "{MAGIC} W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg")?;
        Ok(Self { out, width, height })
    }

    /// Appends a frame, resized to the stream's size if it differs.
    pub fn write(&mut self, f: &Frame) -> Result<(), VideoError> {
        let f = f.resize_nearest(self.width, self.height);
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(&f.data)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, VideoError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;

    #[test]
    fn round_trip_and_hostile_headers() {
        let mut w = Y4mWriter::new(Vec::new(), 64, 48, 25).unwrap();
        let a = pattern::draw(64, 48, 1, 2);
        w.write(&a).unwrap();
        w.write(&pattern::draw(32, 24, 2, 3)).unwrap(); // resized on the way
        let bytes = w.finish().unwrap();
        let mut r = std::io::Cursor::new(bytes);
        let h = read_header(&mut r).unwrap();
        assert_eq!(
            h,
            Y4mHeader {
                width: 64,
                height: 48,
                fps: 25
            }
        );
        assert_eq!(read_frame(&mut r, &h).unwrap().unwrap(), a);
        assert_eq!(read_frame(&mut r, &h).unwrap().unwrap().width, 64);
        assert!(read_frame(&mut r, &h).unwrap().is_none());
        for bad in [
            "YUV4MPEG2 W0 H48\n",
            "YUV4MPEG2 W65 H48\n",
            "YUV4MPEG2 W99999 H48\n",
            "YUV4MPEG2 W64 H48 C444\n",
            "RIFF\n",
            "",
        ] {
            assert!(
                read_header(&mut std::io::Cursor::new(bad)).is_err(),
                "{bad:?}"
            );
        }
        let long = format!("YUV4MPEG2 {}\n", "X".repeat(1000));
        assert!(read_header(&mut std::io::Cursor::new(long)).is_err());
    }
}
