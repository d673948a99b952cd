//! EXTRA SAFE video: the I420 picture, H.264 through openh264, the sources a call can send
//! (test pattern, Y4M file, raw I420 pipe, X11 screen, V4L2 camera) and the
//! sinks it can show into (Y4M file, the latest picture for a window).
//!
//! ```text
//!  source ──► Frame ──► (downscale to the layer) ──► H264Encoder ──► Annex-B bytes
//!  Annex-B bytes ──► H264Decoder ──► Frame ──► sink
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod camera;
pub mod codec;
pub mod frame;
pub mod pattern;
pub mod screen;
pub mod sink;
pub mod source;
pub mod y4m;

pub use codec::{CodecError, Effort, Encoded, EncoderSettings, H264Decoder, H264Encoder};
pub use frame::{psnr_y, Frame};
pub use screen::Screen;
pub use sink::{FnSink, LatestFrame, NoVideo, VideoSink, Y4mSink};
pub use source::{RawI420, TestPattern, VideoSource, Y4mFile};

/// Something went wrong with a source, a sink or a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file or stream is not in a format we read.
    #[error("{0}")]
    Format(String),
    /// A source could not be opened or read (the screen, a camera).
    #[error("{0}")]
    Source(String),
    /// The codec failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}
