//! A call's audio: started and stopped on its own, it runs on the call's media engine
//! (`engine.rs`), which drives the sans-IO `core::media::AudioStream` (the 20 ms pace,
//! packets, jitter buffer, and what is owed after a stall, all decided there and tested on
//! virtual time in core) through `core::call::CallMedia` with the codec and devices: it wakes
//! when the machine says, does the work it asks for (take in what arrived, read and encode a
//! frame, decode and play one) and sends the datagrams it hands out.
//!
//! Woken late (a busy machine did not schedule the task for a while), it does every frame the
//! stream says it owes, at once (up to 400 ms of them): a recording keeps the call's length; a
//! speaker's queue keeps only what it has room for, its own clock having gone on. An owed
//! frame is read and sent **while the source has it**: a file always does; a microphone whose
//! sound server stalled with us has not captured those frames, and reading ahead of it would
//! make silence out of nothing and unprime its queue, so they are not sent (the far end
//! conceals them) and are counted. The datagrams of the frames caught up leave together: an
//! observer of the path can tell that the sender's machine stalled (as it could from the
//! gap), which says nothing of what was said.

pub use extrasafe_media::echo::EchoStats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use extrasafe_core::media::JitterStats;
use extrasafe_core::video::PathState;
use extrasafe_media::codec::{opus_pair, CodecError};
use extrasafe_media::io::{AudioSink, AudioSource};
use extrasafe_media::{AudioConfig, AudioReceiver, AudioSender, ReceiverStats};
use tokio::sync::{mpsc, oneshot, watch};

use crate::call::{MediaLink, MediaSendError};
use crate::engine::{self, AudioStart, Ctl, EngineSlot};
use crate::error::MediaEndError;

/// What the audio task needs of a connection: a call's [`MediaLink`], or (in tests) a link in
/// memory, on tokio's virtual clock.
pub trait AudioLink: Send + Sync + 'static {
    /// Sends one datagram (never retransmitted).
    fn send(&self, datagram: &[u8]) -> Result<(), MediaSendError>;
    /// The next arriving audio datagram; `None` once the link is closed.
    fn recv(&self) -> impl std::future::Future<Output = Option<bytes::Bytes>> + Send;
    /// An audio datagram that has already arrived, if any (never waits).
    fn try_recv(&self) -> Option<bytes::Bytes>;
    /// Where the peer is, if the link goes over the network.
    fn remote(&self) -> Option<SocketAddr>;
    /// The path's round trip.
    fn rtt(&self) -> Duration;
    /// UDP bytes sent so far, all headers included.
    fn udp_tx_bytes(&self) -> u64;
    /// The next arriving video datagram; never, for a link without video.
    fn recv_video(&self) -> impl std::future::Future<Output = Option<bytes::Bytes>> + Send {
        std::future::pending()
    }
    /// The transport's state, for video's rate control (none for a link in memory).
    fn path(&self) -> Option<PathState> {
        None
    }
    /// How many times the call moved to a new connection.
    fn moves(&self) -> u64 {
        0
    }
    /// Where the call's media engine is kept, so that audio and video share it; `None`: a
    /// link of its own, whose engine runs its one part.
    fn engine_slot(&self) -> Option<Arc<EngineSlot>> {
        None
    }
}

impl AudioLink for MediaLink {
    fn send(&self, datagram: &[u8]) -> Result<(), MediaSendError> {
        MediaLink::send(self, datagram)
    }
    fn recv(&self) -> impl std::future::Future<Output = Option<bytes::Bytes>> + Send {
        MediaLink::recv(self)
    }
    fn try_recv(&self) -> Option<bytes::Bytes> {
        MediaLink::try_recv(self)
    }
    fn remote(&self) -> Option<SocketAddr> {
        Some(MediaLink::remote(self))
    }
    fn rtt(&self) -> Duration {
        MediaLink::rtt(self)
    }
    fn udp_tx_bytes(&self) -> u64 {
        MediaLink::udp_tx_bytes(self)
    }
    fn recv_video(&self) -> impl std::future::Future<Output = Option<bytes::Bytes>> + Send {
        MediaLink::recv_video(self)
    }
    fn path(&self) -> Option<PathState> {
        Some(PathState {
            rtt: MediaLink::rtt(self),
            cwnd: self.cwnd(),
            queued: self.datagrams_queued(),
            max_datagram: self.max_datagram(),
        })
    }
    fn moves(&self) -> u64 {
        MediaLink::moves(self)
    }
    fn engine_slot(&self) -> Option<Arc<EngineSlot>> {
        Some(MediaLink::engine_slot(self))
    }
}

/// A snapshot of a call's audio, for the stats line.
#[derive(Clone, Debug, Default)]
pub struct AudioStats {
    /// Time since audio started.
    pub elapsed: Duration,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes of media datagrams sent (payload, before QUIC's overhead).
    pub sent_bytes: u64,
    /// Datagrams that could not be sent (path too small or congested).
    pub send_errors: u64,
    /// Bytes of UDP sent on the connection (everything, all headers of QUIC included).
    pub udp_tx_bytes: u64,
    /// The same, per second over the last [`RecentRate::WINDOW`] (`None` in the first half
    /// second): what the path carries now, without the connection's start (on loopback,
    /// path-MTU probes of up to 65 kB send some 700 kB in the first 20 ms).
    pub udp_tx_recent_bps: Option<f64>,
    /// Receiver counters.
    pub received: ReceiverStats,
    /// Jitter buffer counters.
    pub jitter: JitterStats,
    /// Network jitter measured by the jitter buffer.
    pub network_jitter: Duration,
    /// Jitter buffer target delay.
    pub target_delay: Duration,
    /// Audio buffered now.
    pub buffered: Duration,
    /// Round-trip time of the path.
    pub rtt: Duration,
    /// The address the call runs over (always direct).
    pub remote: Option<SocketAddr>,
    /// The source ran out (a file played once).
    pub source_done: bool,
    /// A device problem to tell the person about (the microphone or speaker went away).
    pub device_fault: Option<extrasafe_media::io::DeviceFault>,
    /// Frames that fell due since audio started (each played, and sent unless counted in
    /// `frames_unsent`), counting those dropped.
    pub frames_due: u64,
    /// Frames done late, after the task was held up, and so not lost.
    pub frames_caught_up: u64,
    /// Frames given up after a gap too long to replay (a suspended machine): time lost.
    pub frames_dropped: u64,
    /// Owed frames a device source had not captured (its sound server stalled with us):
    /// not sent, concealed by the far end.
    pub frames_unsent: u64,
    /// The echo canceller's findings (`None` when it is off).
    pub echo: Option<EchoStats>,
    /// The voice's bitrate now (bits per second): higher while the far end rebuilds nothing
    /// of ours, lower with more copies when it must.
    pub voice_bitrate: u32,
    /// Older frames each datagram carries now.
    pub copies: usize,
    /// Times the audio switched between those two modes.
    pub mode_switches: u64,
}

/// A running audio stream; stop it to finish the sink and get the final figures. It runs on
/// the call's media engine (`engine.rs`), beside the call's video if any.
#[derive(Debug)]
pub struct AudioCall {
    id: u64,
    engine: mpsc::UnboundedSender<Ctl>,
    stats: watch::Receiver<AudioStats>,
    done: Option<oneshot::Receiver<(AudioStats, Result<(), MediaEndError>)>>,
}

impl AudioCall {
    /// Starts sending `source` and playing into `sink` over `link`.
    pub fn start(
        link: impl AudioLink,
        config: AudioConfig,
        source: Box<dyn AudioSource>,
        sink: Box<dyn AudioSink>,
    ) -> Result<Self, CodecError> {
        let (encoder, decoder) = opus_pair(&config.opus)?;
        let sender = AudioSender::new(&config, encoder);
        let receiver = AudioReceiver::new(&config, decoder);
        let (stats_tx, stats_rx) = watch::channel(AudioStats::default());
        let (done_tx, done_rx) = oneshot::channel();
        let id = engine::next_id();
        let engine = engine::attach(link);
        let _ = engine.send(Ctl::StartAudio(Box::new(AudioStart {
            id,
            config,
            sender,
            receiver,
            source,
            sink,
            stats_tx,
            done: done_tx,
        })));
        Ok(Self {
            id,
            engine,
            stats: stats_rx,
            done: Some(done_rx),
        })
    }

    /// Mutes or unmutes: muted, the same datagrams go out, carrying silence.
    pub fn set_muted(&self, muted: bool) {
        let _ = self.engine.send(Ctl::Mute(self.id, muted));
    }

    /// The latest figures (updated every half second).
    pub fn stats(&self) -> AudioStats {
        self.stats.borrow().clone()
    }

    /// Stops the stream, finishes the sink (a file sink writes its file) and returns the
    /// final figures and the sink's result.
    pub async fn stop(mut self) -> (AudioStats, Result<(), MediaEndError>) {
        let _ = self.engine.send(Ctl::StopAudio(self.id));
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| (AudioStats::default(), Err(MediaEndError::Stopped))),
            None => (AudioStats::default(), Err(MediaEndError::Stopped)),
        }
    }
}

impl Drop for AudioCall {
    fn drop(&mut self) {
        // Dropped without `stop`: the part ends all the same (the sink is finished).
        let _ = self.engine.send(Ctl::StopAudio(self.id));
    }
}

/// A rate over the last few seconds, from samples of a running total (bytes sent).
#[derive(Debug, Default)]
pub(crate) struct RecentRate {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl RecentRate {
    /// How far back the rate looks.
    pub(crate) const WINDOW: Duration = Duration::from_secs(5);

    /// The total is `total` at `now`: bits per second since the oldest sample kept (the
    /// newest one at least `WINDOW` old), once that spans half a second.
    pub(crate) fn update(&mut self, now: std::time::Instant, total: u64) -> Option<f64> {
        self.samples.push_back((now, total));
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= Self::WINDOW
        {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front()?;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        (dt >= 0.5).then(|| total.saturating_sub(b0) as f64 * 8.0 / dt)
    }
}

#[cfg(test)]
mod recent_rate_tests {
    use super::*;
    use std::time::Instant;

    /// A burst at the start counts while it is in the window, and not after it: 100 kB in
    /// the first half second, then 20 kB/s steadily, sampled every half second.
    #[test]
    fn the_recent_rate_forgets_the_start() {
        let t0 = Instant::now();
        let mut r = RecentRate::default();
        assert_eq!(r.update(t0, 0), None);
        let mut last = None;
        for k in 1..=30u64 {
            let now = t0 + Duration::from_millis(500 * k);
            last = r.update(now, 100_000 + 10_000 * k);
            if k == 2 {
                // 1 s in: the burst is inside the window (120 kB in 1 s).
                let bps = last.unwrap();
                assert!((bps - 960_000.0).abs() < 1.0, "{bps}");
            }
        }
        // 15 s in: the last 5 s only, 20 kB/s = 160 kb/s.
        let bps = last.unwrap();
        assert!((bps - 160_000.0).abs() < 1.0, "{bps}");
        assert!(r.samples.len() <= 12);
    }
}
