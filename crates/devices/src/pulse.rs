//! The PulseAudio native protocol end: list devices, open a microphone and a speaker.

use std::ffi::CString;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use extrasafe_media::io::{AudioSink, AudioSource, DeviceFault};
use extrasafe_media::RATE;
use pulseaudio::protocol::stream::{BufferAttr, StreamFlags};
use pulseaudio::protocol::{self, ChannelMap, SampleFormat, SampleSpec};
use pulseaudio::{Client, ClientError, PlaybackSource};

use crate::queue::{le_bytes_to_samples, CaptureQueue, PlayoutQueue, QueueStats};

/// Bytes in `ms` milliseconds of our stream format (48 kHz mono 16-bit).
const fn ms_bytes(ms: u32) -> u32 {
    RATE / 1000 * 2 * ms
}

/// The server sends captured audio in blocks of this size (and its source runs at least this
/// fine-grained): half a frame, so a frame is ready soon after it was spoken.
const CAPTURE_FRAGMENT_MS: u32 = 10;
/// The server keeps this much audio queued towards the speaker, and starts playing once
/// `PLAYBACK_PREBUF_MS` is there. Our clock hands over 20 ms at a time, so the server must
/// hold a little more than one frame to never run dry between two of them.
const PLAYBACK_TARGET_MS: u32 = 40;
const PLAYBACK_PREBUF_MS: u32 = 30;
const PLAYBACK_MINREQ_MS: u32 = 10;

/// Something went wrong with the sound server or a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No server socket was found.
    #[error("no sound server is running (PulseAudio, or PipeWire with pipewire-pulse)")]
    NoServer,
    /// The server could not be reached or failed a request.
    #[error("the sound server failed: {0}")]
    Server(String),
    /// No device has that name.
    #[error("no {kind} matches \"{query}\"")]
    NotFound {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// What was asked for.
        query: String,
        /// The names there are.
        available: Vec<String>,
    },
    /// Several devices match.
    #[error("\"{query}\" matches several {kind}s: {}", matches.join(", "))]
    Ambiguous {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// What was asked for.
        query: String,
        /// The names that match.
        matches: Vec<String>,
    },
}

impl From<ClientError> for DeviceError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::ServerUnavailable => DeviceError::NoServer,
            ClientError::ServerError(code) => DeviceError::Server(format!("{code:?}")),
            other => DeviceError::Server(other.to_string()),
        }
    }
}

/// One microphone or speaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The server's name for it (what `--mic`/`--speaker` match first).
    pub name: String,
    /// A human description ("Built-in Audio Analog Stereo").
    pub description: String,
    /// The server's default for its kind.
    pub is_default: bool,
    /// A capture of what a speaker plays, not a microphone.
    pub monitor: bool,
    index: u32,
}

/// What the server offers.
#[derive(Clone, Debug, Default)]
pub struct DeviceList {
    /// Capture devices (including speaker monitors, marked).
    pub mics: Vec<DeviceInfo>,
    /// Playback devices.
    pub speakers: Vec<DeviceInfo>,
}

impl DeviceList {
    /// The microphone `query` names (see [`pick`]'s rules), or the default for `None`.
    pub fn mic(&self, query: Option<&str>) -> Result<&DeviceInfo, DeviceError> {
        pick(&self.mics, query, "microphone")
    }
    /// The speaker `query` names, or the default for `None`.
    pub fn speaker(&self, query: Option<&str>) -> Result<&DeviceInfo, DeviceError> {
        pick(&self.speakers, query, "speaker")
    }
}

/// Picks the device `query` means: an exact name; else the one whose name or description
/// contains it (ignoring case), preferring real microphones over speaker monitors; `None`
/// means the default.
fn pick<'a>(
    devices: &'a [DeviceInfo],
    query: Option<&str>,
    kind: &'static str,
) -> Result<&'a DeviceInfo, DeviceError> {
    let Some(query) = query else {
        // Never a monitor by default, even when the server made one the default source (it
        // does on machines without a microphone): that would send the other person whatever
        // this machine plays, their own voice included.
        return devices
            .iter()
            .find(|d| d.is_default && !d.monitor)
            .or_else(|| devices.iter().find(|d| !d.monitor))
            .ok_or(DeviceError::NotFound {
                kind,
                query: "(the default)".into(),
                available: Vec::new(),
            });
    };
    if let Some(d) = devices.iter().find(|d| d.name == query) {
        return Ok(d);
    }
    let q = query.to_lowercase();
    let hits: Vec<&DeviceInfo> = devices
        .iter()
        .filter(|d| d.name.to_lowercase().contains(&q) || d.description.to_lowercase().contains(&q))
        .collect();
    let real: Vec<&DeviceInfo> = hits.iter().copied().filter(|d| !d.monitor).collect();
    match (hits.len(), real.len()) {
        (1, _) => Ok(hits[0]),
        (_, 1) => Ok(real[0]),
        (0, _) => Err(DeviceError::NotFound {
            kind,
            query: query.into(),
            available: devices.iter().map(|d| d.name.clone()).collect(),
        }),
        _ => Err(DeviceError::Ambiguous {
            kind,
            query: query.into(),
            matches: hits.iter().map(|d| d.name.clone()).collect(),
        }),
    }
}

fn exact<'a>(
    devices: &'a [DeviceInfo],
    name: &str,
    kind: &'static str,
) -> Result<&'a DeviceInfo, DeviceError> {
    devices
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| DeviceError::NotFound {
            kind,
            query: name.into(),
            available: devices.iter().map(|d| d.name.clone()).collect(),
        })
}

fn text(c: &CString) -> String {
    c.to_string_lossy().into_owned()
}

/// A connection to the sound server.
#[derive(Clone)]
pub struct SoundServer {
    client: Client,
}

impl std::fmt::Debug for SoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoundServer")
    }
}

/// Our stream format: what the pipeline runs at. The server converts from the device's.
fn our_spec() -> SampleSpec {
    SampleSpec {
        format: SampleFormat::S16Le,
        channels: 1,
        sample_rate: RATE,
    }
}

fn call_props() -> protocol::Props {
    let mut props = protocol::Props::new();
    // "phone" lets the server treat us as a call: duck or pause music, pick a headset.
    props.set(protocol::Prop::MediaRole, c"phone");
    props.set(protocol::Prop::MediaName, c"call");
    props
}

impl SoundServer {
    /// Finds the server the way other programs do (`PULSE_SERVER`, then the runtime
    /// directory) and connects.
    pub fn connect() -> Result<Self, DeviceError> {
        let client = Client::from_env(c"EXTRA SAFE")?;
        Ok(Self { client })
    }

    /// Lists microphones and speakers.
    pub async fn devices(&self) -> Result<DeviceList, DeviceError> {
        let server = self.client.server_info().await?;
        let default_sink = server.default_sink_name.as_ref().map(text);
        let default_source = server.default_source_name.as_ref().map(text);
        let mics = self
            .client
            .list_sources()
            .await?
            .into_iter()
            .map(|s| {
                let name = text(&s.name);
                DeviceInfo {
                    is_default: default_source.as_deref() == Some(name.as_str()),
                    description: s.description.as_ref().map(text).unwrap_or_default(),
                    monitor: s.monitor_of_sink_index.is_some(),
                    index: s.index,
                    name,
                }
            })
            .collect();
        let speakers = self
            .client
            .list_sinks()
            .await?
            .into_iter()
            .map(|s| {
                let name = text(&s.name);
                DeviceInfo {
                    is_default: default_sink.as_deref() == Some(name.as_str()),
                    description: s.description.as_ref().map(text).unwrap_or_default(),
                    monitor: false,
                    index: s.index,
                    name,
                }
            })
            .collect();
        Ok(DeviceList { mics, speakers })
    }

    /// Opens the microphone `name` matches (see `--mic`), or the default.
    pub async fn open_mic(&self, name: Option<&str>) -> Result<Mic, DeviceError> {
        let list = self.devices().await?;
        let dev = list.mic(name)?.clone();
        self.open_mic_device(dev).await
    }

    /// Opens the microphone with exactly this name (one picked earlier from the list): if it
    /// went away meanwhile this fails rather than picking another.
    pub async fn open_mic_exact(&self, name: &str) -> Result<Mic, DeviceError> {
        let list = self.devices().await?;
        let dev = exact(&list.mics, name, "microphone")?.clone();
        self.open_mic_device(dev).await
    }

    async fn open_mic_device(&self, dev: DeviceInfo) -> Result<Mic, DeviceError> {
        let queue = Arc::new(Mutex::new(CaptureQueue::new()));
        let q = queue.clone();
        let lost = Arc::new(AtomicBool::new(false));
        let guard = LostOnDrop(lost.clone());
        let mut scratch = Vec::new();
        let sink = move |bytes: &[u8]| {
            // Owned by the closure: if the client's reactor ends (the server went away) and
            // drops the closure, the microphone knows.
            let _ = &guard;
            le_bytes_to_samples(bytes, &mut scratch);
            if let Ok(mut q) = q.lock() {
                q.push(&scratch);
            }
        };
        let params = protocol::RecordStreamParams {
            sample_spec: our_spec(),
            channel_map: ChannelMap::mono(),
            source_index: Some(dev.index),
            buffer_attr: BufferAttr {
                max_length: u32::MAX,
                fragment_size: ms_bytes(CAPTURE_FRAGMENT_MS),
                ..BufferAttr::default()
            },
            flags: StreamFlags {
                adjust_latency: true,
                ..StreamFlags::default()
            },
            props: call_props(),
            ..Default::default()
        };
        let stream = self.client.create_record_stream(params, sink).await?;
        Ok(Mic {
            info: dev,
            queue,
            lost,
            _stream: stream,
            _client: self.client.clone(),
        })
    }

    /// Opens the speaker `name` matches (see `--speaker`), or the default.
    pub async fn open_speaker(&self, name: Option<&str>) -> Result<Speaker, DeviceError> {
        let list = self.devices().await?;
        let dev = list.speaker(name)?.clone();
        self.open_speaker_device(dev).await
    }

    /// Opens the speaker with exactly this name (see [`Self::open_mic_exact`]).
    pub async fn open_speaker_exact(&self, name: &str) -> Result<Speaker, DeviceError> {
        let list = self.devices().await?;
        let dev = exact(&list.speakers, name, "speaker")?.clone();
        self.open_speaker_device(dev).await
    }

    async fn open_speaker_device(&self, dev: DeviceInfo) -> Result<Speaker, DeviceError> {
        let shared = Arc::new(Mutex::new(Feed {
            queue: PlayoutQueue::new(),
            waker: None,
        }));
        let params = protocol::PlaybackStreamParams {
            sample_spec: our_spec(),
            channel_map: ChannelMap::mono(),
            sink_index: Some(dev.index),
            buffer_attr: BufferAttr {
                max_length: ms_bytes(4 * PLAYBACK_TARGET_MS),
                target_length: ms_bytes(PLAYBACK_TARGET_MS),
                pre_buffering: ms_bytes(PLAYBACK_PREBUF_MS),
                minimum_request_length: ms_bytes(PLAYBACK_MINREQ_MS),
                fragment_size: u32::MAX,
            },
            flags: StreamFlags {
                adjust_latency: true,
                ..StreamFlags::default()
            },
            props: call_props(),
            ..Default::default()
        };
        let lost = Arc::new(AtomicBool::new(false));
        let source = FeedSource {
            feed: shared.clone(),
            _lost: LostOnDrop(lost.clone()),
        };
        let stream = self.client.create_playback_stream(params, source).await?;
        Ok(Speaker {
            info: dev,
            shared,
            lost,
            _stream: stream,
            _client: self.client.clone(),
        })
    }
}

/// A microphone: captured audio waits in a small queue for the call's clock.
pub struct Mic {
    info: DeviceInfo,
    queue: Arc<Mutex<CaptureQueue>>,
    lost: Arc<AtomicBool>,
    _stream: pulseaudio::RecordStream,
    _client: Client,
}

impl Mic {
    /// Which device this is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }
    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.queue.lock().map(|q| q.stats()).unwrap_or_default()
    }
}

impl AudioSource for Mic {
    fn read_frame(&mut self, out: &mut [i16]) -> bool {
        match self.queue.lock() {
            Ok(mut q) => {
                q.read_frame(out);
            }
            Err(_) => out.fill(0),
        }
        // A microphone never runs out, even while it is still starting.
        true
    }
    fn ready(&self) -> bool {
        self.queue.lock().map(|q| q.ready()).unwrap_or(false)
    }
    fn fault(&self) -> Option<DeviceFault> {
        self.lost
            .load(Ordering::Relaxed)
            .then_some(DeviceFault::MicrophoneLost)
    }
}

struct Feed {
    queue: PlayoutQueue,
    waker: Option<Waker>,
}

/// What the client's reactor polls for speaker audio. Pending (not zero, which would end
/// the stream) while nothing is queued; the next frame wakes it.
struct FeedSource {
    feed: Arc<Mutex<Feed>>,
    _lost: LostOnDrop,
}

/// Marks a device lost when the client's reactor drops what it was given.
struct LostOnDrop(Arc<AtomicBool>);

impl Drop for LostOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl PlaybackSource for FeedSource {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<usize> {
        let Ok(mut feed) = self.feed.lock() else {
            return Poll::Ready(0);
        };
        let n = feed.queue.pull_le_bytes(buf);
        if n > 0 {
            return Poll::Ready(n);
        }
        feed.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A speaker: frames from the call's clock wait in a small queue for the server.
pub struct Speaker {
    info: DeviceInfo,
    shared: Arc<Mutex<Feed>>,
    lost: Arc<AtomicBool>,
    _stream: pulseaudio::PlaybackStream,
    _client: Client,
}

impl Speaker {
    /// Which device this is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }
    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.shared
            .lock()
            .map(|f| f.queue.stats())
            .unwrap_or_default()
    }
}

impl AudioSink for Speaker {
    fn write_frame(&mut self, pcm: &[i16]) {
        let waker = match self.shared.lock() {
            Ok(mut f) => {
                f.queue.push(pcm);
                f.waker.take()
            }
            Err(_) => None,
        };
        // Woken outside the lock: the reactor takes it when it polls.
        if let Some(w) = waker {
            w.wake();
        }
    }
    fn fault(&self) -> Option<DeviceFault> {
        self.lost
            .load(Ordering::Relaxed)
            .then_some(DeviceFault::SpeakerLost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, description: &str, is_default: bool, monitor: bool) -> DeviceInfo {
        DeviceInfo {
            name: name.into(),
            description: description.into(),
            is_default,
            monitor,
            index: 0,
        }
    }

    #[test]
    fn devices_are_picked_by_exact_name_then_unique_substring() {
        let mics = [
            dev("alsa_input.usb-Headset", "USB Headset Mono", false, false),
            dev("alsa_input.pci-builtin", "Built-in Audio", true, false),
            dev(
                "alsa_output.pci-builtin.monitor",
                "Monitor of Built-in Audio",
                false,
                true,
            ),
        ];
        assert_eq!(
            pick(&mics, None, "microphone").unwrap().name,
            "alsa_input.pci-builtin"
        );
        assert_eq!(
            pick(&mics, Some("headset"), "microphone").unwrap().name,
            "alsa_input.usb-Headset"
        );
        // Matches the mic and the monitor: the real microphone wins.
        assert_eq!(
            pick(&mics, Some("built-in"), "microphone").unwrap().name,
            "alsa_input.pci-builtin"
        );
        assert_eq!(
            pick(&mics, Some("alsa_output.pci-builtin.monitor"), "microphone")
                .unwrap()
                .name,
            "alsa_output.pci-builtin.monitor"
        );
        match pick(&mics, Some("alsa_input"), "microphone") {
            Err(DeviceError::Ambiguous { matches, .. }) => assert_eq!(matches.len(), 2),
            other => panic!("{other:?}"),
        }
        match pick(&mics, Some("bluetooth"), "microphone") {
            Err(DeviceError::NotFound { available, .. }) => assert_eq!(available.len(), 3),
            other => panic!("{other:?}"),
        }
        // No default marked: the first real one, never a monitor.
        let no_default = [
            dev("x.monitor", "", false, true),
            dev("mic", "", false, false),
        ];
        assert_eq!(pick(&no_default, None, "microphone").unwrap().name, "mic");
        // A monitor as the server's default is passed over; with no real microphone at all
        // there is no default (the call sends silence rather than what the speaker plays).
        let monitor_default = [
            dev("spk.monitor", "", true, true),
            dev("mic", "", false, false),
        ];
        assert_eq!(
            pick(&monitor_default, None, "microphone").unwrap().name,
            "mic"
        );
        let only_monitor = [dev("spk.monitor", "", true, true)];
        assert!(pick(&only_monitor, None, "microphone").is_err());
        // Named explicitly, a monitor is allowed (recording what a speaker plays on purpose).
        assert!(pick(&only_monitor, Some("spk.monitor"), "microphone").is_ok());
    }
}
