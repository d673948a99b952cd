//! Where decoded pictures go: a Y4M file (for tests and quality measurement) or the latest
//! picture for an application to show.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::frame::Frame;
use crate::y4m::Y4mWriter;
use crate::VideoError;

/// A place for decoded pictures.
pub trait VideoSink: Send {
    /// Shows `frame` as frame `index` of the sender's sequence. Indices only grow; a gap
    /// means the pictures in between were not shown (the previous one stayed up).
    fn show(&mut self, frame: &Frame, index: u64) -> Result<(), VideoError>;
    /// Finishes (a file is flushed).
    fn finish(&mut self) -> Result<(), VideoError> {
        Ok(())
    }
}

/// Discards everything.
#[derive(Debug, Default)]
pub struct NoVideo;
impl VideoSink for NoVideo {
    fn show(&mut self, _: &Frame, _: u64) -> Result<(), VideoError> {
        Ok(())
    }
}

/// Writes what a viewer saw, one picture per frame of the sender's sequence: where frames
/// were not shown the last picture is repeated, so frame k of the file is what was on screen
/// at the sender's frame k (compare it with the source, frame by frame). The file is made
/// the size of the first picture; smaller layers are scaled up to it.
#[derive(Debug)]
pub struct Y4mSink {
    path: PathBuf,
    fps: u32,
    w: Option<Y4mWriter<BufWriter<File>>>,
    last: Option<(Frame, u64)>,
    written: u64,
}

impl Y4mSink {
    /// A sink writing `path` at `fps` (created at the first picture).
    pub fn new(path: PathBuf, fps: u32) -> Self {
        Self {
            path,
            fps,
            w: None,
            last: None,
            written: 0,
        }
    }

    /// Frames written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl VideoSink for Y4mSink {
    fn show(&mut self, frame: &Frame, index: u64) -> Result<(), VideoError> {
        if self.w.is_none() {
            let f = BufWriter::with_capacity(1 << 20, File::create(&self.path)?);
            self.w = Some(Y4mWriter::new(f, frame.width, frame.height, self.fps)?);
        }
        let w = self.w.as_mut().expect("created");
        if let Some((prev, at)) = &self.last {
            // At most a minute of repeats, however large the gap a peer claims.
            for _ in (at + 1..index).take(60 * self.fps as usize) {
                w.write(prev)?;
                self.written += 1;
            }
        }
        w.write(frame)?;
        self.written += 1;
        self.last = Some((frame.clone(), index));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), VideoError> {
        if let Some(w) = self.w.take() {
            w.finish()?;
        }
        Ok(())
    }
}

/// The latest picture, for a window to draw: cheap to clone, shared between threads.
#[derive(Clone, Debug, Default)]
pub struct LatestFrame {
    slot: Arc<Mutex<Option<(Frame, u64)>>>,
}

impl LatestFrame {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest picture and its frame index, if any arrived.
    pub fn get(&self) -> Option<(Frame, u64)> {
        self.slot.lock().ok()?.clone()
    }

    /// The index of the picture held, without copying it.
    pub fn index(&self) -> Option<u64> {
        self.slot.lock().ok()?.as_ref().map(|(_, i)| *i)
    }

    /// Forgets the picture (a new call starts blank).
    pub fn clear(&self) {
        if let Ok(mut s) = self.slot.lock() {
            *s = None;
        }
    }
}

impl VideoSink for LatestFrame {
    fn show(&mut self, frame: &Frame, index: u64) -> Result<(), VideoError> {
        if let Ok(mut s) = self.slot.lock() {
            *s = Some((frame.clone(), index));
        }
        Ok(())
    }
}

/// Hands every picture to a function (for tests and measurements).
pub struct FnSink<F: FnMut(&Frame, u64) + Send>(pub F);

impl<F: FnMut(&Frame, u64) + Send> VideoSink for FnSink<F> {
    fn show(&mut self, frame: &Frame, index: u64) -> Result<(), VideoError> {
        (self.0)(frame, index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_frame_keeps_the_newest_and_the_y4m_sink_fills_gaps() {
        let slot = LatestFrame::new();
        assert!(slot.get().is_none());
        let mut writer = slot.clone();
        writer.show(&Frame::black(4, 2), 3).unwrap();
        writer.show(&crate::pattern::draw(64, 64, 1, 1), 7).unwrap();
        let (f, i) = slot.get().unwrap();
        assert_eq!((f.width, i), (64, 7));

        let path = std::env::temp_dir().join(format!("es-sink-{}.y4m", std::process::id()));
        let mut sink = Y4mSink::new(path.clone(), 30);
        sink.show(&crate::pattern::draw(320, 180, 10, 0), 10)
            .unwrap();
        sink.show(&crate::pattern::draw(320, 180, 13, 0), 13)
            .unwrap(); // 11, 12 frozen
        sink.finish().unwrap();
        assert_eq!(sink.written(), 4);
        let mut r = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let h = crate::y4m::read_header(&mut r).unwrap();
        let codes: Vec<u32> = std::iter::from_fn(|| crate::y4m::read_frame(&mut r, &h).unwrap())
            .map(|f| crate::pattern::read_code(&f).unwrap().0)
            .collect();
        assert_eq!(codes, [10, 10, 10, 13]);
        std::fs::remove_file(path).unwrap();
    }
}
