//! A speech-like test signal made on the spot, so the demo and tests need no recordings (and
//! no licence): a glottal source at a gliding pitch through three moving formant resonators,
//! shaped into syllables, with fricative hiss between some of them and pauses between
//! phrases. It exercises a speech codec's voiced, unvoiced and silent modes; it is not a
//! substitute for real voices in quality measurements.

use crate::RATE;

/// Formant frequencies (F1, F2, F3) of a few vowels, in Hz.
const VOWELS: [[f64; 3]; 5] = [
    [730.0, 1090.0, 2440.0], // a
    [530.0, 1840.0, 2480.0], // e
    [270.0, 2290.0, 3010.0], // i
    [570.0, 840.0, 2410.0],  // o
    [300.0, 870.0, 2240.0],  // u
];

struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn step(&mut self, x: f64, freq: f64, bw: f64) -> f64 {
        let fs = RATE as f64;
        let r = (-std::f64::consts::PI * bw / fs).exp();
        let b1 = 2.0 * r * (2.0 * std::f64::consts::PI * freq / fs).cos();
        let b2 = -r * r;
        let y = (1.0 - r) * x + b1 * self.y1 + b2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// `seconds` of the signal at 48 kHz, peak near −6 dBFS. The same every time.
pub fn sample(seconds: f64) -> Vec<i16> {
    let n = (seconds * RATE as f64) as usize;
    let fs = RATE as f64;
    let mut out = Vec::with_capacity(n);
    let mut phase = 0.0f64;
    let mut res = [
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
    ];
    let mut noise_state = 0x1234_5678u32;
    let syllable = 0.22; // seconds
    for i in 0..n {
        let t = i as f64 / fs;
        // Phrases of 1.8 s separated by 0.5 s pauses.
        let in_phrase = (t % 2.3) < 1.8;
        let s_idx = (t / syllable) as usize;
        let s_pos = (t % syllable) / syllable;
        let env = if in_phrase {
            (std::f64::consts::PI * s_pos).sin().powf(0.6)
        } else {
            0.0
        };
        // Pitch glides within each phrase: a question-like rise and a falling end.
        let f0 = 105.0 + 35.0 * ((t * 0.9).sin() + 0.4 * (t * 3.1).sin());
        phase += f0 / fs;
        phase -= phase.floor();
        let harmonics = (3800.0 / f0) as usize;
        let mut src = 0.0;
        for k in 1..=harmonics {
            src += (2.0 * std::f64::consts::PI * k as f64 * phase).sin() / k as f64;
        }
        // Vowel moves towards the next one across the syllable.
        let (a, b) = (VOWELS[s_idx % 5], VOWELS[(s_idx * 3 + 1) % 5]);
        let w = s_pos * s_pos;
        let mut voiced = src;
        for (j, r) in res.iter_mut().enumerate() {
            let f = a[j] * (1.0 - w) + b[j] * w;
            voiced = r.step(voiced, f, 80.0 + 40.0 * j as f64) * 4.0;
        }
        // A fricative at the start of every third syllable.
        noise_state ^= noise_state << 13;
        noise_state ^= noise_state >> 17;
        noise_state ^= noise_state << 5;
        let noise = (noise_state as f64 / u32::MAX as f64) - 0.5;
        let fric = if in_phrase && s_idx.is_multiple_of(3) && s_pos < 0.3 {
            noise * 0.25 * (1.0 - s_pos / 0.3)
        } else {
            0.0
        };
        let v = (voiced * env * 0.5 + fric).clamp(-1.0, 1.0);
        out.push((v * 16_000.0) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_speech_pauses_and_a_sane_level() {
        let s = super::sample(3.0);
        assert_eq!(s.len(), 144_000);
        let rms = |x: &[i16]| {
            (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
        };
        let phrase = rms(&s[4_800..80_000]);
        let pause = rms(&s[(1.9 * 48_000.0) as usize..(2.2 * 48_000.0) as usize]);
        assert!(phrase > 1_000.0, "phrase rms {phrase}");
        assert!(pause < 1.0, "pause rms {pause}");
        assert_eq!(super::sample(0.5), super::sample(0.5));
    }
}
