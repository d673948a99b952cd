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
//! A call on a headset has no echo, and AEC3 still costs it: its suppressor takes the far
//! end's voice for echo until it knows better, and the near end's voice loses 0.3 PESQ alone
//! and about 2 while both talk (bench/RESULTS.md). So the canceller watches and only acts
//! once it has reason to: after [`Presence::EVIDENCE_FRAMES`] of the far end talking with no
//! echo path found (AEC3 has not estimated an echo return loss: its linear filter never
//! converged), the microphone passes untouched; the canceller keeps learning, and the moment
//! it finds a path (a headset unplugged) its output is used again. The switch is a 10 ms
//! cross-fade.
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
    /// The far end has talked long enough and no echo was found: the microphone passes
    /// untouched (a headset, or a room that sends nothing back).
    pub no_echo: bool,
}

/// Whether the canceller's output is used: its evidence that there is an echo to take out.
#[derive(Debug, Default)]
struct Presence {
    /// 10 ms frames in which the far end was loud enough to be heard back.
    strong: u32,
    /// Passing the microphone untouched.
    passing: bool,
}

impl Presence {
    /// The far end talks this long (10 ms frames above [`Self::STRONG_DB`]) with no echo
    /// path found before the microphone passes untouched: AEC3 found its path (its echo
    /// return loss above [`Self::NO_PATH_DB`]) after 2.7–3.8 s of far end speech on every echo
    /// path of the benchmark (bench/aec.sh), one 30 dB weaker included. Should it take longer
    /// than this, the echo passes until it has found it.
    const EVIDENCE_FRAMES: u32 = 500;
    /// A far end frame this loud (dBFS, power) would leave an echo worth cancelling (AEC3's
    /// own bar for an active render frame).
    const STRONG_DB: f64 = -50.0;
    /// AEC3 reports an echo return loss of -30 dB (its estimator's initial ceiling) until its
    /// linear filter has converged on a path; on every echo path of the benchmark it then
    /// rose to 5–20 dB within a second. A blip of false convergence on a voice with no echo
    /// moves it a few dB at most. Above this, a path was found.
    const NO_PATH_DB: f64 = -10.0;

    /// One 10 ms frame of the far end; `erl_db` what the canceller reports now. Whether
    /// to pass the microphone untouched.
    fn update(&mut self, far_power_db: f64, erl_db: Option<f64>) -> bool {
        if far_power_db > Self::STRONG_DB {
            self.strong = self.strong.saturating_add(1);
        }
        let path_found = erl_db.is_some_and(|e| e > Self::NO_PATH_DB);
        self.passing = !path_found && self.strong >= Self::EVIDENCE_FRAMES;
        self.passing
    }
}

/// The echo canceller (and, if asked, gain control) of one call's microphone.
pub struct EchoCanceller {
    /// The canceller (AEC3 alone), if on.
    aec: Option<sonora::AudioProcessing>,
    /// Gain control (AGC2 alone), if on: after the canceller, and whether or not its output
    /// is used.
    agc: Option<sonora::AudioProcessing>,
    presence: Presence,
    /// The power (dBFS) of the two 10 ms halves of the far end's last frame.
    far_db: [f64; 2],
    /// Gain control's way down (with gain control on).
    ceiling: Option<Ceiling>,
    scratch: Vec<i16>,
    raw: Vec<i16>,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("echo", &self.aec.is_some())
            .field("gain", &self.agc.is_some())
            .field("presence", &self.presence)
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    /// Echo cancellation and gain control, each on or off (both off: the voice passes), knowing
    /// nothing of the room yet.
    pub fn with(echo_cancellation: bool, gain_control: bool) -> Self {
        // Each at the call's rate: no resampling on the way.
        let build = |mut config: sonora::Config| {
            config.pipeline.maximum_internal_processing_rate =
                sonora::config::MaxProcessingRate::Rate48kHz;
            sonora::AudioProcessing::builder()
                .config(config)
                .capture_config(sonora::StreamConfig::new(RATE, 1))
                .render_config(sonora::StreamConfig::new(RATE, 1))
                .build()
        };
        let aec = echo_cancellation.then(|| {
            // No high-pass filter: it shifts the phase of the voice's low end and costs
            // 0.3–0.4 PESQ on a clean voice (bench/RESULTS.md); RNNoise after it already
            // takes out hum. The whole 48 kHz band is processed as one.
            build(sonora::Config {
                echo_canceller: Some(sonora::config::EchoCanceller {
                    enforce_high_pass_filtering: false,
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        let agc = gain_control.then(|| {
            build(sonora::Config {
                gain_controller2: Some(sonora::config::GainController2 {
                    // From 0 dB, not AGC2's usual +15: a voice already at its level would
                    // start 15 dB too loud, into the limiter, and the first words come out
                    // distorted (the device test's PESQ fell to 3.3 on some runs). A quiet
                    // voice is raised at 6 dB a second instead.
                    adaptive_digital: Some(sonora::config::AdaptiveDigital {
                        initial_gain_db: 0.0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        Self {
            aec,
            agc,
            presence: Presence::default(),
            far_db: [-120.0; 2],
            ceiling: gain_control.then(Ceiling::default),
            scratch: vec![0; HALF],
            raw: vec![0; HALF],
        }
    }

    /// Whether it cancels echo (else it only controls the gain).
    pub fn cancels_echo(&self) -> bool {
        self.aec.is_some()
    }

    /// The speaker is sent this 20 ms frame now (what the far end said, as played).
    pub fn far_end(&mut self, pcm: &[i16]) {
        let Some(aec) = &mut self.aec else { return };
        if pcm.len() != FRAME_SAMPLES {
            return;
        }
        for (half, db) in pcm.chunks_exact(HALF).zip(&mut self.far_db) {
            // Only an unsupported format fails, and ours is fixed.
            let _ = aec.process_render_i16(half, &mut self.scratch);
            *db = power_db(half);
        }
    }

    /// Takes the echo out of this 20 ms frame of the microphone, in place.
    pub fn process(&mut self, pcm: &mut [i16]) {
        if pcm.len() != FRAME_SAMPLES {
            return;
        }
        for (half, far_db) in pcm.chunks_exact_mut(HALF).zip(self.far_db) {
            if let Some(aec) = &mut self.aec {
                self.raw.copy_from_slice(half);
                let _ = aec.process_capture_i16(&self.raw, half);
                let was = self.presence.passing;
                let erl = aec.statistics().echo_return_loss;
                let pass = self.presence.update(far_db, erl);
                match (was, pass) {
                    (false, false) => {}
                    // Passing: the microphone as it was.
                    (true, true) => half.copy_from_slice(&self.raw),
                    // A switch: a 10 ms fade from what was used to what is used now.
                    _ => {
                        let n = half.len() as f32;
                        for (i, (out, raw)) in half.iter_mut().zip(&self.raw).enumerate() {
                            let (from, to) = if pass { (*out, *raw) } else { (*raw, *out) };
                            let w = (i as f32 + 0.5) / n;
                            *out = (f32::from(from) * (1.0 - w) + f32::from(to) * w).round() as i16;
                        }
                    }
                }
            }
            if let Some(agc) = &mut self.agc {
                self.scratch.copy_from_slice(half);
                let _ = agc.process_capture_i16(&self.scratch, half);
            }
        }
        if let Some(c) = &mut self.ceiling {
            c.apply(pcm);
        }
    }

    /// What it found so far.
    pub fn stats(&self) -> EchoStats {
        let Some(aec) = &self.aec else {
            return EchoStats::default();
        };
        let s = aec.statistics();
        EchoStats {
            delay_ms: s.delay_median_ms.or(s.delay_ms),
            erle_db: s.echo_return_loss_enhancement,
            no_echo: self.presence.passing,
        }
    }
}

/// A frame's power, dBFS.
fn power_db(pcm: &[i16]) -> f64 {
    let p = pcm
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / pcm.len().max(1) as f64
        / 32768f64.powi(2);
    10.0 * p.max(1e-12).log10()
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
        let db = power_db(pcm);
        if db > Self::VOICED_DB {
            self.level += Self::SMOOTHING * (10f64.powf(db / 10.0) - self.level);
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
        assert!(!stats.no_echo, "{stats:?}");
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

    /// A headset: the far end talks and nothing of it reaches the microphone, where the
    /// near end talks. Until the canceller has heard enough of the far end it works as
    /// usual; then the microphone passes bit for bit. When an echo path appears (the headset
    /// unplugged), the canceller finds it and takes the echo out again.
    #[test]
    fn with_no_echo_the_microphone_passes_untouched_until_one_appears() {
        let mut aec = EchoCanceller::with(true, false);
        let mut seed = 0x2468_ace0_1357_9bdfu64;
        let delay = 80 * 48;
        let (quiet, total) = (8 * 50, 18 * 50);
        let far: Vec<i16> = (0..total * FRAME_SAMPLES)
            .map(|_| noise(&mut seed))
            .collect();
        // The near end talks 12 s (10 dB under its sample's level), then listens.
        let voice = crate::speech::sample(12.0);
        let (mut untouched, mut echo_in, mut echo_out) = (Vec::new(), 0.0, 0.0);
        let mut passing_at = None;
        for f in 0..total {
            let span = f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES;
            aec.far_end(&far[span.clone()]);
            let mut mic: Vec<i16> = span
                .map(|i| {
                    let near = voice.get(i).map_or(0, |&v| (f32::from(v) * 0.3) as i16);
                    let echo = if f >= quiet { far[i - delay] / 2 } else { 0 };
                    near.saturating_add(echo)
                        .saturating_add(noise(&mut seed) / 64)
                })
                .collect();
            let before = mic.clone();
            aec.process(&mut mic);
            if f < quiet {
                if aec.stats().no_echo && passing_at.is_none() {
                    passing_at = Some(f);
                }
                untouched.push(mic == before);
            } else if f >= total - 100 {
                // The last two seconds: the echo alone.
                echo_in += power(&before);
                echo_out += power(&mic);
            }
        }
        // It waited for 5 s of the far end (250 frames of 20 ms), then passed every frame.
        let at = passing_at.expect("it never let the microphone pass");
        assert!((249..=260).contains(&at), "passing from frame {at}");
        assert!(untouched[..at].iter().filter(|u| **u).count() < 10);
        let touched: Vec<usize> = (at + 1..untouched.len())
            .filter(|&i| !untouched[i])
            .collect();
        assert!(touched.is_empty(), "touched after passing: {touched:?}");
        // The echo that came later is found and taken out.
        let stats = aec.stats();
        assert!(!stats.no_echo, "{stats:?}");
        let erle = 10.0 * (echo_in / echo_out.max(1.0)).log10();
        assert!(erle > 20.0, "ERLE {erle:.1} dB");
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
