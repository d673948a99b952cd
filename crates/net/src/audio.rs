//! Runs a call's audio: one task drives the call's sans-IO `core::media::AudioStream` (the
//! 20 ms pace, packets, jitter buffer, and what is owed after a stall, all decided there and
//! tested on virtual time in core) with the codec and devices: it wakes when the stream says,
//! does the work it asks for (take in what arrived, read and encode a frame, decode and play
//! one) and sends the datagrams it hands out.
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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use extrasafe_core::media::{AudioStream, AudioWork, JitterStats};
use extrasafe_media::codec::{opus_pair, CodecError};
use extrasafe_media::io::{AudioSink, AudioSource};
use extrasafe_media::{AudioConfig, AudioReceiver, AudioSender, ReceiverStats, FRAME_SAMPLES};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::call::{MediaLink, MediaSendError};

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
    pub device_fault: Option<String>,
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
}

/// A running audio stream; stop it to finish the sink and get the final figures.
#[derive(Debug)]
pub struct AudioCall {
    stop: Option<oneshot::Sender<()>>,
    mute: watch::Sender<bool>,
    stats: watch::Receiver<AudioStats>,
    task: JoinHandle<(AudioStats, Result<(), String>)>,
}

impl AudioCall {
    /// Starts sending `source` and playing into `sink` over `link`.
    pub fn start(
        link: impl AudioLink,
        config: AudioConfig,
        mut source: Box<dyn AudioSource>,
        mut sink: Box<dyn AudioSink>,
    ) -> Result<Self, CodecError> {
        let (encoder, decoder) = opus_pair(&config.opus)?;
        let mut sender = AudioSender::new(&config, encoder);
        let mut receiver = AudioReceiver::new(&config, decoder);
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (mute_tx, mut mute_rx) = watch::channel(false);
        let (stats_tx, stats_rx) = watch::channel(AudioStats::default());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let udp_at_start = link.udp_tx_bytes();
            // On tokio's clock (virtual in tests), as the timers that wake the task.
            let t0 = tokio::time::Instant::now();
            let mut stream = AudioStream::new(config.stream_config(), t0.into_std());
            let wake = tokio::time::sleep_until(t0);
            tokio::pin!(wake);
            let mut stats = AudioStats {
                remote: link.remote(),
                ..AudioStats::default()
            };
            let (mut pcm, mut out, mut dg) = (
                vec![0i16; FRAME_SAMPLES],
                vec![0i16; FRAME_SAMPLES],
                Vec::new(),
            );
            let mut frames = 0u64;
            loop {
                tokio::select! {
                    // The clock comes before arriving datagrams, so a flood of them cannot
                    // starve the sender or the playout.
                    biased;
                    _ = &mut stop_rx => break,
                    _ = &mut wake => {
                        let now = tokio::time::Instant::now().into_std();
                        stream.handle_timeout(now);
                        while let Some(work) = stream.poll_work(now) {
                            match work {
                                AudioWork::TakeArrived { max } => {
                                    for _ in 0..max {
                                        let Some(d) = link.try_recv() else { break };
                                        stream.handle_datagram(now, &d);
                                    }
                                }
                                // A device that stalled with us has nothing to catch up with:
                                // the frames it never captured are not made of silence.
                                AudioWork::Encode { catching_up: true } if !source.ready() => {
                                    stream.handle_not_captured();
                                }
                                AudioWork::Encode { .. } => {
                                    if !source.read_frame(&mut pcm) {
                                        stats.source_done = true;
                                    }
                                    let e = sender.encode(&pcm);
                                    stream.handle_encoded(e.data, e.speech, e.muted);
                                }
                                // Every owed frame is played: a recording keeps the call's
                                // length.
                                AudioWork::Play(playout) => {
                                    receiver.decode(playout, &mut out);
                                    sink.write_frame(&out);
                                    frames += 1;
                                    if frames % 25 == 0 {
                                        stats.device_fault =
                                            source.fault().or_else(|| sink.fault());
                                        fill(&mut stats, &stream, &receiver, &link, started, udp_at_start);
                                        let _ = stats_tx.send(stats.clone());
                                    }
                                }
                            }
                        }
                        while stream.poll_transmit(now, &mut dg) {
                            match link.send(&dg) {
                                Ok(()) => {
                                    stats.sent += 1;
                                    stats.sent_bytes += dg.len() as u64;
                                }
                                Err(_) => stats.send_errors += 1,
                            }
                        }
                        wake.as_mut()
                            .reset(tokio::time::Instant::from_std(stream.poll_timeout()));
                    }
                    _ = mute_rx.changed() => sender.set_muted(*mute_rx.borrow()),
                    d = link.recv() => match d {
                        Some(d) => stream.handle_datagram(tokio::time::Instant::now().into_std(), &d),
                        None => break,
                    },
                }
            }
            fill(&mut stats, &stream, &receiver, &link, started, udp_at_start);
            let _ = stats_tx.send(stats.clone());
            (stats, sink.finish())
        });
        Ok(Self {
            stop: Some(stop_tx),
            mute: mute_tx,
            stats: stats_rx,
            task,
        })
    }

    /// Mutes or unmutes: muted, the same datagrams go out, carrying silence.
    pub fn set_muted(&self, muted: bool) {
        let _ = self.mute.send(muted);
    }

    /// The latest figures (updated every half second).
    pub fn stats(&self) -> AudioStats {
        self.stats.borrow().clone()
    }

    /// Stops the stream, finishes the sink (a file sink writes its file) and returns the
    /// final figures and the sink's result.
    pub async fn stop(mut self) -> (AudioStats, Result<(), String>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task)
            .await
            .unwrap_or_else(|_| (AudioStats::default(), Err("the audio task failed".into())))
    }
}

fn fill(
    stats: &mut AudioStats,
    stream: &AudioStream,
    rx: &AudioReceiver,
    link: &impl AudioLink,
    started: Instant,
    udp0: u64,
) {
    let s = stream.stats();
    stats.elapsed = started.elapsed();
    stats.frames_due = s.frames_due;
    stats.frames_caught_up = s.frames_caught_up;
    stats.frames_dropped = s.frames_dropped;
    stats.frames_unsent = s.frames_unsent;
    stats.received = ReceiverStats {
        datagrams: s.datagrams_in,
        malformed: s.malformed,
        bytes: s.bytes_in,
        decode_errors: rx.stats().decode_errors,
    };
    let jitter = stream.jitter();
    stats.jitter = jitter.stats();
    stats.target_delay = jitter.target_delay();
    stats.network_jitter = jitter.jitter();
    stats.buffered = jitter.buffered();
    stats.rtt = link.rtt();
    stats.udp_tx_bytes = link.udp_tx_bytes().saturating_sub(udp0);
}
