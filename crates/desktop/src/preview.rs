//! The small picture of ourselves: a video source that also leaves a reduced copy of each
//! picture it gives for the window to show.

use extrasafe_net::video_media::{Frame, LatestFrame, VideoSink, VideoSource};

/// Width the preview is reduced to (at most).
const PREVIEW_WIDTH: u32 = 320;

pub struct Preview {
    inner: Box<dyn VideoSource>,
    slot: LatestFrame,
}

impl Preview {
    pub fn new(inner: Box<dyn VideoSource>, slot: LatestFrame) -> Self {
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
    fn next_frame(
        &mut self,
        index: u64,
    ) -> Result<Option<Frame>, extrasafe_net::video_media::VideoError> {
        let f = self.inner.next_frame(index)?;
        if let Some(f) = &f {
            // Every other picture is plenty for a thumbnail, and halves the cost.
            if index % 2 == 0 {
                let div = f.width.div_ceil(PREVIEW_WIDTH).max(1);
                let _ = self.slot.clone().show(&f.downscale(div), index);
            }
        }
        Ok(f)
    }
}
