//! What audio a call carries: files or devices, checked before dialling so a typo in a device
//! name or a bad file fails at once, not after the other person answered.

use std::path::{Path, PathBuf};

use extrasafe_devices::{DeviceError, SoundServer};
use extrasafe_net::audio::AudioCall;
use extrasafe_net::media::codec::{OpusImpl, OpusSettings};
use extrasafe_net::media::io::{
    AudioSink, AudioSource, Discard, SamplesSource, Silence, WavFileSink,
};
use extrasafe_net::media::AudioConfig;
use extrasafe_net::Call;

use crate::args::AudioArgs;
use crate::exit::{Failure, USAGE};
use crate::output::Output;

/// Where the voice comes from.
#[derive(Clone)]
enum Voice {
    File {
        samples: Vec<i16>,
        looping: bool,
    },
    /// The microphone with this exact name.
    Mic(String),
    Silence,
}

/// Where what is heard goes.
#[derive(Clone)]
enum Ear {
    File(PathBuf),
    /// The speaker with this exact name.
    Speaker(String),
    Nowhere,
}

#[derive(Clone)]
pub struct AudioPlan {
    /// The sound server, connected once (each connection holds a thread in its client).
    server: Option<SoundServer>,
    enabled: bool,
    voice: Voice,
    ear: Ear,
    noise_suppression: bool,
    echo_cancellation: bool,
    gain_control: bool,
    opus: OpusImpl,
}

impl AudioPlan {
    pub async fn from_args(a: &AudioArgs, out: Output) -> Result<Self, Failure> {
        let mut plan = Self {
            server: None,
            enabled: !a.no_audio,
            voice: Voice::Silence,
            ear: Ear::Nowhere,
            noise_suppression: !a.no_noise_suppression,
            echo_cancellation: !a.no_echo_cancel,
            gain_control: !a.no_auto_gain,
            opus: if a.opus == "libopus" {
                OpusImpl::System
            } else {
                OpusImpl::Pure
            },
        };
        if !plan.opus.available() {
            return Err(Failure::new(
                USAGE,
                "This build has no system libopus: rebuild with `cargo build --release \
                 --features libopus` (needs libopus-dev), or leave out --opus.",
            ));
        }
        if let Some(p) = &a.audio_in {
            let samples = extrasafe_net::media::wav::read(p)
                .map_err(|e| Failure::new(USAGE, format!("Cannot use --audio-in: {e}.")))?;
            plan.voice = Voice::File {
                samples,
                looping: a.looping,
            };
        }
        if let Some(p) = &a.audio_out {
            check_folder(p)?;
            plan.ear = Ear::File(p.clone());
        }
        let want_mic = plan.enabled && a.audio_in.is_none();
        let want_speaker = plan.enabled && a.audio_out.is_none();
        if !(want_mic || want_speaker) {
            return Ok(plan);
        }
        let list = match connect_and_list().await {
            Ok((server, list)) => {
                plan.server = Some(server);
                list
            }
            Err(e) if a.mic.is_some() || a.speaker.is_some() => {
                return Err(Failure::new(
                    USAGE,
                    format!(
                        "Cannot use --mic/--speaker: {e}. Start PulseAudio or PipeWire, or use \
                         --audio-in/--audio-out with WAV files."
                    ),
                ))
            }
            Err(e) => {
                out.warn(&format!(
                    "No sound devices: {e}. Calls will send silence and play nothing; use \
                     --audio-in/--audio-out for WAV files, or --no-audio for chat only."
                ));
                return Ok(plan);
            }
        };
        if want_mic {
            match list.mic(a.mic.as_deref()) {
                Ok(d) => plan.voice = Voice::Mic(d.name.clone()),
                Err(e) if a.mic.is_some() => return Err(device_failure("--mic", e)),
                Err(_) => out.warn("There is no microphone: calls will send silence."),
            }
        }
        if want_speaker {
            match list.speaker(a.speaker.as_deref()) {
                Ok(d) => plan.ear = Ear::Speaker(d.name.clone()),
                Err(e) if a.speaker.is_some() => return Err(device_failure("--speaker", e)),
                Err(_) => out.warn("There is no speaker: you will not hear the other side."),
            }
        }
        Ok(plan)
    }

    /// The file what is heard is written to, if any.
    pub fn record_path(&self) -> Option<&Path> {
        match &self.ear {
            Ear::File(p) => Some(p),
            _ => None,
        }
    }

    /// Opens the ends and starts the audio of a connected call. A device that fails now
    /// (unplugged since) is replaced by silence, with a warning: the call goes on.
    pub async fn start(&self, call: &Call, out: Output) -> Option<AudioCall> {
        if !self.enabled {
            return None;
        }
        let server = match (&self.voice, &self.ear) {
            (Voice::Mic(_), _) | (_, Ear::Speaker(_)) => self.server.clone(),
            _ => None,
        };
        let source: Box<dyn AudioSource> = match (&self.voice, &server) {
            (Voice::File { samples, looping }, _) => {
                Box::new(SamplesSource::new(samples.clone(), *looping))
            }
            (Voice::Mic(name), Some(server)) => match within(server.open_mic_exact(name)).await {
                Ok(mic) => {
                    out.hint(format!("Microphone: {}", label(mic.info())));
                    Box::new(mic)
                }
                Err(e) => {
                    out.warn(&format!("The microphone failed ({e}); sending silence."));
                    Box::new(Silence)
                }
            },
            _ => Box::new(Silence),
        };
        let sink: Box<dyn AudioSink> = match (&self.ear, &server) {
            (Ear::File(p), _) => match WavFileSink::create(p) {
                Ok(s) => Box::new(s),
                Err(e) => {
                    out.warn(&format!("Cannot record to {e}; not recording."));
                    Box::new(Discard)
                }
            },
            (Ear::Speaker(name), Some(server)) => {
                match within(server.open_speaker_exact(name)).await {
                    Ok(spk) => {
                        out.hint(format!("Speaker: {}", label(spk.info())));
                        Box::new(spk)
                    }
                    Err(e) => {
                        out.warn(&format!(
                            "The speaker failed ({e}); you will not hear them."
                        ));
                        Box::new(Discard)
                    }
                }
            }
            _ => Box::new(Discard),
        };
        let defaults = AudioConfig::default();
        let config = AudioConfig {
            noise_suppression: self.noise_suppression,
            // Only a microphone can hear a speaker.
            echo_cancellation: self.echo_cancellation
                && matches!(self.voice, Voice::Mic(_))
                && matches!(self.ear, Ear::Speaker(_)),
            gain_control: self.gain_control && matches!(self.voice, Voice::Mic(_)),
            opus: OpusSettings {
                implementation: self.opus,
                ..defaults.opus.clone()
            },
            ..defaults
        };
        match AudioCall::start(call.media(), config, source, sink) {
            Ok(a) => Some(a),
            Err(e) => {
                out.warn(&format!("Audio could not start ({e}); chat still works."));
                None
            }
        }
    }
}

fn label(d: &extrasafe_devices::DeviceInfo) -> String {
    if d.description.is_empty() {
        d.name.clone()
    } else {
        format!("{} ({})", d.description, d.name)
    }
}

/// How long the sound server may take to answer before we go on without it: a hung server
/// must not hang the call (or the answer to it).
const SERVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

async fn within<T>(
    f: impl std::future::Future<Output = Result<T, DeviceError>>,
) -> Result<T, DeviceError> {
    tokio::time::timeout(SERVER_PATIENCE, f)
        .await
        .unwrap_or_else(|_| Err(DeviceError::Server("it did not answer within 3 s".into())))
}

pub async fn connect_and_list() -> Result<(SoundServer, extrasafe_devices::DeviceList), DeviceError>
{
    // The client's handshake is blocking I/O: keep it off the runtime's only thread.
    let connect = tokio::task::spawn_blocking(SoundServer::connect);
    let server = match tokio::time::timeout(SERVER_PATIENCE, connect).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err(DeviceError::Server("the connection attempt failed".into())),
        Err(_) => return Err(DeviceError::Server("it did not answer within 3 s".into())),
    };
    let list = within(server.devices()).await?;
    Ok((server, list))
}

fn device_failure(flag: &str, e: DeviceError) -> Failure {
    let more = match &e {
        DeviceError::NotFound { available, .. } if !available.is_empty() => {
            format!(" There are: {}.", available.join(", "))
        }
        _ => String::new(),
    };
    Failure::new(
        USAGE,
        format!("Cannot use {flag}: {e}.{more} `extrasafe devices` lists them."),
    )
}

fn check_folder(out: &Path) -> Result<(), Failure> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::new(
            USAGE,
            format!(
                "Cannot use --audio-out: the folder {} does not exist.",
                dir.display()
            ),
        ))
    }
}
