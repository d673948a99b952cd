//! Sound devices: the microphone and speaker of a call, through the PulseAudio native protocol
//! (PulseAudio itself, or PipeWire through pipewire-pulse). The client is pure Rust, so a build
//! needs no system audio libraries; at run time a sound server must be reachable.
//!
//! The call's 20 ms clock stays the master. The device ends meet it through two small queues
//! ([`queue::CaptureQueue`], [`queue::PlayoutQueue`]) that bound the delay they add and absorb
//! the drift between the sound card's clock and ours.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod priority;
mod pulse;
pub mod queue;

pub use pulse::{DeviceError, DeviceInfo, DeviceList, Mic, SoundServer, Speaker};
