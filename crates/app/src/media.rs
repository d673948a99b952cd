//! A call's local media as both front ends control it: the audio and video that run on it,
//! mute, the camera on and off, the screen shared, and how those combine:
//! - the camera off pauses sending (nothing of the picture is read or sent), unless the
//!   screen is shared: sharing goes on, and the camera's state applies again when it stops;
//! - sharing sends the screen in place of the camera, whatever the camera's state;
//! - turning the camera on in a call that began without a picture takes the source the
//!   front end opened for it.
//!
//! Which devices, files or screens are opened is the front end's choice; what it means for
//! the call is decided here, once.

use extrasafe_net::audio::{AudioCall, AudioStats};
use extrasafe_net::video::{VideoCall, VideoStats};
use extrasafe_net::video_media::VideoSource;

/// What the person has switched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaState {
    /// The microphone is muted (packets of the same size still go, carrying silence).
    pub muted: bool,
    /// The camera (or the call's picture source) is on.
    pub camera_on: bool,
    /// The screen is shared.
    pub sharing: bool,
}

impl MediaState {
    /// Nothing of the video is sent: neither the camera nor a shared screen.
    pub fn video_paused(&self) -> bool {
        !self.camera_on && !self.sharing
    }
}

/// A switch that does not apply to this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The call carries no audio.
    #[error("this call carries no audio")]
    NoAudio,
    /// The call carries no video.
    #[error("this call carries no video")]
    NoVideo,
    /// The camera was asked on, but the call has no picture source and none was given.
    #[error("no picture source to turn on")]
    NoSource,
}

/// How the media ended: each part's final figures and whether its sink finished (a file
/// sink wrote its file).
#[derive(Debug)]
pub struct MediaEnd {
    /// Audio's figures and its sink's result.
    pub audio: Option<(AudioStats, Result<(), extrasafe_net::MediaEndError>)>,
    /// Video's figures and its sink's result.
    pub video: Option<(VideoStats, Result<(), extrasafe_net::MediaEndError>)>,
}

/// A call's running media; see the module documentation.
pub struct CallMedia {
    audio: Option<AudioCall>,
    video: Option<VideoCall>,
    state: MediaState,
    /// The video has a picture source of its own (not only a shared screen).
    has_source: bool,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("audio", &self.audio.is_some())
            .field("video", &self.video.is_some())
            .field("state", &self.state)
            .finish()
    }
}

impl CallMedia {
    /// The media a call started with; `has_source`: its video was started with a picture
    /// source (the camera is then on), not to receive only.
    pub fn new(audio: Option<AudioCall>, video: Option<VideoCall>, has_source: bool) -> Self {
        let has_source = has_source && video.is_some();
        Self {
            audio,
            video,
            state: MediaState {
                muted: false,
                camera_on: has_source,
                sharing: false,
            },
            has_source,
        }
    }

    /// What is switched now.
    pub fn state(&self) -> MediaState {
        self.state
    }

    /// The video has a picture source of its own: the camera can be turned on without one.
    pub fn has_source(&self) -> bool {
        self.has_source
    }

    /// The call's audio, if it carries any.
    pub fn audio(&self) -> Option<&AudioCall> {
        self.audio.as_ref()
    }

    /// The call's video, if it carries any.
    pub fn video(&self) -> Option<&VideoCall> {
        self.video.as_ref()
    }

    /// Mutes or unmutes the microphone.
    pub fn set_muted(&mut self, muted: bool) -> Result<MediaState, MediaError> {
        let audio = self.audio.as_ref().ok_or(MediaError::NoAudio)?;
        audio.set_muted(muted);
        self.state.muted = muted;
        Ok(self.state)
    }

    /// Turns the camera on or off. `source`: a picture source the front end opened now, for
    /// a call whose video has none yet (it replaces any other).
    pub fn set_camera(
        &mut self,
        on: bool,
        source: Option<Box<dyn VideoSource>>,
    ) -> Result<MediaState, MediaError> {
        let video = self.video.as_ref().ok_or(MediaError::NoVideo)?;
        if let Some(s) = source {
            video.set_source(Some(s));
            self.has_source = true;
        }
        if on && !self.has_source {
            return Err(MediaError::NoSource);
        }
        self.state.camera_on = on;
        video.set_paused(self.state.video_paused());
        Ok(self.state)
    }

    /// Shares `screen` in place of the camera, or with `None` stops sharing.
    pub fn share(
        &mut self,
        screen: Option<Box<dyn VideoSource>>,
    ) -> Result<MediaState, MediaError> {
        let video = self.video.as_ref().ok_or(MediaError::NoVideo)?;
        self.state.sharing = screen.is_some();
        video.share(screen);
        video.set_paused(self.state.video_paused());
        Ok(self.state)
    }

    /// Stops audio and video (video first: its sink may be a file that takes a moment).
    pub async fn stop(self) -> MediaEnd {
        let video = match self.video {
            Some(v) => Some(v.stop().await),
            None => None,
        };
        let audio = match self.audio {
            Some(a) => Some(a.stop().await),
            None => None,
        };
        MediaEnd { audio, video }
    }
}
