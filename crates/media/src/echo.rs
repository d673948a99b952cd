//! Echo cancellation for a call without a headset: WebRTC's AEC3 in pure Rust (`sonora`, a
//! port of WebRTC's audio processing), fed with exactly what the speaker is sent.
//!
//! The far end's voice comes out of the speaker, goes round the room and into the
//! microphone, some tens to hundreds of milliseconds later (the device's buffers and the
//! air): without a canceller the far end hears itself. The canceller learns that path
//! (its delay too, which it estimates and follows when it changes) from the frames played
//! ([`EchoCanceller::far_end`]) and takes their echo out of what the microphone captured
//! ([`EchoCanceller::process`]) before noise suppression and the encoder.
//!
//! The same processing can bring the voice to a steady level (automatic gain control, WebRTC's
//! AGC2 adaptive digital controller): a quiet or distant speaker reaches the encoder at the
//! level of a close one, without the noise of pauses being pumped up (its gain follows an
//! estimate of the speech level, taken only where its voice detector hears speech, and the
//! noise it lets out is capped). AGC2's digital controller only ever raises the gain (its
//! way down is a device's input volume, which a call cannot count on): a voice that is too
//! loud is brought down by a small controller of our own ([`Ceiling`]), slowly, only while
//! its speech level stays above the level AGC2 brings quiet voices up to.
//!
//! Frames are the call's 20 ms at 48 kHz; AEC3 works on 10 ms, so each is two.

use crate::FRAME_SAMPLES;

const RATE: u32 = 48_000;
const HALF: usize = FRAME_SAMPLES / 2;

/// What the canceller reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EchoStats {
    /// The echo path's delay it found (ms), once it found one.
    pub delay_ms: Option<i32>,
    /// How much of the echo it takes out (echo return loss enhancement, dB), once known.
    pub erle_db: Option<f64>,
}

/// The echo canceller (and, if asked, gain control) of one call's microphone.
pub struct EchoCanceller {
    apm: sonora::AudioProcessing,
    echo: bool,
    /// Gain control's way down (with gain control on).
    ceiling: Option<Ceiling>,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("echo", &self.echo)
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    /// Echo cancellation and gain control, each on or off (both off: the voice passes), knowing
    /// nothing of the room yet.
    pub fn with(echo_cancellation: bool, gain_control: bool) -> Self {
        // No high-pass filter: it shifts the phase of the voice's low end and costs 0.3–0.4
        // PESQ on a clean voice (bench/RESULTS.md); RNNoise after it already takes out hum.
        // The whole 48 kHz band is processed as one.
        let mut config = sonora::Config {
            echo_canceller: echo_cancellation.then(|| sonora::config::EchoCanceller {
                enforce_high_pass_filtering: false,
                ..Default::default()
            }),
            gain_controller2: gain_control.then(|| sonora::config::GainController2 {
                // From 0 dB, not AGC2's usual +15: a voice already at its level would start
                // 15 dB too loud, into the limiter, and the first words come out distorted
                // (the device test's PESQ fell to 3.3 on some runs). A quiet voice is raised
                // at 6 dB a second instead.
                adaptive_digital: Some(sonora::config::AdaptiveDigital {
                    initial_gain_db: 0.0,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        config.pipeline.maximum_internal_processing_rate =
            sonora::config::MaxProcessingRate::Rate48kHz;
        let apm = sonora::AudioProcessing::builder()
            .config(config)
            .capture_config(sonora::StreamConfig::new(RATE, 1))
            .render_config(sonora::StreamConfig::new(RATE, 1))
            .build();
        Self {
            apm,
            echo: echo_cancellation,
            ceiling: gain_control.then(Ceiling::default),
            scratch: vec![0; HALF],
        }
    }

    /// Whether it cancels echo (else it only controls the gain).
    pub fn cancels_echo(&self) -> bool {
        self.echo
    }

    /// The speaker is sent this 20 ms frame now (what the far end said, as played).
    pub fn far_end(&mut self, pcm: &[i16]) {
        if !self.echo || pcm.len() != FRAME_SAMPLES {
            return;
        }
        for half in pcm.chunks_exact(HALF) {
            // Only an unsupported format fails, and ours is fixed.
            let _ = self.apm.process_render_i16(half, &mut self.scratch);
        }
    }

    /// Takes the echo out of this 20 ms frame of the microphone, in place.
    pub fn process(&mut self, pcm: &mut [i16]) {
        if pcm.len() != FRAME_SAMPLES {
            return;
        }
        for half in pcm.chunks_exact_mut(HALF) {
            self.scratch.copy_from_slice(half);
            let _ = self.apm.process_capture_i16(&self.scratch, half);
        }
        if let Some(c) = &mut self.ceiling {
            c.apply(pcm);
        }
    }

    /// What it found so far.
    pub fn stats(&self) -> EchoStats {
        let s = self.apm.statistics();
        EchoStats {
            delay_ms: s.delay_median_ms.or(s.delay_ms),
            erle_db: s.echo_return_loss_enhancement,
        }
    }
}

/// Brings a voice that is too loud down to the level gain control brings quiet ones up to:
/// it follows the speech level (the power of the frames louder than -45 dBFS, smoothed over
/// about a second) and, while that stays above [`Ceiling::TARGET_DB`], lowers the gain by at
/// most 6 dB a second; it never raises it above 0 dB. Pauses (quieter frames) do not move
/// the estimate, so the gain does not swell in them.
#[derive(Debug)]
struct Ceiling {
    /// The speech level, as power (full scale 1.0).
    level: f64,
    gain_db: f64,
}

impl Default for Ceiling {
    fn default() -> Self {
        Self {
            level: 10f64.powf(Self::TARGET_DB / 10.0),
            gain_db: 0.0,
        }
    }
}

impl Ceiling {
    /// The speech level aimed at (dBFS, power of the voiced frames): where AGC2's adaptive
    /// controller brings a quiet voice (it measures about 1.5 dB higher over the loudest half
    /// of the frames, about -21 dBFS).
    const TARGET_DB: f64 = -22.5;
    /// Frames quieter than this are pauses.
    const VOICED_DB: f64 = -45.0;
    /// Per 20 ms frame: about one second of smoothing; 6 dB a second of gain change.
    const SMOOTHING: f64 = 0.02;
    const STEP_DB: f64 = 0.12;

    fn apply(&mut self, pcm: &mut [i16]) {
        let p = pcm
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / pcm.len().max(1) as f64
            / 32768f64.powi(2);
        if 10.0 * p.max(1e-12).log10() > Self::VOICED_DB {
            self.level += Self::SMOOTHING * (p - self.level);
        }
        let level_db = 10.0 * self.level.max(1e-12).log10();
        let want = (Self::TARGET_DB - level_db).min(0.0);
        self.gain_db += (want - self.gain_db).clamp(-Self::STEP_DB, Self::STEP_DB);
        if self.gain_db < -0.01 {
            let g = 10f64.powf(self.gain_db / 20.0);
            for s in pcm.iter_mut() {
                *s = (f64::from(*s) * g).round() as i16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise-like signal (speech stands in badly for it, but the
    /// canceller's adaptive filter only needs a broadband far end).
    fn noise(seed: &mut u64) -> i16 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        ((*seed >> 48) as i16) / 8
    }

    fn power(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64
    }

    /// The far end played through a 60 ms path (a delay and an attenuation) into the
    /// microphone: after a few seconds what leaves is far below what came in, and the
    /// canceller reports a delay near the path's.
    #[test]
    fn an_echo_through_a_delayed_path_is_taken_out() {
        let mut aec = EchoCanceller::with(true, false);
        let mut seed = 0x1234_5678_9abc_def1u64;
        let delay = 60 * 48;
        let total = 8 * 50;
        let far: Vec<i16> = (0..total * FRAME_SAMPLES)
            .map(|_| noise(&mut seed))
            .collect();
        let (mut echo_in, mut echo_out) = (0.0, 0.0);
        for f in 0..total {
            let span = f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES;
            aec.far_end(&far[span.clone()]);
            let mut mic: Vec<i16> = span
                .map(|i| if i >= delay { far[i - delay] / 2 } else { 0 })
                .collect();
            let before = power(&mic);
            aec.process(&mut mic);
            // The last two seconds, once it has learnt the path.
            if f >= total - 100 {
                echo_in += before;
                echo_out += power(&mic);
            }
        }
        let erle = 10.0 * (echo_in / echo_out.max(1.0)).log10();
        assert!(erle > 20.0, "ERLE {erle:.1} dB");
        let stats = aec.stats();
        assert!(
            stats.delay_ms.is_some_and(|d| (40..=80).contains(&d)),
            "{stats:?}"
        );
    }

    /// A voice at -40, -25 or -10 dBFS (speech level) comes out at one level, within 3 dB,
    /// once the controller has settled; the noise in its pauses is not pumped up.
    #[test]
    fn gain_control_brings_quiet_and_loud_voices_to_one_level() {
        let voice = crate::speech::sample(12.0);
        let speech_level = |x: &[i16]| {
            // The level of the loudest half of the 20 ms frames: the speech, not its pauses.
            let mut p: Vec<f64> = x.chunks(FRAME_SAMPLES).map(power).collect();
            p.sort_by(f64::total_cmp);
            let top = &p[p.len() / 2..];
            10.0 * (top.iter().sum::<f64>() / top.len() as f64 / 32768f64.powi(2)).log10()
        };
        let quiet_level = |x: &[i16]| {
            let mut p: Vec<f64> = x.chunks(FRAME_SAMPLES).map(power).collect();
            p.sort_by(f64::total_cmp);
            let low = &p[..p.len() / 10];
            10.0 * (low.iter().sum::<f64>() / low.len() as f64 / 32768f64.powi(2))
                .max(1e-12)
                .log10()
        };
        let native = speech_level(&voice);
        let mut seed = 0x5eed_u64;
        let mut outs = Vec::new();
        for want in [-40.0, -25.0, -10.0] {
            let gain = 10f64.powf((want - native) / 20.0);
            // A noise floor 40 dB under the voice, as a room gives.
            let input: Vec<i16> = voice
                .iter()
                .map(|&s| {
                    let n = f64::from(noise(&mut seed)) / 4096.0
                        * 10f64.powf((want - 40.0 + 4.8) / 20.0)
                        * 32768.0;
                    (f64::from(s) * gain + n).clamp(-32768.0, 32767.0) as i16
                })
                .collect();
            let mut p = EchoCanceller::with(false, true);
            let mut out = input.clone();
            for f in out.chunks_exact_mut(FRAME_SAMPLES) {
                p.far_end(&[0; FRAME_SAMPLES]);
                p.process(f);
            }
            // The last 6 s, settled.
            let tail = &out[6 * 48_000..];
            let (level, floor) = (speech_level(tail), quiet_level(tail));
            let in_floor = quiet_level(&input[6 * 48_000..]);
            eprintln!(
                "voice at {want} dBFS: out {level:.1} dBFS, pauses {floor:.1} dBFS (in {in_floor:.1})"
            );
            outs.push((level, floor, in_floor));
        }
        let mean = outs.iter().map(|o| o.0).sum::<f64>() / outs.len() as f64;
        for (level, floor, in_floor) in outs {
            assert!((level - mean).abs() <= 3.0, "{level:.1} against {mean:.1}");
            // Pauses stay at least 30 dB under the voice: the gain did not pump them.
            assert!(
                level - floor >= 30.0,
                "voice {level:.1}, pauses {floor:.1} (in {in_floor:.1})"
            );
        }
    }

    /// With nothing played, the microphone's voice passes (nearly) untouched.
    #[test]
    fn without_an_echo_the_voice_passes() {
        let mut aec = EchoCanceller::with(true, false);
        let mut seed = 0x0fed_cba9_8765_4321u64;
        let silence = vec![0i16; FRAME_SAMPLES];
        let (mut p_in, mut p_out) = (0.0, 0.0);
        for f in 0..200 {
            aec.far_end(&silence);
            let mut mic: Vec<i16> = (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (f * FRAME_SAMPLES + i) as f64 / 48_000.0;
                    ((t * 2.0 * std::f64::consts::PI * 440.0).sin() * 6000.0) as i16
                        + noise(&mut seed) / 64
                })
                .collect();
            let before = power(&mic);
            aec.process(&mut mic);
            if f >= 50 {
                p_in += before;
                p_out += power(&mic);
            }
        }
        let change = 10.0 * (p_out / p_in).log10();
        assert!(change.abs() < 1.0, "{change:.2} dB");
    }
}
