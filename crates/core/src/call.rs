//! A call as one sans-IO machine: [`CallMachine`] (in `call_machine.rs`) owns the session
//! and the media below; a driver steps it alone.
//!
//! A call's media as one sans-IO machine: its audio ([`AudioStream`]) and video
//! ([`VideoLink`]) behind one input type and one output type, with the decisions that
//! concern both: which arriving datagram is whose, and that audio goes first.
//!
//! ```text
//!  MediaInput ──► CallMedia ──► MediaOutput
//!   Timeout                        Audio(work)   read+encode / decode+play, for the driver
//!   Datagram ──► sorted by kind    Transmit      audio's first, then video's (paced)
//!   AudioEncoded / NotCaptured     Frame         a whole video frame, for the decoder
//!   VideoEncoded / DecodeFailed
//!   Path / NewPath / SendFailed
//! ```
//!
//! Codecs, devices and sockets stay with the driver: it feeds what happened
//! ([`CallMedia::handle_input`]), takes what to do ([`CallMedia::poll_output`]) until there
//! is nothing, and wakes again at [`CallMedia::poll_timeout`]. Audio and video are each
//! switched on and off during the call; a call with several peers is one of these per peer.
//!
//! Audio first: whatever audio owes (a frame to encode, a frame to play, a datagram whose
//! time has come) is handed out before any video output, so a burst of video fragments never
//! delays an audio datagram on its way to the transport; below the transport, video leaves
//! QUIC's queue nearly empty and is paced near a bottleneck (`VideoLink`), so audio does not
//! queue behind it there either.

use std::time::Instant;

use crate::media::{AudioStream, AudioStreamConfig, AudioWork};
use crate::video::wire::{KIND_FEEDBACK, KIND_FRAGMENT};
use crate::video::{
    datagram_kind, AssembledFrame, CaptureAdvice, PathState, VideoLink, VideoLinkConfig,
};

/// What happened, for [`CallMedia::handle_input`].
#[derive(Debug)]
pub enum MediaInput<'a> {
    /// Time passed (the instant given with the input).
    Timeout,
    /// A datagram of the call arrived (audio, video or anything else: sorted here).
    Datagram(&'a [u8]),
    /// The audio frame asked for ([`AudioWork::Encode`]), encoded.
    AudioEncoded {
        /// The encoded frame (empty if the encoder failed).
        data: &'a [u8],
        /// It holds voice.
        speech: bool,
        /// It is a muted microphone's silence.
        muted: bool,
    },
    /// The audio frame asked for while catching up was never captured.
    AudioNotCaptured,
    /// A video picture, encoded.
    VideoEncoded {
        /// When it was captured.
        capture: Instant,
        /// The encoded picture.
        data: Vec<u8>,
        /// It decodes on its own.
        keyframe: bool,
        /// The source's width, height and frame rate.
        source: (u32, u32, u32),
    },
    /// The video decoder failed or dropped a frame: a keyframe is needed.
    VideoDecodeFailed,
    /// The transport refused a video datagram (`max_datagram`: the largest it takes now).
    VideoSendFailed {
        /// The largest datagram the path takes now, if known.
        max_datagram: Option<usize>,
    },
    /// The transport's state (round trip, congestion window, queue).
    Path(PathState),
    /// The call moved to a new connection (it reconnected): what was learnt of the old path
    /// is forgotten.
    NewPath,
}

/// What to do, from [`CallMedia::poll_output`].
#[derive(Debug, PartialEq, Eq)]
pub enum MediaOutput {
    /// Audio work for the driver (take in what arrived, encode a frame, play one).
    Audio(AudioWork),
    /// Send this datagram now.
    Transmit(Vec<u8>),
    /// A whole video frame for the decoder, in order.
    Frame(AssembledFrame),
}

/// Counters of what fitted neither audio nor video.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallMediaStats {
    /// Datagrams that arrived for a medium not running (dropped).
    pub unrouted: u64,
}

/// The media of a call with one peer.
#[derive(Debug, Default)]
pub struct CallMedia {
    audio: Option<AudioStream>,
    video: Option<VideoLink>,
    stats: CallMediaStats,
}

impl CallMedia {
    /// No media yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the call's audio, its first frame due at `now` (a running one starts afresh).
    pub fn start_audio(&mut self, config: AudioStreamConfig, now: Instant) {
        self.audio = Some(AudioStream::new(config, now));
    }

    /// Stops the audio.
    pub fn stop_audio(&mut self) {
        self.audio = None;
    }

    /// Starts the call's video (both directions; sending begins with the first picture);
    /// `epoch` is when the video began (capture times count from it).
    pub fn start_video(&mut self, config: VideoLinkConfig, epoch: Instant, now: Instant) {
        self.video = Some(VideoLink::new(config, epoch, now));
    }

    /// Stops the video.
    pub fn stop_video(&mut self) {
        self.video = None;
    }

    /// The audio, if it runs.
    pub fn audio(&self) -> Option<&AudioStream> {
        self.audio.as_ref()
    }

    /// The video, if it runs.
    pub fn video(&self) -> Option<&VideoLink> {
        self.video.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> CallMediaStats {
        self.stats
    }

    /// Something happened at `now`.
    pub fn handle_input(&mut self, now: Instant, input: MediaInput<'_>) {
        match input {
            MediaInput::Timeout => {
                if let Some(a) = &mut self.audio {
                    a.handle_timeout(now);
                }
                if let Some(v) = &mut self.video {
                    v.handle_timeout(now);
                }
            }
            MediaInput::Datagram(d) => self.handle_datagram(now, d),
            MediaInput::AudioEncoded {
                data,
                speech,
                muted,
            } => {
                if let Some(a) = &mut self.audio {
                    a.handle_encoded(data, speech, muted);
                }
            }
            MediaInput::AudioNotCaptured => {
                if let Some(a) = &mut self.audio {
                    a.handle_not_captured();
                }
            }
            MediaInput::VideoEncoded {
                capture,
                data,
                keyframe,
                source,
            } => {
                if let Some(v) = &mut self.video {
                    v.handle_encoded(now, capture, data, keyframe, source);
                }
            }
            MediaInput::VideoDecodeFailed => {
                if let Some(v) = &mut self.video {
                    v.handle_decode_failed();
                }
            }
            MediaInput::VideoSendFailed { max_datagram } => {
                if let Some(v) = &mut self.video {
                    v.handle_send_failed(max_datagram);
                }
            }
            MediaInput::Path(p) => {
                if let Some(v) = &mut self.video {
                    v.handle_path(p);
                }
            }
            MediaInput::NewPath => {
                if let Some(v) = &mut self.video {
                    v.handle_new_path(now);
                }
            }
        }
    }

    /// Sorts an arriving datagram by its kind: video's fragments and feedback to the video,
    /// everything else to the audio (which counts what it cannot parse).
    fn handle_datagram(&mut self, now: Instant, d: &[u8]) {
        let video = matches!(datagram_kind(d), Some(KIND_FRAGMENT | KIND_FEEDBACK));
        match (video, &mut self.audio, &mut self.video) {
            (true, _, Some(v)) => v.handle_datagram(now, d),
            (false, Some(a), _) => a.handle_datagram(now, d),
            _ => self.stats.unrouted += 1,
        }
    }

    /// The next thing to do at `now`, audio's first; `None` when there is nothing until
    /// [`CallMedia::poll_timeout`] (or until an `Encode` asked for is answered).
    pub fn poll_output(&mut self, now: Instant) -> Option<MediaOutput> {
        self.poll_audio(now).or_else(|| self.poll_video(now))
    }

    /// Audio's next output alone (work, or a datagram whose time has come).
    pub fn poll_audio(&mut self, now: Instant) -> Option<MediaOutput> {
        let a = self.audio.as_mut()?;
        if let Some(w) = a.poll_work(now) {
            return Some(MediaOutput::Audio(w));
        }
        let mut buf = Vec::new();
        a.poll_transmit(now, &mut buf)
            .then_some(MediaOutput::Transmit(buf))
    }

    /// Video's next output alone (a whole frame, or a datagram the pacer lets go).
    pub fn poll_video(&mut self, now: Instant) -> Option<MediaOutput> {
        let mut buf = Vec::new();
        if let Some(v) = &mut self.video {
            if let Some(f) = v.poll_frame() {
                return Some(MediaOutput::Frame(f));
            }
            if v.poll_transmit(now, &mut buf) {
                return Some(MediaOutput::Transmit(buf));
            }
        }
        None
    }

    /// What the video encoder should do now (layer, bitrate, keyframe, backlog); `None`
    /// without video.
    pub fn poll_advice(&mut self, now: Instant) -> Option<CaptureAdvice> {
        self.video.as_mut().map(|v| v.poll_advice(now))
    }

    /// When to give [`MediaInput::Timeout`] next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let a = self.audio.as_ref().map(AudioStream::poll_timeout);
        let v = self.video.as_ref().map(|v| v.poll_timeout(now));
        match (a, v) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }
}

#[path = "call_machine.rs"]
mod machine;
pub use machine::{CallInput, CallMachine, CallMachineStats, CallOutput};

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
