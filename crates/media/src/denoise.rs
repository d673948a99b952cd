//! Noise suppression (RNNoise's recurrent network, in pure Rust), on by default for what the
//! microphone hears: fans, traffic and keyboards cost bits and intelligibility, and they tell
//! the other side where you are. It also gives a voice probability, which is a better speech
//! flag than frame energy.

use nnnoiseless::DenoiseState;

/// Cleans 20 ms frames (two 10 ms network frames each).
pub struct NoiseSuppressor {
    state: Box<DenoiseState<'static>>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl Default for NoiseSuppressor {
    fn default() -> Self {
        Self::new()
    }
}

impl NoiseSuppressor {
    /// A fresh suppressor.
    pub fn new() -> Self {
        Self {
            state: DenoiseState::new(),
            input: vec![0.0; DenoiseState::FRAME_SIZE],
            output: vec![0.0; DenoiseState::FRAME_SIZE],
        }
    }

    /// Cleans `pcm` in place (any multiple of 10 ms); returns the highest voice probability
    /// of its 10 ms parts.
    pub fn process(&mut self, pcm: &mut [i16]) -> f32 {
        let mut voice = 0.0f32;
        for chunk in pcm.chunks_mut(DenoiseState::FRAME_SIZE) {
            if chunk.len() != DenoiseState::FRAME_SIZE {
                break;
            }
            for (i, s) in chunk.iter().enumerate() {
                self.input[i] = *s as f32;
            }
            voice = voice.max(self.state.process_frame(&mut self.output, &self.input));
            for (s, v) in chunk.iter_mut().zip(&self.output) {
                *s = v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
            }
        }
        voice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
    }

    /// Rumble like a fan or traffic: white noise through a one-pole low-pass.
    fn rumble(seconds: usize, level: f64) -> Vec<i16> {
        let mut x = 12345u32;
        let mut y = 0.0f64;
        (0..48_000 * seconds)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                y = 0.95 * y + 0.05 * ((x >> 16) as i16) as f64 * level;
                y as i16
            })
            .collect()
    }

    #[test]
    fn steady_noise_is_pushed_down() {
        let mut ns = NoiseSuppressor::new();
        let mut noise = rumble(3, 0.25);
        let before = energy(&noise[96_000..]);
        let mut voice = 0.0f32;
        for (i, f) in noise.chunks_mut(crate::FRAME_SAMPLES).enumerate() {
            let p = ns.process(f);
            // Judge after the first second, once the network has settled on the noise.
            if i >= 50 {
                voice = voice.max(p);
            }
        }
        let after = energy(&noise[96_000..]);
        let db = 10.0 * (before / after.max(1e-9)).log10();
        assert!(db > 20.0, "only {db:.1} dB less noise");
        assert!(voice < 0.5, "noise taken for voice ({voice})");
    }

    #[test]
    fn speech_passes_and_is_recognized() {
        let clean = crate::speech::sample(3.0);
        let mut noisy: Vec<i16> = clean
            .iter()
            .zip(rumble(3, 0.1))
            .map(|(&s, n)| s.saturating_add(n))
            .collect();
        let mut ns = NoiseSuppressor::new();
        let mut voiced_frames = 0;
        for f in noisy.chunks_mut(crate::FRAME_SAMPLES) {
            if ns.process(f) > 0.5 {
                voiced_frames += 1;
            }
        }
        let (lag, corr) = crate::pipeline::align(&clean, &noisy, 4_800);
        assert!(corr > 0.8, "speech damaged: correlation {corr}");
        assert!(lag <= 960, "lag {lag}");
        // 3 s holds about 2.3 s of phrases: most of their frames count as voice.
        assert!(voiced_frames > 60, "{voiced_frames} voiced frames");
    }
}
