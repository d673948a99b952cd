//! EXTRA SAFE audio: the codec behind a small trait, and the two ends of an audio stream as
//! sans-IO structs.
//!
//! ```text
//!  AudioSender:   20 ms of PCM ──► voice activity ──► encoder (CBR) ──► fixed-size datagram
//!  AudioReceiver: datagram ──► parse ──► jitter buffer ──(device clock)──► decode / conceal ──► PCM
//! ```
//! Every datagram of a call has the same size and leaves at the same rate, speaking, silent
//! or muted; the room the current frame leaves carries copies of the previous frames.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod denoise;
pub mod echo;
pub mod io;
#[cfg(feature = "libopus")]
pub mod libopus;
pub mod pipeline;
pub mod resample;
pub mod speech;
pub mod wav;

pub use codec::{CodecError, Decoder, Encoder};
pub use pipeline::{AudioConfig, AudioReceiver, AudioSender, Encoded, ReceiverStats};

/// Sample rate of everything inside the pipeline.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME_SAMPLES: usize = 960;
