//! Video transport logic, free of I/O: fragments padded to size buckets, reassembly with
//! retransmission requests, the keyframe chain that keeps corrupted pictures off the screen,
//! and the bitrate controller.
//!
//! ```text
//!  sender:   encoded frame ──► VideoSender::push_frame ──► poll_transmit ──► datagrams
//!            feedback ──► VideoSender::handle_feedback (resend, keyframe request)
//!                    └──► RateController::on_feedback ──► Ladder ──► encoder plan
//!  receiver: datagram ──► VideoReceiver::handle_datagram ──► poll_frame ──► decoder
//!                                                   └──► poll_feedback ──► datagram
//! ```

pub mod link;
pub mod rate;
pub mod recv;
pub mod send;
pub mod wire;

#[cfg(test)]
mod link_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use link::{CaptureAdvice, PathState, VideoLink, VideoLinkConfig, VideoLinkStats};
pub use rate::{EncoderPlan, Ladder, Layer, LocalPath, RateConfig, RateController};
pub use recv::{AssembledFrame, VideoReceiver, VideoReceiverConfig, VideoReceiverStats};
pub use send::{FrameTooLarge, VideoSender, VideoSenderConfig, VideoSenderStats};
pub use wire::{datagram_kind, Feedback, Fragment, Nack, VideoWireError};
