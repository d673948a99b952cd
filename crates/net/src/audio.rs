//! Runs a call's audio: one task paces the sender and the playout on a 20 ms clock and feeds
//! arriving datagrams to the receiver. The decisions live in the sans-IO `AudioSender`,
//! `AudioReceiver`, jitter buffer and `MediaClock`; this is only their driver.
//!
//! Woken late (a busy machine did not schedule the task for a while), the driver does every
//! frame the clock says it owes, at once (up to 400 ms of them): it takes in what arrived
//! meanwhile, plays every owed frame into the sink (a recording keeps the call's length; a
//! speaker's queue keeps only what it has room for, its own clock having gone on), and
//! reads, encodes and sends a frame for each owed one **while the source has it**: a file
//! always does; a microphone whose sound server stalled with us has not captured those frames,
//! and reading ahead of it would make silence out of nothing and unprime its queue, so they
//! are not sent (the far end conceals them) and are counted. The datagrams of the frames
//! caught up leave together: an observer of the path can tell that the sender's machine
//! stalled (as it could from the gap), which says nothing of what was said.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use extrasafe_core::media::{JitterStats, MediaClock};
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

/// One frame of audio, and the pace datagrams leave at.
const FRAME: Duration = Duration::from_millis(20);
/// At most this many arrived datagrams are taken in at once after a stall.
const MAX_DRAIN: usize = 256;
/// Datagrams leave this long after their tick: more than reading, cleaning and encoding a
/// frame take here (under 1 ms), so the send time does not depend on the content.
const SEND_OFFSET: Duration = Duration::from_millis(3);

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
            let mut clock = MediaClock::new(t0.into_std(), FRAME);
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
            // The encoded datagram waits in `dg` until its send time.
            let send_timer = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(send_timer);
            let mut pending = false;
            let send = |dg: &[u8], stats: &mut AudioStats| match link.send(dg) {
                Ok(()) => {
                    stats.sent += 1;
                    stats.sent_bytes += dg.len() as u64;
                }
                Err(_) => stats.send_errors += 1,
            };
            loop {
                tokio::select! {
                    // The clock comes before arriving datagrams, so a flood of them cannot
                    // starve the sender or the playout.
                    biased;
                    _ = &mut stop_rx => break,
                    _ = &mut send_timer, if pending => {
                        pending = false;
                        send(&dg, &mut stats);
                    }
                    _ = &mut wake => {
                        let due = clock.due(tokio::time::Instant::now().into_std());
                        if due.frames > 1 {
                            // Held up: what arrived meanwhile goes into the jitter buffer
                            // before the frames it holds are played (a bounded number, so a
                            // flood cannot hold the clock up).
                            let mut taken = 0;
                            while taken < MAX_DRAIN {
                                let Some(d) = link.try_recv() else { break };
                                receiver.handle_datagram(Instant::now(), &d);
                                taken += 1;
                            }
                        }
                        // The datagrams of the frames caught up, sent together once all are
                        // made: gaps between them would show how long each took to encode.
                        let mut burst: Vec<Vec<u8>> = Vec::new();
                        // A datagram still waiting for its send time (woken before it left)
                        // is late now: it leaves before the next one is made.
                        if pending && due.frames > 0 {
                            pending = false;
                            send(&dg, &mut stats);
                        }
                        for i in 0..due.frames {
                            let last = i + 1 == due.frames;
                            // A device that stalled with us has nothing to catch up with:
                            // the frames it never captured are not sent, not made of silence.
                            if i == 0 || source.ready() {
                                if !source.read_frame(&mut pcm) {
                                    stats.source_done = true;
                                }
                                // An encoder error still yields a datagram of the usual size.
                                let _ = sender.send_frame(&pcm, &mut dg);
                                if last {
                                    // Leave at a fixed offset from the frame's deadline, not
                                    // when encoding finished: how long a frame took to encode
                                    // (speech or silence) must not show in the packet timing.
                                    // Meanwhile arriving datagrams are taken in as usual.
                                    let deadline = clock.next_deadline() - FRAME;
                                    send_timer.as_mut().reset(
                                        tokio::time::Instant::from_std(deadline + SEND_OFFSET),
                                    );
                                    pending = true;
                                } else {
                                    burst.push(dg.clone());
                                }
                            } else {
                                stats.frames_unsent += 1;
                            }
                            // Every owed frame is played: a recording keeps the call's length.
                            receiver.play(Instant::now(), &mut out);
                            sink.write_frame(&out);
                            frames += 1;
                            if frames % 25 == 0 {
                                stats.device_fault = source.fault().or_else(|| sink.fault());
                                fill(&mut stats, &receiver, &link, &clock, started, udp_at_start);
                                let _ = stats_tx.send(stats.clone());
                            }
                        }
                        for d in &burst {
                            send(d, &mut stats);
                        }
                        wake.as_mut()
                            .reset(tokio::time::Instant::from_std(clock.next_deadline()));
                    }
                    _ = mute_rx.changed() => sender.set_muted(*mute_rx.borrow()),
                    d = link.recv() => match d {
                        Some(d) => receiver.handle_datagram(Instant::now(), &d),
                        None => break,
                    },
                }
            }
            fill(&mut stats, &receiver, &link, &clock, started, udp_at_start);
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
    rx: &AudioReceiver,
    link: &impl AudioLink,
    clock: &MediaClock,
    started: Instant,
    udp0: u64,
) {
    stats.elapsed = started.elapsed();
    stats.frames_due = clock.frames();
    stats.frames_caught_up = clock.caught_up();
    stats.frames_dropped = clock.dropped();
    stats.received = rx.stats();
    stats.jitter = rx.jitter().stats();
    stats.target_delay = rx.jitter().target_delay();
    stats.network_jitter = rx.jitter().jitter();
    stats.buffered = rx.jitter().buffered();
    stats.rtt = link.rtt();
    stats.udp_tx_bytes = link.udp_tx_bytes().saturating_sub(udp0);
}
