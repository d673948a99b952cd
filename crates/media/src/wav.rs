//! WAV files in and out of the pipeline's format (48 kHz mono 16-bit).

use std::path::Path;

use crate::resample::resample;
use crate::RATE;

/// Why a WAV file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WavError {
    path: String,
    reason: String,
}

fn err(path: &Path, reason: impl ToString) -> WavError {
    WavError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Longest file accepted as a voice.
pub const MAX_SECONDS: u64 = 3 * 3600;

/// Reads any PCM or float WAV, mixes it to mono and converts it to 48 kHz.
pub fn read(path: &Path) -> Result<Vec<i16>, WavError> {
    let r = hound::WavReader::open(path).map_err(|e| err(path, e))?;
    let spec = r.spec();
    if !(1_000..=384_000).contains(&spec.sample_rate) {
        return Err(err(
            path,
            format!("unsupported sample rate {} Hz", spec.sample_rate),
        ));
    }
    // Calls are live; a file is a test voice. Refuse what would not fit memory sensibly.
    let secs = r.duration() as u64 / spec.sample_rate as u64;
    if secs > MAX_SECONDS {
        return Err(err(
            path,
            format!("{secs} s is longer than the {MAX_SECONDS} s accepted"),
        ));
    }
    let mut r = r;
    let channels = spec.channels.max(1) as usize;
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .map(|s| s.map(|v| v as f64))
            .collect::<Result<_, _>>()
            .map_err(|e| err(path, e))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f64;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f64 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(path, e))?
        }
    };
    let mono: Vec<i16> = samples
        .chunks(channels)
        .map(|c| {
            (c.iter().sum::<f64>() / c.len() as f64 * 32_768.0).clamp(-32_768.0, 32_767.0) as i16
        })
        .collect();
    Ok(resample(&mono, spec.sample_rate, RATE))
}

/// Writes 48 kHz mono 16-bit samples.
pub fn write(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    write_file(path, samples).map_err(|e| err(path, e))
}

/// [`write`], with hound's own error.
pub(crate) fn write_file(path: &Path, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_conversion() {
        let dir = std::env::temp_dir().join(format!("es-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let voice = crate::speech::sample(0.5);
        let p = dir.join("a.wav");
        write(&p, &voice).unwrap();
        assert_eq!(read(&p).unwrap(), voice);
        // Stereo 8 kHz float comes back as 48 kHz mono of the same duration.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let q = dir.join("b.wav");
        let mut w = hound::WavWriter::create(&q, spec).unwrap();
        for i in 0..8_000 {
            let v = (i as f32 * 0.05).sin() * 0.5;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(read(&q).unwrap().len(), 48_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_headers_are_refused() {
        let dir = std::env::temp_dir().join(format!("es-wav-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A 44-byte header claiming 0 Hz (and 0 bytes per second).
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&36u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // PCM
        h.extend_from_slice(&1u16.to_le_bytes()); // mono
        h.extend_from_slice(&0u32.to_le_bytes()); // 0 Hz
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        let p = dir.join("zero.wav");
        std::fs::write(&p, &h).unwrap();
        assert!(read(&p).is_err());
        std::fs::write(&p, b"not a wav at all").unwrap();
        assert!(read(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
