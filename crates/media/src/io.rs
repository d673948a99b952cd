//! Where audio comes from and goes to. Devices come later; these are the file and silence
//! ends used by tests, scripts and the demo.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::FRAME_SAMPLES;

/// Gives one 20 ms frame at a time.
pub trait AudioSource: Send {
    /// Fills `out` (`FRAME_SAMPLES` samples); false once the source has nothing more (the
    /// frame is then silence).
    fn read_frame(&mut self, out: &mut [i16]) -> bool;
    /// Whether a whole frame is there to read now. A file always has one; a microphone only
    /// once the sound card delivered it. After a stall the call's clock catches up only
    /// while the source is ready: a device whose own thread stalled too has nothing to
    /// catch up with, and reading ahead of it would insert silence.
    fn ready(&self) -> bool {
        true
    }
    /// Something went wrong that the person should hear about (a device went away).
    fn fault(&self) -> Option<DeviceFault> {
        None
    }
}

/// A device problem the person should hear about during a call (the front end words it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceFault {
    /// The sound server closed the microphone: silence is sent from now on.
    MicrophoneLost,
    /// The sound server closed the speaker: nothing of the other side is heard any more.
    SpeakerLost,
}

/// A recording could not be written: this device's problem (a full disk, a folder that went
/// away, no permission), for the person to act on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct SinkError {
    /// The file.
    pub path: PathBuf,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

impl SinkError {
    fn new(path: &std::path::Path, e: hound::Error) -> Self {
        let source = match e {
            hound::Error::IoError(e) => e,
            other => std::io::Error::other(other),
        };
        Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Takes one 20 ms frame at a time.
pub trait AudioSink: Send {
    /// A frame to play.
    fn write_frame(&mut self, pcm: &[i16]);
    /// The call is over: flush (a file sink writes its file here).
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Something went wrong that the person should hear about (a device went away).
    fn fault(&self) -> Option<DeviceFault> {
        None
    }
}

/// Samples held in memory, played once or looped.
pub struct SamplesSource {
    samples: Vec<i16>,
    pos: usize,
    looping: bool,
}

impl SamplesSource {
    /// Plays `samples` (48 kHz mono), looping if asked.
    pub fn new(samples: Vec<i16>, looping: bool) -> Self {
        Self {
            samples,
            pos: 0,
            looping,
        }
    }

    /// Reads a WAV file (any rate and channel count; converted).
    pub fn from_wav(path: &std::path::Path, looping: bool) -> Result<Self, crate::wav::WavError> {
        Ok(Self::new(crate::wav::read(path)?, looping))
    }
}

impl AudioSource for SamplesSource {
    fn read_frame(&mut self, out: &mut [i16]) -> bool {
        out.fill(0);
        if self.samples.is_empty() {
            return false;
        }
        let mut filled = 0;
        while filled < out.len() {
            if self.pos >= self.samples.len() {
                if !self.looping {
                    return filled > 0;
                }
                self.pos = 0;
            }
            let n = (out.len() - filled).min(self.samples.len() - self.pos);
            out[filled..filled + n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
            filled += n;
            self.pos += n;
        }
        true
    }
}

/// Nothing to say: silence forever.
pub struct Silence;

impl AudioSource for Silence {
    fn read_frame(&mut self, out: &mut [i16]) -> bool {
        out.fill(0);
        true
    }
}

/// Keeps what was played in memory (up to ten minutes), readable through
/// [`RecordingSink::samples`] from another task, and writes it to a WAV file at the end if
/// given a path. For long recordings use [`WavFileSink`], which streams to disk.
#[derive(Default, Clone)]
pub struct RecordingSink {
    samples: Arc<Mutex<Vec<i16>>>,
    path: Option<PathBuf>,
}

impl RecordingSink {
    /// Records in memory only.
    pub fn memory() -> Self {
        Self::default()
    }
    /// Records and writes `path` when the call ends.
    pub fn to_file(path: PathBuf) -> Self {
        Self {
            samples: Default::default(),
            path: Some(path),
        }
    }
    /// A copy of everything played so far.
    pub fn samples(&self) -> Vec<i16> {
        self.samples
            .lock()
            .expect("recording lock poisoned")
            .clone()
    }
}

impl AudioSink for RecordingSink {
    fn write_frame(&mut self, pcm: &[i16]) {
        debug_assert_eq!(pcm.len(), FRAME_SAMPLES);
        let mut s = self.samples.lock().expect("recording lock poisoned");
        if s.len() < MEMORY_LIMIT {
            s.extend_from_slice(pcm);
        }
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        match &self.path {
            Some(p) => crate::wav::write_file(p, &self.samples()).map_err(|e| SinkError::new(p, e)),
            None => Ok(()),
        }
    }
}

/// Samples a memory recording keeps at most: ten minutes.
const MEMORY_LIMIT: usize = 10 * 60 * crate::RATE as usize;

/// Streams what is played to a WAV file as it comes (48 kHz mono 16-bit), so a long call
/// costs no memory. A write error stops the recording and is reported by `finish`.
pub struct WavFileSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    error: Option<SinkError>,
}

impl WavFileSink {
    /// Creates (or truncates) the file now.
    pub fn create(path: &std::path::Path) -> Result<Self, SinkError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: crate::RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| SinkError::new(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Some(writer),
            error: None,
        })
    }
}

impl AudioSink for WavFileSink {
    fn write_frame(&mut self, pcm: &[i16]) {
        if let Some(w) = &mut self.writer {
            let mut frame = w.get_i16_writer(pcm.len() as u32);
            for &s in pcm {
                frame.write_sample(s);
            }
            if let Err(e) = frame.flush() {
                self.error = Some(SinkError::new(&self.path, e));
                self.writer = None;
            }
        }
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(w) = self.writer.take() {
            w.finalize().map_err(|e| SinkError::new(&self.path, e))?;
        }
        self.error.take().map_or(Ok(()), Err)
    }
}

/// Discards audio.
pub struct Discard;

impl AudioSink for Discard {
    fn write_frame(&mut self, _pcm: &[i16]) {}
}
