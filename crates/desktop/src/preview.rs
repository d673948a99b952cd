//! Pictures for the window: ours, as a video source that also leaves a reduced copy of each
//! picture it gives, and theirs, as a sink; both wake the window when a picture arrives, so
//! it repaints at the video's own rate and not at all without video.

use std::sync::Arc;
use std::time::Duration;

use extrasafe_net::video_media::{Frame, LatestFrame, VideoError, VideoSink, VideoSource};

/// Keeps the newest picture and wakes the window.
#[derive(Clone)]
pub struct Waking {
    slot: LatestFrame,
    wake: Arc<dyn Fn(Duration) + Send + Sync>,
    /// How soon the window must show a new picture.
    within: Duration,
}

impl Waking {
    pub fn new(
        slot: LatestFrame,
        wake: Arc<dyn Fn(Duration) + Send + Sync>,
        within: Duration,
    ) -> Self {
        Self { slot, wake, within }
    }
}

impl VideoSink for Waking {
    fn show(&mut self, frame: &Frame, index: u64) -> Result<(), VideoError> {
        self.slot.show(frame, index)?;
        (self.wake)(self.within);
        Ok(())
    }
}

/// Width the preview is reduced to (at most).
const PREVIEW_WIDTH: u32 = 320;

pub struct Preview {
    inner: Box<dyn VideoSource>,
    slot: Waking,
}

impl Preview {
    pub fn new(inner: Box<dyn VideoSource>, slot: Waking) -> Self {
        Self { inner, slot }
    }
}

impl VideoSource for Preview {
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }
    fn fps(&self) -> u32 {
        self.inner.fps()
    }
    fn is_screen(&self) -> bool {
        self.inner.is_screen()
    }
    fn next_frame(&mut self, index: u64) -> Result<Option<Frame>, VideoError> {
        let f = self.inner.next_frame(index)?;
        if let Some(f) = &f {
            // Every other picture is plenty for a thumbnail, and halves the cost.
            if index.is_multiple_of(2) {
                let div = f.width.div_ceil(PREVIEW_WIDTH).max(1);
                let _ = self.slot.show(&f.downscale(div), index);
            }
        }
        Ok(f)
    }
}
