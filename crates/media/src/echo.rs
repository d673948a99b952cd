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

/// The echo canceller of one call's microphone.
pub struct EchoCanceller {
    apm: sonora::AudioProcessing,
    scratch: Vec<i16>,
    /// Frames processed, and whether the speaker ever played anything.
    frames: u64,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Default for EchoCanceller {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoCanceller {
    /// A canceller that knows nothing of the room yet.
    pub fn new() -> Self {
        // No high-pass filter: it shifts the phase of the voice's low end and costs 0.3–0.4
        // PESQ on a clean voice (bench/RESULTS.md); RNNoise after it already takes out hum.
        // The whole 48 kHz band is processed as one.
        let mut config = sonora::Config {
            echo_canceller: Some(sonora::config::EchoCanceller {
                enforce_high_pass_filtering: false,
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
            scratch: vec![0; HALF],
            frames: 0,
        }
    }

    /// The speaker is sent this 20 ms frame now (what the far end said, as played).
    pub fn far_end(&mut self, pcm: &[i16]) {
        if pcm.len() != FRAME_SAMPLES {
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
        self.frames += 1;
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
        let mut aec = EchoCanceller::new();
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

    /// With nothing played, the microphone's voice passes (nearly) untouched.
    #[test]
    fn without_an_echo_the_voice_passes() {
        let mut aec = EchoCanceller::new();
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
