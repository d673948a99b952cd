//! The two ends of an audio stream, sans-IO: PCM and time in, datagrams out; datagrams and
//! the playout clock in, PCM out.

use std::time::Instant;

use extrasafe_core::media::{
    AudioStreamConfig, JitterBuffer, JitterConfig, Packetizer, Playout, RichMode,
};

use crate::codec::{CodecError, Decoder, Encoder, OpusSettings};
use crate::FRAME_SAMPLES;

/// How a call's audio is sent.
#[derive(Clone, Debug)]
pub struct AudioConfig {
    /// Opus settings (constant bitrate).
    pub opus: OpusSettings,
    /// Size of every media datagram of the call, in bytes: room for the frame and two copies
    /// at the default bitrate. 320 bytes at 50 datagrams per second is 128 kb/s before QUIC's
    /// overhead.
    pub datagram_size: usize,
    /// Older frames copied into each datagram, as room allows.
    pub redundancy: usize,
    /// Spend the datagram on a better frame and one copy while the far end reports that it
    /// rebuilt nothing of ours ([`AudioConfig::RICH_BITRATE`]), on `redundancy` copies at
    /// `opus.bitrate` as soon as it reports much.
    pub adaptive: bool,
    /// Jitter buffer tuning.
    pub jitter: JitterConfig,
    /// Clean the microphone signal before encoding (RNNoise).
    pub noise_suppression: bool,
    /// Take the speaker's echo out of the microphone signal (WebRTC's AEC3), fed with what
    /// the call plays ([`AudioSender::far_end`]). Off here: with no loudspeaker and
    /// microphone in the same room (files, a headset) it has nothing to take out and only
    /// costs quality (bench/RESULTS.md); the front ends turn it on for a microphone and a
    /// speaker.
    pub echo_cancellation: bool,
    /// Bring the voice to a steady level (WebRTC's AGC2), for a microphone: off here, as a
    /// file's level is the file's.
    pub gain_control: bool,
}

impl AudioConfig {
    /// The rich mode's bitrate: 56 kb/s, whose frame and one copy fill the 320-byte datagram
    /// of 40 kb/s with two (bench/RESULTS.md: PESQ-WB 4.33 against 4.20 on a clean path,
    /// and as good or better up to 5 % of datagrams lost one at a time).
    pub const RICH_BITRATE: u32 = 56_000;

    /// The call's sans-IO audio machine for this configuration.
    pub fn stream_config(&self) -> AudioStreamConfig {
        AudioStreamConfig {
            frame_samples: FRAME_SAMPLES as u16,
            datagram_size: self.datagram_size,
            redundancy: self.redundancy,
            bitrate: self.opus.bitrate.max(0) as u32,
            rich: self.rich_mode(),
            jitter: self.jitter_config(),
            ..AudioStreamConfig::default()
        }
    }

    /// The clean path's mode: [`Self::RICH_BITRATE`] with one copy, if adaptive and if two
    /// such frames fit the datagram.
    fn rich_mode(&self) -> Option<RichMode> {
        let frame_bytes = Self::RICH_BITRATE as usize / 8 / 50;
        let fits =
            extrasafe_core::media::packet::HEADER_LEN + 2 * (2 + frame_bytes) <= self.datagram_size;
        (self.adaptive && fits && Self::RICH_BITRATE > self.opus.bitrate.max(0) as u32).then_some(
            RichMode {
                bitrate: Self::RICH_BITRATE,
                redundancy: 1,
            },
        )
    }

    fn jitter_config(&self) -> JitterConfig {
        JitterConfig {
            // In-band FEC, too, rebuilds a lost frame from the next datagram.
            max_headroom: self.redundancy.max(self.opus.inband_fec as usize).min(8) as u32,
            ..self.jitter.clone()
        }
    }
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            opus: OpusSettings::default(),
            datagram_size: 320,
            redundancy: 2,
            adaptive: true,
            jitter: JitterConfig::default(),
            noise_suppression: true,
            echo_cancellation: false,
            gain_control: false,
        }
    }
}

/// Voice activity, held for 200 ms so word endings count as speech: the noise suppressor's
/// voice probability when it runs, else frame energy above −45 dBFS. Only steers where the
/// receiver may stretch or shrink pauses; it never shows on the wire.
#[derive(Debug, Default)]
struct Vad {
    hang: u32,
}

impl Vad {
    fn update(&mut self, active: bool) -> bool {
        if active {
            self.hang = 10;
        } else {
            self.hang = self.hang.saturating_sub(1);
        }
        self.hang > 0
    }

    fn energetic(pcm: &[i16]) -> bool {
        let energy = pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len().max(1) as f64;
        energy > (32_768.0f64 * 10f64.powf(-45.0 / 20.0)).powi(2)
    }
}

/// Turns 20 ms frames of microphone PCM into fixed-size datagrams.
pub struct AudioSender {
    encoder: Box<dyn Encoder>,
    /// The bitrate the encoder runs at.
    bitrate: u32,
    packetizer: Packetizer,
    ts: u32,
    muted: bool,
    vad: Vad,
    denoise: Option<crate::denoise::NoiseSuppressor>,
    echo: Option<Box<crate::echo::EchoCanceller>>,
    frame: Vec<i16>,
    scratch: Vec<u8>,
}

impl AudioSender {
    /// A sender with this encoder.
    pub fn new(config: &AudioConfig, encoder: Box<dyn Encoder>) -> Self {
        Self {
            encoder,
            bitrate: config.opus.bitrate.max(0) as u32,
            packetizer: Packetizer::new(config.datagram_size, config.redundancy),
            ts: 0,
            muted: false,
            vad: Vad::default(),
            denoise: config
                .noise_suppression
                .then(crate::denoise::NoiseSuppressor::new),
            echo: (config.echo_cancellation || config.gain_control).then(|| {
                Box::new(crate::echo::EchoCanceller::with(
                    config.echo_cancellation,
                    config.gain_control,
                ))
            }),
            frame: vec![0; FRAME_SAMPLES],
            scratch: vec![0; extrasafe_core::media::packet::MAX_FRAME_BYTES],
        }
    }

    /// The speaker is sent this 20 ms frame now: the echo canceller's reference (call it
    /// with exactly what is played, every frame, silence included).
    pub fn far_end(&mut self, pcm: &[i16]) {
        if let Some(aec) = &mut self.echo {
            aec.far_end(pcm);
        }
    }

    /// What the echo canceller found (`None` when it is off).
    pub fn echo_stats(&self) -> Option<crate::echo::EchoStats> {
        self.echo
            .as_ref()
            .filter(|e| e.cancels_echo())
            .map(|e| e.stats())
    }

    /// Encodes the next frames at this bitrate (bits per second), as the call's audio stream
    /// asks ([`extrasafe_core::media::AudioWork::Encode`]).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), CodecError> {
        if self.bitrate == bitrate {
            return Ok(());
        }
        self.encoder
            .set_bitrate(i32::try_from(bitrate).unwrap_or(i32::MAX))?;
        self.bitrate = bitrate;
        Ok(())
    }

    /// While muted, silence is encoded and sent: same size, same rate.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Encodes one frame (`FRAME_SAMPLES` samples) into the next datagram, written to `out`.
    pub fn send_frame(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let encoded = self.encode(pcm);
        let (n, speech, muted) = (encoded.data.len(), encoded.speech, encoded.muted);
        let result = encoded.result;
        self.packetizer.packetize(
            self.ts,
            FRAME_SAMPLES as u16,
            speech,
            muted,
            &self.scratch[..n],
            out,
        );
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        result
    }

    /// Cleans and encodes one frame (`FRAME_SAMPLES` samples), for a call's
    /// [`extrasafe_core::media::AudioStream`] to packetize. An encoder error yields an empty
    /// frame (the datagram still leaves, with the usual size) and the error.
    pub fn encode(&mut self, pcm: &[i16]) -> Encoded<'_> {
        if self.muted || pcm.len() != FRAME_SAMPLES {
            self.frame.fill(0);
        } else {
            self.frame.copy_from_slice(pcm);
            // The echo first (noise suppression would take it for voice), and the level.
            if let Some(aec) = &mut self.echo {
                aec.process(&mut self.frame);
            }
        }
        let active = match &mut self.denoise {
            Some(ns) => ns.process(&mut self.frame) > 0.5,
            None => Vad::energetic(&self.frame),
        };
        // Muted is never speech, not even for the hangover after the last word.
        let speech = if self.muted {
            self.vad.hang = 0;
            false
        } else {
            self.vad.update(active)
        };
        // Even if the encoder fails, a datagram of the usual size leaves on time (with an
        // empty frame, which the receiver conceals): the rate must never tell anything.
        let encoded = self.encoder.encode(&self.frame, &mut self.scratch);
        let n = *encoded.as_ref().unwrap_or(&0);
        Encoded {
            data: &self.scratch[..n],
            speech,
            muted: self.muted,
            result: encoded.map(|_| ()),
        }
    }
}

/// One frame, encoded by [`AudioSender::encode`].
#[derive(Debug)]
pub struct Encoded<'a> {
    /// The Opus frame (empty if the encoder failed).
    pub data: &'a [u8],
    /// It holds voice (steers only where the far end may stretch pauses).
    pub speech: bool,
    /// It is the silence of a muted microphone.
    pub muted: bool,
    /// The encoder's error, if it failed.
    pub result: Result<(), CodecError>,
}

/// Counters of the receiving side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Datagrams dropped as malformed (counted, never fatal).
    pub malformed: u64,
    /// Frames the decoder refused (then concealed).
    pub decode_errors: u64,
    /// Bytes received.
    pub bytes: u64,
}

/// What [`AudioReceiver::play`] put in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Played {
    /// Nothing received yet: silence.
    Silence,
    /// A decoded frame.
    Decoded,
    /// A synthesized frame (loss, late, or a stretched pause).
    Concealed,
}

/// Turns datagrams into PCM at the pace of the playout clock.
pub struct AudioReceiver {
    decoder: Box<dyn Decoder>,
    jitter: JitterBuffer,
    stats: ReceiverStats,
}

impl AudioReceiver {
    /// A receiver with this decoder.
    pub fn new(config: &AudioConfig, decoder: Box<dyn Decoder>) -> Self {
        Self {
            decoder,
            jitter: JitterBuffer::new(config.jitter_config()),
            stats: ReceiverStats::default(),
        }
    }

    /// A datagram arrived. Malformed ones are counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        let frame = FRAME_SAMPLES as u16;
        if !extrasafe_core::media::stream::push_datagram(&mut self.jitter, now, datagram, frame) {
            self.stats.malformed += 1;
        }
    }

    /// The playout clock wants the next frame: `out` must hold `FRAME_SAMPLES` samples.
    pub fn play(&mut self, now: Instant, out: &mut [i16]) -> Played {
        let playout = self.jitter.pop(now);
        self.decode(playout, out)
    }

    /// Decodes (or conceals) what a jitter buffer says to play: `out` must hold
    /// `FRAME_SAMPLES` samples.
    pub fn decode(&mut self, playout: Playout, out: &mut [i16]) -> Played {
        match playout {
            Playout::Silence => {
                out.fill(0);
                Played::Silence
            }
            Playout::Frame { payload, .. } => match self.decoder.decode(&payload, out) {
                Ok(n) => {
                    // A shorter frame than ours (a peer sending 10 ms frames) must not leave
                    // the previous frame's end to be played again.
                    let len = out.len();
                    out[n.min(len)..].fill(0);
                    Played::Decoded
                }
                Err(_) => {
                    self.stats.decode_errors += 1;
                    self.conceal(None, out);
                    Played::Concealed
                }
            },
            Playout::Conceal { fec } => {
                self.conceal(fec.as_deref(), out);
                Played::Concealed
            }
        }
    }

    fn conceal(&mut self, fec: Option<&[u8]>, out: &mut [i16]) {
        if self.decoder.conceal(fec, out).is_err() {
            out.fill(0);
        }
    }

    /// The jitter buffer, for its statistics and delay.
    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }
}

/// Finds how far `received` lags `reference` (in samples) and how alike they are there
/// (normalized cross-correlation, 1 = identical shape). Coarse search on 1 ms energy
/// envelopes, then exact search around the coarse lag.
pub fn align(reference: &[i16], received: &[i16], max_lag: usize) -> (usize, f64) {
    let env = |x: &[i16]| -> Vec<f64> {
        x.chunks(48)
            .map(|c| c.iter().map(|&v| (v as f64).abs()).sum::<f64>() / c.len() as f64)
            .collect()
    };
    let (er, ex) = (env(reference), env(received));
    let corr = |a: &[f64], b: &[f64], lag: usize| -> f64 {
        let n = a.len().min(b.len().saturating_sub(lag));
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (x, y) = (a[i], b[i + lag]);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        if aa == 0.0 || bb == 0.0 {
            0.0
        } else {
            ab / (aa * bb).sqrt()
        }
    };
    let coarse = (0..=max_lag / 48)
        .max_by(|&a, &b| corr(&er, &ex, a).total_cmp(&corr(&er, &ex, b)))
        .unwrap_or(0)
        * 48;
    let (rf, xf): (Vec<f64>, Vec<f64>) = (
        reference.iter().map(|&v| v as f64).collect(),
        received.iter().map(|&v| v as f64).collect(),
    );
    let lo = coarse.saturating_sub(96);
    (lo..=coarse + 96)
        .map(|lag| (lag, corr(&rf, &xf, lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{OpusPureDecoder, OpusPureEncoder};
    use extrasafe_core::media::MediaPacket;
    use std::time::Duration;

    /// Sends `speech` through sender → (loss) → receiver on virtual time with 30 ms of
    /// one-way delay; returns what the receiver played.
    fn call(
        speech: &[i16],
        config: &AudioConfig,
        lose: impl Fn(usize) -> bool,
    ) -> (Vec<i16>, AudioReceiver) {
        let mut tx = AudioSender::new(
            config,
            Box::new(OpusPureEncoder::new(config.opus.clone()).unwrap()),
        );
        let mut rx = AudioReceiver::new(config, Box::new(OpusPureDecoder::new().unwrap()));
        let t0 = Instant::now();
        let frame = Duration::from_millis(20);
        let mut in_flight = std::collections::VecDeque::new();
        let mut out = Vec::new();
        let mut buf = vec![0i16; FRAME_SAMPLES];
        let mut d = Vec::new();
        let frames = speech.len() / FRAME_SAMPLES;
        for i in 0..frames + 25 {
            let now = t0 + frame * i as u32;
            if i < frames {
                tx.send_frame(&speech[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES], &mut d)
                    .unwrap();
                assert_eq!(d.len(), config.datagram_size);
                if !lose(i) {
                    in_flight.push_back((now + Duration::from_millis(30), d.clone()));
                }
            }
            // The playout clock runs 10 ms out of phase with the sender.
            let play_at = now + Duration::from_millis(10);
            while in_flight.front().is_some_and(|(t, _)| *t <= play_at) {
                let (t, dg) = in_flight.pop_front().unwrap();
                rx.handle_datagram(t, &dg);
            }
            rx.play(play_at, &mut buf);
            out.extend_from_slice(&buf);
        }
        (out, rx)
    }

    #[test]
    fn speech_crosses_and_matches() {
        let speech = crate::speech::sample(4.0);
        let (out, rx) = call(&speech, &AudioConfig::default(), |_| false);
        let (lag, c) = align(&speech, &out, 48_000 / 4);
        eprintln!("lag {lag} samples, correlation {c:.3}");
        // 30 ms network + the buffer + the clock phase: under 100 ms; Opus keeps the shape.
        assert!(lag < 4_800, "lag {lag} samples");
        assert!(c > 0.6, "correlation {c}");
        // Every frame played (the slots after the last one are concealed, as they must be).
        assert_eq!(rx.jitter().stats().lost, 0);
        assert_eq!(rx.jitter().stats().played, 200);
        assert_eq!(rx.stats().malformed, 0);
    }

    #[test]
    fn redundancy_repairs_random_loss() {
        let speech = crate::speech::sample(4.0);
        let mut x = 7u32;
        let lost: Vec<bool> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.is_multiple_of(10)
            })
            .collect();
        let (_, with) = call(&speech, &AudioConfig::default(), |i| lost[i]);
        let none = AudioConfig {
            redundancy: 0,
            ..AudioConfig::default()
        };
        let (_, without) = call(&speech, &none, |i| lost[i]);
        let (w, wo) = (with.jitter().stats(), without.jitter().stats());
        eprintln!(
            "10 % loss: lost {} frames with copies, {} without",
            w.lost, wo.lost
        );
        assert!(wo.lost >= 15, "{wo:?}");
        assert!(w.lost * 4 <= wo.lost, "with copies {w:?}, without {wo:?}");
    }

    #[test]
    fn hostile_datagrams_are_counted_and_the_stream_goes_on() {
        let config = AudioConfig::default();
        let mut rx = AudioReceiver::new(&config, Box::new(OpusPureDecoder::new().unwrap()));
        let now = Instant::now();
        rx.handle_datagram(now, &[]);
        rx.handle_datagram(now, &[0x10; 200]);
        rx.handle_datagram(now, &[0xFF; 7]);
        assert_eq!(rx.stats().malformed, 3);
        let mut buf = vec![0i16; FRAME_SAMPLES];
        assert_eq!(rx.play(now, &mut buf), Played::Silence);
        // A good datagram after the bad ones plays as usual.
        let mut tx = AudioSender::new(
            &config,
            Box::new(OpusPureEncoder::new(config.opus.clone()).unwrap()),
        );
        let mut d = Vec::new();
        tx.send_frame(&crate::speech::sample(0.02), &mut d).unwrap();
        rx.handle_datagram(now, &d);
        let later = now + std::time::Duration::from_millis(100);
        assert_eq!(rx.play(later, &mut buf), Played::Decoded);
        assert_eq!(rx.stats().malformed, 3);
    }

    #[test]
    fn muted_sends_the_same_size_and_silence() {
        let config = AudioConfig::default();
        let mut tx = AudioSender::new(
            &config,
            Box::new(OpusPureEncoder::new(config.opus.clone()).unwrap()),
        );
        let loud = crate::speech::sample(0.4);
        let mut d = Vec::new();
        let mut dec = OpusPureDecoder::new().unwrap();
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        let mut sizes = Vec::new();
        for (i, frame) in loud.chunks_exact(FRAME_SAMPLES).enumerate() {
            tx.set_muted(i >= 5);
            tx.send_frame(frame, &mut d).unwrap();
            sizes.push(d.len());
            let p = MediaPacket::parse(&d).unwrap();
            dec.decode(p.frames[0], &mut pcm).unwrap();
            if i >= 5 {
                assert!(p.muted && !p.speech);
            }
            if i >= 10 {
                // What a muted datagram carries decodes to silence, once the decoder's
                // ringing from the last spoken frame has died away.
                let rms = (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64)
                    .sqrt();
                assert!(rms < 30.0, "muted frame {i} has rms {rms:.0}");
            }
        }
        assert!(sizes.iter().all(|&n| n == config.datagram_size));
    }
}
