//! Sample-rate conversion by windowed sinc (Blackman window, 16 zero crossings each side):
//! good enough for speech files of any common rate, done once per file.

use std::f64::consts::PI;

const HALF_TAPS: i64 = 16;

/// Converts `input` at `from` Hz to `to` Hz.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = to as f64 / from as f64;
    // Low-pass at the lower of the two Nyquist frequencies.
    let cutoff = ratio.min(1.0);
    let out_len = (input.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    let half = (HALF_TAPS as f64 / cutoff).ceil() as i64;
    for n in 0..out_len {
        let t = n as f64 / ratio;
        let centre = t.floor() as i64;
        let mut acc = 0.0;
        let mut norm = 0.0;
        for k in centre - half + 1..=centre + half {
            if k < 0 || k as usize >= input.len() {
                continue;
            }
            let x = t - k as f64;
            let arg = x * cutoff;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (PI * arg).sin() / (PI * arg)
            };
            let w = 0.42
                + 0.5 * (PI * x / half as f64).cos()
                + 0.08 * (2.0 * PI * x / half as f64).cos();
            let h = sinc * w.max(0.0);
            acc += input[k as usize] as f64 * h;
            norm += h;
        }
        let v = if norm.abs() > 1e-9 { acc / norm } else { 0.0 };
        out.push(v.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<i16> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| ((2.0 * PI * freq * i as f64 / rate as f64).sin() * 10_000.0) as i16)
            .collect()
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level() {
        for from in [8_000, 16_000, 44_100] {
            let out = resample(&tone(440.0, from, 1.0), from, 48_000);
            assert!((out.len() as i64 - 48_000).abs() <= 1);
            let want = tone(440.0, 48_000, 1.0);
            // Compare away from the edges.
            let err: f64 = out[1000..47_000]
                .iter()
                .zip(&want[1000..47_000])
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .fold(0.0, f64::max);
            assert!(err < 300.0, "{from} Hz: max error {err}");
        }
    }
}
